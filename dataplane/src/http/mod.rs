//! The HTTP connection manager: one hyper connection (HTTP/1.0, 1.1 or h2c per `codec_type`)
//! per accepted socket; each request is routed ([`route`]) and forwarded ([`router`]).

pub mod checks;
pub mod error;
pub mod hash;
pub mod headers;
pub mod idle;
mod reply;
mod retry;
mod rewrite;
pub mod route;
pub mod router;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::config::listener::{Codec, HttpManager};
use crate::runtime::Runtime;
use crate::tls::TlsInfo;
use crate::upstream::pool::Body;

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

/// Starts serving one downstream connection: it is served until it closes, or until `drain`
/// turns true (its listener was removed or replaced): then it drains as Envoy does (HTTP/1.1
/// closes after the response in flight, HTTP/2 sends GOAWAY and finishes open streams) and is
/// closed at [`DRAIN_DEADLINE`] at the latest.
///
/// Over TLS, the protocol is the one ALPN negotiated (`h2` or `http/1.1`), as Envoy's AUTO
/// codec does; without ALPN, AUTO looks for the HTTP/2 preface. HTTP/1 is served by our own
/// codec ([`crate::http1`]), HTTP/2 by hyper.
///
/// This returns once the protocol is known (after sniffing, if any): the connection is then
/// served by a task of its own, spawned here, whose future is the protocol's server alone.
/// tokio allocates a task with room for its future's largest state, and an async fn keeps its
/// arguments beside the future it awaits, so serving from inside this function's (or the
/// accept path's) future would add their state to every idle keep-alive connection.
// An async fn would keep its arguments twice: see the comment in the body.
#[allow(clippy::manual_async_fn)]
pub fn start_connection<S>(
    mut stream: S,
    downstream: Downstream,
    hcm: Arc<HttpManager>,
    runtime: Arc<Runtime>,
    mut drain: watch::Receiver<bool>,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Not an async fn, which would keep its arguments twice (see http1::server::serve).
    async move {
        let alpn = downstream.tls.as_ref().and_then(|t| t.alpn.as_deref());
        let (h2, read) = match (hcm.codec, alpn) {
            (Codec::Http1, _) | (Codec::Auto, Some(b"http/1.1")) => (false, BytesMut::new()),
            (Codec::Http2, _) | (Codec::Auto, Some(b"h2")) => (true, BytesMut::new()),
            (Codec::Auto, _) => match sniff(&mut stream, hcm.idle_timeout, &mut drain).await {
                Some(sniffed) => sniffed,
                None => return,
            },
        };
        // Counted until the connection's future is dropped. The guard goes inside that future
        // (an async block around it would keep the future twice: rust-lang/rust#62958).
        let active = hcm.stats.connection();
        if h2 {
            let stream = crate::tls::rewind::Rewind::new(read.to_vec(), stream);
            tokio::spawn(serve_h2(stream, downstream, hcm, runtime, drain, active));
        } else {
            tokio::spawn(serve_http1(
                stream, read, downstream, hcm, runtime, drain, active,
            ));
        }
    }
}

/// HTTP/1 on our codec. Not an async fn: the future returned is the codec's own, which owns
/// everything the connection keeps (see [`start_connection`]).
pub fn serve_http1<S>(
    stream: S,
    read: BytesMut,
    downstream: Downstream,
    hcm: Arc<HttpManager>,
    runtime: Arc<Runtime>,
    drain: watch::Receiver<bool>,
    active: crate::observe::http_stats::Active,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The codec's idle timeout starts once no exchange is in flight: no activity to track.
    let opts = hcm.http1.clone();
    let handler = move |req: Request<Body>| {
        // The connection stays counted while the codec keeps its handler.
        let _counted = &active;
        respond(req, hcm.clone(), runtime.clone(), downstream.clone(), None)
    };
    crate::http1::server::serve(stream, read, opts, handler, drain)
}

/// What our HTTP/1 codec needs of a connection manager, made once per manager (its
/// connections share it: see [`HttpManager::http1`]).
pub fn http1_options(
    server_name: Option<HeaderValue>,
    idle_timeout: Option<Duration>,
    upgrades: bool,
    tell_refusals: bool,
) -> crate::http1::server::Options {
    crate::http1::server::Options {
        header_timeout: HEADER_TIMEOUT,
        idle_timeout,
        drain_deadline: DRAIN_DEADLINE,
        server_name,
        upgrades,
        tell_refusals,
    }
}

/// One request through the connection manager: refused before routing, or routed. The
/// response body keeps the request in flight (when its connection tracks that) until it is
/// sent.
async fn respond(
    req: Request<Body>,
    hcm: Arc<HttpManager>,
    runtime: Arc<Runtime>,
    downstream: Downstream,
    in_flight: Option<idle::InFlight>,
) -> http::Response<idle::Tracked> {
    // A request the HTTP/1 codec ended itself (answered already): only logged.
    if let Some(r) = req.extensions().get::<crate::http1::server::Refusal>() {
        if let Some(logs) = &hcm.access_log {
            crate::observe::access_log::body::log_refusal(logs, &downstream, *r);
        }
        let empty = http_body_util::Empty::new().map_err(|never| match never {});
        return http::Response::new(idle::Tracked::new(empty.boxed(), in_flight));
    }
    hcm.stats.request();
    let response = match checks::reject(&req, &hcm) {
        Some(refused) => refused,
        None => router::handle(req, downstream, &hcm, &runtime).await,
    };
    hcm.stats.responded(response.status().as_u16());
    response.map(|body| idle::Tracked::new(body, in_flight))
}

/// Time allowed for a request head once its first byte arrived (hyper's
/// `header_read_timeout` as we set it before our codec).
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// AUTO without ALPN: reads until the bytes are the HTTP/2 preface or cannot be; the
/// protocol and the bytes read. `None` when the connection closed, stayed idle or drained.
async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    idle_timeout: Option<Duration>,
    drain: &mut watch::Receiver<bool>,
) -> Option<(bool, BytesMut)> {
    let mut read = BytesMut::new();
    loop {
        let n = read.len().min(H2_PREFACE.len());
        if read[..n] != H2_PREFACE[..n] {
            return Some((false, read));
        }
        if n == H2_PREFACE.len() {
            return Some((true, read));
        }
        let idle = async {
            match idle_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            more = std::future::poll_fn(|cx| crate::http1::io::poll_read_fresh(stream, cx)) => match more {
                Ok(more) if !more.is_empty() => read.extend_from_slice(&more),
                _ => return None,
            },
            () = idle => return None,
            true = async { drain.wait_for(|d| *d).await.is_ok() } => return None,
        }
    }
}

/// HTTP/2 (h2c or ALPN h2) on hyper.
async fn serve_h2<S>(
    stream: S,
    downstream: Downstream,
    hcm: Arc<HttpManager>,
    runtime: Arc<Runtime>,
    mut drain: watch::Receiver<bool>,
    _counted: crate::observe::http_stats::Active,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = downstream.peer;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().timer(TokioTimer::new());
    let builder = builder.http2_only();
    let activity = idle::Activity::new();
    let idle_timeout = hcm.idle_timeout;
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let in_flight = Some(tracked.start());
        let req = req.map(|b| b.map_err(Into::into).boxed());
        // Boxed where it is built: hyper moves the service's future into the stream's
        // future and that into a task of its own, two copies of it per stream otherwise.
        let (hcm, runtime, downstream) = (hcm.clone(), runtime.clone(), downstream.clone());
        let response = crate::boxed::in_place(|| respond(req, hcm, runtime, downstream, in_flight));
        async move { Ok::<_, Infallible>(response.await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
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
