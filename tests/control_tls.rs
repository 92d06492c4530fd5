//! The control channel over mutual TLS (issue 7): our controlplane serving xDS with
//! `--tls-cert --tls-key --client-ca`, driven by our dataplane and by real Envoy 1.40 whose
//! bootstraps give the xDS cluster an `UpstreamTlsContext`; clients without a certificate or
//! with one of another CA refused; a node id the certificate does not allow refused with
//! PERMISSION_DENIED; a Secret of the config directory (relative PEM files) served over SDS to
//! Envoy's TLS listener; the server certificate rotated under a live stream.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use support::backend::Backend;
use support::config::{cluster, config_dir, file, listener, routes, write};
use support::pki::{CDS, Pki, cds_stream, channel, first_response, tls_bootstrap};
use support::tls::{Ca, Leaf, client_config, der, https_get, server_cert};
use support::{Api, Controlplane, Dataplane, Envoy, eventually, free_port, http};
use tonic::transport::Endpoint;

/// A config directory: an HTTP listener on `port` routing everything to `backend`.
fn plain_config(dir: &Path, port: u16, backend: u16) {
    write(
        dir,
        "listener.yaml",
        &file(None, &[listener("http", port, "r")]),
    );
    write(
        dir,
        "routes.yaml",
        &file(None, &[routes("r", &[("/", "b1")], None)]),
    );
    write(
        dir,
        "clusters.yaml",
        &file(None, &[cluster("b1", backend.into())]),
    );
}

async fn wait_for_b1(addr: &str) {
    eventually("a request through the proxy answered by b1", || async {
        http::get(addr, "/hello", &[])
            .await
            .filter(|r| r.status == 200 && r.header("x-backend") == Some("b1"))
    })
    .await;
}

async fn dataplane_over_mtls(api: Api) {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(work.path());
    let dir = config_dir(work.path());
    let b1 = Backend::start("b1").await;
    let port = free_port();
    plain_config(&dir, port, b1.port());
    let cp = pki.controlplane(&dir, work.path());
    let (_, cert, key) = pki.client("dp-1", &["dp-1"], &[]);
    let bootstrap = tls_bootstrap("dp-1", &cp.xds, api, &cert, &key, &pki.ca_file);
    // Two workers, so the control channel is tested beside proxying on more than one.
    let _dp = Dataplane::start_workers(&bootstrap, "dataplane", work.path(), 2);
    wait_for_b1(&format!("127.0.0.1:{port}")).await;

    // The status API shows who the proxy is by its certificate, and the TLS files.
    let status = cp.status().await;
    let proxy = &status["proxies"][0];
    assert_eq!(proxy["node_id"], "dp-1");
    assert!(
        proxy["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{proxy}"
    );
    assert_eq!(
        proxy["peer_identity"]["dns_sans"],
        serde_json::json!(["dp-1"])
    );
    assert_eq!(proxy["peer_identity"]["subject_cn"], "dp-1");
    assert_eq!(status["tls"]["node_id_match"], "san");
    assert_eq!(status["tls"]["cert"], pki.cert_file.display().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dataplane_over_mtls_sotw_reaches_the_backend() {
    dataplane_over_mtls(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dataplane_over_mtls_delta_reaches_the_backend() {
    dataplane_over_mtls(Api::Delta).await;
}

/// A TLS listener whose certificate comes over SDS (`server-cert`).
fn tls_listener(port: u16) -> String {
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: https
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
  filter_chains:
  - transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
        common_tls_context:
          tls_certificate_sds_secret_configs: [ {{ name: server-cert, sds_config: {{ ads: {{}}, resource_api_version: V3 }} }} ]
    filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: https
        rds: {{ route_config_name: r, config_source: {{ ads: {{}}, resource_api_version: V3 }} }}
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

/// The Secret, its PEM files named relative to the config directory (inlined when served).
const SECRET: &str = r#"
- "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
  name: server-cert
  tls_certificate:
    certificate_chain: { filename: app.pem }
    private_key: { filename: app.key }
"#;

async fn envoy_over_mtls(api: Api) {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(work.path());
    let dir = config_dir(work.path());
    let b1 = Backend::start("b1").await;
    let port = free_port();
    let app = pki.ca.leaf("app", &["app.example"], &[]);
    support::tls::write(&dir, "app.pem", &app.cert);
    support::tls::write(&dir, "app.key", &app.key);
    write(
        &dir,
        "listener.yaml",
        &file(None, &[tls_listener(port), SECRET.into()]),
    );
    write(
        &dir,
        "routes.yaml",
        &file(None, &[routes("r", &[("/", "b1")], None)]),
    );
    write(
        &dir,
        "clusters.yaml",
        &file(None, &[cluster("b1", b1.port().into())]),
    );
    let cp = pki.controlplane(&dir, work.path());
    let (_, cert, key) = pki.client("envoy-1", &["envoy-1"], &[]);
    let bootstrap = tls_bootstrap("envoy-1", &cp.xds, api, &cert, &key, &pki.ca_file);
    let _envoy = Envoy::start_bootstrap("envoy-1", &bootstrap, work.path()).await;

    let addr = format!("127.0.0.1:{port}");
    let ca = pki.ca.pem();
    let (status, body) = eventually("an HTTPS request through Envoy answered by b1", || {
        let (addr, ca) = (addr.clone(), ca.clone());
        async move {
            https_get(&addr, &ca, "app.example", "/hello")
                .await
                .filter(|(s, _)| *s == 200)
        }
    })
    .await;
    assert_eq!((status, body.as_str()), (200, "b1"));
    // Envoy asked for the secret by name and ACKed it.
    let sds = cp.proxy_type("envoy-1", "SDS").await.unwrap();
    assert_eq!(
        sds["subscribed"],
        serde_json::json!(["server-cert"]),
        "{sds}"
    );
    assert_eq!(sds["version_acked"], sds["version_sent"], "{sds}");
    assert!(sds["last_nack"].is_null(), "{sds}");

    // Rotate the PEM files beside the YAML (key first: the load in between is refused, as the
    // pair does not match, and nothing changes): the new certificate reaches Envoy over SDS.
    let rotated = pki.ca.leaf("app-2", &["app.example"], &[]);
    support::tls::write(&dir, "app.key", &rotated.key);
    support::tls::write(&dir, "app.pem", &rotated.cert);
    let want = der(&rotated.cert);
    eventually(
        "Envoy's listener presenting the rotated SDS certificate",
        || {
            let (addr, ca, want) = (addr.clone(), ca.clone(), want.clone());
            async move {
                server_cert(
                    &addr,
                    client_config(&ca, None, &[b"http/1.1"]),
                    "app.example",
                )
                .await
                .filter(|c| *c == want)
            }
        },
    )
    .await;
    let sds = cp.proxy_type("envoy-1", "SDS").await.unwrap();
    assert!(sds["last_nack"].is_null(), "{sds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_over_mtls_sotw_reaches_the_backend_with_an_sds_certificate() {
    envoy_over_mtls(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_over_mtls_delta_reaches_the_backend_with_an_sds_certificate() {
    envoy_over_mtls(Api::Delta).await;
}

/// A controlplane with mutual TLS on a config of one cluster.
async fn mtls_world(work: &Path) -> (Pki, Controlplane, PathBuf) {
    let pki = Pki::new(work);
    let dir = config_dir(work);
    plain_config(&dir, free_port(), free_port());
    let cp = pki.controlplane(&dir, work);
    (pki, cp, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_or_from_another_ca_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let (pki, cp, _) = mtls_world(work.path()).await;
    let ca = pki.ca.pem();

    // The handshake is refused; in TLS 1.3 the client may only learn it at its first read.
    let attempt = |client: Option<Leaf>| {
        let (xds, ca) = (cp.xds.clone(), ca.clone());
        async move {
            let channel = channel(&xds, &ca, client.as_ref()).await?;
            first_response(channel, "edge-1")
                .await
                .map_err(|e| e.to_string())
        }
    };
    let none = attempt(None).await;
    assert!(none.is_err(), "no client certificate: {none:?}");
    let other = Ca::new("another CA").leaf("edge-1", &["edge-1"], &[]);
    let foreign = attempt(Some(other)).await;
    assert!(foreign.is_err(), "a certificate of another CA: {foreign:?}");
    // Plaintext to a TLS port gets nothing either.
    let plain = async {
        let channel = Endpoint::from_shared(format!("http://{}", cp.xds))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        first_response(channel, "edge-1")
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    assert!(plain.is_err(), "plaintext: {plain:?}");

    // The controlplane says why, per peer; no proxy got registered.
    eventually(
        "the refused handshakes in the controlplane's log",
        || async {
            let log = cp.process.log();
            (log.contains("xDS TLS handshake failed") && log.contains("UnknownIssuer"))
                .then_some(())
        },
    )
    .await;
    assert_eq!(cp.status().await["proxies"], serde_json::json!([]));

    // A client of the CA gets its clusters.
    let (good, _, _) = pki.client("edge-1", &["edge-1"], &[]);
    let r = attempt(Some(good)).await.unwrap();
    assert_eq!(r.type_url, CDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_the_certificate_does_not_allow_is_permission_denied() {
    let work = tempfile::tempdir().unwrap();
    let (pki, cp, _) = mtls_world(work.path()).await;
    let (leaf, _, _) = pki.client(
        "edge-1",
        &["edge-1.proxies.example"],
        &["spiffe://e2e/edge-1"],
    );
    let ca = pki.ca.pem();

    let denied = first_response(channel(&cp.xds, &ca, Some(&leaf)).await.unwrap(), "edge-2")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert_eq!(
        denied.message(),
        "node id \"edge-2\" is not allowed for the client certificate [CN=edge-1, \
         DNS:edge-1.proxies.example, URI:spiffe://e2e/edge-1]: the node id must equal one of \
         its DNS or URI SANs (--node-id-match san)"
    );
    // The CN alone is not enough under the default rule.
    let cn = first_response(channel(&cp.xds, &ca, Some(&leaf)).await.unwrap(), "edge-1")
        .await
        .unwrap_err();
    assert_eq!(cn.code(), tonic::Code::PermissionDenied, "{cn:?}");

    // Its DNS SAN and its SPIFFE id are both allowed.
    for id in ["edge-1.proxies.example", "spiffe://e2e/edge-1"] {
        let r = first_response(channel(&cp.xds, &ca, Some(&leaf)).await.unwrap(), id)
            .await
            .unwrap();
        assert_eq!(r.type_url, CDS, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_handshakes_and_keeps_existing_streams() {
    let work = tempfile::tempdir().unwrap();
    let (pki, cp, dir) = mtls_world(work.path()).await;
    let (leaf, _, _) = pki.client("edge-1", &["edge-1"], &[]);
    let ca = pki.ca.pem();
    let old_cert = der(&std::fs::read_to_string(&pki.cert_file).unwrap());

    let (_tx, mut stream) = cds_stream(channel(&cp.xds, &ca, Some(&leaf)).await.unwrap(), "edge-1")
        .await
        .unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.resources.len(), 1);

    // Rotate: key first, then the certificate (for a moment they do not match; that reload is
    // refused and the old pair keeps serving).
    let new = pki
        .ca
        .leaf("controlplane-2", &["localhost", "127.0.0.1"], &[]);
    support::tls::write(&pki.dir, "server.key", &new.key);
    support::tls::write(&pki.dir, "server.pem", &new.cert);
    let new_cert = der(&new.cert);
    assert_ne!(old_cert, new_cert);
    let xds = cp.xds.clone();
    eventually("a new handshake presenting the rotated certificate", || {
        let (xds, ca, leaf) = (xds.clone(), ca.clone(), leaf.clone());
        let new_cert = new_cert.clone();
        async move {
            let config = client_config(&ca, Some(&leaf), &[b"h2"]);
            server_cert(&xds, config, "localhost")
                .await
                .filter(|c| *c == new_cert)
        }
    })
    .await;
    let tls = &cp.status().await["tls"];
    assert!(tls["reloads"].as_u64().unwrap() >= 1, "{tls}");
    assert!(tls["last_error"].is_null(), "{tls}");

    // The stream opened before the rotation is still up: a config change reaches it.
    write(
        &dir,
        "clusters.yaml",
        &file(None, &[cluster("b1", 1), cluster("b2", 2)]),
    );
    let next = tokio::time::timeout(support::DEADLINE, stream.message())
        .await
        .expect("a push on the old stream")
        .unwrap()
        .unwrap();
    assert_eq!(next.resources.len(), 2);
    assert_ne!(next.version_info, first.version_info);
}

#[test]
fn bad_tls_files_stop_the_start_naming_the_file() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(work.path());
    let dir = config_dir(work.path());
    let other = pki.ca.leaf("x", &["x"], &[]);
    let wrong_key = support::tls::write(&pki.dir, "wrong.key", &other.key);
    let run = |cert: &Path, key: &Path| {
        let out = std::process::Command::new(support::bin("controlplane"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&dir)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = pki.dir.join("missing.pem");
    let err = run(&missing, &pki.key_file);
    assert!(
        err.contains(&format!(
            "controlplane: {}: cannot read:",
            missing.display()
        )),
        "{err}"
    );
    let err = run(&pki.cert_file, &wrong_key);
    assert!(
        err.contains(&format!(
            "controlplane: {}: the private key does not match the certificate in {}",
            wrong_key.display(),
            pki.cert_file.display()
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_over_mtls_is_open_only_to_the_named_management_clients() {
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::new(work.path());
    let dir = config_dir(work.path());
    plain_config(&dir, free_port(), free_port());
    let cp = pki.controlplane_with(&dir, work.path(), &["--management-client", "deployer"]);
    // What the pipeline pushes: a Secret whose files sit beside the YAML (read by `push`).
    let push_dir = work.path().join("push");
    std::fs::create_dir(&push_dir).unwrap();
    let app = pki.ca.leaf("app", &["app.example"], &[]);
    support::tls::write(&push_dir, "app.pem", &app.cert);
    support::tls::write(&push_dir, "app.key", &app.key);
    let resources = support::tls::write(
        &push_dir,
        "canary.yaml",
        &file(None, &[SECRET.into(), cluster("b1", 1)]),
    );
    let push = |name: &str| {
        let (_, cert, key) = pki.client(name, &[name], &[]);
        let out = std::process::Command::new(support::bin("controlplane"))
            .args([
                "push",
                "--server",
                &cp.xds,
                "--group",
                "canary",
                "--node-id",
                "edge-*",
            ])
            .arg("--tls-ca")
            .arg(&pki.ca_file)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(["--tls-server-name", "localhost"])
            .arg(&resources)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = push("edge-1");
    assert!(!ok, "{out}");
    assert!(
        out.contains("the client certificate [CN=edge-1, DNS:edge-1] is not allowed to use the management API (--management-client deployer)"),
        "{out}"
    );
    let (ok, out) = push("deployer");
    assert!(ok, "{out}");
    assert!(out.contains("group \"canary\" set: version"), "{out}");
    let status = cp.status().await;
    let canary = status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "canary")
        .unwrap()
        .clone();
    assert_eq!(canary["resources"]["SDS"], 1, "{canary}");
}
