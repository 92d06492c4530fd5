//! Bounded load for the hashing policies (`hash_balance_factor`, Mirrokni et al.,
//! arXiv:1608.01350), as Envoy's BoundedLoadHashingLoadBalancer: a host may take at most
//! factor/100 times its weighted share of the active requests (at least one); when the hashed
//! host is full, hosts are probed in an order shuffled with the request's hash as the seed (the
//! same key probes the same order, and overflow does not cascade onto the ring neighbour), the
//! first that is not full wins, else the least overloaded.
//!
//! Envoy seeds `std::mt19937` with the hash; we seed splitmix64, so the probe order (not the
//! bound) differs from Envoy's when a host overflows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::upstream::HostState;

/// `first` is what the hash table chose; `weights` are the normalized weights of `hosts`.
pub fn choose(
    first: usize,
    hash: u64,
    hosts: &[Arc<HostState>],
    weights: &[f64],
    factor: u32,
) -> usize {
    let overall: u64 = hosts.iter().map(|h| h.active.load(Ordering::Relaxed)).sum();
    let total_slots = ((overall + 1) * u64::from(factor)).div_ceil(100);
    let overload = |i: usize| {
        let slots = ((total_slots as f64 * weights[i]).ceil() as u64).max(1);
        hosts[i].active.load(Ordering::Relaxed) as f64 / slots as f64
    };
    let mut best = (first, overload(first));
    if best.1 <= 1.0 {
        return first;
    }
    let mut order: Vec<usize> = (0..hosts.len()).collect();
    let mut rng = SplitMix(hash);
    for i in 0..order.len() {
        let j = i + (rng.next() % (order.len() - i) as u64) as usize;
        order.swap(i, j);
        let k = order[i];
        if k == first {
            continue;
        }
        let o = overload(k);
        if o <= 1.0 {
            return k;
        }
        if o < best.1 {
            best = (k, o);
        }
    }
    best.0
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::cluster::tests::host_with_active;

    #[test]
    fn the_hashed_host_wins_while_under_its_bound() {
        let hosts = vec![
            host_with_active(1),
            host_with_active(0),
            host_with_active(0),
        ];
        let w = [1.0 / 3.0; 3];
        // 1 active overall: slots = ceil(2 * 150 / 100) = 3 -> 1 per host; host 0 holds 1 (<= 1).
        assert_eq!(choose(0, 42, &hosts, &w, 150), 0);
    }

    #[test]
    fn a_full_host_spills_to_another_the_same_way_each_time() {
        let hosts = vec![
            host_with_active(10),
            host_with_active(0),
            host_with_active(0),
        ];
        let w = [1.0 / 3.0; 3];
        let picked = choose(0, 42, &hosts, &w, 125);
        assert_ne!(picked, 0);
        assert_eq!(choose(0, 42, &hosts, &w, 125), picked);
        // 10 active: (11 * 125 + 99) / 100 = 14 slots overall, ceil(14 / 3) = 5 per host.
        let busy = vec![
            host_with_active(10),
            host_with_active(6),
            host_with_active(7),
        ];
        assert_eq!(
            choose(0, 42, &busy, &w, 100),
            1,
            "none under the bound: least overloaded"
        );
    }
}
