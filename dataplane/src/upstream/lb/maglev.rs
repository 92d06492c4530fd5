//! MAGLEV: the lookup table of Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer" (NSDI 2016), built as Envoy builds it (maglev_lb.cc) so a key maps to the same
//! host: hosts sorted by hash key, offset = xxHash64(key) % size, skip = xxHash64(key, seed 1) %
//! (size - 1) + 1, and each host takes its next preferred free slot in turn, as often as its
//! weight relative to the heaviest host allows. The table size is prime (65537 by default).

use super::hash;

#[derive(Debug, Default)]
pub struct Table {
    /// Host index per slot.
    slots: Vec<u32>,
}

struct Entry {
    host: u32,
    offset: u64,
    skip: u64,
    weight: f64,
    target_weight: f64,
    next: u64,
}

impl Table {
    /// `hosts`: (hash key, normalized weight) per host; `size` must be prime.
    pub fn new(hosts: &[(String, f64)], size: u64) -> Self {
        if hosts.is_empty() || size < 2 {
            return Table::default();
        }
        let max_weight = hosts.iter().map(|(_, w)| *w).fold(0.0, f64::max);
        let mut order: Vec<usize> = (0..hosts.len()).collect();
        order.sort_by(|a, b| hosts[*a].0.cmp(&hosts[*b].0));
        let mut entries: Vec<Entry> = order
            .iter()
            .map(|&i| {
                let key = hosts[i].0.as_bytes();
                Entry {
                    host: i as u32,
                    offset: hash::xx(key) % size,
                    skip: hash::xx_seeded(key, 1) % (size - 1) + 1,
                    weight: hosts[i].1,
                    target_weight: 0.0,
                    next: 0,
                }
            })
            .collect();
        const EMPTY: u32 = u32::MAX;
        let mut slots = vec![EMPTY; size as usize];
        let mut filled = 0u64;
        let mut iteration = 1u64;
        while filled < size {
            for e in &mut entries {
                if filled == size {
                    break;
                }
                // A host with the heaviest weight takes a slot every round; one with a third of
                // it every third round.
                if (iteration as f64) * e.weight < e.target_weight {
                    continue;
                }
                e.target_weight += max_weight;
                let mut c = (e.offset + e.skip * e.next) % size;
                while slots[c as usize] != EMPTY {
                    e.next += 1;
                    c = (e.offset + e.skip * e.next) % size;
                }
                slots[c as usize] = e.host;
                e.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        Table { slots }
    }

    /// The host for `hash`; a retry flips many bits of the hash to land elsewhere, as Envoy.
    pub fn choose(&self, mut hash: u64, attempt: u32) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        if attempt > 0 {
            hash ^= (!0u64).wrapping_sub(u64::from(attempt)).wrapping_add(1);
        }
        Some(self.slots[(hash % self.slots.len() as u64) as usize] as usize)
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

    fn owners(t: &Table, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for s in &t.slots {
            counts[*s as usize] += 1;
        }
        counts
    }

    #[test]
    fn every_slot_is_filled_evenly() {
        let t = Table::new(&hosts(3), 65537);
        let c = owners(&t, 3);
        assert_eq!(c.iter().sum::<usize>(), 65537);
        for n in c {
            assert!((21_845..=21_846).contains(&n), "{n}");
        }
    }

    #[test]
    fn weights_are_honoured() {
        let t = Table::new(&[("a:1".into(), 0.75), ("b:1".into(), 0.25)], 65537);
        let c = owners(&t, 2);
        assert!((c[0] as f64 / 65537.0 - 0.75).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn a_host_leaving_disrupts_little() {
        let before = Table::new(&hosts(5), 65537);
        let mut four = hosts(5);
        four.remove(2);
        for h in &mut four {
            h.1 = 0.25;
        }
        let after = Table::new(&four, 65537);
        let mut moved = 0;
        for (b, a) in before.slots.iter().zip(&after.slots) {
            let a = if *a >= 2 { a + 1 } else { *a };
            if *b != 2 && *b != a {
                moved += 1;
            }
        }
        // Maglev trades a little disruption for balance; the paper reports a few percent.
        assert!(moved < 65537 / 20, "{moved} slots of remaining hosts moved");
    }

    #[test]
    fn order_of_hosts_does_not_matter() {
        let a = Table::new(&hosts(4), 251);
        let mut reversed = hosts(4);
        reversed.reverse();
        let b = Table::new(&reversed, 251);
        for (x, y) in a.slots.iter().zip(&b.slots) {
            assert_eq!(hosts(4)[*x as usize].0, reversed[*y as usize].0);
        }
        assert!(a.choose(7, 1).is_some());
        assert!(Table::default().choose(7, 0).is_none());
    }
}
