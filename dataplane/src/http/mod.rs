//! The HTTP connection manager: one hyper connection (HTTP/1.0, 1.1 or h2c per `codec_type`)
//! per accepted socket; each request is routed ([`route`]) and forwarded ([`router`]).

pub mod checks;
pub mod error;
pub mod headers;
pub mod route;
pub mod router;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use crate::config::listener::{Codec, HttpManager};
use crate::runtime::Runtime;

/// Serves one downstream connection until it closes.
pub async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    hcm: Arc<HttpManager>,
    runtime: Arc<Runtime>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(60));
    builder.http2().timer(TokioTimer::new());
    let builder = match hcm.codec {
        Codec::Auto => builder,
        Codec::Http1 => builder.http1_only(),
        Codec::Http2 => builder.http2_only(),
    };
    let service = hyper::service::service_fn(move |req| {
        let (hcm, runtime) = (hcm.clone(), runtime.clone());
        async move {
            if let Some(refused) = checks::reject(&req, &hcm) {
                return Ok::<_, Infallible>(refused);
            }
            Ok(router::handle(req, peer, &hcm, &runtime).await)
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
    }
}
