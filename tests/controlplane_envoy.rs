//! Our controlplane driving real Envoy 1.40 (issue 3): SotW and Delta, file edits, removals,
//! broken files, Envoy's own NACKs, node groups. Real processes on loopback.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::time::Instant;

use support::backend::Backend;
use support::config::{cluster, config_dir, file, listener, routes, write};
use support::{Api, Controlplane, Envoy, eventually, free_port, http, validate};

/// A controlplane serving one listener (routing everything to `b1`) and clusters `b1`, `b2`,
/// and one Envoy connected to it.
struct World {
    _work: tempfile::TempDir,
    dir: PathBuf,
    b1: Backend,
    b2: Backend,
    port: u16,
    cp: Controlplane,
    envoy: Envoy,
}

impl World {
    async fn start(api: Api) -> World {
        let work = tempfile::tempdir().unwrap();
        let dir = config_dir(work.path());
        let (b1, b2) = (Backend::start("b1").await, Backend::start("b2").await);
        let port = free_port();
        write(
            &dir,
            "listener.yaml",
            &file(None, &[listener("http", port, "r")]),
        );
        write(
            &dir,
            "routes.yaml",
            &file(None, &[routes("r", &[("/", "b1")], None)]),
        );
        write(
            &dir,
            "clusters.yaml",
            &file(
                None,
                &[
                    cluster("b1", b1.port().into()),
                    cluster("b2", b2.port().into()),
                ],
            ),
        );
        let cp = Controlplane::start(&dir, work.path());
        let envoy = Envoy::start("envoy-1", &cp.xds, api, work.path()).await;
        let world = World {
            _work: work,
            dir,
            b1,
            b2,
            port,
            cp,
            envoy,
        };
        world.wait_for_backend("/", "b1").await;
        world
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn wait_for_backend(&self, path: &str, name: &str) -> http::Reply {
        let addr = self.addr();
        eventually(&format!("a request to {path} answered by {name}"), || {
            let addr = addr.clone();
            async move {
                http::get(&addr, path, &[])
                    .await
                    .filter(|r| r.status == 200 && r.header("x-backend") == Some(name))
            }
        })
        .await
    }
}

async fn reaches_the_backend(api: Api) {
    let w = World::start(api).await;
    let r = http::get(&w.addr(), "/hello", &[]).await.unwrap();
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-path")),
        (200, "b1", Some("/hello"))
    );
    assert_eq!(r.header("server"), Some("envoy"));
    // Every type the proxy asked for is ACKed at the version sent.
    for t in ["LDS", "RDS", "CDS", "EDS"] {
        let s = w.cp.proxy_type("envoy-1", t).await.unwrap();
        assert_eq!(s["version_acked"], s["version_sent"], "{t}: {s}");
        assert!(s["last_nack"].is_null(), "{t}: {s}");
    }
    let _ = (&w.b1, &w.b2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_over_sotw_reaches_the_backend() {
    reaches_the_backend(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_over_delta_reaches_the_backend() {
    reaches_the_backend(Api::Delta).await;
}

async fn route_edit_applies(api: Api) {
    let w = World::start(api).await;
    let written = Instant::now();
    write(
        &w.dir,
        "routes.yaml",
        &file(
            None,
            &[routes("r", &[("/", "b2")], Some(("x-edited", "yes")))],
        ),
    );
    let r = w.wait_for_backend("/", "b2").await;
    let elapsed = written.elapsed();
    assert_eq!(r.header("x-edited"), Some("yes"));
    println!(
        "{api:?}: route file written -> first request seeing the change: {} ms",
        elapsed.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_edit_reaches_envoy_over_sotw() {
    route_edit_applies(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_edit_reaches_envoy_over_delta() {
    route_edit_applies(Api::Delta).await;
}

async fn removed_cluster_is_dropped(api: Api) {
    let w = World::start(api).await;
    write(
        &w.dir,
        "routes.yaml",
        &file(None, &[routes("r", &[("/two", "b2"), ("/", "b1")], None)]),
    );
    w.wait_for_backend("/two", "b2").await;
    assert!(w.envoy.clusters().await.contains("b2::"));
    // Remove the cluster and its route.
    write(
        &w.dir,
        "routes.yaml",
        &file(None, &[routes("r", &[("/", "b1")], None)]),
    );
    write(
        &w.dir,
        "clusters.yaml",
        &file(None, &[cluster("b1", w.b1.port().into())]),
    );
    eventually("Envoy's /clusters to drop b2", || async {
        (!w.envoy.clusters().await.contains("b2::")).then_some(())
    })
    .await;
    let r = http::get(&w.addr(), "/two", &[]).await.unwrap();
    assert_eq!(
        r.header("x-backend"),
        Some("b1"),
        "the /two route went with its cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_cluster_leaves_envoy_sotw() {
    removed_cluster_is_dropped(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_cluster_leaves_envoy_delta() {
    removed_cluster_is_dropped(Api::Delta).await;
}

/// Envoy's `/config_dump` of one kind of dynamic cluster (`dynamic_active_clusters`...).
async fn dumped_clusters(envoy: &Envoy, kind: &str) -> String {
    let r = http::get(&envoy.admin, &format!("/config_dump?resource={kind}"), &[])
        .await
        .expect("envoy /config_dump");
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Envoy warms an updated EDS cluster until its assignment is sent again (it does not ask:
/// the EDS names are unchanged), then uses its cached copy after the source's
/// `initial_fetch_timeout`. With that timeout 0 (wait forever) the update applies only if
/// the controlplane resends the unchanged assignment after the cluster.
async fn updated_cluster_warms_at_once(api: Api) {
    let w = World::start(api).await;
    let updated = cluster("b1", w.b1.port().into())
        .replace("connect_timeout: 1s", "connect_timeout: 3s")
        .replace(
            "resource_api_version: V3 }",
            "resource_api_version: V3, initial_fetch_timeout: 0s }",
        );
    write(
        &w.dir,
        "clusters.yaml",
        &file(None, &[updated, cluster("b2", w.b2.port().into())]),
    );
    eventually(
        "the updated b1 active in Envoy, nothing warming",
        || async {
            let active = dumped_clusters(&w.envoy, "dynamic_active_clusters").await;
            let warming = dumped_clusters(&w.envoy, "dynamic_warming_clusters").await;
            (active.contains("\"connect_timeout\": \"3s\"") && !warming.contains("\"b1\""))
                .then_some(())
        },
    )
    .await;
    w.wait_for_backend("/", "b1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updated_cluster_warms_at_once_in_envoy_sotw() {
    updated_cluster_warms_at_once(Api::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updated_cluster_warms_at_once_in_envoy_delta() {
    updated_cluster_warms_at_once(Api::Delta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_files_are_refused_and_envoy_keeps_serving() {
    let w = World::start(Api::Sotw).await;
    let version = w.cp.proxy_type("envoy-1", "LDS").await.unwrap()["version_acked"].clone();
    let loads_failed = |s: serde_json::Value| s["source"]["failed_loads"].as_u64().unwrap_or(0);
    let before = loads_failed(w.cp.status().await);

    // Bad YAML.
    std::fs::write(w.dir.join("broken.yaml"), "resources: [ { name: x\n").unwrap();
    let (ok, stderr) = validate(&w.dir);
    assert!(!ok);
    assert!(
        stderr.contains("broken.yaml") && stderr.contains("invalid YAML"),
        "{stderr}"
    );
    eventually("the controlplane to refuse broken.yaml", || async {
        let s = w.cp.status().await;
        (loads_failed(s.clone()) > before
            && s["source"]["last_error"]
                .to_string()
                .contains("broken.yaml"))
        .then_some(())
    })
    .await;
    let r = http::get(&w.addr(), "/", &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-backend")), (200, Some("b1")));
    std::fs::remove_file(w.dir.join("broken.yaml")).unwrap();

    // A listener naming a route configuration that does not exist.
    write(
        &w.dir,
        "listener.yaml",
        &file(None, &[listener("http", w.port, "no_such_routes")]),
    );
    let (ok, stderr) = validate(&w.dir);
    assert!(!ok);
    assert!(
        stderr.contains("listener.yaml")
            && stderr.contains("route configuration \"no_such_routes\" does not exist"),
        "{stderr}"
    );
    eventually(
        "the controlplane to refuse the dangling RDS name",
        || async {
            w.cp.status().await["source"]["last_error"]
                .to_string()
                .contains("no_such_routes")
                .then_some(())
        },
    )
    .await;
    let r = http::get(&w.addr(), "/", &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-backend")), (200, Some("b1")));
    assert_eq!(
        w.cp.proxy_type("envoy-1", "LDS").await.unwrap()["version_acked"],
        version,
        "nothing new was pushed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_nack_is_shown_and_not_pushed_again() {
    let w = World::start(Api::Sotw).await;
    let good = w.cp.proxy_type("envoy-1", "CDS").await.unwrap()["version_acked"]
        .as_str()
        .unwrap()
        .to_string();
    // A resource only Envoy finds fault with reaches it through the management API with the
    // checks off: a cluster whose endpoint port is out of range.
    let bad = w._work.path().join("bad.yaml");
    std::fs::write(
        &bad,
        file(
            None,
            &[
                listener("http", w.port, "r"),
                routes("r", &[("/", "b1")], None),
                cluster("b1", w.b1.port().into()),
                cluster("broken", 70000),
            ],
        ),
    )
    .unwrap();
    let out = std::process::Command::new(support::bin("controlplane"))
        .args([
            "push",
            "--server",
            &w.cp.xds,
            "--group",
            "pinned",
            "--node-id",
            "envoy-1",
            "--skip-checks",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nack = eventually("the status API to show Envoy's NACK", || async {
        let t = w.cp.proxy_type("envoy-1", "EDS").await?;
        let c = w.cp.proxy_type("envoy-1", "CDS").await?;
        [t, c].into_iter().find(|t| !t["last_nack"].is_null())
    })
    .await;
    let detail = nack["last_nack"]["error_detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.contains("70000") || detail.contains("port"),
        "{detail}"
    );
    println!("Envoy's NACK as the status API shows it: {detail}");
    let cds = w.cp.proxy_type("envoy-1", "CDS").await.unwrap();
    let sent = cds["version_sent"].clone();
    // Not pushed again: the version and nonce sent stay as they are for a while.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let later = w.cp.proxy_type("envoy-1", "CDS").await.unwrap();
    assert_eq!(
        (later["version_sent"].clone(), later["nonce_sent"].clone()),
        (sent, cds["nonce_sent"].clone())
    );
    assert_ne!(
        nack["version_acked"], nack["last_nack"]["version"],
        "the NACKed version is not the one Envoy runs"
    );
    let _ = good;
    // Envoy still answers with what it had.
    let r = http::get(&w.addr(), "/", &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-backend")), (200, Some("b1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_groups_get_different_configs() {
    let work = tempfile::tempdir().unwrap();
    let dir = config_dir(work.path());
    let (b1, b2) = (Backend::start("b1").await, Backend::start("b2").await);
    let (stable_port, canary_port) = (free_port(), free_port());
    write(
        &dir,
        "stable.yaml",
        &file(
            None,
            &[
                listener("http", stable_port, "r"),
                routes("r", &[("/", "b1")], None),
                cluster("b1", b1.port().into()),
            ],
        ),
    );
    write(
        &dir,
        "canary.yaml",
        &file(
            Some("node_group: { name: canary, node_ids: [\"canary-*\"] }"),
            &[
                listener("http", canary_port, "r"),
                routes("r", &[("/", "b2")], None),
                cluster("b2", b2.port().into()),
            ],
        ),
    );
    let cp = Controlplane::start(&dir, work.path());
    let _stable = Envoy::start("stable-1", &cp.xds, Api::Sotw, work.path()).await;
    let _canary = Envoy::start("canary-1", &cp.xds, Api::Delta, work.path()).await;
    for (port, want) in [(stable_port, "b1"), (canary_port, "b2")] {
        let addr = format!("127.0.0.1:{port}");
        eventually(&format!("{addr} answered by {want}"), || {
            let addr = addr.clone();
            async move {
                http::get(&addr, "/", &[])
                    .await
                    .filter(|r| r.header("x-backend") == Some(want))
            }
        })
        .await;
    }
    let status = cp.status().await;
    let group_of = |id: &str| {
        status["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node_id"] == id)
            .unwrap()["group"]
            .clone()
    };
    assert_eq!(
        (group_of("stable-1"), group_of("canary-1")),
        ("default".into(), "canary".into())
    );
}
