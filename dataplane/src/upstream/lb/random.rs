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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::cluster::tests::test_host;

    #[test]
    fn follows_the_weights() {
        let host = |weight| test_host(weight, 0);
        let hosts = vec![host(3), host(1)];
        let first = (0..8000).filter(|_| pick(&hosts) == 0).count();
        // 6000 expected; the bound is > 10 standard deviations (~39) wide.
        assert!((5600..6400).contains(&first), "{first}");
    }
}
