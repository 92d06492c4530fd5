//! A cluster as the request path sees it: its hosts (with per-host atomics) and its picker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{Cluster, LoadAssignment};

use super::lb::Picker;

/// One upstream host and its counters (the only shared mutable state on the request path).
#[derive(Debug)]
pub struct HostState {
    pub addr: SocketAddr,
    /// EDS `endpoint.hostname` (what `use_hostname_for_hashing` hashes).
    pub hostname: String,
    pub weight: u32,
    pub healthy: bool,
    pub active: AtomicU64,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

/// A cluster with the hosts of the priority in use and a picker over them.
#[derive(Debug)]
pub struct UpstreamCluster {
    pub config: Arc<Cluster>,
    /// Every host, all priorities, for /clusters.
    pub all: Vec<Arc<HostState>>,
    /// The hosts of the highest priority that has healthy hosts (Envoy fails over to the next
    /// priority when one has none; we do not split load across priorities by the
    /// overprovisioning factor).
    pub hosts: Vec<Arc<HostState>>,
    picker: Picker,
}

impl UpstreamCluster {
    /// `previous` lends its host counters to hosts that stay, so a config push does not reset them.
    pub fn new(
        config: Arc<Cluster>,
        assignment: &LoadAssignment,
        previous: Option<&UpstreamCluster>,
    ) -> Self {
        let mut all = Vec::new();
        let mut hosts = Vec::new();
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
                        Arc::new(HostState {
                            addr: h.addr,
                            hostname: h.hostname.clone(),
                            weight: h.weight,
                            healthy: h.healthy,
                            active: AtomicU64::new(0),
                            requests: AtomicU64::new(0),
                            failures: AtomicU64::new(0),
                        })
                    })
                })
                .collect();
            if hosts.is_empty() && states.iter().any(|s| s.healthy) {
                hosts = states.iter().filter(|s| s.healthy).cloned().collect();
            }
            all.extend(states);
        }
        let picker = Picker::new(config.lb, &hosts);
        UpstreamCluster {
            config,
            all,
            hosts,
            picker,
        }
    }

    /// A host for the next request, or `None` when the cluster has no healthy host. `hash` is
    /// the request's hash for RING_HASH and MAGLEV (none: a random one); `attempt` counts
    /// retries, which the hashing policies use to move off the host that failed.
    pub fn pick(&self, hash: Option<u64>, attempt: u32) -> Option<&Arc<HostState>> {
        self.picker
            .pick(&self.hosts, hash, attempt)
            .and_then(|i| self.hosts.get(i))
    }
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
        Arc::new(HostState {
            addr: "127.0.0.1:1".parse().expect("an address"),
            hostname: String::new(),
            weight: 1,
            healthy: true,
            active: AtomicU64::new(active),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }
}
