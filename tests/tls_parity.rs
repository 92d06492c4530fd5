//! The same TLS listener given to real Envoy 1.40 and to our dataplane (static bootstraps,
//! identical but for the port), and the same TLS clients sent to both: for each SNI, whether
//! the handshake succeeds, which certificate is presented and which chain answers must agree
//! (issue 7: SNI for two names and a wildcard, an unknown name with and without a chain that
//! has no server names, no SNI at all, plaintext on the same port), and client certificates
//! checked the same way (good, missing, wrong SAN, unknown CA: the same TLS alerts).

#![allow(clippy::unwrap_used)]

mod support;

#[path = "../dataplane/tests/support/pki.rs"]
mod pki;
#[path = "../dataplane/tests/support/tls.rs"]
mod tls;
#[path = "../dataplane/tests/support/tls_yaml.rs"]
mod tls_yaml;

use pki::{Ca, Leaf};
use support::{DEADLINE, Dataplane, Envoy, eventually, free_port, http};
use tls::{Client, Session, install_provider, presented};
use tls_yaml::{bootstrap, chain, downstream, hcm, listener};

struct Certs {
    a: Leaf,
    b: Leaf,
    wild: Leaf,
    fallback: Leaf,
}

/// Two names, a wildcard; with `catch_all` a TLS chain without server names and a plaintext
/// chain too.
fn config(c: &Certs, port: u16, catch_all: bool) -> String {
    let tls = |leaf: &Leaf| downstream(&[leaf], "", "");
    let mut chains = vec![
        chain(
            "a",
            &["a.example.com"],
            "",
            Some(&tls(&c.a)),
            &hcm("chain-a", ""),
        ),
        chain(
            "b",
            &["b.example.com"],
            "",
            Some(&tls(&c.b)),
            &hcm("chain-b", ""),
        ),
        chain(
            "wild",
            &["*.wild.example"],
            "",
            Some(&tls(&c.wild)),
            &hcm("chain-wild", ""),
        ),
    ];
    if catch_all {
        chains.push(chain(
            "any",
            &[],
            "tls",
            Some(&tls(&c.fallback)),
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
    bootstrap(&[listener("sni", port, &chains, "")], &[])
}

/// What one client saw: the certificate presented and the chain's answer, or a failed
/// handshake.
async fn outcome(port: u16, sni: Option<&str>, c: &Certs) -> String {
    // Accept any certificate: the point is which one is presented.
    let client = Client {
        sni: sni.map(str::to_string),
        ..Default::default()
    };
    let stream = match client.connect(port).await {
        Ok(s) => s,
        Err(e) => return format!("handshake failed: {}", alert(e)),
    };
    let cert = [
        ("a", &c.a),
        ("b", &c.b),
        ("wild", &c.wild),
        ("fallback", &c.fallback),
    ]
    .into_iter()
    .find(|(_, leaf)| presented(&stream, leaf))
    .map_or("unknown", |(n, _)| n);
    let answer = match Session::start(stream).await {
        Ok(mut s) => match s.get(sni.unwrap_or("127.0.0.1"), "/").await {
            Ok(r) => String::from_utf8_lossy(r.body()).into_owned(),
            Err(_) => "request failed".into(),
        },
        Err(_) => "closed".into(),
    };
    format!("cert {cert}, {answer}")
}

/// Waits until something accepts on the port.
async fn listening(port: u16) {
    eventually(&format!("a listener on {port}"), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;
}

async fn compare(catch_all: bool) {
    install_provider();
    let ca = Ca::new("parity ca");
    let c = Certs {
        a: ca.leaf("a", &["a.example.com"], &[], false),
        b: ca.leaf("b", &["b.example.com"], &[], false),
        wild: ca.leaf("wild", &["*.wild.example"], &[], false),
        fallback: ca.leaf("fallback", &["fallback.example"], &[], false),
    };
    let work = tempfile::tempdir().unwrap();
    let (envoy_port, our_port) = (free_port(), free_port());
    let _envoy =
        Envoy::start_static(&config(&c, envoy_port, catch_all), "envoy-tls", work.path()).await;
    let _ours = Dataplane::start(
        &config(&c, our_port, catch_all),
        "dataplane-tls",
        work.path(),
    );
    listening(envoy_port).await;
    listening(our_port).await;

    let cases = [
        Some("a.example.com"),
        Some("b.example.com"),
        Some("x.wild.example"),
        Some("deep.x.wild.example"),
        Some("A.Example.COM"),
        Some("unknown.org"),
        Some("wild.example"),
        None,
    ];
    let mut differ = Vec::new();
    for sni in cases {
        let envoy = outcome(envoy_port, sni, &c).await;
        let ours = outcome(our_port, sni, &c).await;
        if envoy != ours {
            differ.push(format!("SNI {sni:?}: envoy {envoy:?}, ours {ours:?}"));
        }
    }
    if catch_all {
        let plain = |port: u16| async move {
            http::get(&format!("127.0.0.1:{port}"), "/", &[])
                .await
                .map(|r| (r.status, r.text()))
        };
        let (envoy, ours) = (plain(envoy_port).await, plain(our_port).await);
        assert_eq!(envoy.as_ref().map(|r| r.1.as_str()), Some("chain-plain"));
        if envoy != ours {
            differ.push(format!("plaintext: envoy {envoy:?}, ours {ours:?}"));
        }
    }
    // The cases test what they say: Envoy picks each chain.
    assert_eq!(
        outcome(envoy_port, Some("x.wild.example"), &c).await,
        "cert wild, chain-wild"
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[tokio::test]
async fn sni_chains_agree_with_envoy_with_a_catch_all_chain() {
    compare(true).await;
}

#[tokio::test]
async fn sni_chains_agree_with_envoy_without_a_catch_all_chain() {
    compare(false).await;
}

/// The TLS alert a failure carries, or "closed" when the peer closed without one.
fn alert(e: anyhow::Error) -> String {
    let text = format!("{e:?}");
    match text.split("received fatal alert: ").nth(1) {
        Some(rest) => format!(
            "alert {}",
            rest.split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("")
        ),
        None => "closed".to_string(),
    }
}

/// What a client with (or without) a certificate gets from a listener requiring one: the
/// answer, or the TLS alert that refused it.
async fn mtls_outcome(port: u16, ca: &str, cert: Option<&Leaf>) -> String {
    let mut client = Client::new(ca, "mtls.example");
    client.cert = cert.cloned();
    let stream = match client.connect(port).await {
        Ok(s) => s,
        Err(e) => return alert(e),
    };
    let mut session = match Session::start(stream).await {
        Ok(s) => s,
        Err(e) => return alert(e),
    };
    match session.get("mtls.example", "/").await {
        Ok(r) => String::from_utf8_lossy(r.body()).into_owned(),
        Err(e) => alert(e),
    }
}

/// Client certificates: a good one, none, one with the wrong SAN, one from an unknown CA.
#[tokio::test]
async fn client_certificate_checks_agree_with_envoy() {
    install_provider();
    let ca = Ca::new("server ca");
    let clients = Ca::new("client ca");
    let server = ca.leaf("server", &["mtls.example"], &[], false);
    let good = clients.leaf("good", &[], &["spiffe://test/good"], false);
    let wrong_san = clients.leaf("other", &[], &["spiffe://test/other"], false);
    let stranger = Ca::new("stranger ca").leaf("stranger", &[], &["spiffe://test/good"], false);
    let config = |port: u16| {
        let common = format!(
            r#", validation_context: {{ trusted_ca: {{ inline_string: {} }}, match_typed_subject_alt_names: [ {{ san_type: URI, matcher: {{ exact: "spiffe://test/good" }} }} ] }}"#,
            pki::yaml(&clients.pem)
        );
        let tls = downstream(&[&server], &common, ", require_client_certificate: true");
        let l = listener(
            "mtls",
            port,
            &[chain("c", &[], "", Some(&tls), &hcm("welcome", ""))],
            "",
        );
        bootstrap(&[l], &[])
    };
    let work = tempfile::tempdir().unwrap();
    let (envoy_port, our_port) = (free_port(), free_port());
    let envoy = Envoy::start_static(&config(envoy_port), "envoy-mtls", work.path()).await;
    let ours = Dataplane::start(&config(our_port), "dataplane-mtls", work.path());
    listening(envoy_port).await;
    listening(our_port).await;
    let mut differ = Vec::new();
    for (what, cert) in [
        ("good", Some(&good)),
        ("missing", None),
        ("wrong SAN", Some(&wrong_san)),
        ("unknown CA", Some(&stranger)),
    ] {
        let envoy = mtls_outcome(envoy_port, &ca.pem, cert).await;
        let ours = mtls_outcome(our_port, &ca.pem, cert).await;
        if envoy != ours {
            differ.push(format!("{what}: envoy {envoy:?}, ours {ours:?}"));
        }
    }
    // The listener's TLS counters after those four clients.
    for counter in [
        "handshake",
        "connection_error",
        "fail_verify_error",
        "fail_verify_san",
        "fail_verify_no_cert",
    ] {
        let value = |admin: String, port: u16| async move {
            let name = format!("listener.127.0.0.1_{port}.ssl.{counter}: ");
            http::get(&admin, "/stats", &[])
                .await
                .map(|r| r.text())
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix(&name).map(str::to_string))
        };
        let e = value(envoy.admin.clone(), envoy_port).await;
        let o = value(ours.admin.clone(), our_port).await;
        if e != o {
            differ.push(format!("ssl.{counter}: envoy {e:?}, ours {o:?}"));
        }
    }
    assert_eq!(
        mtls_outcome(envoy_port, &ca.pem, Some(&good)).await,
        "welcome"
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// Upstream TLS: mTLS to a TLS backend, a backend certificate from an untrusted CA, one whose
/// SAN does not match: the same statuses, bodies and `ssl.fail_verify_*` counters.
#[tokio::test]
async fn upstream_tls_agrees_with_envoy() {
    install_provider();
    let ca = Ca::new("backend ca");
    let clients = Ca::new("proxy ca");
    let backend_leaf = ca.leaf("backend", &["backend.test"], &[], false);
    let proxy_leaf = clients.leaf("proxy", &[], &["spiffe://test/proxy"], false);
    let (addr, _) = tls::backend(&backend_leaf, Some(&clients.pem))
        .await
        .unwrap();
    let other_ca = Ca::new("another ca");
    let upstream = |ca_pem: &str, san: &str| {
        format!(
            r#", transport_socket: {{ name: envoy.transport_sockets.tls, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: backend.test, common_tls_context: {{ tls_certificates: [ {} ], validation_context: {{ trusted_ca: {{ inline_string: {} }}, match_typed_subject_alt_names: [ {{ san_type: DNS, matcher: {{ exact: "{san}" }} }} ] }} }} }} }}"#,
            tls_yaml::cert(&proxy_leaf),
            pki::yaml(ca_pem)
        )
    };
    let clusters = [
        tls_yaml::cluster("good", addr.port(), &upstream(&ca.pem, "backend.test")),
        tls_yaml::cluster(
            "untrusted",
            addr.port(),
            &upstream(&other_ca.pem, "backend.test"),
        ),
        tls_yaml::cluster(
            "wrong-san",
            addr.port(),
            &upstream(&ca.pem, "elsewhere.test"),
        ),
    ];
    let config = |port: u16| {
        let route = r#"{ name: envoy.filters.network.http_connection_manager, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, route_config: { virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/good" }, route: { cluster: good } }, { match: { prefix: "/untrusted" }, route: { cluster: untrusted } }, { match: { prefix: "/wrong-san" }, route: { cluster: wrong-san } } ] } ] }, http_filters: [ { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } } ] } }"#;
        let l = listener("up", port, &[chain("c", &[], "", None, route)], "");
        bootstrap(&[l], &clusters)
    };
    let work = tempfile::tempdir().unwrap();
    let (envoy_port, our_port) = (free_port(), free_port());
    let envoy = Envoy::start_static(&config(envoy_port), "envoy-up", work.path()).await;
    let ours = Dataplane::start(&config(our_port), "dataplane-up", work.path());
    listening(envoy_port).await;
    listening(our_port).await;
    let mut differ = Vec::new();
    for path in ["/good", "/untrusted", "/wrong-san"] {
        let ask = |port: u16| async move {
            http::get(&format!("127.0.0.1:{port}"), path, &[])
                .await
                .map(|r| (r.status, r.text()))
        };
        let (e, o) = (ask(envoy_port).await, ask(our_port).await);
        // The cases test what they say.
        let want = if path == "/good" { 200 } else { 503 };
        assert_eq!(e.as_ref().map(|r| r.0), Some(want), "{path}: {e:?}");
        if e != o {
            differ.push(format!("{path}: envoy {e:?}, ours {o:?}"));
        }
    }
    for counter in [
        "cluster.untrusted.ssl.fail_verify_error",
        "cluster.wrong-san.ssl.fail_verify_san",
    ] {
        let value = |admin: String| async move {
            let stats = http::get(&admin, "/stats", &[])
                .await
                .map(|r| r.text())
                .unwrap_or_default();
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{counter}: ")).map(str::to_string))
        };
        let (e, o) = (
            value(envoy.admin.clone()).await,
            value(ours.admin.clone()).await,
        );
        assert_eq!(e.as_deref(), Some("1"), "{counter}");
        if e != o {
            differ.push(format!("{counter}: envoy {e:?}, ours {o:?}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// ALPN and protocol versions: what is negotiated (or the alert refusing the client) for
/// clients offering h2, http/1.1, nothing, or only TLS 1.2, on listeners with and without
/// `alpn_protocols` and with `tls_minimum_protocol_version: TLSv1_3`.
#[tokio::test]
async fn alpn_and_versions_agree_with_envoy() {
    install_provider();
    let ca = Ca::new("alpn ca");
    let leaf = ca.leaf("alpn", &["alpn.example"], &[], false);
    let config = |port: u16| {
        let with_alpn = downstream(&[&leaf], r#", alpn_protocols: ["h2", "http/1.1"]"#, "");
        let without = downstream(&[&leaf], "", "");
        let tls13 = downstream(
            &[&leaf],
            ", tls_params: { tls_minimum_protocol_version: TLSv1_3 }",
            "",
        );
        let chains = [
            chain(
                "alpn",
                &["alpn.example"],
                "",
                Some(&with_alpn),
                &hcm("alpn", ""),
            ),
            chain(
                "plain",
                &["none.example"],
                "",
                Some(&without),
                &hcm("none", ""),
            ),
            chain(
                "tls13",
                &["tls13.example"],
                "",
                Some(&tls13),
                &hcm("tls13", ""),
            ),
        ];
        bootstrap(&[listener("alpn", port, &chains, "")], &[])
    };
    let work = tempfile::tempdir().unwrap();
    let (envoy_port, our_port) = (free_port(), free_port());
    let _envoy = Envoy::start_static(&config(envoy_port), "envoy-alpn", work.path()).await;
    let _ours = Dataplane::start(&config(our_port), "dataplane-alpn", work.path());
    listening(envoy_port).await;
    listening(our_port).await;
    let outcome = |port: u16, sni: &'static str, alpn: Vec<&'static str>, tls12: bool| async move {
        let client = Client {
            sni: Some(sni.to_string()),
            alpn,
            tls12_only: tls12,
            ..Default::default()
        };
        let stream = match client.connect(port).await {
            Ok(s) => s,
            Err(e) => return alert(e),
        };
        let conn = stream.get_ref().1;
        let negotiated = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let version = format!("{:?}", conn.protocol_version());
        let answer = match Session::start(stream).await {
            Ok(mut s) => match s.get(sni, "/").await {
                Ok(r) => format!("{:?} {}", r.version(), String::from_utf8_lossy(r.body())),
                Err(e) => alert(e),
            },
            Err(e) => alert(e),
        };
        format!("alpn {negotiated:?}, {version}, {answer}")
    };
    let cases = [
        ("alpn.example", vec!["h2", "http/1.1"], false),
        ("alpn.example", vec!["http/1.1"], false),
        ("alpn.example", vec![], false),
        ("alpn.example", vec!["h2"], true),
        ("none.example", vec!["h2", "http/1.1"], false),
        ("tls13.example", vec![], false),
        ("tls13.example", vec![], true),
    ];
    let mut differ = Vec::new();
    for (sni, alpn, tls12) in cases {
        let e = outcome(envoy_port, sni, alpn.clone(), tls12).await;
        let o = outcome(our_port, sni, alpn.clone(), tls12).await;
        if e != o {
            differ.push(format!(
                "{sni} {alpn:?} tls12-only={tls12}: envoy {e:?}, ours {o:?}"
            ));
        }
    }
    assert!(
        outcome(envoy_port, "alpn.example", vec!["h2"], false)
            .await
            .contains("HTTP/2.0 alpn")
    );
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// `%REQUESTED_SERVER_NAME%` is the SNI a listener filter read: with the tls_inspector it is
/// the client's, without one it is empty even though the handshake carried an SNI (Envoy sets
/// it only from listener filters). Seen through a response header that formats it.
#[tokio::test]
async fn requested_server_name_comes_from_the_tls_inspector_as_in_envoy() {
    install_provider();
    let ca = Ca::new("rsn ca");
    let leaf = ca.leaf("rsn", &["rsn.example"], &[], false);
    let config = |inspected: u16, plain: u16| {
        let tls = downstream(&[&leaf], "", "");
        let hcm = r#"{ name: envoy.filters.network.http_connection_manager, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, route_config: { virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: ok } } } ], response_headers_to_add: [ { header: { key: x-sni, value: "[%REQUESTED_SERVER_NAME%]" } } ] } ] }, http_filters: [ { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } } ] } }"#;
        let with = listener(
            "inspected",
            inspected,
            &[chain("c", &[], "", Some(&tls), hcm)],
            "",
        );
        let without = format!(
            r#"{{ name: plain, address: {{ socket_address: {{ address: 127.0.0.1, port_value: {plain} }} }}, filter_chains: [ {} ] }}"#,
            chain("c", &[], "", Some(&tls), hcm)
        );
        bootstrap(&[with, without], &[])
    };
    let work = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let _envoy = Envoy::start_static(&config(ports[0], ports[1]), "envoy-rsn", work.path()).await;
    let _ours = Dataplane::start(&config(ports[2], ports[3]), "dataplane-rsn", work.path());
    for p in ports {
        listening(p).await;
    }
    let ca_pem = ca.pem.clone();
    let header = |port: u16| {
        let ca_pem = ca_pem.clone();
        async move {
            let client = Client {
                sni: Some("rsn.example".to_string()),
                ..Client::new(&ca_pem, "rsn.example")
            };
            let stream = client.connect(port).await.unwrap();
            let mut session = Session::start(stream).await.unwrap();
            let r = session.get("rsn.example", "/").await.unwrap();
            r.headers()
                .get("x-sni")
                .map(|v| v.to_str().unwrap().to_string())
        }
    };
    let envoy = (header(ports[0]).await, header(ports[1]).await);
    let ours = (header(ports[2]).await, header(ports[3]).await);
    assert_eq!(ours, envoy, "(with the inspector, without): ours vs Envoy");
    assert_eq!(ours.0.as_deref(), Some("[rsn.example]"));
}
