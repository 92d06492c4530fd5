//! Protocol features through the proxy, each as Envoy 1.40 behaves with the same bootstrap:
//! h2c downstream, HTTP/2 upstream with trailers end to end, WebSocket upgrade, route timeout,
//! retries, tcp_proxy.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use dataplane::runtime::Runtime;
use support::{DEADLINE, backend, dataplane, free_port, get, send, wait_listening};

fn bootstrap(http: u16, tcp: u16, backend: u16) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {http} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          upgrade_configs: [ {{ upgrade_type: websocket }} ]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /timeout }}
                route: {{ cluster: web, timeout: 0.3s, prefix_rewrite: /slow/2000 }}
              - match: {{ prefix: /retry }}
                route:
                  cluster: retried
                  prefix_rewrite: /status/503
                  retry_policy: {{ retry_on: 5xx, num_retries: 2, retry_back_off: {{ base_interval: 0.01s }} }}
              - match: {{ prefix: /h2 }}
                route: {{ cluster: web_h2, prefix_rewrite: /trailers }}
              - match: {{ prefix: / }}
                route: {{ cluster: web }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  - name: tcp
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {tcp} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: web
  clusters:
  - name: web
    type: STATIC
    load_assignment:
      cluster_name: web
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }} }} ] }} ]
  - name: retried
    type: STATIC
    load_assignment:
      cluster_name: retried
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }} }} ] }} ]
  - name: web_h2
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: web_h2
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }} }} ] }} ]
"#
    )
}

struct Proxy {
    http: u16,
    tcp: u16,
    runtime: Arc<Runtime>,
}

async fn start() -> anyhow::Result<Proxy> {
    let web = backend("web").await?;
    let (http, tcp) = (free_port().await?, free_port().await?);
    let runtime = dataplane(&bootstrap(http, tcp, web.port())).await?;
    wait_listening(([127, 0, 0, 1], http).into()).await?;
    wait_listening(([127, 0, 0, 1], tcp).into()).await?;
    Ok(Proxy { http, tcp, runtime })
}

#[tokio::test]
async fn h2c_downstream_with_prior_knowledge() -> anyhow::Result<()> {
    let p = start().await?;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(DEADLINE, client.request(get(p.http, "/plain")?)).await??;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    // The web cluster speaks HTTP/1.1 upstream whatever the downstream protocol.
    assert_eq!(resp.headers()["x-seen-version"], "HTTP/1.1");
    Ok(())
}

#[tokio::test]
async fn http2_upstream_carries_trailers_back() -> anyhow::Result<()> {
    let p = start().await?;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(DEADLINE, client.request(get(p.http, "/h2")?)).await??;
    assert_eq!(resp.headers()["x-seen-version"], "HTTP/2.0");
    let collected = resp.into_body().collect().await?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(collected.to_bytes().as_ref(), b"hi");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );
    Ok(())
}

#[tokio::test]
async fn route_timeout_is_504_upstream_request_timeout() -> anyhow::Result<()> {
    let p = start().await?;
    let resp = send(get(p.http, "/timeout")?).await?;
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(resp.body().as_ref(), b"upstream request timeout");
    Ok(())
}

#[tokio::test]
async fn retries_5xx_num_retries_times_then_answers_the_last_response() -> anyhow::Result<()> {
    let p = start().await?;
    let resp = send(get(p.http, "/retry")?).await?;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()["x-backend"],
        "web",
        "the upstream's own 503, not a local reply"
    );
    let snapshot = p.runtime.load();
    let host = snapshot
        .clusters
        .get("retried")
        .and_then(|c| c.all.first())
        .ok_or_else(|| anyhow::anyhow!("no host"))?;
    assert_eq!(
        host.requests.load(Ordering::Relaxed),
        3,
        "1 try + num_retries 2"
    );
    Ok(())
}

#[tokio::test]
async fn websocket_upgrade_when_upgrade_configs_allow_it() -> anyhow::Result<()> {
    let p = start().await?;
    let mut s = TcpStream::connect(("127.0.0.1", p.http)).await?;
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        tokio::time::timeout(DEADLINE, s.read_exact(&mut byte)).await??;
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await?;
    let mut echo = [0u8; 4];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut echo)).await??;
    assert_eq!(&echo, b"ping");
    Ok(())
}

#[tokio::test]
async fn tcp_proxy_copies_both_ways_and_passes_the_half_close() -> anyhow::Result<()> {
    let p = start().await?;
    let mut s = TcpStream::connect(("127.0.0.1", p.tcp)).await?;
    s.write_all(b"GET /over-tcp HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await?;
    s.shutdown().await?;
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await??;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("x-seen-path: /over-tcp"),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn a_request_body_is_replayed_on_every_retry() -> anyhow::Result<()> {
    let p = start().await?;
    let req = http::Request::post(format!("http://127.0.0.1:{}/retry", p.http))
        .body(Full::new(Bytes::from_static(b"payload")))?;
    let resp = send(req).await?;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The backend echoes the body: the last try carried it whole.
    assert_eq!(resp.body().as_ref(), b"payload");
    let snapshot = p.runtime.load();
    let host = snapshot
        .clusters
        .get("retried")
        .and_then(|c| c.all.first())
        .ok_or_else(|| anyhow::anyhow!("no host"))?;
    assert_eq!(
        host.requests.load(Ordering::Relaxed),
        3,
        "1 try + num_retries 2, each with the body"
    );
    Ok(())
}

/// An HTTP/1-only server behind a cluster that speaks HTTP/2: Envoy 1.40 answers 502
/// "... reset reason: protocol error".
#[tokio::test]
async fn an_upstream_protocol_error_is_502() -> anyhow::Result<()> {
    let h1_only = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = h1_only.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = h1_only.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
                // Stay open until the client gives up, as an HTTP/1 server would.
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let (http, tcp) = (free_port().await?, free_port().await?);
    dataplane(&bootstrap(http, tcp, port)).await?;
    wait_listening(([127, 0, 0, 1], http).into()).await?;
    let resp = send(get(http, "/h2")?).await?;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        resp.body().as_ref(),
        b"upstream connect error or disconnect/reset before headers. reset reason: protocol error"
    );
    Ok(())
}
