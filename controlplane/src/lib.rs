//! The xDS controlplane: snapshots of Envoy resources per node group, served over ADS.
//!
//! * [`cache`]: snapshots and node groups (the seam between sources and the server).
//! * [`server`]: the ADS service, SotW and Delta.
//! * [`status`]: what each connected proxy was sent, ACKed and NACKed.

pub mod cache;
pub mod server;
pub mod status;
