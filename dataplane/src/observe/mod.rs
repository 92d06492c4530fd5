//! What the proxy tells about itself: access logs, and the stats in Prometheus's format (traces
//! are still to come).

pub mod access_log;
pub mod http_stats;
pub mod prometheus;
pub mod stat;
