//! RING_HASH: a ketama ring built as Envoy builds it (ring_hash_lb.cc), so the same key picks
//! the same host as Envoy. Each host gets hashes of `"<address>_<i>"` in proportion to its
//! normalized weight; the ring has at least `min_ring_size` entries, scaled so the lightest
//! host gets a whole number, and at most `max_ring_size`. A request's hash picks the first
//! entry at or after it, wrapping around.

use crate::config::cluster::RingHashFunction;

use super::hash;

#[derive(Debug, Default)]
pub struct Ring {
    /// (hash, host index), sorted by hash.
    entries: Vec<(u64, u32)>,
}

impl Ring {
    /// `hosts`: (hash key, normalized weight) per host; weights sum to 1.
    pub fn new(
        hosts: &[(String, f64)],
        min_ring_size: u64,
        max_ring_size: u64,
        function: RingHashFunction,
    ) -> Self {
        if hosts.is_empty() {
            return Ring::default();
        }
        let min_weight = hosts.iter().map(|(_, w)| *w).fold(1.0, f64::min);
        let scale =
            ((min_weight * min_ring_size as f64).ceil() / min_weight).min(max_ring_size as f64);
        let mut entries = Vec::with_capacity(scale.ceil() as usize);
        let mut current = 0.0;
        let mut target = 0.0;
        let mut key = String::new();
        for (index, (host, weight)) in hosts.iter().enumerate() {
            target += scale * weight;
            let mut i = 0u64;
            while current < target {
                key.clear();
                key.push_str(host);
                key.push('_');
                key.push_str(&i.to_string());
                let h = match function {
                    RingHashFunction::XxHash => hash::xx(key.as_bytes()),
                    RingHashFunction::MurmurHash2 => hash::murmur2(key.as_bytes()),
                };
                entries.push((h, index as u32));
                i += 1;
                current += 1.0;
            }
        }
        // Stable by hash only, as Envoy's std::sort on the hash: equal hashes are vanishingly
        // rare, and the host index breaks the tie deterministically.
        entries.sort_unstable();
        Ring { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The host for `hash`: the first entry whose hash is >= it, wrapping to the first; on a
    /// retry (`attempt` > 0) the entry `attempt` places further on, as Envoy does.
    pub fn choose(&self, hash: u64, attempt: u32) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mut at = self.entries.partition_point(|(h, _)| *h < hash);
        if at == self.entries.len() {
            at = 0;
        }
        if attempt > 0 {
            at = (at + attempt as usize) % self.entries.len();
        }
        Some(self.entries[at].1 as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<(String, f64)> {
        (0..n)
            .map(|i| (format!("10.0.0.{i}:80"), 1.0 / n as f64))
            .collect()
    }

    fn spread(ring: &Ring, n: usize, keys: u64) -> Vec<u64> {
        let mut counts = vec![0; n];
        for k in 0..keys {
            let h = hash::xx(format!("key-{k}").as_bytes());
            counts[ring.choose(h, 0).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn ring_size_follows_min_and_max() {
        let ring = Ring::new(&hosts(3), 1024, 8 << 20, RingHashFunction::XxHash);
        // 1/3 * 1024 = 341.33 -> ceil 342 hashes for the lightest host: 1026 in all.
        assert_eq!(ring.len(), 1026);
        let capped = Ring::new(&hosts(3), 1024, 6, RingHashFunction::XxHash);
        assert_eq!(capped.len(), 6);
    }

    #[test]
    fn keys_spread_evenly_and_by_weight() {
        let ring = Ring::new(&hosts(4), 1024, 8 << 20, RingHashFunction::XxHash);
        for c in spread(&ring, 4, 20_000) {
            assert!((4_000..6_000).contains(&c), "{c}");
        }
        let weighted = vec![("a:1".to_string(), 0.75), ("b:1".to_string(), 0.25)];
        let ring = Ring::new(&weighted, 1024, 8 << 20, RingHashFunction::MurmurHash2);
        let c = spread(&ring, 2, 20_000);
        assert!((13_500..16_500).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn a_host_leaving_moves_few_other_keys() {
        let before = Ring::new(&hosts(5), 1024, 8 << 20, RingHashFunction::XxHash);
        let mut four = hosts(5);
        four.remove(2);
        for h in &mut four {
            h.1 = 0.25;
        }
        let after = Ring::new(&four, 1024, 8 << 20, RingHashFunction::XxHash);
        let (mut moved, mut stayed) = (0, 0);
        for k in 0..10_000u64 {
            let h = hash::xx(&k.to_le_bytes());
            let was = before.choose(h, 0).unwrap();
            let now = after.choose(h, 0).unwrap();
            // Index 2 left, so the hosts after it shifted down by one.
            let now_in_old = if now >= 2 { now + 1 } else { now };
            if was == 2 {
                continue;
            }
            if was == now_in_old {
                stayed += 1;
            } else {
                moved += 1;
            }
        }
        // The remaining hosts each gain hashes (205 -> 256 of a ~1024 ring), which take some
        // keys from their neighbours: Envoy's ring does the same. Modulo hashing would move
        // 3 keys in 4; the ring moves about 1 in 8.
        assert!(
            moved * 5 < stayed,
            "{moved} keys of the remaining hosts moved, {stayed} stayed"
        );
    }

    #[test]
    fn wraps_around_and_retries_move_on() {
        let ring = Ring::new(&hosts(2), 4, 4, RingHashFunction::XxHash);
        assert_eq!(ring.choose(u64::MAX, 0), ring.choose(0, 0));
        let first = ring.choose(0, 0).unwrap();
        assert!(ring.choose(0, 1).is_some());
        assert!(first < 2);
        assert!(Ring::default().choose(1, 0).is_none());
    }
}
