//! State-of-the-World ADS: one stream's state machine, free of I/O so it can be tested alone.
//!
//! xDS protocol (SotW): LDS and CDS responses carry the full set in scope, and a resource left
//! out is removed. RDS, EDS and SDS responses need only carry what changed: leaving one out says
//! nothing about it ("omission of resources does not imply anything about those resources"),
//! so an endpoint change sends one ClusterLoadAssignment, not all of them.

use std::collections::BTreeSet;

use xds_types::type_url;

use super::Outcome;
use super::by_type::ByType;
use super::names::Names;
use super::request::SotwRequest;
use super::stream::TypeSubscription;
use super::wire::SotwResponse;
use std::sync::Arc;

use crate::cache::Snapshot;

#[derive(Debug, Default)]
struct TypeState {
    sub: TypeSubscription,
    /// Nonce and version of the last response of this type.
    last: Option<(String, String)>,
}

/// One SotW stream's state across all types.
#[derive(Debug, Default)]
pub struct SotwState {
    types: ByType<TypeState>,
    nonce: u64,
}

impl SotwState {
    /// Handles one request: classifies it (initial, ACK, NACK, stale) and returns the response
    /// it calls for now, if any.
    pub fn on_request(
        &mut self,
        req: &SotwRequest,
        snapshot: Option<&Arc<Snapshot>>,
    ) -> (Outcome, Option<SotwResponse>) {
        let url = req.type_url.as_str();
        let at = self.types.index_or_insert(url);
        let state = self.types.at_mut(at).1;
        let outcome = match (&state.last, req.response_nonce.as_str()) {
            (_, "") => Outcome::Initial,
            (Some((nonce, version)), n) if n == nonce => match &req.error_detail {
                Some(status) => Outcome::Nack {
                    version: version.clone(),
                    nonce: nonce.clone(),
                    detail: status.message.clone(),
                },
                None => Outcome::Ack {
                    version: req.version_info.clone(),
                },
            },
            // A request answering an older response: the client has not yet seen the latest,
            // and will answer it too (xDS protocol, "when to send an update").
            _ => return (Outcome::Stale, None),
        };
        let wildcard = req.resource_names.is_empty() || req.names().any(|n| n == b"*");
        // Every SotW ACK repeats the whole subscription (1,000 EDS names for 1,000 clusters,
        // 10 million names after a push to 10,000 proxies). A proxy lists them in the same
        // order every time (Envoy's GrpcMuxImpl::sendDiscoveryRequest walks its watches, a
        // list, in order): a list equal to the one recorded for the set is the set, checked
        // in one pass. Otherwise the names are sorted (as borrowed slices) and compared with
        // the set, and copied only when they changed. (Byte order is `str` order, and the
        // names are UTF-8: `Requests` checked them.)
        let listed = state.sub.wildcard == wildcard && state.sub.names.is_listed_as(req.names());
        let changed = !listed && {
            let mut requested: Vec<&[u8]> = req.names().filter(|n| *n != b"*").collect();
            requested.sort_unstable();
            requested.dedup();
            let unchanged = state.sub.wildcard == wildcard
                && state.sub.names.len() == requested.len()
                && state
                    .sub
                    .names
                    .iter()
                    .map(String::as_bytes)
                    .eq(requested.iter().copied());
            let changed = !unchanged && {
                let names: BTreeSet<String> = requested
                    .into_iter()
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .collect();
                state.sub.set_names(url, wildcard, names)
            };
            state.sub.names.record_listing(req.names());
            changed
        };
        // A first request is always answered for LDS/CDS (an empty set is an answer the client
        // waits for); a change of names is answered at once; an ACK or a NACK alone is not: a
        // NACK is not a request for a resend.
        let force = matches!(outcome, Outcome::Initial) || changed;
        let response = match snapshot {
            Some(s) if force => self.respond(at, s, true),
            _ => None,
        };
        (outcome, response)
    }

    /// The responses a new snapshot calls for, in ADS order (CDS, EDS, LDS, RDS, SDS).
    pub fn on_snapshot(&mut self, snapshot: &Arc<Snapshot>) -> Vec<SotwResponse> {
        (0..self.types.len())
            .filter_map(|at| self.respond(at, snapshot, false))
            .collect()
    }

    /// The response the type at `at` calls for.
    fn respond(
        &mut self,
        at: usize,
        snapshot: &Arc<Snapshot>,
        requested: bool,
    ) -> Option<SotwResponse> {
        let (url, state) = self.types.at_mut(at);
        let resources = snapshot.resources(url);
        let diff = state.sub.diff(snapshot, url);
        let full = type_url::is_full_state(url);
        let send = if full {
            !diff.is_empty() || (requested && state.sub.wildcard)
        } else {
            !diff.changed.is_empty()
        };
        if !send {
            // Removed RDS/EDS/SDS names need no message in SotW: forget them.
            state.sub.mark_sent(snapshot);
            return None;
        }
        let resources = if full {
            resources
                .values()
                .filter(|r| state.sub.in_scope(&r.name))
                .cloned()
                .collect()
        } else {
            diff.changed
        };
        state.sub.mark_sent(snapshot);
        self.nonce += 1;
        let nonce = self.nonce.to_string();
        state.last = Some((nonce.clone(), snapshot.version.clone()));
        Some(SotwResponse {
            version_info: snapshot.version.clone(),
            resources,
            type_url: url.to_string(),
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
