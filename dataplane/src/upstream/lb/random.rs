//! RANDOM: a uniformly random host, weighted by endpoint weight.

use std::sync::Arc;

use rand::Rng;

use crate::upstream::HostState;

pub fn pick(hosts: &[Arc<HostState>]) -> usize {
    let total: u64 = hosts.iter().map(|h| u64::from(h.weight.max(1))).sum();
    let mut r = rand::rng().random_range(0..total.max(1));
    for (i, h) in hosts.iter().enumerate() {
        let w = u64::from(h.weight.max(1));
        if r < w {
            return i;
        }
        r -= w;
    }
    0
}
