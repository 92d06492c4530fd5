//! Upstreams: the runtime side of clusters (hosts with counters, a picker) and the HTTP
//! clients that pool connections to them.

pub mod cluster;
pub mod dns;
pub mod health;
pub mod lb;
pub mod outlier;
pub mod pool;
pub mod warming;

pub use cluster::{HostState, UpstreamCluster};
