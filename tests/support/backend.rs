//! In-process backends: each answers every request with 200, its own name as the body and in
//! `x-backend`, and echoes the request's path in `x-path`.

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
                let Ok((stream, _)) = listener.accept().await else { continue };
                let name = owned.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let name = name.clone();
                        async move {
                            let response = Response::builder()
                                .header("x-backend", &name)
                                .header("x-path", req.uri().path())
                                .body(Full::new(Bytes::from(name)))
                                .unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend { name: name.to_string(), addr }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
