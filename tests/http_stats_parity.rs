//! A connection manager's `http.<stat_prefix>.*` stats, real Envoy 1.40 against our dataplane
//! on the same static bootstrap (but for the listener port): the same requests (answered by
//! the backend, by a direct response, and 503 for a cluster that cannot be reached) move
//! `downstream_cx_total`, `downstream_rq_total` and `downstream_rq_<class>xx` alike, the
//! active connections go back to zero, and `/stats/prometheus` shows them with Envoy's
//! metric names and tags.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use support::backend::Backend;
use support::config::{static_cluster, static_http_bootstrap};
use support::{SideBySide, eventually, http};

fn bootstrap(port: u16, backend: u16, closed: u16) -> String {
    let routes = r#"{ match: { prefix: "/notfound" }, direct_response: { status: 404 } },
        { match: { prefix: "/down" }, route: { cluster: down } },
        { match: { prefix: "/" }, route: { cluster: plain } }"#;
    let clusters = [
        static_cluster("plain", &[backend], ""),
        static_cluster("down", &[closed], ""),
    ];
    static_http_bootstrap("stats", port, "ingress", routes, &clusters)
}

const COUNTERS: [&str; 7] = [
    "downstream_cx_total",
    "downstream_rq_total",
    "downstream_rq_1xx",
    "downstream_rq_2xx",
    "downstream_rq_3xx",
    "downstream_rq_4xx",
    "downstream_rq_5xx",
];

/// The `http.ingress.*` values of `names` in `/stats`.
async fn values(admin: &str, names: &[&str]) -> BTreeMap<String, u64> {
    let stats = http::get(admin, "/stats", &[]).await.unwrap().text();
    names
        .iter()
        .map(|name| {
            let prefix = format!("http.ingress.{name}: ");
            let value = stats
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX);
            (name.to_string(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_manager_stats_match_envoy() {
    let work = tempfile::tempdir().unwrap();
    let backend = Backend::start("b").await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxies =
        SideBySide::start(|port| bootstrap(port, backend.port(), closed), work.path()).await;
    let admins = [&proxies.envoy.admin, &proxies.ours.admin];

    let mut seen = Vec::new();
    for (addr, admin) in proxies.addrs.iter().zip(admins) {
        let before = values(admin, &COUNTERS).await;
        let mut statuses = Vec::new();
        for path in ["/", "/a", "/b", "/notfound", "/notfound/x", "/down"] {
            statuses.push(http::get(addr, path, &[]).await.map_or(0, |r| r.status));
        }
        let after = values(admin, &COUNTERS).await;
        let moved: BTreeMap<String, u64> = after
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(before[k])))
            .collect();
        // Every connection closed (each request had its own, with `Connection: close`).
        eventually(&format!("{admin}'s active connections to be 0"), || async {
            (values(admin, &["downstream_cx_active"]).await["downstream_cx_active"] == 0)
                .then_some(())
        })
        .await;
        seen.push((statuses, moved));
    }
    println!("Envoy {:?}\nours  {:?}", seen[0], seen[1]);
    assert_eq!(seen[0].0, [200, 200, 200, 404, 404, 503]);
    assert_eq!(seen[0].1["downstream_rq_total"], 6, "{:?}", seen[0]);
    assert_eq!(seen[0], seen[1]);

    // The Prometheus series: each metric's TYPE line and label sets (values differ by the
    // requests that waited for each proxy to start).
    let mut shapes = Vec::new();
    for admin in admins {
        let text = http::get(admin, "/stats/prometheus", &[])
            .await
            .unwrap()
            .text();
        let wanted = [
            "envoy_http_downstream_cx_total",
            "envoy_http_downstream_cx_active",
            "envoy_http_downstream_rq_total",
            "envoy_http_downstream_rq_xx",
        ];
        let mut lines = Vec::new();
        for metric in wanted {
            lines.extend(
                text.lines()
                    .filter(|l| {
                        l.starts_with(&format!("# TYPE {metric} "))
                            || (l.starts_with(&format!("{metric}{{"))
                                && l.contains("envoy_http_conn_manager_prefix=\"ingress\""))
                    })
                    .map(|l| match l.strip_prefix('#') {
                        Some(_) => l.to_string(),
                        None => l
                            .rsplit_once(' ')
                            .map_or(l, |(series, _)| series)
                            .to_string(),
                    }),
            );
        }
        shapes.push(lines);
    }
    println!(
        "Envoy:\n{}\nours:\n{}",
        shapes[0].join("\n"),
        shapes[1].join("\n")
    );
    assert!(shapes[0].len() >= 9, "{:?}", shapes[0]);
    assert_eq!(shapes[0], shapes[1]);
}
