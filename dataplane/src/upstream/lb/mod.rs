//! Load-balancing policies behind one picker: a file per policy.

pub mod least_request;
pub mod random;
pub mod round_robin;

use std::sync::Arc;

use crate::config::cluster::LbKind;

use super::HostState;

#[derive(Debug)]
pub enum Picker {
    RoundRobin(round_robin::RoundRobin),
    LeastRequest(least_request::LeastRequest),
    Random,
}

impl Picker {
    pub fn new(kind: LbKind, hosts: &[Arc<HostState>]) -> Self {
        match kind {
            LbKind::RoundRobin => Picker::RoundRobin(round_robin::RoundRobin::new(hosts)),
            LbKind::LeastRequest { choice_count } => {
                Picker::LeastRequest(least_request::LeastRequest::new(choice_count))
            }
            LbKind::Random => Picker::Random,
        }
    }

    /// The index of the host to use, among `hosts`.
    pub fn pick(&self, hosts: &[Arc<HostState>]) -> Option<usize> {
        if hosts.is_empty() {
            return None;
        }
        Some(match self {
            Picker::RoundRobin(rr) => rr.pick(),
            Picker::LeastRequest(lr) => lr.pick(hosts),
            Picker::Random => random::pick(hosts),
        })
    }
}
