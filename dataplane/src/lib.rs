//! The dataplane: an Envoy-compatible proxy driven by any Envoy v3 xDS server.
//!
//! The request path, in module order (see docs/life-of-a-request.md): [`listener`] accepts and
//! picks the filter chain, [`http`] runs the connection manager and router (or [`tcp`] the
//! tcp_proxy), [`upstream`] picks an endpoint and forwards. [`config`] is the only module that
//! reads Envoy protos; [`xds`] and [`bootstrap`] feed it; [`admin`] shows what is applied.

pub mod admin;
pub mod bootstrap;
pub mod boxed;
pub mod causes;
pub mod config;
pub mod http;
pub mod http1;
pub mod listener;
pub mod memory;
pub mod observe;
pub mod runtime;
pub mod tcp;
pub mod tls;
pub mod upstream;
pub mod workers;
pub mod xds;
