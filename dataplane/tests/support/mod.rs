//! In-process harness: a tokio HTTP backend that tells what it received, and our dataplane
//! started from a static bootstrap inside the test's runtime.

#![allow(dead_code)]

pub mod pki;
pub mod ports;
pub mod tls;
pub mod tls_yaml;
pub mod xds;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use dataplane::runtime::Runtime;

/// How long a test waits for something that should happen at once on an idle machine; the
/// machine is shared, so this is generous.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A backend answering every request with 200, the request's body as its body, and what it
/// received in `x-seen-*` headers (path, x-forwarded-for, x-forwarded-proto, x-request-id,
/// host), so tests can check what the proxy sent.
pub async fn backend(name: &'static str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(name, req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The backend's behaviour by path: `/slow/<ms>` answers after that delay, `/status/<code>`
/// with that status, `/trailers` with a body and a `grpc-status: 0` trailer; a request with
/// `Upgrade` is switched (101) and echoes what it receives. Otherwise 200 echoing the body.
async fn answer(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    if req.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let resp = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("x-backend", name)
            .body(full(Bytes::new()));
        return Ok(resp.unwrap_or_default());
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let mut status = 200;
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|ms| ms.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path.strip_prefix("/status/").and_then(|c| c.parse().ok()) {
        status = code;
    }
    let mut resp = Response::builder()
        .status(status)
        .header("x-backend", name)
        .header(
            "x-seen-path",
            parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""),
        )
        .header("x-seen-version", format!("{:?}", parts.version));
    for h in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-request-id",
        "host",
        "connection",
        "x-custom",
        "te",
    ] {
        if let Some(v) = parts.headers.get(h) {
            resp = resp.header(format!("x-seen-{h}"), v);
        }
    }
    let body = if path == "/trailers" {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = [
            Ok(hyper::body::Frame::data(Bytes::from_static(b"hi"))),
            Ok(hyper::body::Frame::trailers(trailers)),
        ];
        http_body_util::StreamBody::new(futures_util_stream(frames)).boxed()
    } else {
        full(body)
    };
    Ok(resp.body(body).unwrap_or_default())
}

fn full(b: Bytes) -> BoxBody {
    Full::new(b).boxed()
}

fn futures_util_stream<T: Send + 'static, const N: usize>(
    items: [T; N],
) -> tokio_stream::Iter<std::array::IntoIter<T, N>> {
    tokio_stream::iter(items)
}

/// A local port nobody listens on (bound then released): connecting to it is refused.
pub async fn closed_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    Ok(l.local_addr()?.port())
}

/// Starts the dataplane from a bootstrap YAML: static resources published, the listener
/// manager running. Returns the runtime so tests can look at what is applied.
pub async fn dataplane(bootstrap_yaml: &str) -> anyhow::Result<Arc<Runtime>> {
    let proto = xds_types::format::from_yaml_str(bootstrap_yaml)
        .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    let bootstrap = dataplane::bootstrap::translate(&proto)?;
    let runtime = Arc::new(Runtime::default());
    runtime.publish(bootstrap.statics);
    runtime.set_ready();
    tokio::spawn(dataplane::listener::run(runtime.clone()));
    Ok(runtime)
}

/// Waits until something accepts connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if start.elapsed() > DEADLINE {
            bail!("nothing listening on {addr} after {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free port for a listener the test configures (the bootstrap needs a number; the listener
/// binds with SO_REUSEADDR right after).
pub async fn free_port() -> anyhow::Result<u16> {
    Ok(ports::unassigned_port())
}

/// One HTTP/1.1 request through a fresh client; returns the response with its body collected.
pub async fn send(req: Request<Full<Bytes>>) -> anyhow::Result<Response<Bytes>> {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(DEADLINE, client.request(req))
        .await
        .context("request timed out")??;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

pub fn get(port: u16, path: &str) -> anyhow::Result<Request<Full<Bytes>>> {
    Ok(Request::get(format!("http://127.0.0.1:{port}{path}")).body(Full::new(Bytes::new()))?)
}

/// Writes raw bytes on a fresh connection and returns what comes back until the peer closes
/// (or the deadline passes): for requests an HTTP client library would refuse to send.
pub async fn raw(port: u16, request: &[u8]) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut out))
        .await
        .context("the proxy did not close the connection")??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
