//! Config changes and a controlplane outage while our dataplane carries traffic (issue 4):
//! 50 concurrent keep-alive clients, bounded in time, and not one failed request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use support::backend::Backend;
use support::config::{config_dir, eds_cluster, envoy_bootstrap, file, listener, routes, write};
use support::{Controlplane, Dataplane, eventually, free_port, http};

const WORKERS: usize = 50;
/// No load runs longer than this, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(40);

/// 50 clients sending GET / in a loop until stopped; every answer is counted by backend,
/// every failure (an error or a status other than 200) recorded.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    backends: Arc<Mutex<BTreeMap<String, u64>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: &str) -> Load {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(WORKERS)
            .build_http();
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let backends = Arc::new(Mutex::new(BTreeMap::new()));
        let uri: hyper::Uri = format!("http://{addr}/").parse().unwrap();
        let end = Instant::now() + LOAD_LIMIT;
        let workers = (0..WORKERS)
            .map(|_| {
                let (client, uri) = (client.clone(), uri.clone());
                let (stop, ok) = (stop.clone(), ok.clone());
                let (failures, backends) = (failures.clone(), backends.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                        let answer = tokio::time::timeout(Duration::from_secs(10), async {
                            let r = client.get(uri.clone()).await.map_err(|e| e.to_string())?;
                            let status = r.status();
                            let backend = r
                                .headers()
                                .get("x-backend")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            r.into_body().collect().await.map_err(|e| e.to_string())?;
                            Ok::<_, String>((status, backend))
                        })
                        .await;
                        match answer {
                            Ok(Ok((status, backend))) if status == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                *backends.lock().unwrap().entry(backend).or_default() += 1;
                            }
                            Ok(Ok((status, _))) => {
                                failures.lock().unwrap().push(format!("status {status}"))
                            }
                            Ok(Err(e)) => failures.lock().unwrap().push(e),
                            Err(_) => failures.lock().unwrap().push("no answer in 10 s".into()),
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            backends,
            workers,
        }
    }

    /// Stops the clients; (requests answered 200, failures, answers by backend).
    async fn finish(self) -> (u64, Vec<String>, BTreeMap<String, u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let backends = self.backends.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures, backends)
    }
}

/// Cluster `name` over EDS with one endpoint per port.
fn cluster(name: &str, ports: &[u16]) -> String {
    let ports: Vec<u32> = ports.iter().copied().map(u32::from).collect();
    eds_cluster(name, &ports)
}

struct Setup {
    _work: tempfile::TempDir,
    dir: std::path::PathBuf,
    work_path: std::path::PathBuf,
    backends: Vec<Backend>,
    port: u16,
}

async fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let dir = config_dir(work.path());
    let mut backends = Vec::new();
    for name in ["b1", "b2", "b3"] {
        backends.push(Backend::start(name).await);
    }
    Setup {
        dir,
        work_path: work.path().to_path_buf(),
        _work: work,
        backends,
        port: free_port(),
    }
}

impl Setup {
    fn port_of(&self, i: usize) -> u16 {
        self.backends[i].port()
    }

    /// The whole config: the route sends / to `target`; `web` has endpoints `web`, `alt` has b2.
    fn write(&self, target: &str, web: &[u16]) {
        let text = file(
            None,
            &[
                listener("http", self.port, "main"),
                routes("main", &[("/", target)], None),
                cluster("web", web),
                cluster("alt", &[self.port_of(1)]),
            ],
        );
        write(&self.dir, "all.yaml", &text);
    }

    async fn serving(&self, backend: &str) {
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(&format!("requests to reach {backend}"), || {
            let addr = addr.clone();
            async move {
                http::get(&addr, "/", &[])
                    .await
                    .filter(|r| r.header("x-backend") == Some(backend))
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_config_pushes_under_load_fail_no_request() {
    let s = setup().await;
    let (b1, b3) = (s.port_of(0), s.port_of(2));
    s.write("web", &[b1]);
    let cp = Controlplane::start(&s.dir, &s.work_path);
    let (host, port) = cp.xds.rsplit_once(':').unwrap();
    let _dp = Dataplane::start(
        &envoy_bootstrap("load-1", host, port, "DELTA_GRPC"),
        "dataplane",
        &s.work_path,
    );
    s.serving("b1").await;

    let load = Load::start(&format!("127.0.0.1:{}", s.port));
    let started = Instant::now();
    // Ten pushes, a second apart: routes and endpoints in turn.
    let steps: [(&str, &[u16]); 10] = [
        ("alt", &[b1]),
        ("web", &[b1, b3]),
        ("alt", &[b1, b3]),
        ("web", &[b3]),
        ("web", &[b1]),
        ("alt", &[b1]),
        ("web", &[b1, b3]),
        ("alt", &[b3]),
        ("web", &[b3]),
        ("web", &[b1]),
    ];
    for (target, web) in steps {
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.write(target, web);
    }
    s.serving("b1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failures, backends) = load.finish().await;
    println!(
        "{ok} requests in {:.1} s through 10 pushes, {} failed; by backend: {backends:?}",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(10)]
    );
    for b in ["b1", "b2", "b3"] {
        assert!(
            backends.get(b).copied().unwrap_or(0) > 0,
            "{b} never answered: {backends:?}"
        );
    }
    assert!(ok > 1000, "only {ok} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlplane_down_for_10s_under_load_fails_no_request() {
    let s = setup().await;
    let b1 = s.port_of(0);
    s.write("web", &[b1]);
    let mut cp = Controlplane::start(&s.dir, &s.work_path);
    let xds = cp.xds.clone();
    let (host, port) = xds.rsplit_once(':').unwrap();
    let _dp = Dataplane::start(
        &envoy_bootstrap("load-2", host, port, "GRPC"),
        "dataplane",
        &s.work_path,
    );
    s.serving("b1").await;

    let load = Load::start(&format!("127.0.0.1:{}", s.port));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(cp.process.terminate().is_some_and(|st| st.success()));
    let down = Instant::now();
    // What changes while the controlplane is down reaches the proxy once it is back.
    s.write("alt", &[b1]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cp = Controlplane::start_at(&s.dir, &s.work_path, &xds);
    let back = Instant::now();
    s.serving("b2").await;
    println!(
        "controlplane down for {:.1} s; the change made meanwhile applied {:.2} s after the restart",
        (back - down).as_secs_f64(),
        back.elapsed().as_secs_f64()
    );
    let acked = eventually("the dataplane to resubscribe and ACK", || {
        let cp = &cp;
        async move {
            let rds = cp.proxy_type("load-2", "RDS").await?;
            rds.get("version_acked").filter(|v| !v.is_null()).cloned()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failures, backends) = load.finish().await;
    println!(
        "{ok} requests, {} failed; by backend: {backends:?}; RDS acked {acked}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(10)]
    );
    assert!(
        backends.contains_key("b1") && backends.contains_key("b2"),
        "{backends:?}"
    );
}
