//! A static bootstrap, requests through the proxy to in-process backends: what Envoy 1.40
//! answers for the same bootstrap (routes, local replies, forwarded headers).

mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;

use support::{backend, closed_port, dataplane, free_port, get, send, wait_listening};

/// A listener with an inline route table: `/direct` answers itself, `/dead` goes to a cluster
/// whose only endpoint refuses connections, everything else on host `*` to the backend.
fn bootstrap(listen: u16, backend: u16, dead: u16) -> String {
    format!(
        r#"
node: {{ id: test-node, cluster: test }}
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: /direct }}
                direct_response: {{ status: 418, body: {{ inline_string: "short and stout" }} }}
              - match: {{ prefix: /dead }}
                route: {{ cluster: dead }}
              - match: {{ prefix: /old }}
                route: {{ cluster: web, prefix_rewrite: /new }}
              - match: {{ prefix: / }}
                route: {{ cluster: web }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: web
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: web
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }}
  - name: dead
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: dead
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {dead} }} }} }}
"#
    )
}

async fn start() -> anyhow::Result<u16> {
    let web = backend("web").await?;
    let listen = free_port().await?;
    dataplane(&bootstrap(listen, web.port(), closed_port().await?)).await?;
    wait_listening(([127, 0, 0, 1], listen).into()).await?;
    Ok(listen)
}

#[tokio::test]
async fn forwards_to_the_static_cluster_with_envoy_headers() -> anyhow::Result<()> {
    let port = start().await?;
    let resp = send(get(port, "/hello?x=1")?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["x-backend"], "web");
    assert_eq!(h["x-seen-path"], "/hello?x=1");
    assert_eq!(h["x-seen-x-forwarded-proto"], "http");
    assert!(
        h.contains_key("x-seen-x-request-id"),
        "x-request-id is generated when absent: {h:?}"
    );
    assert!(h.contains_key("x-envoy-upstream-service-time"), "{h:?}");
    assert_eq!(h["server"], "envoy");
    Ok(())
}

#[tokio::test]
async fn streams_a_request_body_and_answers_with_the_upstream_body() -> anyhow::Result<()> {
    let port = start().await?;
    let body = Bytes::from(vec![b'x'; 256 * 1024]);
    let req =
        Request::post(format!("http://127.0.0.1:{port}/upload")).body(Full::new(body.clone()))?;
    let resp = send(req).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.body().len(), body.len());
    assert_eq!(resp.body(), &body);
    Ok(())
}

#[tokio::test]
async fn keeps_an_existing_request_id_and_rewrites_the_prefix() -> anyhow::Result<()> {
    let port = start().await?;
    let req = Request::get(format!("http://127.0.0.1:{port}/old/page"))
        .header("x-request-id", "abc-123")
        .body(Full::new(Bytes::new()))?;
    let resp = send(req).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-seen-x-request-id"], "abc-123");
    assert_eq!(resp.headers()["x-seen-path"], "/new/page");
    Ok(())
}

#[tokio::test]
async fn direct_response() -> anyhow::Result<()> {
    let port = start().await?;
    let resp = send(get(port, "/direct")?).await?;
    assert_eq!(resp.status().as_u16(), 418);
    assert_eq!(resp.body().as_ref(), b"short and stout");
    Ok(())
}

#[tokio::test]
async fn connect_failure_is_503_with_envoys_body() -> anyhow::Result<()> {
    let port = start().await?;
    let resp = send(get(port, "/dead")?).await?;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = String::from_utf8_lossy(resp.body());
    assert!(
        body.starts_with("upstream connect error or disconnect/reset before headers"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn an_inline_route_to_an_unknown_cluster_refuses_the_bootstrap() -> anyhow::Result<()> {
    // Envoy 1.40 refuses to start with this bootstrap: "route: unknown cluster 'nowhere'".
    let yaml = bootstrap(free_port().await?, 1, 2).replace("cluster: dead }", "cluster: nowhere }");
    let proto = xds_types::format::from_yaml_str(&yaml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let err = match dataplane::bootstrap::translate(&proto) {
        Ok(_) => anyhow::bail!("the bootstrap was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("route: unknown cluster 'nowhere'"), "{err}");
    assert!(err.contains("listener \"ingress\""), "{err}");
    Ok(())
}

/// Requests Envoy refuses before routing, with Envoy 1.40's status, body and a closed
/// connection (`support::raw` returns once the proxy closes).
#[tokio::test]
async fn refuses_what_envoys_codec_refuses() -> anyhow::Result<()> {
    let port = start().await?;
    let cases: [(&[u8], &str, &str); 3] = [
        (
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            " 426 ",
            "Upgrade Required",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", " 400 ", ""),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            " 403 ",
            "",
        ),
    ];
    for (request, status, body) in cases {
        let answer = support::raw(port, request).await?;
        let (head, rest) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(
            head.lines().next().is_some_and(|l| l.contains(status)),
            "{answer}"
        );
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        assert_eq!(rest, body, "{answer}");
    }
    Ok(())
}
