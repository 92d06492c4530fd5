//! The xDS controlplane: snapshots of Envoy resources per node group, served over ADS.

pub mod cache;
