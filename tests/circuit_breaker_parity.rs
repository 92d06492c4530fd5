//! Circuit breakers, real Envoy 1.40 against our dataplane on the same static bootstrap (but
//! for the listener port):
//!
//! - `max_requests: 1`: while one request is in flight to the cluster (held by its upstream),
//!   the next gets Envoy's overflow answer (503, `x-envoy-overloaded: true`, its body), and
//!   once it is done the cluster takes requests again;
//! - `max_retries: 0`: a retry policy's retries are not made (the upstream sees one request),
//!   where the default limit (3) lets them through;
//! - Istio's thresholds (every limit 4294967295) are accepted and change nothing;
//! - the admin API counts each breaker's refusals under Envoy's names
//!   (`upstream_rq_active_overflow`, `upstream_rq_retry_overflow`), shows the breakers closed
//!   again, counts the requests sent (`upstream_rq_total`, every try), lists the limits in
//!   `/clusters` as Envoy does; `/stats/prometheus` has the same metrics, tags and types as
//!   Envoy's.

#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use support::backend::{Backend, counting_503};
use support::config::{static_cluster, static_http_bootstrap};
use support::{SideBySide, eventually, http};

/// An upstream that answers 200 at once, but holds a request for `/held` until the test
/// releases it (one permit each), counting the held requests that arrived.
async fn holding() -> (u16, Arc<AtomicUsize>, Arc<Semaphore>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (a, r) = (arrived.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (arrived, release) = (a.clone(), r.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let (arrived, release) = (arrived.clone(), release.clone());
                    async move {
                        if req.uri().path() == "/held" {
                            arrived.fetch_add(1, Ordering::SeqCst);
                            release.acquire().await.unwrap().forget();
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, arrived, release)
}

const ISTIO: &str = "circuit_breakers: { thresholds: [ { max_connections: 4294967295, max_pending_requests: 4294967295, max_requests: 4294967295, max_retries: 4294967295, track_remaining: true } ] },";

fn bootstrap(port: u16, backend: u16, held: u16, failing: u16) -> String {
    let retry = "retry_policy: { retry_on: 5xx, num_retries: 2, retry_back_off: { base_interval: 0.001s, max_interval: 0.002s } }";
    let routes = format!(
        r#"{{ match: {{ prefix: "/limited" }}, route: {{ cluster: limited }} }},
        {{ match: {{ prefix: "/held" }}, route: {{ cluster: limited }} }},
        {{ match: {{ prefix: "/no-retries" }}, route: {{ cluster: no_retries, {retry} }} }},
        {{ match: {{ prefix: "/retries" }}, route: {{ cluster: retries, {retry} }} }},
        {{ match: {{ prefix: "/" }}, route: {{ cluster: istio }} }}"#
    );
    let clusters = [
        static_cluster(
            "limited",
            &[held],
            "circuit_breakers: { thresholds: [ { max_requests: 1 } ] },",
        ),
        static_cluster(
            "no_retries",
            &[failing],
            "circuit_breakers: { thresholds: [ { priority: HIGH, max_retries: 5 }, { max_retries: 0 } ] },",
        ),
        static_cluster("retries", &[failing], ""),
        static_cluster("istio", &[backend], ISTIO),
    ];
    static_http_bootstrap("breakers", port, "s", &routes, &clusters)
}

/// What a client sees of the overflow answer.
#[derive(Debug, PartialEq)]
struct Overflow {
    status: u16,
    overloaded: Option<String>,
    body: String,
    /// The admin's `rq_open` line while the held request is in flight.
    open_while_held: Option<String>,
}

/// With a request held by the upstream of `limited`, the answer to another one; then the
/// held one's status once released, and a request's after it.
async fn overflow(
    addr: &str,
    admin: &str,
    arrived: &AtomicUsize,
    release: &Semaphore,
) -> (Overflow, u16, u16) {
    let before = arrived.load(Ordering::SeqCst);
    let held = {
        let addr = addr.to_string();
        tokio::spawn(async move { http::get(&addr, "/held", &[]).await })
    };
    // Once the upstream has it, the proxy counts it in flight.
    eventually(
        &format!("the held request through {addr} to arrive"),
        || async { (arrived.load(Ordering::SeqCst) > before).then_some(()) },
    )
    .await;
    let reply = http::get(addr, "/limited/fast", &[]).await.unwrap();
    let stats = http::get(admin, "/stats", &[]).await.map(|r| r.text());
    let open_while_held = stats.and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("cluster.limited.circuit_breakers.default.rq_open: "))
            .map(str::to_string)
    });
    release.add_permits(1);
    let first = held.await.unwrap().map_or(0, |r| r.status);
    let after = http::get(addr, "/limited/fast", &[])
        .await
        .map_or(0, |r| r.status);
    (
        Overflow {
            status: reply.status,
            overloaded: reply.header("x-envoy-overloaded").map(str::to_string),
            body: reply.text(),
            open_while_held,
        },
        first,
        after,
    )
}

/// How many requests the failing upstream saw for one request to `path`.
async fn upstream_tries(addr: &str, path: &str, hits: &AtomicUsize) -> (u16, usize) {
    let before = hits.load(Ordering::SeqCst);
    let status = http::get(addr, path, &[]).await.map_or(0, |r| r.status);
    (status, hits.load(Ordering::SeqCst) - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breakers_match_envoy() {
    let work = tempfile::tempdir().unwrap();
    let backend = Backend::start("b").await;
    let (failing, hits) = counting_503().await;
    let (held, arrived, release) = holding().await;
    let proxies = SideBySide::start(
        |port| bootstrap(port, backend.port(), held, failing),
        work.path(),
    )
    .await;
    let (envoy_proxy, our_proxy) = (&proxies.envoy, &proxies.ours);
    let [envoy, ours] = &proxies.addrs;

    let (e, o) = (
        overflow(envoy, &envoy_proxy.admin, &arrived, &release).await,
        overflow(ours, &our_proxy.admin, &arrived, &release).await,
    );
    println!("max_requests: Envoy {e:?}, ours {o:?}");
    assert_eq!(e.0.status, 503, "Envoy's overflow answer: {e:?}");
    assert_eq!(
        e.0.open_while_held.as_deref(),
        Some("cluster.limited.circuit_breakers.default.rq_open: 1"),
        "Envoy's breaker while the request is held: {e:?}"
    );
    assert_eq!((e.1, e.2), (200, 200), "Envoy after the overflow: {e:?}");
    assert_eq!(e, o);

    for path in ["/no-retries", "/retries"] {
        let (e, o) = (
            upstream_tries(envoy, path, &hits).await,
            upstream_tries(ours, path, &hits).await,
        );
        println!("{path}: Envoy {e:?}, ours {o:?}");
        let want = if path == "/no-retries" { 1 } else { 3 };
        assert_eq!(
            e,
            (503, want),
            "{path}: Envoy does not do what the case says"
        );
        assert_eq!(e, o, "{path}");
    }

    // What the admin API says of it all.
    let mut seen = Vec::new();
    for admin in [&envoy_proxy.admin, &our_proxy.admin] {
        let stats = http::get(admin, "/stats", &[]).await.unwrap().text();
        let clusters = http::get(admin, "/clusters", &[]).await.unwrap().text();
        let wanted = [
            "cluster.limited.upstream_rq_active_overflow: ",
            "cluster.limited.circuit_breakers.default.rq_open: ",
            "cluster.no_retries.upstream_rq_retry_overflow: ",
            "cluster.no_retries.circuit_breakers.default.rq_retry_open: ",
            "cluster.retries.upstream_rq_retry_overflow: ",
            "cluster.limited.upstream_rq_total: ",
            "cluster.no_retries.upstream_rq_total: ",
            "cluster.retries.upstream_rq_total: ",
            "cluster.istio.upstream_rq_total: ",
            "cluster.limited.upstream_rq_active: ",
        ];
        let mut lines: Vec<&str> = wanted
            .iter()
            .map(|w| stats.lines().find(|l| l.starts_with(w)).unwrap_or(w))
            .collect();
        lines.extend(clusters.lines().filter(|l| {
            l.starts_with("limited::default_priority::max_requests::")
                || l.starts_with("no_retries::default_priority::max_retries::")
        }));
        seen.push(lines.join("\n"));
    }
    println!("Envoy:\n{}\nours:\n{}", seen[0], seen[1]);
    assert!(
        seen[0].contains("upstream_rq_active_overflow: 1")
            && seen[0].contains("no_retries.upstream_rq_retry_overflow: 1"),
        "Envoy does not count what the case says: {}",
        seen[0]
    );
    assert_eq!(seen[0], seen[1]);

    // The same in Prometheus's format: each metric's block (its TYPE line and every cluster's
    // series).
    let mut blocks = Vec::new();
    for admin in [&envoy_proxy.admin, &our_proxy.admin] {
        let text = http::get(admin, "/stats/prometheus", &[])
            .await
            .unwrap()
            .text();
        let block = |metric: &str| -> String {
            let mut lines = text
                .lines()
                .skip_while(|l| !l.starts_with(&format!("# TYPE {metric} ")));
            let head = lines.next().unwrap_or("(none)").to_string();
            let series: Vec<&str> = lines.take_while(|l| !l.starts_with("# TYPE")).collect();
            format!("{head}\n{}", series.join("\n"))
        };
        blocks.push(
            [
                "envoy_cluster_upstream_rq_active_overflow",
                "envoy_cluster_upstream_rq_retry_overflow",
                "envoy_cluster_circuit_breakers_default_rq_open",
                "envoy_cluster_circuit_breakers_default_rq_retry_open",
                "envoy_cluster_upstream_rq_total",
                "envoy_cluster_upstream_rq_active",
            ]
            .map(block)
            .join("\n"),
        );
    }
    println!("Envoy:\n{}\nours:\n{}", blocks[0], blocks[1]);
    assert!(
        blocks[0].contains(
            "envoy_cluster_upstream_rq_active_overflow{envoy_cluster_name=\"limited\"} 1"
        ),
        "{}",
        blocks[0]
    );
    assert_eq!(blocks[0], blocks[1]);
}
