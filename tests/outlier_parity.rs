//! Outlier detection, real Envoy 1.40 against our dataplane on the same static bootstrap (but
//! for the listener port). Each cluster has two hosts, round robin: one answers 503 to every
//! request, the other 200.
//!
//! - `consecutive_5xx: 3`: the failing host gets three requests, is ejected, and the rest go
//!   to the good one; once `base_ejection_time` has passed it is back at an interval and
//!   is ejected again after three more, but that ejection reaches the load balancer only at
//!   the end of the `update_merge_window` that its return opened;
//! - Envoy's default `max_ejection_percent` (10%) keeps one host of two in: every detection is
//!   an overflow, and the failing host keeps its share;
//! - `consecutive_gateway_failure` enforced ejects after that many 502-504 answers;
//! - the admin API: `cluster.<name>.outlier_detection.*` stats and the host's
//!   `/failed_outlier_check` health flag in `/clusters` are Envoy's.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use support::backend::{Backend, counting_503};
use support::config::{static_cluster, static_http_bootstrap};
use support::{SideBySide, eventually, http};

/// The failing hosts of the `ejects`, `overflows` and `gateway` clusters; `good` answers 200.
struct Ports {
    good: u16,
    ejects: u16,
    overflows: u16,
    gateway: u16,
}

fn bootstrap(port: u16, p: &Ports) -> String {
    let routes = r#"{ match: { prefix: "/ejects" }, route: { cluster: ejects } },
        { match: { prefix: "/overflows" }, route: { cluster: overflows } },
        { match: { prefix: "/gateway" }, route: { cluster: gateway } },
        { match: { prefix: "/" }, route: { cluster: plain } }"#;
    let clusters = [
        static_cluster("plain", &[p.good], ""),
        static_cluster(
            "ejects",
            &[p.ejects, p.good],
            "common_lb_config: { update_merge_window: 1.5s }, outlier_detection: { consecutive_5xx: 3, max_ejection_percent: 50, interval: 0.5s, base_ejection_time: 2s },",
        ),
        static_cluster(
            "overflows",
            &[p.overflows, p.good],
            "outlier_detection: { consecutive_5xx: 2 },",
        ),
        static_cluster(
            "gateway",
            &[p.gateway, p.good],
            "outlier_detection: { consecutive_5xx: 100, consecutive_gateway_failure: 2, enforcing_consecutive_gateway_failure: 100, max_ejection_percent: 50, base_ejection_time: 300s },",
        ),
    ];
    static_http_bootstrap("outlier", port, "s", routes, &clusters)
}

/// Which detections the failing host's answers so far in a round have made: after `hits`
/// of them, the admin's `stat` of the round's cluster is at least the value.
type Detections = fn(usize) -> (&'static str, u64);

/// `n` requests to `path` one after the other: how many the failing host got, and how many
/// answers were 503.
///
/// Before each next request, the detections the failing host's answers made so far must show
/// in `admin`'s stats: Envoy decides an ejection on its main thread and tells its workers
/// after, so a request sent at once could still reach the host on a loaded machine. Both
/// proxies apply an ejection in the same step that counts its detection.
async fn round(
    addr: &str,
    path: &str,
    n: usize,
    hits: &AtomicUsize,
    (admin, cluster, detections): (&str, &str, Detections),
) -> (usize, usize) {
    let before = hits.load(Ordering::SeqCst);
    let mut failed = 0;
    for _ in 0..n {
        let status = http::get(addr, path, &[]).await.map_or(0, |r| r.status);
        failed += usize::from(status == 503);
        let (stat, want) = detections(hits.load(Ordering::SeqCst) - before);
        let name = format!("cluster.{cluster}.outlier_detection.{stat}: ");
        eventually(&format!("{admin} to count {want} {stat}"), || async {
            let stats = http::get(admin, "/stats", &[]).await?.text();
            let seen: u64 = stats
                .lines()
                .find_map(|l| l.strip_prefix(&name))?
                .parse()
                .ok()?;
            (seen >= want).then_some(())
        })
        .await;
    }
    (hits.load(Ordering::SeqCst) - before, failed)
}

/// The admin API's outlier stats of `cluster` and the failing host's health flags.
async fn admin_view(admin: &str, cluster: &str, failing: u16) -> String {
    let stats = http::get(admin, "/stats", &[]).await.unwrap().text();
    let clusters = http::get(admin, "/clusters", &[]).await.unwrap().text();
    let prefix = format!("cluster.{cluster}.outlier_detection.");
    let mut lines: Vec<String> = [
        "ejections_active",
        "ejections_consecutive_5xx",
        "ejections_detected_consecutive_5xx",
        "ejections_detected_consecutive_gateway_failure",
        "ejections_enforced_consecutive_5xx",
        "ejections_enforced_consecutive_gateway_failure",
        "ejections_enforced_total",
        "ejections_overflow",
        "ejections_total",
    ]
    .iter()
    .map(|s| {
        let name = format!("{prefix}{s}: ");
        stats
            .lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or(&name)
            .to_string()
    })
    .collect();
    let flags = format!("{cluster}::127.0.0.1:{failing}::health_flags::");
    lines.push(
        clusters
            .lines()
            .find(|l| l.starts_with(&flags))
            .unwrap_or(&flags)
            .to_string(),
    );
    lines.join("\n")
}

/// Whether the failing host of `cluster` is back in (healthy in `/clusters`).
async fn back_in(admin: &str, cluster: &str, failing: u16) -> Option<()> {
    let clusters = http::get(admin, "/clusters", &[]).await?.text();
    let line = format!("{cluster}::127.0.0.1:{failing}::health_flags::healthy");
    clusters.lines().any(|l| l == line).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_matches_envoy() {
    let work = tempfile::tempdir().unwrap();
    let backend = Backend::start("good").await;
    let (ejects, ejects_hits) = counting_503().await;
    let (overflows, overflows_hits) = counting_503().await;
    let (gateway, gateway_hits) = counting_503().await;
    let ports = Ports {
        good: backend.port(),
        ejects,
        overflows,
        gateway,
    };
    let proxies = SideBySide::start(|port| bootstrap(port, &ports), work.path()).await;
    let admins = [&proxies.envoy.admin, &proxies.ours.admin];

    // consecutive_5xx: three answers from the failing host, then only the good one.
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        let r = round(
            addr,
            "/ejects",
            20,
            &ejects_hits,
            (admin, "ejects", |h| {
                ("ejections_detected_consecutive_5xx", u64::from(h >= 3))
            }),
        )
        .await;
        seen.push((r, admin_view(admin, "ejects", ejects).await));
    }
    println!("ejected: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert_eq!(seen[0].0, (3, 3), "Envoy does not eject as the case says");
    assert!(seen[0].1.contains("ejections_active: 1"), "{}", seen[0].1);
    assert!(seen[0].1.contains("/failed_outlier_check"), "{}", seen[0].1);
    assert_eq!(seen[0], seen[1]);

    // Back after base_ejection_time, at an interval: three more answers, ejected again.
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        eventually(&format!("the host to be back in at {admin}"), || {
            back_in(admin, "ejects", ejects)
        })
        .await;
        let r = round(
            addr,
            "/ejects",
            20,
            &ejects_hits,
            (admin, "ejects", |h| {
                // One detection from the first round; a second at the third answer.
                ("ejections_detected_consecutive_5xx", 1 + u64::from(h >= 3))
            }),
        )
        .await;
        seen.push((r, admin_view(admin, "ejects", ejects).await));
    }
    println!("ejected again: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert!(
        seen[0].1.contains("ejections_enforced_total: 2"),
        "{}",
        seen[0].1
    );
    // The host is flagged at its third failure again, but the ejection comes within the
    // `update_merge_window` (1.5 s here, 1 s by default) of its return, so the load balancer
    // learns of it only at the window's end: the failing host keeps its share of the round.
    assert_eq!(seen[0].0, (10, 10), "Envoy does not merge as the case says");
    assert_eq!(seen[0], seen[1]);

    // max_ejection_percent 10 of two hosts: never ejected, each detection an overflow.
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        let r = round(
            addr,
            "/overflows",
            20,
            &overflows_hits,
            (admin, "overflows", |h| {
                ("ejections_detected_consecutive_5xx", (h / 2) as u64)
            }),
        )
        .await;
        seen.push((r, admin_view(admin, "overflows", overflows).await));
    }
    println!("overflow: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert_eq!(seen[0].0, (10, 10));
    // Five consecutive-5xx detections (every second 503) and two gateway-failure ones (every
    // fifth, the default threshold), each refused by the 10%.
    assert!(seen[0].1.contains("ejections_overflow: 7"), "{}", seen[0].1);
    assert_eq!(seen[0], seen[1]);

    // consecutive_gateway_failure enforced: two 503s eject.
    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        let r = round(
            addr,
            "/gateway",
            20,
            &gateway_hits,
            (admin, "gateway", |h| {
                (
                    "ejections_detected_consecutive_gateway_failure",
                    u64::from(h >= 2),
                )
            }),
        )
        .await;
        seen.push((r, admin_view(admin, "gateway", gateway).await));
    }
    println!("gateway: Envoy {:?}\nours {:?}", seen[0], seen[1]);
    assert_eq!(seen[0].0, (2, 2));
    assert_eq!(seen[0], seen[1]);
}
