//! Incremental (Delta) ADS: one stream's state machine, free of I/O so it can be tested alone.
//!
//! xDS protocol (incremental): subscriptions change by `resource_names_subscribe` /
//! `_unsubscribe`; `*` is the wildcard, and a first LDS/CDS request that subscribes nothing is
//! an implicit wildcard. Each resource carries its own version; a response carries only what
//! changed and names what left in `removed_resources`. After a reconnect the client says what
//! it has in `initial_resource_versions`, and only what differs is sent again.

use xds_types::type_url;

use super::Outcome;
use super::by_type::ByType;
use super::names::Names;
use super::request::DeltaRequest;
use super::stream::TypeSubscription;
use super::wire::DeltaResponse;
use std::sync::Arc;

use crate::cache::Snapshot;

#[derive(Debug, Default)]
struct TypeState {
    sub: TypeSubscription,
    /// The last nonce sent for this type.
    last_nonce: Option<String>,
    started: bool,
}

/// One Delta stream's state across all types.
#[derive(Debug, Default)]
pub struct DeltaState {
    types: ByType<TypeState>,
    nonce: u64,
    version: String,
}

impl DeltaState {
    /// Handles one request: applies its subscription changes, classifies it, and returns the
    /// response it calls for now, if any.
    pub fn on_request(
        &mut self,
        req: &DeltaRequest,
        snapshot: Option<&Arc<Snapshot>>,
    ) -> (Outcome, Option<DeltaResponse>) {
        let url = req.type_url.as_str();
        let at = self.types.index_or_insert(url);
        let state = self.types.at_mut(at).1;
        let outcome = match (req.response_nonce.as_str(), &state.last_nonce) {
            ("", _) => Outcome::Initial,
            (n, Some(last)) if n == last => match &req.error_detail {
                Some(status) => Outcome::Nack {
                    version: self.version.clone(),
                    nonce: n.to_string(),
                    detail: status.message.clone(),
                },
                None => Outcome::Ack {
                    version: self.version.clone(),
                },
            },
            _ => Outcome::Stale,
        };
        let first = !state.started;
        // An ACK or NACK alone leaves the subscription as it is: no copy of the names (an EDS
        // subscription holds a name per cluster, and every stream ACKs every push).
        if !first
            && req.resource_names_subscribe.is_empty()
            && req.resource_names_unsubscribe.is_empty()
        {
            return (outcome, None);
        }
        let (mut wildcard, mut names) = (state.sub.wildcard, (*state.sub.names).clone());
        if first {
            state.started = true;
            // What the client already has, from a previous stream.
            state.sub.set_initial(&req.initial_resource_versions);
            wildcard = req.resource_names_subscribe.is_empty() && type_url::is_full_state(url);
        }
        for name in &req.resource_names_subscribe {
            if name == "*" {
                wildcard = true;
            } else {
                names.insert(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            if name == "*" {
                wildcard = false;
            } else {
                names.remove(name);
            }
        }
        let changed = state.sub.set_names(url, wildcard, names);
        // The first request of a wildcard type is always answered (the client waits for it);
        // subscription changes are answered with what they add; ACKs and NACKs alone are not.
        let response = match snapshot {
            Some(s) if first || changed => self.respond(at, s, first),
            _ => None,
        };
        (outcome, response)
    }

    /// The responses a new snapshot calls for, in ADS order.
    pub fn on_snapshot(&mut self, snapshot: &Arc<Snapshot>) -> Vec<DeltaResponse> {
        (0..self.types.len())
            .filter_map(|at| self.respond(at, snapshot, false))
            .collect()
    }

    /// The response the type at `at` calls for.
    fn respond(
        &mut self,
        at: usize,
        snapshot: &Arc<Snapshot>,
        first: bool,
    ) -> Option<DeltaResponse> {
        let (url, state) = self.types.at_mut(at);
        let diff = state.sub.diff(snapshot, url);
        state.sub.mark_sent(snapshot);
        if diff.is_empty() && !(first && state.sub.wildcard) {
            return None;
        }
        self.nonce += 1;
        self.version = snapshot.version.clone();
        let nonce = self.nonce.to_string();
        state.last_nonce = Some(nonce.clone());
        Some(DeltaResponse {
            system_version_info: snapshot.version.clone(),
            resources: diff.changed,
            type_url: url.to_string(),
            removed_resources: diff.removed,
            nonce,
        })
    }

    /// Names this stream subscribed to for a type, and whether it is a wildcard subscription.
    pub fn subscription(&self, url: &str) -> Option<(bool, Names)> {
        self.types
            .get(url)
            .map(|t| (t.sub.wildcard, t.sub.names.clone()))
    }
}

#[cfg(test)]
mod tests;
