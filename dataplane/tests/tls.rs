//! TLS on the dataplane's listeners, with certificates made by the test (rcgen): SNI picks
//! the filter chain and certificate, TLS and plaintext share a port, HTTP/2 over TLS by ALPN,
//! RSA/ECDSA by client capability, client certificates (good, missing, wrong), resumption,
//! the peer's identity in headers, static secrets, and bad input (malformed ClientHello, a
//! stalled handshake, bad certificates). Upstream TLS is in `tls_upstream.rs`.

mod support;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::pki::{Ca, Leaf};
use support::tls::{Client, Session, install_provider, presented};
use support::tls_yaml::{bootstrap, chain, cluster, downstream, hcm, listener};
use support::{DEADLINE, dataplane, free_port, get, send, wait_listening};

struct Names {
    ca: Ca,
    a: Leaf,
    b: Leaf,
    wild: Leaf,
    fallback: Leaf,
}

fn names() -> Names {
    let ca = Ca::new("test ca");
    Names {
        a: ca.leaf("a", &["a.example.com"], &[], false),
        b: ca.leaf("b", &["b.example.com"], &[], false),
        wild: ca.leaf("wild", &["*.wild.example"], &[], false),
        fallback: ca.leaf("fallback", &["fallback.example", "127.0.0.1"], &[], false),
        ca,
    }
}

/// Chains for a.example.com, b.example.com and *.wild.example, each its own certificate and
/// answer; `catch_all`: also a TLS chain without server names, and a plaintext one.
fn sni_listener(n: &Names, port: u16, catch_all: bool) -> String {
    let mut chains = vec![
        chain(
            "a",
            &["a.example.com"],
            "",
            Some(&downstream(&[&n.a], "", "")),
            &hcm("chain-a", ""),
        ),
        chain(
            "b",
            &["b.example.com"],
            "",
            Some(&downstream(&[&n.b], "", "")),
            &hcm("chain-b", ""),
        ),
        chain(
            "wild",
            &["*.wild.example"],
            "",
            Some(&downstream(&[&n.wild], "", "")),
            &hcm("chain-wild", ""),
        ),
    ];
    if catch_all {
        chains.push(chain(
            "any-tls",
            &[],
            "tls",
            Some(&downstream(&[&n.fallback], "", "")),
            &hcm("chain-any", ""),
        ));
        chains.push(chain(
            "plain",
            &[],
            "raw_buffer",
            None,
            &hcm("chain-plain", ""),
        ));
    }
    listener("sni", port, &chains, "")
}

async fn start(
    yaml: &str,
    port: u16,
) -> anyhow::Result<std::sync::Arc<dataplane::runtime::Runtime>> {
    install_provider();
    let runtime = dataplane(yaml).await?;
    wait_listening(([127, 0, 0, 1], port).into()).await?;
    Ok(runtime)
}

/// The answer of the chain an SNI lands on, and whether it presented `leaf`.
async fn ask(port: u16, client: &Client, leaf: &Leaf) -> anyhow::Result<(String, bool)> {
    let stream = client.connect(port).await?;
    let served = presented(&stream, leaf);
    let mut session = Session::start(stream).await?;
    let host = client.sni.clone().unwrap_or_else(|| "127.0.0.1".into());
    let resp = session.get(&host, "/").await?;
    Ok((String::from_utf8_lossy(resp.body()).into_owned(), served))
}

#[tokio::test]
async fn sni_picks_the_chain_and_its_certificate() -> anyhow::Result<()> {
    let n = names();
    let port = free_port().await?;
    start(&bootstrap(&[sni_listener(&n, port, true)], &[]), port).await?;
    let ca = n.ca.pem.clone();
    for (sni, leaf, answer) in [
        ("a.example.com", &n.a, "chain-a"),
        ("b.example.com", &n.b, "chain-b"),
        ("x.wild.example", &n.wild, "chain-wild"),
        ("fallback.example", &n.fallback, "chain-any"),
    ] {
        let (body, served) = ask(port, &Client::new(&ca, sni), leaf).await?;
        assert_eq!(body, answer, "SNI {sni}");
        assert!(served, "SNI {sni}: the chain's certificate");
    }
    // No SNI: the chain without server names.
    let client = Client {
        ca: ca.clone(),
        ..Default::default()
    };
    assert_eq!(ask(port, &client, &n.fallback).await?.0, "chain-any");
    // An unknown name goes to the chain without server names; its certificate does not
    // cover the name, so a verifying client refuses it, as with Envoy.
    let err = Client::new(&ca, "unknown.org").connect(port).await.err();
    assert!(
        err.is_some_and(|e| format!("{e:#}").contains("not valid for name")),
        "the fallback certificate is for another name"
    );
    // Plaintext on the same port: the raw_buffer chain.
    let resp = send(get(port, "/")?).await?;
    assert_eq!(resp.body().as_ref(), b"chain-plain");
    Ok(())
}

#[tokio::test]
async fn unknown_name_without_a_catch_all_fails_the_handshake() -> anyhow::Result<()> {
    let n = names();
    let port = free_port().await?;
    start(&bootstrap(&[sni_listener(&n, port, false)], &[]), port).await?;
    assert_eq!(
        ask(port, &Client::new(&n.ca.pem, "a.example.com"), &n.a)
            .await?
            .0,
        "chain-a"
    );
    let refused = Client::new(&n.ca.pem, "unknown.org").connect(port).await;
    assert!(refused.is_err(), "no chain: the connection is closed");
    let no_sni = Client {
        ca: n.ca.pem.clone(),
        ..Default::default()
    };
    assert!(no_sni.connect(port).await.is_err());
    Ok(())
}

#[tokio::test]
async fn alpn_h2_speaks_http2_over_tls_and_ecdsa_or_rsa_by_client() -> anyhow::Result<()> {
    let ca = Ca::new("ca");
    let rsa = ca.leaf("rsa", &["dual.example"], &[], true);
    let ecdsa = ca.leaf("ecdsa", &["dual.example"], &[], false);
    let port = free_port().await?;
    let tls = downstream(
        &[&rsa, &ecdsa],
        r#", alpn_protocols: ["h2", "http/1.1"]"#,
        "",
    );
    let l = listener(
        "dual",
        port,
        &[chain("c", &[], "", Some(&tls), &hcm("dual", ""))],
        "",
    );
    start(&bootstrap(&[l], &[]), port).await?;

    let mut client = Client::new(&ca.pem, "dual.example");
    client.alpn = vec!["h2", "http/1.1"];
    let stream = client.connect(port).await?;
    assert!(
        presented(&stream, &ecdsa),
        "a client that verifies ECDSA gets the ECDSA certificate"
    );
    let mut session = Session::start(stream).await?;
    let resp = session.get("dual.example", "/").await?;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.body().as_ref(), b"dual");

    client.alpn = vec!["http/1.1"];
    client.rsa_only = true;
    let stream = client.connect(port).await?;
    assert!(
        presented(&stream, &rsa),
        "an RSA-only client gets the RSA certificate"
    );
    let resp = Session::start(stream)
        .await?
        .get("dual.example", "/")
        .await?;
    assert_eq!(resp.version(), http::Version::HTTP_11);
    Ok(())
}

#[tokio::test]
async fn client_certificates_good_missing_wrong() -> anyhow::Result<()> {
    let ca = Ca::new("server ca");
    let clients = Ca::new("client ca");
    let server = ca.leaf("server", &["mtls.example"], &[], false);
    let good = clients.leaf("good", &[], &["spiffe://test/good"], false);
    let wrong_san = clients.leaf("other", &[], &["spiffe://test/other"], false);
    let stranger = Ca::new("stranger ca").leaf("stranger", &[], &["spiffe://test/good"], false);
    let port = free_port().await?;
    let common = format!(
        r#", validation_context: {{ trusted_ca: {{ inline_string: {} }}, match_typed_subject_alt_names: [ {{ san_type: URI, matcher: {{ prefix: "spiffe://test/good" }} }} ] }}"#,
        support::pki::yaml(&clients.pem)
    );
    let tls = downstream(&[&server], &common, ", require_client_certificate: true");
    let l = listener(
        "mtls",
        port,
        &[chain("c", &[], "", Some(&tls), &hcm("welcome", ""))],
        "",
    );
    start(&bootstrap(&[l], &[]), port).await?;

    let mut client = Client::new(&ca.pem, "mtls.example");
    client.cert = Some(good);
    assert_eq!(ask(port, &client, &server).await?.0, "welcome");
    for (what, cert) in [
        ("missing", None),
        ("wrong SAN", Some(wrong_san)),
        ("unknown CA", Some(stranger)),
    ] {
        client.cert = cert;
        // In TLS 1.3 the client may finish before the server's alert: the refusal shows on
        // the first request at the latest.
        let refused = match client.connect(port).await {
            Err(_) => true,
            Ok(stream) => match Session::start(stream).await {
                Err(_) => true,
                Ok(mut s) => s.get("mtls.example", "/").await.is_err(),
            },
        };
        assert!(refused, "{what} client certificate is refused");
    }
    Ok(())
}

#[tokio::test]
async fn malformed_hello_and_stalled_handshake_are_closed() -> anyhow::Result<()> {
    let n = names();
    let port = free_port().await?;
    let l = sni_listener(&n, port, true);
    // listener_filters_timeout is a listener field: add it at the end.
    let l = format!(
        "{}, listener_filters_timeout: 0.3s }}",
        l.trim_end().trim_end_matches('}')
    );
    start(&bootstrap(&[l], &[]), port).await?;

    // A handshake record whose ClientHello lies about its lengths.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0xff, 0xff,
    ])
    .await?;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok_and(|r| r.is_ok() || r.is_err()),
        "closed, not left open"
    );

    // A client that sends half a ClientHello and stalls is closed at the timeout.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await?;
    let started = Instant::now();
    let closed = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the stalled client is closed");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // The listener still serves.
    let (body, _) = ask(port, &Client::new(&n.ca.pem, "a.example.com"), &n.a).await?;
    assert_eq!(body, "chain-a");
    Ok(())
}

/// A bootstrap the dataplane must refuse, and what the error must name.
fn refused(yaml: &str) -> String {
    let proto = xds_types::format::from_yaml_str(yaml);
    match proto {
        Err(e) => format!("{e}"),
        Ok(p) => match dataplane::bootstrap::translate(&p) {
            Ok(_) => String::new(),
            Err(e) => format!("{e:#}"),
        },
    }
}

#[test]
fn bad_tls_config_is_refused_naming_the_field() {
    let ca = Ca::new("ca");
    let leaf = ca.leaf("l", &["l.example"], &[], false);
    let other = ca.leaf("o", &["o.example"], &[], false);
    let mismatched = Leaf {
        cert: leaf.cert.clone(),
        key: other.key.clone(),
    };
    let with = |tls: &str| {
        bootstrap(
            &[listener(
                "bad",
                1,
                &[chain("c", &[], "", Some(tls), &hcm("x", ""))],
                "",
            )],
            &[],
        )
    };
    let err = refused(&with(&downstream(&[&mismatched], "", "")));
    assert!(
        err.contains("listener \"bad\"")
            && err.contains("filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].private_key")
            && err.contains("does not match"),
        "{err}"
    );
    let missing = r#"{ name: envoy.transport_sockets.tls, typed_config: { "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, common_tls_context: { tls_certificates: [ { certificate_chain: { filename: /nonexistent/cert.pem }, private_key: { filename: /nonexistent/key.pem } } ] } } }"#;
    let err = refused(&with(missing));
    assert!(
        err.contains("certificate_chain.filename") && err.contains("/nonexistent/cert.pem"),
        "{err}"
    );
    let err = refused(&with(&downstream(
        &[&leaf],
        r#", tls_params: { cipher_suites: ["ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA"] }"#,
        "",
    )));
    assert!(
        err.contains("tls_params.cipher_suites[1]") && err.contains("AES128-SHA"),
        "{err}"
    );
    let err = refused(&with(&downstream(
        &[&leaf],
        "",
        ", require_client_certificate: true",
    )));
    assert!(err.contains("require_client_certificate"), "{err}");
    let partial = bootstrap(
        &[listener(
            "bad",
            1,
            &[chain("c", &["a*.example"], "", None, &hcm("x", ""))],
            "",
        )],
        &[],
    );
    assert!(refused(&partial).contains("partial wildcards"));
}

/// A second connection resumes the first one's session (tickets or the stateful cache);
/// with both disabled it cannot.
#[tokio::test]
async fn session_resumption_on_by_default_off_when_disabled() -> anyhow::Result<()> {
    let ca = Ca::new("ca");
    let leaf = ca.leaf("r", &["resume.example"], &[], false);
    let (on, off) = (free_port().await?, free_port().await?);
    let disabled =
        ", disable_stateless_session_resumption: true, disable_stateful_session_resumption: true";
    let listeners = [
        listener(
            "on",
            on,
            &[chain(
                "c",
                &[],
                "",
                Some(&downstream(&[&leaf], "", "")),
                &hcm("r", ""),
            )],
            "",
        ),
        listener(
            "off",
            off,
            &[chain(
                "c",
                &[],
                "",
                Some(&downstream(&[&leaf], "", disabled)),
                &hcm("r", ""),
            )],
            "",
        ),
    ];
    start(&bootstrap(&listeners, &[]), on).await?;
    wait_listening(([127, 0, 0, 1], off).into()).await?;
    let client = Client::new(&ca.pem, "resume.example");
    for (port, resumed) in [(on, true), (off, false)] {
        let config = client.shared()?;
        for round in 0..2 {
            let stream = client.connect_with(port, config.clone()).await?;
            let kind = stream.get_ref().1.handshake_kind();
            // Tickets arrive after the handshake: a request makes the client read them.
            Session::start(stream)
                .await?
                .get("resume.example", "/")
                .await?;
            let want = if round == 1 && resumed {
                rustls::HandshakeKind::Resumed
            } else {
                rustls::HandshakeKind::Full
            };
            assert_eq!(kind, Some(want), "port {port} round {round}");
        }
    }
    Ok(())
}

/// Headers the route adds from the connection: the client certificate's URI SAN, the SNI;
/// x-forwarded-proto is https.
#[tokio::test]
async fn peer_identity_in_request_headers_and_forwarded_proto_https() -> anyhow::Result<()> {
    let web = support::backend("web").await?;
    let ca = Ca::new("ca");
    let server = ca.leaf("s", &["id.example"], &[], false);
    let client_leaf = ca.leaf("c", &[], &["spiffe://test/client"], false);
    let port = free_port().await?;
    let common = format!(
        ", validation_context: {{ trusted_ca: {{ inline_string: {} }} }}",
        support::pki::yaml(&ca.pem)
    );
    let route = r#"{ name: envoy.filters.network.http_connection_manager, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, route_config: { virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/" }, route: { cluster: web } } ], request_headers_to_add: [ { header: { key: x-custom, value: "%DOWNSTREAM_PEER_URI_SAN%" } } ], response_headers_to_add: [ { header: { key: x-sni, value: "sni=%REQUESTED_SERVER_NAME%" } } ] } ] }, http_filters: [ { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } } ] } }"#;
    let l = listener(
        "id",
        port,
        &[chain(
            "c",
            &[],
            "",
            Some(&downstream(&[&server], &common, "")),
            route,
        )],
        "",
    );
    start(&bootstrap(&[l], &[cluster("web", web.port(), "")]), port).await?;

    let mut client = Client::new(&ca.pem, "id.example");
    client.cert = Some(client_leaf);
    let resp = Session::start(client.connect(port).await?)
        .await?
        .get("id.example", "/")
        .await?;
    assert_eq!(resp.headers()["x-seen-x-custom"], "spiffe://test/client");
    assert_eq!(resp.headers()["x-seen-x-forwarded-proto"], "https");
    assert_eq!(resp.headers()["x-sni"], "sni=id.example");
    // Without a client certificate (not required here) the header is not added at all.
    client.cert = None;
    let resp = Session::start(client.connect(port).await?)
        .await?
        .get("id.example", "/")
        .await?;
    assert!(resp.headers().get("x-seen-x-custom").is_none());
    Ok(())
}

#[tokio::test]
async fn static_secrets_from_the_bootstrap() -> anyhow::Result<()> {
    let ca = Ca::new("ca");
    let leaf = ca.leaf("s", &["static.example"], &[], false);
    let port = free_port().await?;
    let tls = r#"{ name: envoy.transport_sockets.tls, typed_config: { "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, common_tls_context: { tls_certificate_sds_secret_configs: [ { name: NAME } ] } } }"#;
    let secret = format!(
        "  secrets: [ {{ name: server, tls_certificate: {} }} ]\n",
        support::tls_yaml::cert(&leaf)
    );
    let with = |name: &str| {
        let l = listener(
            "s",
            port,
            &[chain(
                "c",
                &[],
                "",
                Some(&tls.replace("NAME", name)),
                &hcm("static", ""),
            )],
            "",
        );
        bootstrap(&[l], &[]) + &secret
    };
    let err = refused(&with("nope"));
    assert!(err.contains("unknown static secret \"nope\""), "{err}");
    start(&with("server"), port).await?;
    let (body, served) = ask(port, &Client::new(&ca.pem, "static.example"), &leaf).await?;
    assert_eq!(body, "static");
    assert!(served);
    Ok(())
}
