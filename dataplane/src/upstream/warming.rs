//! Cluster warming for SDS secrets, as Envoy's cluster manager does it.
//!
//! A cluster whose `UpstreamTlsContext` names SDS secrets (over ADS or from a file) is not
//! used until they have all arrived: its transport socket's secrets are init targets of the
//! cluster's init manager, and the cluster joins the active set only once that manager is
//! done. Each secret's fetch gives up after its config source's `initial_fetch_timeout`
//! (15 s by default, 0 = forever); then the cluster becomes active without it, and a
//! connection attempt fails (Envoy: `ssl.upstream_context_secrets_not_ready`, 503 UF).
//!
//! A cluster that is replaced keeps serving its previous version while the new one warms
//! (Envoy: "the old cluster keeps serving until the new one has warmed"); a new cluster is
//! simply absent until then (a route to it gets 503 NC, as in Envoy). Once a version is
//! active it stays so: a secret removed later does not send it back to warming.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Cluster;
use crate::tls::Secrets;

/// Whether a cluster version may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    /// Waiting for secrets, until this instant (`None`: forever).
    Warming(Option<Instant>),
}

/// Per cluster name: the version last seen, since when, and whether it became active.
#[derive(Debug, Default)]
pub struct Warming {
    versions: HashMap<String, Version>,
}

#[derive(Debug)]
struct Version {
    /// Kept (not its address) so a freed version's address reused by a new one cannot be
    /// mistaken for it.
    cluster: Arc<Cluster>,
    since: Instant,
    active: bool,
}

impl Warming {
    /// The state of `cluster` (the version of its name in the config) now.
    pub fn check(&mut self, cluster: &Arc<Cluster>, secrets: &Secrets, now: Instant) -> State {
        let version = self
            .versions
            .entry(cluster.name.clone())
            .and_modify(|v| {
                if !Arc::ptr_eq(&v.cluster, cluster) {
                    // A new version warms from the start, as Envoy restarts a warming
                    // cluster's initialization when CDS replaces it.
                    *v = Version::new(cluster, now);
                }
            })
            .or_insert_with(|| Version::new(cluster, now));
        if version.active {
            return State::Active;
        }
        let Some(tls) = &cluster.tls else {
            version.active = true;
            return State::Active;
        };
        let arrived = tls
            .secret_names()
            .all(|(name, _)| secrets.contains_key(name));
        let deadline = tls.warming_timeout().map(|t| version.since + t);
        if arrived || deadline.is_some_and(|d| now >= d) {
            if !arrived {
                tracing::warn!(cluster = %cluster.name, "SDS secrets not received within initial_fetch_timeout: the cluster is used without them");
            }
            version.active = true;
            return State::Active;
        }
        State::Warming(deadline)
    }

    /// Forgets the clusters no longer in the config.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.versions.retain(|name, _| keep(name));
    }
}

impl Version {
    fn new(cluster: &Arc<Cluster>, now: Instant) -> Self {
        Version {
            cluster: cluster.clone(),
            since: now,
            active: false,
        }
    }
}
