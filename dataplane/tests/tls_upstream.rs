//! TLS to upstreams, with certificates made by the test (rcgen): mTLS to a TLS backend, an
//! upstream certificate that fails validation (503 with Envoy's body, and a counter),
//! auto_sni / auto_san_validation, and tcp_proxy with TLS (SNI passthrough, origination).

mod support;

use std::time::{Duration, Instant};

use support::pki::Ca;
use support::tls::{Client, Session, backend, install_provider, presented};
use support::tls_yaml::{bootstrap, chain, cluster, hcm, listener};
use support::{dataplane, free_port, get, send, wait_listening};

async fn start(
    yaml: &str,
    port: u16,
) -> anyhow::Result<std::sync::Arc<dataplane::runtime::Runtime>> {
    install_provider();
    let runtime = dataplane(yaml).await?;
    wait_listening(([127, 0, 0, 1], port).into()).await?;
    Ok(runtime)
}

#[tokio::test]
async fn upstream_mtls_to_a_tls_backend_and_a_bad_certificate_is_503() -> anyhow::Result<()> {
    install_provider();
    let ca = Ca::new("backend ca");
    let clients = Ca::new("proxy ca");
    let backend_leaf = ca.leaf("backend", &["backend.test"], &[], false);
    let proxy_leaf = clients.leaf("proxy", &[], &["spiffe://test/proxy"], false);
    let (addr, seen) = backend(&backend_leaf, Some(&clients.pem)).await?;
    let upstream_tls = |ca_pem: &str, san: &str| {
        format!(
            r#", transport_socket: {{ name: envoy.transport_sockets.tls, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: backend.test, common_tls_context: {{ tls_certificates: [ {} ], validation_context: {{ trusted_ca: {{ inline_string: {} }}, match_typed_subject_alt_names: [ {{ san_type: DNS, matcher: {{ exact: "{san}" }} }} ] }} }} }} }}"#,
            support::tls_yaml::cert(&proxy_leaf),
            support::pki::yaml(ca_pem)
        )
    };
    let other_ca = Ca::new("not the backend's ca");
    let clusters = [
        cluster("good", addr.port(), &upstream_tls(&ca.pem, "backend.test")),
        cluster(
            "untrusted",
            addr.port(),
            &upstream_tls(&other_ca.pem, "backend.test"),
        ),
        cluster(
            "wrong-san",
            addr.port(),
            &upstream_tls(&ca.pem, "elsewhere.test"),
        ),
    ];
    // One plaintext listener per cluster.
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for c in ["good", "untrusted", "wrong-san"] {
        let p = free_port().await?;
        listeners.push(listener(c, p, &[chain(c, &[], "", None, &hcm("", c))], ""));
        ports.push(p);
    }
    let runtime = start(&bootstrap(&listeners, &clusters), ports[0]).await?;

    let resp = send(get(ports[0], "/")?).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body().as_ref(), b"secret hello");
    let s = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(s.sni.as_deref(), Some("backend.test"));
    assert!(s.client_cert, "the proxy presented its client certificate");

    let body = "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
    for (i, name) in [(1, "untrusted"), (2, "wrong-san")] {
        wait_listening(([127, 0, 0, 1], ports[i]).into()).await?;
        let started = Instant::now();
        let resp = send(get(ports[i], "/")?).await?;
        assert_eq!(resp.status(), 503, "{name}");
        assert_eq!(
            resp.body().as_ref(),
            body.as_bytes(),
            "{name}: Envoy 1.40's body"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name}: no hang"
        );
    }
    let snapshot = runtime.load();
    let stats = |c: &str| {
        snapshot.config.clusters[c]
            .tls
            .as_ref()
            .map(|t| t.stats.clone())
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let untrusted = stats("untrusted").ok_or_else(|| anyhow::anyhow!("tls"))?;
    assert_eq!(load(&untrusted.fail_verify_error), 1);
    let wrong = stats("wrong-san").ok_or_else(|| anyhow::anyhow!("tls"))?;
    assert_eq!(load(&wrong.fail_verify_san), 1);
    Ok(())
}

/// `auto_sni` sends the request's host as SNI; `auto_san_validation` checks the upstream
/// certificate against it.
#[tokio::test]
async fn auto_sni_and_auto_san_validation() -> anyhow::Result<()> {
    install_provider();
    let ca = Ca::new("ca");
    let leaf = ca.leaf("b", &["auto.test"], &[], false);
    let (addr, seen) = backend(&leaf, None).await?;
    let tls = format!(
        r#", typed_extension_protocol_options: {{ envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {{ "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {{ http_protocol_options: {{}} }}, upstream_http_protocol_options: {{ auto_sni: true, auto_san_validation: true }} }} }}, transport_socket: {{ name: envoy.transport_sockets.tls, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, common_tls_context: {{ validation_context: {{ trusted_ca: {{ inline_string: {} }} }} }} }} }}"#,
        support::pki::yaml(&ca.pem)
    );
    let port = free_port().await?;
    let l = listener(
        "auto",
        port,
        &[chain("c", &[], "", None, &hcm("", "up"))],
        "",
    );
    start(&bootstrap(&[l], &[cluster("up", addr.port(), &tls)]), port).await?;
    let req = |host: &str| -> anyhow::Result<http::Request<http_body_util::Full<bytes::Bytes>>> {
        Ok(http::Request::get(format!("http://127.0.0.1:{port}/"))
            .header("host", host)
            .body(http_body_util::Full::new(bytes::Bytes::new()))?)
    };
    let resp = send(req("auto.test")?).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        seen.lock()
            .map(|s| s.sni.clone())
            .unwrap_or_default()
            .as_deref(),
        Some("auto.test")
    );
    let resp = send(req("other.test")?).await?;
    assert_eq!(resp.status(), 503, "the certificate is not for other.test");
    Ok(())
}

fn tcp_proxy(cluster: &str) -> String {
    format!(
        r#"{{ name: envoy.filters.network.tcp_proxy, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: {cluster} }} }}"#
    )
}

/// tcp_proxy with TLS: SNI passthrough (the chain is picked by the ClientHello, which then
/// reaches the backend untouched), and TLS originated to the backend for plaintext clients.
#[tokio::test]
async fn tcp_proxy_sni_passthrough_and_upstream_tls() -> anyhow::Result<()> {
    install_provider();
    let ca = Ca::new("backend ca");
    let leaf = ca.leaf("backend", &["pass.example"], &[], false);
    let (addr, seen) = backend(&leaf, None).await?;
    let originate = format!(
        r#", transport_socket: {{ name: envoy.transport_sockets.tls, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: pass.example, common_tls_context: {{ validation_context: {{ trusted_ca: {{ inline_string: {} }} }} }} }} }}"#,
        support::pki::yaml(&ca.pem)
    );
    let clusters = [
        cluster("raw", addr.port(), ""),
        cluster("tls", addr.port(), &originate),
    ];
    let port = free_port().await?;
    let chains = [
        chain("pass", &["pass.example"], "", None, &tcp_proxy("raw")),
        chain("originate", &[], "raw_buffer", None, &tcp_proxy("tls")),
    ];
    start(
        &bootstrap(&[listener("tcp", port, &chains, "")], &clusters),
        port,
    )
    .await?;

    // Passthrough: the backend's own certificate, end to end.
    let stream = Client::new(&ca.pem, "pass.example").connect(port).await?;
    assert!(presented(&stream, &leaf), "the backend terminates TLS");
    let resp = Session::start(stream)
        .await?
        .get("pass.example", "/")
        .await?;
    assert_eq!(resp.body().as_ref(), b"secret hello");
    // Plaintext in, TLS to the backend.
    let resp = send(get(port, "/")?).await?;
    assert_eq!(resp.body().as_ref(), b"secret hello");
    assert_eq!(
        seen.lock()
            .map(|s| s.sni.clone())
            .unwrap_or_default()
            .as_deref(),
        Some("pass.example")
    );
    Ok(())
}
