//! HTTP clients to upstream hosts, pooling connections per host.
//!
//! One hyper client per (connect timeout, protocol) pair, shared by every cluster using that
//! pair and kept across config pushes, so a route or endpoint change does not drop pooled
//! connections. HTTP/1.1 keeps connections alive; HTTP/2 (clusters with
//! `explicit_http_config.http2_protocol_options`) multiplexes requests on one connection.
//! A cluster with TLS gets its own client per (rustls config, server name): Envoy keys its
//! pools by SNI too, so a connection made for one name never serves another. A client made
//! for a config an SDS rotation replaced stays in the map, idle connections closing after
//! the idle timeout (a small leak per rotation, to be swept when pools get a lifecycle).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use rustls::pki_types::ServerName;

use crate::tls::client::{Connector, Origination};

/// Request and response bodies on the proxy path: streamed, never buffered whole.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body's error: hyper's, or ours (a route idle timeout cuts a body short with an error, so
/// the downstream sees a reset, not a complete response).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub type HttpClient = Client<Connector, Body>;

/// (connect timeout, HTTP/2, TLS: the rustls config's address and the server name).
type Key = (Duration, bool, Option<(usize, ServerName<'static>)>);

static CLIENTS: LazyLock<Mutex<HashMap<Key, HttpClient>>> = LazyLock::new(Default::default);

/// The client for a cluster's connect timeout, protocol and TLS origination.
pub fn client(connect_timeout: Duration, http2: bool, tls: Option<Origination>) -> HttpClient {
    // The config's address identifies it: the client keeps the `Arc` alive in the map, so
    // the address cannot be reused by another config.
    let tls_key = tls
        .as_ref()
        .map(|o| (Arc::as_ptr(&o.config) as usize, o.name.clone()));
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    clients
        .entry((connect_timeout, http2, tls_key))
        .or_insert_with(|| {
            let mut http = HttpConnector::new();
            http.set_connect_timeout(Some(connect_timeout));
            http.set_nodelay(true);
            let connector = Connector {
                http,
                tls,
                timeout: connect_timeout,
            };
            Client::builder(TokioExecutor::new())
                .http2_only(http2)
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(1024)
                .build(connector)
        })
        .clone()
}
