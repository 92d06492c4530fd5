//! Active health checking, real Envoy 1.40 against our dataplane on the same static bootstrap
//! (but for the listener port). Two upstreams answer every request with their name, and
//! `/healthz` with a status the test switches.
//!
//! - HTTP checks: a host whose `/healthz` answers 503 is failed (`/failed_active_hc` in
//!   `/clusters`) and gets no requests; once it answers 200 it is back after
//!   `healthy_threshold` passes and the load is shared again; a host that starts answering 503
//!   is flagged at once (a status that is not retriable does not wait for the threshold), and
//!   leaves the load balancer at the end of the `update_merge_window` its change fell in;
//! - TCP checks: a host whose port is closed is failed, the other serves;
//! - the admin API's `cluster.<name>.health_check.healthy` gauge agrees.

#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use support::backend::Backend;
use support::config::{static_cluster, static_http_bootstrap};
use support::{SideBySide, eventually, http};

/// An upstream that answers its `name`, and `/healthz` with the status in the first
/// returned cell, other paths with the status in the second.
async fn upstream(name: &'static str) -> (u16, Arc<AtomicU16>, Arc<AtomicU16>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let health = Arc::new(AtomicU16::new(200));
    let answer = Arc::new(AtomicU16::new(200));
    let (status, other) = (health.clone(), answer.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (status, other) = (status.clone(), other.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let code = if req.uri().path() == "/healthz" {
                        status.load(Ordering::SeqCst)
                    } else {
                        other.load(Ordering::SeqCst)
                    };
                    async move {
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from_static(name.as_bytes())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, health, answer)
}

/// A cluster of `ports` with `extra` fields and one health check of every 0.2 s (with or
/// without traffic), two failures or passes to move a host, of kind `checks`.
fn cluster(name: &str, ports: &[u16], checks: &str, extra: &str) -> String {
    let fields = format!(
        "{extra} health_checks: [ {{ timeout: 1s, interval: 0.2s, no_traffic_interval: 0.2s, unhealthy_threshold: 2, healthy_threshold: 2, {checks} }} ],"
    );
    static_cluster(name, ports, &fields)
}

fn bootstrap(port: u16, good: u16, a: u16, b: u16, closed: u16, sick: u16) -> String {
    let routes = r#"{ match: { prefix: "/http" }, route: { cluster: http } },
        { match: { prefix: "/both" }, route: { cluster: both } },
        { match: { prefix: "/tcp" }, route: { cluster: tcp } },
        { match: { prefix: "/" }, route: { cluster: plain } }"#;
    let clusters = [
        static_cluster("plain", &[good], ""),
        cluster(
            "http",
            &[a, b],
            r#"http_health_check: { path: "/healthz" }"#,
            "common_lb_config: { update_merge_window: 3s },",
        ),
        cluster("tcp", &[good, closed], "tcp_health_check: {}", ""),
        cluster(
            "both",
            &[sick, good],
            r#"http_health_check: { path: "/healthz" }"#,
            "outlier_detection: { consecutive_5xx: 2, max_ejection_percent: 50, base_ejection_time: 300s },",
        ),
    ];
    static_http_bootstrap("health", port, "s", routes, &clusters)
}

/// Who answered `n` requests to `path`: the bodies, counted by name, sorted.
async fn answers(addr: &str, path: &str, n: usize) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let body = http::get(addr, path, &[]).await.map_or_else(
            || "(no answer)".to_string(),
            |r| format!("{} {}", r.status, r.text()),
        );
        *counts.entry(body).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

/// The `/clusters` health flags of `cluster`'s hosts (by port) and its healthy gauge, once
/// they are what `want` says (the checks run on their own clock).
async fn settled(admin: &str, cluster: &str, want: &[(u16, &str)]) -> String {
    eventually(
        &format!("{cluster}'s hosts at {admin} to be {want:?}"),
        || async {
            let clusters = http::get(admin, "/clusters", &[]).await?.text();
            let ok = want.iter().all(|(port, flags)| {
                let line = format!("{cluster}::127.0.0.1:{port}::health_flags::{flags}");
                clusters.lines().any(|l| l == line)
            });
            if !ok {
                return None;
            }
            let stats = http::get(admin, "/stats", &[]).await?.text();
            let gauge = format!("cluster.{cluster}.health_check.healthy: ");
            stats
                .lines()
                .find(|l| l.starts_with(&gauge))
                .map(str::to_string)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_match_envoy() {
    let work = tempfile::tempdir().unwrap();
    let good = Backend::start("good").await;
    let (a, a_health, _) = upstream("a").await;
    let (b, b_health, _) = upstream("b").await;
    // Fails every request but passes its checks: ejected by outlier detection, brought back
    // by the next passing check.
    let (sick, _, sick_answer) = upstream("sick").await;
    sick_answer.store(503, Ordering::SeqCst);
    b_health.store(503, Ordering::SeqCst);
    // A port with nothing listening: bound, then closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxies = SideBySide::start(
        |port| bootstrap(port, good.port(), a, b, closed, sick),
        work.path(),
    )
    .await;
    let admins = [&proxies.envoy.admin, &proxies.ours.admin];

    // b fails its checks: only a serves.
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        let gauge = settled(admin, "http", &[(a, "healthy"), (b, "/failed_active_hc")]).await;
        seen.push((gauge, answers(addr, "/http", 10).await));
    }
    println!("b failing: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert_eq!(
        seen[0].1,
        [("200 a".to_string(), 10)],
        "Envoy does not do what the case says"
    );
    assert_eq!(seen[0], seen[1]);

    // b passes again: back after two passes, and the load is shared.
    b_health.store(200, Ordering::SeqCst);
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        let gauge = settled(admin, "http", &[(a, "healthy"), (b, "healthy")]).await;
        seen.push((gauge, answers(addr, "/http", 10).await));
    }
    println!("both passing: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert_eq!(
        seen[0].1,
        [("200 a".to_string(), 5), ("200 b".to_string(), 5)]
    );
    assert_eq!(seen[0], seen[1]);

    // a answers 503: flagged at its next check, without waiting for the threshold. That comes
    // within the `update_merge_window` (3 s here, 1 s by default) of b's return, so the load
    // balancer still shares the load until the window ends, then sends everything to b.
    a_health.store(503, Ordering::SeqCst);
    // Both proxies check every 0.2 s, so both windows open about together: both rounds run
    // before either window can end, and only then the wait for its end.
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        let gauge = settled(admin, "http", &[(a, "/failed_active_hc"), (b, "healthy")]).await;
        seen.push((gauge, answers(addr, "/http", 10).await));
    }
    for addr in &proxies.addrs {
        eventually(&format!("{addr} to send everything to b"), || async {
            let only_b = answers(addr, "/http", 4).await == [("200 b".to_string(), 4)];
            only_b.then_some(())
        })
        .await;
    }
    println!("a failing: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert_eq!(
        seen[0].1,
        [("200 a".to_string(), 5), ("200 b".to_string(), 5)],
        "Envoy does not merge as the case says"
    );
    assert_eq!(seen[0], seen[1]);

    // TCP: the closed port is failed, the backend serves.
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        let gauge = settled(
            admin,
            "tcp",
            &[(good.port(), "healthy"), (closed, "/failed_active_hc")],
        )
        .await;
        let served = answers(addr, "/tcp", 4).await;
        seen.push((
            gauge,
            served
                .into_iter()
                .map(|(s, n)| (s[..3].to_string(), n))
                .collect::<Vec<_>>(),
        ));
    }
    println!("tcp: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert_eq!(seen[0].1, [("200".to_string(), 4)]);
    assert_eq!(seen[0], seen[1]);

    // Outlier detection ejects the sick host (two 503s); its next passing check brings it
    // back long before base_ejection_time, as `successful_active_health_check_uneject_host`
    // (true by default) says.
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        settled(
            admin,
            "both",
            &[(sick, "healthy"), (good.port(), "healthy")],
        )
        .await;
        answers(addr, "/both", 4).await;
        let stats = http::get(admin, "/stats", &[]).await.unwrap().text();
        let ejected = stats
            .lines()
            .find(|l| l.starts_with("cluster.both.outlier_detection.ejections_enforced_total: "))
            .map(str::to_string);
        // Back in at the next check.
        settled(
            admin,
            "both",
            &[(sick, "healthy"), (good.port(), "healthy")],
        )
        .await;
        let active = http::get(admin, "/stats", &[]).await.unwrap().text();
        let active = active
            .lines()
            .find(|l| l.starts_with("cluster.both.outlier_detection.ejections_active: "))
            .map(str::to_string);
        seen.push((ejected, active));
    }
    println!("uneject: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert_eq!(
        seen[0],
        (
            Some("cluster.both.outlier_detection.ejections_enforced_total: 1".to_string()),
            Some("cluster.both.outlier_detection.ejections_active: 0".to_string())
        ),
        "Envoy does not do what the case says"
    );
    assert_eq!(seen[0], seen[1]);
}
