//! Outlier detection: Envoy's passive health checking (outlier_detection_impl.cc), per cluster.
//!
//! Workers report each try's answer to its host's [`HostMonitor`] (atomics, no lock). A
//! consecutive-error threshold reached queues the host for the [`run`] task on the main
//! thread, which decides the ejection (max percent, enforcement roll), as Envoy's main thread
//! does. Each `interval` the task brings back the hosts whose ejection time passed and judges
//! success rates and failure percentages over the interval's requests.
//!
//! An ejection or a return rebuilds the snapshot's clusters, as an EDS change does: an ejected
//! host counts as unhealthy, so priority load and panic are recomputed, as Envoy's
//! `FAILED_OUTLIER_CHECK` flag makes them. Changes within the cluster's `update_merge_window`
//! of the last one applied wait for its end (`Runtime::health_changed`), as in Envoy.
//!
//! Connect failures, resets and protocol errors count as 503 and timeouts as 504, as in Envoy
//! without `split_external_local_origin_errors` (the router's `onUpstreamReset` and
//! `onResponseTimeout`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::outlier::OutlierDetection;
use crate::observe::stat::Stat;
use crate::runtime::Runtime;

use super::cluster::HostState;

/// One host's counts, written by the workers.
#[derive(Debug, Default)]
pub struct HostMonitor {
    consecutive_5xx: AtomicU32,
    consecutive_gateway_failure: AtomicU32,
    /// This interval's answers and successes (non-5xx).
    total: AtomicU64,
    success: AtomicU64,
    ejected: AtomicBool,
    /// Kept by the main thread's task only.
    record: Mutex<Record>,
}

#[derive(Debug, Default)]
struct Record {
    /// The ejection time multiplier: up by one per ejection (until the time reaches the
    /// maximum), down by one per interval the host stays in.
    backoff: u32,
    last_ejection: Option<Instant>,
    last_unejection: Option<Instant>,
    jitter: Duration,
}

impl HostMonitor {
    /// Whether the host is out of its cluster's load balancing.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Back to a fresh host: its cluster's config changed, and Envoy makes a new detector.
    pub fn reset(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway_failure.store(0, Ordering::Relaxed);
        self.total.store(0, Ordering::Relaxed);
        self.success.store(0, Ordering::Relaxed);
        self.ejected.store(false, Ordering::Relaxed);
        *self.record() = Record::default();
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a host is ejected (Envoy's OutlierEjectionType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
    SuccessRate,
    FailurePercentage,
}

/// Envoy's `cluster.<name>.outlier_detection.*` counters, in the order of [`COUNTERS`].
#[derive(Debug, Default)]
pub struct Counters([AtomicU64; COUNTERS.len()]);

const COUNTERS: [&str; 19] = [
    "ejections_consecutive_5xx",
    "ejections_detected_consecutive_5xx",
    "ejections_detected_consecutive_gateway_failure",
    "ejections_detected_consecutive_local_origin_failure",
    "ejections_detected_failure_percentage",
    "ejections_detected_local_origin_failure_percentage",
    "ejections_detected_local_origin_success_rate",
    "ejections_detected_success_rate",
    "ejections_enforced_consecutive_5xx",
    "ejections_enforced_consecutive_gateway_failure",
    "ejections_enforced_consecutive_local_origin_failure",
    "ejections_enforced_failure_percentage",
    "ejections_enforced_local_origin_failure_percentage",
    "ejections_enforced_local_origin_success_rate",
    "ejections_enforced_success_rate",
    "ejections_enforced_total",
    "ejections_overflow",
    "ejections_success_rate",
    "ejections_total",
];

impl Counters {
    fn inc(&self, name: &str) {
        if let Some(i) = COUNTERS.iter().position(|n| *n == name) {
            self.0[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Kind {
    /// The suffix of its `ejections_detected_*` and `ejections_enforced_*` counters.
    fn stat(self) -> &'static str {
        match self {
            Kind::Consecutive5xx => "consecutive_5xx",
            Kind::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            Kind::SuccessRate => "success_rate",
            Kind::FailurePercentage => "failure_percentage",
        }
    }
}

/// A cluster's detector: its config, the hosts the workers queued, its interval and stats.
/// One per cluster config, kept across EDS and DNS rebuilds, as the circuit breakers' counts.
#[derive(Debug)]
pub struct Detector {
    pub config: OutlierDetection,
    queued: Mutex<Vec<(Arc<HostState>, Kind)>>,
    wake: Arc<Notify>,
    next_interval: Mutex<Instant>,
    pub counters: Counters,
}

impl Detector {
    /// `wake` is the [`run`] task's: a queued host wakes it (a new detector does by the
    /// snapshot it is published in).
    pub fn new(config: OutlierDetection, wake: Arc<Notify>) -> Self {
        let next = Instant::now() + config.interval;
        Detector {
            config,
            queued: Mutex::new(Vec::new()),
            wake,
            next_interval: Mutex::new(next),
            counters: Counters::default(),
        }
    }

    /// A try's answer from `host` (a worker): a status code, or the one Envoy maps a local
    /// failure to ([`status_of_failure`]).
    pub fn report(&self, host: &Arc<HostState>, status: u16) {
        let m = &host.outlier;
        m.total.fetch_add(1, Ordering::Relaxed);
        if !(500..600).contains(&status) {
            m.success.fetch_add(1, Ordering::Relaxed);
            m.consecutive_5xx.store(0, Ordering::Relaxed);
            m.consecutive_gateway_failure.store(0, Ordering::Relaxed);
            return;
        }
        // Each fires once, on reaching its threshold; the task resets the count it acted on.
        if matches!(status, 502..=504) {
            let n = m
                .consecutive_gateway_failure
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            if n == self.config.consecutive_gateway_failure {
                self.queue(host, Kind::ConsecutiveGatewayFailure);
            }
        } else {
            m.consecutive_gateway_failure.store(0, Ordering::Relaxed);
        }
        let n = m.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.config.consecutive_5xx {
            self.queue(host, Kind::Consecutive5xx);
        }
    }

    fn queue(&self, host: &Arc<HostState>, kind: Kind) {
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((host.clone(), kind));
        self.wake.notify_one();
    }

    /// When the next interval is due.
    pub fn next_interval(&self) -> Instant {
        *self.next_interval.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hosts currently ejected among `hosts` (Envoy's `ejections_active` gauge).
    pub fn ejections_active(hosts: &[Arc<HostState>]) -> u64 {
        hosts.iter().filter(|h| h.outlier.is_ejected()).count() as u64
    }

    /// The stats, named as Envoy's under `cluster.<name>.outlier_detection.`.
    pub fn stats(&self, prefix: &str, hosts: &[Arc<HostState>]) -> Vec<Stat> {
        let mut stats: Vec<Stat> = COUNTERS
            .iter()
            .zip(&self.counters.0)
            .map(|(name, v)| {
                Stat::counter(
                    format!("{prefix}.outlier_detection.{name}"),
                    v.load(Ordering::Relaxed),
                )
            })
            .collect();
        stats.push(Stat::gauge(
            format!("{prefix}.outlier_detection.ejections_active"),
            Self::ejections_active(hosts),
        ));
        stats
    }

    /// On the main thread's task: acts on the queued hosts, then on the interval if it is
    /// due. `hosts` are the cluster's current ones. Whether any host went out or came back.
    pub fn process(&self, hosts: &[Arc<HostState>], now: Instant) -> bool {
        let queued = std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()));
        let mut changed = false;
        for (host, kind) in queued {
            // The host may have left the cluster meanwhile, or be out already.
            if !hosts.iter().any(|h| Arc::ptr_eq(h, &host)) || host.outlier.is_ejected() {
                continue;
            }
            self.counters
                .inc(&format!("ejections_detected_{}", kind.stat()));
            changed |= self.eject(&host, kind, hosts, now);
            let m = &host.outlier;
            match kind {
                Kind::Consecutive5xx => {
                    self.counters.inc("ejections_consecutive_5xx");
                    m.consecutive_5xx.store(0, Ordering::Relaxed);
                }
                Kind::ConsecutiveGatewayFailure => {
                    m.consecutive_gateway_failure.store(0, Ordering::Relaxed)
                }
                Kind::SuccessRate | Kind::FailurePercentage => {}
            }
        }
        if now >= self.next_interval() {
            changed |= self.interval(hosts, now);
            *self.next_interval.lock().unwrap_or_else(|p| p.into_inner()) =
                now + self.config.interval;
        }
        changed
    }

    /// Envoy's `ejectHost`: within `max_ejection_percent` (or the one host
    /// `always_eject_one_host` allows), and if the enforcement roll says so.
    fn eject(&self, host: &HostState, kind: Kind, hosts: &[Arc<HostState>], now: Instant) -> bool {
        let c = &self.config;
        let active = Self::ejections_active(hosts);
        let percent = 100.0 * (active + 1) as f64 / hosts.len() as f64;
        let allowed = percent <= f64::from(c.max_ejection_percent)
            || (c.always_eject_one_host && active == 0);
        if !allowed {
            self.counters.inc("ejections_overflow");
            return false;
        }
        if matches!(kind, Kind::Consecutive5xx | Kind::SuccessRate) {
            self.counters.inc("ejections_total");
        }
        let enforcing = match kind {
            Kind::Consecutive5xx => c.enforcing_consecutive_5xx,
            Kind::ConsecutiveGatewayFailure => c.enforcing_consecutive_gateway_failure,
            Kind::SuccessRate => c.enforcing_success_rate,
            Kind::FailurePercentage => c.enforcing_failure_percentage,
        };
        // Envoy's runtime featureEnabled: a percent chance.
        if rand::random::<u32>() % 100 >= enforcing {
            return false;
        }
        self.counters.inc("ejections_enforced_total");
        self.counters
            .inc(&format!("ejections_enforced_{}", kind.stat()));
        let m = &host.outlier;
        m.ejected.store(true, Ordering::Relaxed);
        let mut r = m.record();
        r.last_ejection = Some(now);
        let jitter_ms = c.max_ejection_time_jitter.as_millis() as u64;
        r.jitter = Duration::from_millis(rand::random::<u64>() % (jitter_ms + 1));
        if c.base_ejection_time * r.backoff < c.max_ejection_time + c.base_ejection_time {
            r.backoff += 1;
        }
        tracing::info!(host = %host.addr, ?kind, "outlier detection: host ejected");
        true
    }

    /// Envoy's `onIntervalTimer`: hosts whose ejection passed come back, success rates and
    /// failure percentages over the interval eject, and the multiplier of hosts that stayed
    /// in goes down.
    fn interval(&self, hosts: &[Arc<HostState>], now: Instant) -> bool {
        let c = &self.config;
        let mut changed = false;
        // (host, success rate in percent, requests) for the interval that ends.
        let mut rates = Vec::new();
        for h in hosts {
            let m = &h.outlier;
            if m.is_ejected() {
                let r = m.record();
                let time = (c.base_ejection_time * r.backoff).min(c.max_ejection_time) + r.jitter;
                if r.last_ejection
                    .is_some_and(|at| now.duration_since(at) >= time)
                {
                    drop(r);
                    Self::uneject(h, now);
                    changed = true;
                }
            }
            let total = m.total.swap(0, Ordering::Relaxed);
            let success = m.success.swap(0, Ordering::Relaxed);
            if !m.is_ejected() && total > 0 {
                rates.push((h, success as f64 * 100.0 / total as f64, total));
            }
        }
        let n = hosts.len() as u64;
        if n >= u64::from(c.success_rate_minimum_hosts)
            || n >= u64::from(c.failure_percentage_minimum_hosts)
        {
            let by_volume = |volume: u32| -> Vec<(&Arc<HostState>, f64)> {
                rates
                    .iter()
                    .filter(|(_, _, total)| *total >= u64::from(volume))
                    .map(|(h, rate, _)| (*h, *rate))
                    .collect()
            };
            let valid = by_volume(c.success_rate_request_volume);
            if !valid.is_empty() && valid.len() >= c.success_rate_minimum_hosts as usize {
                let threshold = success_rate_threshold(&valid, c.success_rate_stdev_factor);
                for (h, rate) in &valid {
                    if *rate < threshold && !h.outlier.is_ejected() {
                        self.counters.inc("ejections_success_rate");
                        self.counters.inc("ejections_detected_success_rate");
                        changed |= self.eject(h, Kind::SuccessRate, hosts, now);
                    }
                }
            }
            let valid = by_volume(c.failure_percentage_request_volume);
            if !valid.is_empty() && valid.len() >= c.failure_percentage_minimum_hosts as usize {
                for (h, rate) in &valid {
                    if 100.0 - rate >= f64::from(c.failure_percentage_threshold)
                        && !h.outlier.is_ejected()
                    {
                        self.counters.inc("ejections_detected_failure_percentage");
                        changed |= self.eject(h, Kind::FailurePercentage, hosts, now);
                    }
                }
            }
        }
        for h in hosts {
            if h.outlier.is_ejected() {
                continue;
            }
            let mut r = h.outlier.record();
            if r.last_unejection
                .is_some_and(|at| now.duration_since(at) >= c.interval)
            {
                r.backoff = r.backoff.saturating_sub(1);
            }
        }
        changed
    }
}

impl Detector {
    /// Envoy's `unejectHost`: back in, its consecutive counts from zero.
    fn uneject(host: &HostState, now: Instant) {
        let m = &host.outlier;
        m.ejected.store(false, Ordering::Relaxed);
        m.consecutive_5xx.store(0, Ordering::Relaxed);
        m.consecutive_gateway_failure.store(0, Ordering::Relaxed);
        m.record().last_unejection = Some(now);
        tracing::info!(host = %host.addr, "outlier detection: host back");
    }

    /// An active health check passed on `host` (the health checker, on the main thread): with
    /// `successful_active_health_check_uneject_host`, an ejected host comes back, as in Envoy.
    /// Whether it did.
    pub fn health_check_passed(&self, host: &HostState) -> bool {
        if !self.config.successful_active_health_check_uneject_host
            || !host.outlier.is_ejected()
            || host.health.is_failed()
        {
            return false;
        }
        Self::uneject(host, Instant::now());
        true
    }
}

/// The success rate under which a host is an outlier: the mean less `factor`/1000 standard
/// deviations (Envoy's `successRateEjectionThreshold`).
fn success_rate_threshold(rates: &[(&Arc<HostState>, f64)], factor: u32) -> f64 {
    let n = rates.len() as f64;
    let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / n;
    let variance = rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n;
    mean - f64::from(factor) / 1000.0 * variance.sqrt()
}

/// The status Envoy's outlier detector counts for a try that got no response: 504 for a
/// timeout, 503 for a connect failure, a reset or a protocol error.
pub fn status_of_failure(timed_out: bool) -> u16 {
    if timed_out { 504 } else { 503 }
}

/// The main thread's task for every cluster's detector: waits for a queued host, a new
/// detector or the next interval, and republishes the clusters when a host went out or
/// came back.
pub async fn run(runtime: Arc<Runtime>) {
    let wake = runtime.outlier_wake();
    // A publication wakes the task too: it may bring a new detector, whose interval to keep.
    let mut published = runtime.subscribe();
    loop {
        let snapshot = runtime.load();
        let now = Instant::now();
        let mut changed = Vec::new();
        let mut next: Option<Instant> = None;
        for (name, cluster) in &snapshot.clusters {
            if let Some(d) = &cluster.outlier {
                if d.process(&cluster.all, now) {
                    changed.push(name.clone());
                }
                next = Some(next.map_or(d.next_interval(), |n| n.min(d.next_interval())));
            }
        }
        drop(snapshot);
        for name in changed {
            runtime.health_changed(&name);
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = wake.notified() => {}
                    _ = published.changed() => {}
                    () = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => {
                tokio::select! {
                    () = wake.notified() => {}
                    _ = published.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
