//! Active health checking: Envoy's health checkers (health_checker_impl.cc), HTTP and TCP.
//!
//! Every host of a cluster with `health_checks` has a session on the main thread: a check,
//! then a wait whose length depends on the host's health and on whether the cluster has had
//! traffic, as Envoy's `interval()`. A host starts failed (Envoy's `FAILED_ACTIVE_HC`) and
//! its first passing check makes it healthy; after that `healthy_threshold` passes in a row
//! bring it back, and `unhealthy_threshold` network failures or timeouts in a row take it out.
//! An HTTP status outside `expected_statuses` (and `retriable_statuses`) takes it out at once.
//! A change rebuilds the snapshot's clusters, as an EDS change does, within the cluster's
//! `update_merge_window` (`Runtime::health_changed`).
//!
//! Unlike Envoy, a new cluster does not wait for its first round of checks before it serves
//! (until then its hosts are failed, so the load balancer is in panic and uses them all), and
//! a TCP check opens a new connection each time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Cluster;
use crate::config::health_check::{Checker, HealthCheck, HttpCheck};
use crate::observe::stat::Stat;
use crate::runtime::Runtime;

use super::cluster::HostState;

/// A host's active health: failed until its first passing check.
#[derive(Debug, Default)]
pub struct HostHealth {
    failed: AtomicBool,
}

impl HostHealth {
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Failed (a host of a cluster with health checks, before its first check) or not.
    pub fn set_failed(&self, failed: bool) {
        self.failed.store(failed, Ordering::Relaxed);
    }
}

/// Envoy's `cluster.<name>.health_check.*` counters, kept per cluster config.
#[derive(Debug, Default)]
pub struct HealthStats {
    attempt: AtomicU64,
    success: AtomicU64,
    failure: AtomicU64,
    network_failure: AtomicU64,
}

impl HealthStats {
    pub fn stats(&self, prefix: &str, hosts: &[Arc<HostState>]) -> Vec<Stat> {
        let counter = |name: &str, v: &AtomicU64| {
            Stat::counter(
                format!("{prefix}.health_check.{name}"),
                v.load(Ordering::Relaxed),
            )
        };
        let healthy = hosts.iter().filter(|h| !h.health.is_failed()).count() as u64;
        vec![
            counter("attempt", &self.attempt),
            counter("failure", &self.failure),
            counter("network_failure", &self.network_failure),
            Stat::counter(format!("{prefix}.health_check.passive_failure"), 0),
            counter("success", &self.success),
            Stat::counter(format!("{prefix}.health_check.verify_cluster"), 0),
            Stat::gauge(format!("{prefix}.health_check.degraded"), 0),
            Stat::gauge(format!("{prefix}.health_check.healthy"), healthy),
        ]
    }
}

/// One check's outcome.
#[derive(Debug, PartialEq)]
enum Outcome {
    Pass,
    /// A status outside the expected ones: `retriable` ones count against the threshold,
    /// others fail the host at once.
    Status {
        retriable: bool,
    },
    /// No connection, a broken one, or the timeout: against the threshold.
    Network,
}

/// Envoy's HealthTransition: what a check did to the host.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transition {
    Unchanged,
    Changed,
    ChangePending,
}

/// Starts and stops the sessions as clusters and hosts come and go: the main thread's task.
pub async fn run(runtime: Arc<Runtime>) {
    let mut published = runtime.subscribe();
    // By (host, cluster config): a changed config starts its hosts afresh, as in Envoy.
    let mut sessions: HashMap<(usize, usize), tokio::task::AbortHandle> = HashMap::new();
    loop {
        let snapshot = runtime.load();
        let mut live = Vec::new();
        for cluster in snapshot.clusters.values() {
            if cluster.config.health_check.is_none() {
                continue;
            }
            for host in &cluster.all {
                let key = (
                    Arc::as_ptr(host) as usize,
                    Arc::as_ptr(&cluster.config) as usize,
                );
                live.push(key);
                sessions.entry(key).or_insert_with(|| {
                    tokio::spawn(session(
                        runtime.clone(),
                        cluster.config.clone(),
                        cluster.health.clone(),
                        host.clone(),
                    ))
                    .abort_handle()
                });
            }
        }
        sessions.retain(|key, task| {
            let keep = live.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        drop(snapshot);
        if published.changed().await.is_err() {
            return;
        }
    }
}

/// Checks `host` until aborted (the host or its cluster config is gone).
async fn session(
    runtime: Arc<Runtime>,
    config: Arc<Cluster>,
    stats: Arc<HealthStats>,
    host: Arc<HostState>,
) {
    let Some(hc) = config.health_check.as_ref() else {
        return;
    };
    tokio::time::sleep(random_up_to(hc.initial_jitter)).await;
    let mut first = true;
    let (mut passes, mut failures) = (0u32, 0u32);
    let mut reused: Option<Sender> = None;
    loop {
        stats.attempt.fetch_add(1, Ordering::Relaxed);
        let outcome = match tokio::time::timeout(
            hc.timeout,
            check(hc, &config, &host, &runtime, &mut reused),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Network,
        };
        if outcome != Outcome::Pass || !hc.reuse_connection {
            reused = None;
        }
        let h = &host.health;
        let transition = match outcome {
            Outcome::Pass => {
                stats.success.fetch_add(1, Ordering::Relaxed);
                failures = 0;
                if !h.is_failed() {
                    Transition::Unchanged
                } else {
                    passes += 1;
                    // The first check ever moves the host at once (Envoy: faster startup).
                    if first || passes == hc.healthy_threshold {
                        h.set_failed(false);
                        Transition::Changed
                    } else {
                        Transition::ChangePending
                    }
                }
            }
            Outcome::Status { .. } | Outcome::Network => {
                stats.failure.fetch_add(1, Ordering::Relaxed);
                if outcome == Outcome::Network {
                    stats.network_failure.fetch_add(1, Ordering::Relaxed);
                }
                passes = 0;
                if h.is_failed() {
                    Transition::Unchanged
                } else {
                    failures += 1;
                    let at_once = outcome == (Outcome::Status { retriable: false });
                    if at_once || failures == hc.unhealthy_threshold {
                        h.set_failed(true);
                        Transition::Changed
                    } else {
                        Transition::ChangePending
                    }
                }
            }
        };
        // The cluster as it serves now: for its outlier detector and its traffic.
        let serving = runtime.load().clusters.get(&config.name).cloned();
        // Envoy: a passing check brings back a host outlier detection ejected.
        let unejected = outcome == Outcome::Pass
            && serving
                .as_ref()
                .and_then(|c| c.outlier.as_ref())
                .is_some_and(|d| d.health_check_passed(&host));
        if transition == Transition::Changed {
            tracing::info!(
                cluster = %config.name,
                host = %host.addr,
                healthy = !h.is_failed(),
                "health check: host changed"
            );
            failures = 0;
            passes = 0;
        }
        if transition == Transition::Changed && first {
            // Envoy's cluster takes its first round of checks before it serves (its
            // initialization), so those changes are not merged updates.
            runtime.apply_health(&config.name);
        } else if transition == Transition::Changed || unejected {
            runtime.health_changed(&config.name);
        }
        first = false;
        let traffic =
            serving.is_some_and(|c| c.all.iter().any(|h| h.requests.load(Ordering::Relaxed) > 0));
        tokio::time::sleep(interval(hc, h.is_failed(), transition, traffic)).await;
    }
}

/// Envoy's `HealthCheckerImplBase::interval`: the slow no-traffic interval until the cluster
/// has had traffic, then by health, the edge intervals while a change is pending; plus jitter.
fn interval(hc: &HealthCheck, failed: bool, transition: Transition, traffic: bool) -> Duration {
    let pending = transition == Transition::ChangePending;
    let base = match (traffic, failed, pending) {
        (false, false, false) => hc.no_traffic_healthy_interval,
        (false, _, _) => hc.no_traffic_interval,
        (true, true, true) => hc.unhealthy_edge_interval,
        (true, true, false) => hc.unhealthy_interval,
        (true, false, true) => hc.healthy_edge_interval,
        (true, false, false) => hc.interval,
    };
    let percent = base * hc.interval_jitter_percent / 100;
    base + random_up_to(percent) + random_up_to(hc.interval_jitter)
}

/// A random time in [0, max) (zero for zero).
fn random_up_to(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::random::<u64>() % ms)
}

/// A kept HTTP check connection.
enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to the host, with TLS when the cluster has it (Envoy checks over the
/// cluster's transport socket).
async fn connect(
    config: &Cluster,
    host: &HostState,
    runtime: &Runtime,
    sni: Option<&str>,
) -> Option<Box<dyn Io>> {
    let stream = TcpStream::connect(host.addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = &config.tls else {
        return Some(Box::new(stream));
    };
    let secrets = runtime.load().config.secrets.clone();
    let client = crate::tls::client::config(tls, &secrets).ok()?;
    let name = crate::tls::client::server_name(tls, sni, host.addr.ip());
    let stream = crate::tls::client::connect(stream, client, name, &tls.stats)
        .await
        .ok()?;
    Some(Box::new(stream))
}

async fn check(
    hc: &HealthCheck,
    config: &Cluster,
    host: &HostState,
    runtime: &Runtime,
    reused: &mut Option<Sender>,
) -> Outcome {
    match &hc.kind {
        Checker::Http(http) => http_check(http, config, host, runtime, reused).await,
        Checker::Tcp { send, receive } => {
            let Some(mut io) = connect(config, host, runtime, None).await else {
                return Outcome::Network;
            };
            tcp_check(&mut io, send, receive).await
        }
    }
}

async fn http_check(
    http: &HttpCheck,
    config: &Cluster,
    host: &HostState,
    runtime: &Runtime,
    reused: &mut Option<Sender>,
) -> Outcome {
    let authority = http.host.as_deref().unwrap_or(&config.name);
    let ready = match reused.as_mut() {
        Some(Sender::Http1(s)) => s.ready().await.is_ok(),
        Some(Sender::Http2(s)) => s.ready().await.is_ok(),
        None => false,
    };
    if !ready {
        let Some(io) = connect(config, host, runtime, Some(authority)).await else {
            return Outcome::Network;
        };
        let io = TokioIo::new(io);
        *reused = if http.http2 {
            let Ok((sender, conn)) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await
            else {
                return Outcome::Network;
            };
            tokio::spawn(conn);
            Some(Sender::Http2(sender))
        } else {
            let Ok((sender, conn)) = hyper::client::conn::http1::handshake(io).await else {
                return Outcome::Network;
            };
            tokio::spawn(conn);
            Some(Sender::Http1(sender))
        };
    }
    let uri = if http.http2 {
        format!("http://{authority}{}", http.path)
    } else {
        http.path.clone()
    };
    let Ok(mut request) = http::Request::builder()
        .method(http.method.clone())
        .uri(uri)
        .body(Empty::<Bytes>::new())
    else {
        return Outcome::Network;
    };
    let headers = request.headers_mut();
    if !http.http2
        && let Ok(v) = http::HeaderValue::from_str(authority)
    {
        headers.insert(http::header::HOST, v);
    }
    headers.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("Envoy/HC"),
    );
    for name in &http.headers_to_remove {
        headers.remove(name);
    }
    for (name, value) in &http.headers_to_add {
        headers.append(name.clone(), value.clone());
    }
    let response = match reused.as_mut() {
        Some(Sender::Http1(s)) => s.send_request(request).await,
        Some(Sender::Http2(s)) => s.send_request(request).await,
        None => return Outcome::Network,
    };
    let Ok(response) = response else {
        return Outcome::Network;
    };
    let status = response.status().as_u16();
    let close = response
        .headers()
        .get(http::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    // Read to its end, so the connection can carry the next check.
    if response.into_body().collect().await.is_err() || close {
        *reused = None;
    }
    let within = |ranges: &[std::ops::Range<u16>]| ranges.iter().any(|r| r.contains(&status));
    if within(&http.expected) {
        Outcome::Pass
    } else {
        Outcome::Status {
            retriable: within(&http.retriable),
        }
    }
}

/// Writes `send`, then reads until every `receive` block has been seen, in order.
async fn tcp_check(io: &mut Box<dyn Io>, send: &[u8], receive: &[Vec<u8>]) -> Outcome {
    if !send.is_empty() && io.write_all(send).await.is_err() {
        return Outcome::Network;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !matches_in_order(&got, receive) {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return Outcome::Network,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    Outcome::Pass
}

/// Envoy's fuzzy payload match: each block found, in order, not necessarily adjacent.
fn matches_in_order(data: &[u8], blocks: &[Vec<u8>]) -> bool {
    let mut at = 0;
    for block in blocks {
        if block.is_empty() {
            continue;
        }
        match data[at..]
            .windows(block.len())
            .position(|w| w == &block[..])
        {
            Some(i) => at += i + block.len(),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_blocks_match_in_order_not_adjacent() {
        let blocks = vec![b"PO".to_vec(), b"NG".to_vec()];
        assert!(matches_in_order(b"xxPOyyNGzz", &blocks));
        assert!(!matches_in_order(b"NGPO", &blocks));
        assert!(!matches_in_order(b"PON", &blocks));
        assert!(matches_in_order(b"", &[]));
    }
}
