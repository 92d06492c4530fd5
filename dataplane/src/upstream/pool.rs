//! HTTP clients to upstream hosts, pooling connections per worker (workers.rs) and host.
//!
//! HTTP/1.1 clusters use our own client and pool ([`crate::http1::pool`]): idle
//! connections per (connect timeout, TLS origination, host address), kept across config
//! pushes. HTTP/2 clusters (`explicit_http_config.http2_protocol_options`) use one hyper
//! client per (connect timeout, TLS origination), which multiplexes requests on one
//! connection per host. A cluster with TLS gets its own pool per (rustls config, server
//! name): Envoy keys its pools by SNI too, so a connection made for one name never serves
//! another. A client made for a config an SDS rotation replaced stays in the map, idle
//! connections closing after the idle timeout (a small leak per rotation, to be swept when
//! pools get a lifecycle).

use std::collections::HashMap;
use std::sync::Arc;
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

thread_local! {
    /// This worker's HTTP/2 clients (workers.rs): their connections' tasks run on the worker
    /// that made them, and only its requests use them.
    static CLIENTS: std::cell::RefCell<HashMap<Key, HttpClient>> = Default::default();
}

/// An upstream client for one request (made for it and consumed by it, so the size of the
/// hyper client in one variant costs nothing that lasts).
#[allow(clippy::large_enum_variant)]
pub enum Upstream {
    Http1 {
        connect_timeout: Duration,
        tls: Option<Origination>,
    },
    Http2(HttpClient),
}

/// Why an upstream request got no response, by client.
#[derive(Debug)]
pub enum UpstreamError {
    Http1(crate::http1::client::Error),
    Http2(hyper_util::client::legacy::Error),
}

impl Upstream {
    /// Sends `req` to the host at `addr`.
    pub async fn request(
        self,
        addr: std::net::SocketAddr,
        req: http::Request<Body>,
    ) -> Result<http::Response<Body>, UpstreamError> {
        match self {
            Upstream::Http1 {
                connect_timeout,
                tls,
            } => {
                let connector = crate::http1::pool::Connector::new(connect_timeout, tls, addr);
                crate::http1::client::request(&connector, req)
                    .await
                    .map_err(UpstreamError::Http1)
            }
            Upstream::Http2(client) => match client.request(req).await {
                Ok(resp) => Ok(resp.map(|b| {
                    http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(b, Into::into))
                })),
                Err(e) => Err(UpstreamError::Http2(e)),
            },
        }
    }
}

/// The client for a cluster's connect timeout, protocol and TLS origination.
pub fn client(connect_timeout: Duration, http2: bool, tls: Option<Origination>) -> Upstream {
    if !http2 {
        start_sweeper();
        return Upstream::Http1 {
            connect_timeout,
            tls,
        };
    }
    Upstream::Http2(http2_client(connect_timeout, tls))
}

/// Closes idle HTTP/1 connections past their idle timeout on hosts no request looks at: one
/// sweeper per worker, on that worker, for its own pool.
fn start_sweeper() {
    thread_local! {
        static STARTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if STARTED.get() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    STARTED.set(true);
    runtime.spawn(async {
        let mut every = tokio::time::interval(crate::http1::pool::IDLE_TIMEOUT / 2);
        loop {
            every.tick().await;
            crate::http1::pool::sweep();
        }
    });
}

fn http2_client(connect_timeout: Duration, tls: Option<Origination>) -> HttpClient {
    let http2 = true;
    // The config's address identifies it: the client keeps the `Arc` alive in the map, so
    // the address cannot be reused by another config.
    let tls_key = tls
        .as_ref()
        .map(|o| (Arc::as_ptr(&o.config) as usize, o.name.clone()));
    CLIENTS.with_borrow_mut(|clients| {
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
    })
}
