//! Cluster warming for SDS secrets, our dataplane beside real Envoy 1.40, each driven by its
//! own controlplane serving the same resources (but for the listener port): a cluster whose
//! upstream CA comes over SDS, a listener routing to it, the secret written after both. What
//! a client sees at each step must agree: no listener before the secret (Envoy starts LDS once
//! its clusters are warm), 200 as the first answer, the previous version serving while a
//! replacement waits for a secret that never comes (its CDS version not ACKed until then), and
//! 503 once its initial_fetch_timeout has passed and it is used without it.

#![allow(clippy::unwrap_used)]

mod support;

#[path = "../dataplane/tests/support/pki.rs"]
mod pki;
#[path = "../dataplane/tests/support/tls.rs"]
mod tls;
#[path = "../dataplane/tests/support/tls_yaml.rs"]
mod tls_yaml;

use std::path::Path;

use pki::Ca;
// `tls` (the shared support file) reads DEADLINE from the crate root.
use support::{Api, Controlplane, DEADLINE, Dataplane, Envoy, config, eventually, free_port, http};
use tls_yaml::{ca_secret, warming_resources};

/// The status a request to the listener gets, or "refused".
async fn answer(port: u16) -> String {
    match http::get(&format!("127.0.0.1:{port}"), "/", &[]).await {
        Some(r) if r.status == 200 => r.status.to_string(),
        Some(r) => format!("{} {}", r.status, r.text()),
        None => "refused".into(),
    }
}

/// The CDS version the proxy has ACKed once it equals the one sent, if it differs from `old`.
async fn cds_acked(
    cp: &Controlplane,
    node: &str,
    old: &serde_json::Value,
) -> Option<serde_json::Value> {
    let s = cp.proxy_type(node, "CDS").await?;
    let acked = s["version_acked"].clone();
    (!acked.is_null() && acked == s["version_sent"] && acked != *old).then_some(acked)
}

/// The first answer other than "refused" (the listener has started).
async fn first_answer(port: u16) -> String {
    eventually("the listener answers", || async {
        let a = answer(port).await;
        (a != "refused").then_some(a)
    })
    .await
}

/// Whether a CDS version other than `old` has been sent to the proxy.
async fn cds_sent(cp: &Controlplane, node: &str, old: &serde_json::Value) -> Option<()> {
    let s = cp.proxy_type(node, "CDS").await?;
    (s["version_sent"] != *old).then_some(())
}

/// Real Envoy or our dataplane, driven over SotW ADS by `cp`; stopped when dropped.
enum Proxy {
    Envoy(#[allow(dead_code)] Envoy),
    Ours(#[allow(dead_code)] Dataplane),
}

impl Proxy {
    async fn start(envoy: bool, cp: &Controlplane, node: &str, work: &Path) -> Proxy {
        if envoy {
            Proxy::Envoy(Envoy::start(node, &cp.xds, Api::Sotw, work).await)
        } else {
            let (host, xds_port) = cp.xds.rsplit_once(':').unwrap();
            let boot = config::envoy_bootstrap(node, host, xds_port, "GRPC");
            Proxy::Ours(Dataplane::start(&boot, node, work))
        }
    }
}

/// Our controlplane serving `dir`, the proxy `node` driven by it, and the first CDS version
/// the proxy ACKed.
async fn start(
    envoy: bool,
    dir: &Path,
    work: &Path,
    node: &str,
) -> (Controlplane, Proxy, serde_json::Value) {
    let cp = Controlplane::start(dir, work);
    let proxy = Proxy::start(envoy, &cp, node, work).await;
    let v1 = eventually("CDS ACKed", || {
        cds_acked(&cp, node, &serde_json::Value::Null)
    })
    .await;
    (cp, proxy, v1)
}

/// Runs the story against one proxy; returns what the client saw at each step.
async fn story(envoy: bool, ca: &Ca, backend: u16, work: &Path) -> Vec<String> {
    let name = if envoy { "envoy" } else { "dataplane" };
    let work = &work.join(name);
    let dir = work.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let write = |file: &str, text: String| std::fs::write(dir.join(file), text).unwrap();
    let [cluster, listener] = warming_resources(port, backend, "backend-ca", "");
    write("cluster.yaml", cluster);
    write("listener.yaml", listener);
    let node = format!("warming-{name}");
    let (cp, _proxy, v1) = start(envoy, &dir, work, &node).await;
    let mut seen = Vec::new();
    seen.push(format!("before the secret: {}", answer(port).await));
    write("secret.yaml", ca_secret("backend-ca", &ca.pem));
    let first = first_answer(port).await;
    seen.push(format!("first answer: {first}"));
    let [cluster, _] = warming_resources(port, backend, "never", ", initial_fetch_timeout: 3s");
    write("cluster.yaml", cluster);
    eventually("the new CDS version sent", || cds_sent(&cp, &node, &v1)).await;
    seen.push(format!(
        "while the new version warms: {}",
        answer(port).await
    ));
    // Envoy holds its CDS ACK until the clusters it brought have warmed.
    let acked = cds_acked(&cp, &node, &v1).await.is_some();
    seen.push(format!("CDS ACKed while it warms: {acked}"));
    let after = eventually("past initial_fetch_timeout", || async {
        let a = answer(port).await;
        (a != "200").then_some(a)
    })
    .await;
    seen.push(format!("after initial_fetch_timeout: {after}"));
    eventually("the held CDS ACK once the cluster is in use", || {
        cds_acked(&cp, &node, &v1)
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_warming_for_sds_agrees_with_envoy() {
    tls::install_provider();
    let work = tempfile::tempdir().unwrap();
    let ca = Ca::new("backend ca");
    let leaf = ca.leaf("backend", &["backend.test"], &[], false);
    let (backend, _) = tls::backend(&leaf, None).await.unwrap();
    let (ours, envoy) = tokio::join!(
        story(false, &ca, backend.port(), work.path()),
        story(true, &ca, backend.port(), work.path())
    );
    assert_eq!(ours, envoy, "our dataplane and Envoy");
    assert_eq!(
        ours,
        [
            "before the secret: refused",
            "first answer: 200",
            "while the new version warms: 200",
            "CDS ACKed while it warms: false",
            "after initial_fetch_timeout: 503 upstream connect error or disconnect/reset before \
             headers. reset reason: remote connection failure",
        ]
    );
}

/// An updated EDS cluster warms until its assignment comes again; with its EDS source's
/// `initial_fetch_timeout` 0 it would wait forever, its CDS version never ACKed. Our
/// controlplane resends the (unchanged) assignment with the cluster, so in both proxies the
/// update is ACKed and serves.
async fn eds_story(envoy: bool, backend: u16, work: &Path) -> Vec<String> {
    use support::config::{cluster, file, listener, routes, write};
    let name = if envoy { "envoy" } else { "dataplane" };
    let work = &work.join(format!("eds-{name}"));
    let dir = work.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    write(
        &dir,
        "listener.yaml",
        &file(None, &[listener("front", port, "r")]),
    );
    write(
        &dir,
        "routes.yaml",
        &file(None, &[routes("r", &[("/", "b")], None)]),
    );
    write(
        &dir,
        "clusters.yaml",
        &file(None, &[cluster("b", backend.into())]),
    );
    let node = format!("eds-warming-{name}");
    let (cp, _proxy, v1) = start(envoy, &dir, work, &node).await;
    let mut seen = Vec::new();
    let first = first_answer(port).await;
    seen.push(format!("first answer: {first}"));
    let updated = cluster("b", backend.into())
        .replace("connect_timeout: 1s", "connect_timeout: 3s")
        .replace(
            "resource_api_version: V3 }",
            "resource_api_version: V3, initial_fetch_timeout: 0s }",
        );
    write(&dir, "clusters.yaml", &file(None, &[updated]));
    eventually("the updated cluster warm, its CDS version ACKed", || {
        cds_acked(&cp, &node, &v1)
    })
    .await;
    seen.push(format!("after the update: {}", answer(port).await));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eds_cluster_update_warms_with_the_resent_assignment_as_in_envoy() {
    let work = tempfile::tempdir().unwrap();
    let backend = support::backend::Backend::start("b").await;
    let (ours, envoy) = tokio::join!(
        eds_story(false, backend.port(), work.path()),
        eds_story(true, backend.port(), work.path())
    );
    assert_eq!(ours, envoy, "our dataplane and Envoy");
    assert_eq!(ours, ["first answer: 200", "after the update: 200"]);
}
