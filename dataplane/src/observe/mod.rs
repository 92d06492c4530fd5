//! What the proxy tells about itself: access logs (stats and traces are still to come).

pub mod access_log;
