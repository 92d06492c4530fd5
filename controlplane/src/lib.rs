//! The xDS controlplane: snapshots of Envoy resources per node group, served over ADS.
//!
//! * [`cache`]: snapshots and node groups (the seam between sources and the server).
//! * [`server`]: the ADS service, SotW and Delta.
//! * [`source`]: the watched config directory, its checks.
//! * [`status`]: what each connected proxy was sent, ACKed and NACKed.
//! * [`admin`]: the HTTP status endpoint.
//! * [`tls`]: TLS and mutual TLS for the xDS listener, client certificate identities.

pub mod admin;
pub mod cache;
pub mod cli;
pub mod memory;
pub mod server;
pub mod source;
pub mod status;
pub mod tls;
