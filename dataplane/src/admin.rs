//! The admin endpoint (Envoy's admin API, the parts we have): `/ready`, `/server_info`,
//! `/config_dump`, `/clusters`, `/stats` and `/stats/prometheus`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::observe::stat::Stat;
use crate::runtime::{Runtime, Snapshot};

pub async fn serve(listener: TcpListener, runtime: Arc<Runtime>, node_id: String) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (runtime, node_id) = (runtime.clone(), node_id.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let reply = handle(req.uri().path(), &runtime, &node_id);
                async move { Ok::<_, Infallible>(reply) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn handle(path: &str, runtime: &Runtime, node_id: &str) -> Response<Full<Bytes>> {
    let (status, body, json) = match path {
        "/ready" if runtime.is_ready() => (StatusCode::OK, "LIVE\n".to_string(), false),
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "PRE_INITIALIZING\n".to_string(),
            false,
        ),
        "/server_info" => {
            let state = if runtime.is_ready() {
                "LIVE"
            } else {
                "PRE_INITIALIZING"
            };
            let info = serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "state": state, "node": { "id": node_id } });
            (
                StatusCode::OK,
                serde_json::to_string_pretty(&info).unwrap_or_default(),
                true,
            )
        }
        "/config_dump" => {
            let dump = runtime.dump.lock().map(|d| d.clone()).unwrap_or_default();
            (
                StatusCode::OK,
                serde_json::to_string_pretty(&dump).unwrap_or_default(),
                true,
            )
        }
        "/clusters" => (StatusCode::OK, clusters(runtime), false),
        "/stats" => (StatusCode::OK, stats_text(&runtime.load()), false),
        "/stats/prometheus" => (StatusCode::OK, prometheus(&runtime.load()), false),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: /ready /server_info /config_dump /clusters /stats /stats/prometheus\n"
                .to_string(),
            false,
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let ct = if json {
        "application/json"
    } else {
        "text/plain"
    };
    if let Ok(v) = ct.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// The stats we keep, by Envoy's names and sorted by them: the `ssl.*` counters of clusters
/// and listeners (a listener's TLS chains summed, as Envoy keeps one set per listener), the
/// clusters' circuit breakers and request counts, and the access log files' `filesystem.*`.
fn stats(snapshot: &Snapshot) -> Vec<Stat> {
    let listeners = snapshot.config.listeners.values().filter_map(|l| {
        let chains: Vec<_> = l
            .chains
            .iter()
            .chain(&l.default_chain)
            .filter_map(|c| c.tls.as_ref())
            .collect();
        if chains.is_empty() {
            return None;
        }
        let sum = crate::tls::TlsStats::default();
        for tls in chains {
            sum.add(&tls.stats);
        }
        Some(sum.stats(&format!("listener.{}", l.stat_prefix)))
    });
    let mut stats: Vec<Stat> = snapshot
        .config
        .clusters
        .values()
        .filter_map(|c| {
            c.tls
                .as_ref()
                .map(|t| t.stats.stats(&format!("cluster.{}", c.name)))
        })
        .flatten()
        .chain(listeners.flatten())
        .collect();
    stats.extend(crate::observe::access_log::writer::STATS.stats());
    stats.extend(crate::observe::http_stats::stats());
    for (name, c) in &snapshot.clusters {
        let (limits, in_flight) = (c.config.breakers, &c.in_flight);
        // Open while the count is at its limit. Envoy sets the gauge as the count moves, so a
        // limit of 0, never reached by counting, shows closed there too.
        let open = |n: &std::sync::atomic::AtomicU32, max: u32| {
            let n = n.load(Ordering::Relaxed);
            u64::from(n > 0 && n >= max)
        };
        let count = |n: &std::sync::atomic::AtomicU64| n.load(Ordering::Relaxed);
        let gauges = [
            (
                "circuit_breakers.default.rq_open",
                open(&in_flight.requests, limits.max_requests),
            ),
            (
                "circuit_breakers.default.rq_retry_open",
                open(&in_flight.retries, limits.max_retries),
            ),
            (
                "upstream_rq_active",
                u64::from(in_flight.requests.load(Ordering::Relaxed)),
            ),
        ];
        let counters = [
            (
                "upstream_rq_active_overflow",
                count(&in_flight.requests_refused),
            ),
            (
                "upstream_rq_retry_overflow",
                count(&in_flight.retries_refused),
            ),
            ("upstream_rq_total", count(&in_flight.requests_total)),
        ];
        stats.extend(gauges.map(|(stat, v)| Stat::gauge(format!("cluster.{name}.{stat}"), v)));
        stats.extend(counters.map(|(stat, v)| Stat::counter(format!("cluster.{name}.{stat}"), v)));
        if c.config.health_check.is_some() {
            stats.extend(c.health.stats(&format!("cluster.{name}"), &c.all));
        }
        if let Some(detector) = &c.outlier {
            stats.extend(detector.stats(&format!("cluster.{name}"), &c.all));
        }
    }
    stats.sort_by(|a, b| a.name.cmp(&b.name));
    stats
}

/// Envoy's `/stats` text: `name: value` lines.
fn stats_text(snapshot: &Snapshot) -> String {
    stats(snapshot)
        .into_iter()
        .map(|s| format!("{}: {}\n", s.name, s.value))
        .collect()
}

/// The same stats in Prometheus's text format, as Envoy's `/stats/prometheus` has them.
fn prometheus(snapshot: &Snapshot) -> String {
    let clusters: Vec<&str> = snapshot
        .config
        .clusters
        .keys()
        .map(String::as_str)
        .collect();
    crate::observe::prometheus::render(&stats(snapshot), &clusters)
}

/// Envoy's `/clusters` text: `cluster::host:port::stat::value`.
fn clusters(runtime: &Runtime) -> String {
    let snapshot = runtime.load();
    let mut names: Vec<&String> = snapshot.clusters.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let c = &snapshot.clusters[name];
        // The limits we enforce (Envoy also lists max_connections and max_pending_requests).
        let limits = c.config.breakers;
        let _ = writeln!(
            out,
            "{name}::default_priority::max_requests::{}",
            limits.max_requests
        );
        let _ = writeln!(
            out,
            "{name}::default_priority::max_retries::{}",
            limits.max_retries
        );
        for h in &c.all {
            let p = format!("{name}::{}", h.addr);
            let _ = writeln!(out, "{p}::cx_active::{}", h.active.load(Ordering::Relaxed));
            let _ = writeln!(out, "{p}::rq_active::{}", h.active.load(Ordering::Relaxed));
            let _ = writeln!(out, "{p}::rq_total::{}", h.requests.load(Ordering::Relaxed));
            let _ = writeln!(out, "{p}::rq_error::{}", h.failures.load(Ordering::Relaxed));
            let _ = writeln!(out, "{p}::weight::{}", h.weight);
            // Envoy's flags, in its order: active health checks, outlier ejection, EDS health.
            let mut flags = String::new();
            if h.health.is_failed() {
                flags.push_str("/failed_active_hc");
            }
            if h.outlier.is_ejected() {
                flags.push_str("/failed_outlier_check");
            }
            if !h.healthy {
                flags.push_str("/eds_health_status");
            }
            if flags.is_empty() {
                flags.push_str("healthy");
            }
            let _ = writeln!(out, "{p}::health_flags::{flags}");
        }
    }
    out
}
