//! Connections end as in Envoy: a removed listener stops accepting, the request in flight on
//! an open connection completes, and the connection is then closed; an idle connection is
//! closed after the connection manager's idle_timeout.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use support::{DEADLINE, backend, dataplane, free_port, wait_listening};

fn bootstrap(listen: u16, backend: u16, idle: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          common_http_protocol_options: {{ idle_timeout: {idle} }}
          route_config:
            virtual_hosts: [ {{ name: all, domains: ["*"], routes: [ {{ match: {{ prefix: / }}, route: {{ cluster: web }} }} ] }} ]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: web
    type: STATIC
    load_assignment:
      cluster_name: web
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {backend} }} }} }} }} ] }} ]
"#
    )
}

#[tokio::test]
async fn a_removed_listener_finishes_the_request_in_flight_then_closes() -> anyhow::Result<()> {
    let web = backend("web").await?;
    let listen = free_port().await?;
    let runtime = dataplane(&bootstrap(listen, web.port(), "3600s")).await?;
    wait_listening(([127, 0, 0, 1], listen).into()).await?;

    let stream = TcpStream::connect(("127.0.0.1", listen)).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(conn);
    let request = http::Request::get("/slow/500")
        .header("host", "a")
        .body(Empty::new())?;
    let in_flight = tokio::spawn(async move { sender.send_request(request).await });

    // Once the request is at the upstream, remove the listener.
    let start = Instant::now();
    loop {
        let snapshot = runtime.load();
        let host = snapshot
            .clusters
            .get("web")
            .and_then(|c| c.all.first())
            .context("no host")?;
        if host.active.load(Ordering::Relaxed) == 1 {
            break;
        }
        if start.elapsed() > DEADLINE {
            bail!("the request never reached the upstream");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut config = runtime.load().config.clone();
    config.listeners.clear();
    runtime.publish(config);

    let resp = tokio::time::timeout(DEADLINE, in_flight).await???;
    assert_eq!(resp.status(), 200, "the request in flight completes");
    let body = resp.into_body().collect().await?.to_bytes();
    assert!(body.is_empty());
    // Then the proxy closes the connection (the client's connection task ends).
    tokio::time::timeout(DEADLINE, connection)
        .await
        .context("the drained connection stayed open")???;
    // And no longer accepts.
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", listen)).await.is_ok() {
        if start.elapsed() > DEADLINE {
            bail!("the removed listener still accepts");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let web = backend("web").await?;
    let listen = free_port().await?;
    dataplane(&bootstrap(listen, web.port(), "0.3s")).await?;
    wait_listening(([127, 0, 0, 1], listen).into()).await?;

    let stream = TcpStream::connect(("127.0.0.1", listen)).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(conn);
    let started = Instant::now();
    // A request that outlasts the idle timeout is not cut: the connection is busy.
    let request = http::Request::get("/slow/600")
        .header("host", "a")
        .body(Empty::new())?;
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(request)).await??;
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await?;
    // Then, idle, it is closed by the proxy.
    tokio::time::timeout(DEADLINE, connection)
        .await
        .context("the idle connection stayed open")???;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed only after the idle timeout: {:?}",
        started.elapsed()
    );
    Ok(())
}
