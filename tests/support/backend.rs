//! In-process backends: each answers every request with 200, its own name as the body and in
//! `x-backend`, echoes the request's path in `x-path` and its `host` and `x-*` headers as
//! `x-req-<name>`, and always sends `x-remove-me` (for header removal cases). A path starting
//! with `/slow` answers after 2 s; a backend named `bad` answers 503.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
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
                                    response.body(Full::new(Bytes::from(name))).unwrap(),
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
