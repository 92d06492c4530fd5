//! LEAST_REQUEST, as Envoy: with equal weights, the best of `choice_count` random choices (the
//! one with the fewest active requests; "power of two choices" by default). With unequal
//! weights, every host competes with the weight `weight / (active + 1)^active_request_bias`, so
//! a heavier host takes more, and a busy one less (Envoy runs its EDF scheduler on that weight;
//! we draw at random in proportion to it, which gives the same shares without a scheduler lock).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::Rng;

use crate::upstream::HostState;

#[derive(Debug)]
pub struct LeastRequest {
    choice_count: u32,
    bias: f64,
    weighted: bool,
}

impl LeastRequest {
    pub fn new(choice_count: u32, bias: f64, hosts: &[Arc<HostState>]) -> Self {
        let weighted = hosts.windows(2).any(|w| w[0].weight != w[1].weight);
        LeastRequest {
            choice_count: choice_count.max(1),
            bias,
            weighted,
        }
    }

    pub fn pick(&self, hosts: &[Arc<HostState>]) -> usize {
        let mut rng = rand::rng();
        if self.weighted {
            return self.pick_weighted(hosts, rng.random::<f64>());
        }
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

    /// The host whose share of the effective weights covers `draw` (0..1).
    fn pick_weighted(&self, hosts: &[Arc<HostState>], draw: f64) -> usize {
        let effective = |h: &HostState| {
            let active = h.active.load(Ordering::Relaxed) as f64;
            let w = f64::from(h.weight.max(1));
            if self.bias == 0.0 {
                w
            } else {
                w / (active + 1.0).powf(self.bias)
            }
        };
        let total: f64 = hosts.iter().map(|h| effective(h)).sum();
        let mut left = draw * total;
        for (i, h) in hosts.iter().enumerate() {
            left -= effective(h);
            if left < 0.0 {
                return i;
            }
        }
        hosts.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::cluster::tests::test_host as host;

    #[test]
    fn prefers_the_idle_host() {
        let hosts = vec![host(1, 100), host(1, 0)];
        let lr = LeastRequest::new(2, 1.0, &hosts);
        let idle = (0..1000).filter(|_| lr.pick(&hosts) == 1).count();
        // With two choices the busy host wins only when both draws pick it: ~1/4.
        assert!(idle > 650, "{idle}");
    }

    #[test]
    fn more_choices_find_the_idle_host_more_often() {
        let hosts: Vec<_> = (0..10)
            .map(|i| host(1, if i == 0 { 0 } else { 5 }))
            .collect();
        let lr = LeastRequest::new(10, 1.0, &hosts);
        let idle = (0..2000).filter(|_| lr.pick(&hosts) == 0).count();
        // 1 - 0.9^10 = 65% of picks see host 0 among the choices.
        assert!(idle > 1100, "{idle}");
    }

    #[test]
    fn weights_divided_by_active_requests() {
        // Weight 3 with 2 active: 3 / 3 = 1; weight 1 idle: 1 / 1 = 1: an even split.
        let hosts = vec![host(3, 2), host(1, 0)];
        let lr = LeastRequest::new(2, 1.0, &hosts);
        assert_eq!(lr.pick_weighted(&hosts, 0.49), 0);
        assert_eq!(lr.pick_weighted(&hosts, 0.51), 1);
        // Bias 0: plain weights, 3:1.
        let plain = LeastRequest::new(2, 0.0, &hosts);
        assert_eq!(plain.pick_weighted(&hosts, 0.74), 0);
        assert_eq!(plain.pick_weighted(&hosts, 0.76), 1);
    }
}
