//! LEAST_REQUEST: power of `choice_count` random choices, the one with fewest active requests
//! wins (Envoy's default for equal weights; choice_count defaults to 2).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::Rng;

use crate::upstream::HostState;

#[derive(Debug)]
pub struct LeastRequest {
    choice_count: u32,
}

impl LeastRequest {
    pub fn new(choice_count: u32) -> Self {
        LeastRequest {
            choice_count: choice_count.max(1),
        }
    }

    pub fn pick(&self, hosts: &[Arc<HostState>]) -> usize {
        let mut rng = rand::rng();
        let mut best = rng.random_range(0..hosts.len());
        for _ in 1..self.choice_count {
            let other = rng.random_range(0..hosts.len());
            if hosts[other].active.load(Ordering::Relaxed)
                < hosts[best].active.load(Ordering::Relaxed)
            {
                best = other;
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn host(active: u64) -> Arc<HostState> {
        Arc::new(HostState {
            addr: "127.0.0.1:1".parse().unwrap(),
            weight: 1,
            healthy: true,
            active: AtomicU64::new(active),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    #[test]
    fn prefers_the_idle_host() {
        let hosts = vec![host(100), host(0)];
        let lr = LeastRequest::new(2);
        let idle = (0..1000).filter(|_| lr.pick(&hosts) == 1).count();
        // With two choices the busy host wins only when both draws pick it: ~1/4.
        assert!(idle > 650, "{idle}");
    }
}
