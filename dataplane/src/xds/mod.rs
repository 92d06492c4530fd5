//! The xDS side: the ADS client state machine and the store of accepted resources.

pub mod client;
pub mod store;
pub mod tls;
