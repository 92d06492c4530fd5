//! Load-balancing policies behind one picker: a file per policy.
//!
//! A picker is built once per host set (config push or EDS update), with the tables the
//! hashing policies need; picking is then lock-free: an atomic cursor for round robin, the
//! hosts' active-request atomics for least request and bounded load, a binary search or an
//! index for the hash tables.

pub mod bounded_load;
pub mod hash;
pub mod least_request;
pub mod maglev;
pub mod random;
pub mod ring_hash;
pub mod round_robin;

use std::sync::Arc;

use crate::config::cluster::{ConsistentHashing, LbKind};

use super::HostState;

#[derive(Debug)]
pub enum Picker {
    RoundRobin(round_robin::RoundRobin),
    LeastRequest(least_request::LeastRequest),
    Random,
    Hashing(Hashing),
}

/// RING_HASH or MAGLEV over one host set.
#[derive(Debug)]
pub struct Hashing {
    table: HashTable,
    /// Normalized weights of the hosts (sum 1), for bounded load.
    weights: Vec<f64>,
    balance_factor: u32,
}

#[derive(Debug)]
enum HashTable {
    Ring(ring_hash::Ring),
    Maglev(maglev::Table),
}

impl Picker {
    pub fn new(kind: LbKind, hosts: &[Arc<HostState>]) -> Self {
        match kind {
            LbKind::RoundRobin => Picker::RoundRobin(round_robin::RoundRobin::new(hosts)),
            LbKind::LeastRequest {
                choice_count,
                active_request_bias,
            } => Picker::LeastRequest(least_request::LeastRequest::new(
                choice_count,
                active_request_bias,
                hosts,
            )),
            LbKind::Random => Picker::Random,
            LbKind::RingHash {
                min_ring_size,
                max_ring_size,
                hash,
                consistent,
            } => {
                let keyed = keyed(hosts, consistent);
                let ring = ring_hash::Ring::new(&keyed, min_ring_size, max_ring_size, hash);
                Picker::Hashing(Hashing::new(HashTable::Ring(ring), keyed, consistent))
            }
            LbKind::Maglev {
                table_size,
                consistent,
            } => {
                let keyed = keyed(hosts, consistent);
                let table = maglev::Table::new(&keyed, table_size);
                Picker::Hashing(Hashing::new(HashTable::Maglev(table), keyed, consistent))
            }
        }
    }

    /// The index of the host to use, among `hosts` (the set the picker was built for).
    pub fn pick(&self, hosts: &[Arc<HostState>], hash: Option<u64>, attempt: u32) -> Option<usize> {
        if hosts.is_empty() {
            return None;
        }
        Some(match self {
            Picker::RoundRobin(rr) => rr.pick(),
            Picker::LeastRequest(lr) => lr.pick(hosts),
            Picker::Random => random::pick(hosts),
            Picker::Hashing(h) => {
                // No hash policy, or none of its values present: a random hash, as Envoy
                // (the hashing policies then behave like RANDOM).
                let hash = hash.unwrap_or_else(rand::random);
                let first = match &h.table {
                    HashTable::Ring(r) => r.choose(hash, attempt),
                    HashTable::Maglev(t) => t.choose(hash, attempt),
                }?;
                if h.balance_factor == 0 {
                    first
                } else {
                    bounded_load::choose(first, hash, hosts, &h.weights, h.balance_factor)
                }
            }
        })
    }
}

impl Hashing {
    fn new(table: HashTable, keyed: Vec<(String, f64)>, c: ConsistentHashing) -> Self {
        Hashing {
            table,
            weights: keyed.into_iter().map(|(_, w)| w).collect(),
            balance_factor: c.hash_balance_factor,
        }
    }
}

/// Each host's hash key (its address as Envoy prints it, or its hostname) and normalized
/// weight (weight / sum of weights).
fn keyed(hosts: &[Arc<HostState>], c: ConsistentHashing) -> Vec<(String, f64)> {
    let sum: u64 = hosts.iter().map(|h| u64::from(h.weight.max(1))).sum();
    hosts
        .iter()
        .map(|h| {
            let key = if c.use_hostname && !h.hostname.is_empty() {
                h.hostname.clone()
            } else {
                h.addr.to_string()
            };
            (key, f64::from(h.weight.max(1)) / sum as f64)
        })
        .collect()
}
