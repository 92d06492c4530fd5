//! HTTP clients to upstream hosts, pooling connections per host.
//!
//! One hyper client per (connect timeout, protocol) pair, shared by every cluster using that
//! pair and kept across config pushes, so a route or endpoint change does not drop pooled
//! connections. HTTP/1.1 keeps connections alive; HTTP/2 (clusters with
//! `explicit_http_config.http2_protocol_options`) multiplexes requests on one connection.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Request and response bodies on the proxy path: streamed, never buffered whole.
pub type Body = BoxBody<Bytes, BoxError>;

/// A body's error: hyper's, or ours (a route idle timeout cuts a body short with an error, so
/// the downstream sees a reset, not a complete response).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub type HttpClient = Client<HttpConnector, Body>;

static CLIENTS: LazyLock<Mutex<HashMap<(Duration, bool), HttpClient>>> =
    LazyLock::new(Default::default);

/// The client for a cluster's connect timeout and protocol.
pub fn client(connect_timeout: Duration, http2: bool) -> HttpClient {
    let mut clients = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
    clients
        .entry((connect_timeout, http2))
        .or_insert_with(|| {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(connect_timeout));
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new())
                .http2_only(http2)
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(1024)
                .build(connector)
        })
        .clone()
}
