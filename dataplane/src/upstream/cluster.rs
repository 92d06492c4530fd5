//! A cluster as the request path sees it: its hosts (with per-host atomics) and its picker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::config::{Cluster, LoadAssignment};

use super::health::{HealthStats, HostHealth};
use super::lb::Picker;
use super::outlier::{Detector, HostMonitor};

/// One upstream host and its counters (the only shared mutable state on the request path).
#[derive(Debug)]
pub struct HostState {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once (every request to the host needs it).
    pub authority: http::uri::Authority,
    /// EDS `endpoint.hostname` (what `use_hostname_for_hashing` hashes).
    pub hostname: String,
    pub weight: u32,
    pub healthy: bool,
    pub active: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    /// What outlier detection counts of this host, and whether it is ejected.
    pub outlier: HostMonitor,
    /// Whether active health checking has it failed.
    pub health: HostHealth,
    /// Out of the load balancer for a failed health check or an ejection, as last applied:
    /// health changes apply in merged updates (`update_merge_window`, runtime.rs), the flags
    /// above change at once.
    out: AtomicBool,
}

impl HostState {
    /// Healthy by EDS and by active health checking, and not ejected by outlier detection,
    /// as last applied.
    pub fn in_rotation(&self) -> bool {
        self.healthy && !self.out.load(Ordering::Relaxed)
    }

    /// Applies the host's current health check and ejection state to the load balancer's view
    /// (the cluster is rebuilt after).
    pub fn apply_health(&self) {
        let out = self.health.is_failed() || self.outlier.is_ejected();
        self.out.store(out, Ordering::Relaxed);
    }

    /// A host with its counters at zero.
    pub fn new(addr: SocketAddr, hostname: String, weight: u32, healthy: bool) -> Self {
        HostState {
            addr,
            authority: authority(addr),
            hostname,
            weight,
            healthy,
            active: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            outlier: HostMonitor::default(),
            health: HostHealth::default(),
            out: AtomicBool::new(false),
        }
    }
}

/// Requests and retries in flight to a cluster, against its circuit breakers, how often each
/// breaker refused (Envoy's `upstream_rq_active_overflow`, `upstream_rq_retry_overflow`), and
/// the requests sent (`upstream_rq_total`: every try).
#[derive(Debug, Default)]
pub struct InFlight {
    pub requests: AtomicU32,
    pub requests_total: AtomicU64,
    pub retries: AtomicU32,
    pub requests_refused: AtomicU64,
    pub retries_refused: AtomicU64,
}

/// One request or retry counted in flight; uncounted when dropped.
#[derive(Debug)]
pub struct Slot<'a>(&'a AtomicU32);

impl InFlight {
    /// A request in flight, if fewer than `max` are; `None`: the breaker is open (counted).
    pub fn request(&self, max: u32) -> Option<Slot<'_>> {
        let slot = Self::take(&self.requests, max, &self.requests_refused)?;
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        Some(slot)
    }

    /// A retry in flight, if fewer than `max` are; `None`: the breaker is open (counted).
    pub fn retry(&self, max: u32) -> Option<Slot<'_>> {
        Self::take(&self.retries, max, &self.retries_refused)
    }

    fn take<'a>(counter: &'a AtomicU32, max: u32, refused: &AtomicU64) -> Option<Slot<'a>> {
        let taken = counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(counter));
        if taken.is_none() {
            refused.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A cluster with its hosts by priority, the share of requests each priority takes, and a
/// picker per priority.
///
/// Priorities as Envoy (load_balancer_impl.cc, `recalculatePerPriorityState`): a priority's
/// health is 1.4 (the overprovisioning factor) x its healthy share of hosts, capped at 100%;
/// load goes to the first priorities up to their health, the rest spills to the next ones,
/// scaled when the total health is under 100%. A priority whose healthy share is under
/// `healthy_panic_threshold` (50% by default) while the total is under 100% is in panic: it
/// balances over all its hosts, healthy or not; when every priority is in panic, load follows
/// host counts. Computed once per host set, so a pick is a draw and an index.
#[derive(Debug)]
pub struct UpstreamCluster {
    pub config: Arc<Cluster>,
    /// What the circuit breakers count (`config.breakers` are the limits).
    pub in_flight: Arc<InFlight>,
    /// The outlier detector, with `config.outlier`.
    pub outlier: Option<Arc<Detector>>,
    /// The active health checks' counts (`config.health_check`).
    pub health: Arc<HealthStats>,
    /// Every host, all priorities, for /clusters.
    pub all: Vec<Arc<HostState>>,
    priorities: Vec<Priority>,
    /// Percent of requests per priority (sums to 100 when any priority has hosts).
    load: Vec<u32>,
}

#[derive(Debug)]
struct Priority {
    /// The hosts picked from: the healthy ones, or all of them in panic.
    hosts: Vec<Arc<HostState>>,
    picker: Picker,
}

/// Whether `all` has other hosts than `previous` had.
fn membership_changed(previous: Option<&UpstreamCluster>, all: &[Arc<HostState>]) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    let before: std::collections::HashSet<*const HostState> =
        previous.all.iter().map(Arc::as_ptr).collect();
    before.len() != all.len() || all.iter().any(|h| !before.contains(&Arc::as_ptr(h)))
}

/// A socket address as a URI authority (`127.0.0.1:80`, `[::1]:80`): always valid.
pub fn authority(addr: SocketAddr) -> http::uri::Authority {
    http::uri::Authority::try_from(addr.to_string())
        .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"))
}

/// Envoy's default overprovisioning factor, in percent.
const OVERPROVISIONING: usize = 140;

impl UpstreamCluster {
    /// `previous` lends its host counters to hosts that stay, so a config push does not reset them.
    /// `outlier_wake` wakes the outlier detection task (a new detector is made here).
    pub fn new(
        config: Arc<Cluster>,
        assignment: &LoadAssignment,
        previous: Option<&UpstreamCluster>,
        outlier_wake: &Arc<tokio::sync::Notify>,
    ) -> Self {
        let mut all = Vec::new();
        let mut sets: Vec<Vec<Arc<HostState>>> = Vec::new();
        for priority in &assignment.priorities {
            let states: Vec<Arc<HostState>> = priority
                .iter()
                .map(|h| {
                    let kept = previous.and_then(|p| {
                        p.all.iter().find(|s| {
                            s.addr == h.addr
                                && s.weight == h.weight
                                && s.healthy == h.healthy
                                && s.hostname == h.hostname
                        })
                    });
                    kept.cloned().unwrap_or_else(|| {
                        let host = HostState::new(h.addr, h.hostname.clone(), h.weight, h.healthy);
                        // Envoy's new host with health checks: failed until its first check.
                        host.health.set_failed(config.health_check.is_some());
                        host.apply_health();
                        Arc::new(host)
                    })
                })
                .collect();
            all.extend(states.iter().cloned());
            sets.push(states);
        }
        // The same cluster config keeps its detector and its hosts' ejections; a new config
        // starts both afresh, as Envoy makes a new cluster and detector.
        let same_config = previous.filter(|p| Arc::ptr_eq(&p.config, &config));
        let outlier = match (&config.outlier, same_config) {
            (Some(_), Some(p)) => p.outlier.clone(),
            (Some(o), None) => Some(Arc::new(Detector::new(o.clone(), outlier_wake.clone()))),
            (None, _) => None,
        };
        if same_config.is_none() {
            for h in &all {
                h.outlier.reset();
                h.health.set_failed(config.health_check.is_some());
                h.apply_health();
            }
        } else if (config.outlier.is_some() || config.health_check.is_some())
            && membership_changed(previous, &all)
        {
            // Envoy merges health changes only: a host added or removed applies them all.
            // (Without health checks or outlier detection there is nothing to apply.)
            all.iter().for_each(|h| h.apply_health());
        }
        let counts: Vec<(usize, usize)> = sets
            .iter()
            .map(|s| (s.len(), s.iter().filter(|h| h.in_rotation()).count()))
            .collect();
        let (load, panic) = priority_load(&counts, config.healthy_panic_threshold);
        let priorities = sets
            .into_iter()
            .zip(panic)
            .map(|(hosts, panic)| {
                let hosts: Vec<Arc<HostState>> = if panic {
                    hosts
                } else {
                    hosts.into_iter().filter(|h| h.in_rotation()).collect()
                };
                let picker = Picker::new(config.lb, &hosts);
                Priority { hosts, picker }
            })
            .collect();
        // Kept while the cluster's config is the same (an EDS or DNS change rebuilds the
        // cluster, not its breakers; a changed cluster is a new one, as in Envoy).
        let in_flight = same_config.map_or_else(Default::default, |p| p.in_flight.clone());
        let health = same_config.map_or_else(Default::default, |p| p.health.clone());
        UpstreamCluster {
            config,
            in_flight,
            outlier,
            health,
            all,
            priorities,
            load,
        }
    }

    /// A host for the next request, or `None` when the cluster has no host to use. `hash` is
    /// the request's hash for RING_HASH and MAGLEV (none: a random one); `attempt` counts
    /// retries, which the hashing policies use to move off the host that failed.
    pub fn pick(&self, hash: Option<u64>, attempt: u32) -> Option<&Arc<HostState>> {
        // The priority is drawn from the hash when there is one, as Envoy (choosePriority).
        let draw = hash.unwrap_or_else(rand::random) % 100 + 1;
        let mut sum = 0;
        let p = self.load.iter().position(|l| {
            sum += l;
            u64::from(sum) >= draw
        })?;
        let set = self.priorities.get(p)?;
        set.picker
            .pick(&set.hosts, hash, attempt)
            .and_then(|i| set.hosts.get(i))
    }
}

/// Per priority: the percent of load it takes, and whether it is in panic. `counts` are
/// (hosts, healthy hosts) per priority; `panic_threshold` in percent.
pub fn priority_load(counts: &[(usize, usize)], panic_threshold: u32) -> (Vec<u32>, Vec<bool>) {
    let n = counts.len();
    let mut load = vec![0u32; n];
    if n == 0 {
        return (load, Vec::new());
    }
    let health: Vec<u32> = counts
        .iter()
        .map(|&(total, healthy)| {
            (OVERPROVISIONING * healthy)
                .checked_div(total)
                .map_or(0, |h| h.min(100) as u32)
        })
        .collect();
    let total_health = health.iter().sum::<u32>().min(100);
    if total_health > 0 {
        let mut left = 100;
        for (l, h) in load.iter_mut().zip(&health) {
            *l = (h * 100).checked_div(total_health).unwrap_or(0).min(left);
            left -= *l;
        }
        // Rounding leftovers go to the first priority with health.
        if let Some(first) = health.iter().position(|h| *h > 0) {
            load[first] += left;
        }
    }
    let in_panic = |&(total, healthy): &(usize, usize)| {
        total == 0 || (100.0 * healthy as f64 / total as f64) < f64::from(panic_threshold)
    };
    let panic: Vec<bool> = counts
        .iter()
        .map(|c| total_health < 100 && in_panic(c))
        .collect();
    let total_panic = panic_threshold > 0 && panic.iter().all(|p| *p);
    if total_panic {
        // Every priority in panic: load by host count, healthy or not.
        let hosts: usize = counts.iter().map(|c| c.0).sum();
        load = vec![0; n];
        let mut left = 100;
        for (l, c) in load.iter_mut().zip(counts) {
            *l = (100 * c.0).checked_div(hosts).unwrap_or(0) as u32;
            left -= *l;
        }
        // Rounding leftovers (or everything, with no host at all) to the first non-empty one.
        let first = counts.iter().position(|c| c.0 > 0).unwrap_or(0);
        load[first] += left;
    } else if total_health == 0 {
        // Panic disabled and nothing healthy: P0 takes the load and has nothing to pick.
        load[0] = 100;
    }
    (load, panic)
}

/// Counts a request as active on a host for as long as the guard lives.
pub struct ActiveRequest(Arc<HostState>);

impl ActiveRequest {
    pub fn new(host: Arc<HostState>) -> Self {
        host.active.fetch_add(1, Ordering::Relaxed);
        host.requests.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(host)
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A healthy host with `active` requests in flight, for the policies' unit tests.
    pub(crate) fn host_with_active(active: u64) -> Arc<HostState> {
        test_host(1, active)
    }

    /// A healthy host of `weight` with `active` requests in flight.
    pub(crate) fn test_host(weight: u32, active: u64) -> Arc<HostState> {
        let host = HostState::new(
            "127.0.0.1:1".parse().expect("an address"),
            String::new(),
            weight,
            true,
        );
        host.active.store(active, Ordering::Relaxed);
        Arc::new(host)
    }
}

#[cfg(test)]
mod priority_tests {
    use super::priority_load;

    #[test]
    fn all_healthy_p0_takes_everything() {
        assert_eq!(
            priority_load(&[(4, 4), (4, 4)], 50),
            (vec![100, 0], vec![false, false])
        );
    }

    #[test]
    fn overprovisioning_keeps_load_until_under_72_percent() {
        // 3 of 4 healthy: 1.4 x 75% = 105% -> capped 100: no spill.
        assert_eq!(priority_load(&[(4, 3), (4, 4)], 50).0, [100, 0]);
        // 2 of 4: 70% stays, 30% spills to P1 (Envoy's docs example).
        assert_eq!(priority_load(&[(4, 2), (4, 4)], 50).0, [70, 30]);
        // None healthy in P0: P1 takes all.
        assert_eq!(priority_load(&[(4, 0), (4, 4)], 50).0, [0, 100]);
    }

    #[test]
    fn low_total_health_scales_and_panics_where_thin() {
        // P0 20% healthy -> health 28; P1 50% -> 70; total 98 < 100: scaled 28/71, the
        // rounding point to P0. P0 is under the 50% threshold: in panic; P1 is not.
        let (load, panic) = priority_load(&[(10, 2), (10, 5)], 50);
        assert_eq!(load, [29, 71]);
        assert_eq!(panic, [true, false]);
    }

    #[test]
    fn total_panic_spreads_by_host_count() {
        // Nothing healthy anywhere: every priority in panic, load by host count (Envoy routes
        // to unhealthy hosts rather than failing every request).
        let (load, panic) = priority_load(&[(1, 0), (3, 0)], 50);
        assert_eq!(load, [25, 75]);
        assert_eq!(panic, [true, true]);
        // A panic threshold of 0 disables panic: P0 takes the load, with no host to pick.
        let (load, panic) = priority_load(&[(1, 0), (3, 0)], 0);
        assert_eq!(load, [100, 0]);
        assert_eq!(panic, [false, false]);
    }

    #[test]
    fn a_healthy_cluster_is_never_in_panic() {
        // Total health 100 (P1 covers): P0's 1 of 4 does not put it in panic.
        let (load, panic) = priority_load(&[(4, 1), (4, 4)], 50);
        assert_eq!(load, [35, 65]);
        assert_eq!(panic, [false, false]);
    }
}
