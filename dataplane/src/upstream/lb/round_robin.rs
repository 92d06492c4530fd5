//! Weighted round robin, smooth: hosts are interleaved by weight (nginx's smooth weighted
//! round robin, computed once into a schedule), so weights 5:1:1 give a a b a c a a, not
//! a a a a a b c. Envoy reaches the same spread with its EDF scheduler.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::upstream::HostState;

/// Schedules longer than this are truncated proportionally (weights are relative).
const MAX_SCHEDULE: u64 = 4096;

#[derive(Debug)]
pub struct RoundRobin {
    schedule: Vec<usize>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(hosts: &[Arc<HostState>]) -> Self {
        let weights: Vec<u64> = hosts.iter().map(|h| u64::from(h.weight.max(1))).collect();
        RoundRobin {
            schedule: schedule(&weights),
            next: AtomicUsize::new(0),
        }
    }

    pub fn pick(&self) -> usize {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.schedule
            .get(n % self.schedule.len().max(1))
            .copied()
            .unwrap_or(0)
    }
}

/// One cycle of smooth weighted round robin over `weights`.
pub fn schedule(weights: &[u64]) -> Vec<usize> {
    let total: u64 = weights.iter().sum();
    let scale = total.div_ceil(MAX_SCHEDULE).max(1);
    let weights: Vec<i64> = weights.iter().map(|w| (w / scale).max(1) as i64).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
        else {
            break;
        };
        current[best] -= total;
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_and_proportional() {
        assert_eq!(schedule(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(schedule(&[1, 1, 1]), [0, 1, 2]);
        let s = schedule(&[3, 1]);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), 3);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn huge_weights_are_scaled() {
        let s = schedule(&[1_000_000, 1_000_000]);
        assert!(s.len() <= 2 * MAX_SCHEDULE as usize);
        assert_eq!(s.iter().filter(|i| **i == 0).count(), s.len() / 2);
    }
}
