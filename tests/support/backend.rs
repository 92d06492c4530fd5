//! In-process backends: each answers every request with 200, its own name as the body and in
//! `x-backend`, echoes the request's path in `x-path` and its `host` and `x-*` headers as
//! `x-req-<name>`, and always sends `x-remove-me` (for header removal cases). A path starting
//! with `/slow` answers after 2 s; a backend named `bad` answers 503. A path ending with
//! `/trailers` reads the whole request first: its trailers come back as `x-trailer-<name>`
//! headers, its length as `x-body-len`, and the response ends with a trailer
//! `x-resp-trailer: done` (as gRPC's `grpc-status`).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A running backend; it stops with the test's runtime.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let owned = name.to_string();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let name = owned.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let name = name.clone();
                            async move {
                                if req.uri().path().ends_with("/trailers") {
                                    return Ok::<_, Infallible>(trailers(&name, req).await);
                                }
                                if req.uri().path().starts_with("/slow") {
                                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                                }
                                let status = if name == "bad" { 503 } else { 200 };
                                let mut response = Response::builder()
                                    .status(status)
                                    .header("x-backend", &name)
                                    .header("x-path", req.uri().path())
                                    .header("x-remove-me", "1");
                                for (k, v) in req.headers() {
                                    if k == "host" || k.as_str().starts_with("x-") {
                                        response = response.header(format!("x-req-{k}"), v);
                                    }
                                }
                                Ok::<_, Infallible>(
                                    response.body(Full::new(Bytes::from(name)).boxed()).unwrap(),
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            name: name.to_string(),
            addr,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// The `/trailers` answer: the request's trailers and length in headers, a response trailer.
async fn trailers(
    name: &str,
    req: Request<hyper::body::Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let mut response = Response::builder().header("x-backend", name);
    match req.into_body().collect().await {
        Ok(collected) => {
            for (k, v) in collected.trailers().into_iter().flatten() {
                response = response.header(format!("x-trailer-{k}"), v);
            }
            response = response.header("x-body-len", collected.to_bytes().len());
        }
        Err(e) => response = response.header("x-body-error", e.to_string()),
    }
    let mut end = http::HeaderMap::new();
    end.insert("x-resp-trailer", http::HeaderValue::from_static("done"));
    let frames = [
        Ok::<_, Infallible>(Frame::data(Bytes::from(name.to_string()))),
        Ok(Frame::trailers(end)),
    ];
    let body = StreamBody::new(tokio_stream::iter(frames));
    response.body(BodyExt::boxed(body)).unwrap()
}

/// An upstream that answers every request 503 ("down") and counts the requests it got.
pub async fn counting_503() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let hits = counted.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(503)
                                .body(Full::new(Bytes::from_static(b"down")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, hits)
}
