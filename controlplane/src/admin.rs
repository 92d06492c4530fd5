//! The admin HTTP endpoint: `GET /status` (JSON: the source, the groups, every connected
//! proxy with what it was sent, ACKed and NACKed) and `GET /ready`.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::debug;

use crate::cache::SnapshotCache;
use crate::source::SourceStatus;
use crate::status::ProxyRegistry;

/// What the admin endpoint reports on.
#[derive(Debug, Clone)]
pub struct Admin {
    pub cache: SnapshotCache,
    pub proxies: ProxyRegistry,
    pub source: SourceStatus,
    /// The xDS listener's TLS files, when it serves TLS.
    pub tls: Option<crate::tls::TlsStatus>,
}

impl Admin {
    /// The `/status` document.
    pub fn status(&self) -> serde_json::Value {
        let groups: Vec<_> = self
            .cache
            .groups()
            .into_iter()
            .map(|(origin, g)| {
                let counts: std::collections::BTreeMap<_, _> = xds_types::type_url::ALL
                    .iter()
                    .map(|u| (xds_types::type_url::short_name(u), g.snapshot.resources(u).len()))
                    .collect();
                json!({ "name": g.name, "origin": origin, "selector": g.selector, "version": g.snapshot.version, "resources": counts })
            })
            .collect();
        let tls = self.tls.as_ref().map(|t| t.get());
        json!({ "source": self.source.get(), "groups": groups, "proxies": self.proxies.list(), "tls": tls })
    }

    /// Serves until `shutdown` becomes true.
    pub async fn serve(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => { debug!(error = %e, "admin accept failed"); continue }
                },
                _ = shutdown.changed() => return,
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(&req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let (status, content_type, body) = match req.uri().path() {
            "/status" => (
                StatusCode::OK,
                "application/json",
                serde_json::to_vec_pretty(&self.status()).unwrap_or_default(),
            ),
            // Ready once there is something to serve: a directory load went through or a group
            // was set through the management API. Until then a proxy would get nothing.
            "/ready" if self.source.get().loads > 0 || !self.cache.groups().is_empty() => {
                (StatusCode::OK, "text/plain", b"LIVE\n".to_vec())
            }
            "/ready" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"NOT READY: no config loaded yet (see /status)\n".to_vec(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found: try /status or /ready\n".to_vec(),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::source::{LoadOptions, Versioner, watch::reload};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    #[tokio::test]
    async fn ready_after_the_first_load_and_status_shows_source_and_groups() {
        let admin = Admin {
            cache: SnapshotCache::new(),
            proxies: ProxyRegistry::new(),
            source: SourceStatus::default(),
            tls: None,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(admin.clone().serve(listener, shutdown));
        assert_eq!(
            get(addr, "/ready").await.0,
            "HTTP/1.1 503 Service Unavailable"
        );

        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
        let mut versioner = Versioner::default();
        let options = LoadOptions::default();
        assert!(reload(
            &dir,
            options,
            &mut versioner,
            &admin.cache,
            &admin.source
        ));
        assert_eq!(get(addr, "/ready").await.0, "HTTP/1.1 200 OK");

        let (line, body) = get(addr, "/status").await;
        assert_eq!(line, "HTTP/1.1 200 OK");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(status["source"]["loads"], 1);
        assert_eq!(status["source"]["last_error"], serde_json::Value::Null);
        let group = &status["groups"][0];
        assert_eq!(group["name"], "default");
        assert_eq!(group["origin"], "files");
        assert_eq!(group["resources"]["LDS"], 1);
        assert!(group["version"].as_str().unwrap().starts_with("1-"));
        assert_eq!(status["proxies"], serde_json::json!([]));
        assert_eq!(get(addr, "/nope").await.0, "HTTP/1.1 404 Not Found");

        stop.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
