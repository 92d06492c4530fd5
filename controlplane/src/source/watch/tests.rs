use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use xds_types::Resource;
use xds_types::pb::envoy::config::route::v3::RouteConfiguration;

use super::*;

const CLUSTER: &str = r#"
"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
name: backend
type: STATIC
connect_timeout: 1s
load_assignment:
  cluster_name: backend
  endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } } } ] } ]
"#;

fn routes(domain: &str) -> String {
    format!(
        "\"@type\": type.googleapis.com/envoy.config.route.v3.RouteConfiguration\nname: local_routes\nvirtual_hosts: [ {{ name: all, domains: [\"{domain}\"], routes: [ {{ match: {{ prefix: \"/\" }}, route: {{ cluster: backend }} }} ] }} ]\n"
    )
}

/// The domain the served route configuration answers for.
fn served_domain(cache: &SnapshotCache) -> String {
    let group = cache.group("default").unwrap();
    let any = &group.snapshot.resources(xds_types::type_url::ROUTE)["local_routes"].any;
    RouteConfiguration::from_any(any).unwrap().virtual_hosts[0].domains[0].clone()
}

/// The spec says a change is served within 1 s (it takes ~60 ms here); the margin is for a
/// machine busy with parallel builds, not for the watcher.
const RELOAD_WITHIN: Duration = Duration::from_secs(3);

/// Polls `done` every 10 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

struct Running {
    cache: SnapshotCache,
    status: SourceStatus,
    task: tokio::task::JoinHandle<()>,
}

/// Loads `dir`, starts the watcher and waits until it is live (an event in the directory,
/// here an ignored file, made it reload).
async fn start(dir: &Path) -> Running {
    let (cache, status) = (SnapshotCache::new(), SourceStatus::default());
    let mut versioner = Versioner::default();
    assert!(reload(
        dir,
        LoadOptions::default(),
        &mut versioner,
        &cache,
        &status
    ));
    let task = tokio::spawn(run(
        dir.to_path_buf(),
        LoadOptions::default(),
        versioner,
        cache.clone(),
        status.clone(),
    ));
    let mut poke = 0;
    let live = eventually(Duration::from_secs(5), || {
        poke += 1;
        let _ = fs::write(dir.join("poke.txt"), poke.to_string());
        status.get().loads > 1
    })
    .await;
    assert!(live, "the watcher never reloaded");
    // Let the pokes' last reload pass, so later changes are the tests' own.
    let mut last = (status.get().loads, Instant::now());
    let quiet = eventually(Duration::from_secs(5), || {
        let loads = status.get().loads;
        if loads != last.0 {
            last = (loads, Instant::now());
        }
        // Longer than a reload held back by MIN_INTERVAL can come after the one before.
        last.1.elapsed() > MIN_INTERVAL + Duration::from_millis(200)
    });
    assert!(quiet.await, "the watcher keeps reloading with no change");
    Running {
        cache,
        status,
        task,
    }
}

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clusters.yaml"), CLUSTER).unwrap();
    fs::write(dir.path().join("routes.yaml"), routes("one.example")).unwrap();
    dir
}

#[tokio::test]
async fn reloads_when_a_file_is_modified_in_place() {
    let dir = config_dir();
    let w = start(dir.path()).await;
    let before = w.cache.group("default").unwrap().snapshot.version.clone();
    let written = Instant::now();
    fs::write(dir.path().join("routes.yaml"), routes("two.example")).unwrap();
    assert!(eventually(RELOAD_WITHIN, || served_domain(&w.cache) == "two.example").await);
    println!("file write to new snapshot: {:?}", written.elapsed());
    let after = w.cache.group("default").unwrap().snapshot.version.clone();
    assert_ne!(before, after);
    // Versions are <sequence>-<hash> and the sequence grows.
    let seq = |v: &str| v.split('-').next().unwrap().parse::<u64>().unwrap();
    assert!(seq(&after) > seq(&before), "{before} -> {after}");
    w.task.abort();
}

#[tokio::test]
async fn reloads_when_a_file_is_replaced_by_rename() {
    let dir = config_dir();
    let w = start(dir.path()).await;
    // The way editors and deploy tools write: a temporary (ignored: dotfile), then rename.
    let tmp = dir.path().join(".routes.yaml.tmp");
    fs::write(&tmp, routes("renamed.example")).unwrap();
    fs::rename(&tmp, dir.path().join("routes.yaml")).unwrap();
    assert!(
        eventually(RELOAD_WITHIN, || served_domain(&w.cache)
            == "renamed.example")
        .await
    );
    // Removing a file is a change too: its resources go.
    fs::remove_file(dir.path().join("routes.yaml")).unwrap();
    let gone = eventually(RELOAD_WITHIN, || {
        w.cache
            .group("default")
            .unwrap()
            .snapshot
            .resources(xds_types::type_url::ROUTE)
            .is_empty()
    });
    assert!(gone.await);
    w.task.abort();
}

#[tokio::test]
async fn a_bad_file_keeps_the_last_good_snapshot() {
    let dir = config_dir();
    let w = start(dir.path()).await;
    let good = w.cache.group("default").unwrap().snapshot.version.clone();
    fs::write(
        dir.path().join("routes.yaml"),
        "virtual_hosts: [ {name: x\n",
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(2), || w
            .status
            .get()
            .last_error
            .is_some())
        .await
    );
    let state = w.status.get();
    let errors = state.last_error.unwrap();
    assert!(
        errors[0].contains("routes.yaml: invalid YAML"),
        "{errors:?}"
    );
    assert!(state.failed_loads >= 1);
    assert_eq!(w.cache.group("default").unwrap().snapshot.version, good);
    assert_eq!(served_domain(&w.cache), "one.example");
    // A check failure is refused the same way, naming the resource and the field.
    fs::write(
        dir.path().join("routes.yaml"),
        routes("one.example").replace("cluster: backend", "cluster: \"\""),
    )
    .unwrap();
    let named = eventually(Duration::from_secs(2), || {
        w.status.get().last_error.is_some_and(|e| {
            e[0].contains("RDS \"local_routes\": virtual_hosts[0].routes[0].route")
        })
    });
    assert!(named.await, "{:?}", w.status.get().last_error);
    assert_eq!(w.cache.group("default").unwrap().snapshot.version, good);
    // Fixed: served again, and the error is cleared.
    fs::write(dir.path().join("routes.yaml"), routes("fixed.example")).unwrap();
    assert!(
        eventually(Duration::from_secs(2), || served_domain(&w.cache)
            == "fixed.example")
        .await
    );
    assert!(w.status.get().last_error.is_none());
    w.task.abort();
}

#[tokio::test]
async fn sighup_reloads() {
    // routes.yaml is a symlink to a file outside the directory: writing the target makes no
    // event in the watched directory, so only SIGHUP can make the change seen.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("routes.yaml");
    fs::write(&target, routes("one.example")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clusters.yaml"), CLUSTER).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("routes.yaml")).unwrap();
    let w = start(dir.path()).await;
    fs::write(&target, routes("hup.example")).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        served_domain(&w.cache),
        "one.example",
        "the watcher saw the outside write"
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(eventually(RELOAD_WITHIN, || served_domain(&w.cache) == "hup.example").await);
    w.task.abort();
}

#[test]
fn unchanged_content_keeps_its_version() {
    let dir = config_dir();
    let (cache, status) = (SnapshotCache::new(), SourceStatus::default());
    let mut versioner = Versioner::default();
    assert!(reload(
        dir.path(),
        LoadOptions::default(),
        &mut versioner,
        &cache,
        &status
    ));
    let first = cache.group("default").unwrap().snapshot.version.clone();
    assert!(reload(
        dir.path(),
        LoadOptions::default(),
        &mut versioner,
        &cache,
        &status
    ));
    assert_eq!(cache.group("default").unwrap().snapshot.version, first);
    assert_eq!(status.get().loads, 2);
}

#[tokio::test]
async fn a_storm_of_writes_is_coalesced() {
    let dir = config_dir();
    let w = start(dir.path()).await;
    let before = w.status.get().loads;
    // 100 writes as fast as the disk takes them: far fewer reloads, and the last one wins.
    for i in 0..100 {
        fs::write(
            dir.path().join("routes.yaml"),
            routes(&format!("n{i}.example")),
        )
        .unwrap();
    }
    assert!(
        eventually(Duration::from_secs(2), || served_domain(&w.cache)
            == "n99.example")
        .await
    );
    let reloads = w.status.get().loads - before;
    assert!(
        (1..=10).contains(&reloads),
        "{reloads} reloads for 100 writes"
    );
    w.task.abort();
}
