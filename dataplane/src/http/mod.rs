//! The HTTP connection manager: one hyper connection (HTTP/1.0, 1.1 or h2c per `codec_type`)
//! per accepted socket; each request is routed ([`route`]) and forwarded ([`router`]).

pub mod checks;
pub mod error;
pub mod hash;
pub mod headers;
pub mod idle;
pub mod route;
pub mod router;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::config::listener::{Codec, HttpManager};
use crate::runtime::Runtime;
use crate::tls::TlsInfo;

/// How long a draining connection may keep serving in-flight requests before it is closed:
/// Envoy's default drain time (`--drain-time-s`, 600 s).
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(600);

/// What the request path knows of the downstream connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The connection's number (`%CONNECTION_ID%`), unique in this process.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
    /// Set when TLS was terminated: SNI, ALPN and the client certificate's SANs (for
    /// `%DOWNSTREAM_PEER_URI_SAN%` and the like, and access logs).
    pub tls: Option<Arc<TlsInfo>>,
}

/// Serves one downstream connection until it closes, or until `drain` turns true (its
/// listener was removed or replaced): then it drains as Envoy does (HTTP/1.1 closes after
/// the response in flight, HTTP/2 sends GOAWAY and finishes open streams) and is closed at
/// [`DRAIN_DEADLINE`] at the latest.
///
/// Over TLS, the protocol is the one ALPN negotiated (`h2` or `http/1.1`), as Envoy's AUTO
/// codec does; without ALPN, AUTO looks for the HTTP/2 preface.
pub async fn serve_connection<S>(
    stream: S,
    downstream: Downstream,
    hcm: Arc<HttpManager>,
    runtime: Arc<Runtime>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = downstream.peer;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(60));
    builder.http2().timer(TokioTimer::new());
    let alpn = downstream.tls.as_ref().and_then(|t| t.alpn.as_deref());
    let builder = match (hcm.codec, alpn) {
        (Codec::Http1, _) | (Codec::Auto, Some(b"http/1.1")) => builder.http1_only(),
        (Codec::Http2, _) | (Codec::Auto, Some(b"h2")) => builder.http2_only(),
        (Codec::Auto, _) => builder,
    };
    let activity = idle::Activity::new();
    let idle_timeout = hcm.idle_timeout;
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let (hcm, runtime, downstream) = (hcm.clone(), runtime.clone(), downstream.clone());
        let in_flight = tracked.start();
        async move {
            let response = match checks::reject(&req, &hcm) {
                Some(refused) => refused,
                None => router::handle(req, downstream, &hcm, &runtime).await,
            };
            Ok::<_, Infallible>(response.map(|body| idle::Tracked::new(body, in_flight)))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = async {
        match idle_timeout {
            Some(t) => activity.idle_for(t).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = idle => {
            tracing::debug!(%peer, "idle timeout: closing the connection");
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN_DEADLINE, conn).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
        // A dropped sender (no drain will ever come) is not a drain.
        true = async { drain.wait_for(|d| *d).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN_DEADLINE, conn).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::debug!(%peer, "drain deadline passed: connection closed");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
    }
}
