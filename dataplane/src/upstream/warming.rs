//! Cluster warming, as Envoy's cluster manager does it: a new version of a cluster is not
//! used until what it needs from xDS has arrived. Its init targets are
//! * its transport socket's SDS secrets (over ADS or from a file): all of them present;
//! * for an EDS cluster, its ClusterLoadAssignment: an EDS response carrying it after this
//!   version arrived. An updated cluster waits for the assignment to come again, as Envoy's
//!   does (it then falls back to its cached copy, `use_eds_cache_for_ads`); our controlplane
//!   resends it with the cluster so that wait is short.
//!
//! Each target gives up after its config source's `initial_fetch_timeout` (15 s by default,
//! 0 = forever); the cluster becomes active once every target is done. Without its secrets a
//! connection attempt then fails (Envoy: `ssl.upstream_context_secrets_not_ready`, 503 UF);
//! without endpoints it has the assignment it had (or none: 503 UH).
//!
//! A cluster that is replaced keeps serving its previous version while the new one warms
//! (Envoy: "the old cluster keeps serving until the new one has warmed"); a new cluster is
//! simply absent until then (a route to it gets 503 NC, as in Envoy). Once a version is
//! active it stays so: a secret removed later does not send it back to warming.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Cluster;
use crate::config::cluster::Discovery;
use crate::tls::Secrets;

/// Whether a cluster version may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    /// Waiting for secrets or endpoints; look again at this instant (`None`: only when
    /// something arrives).
    Warming(Option<Instant>),
}

/// Per cluster name: the version last seen, since when, and whether it became active.
#[derive(Debug, Default)]
pub struct Warming {
    versions: HashMap<String, Version>,
    /// When each assignment last arrived in an EDS response, as a count of arrivals (a
    /// clock that cannot tie, unlike `Instant`s taken close together).
    arrivals: HashMap<String, u64>,
    clock: u64,
}

#[derive(Debug)]
struct Version {
    /// Kept (not its address) so a freed version's address reused by a new one cannot be
    /// mistaken for it.
    cluster: Arc<Cluster>,
    since: Instant,
    /// The arrival clock when this version came: its assignment must come after.
    born: u64,
    active: bool,
}

impl Warming {
    /// Records that an EDS response carried these assignments.
    pub fn endpoints_arrived<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        self.clock += 1;
        for name in names {
            self.arrivals.insert(name.to_string(), self.clock);
        }
    }

    /// The state of `cluster` (the version of its name in the config) now.
    pub fn check(&mut self, cluster: &Arc<Cluster>, secrets: &Secrets, now: Instant) -> State {
        let clock = self.clock;
        let version = self
            .versions
            .entry(cluster.name.clone())
            .and_modify(|v| {
                if !Arc::ptr_eq(&v.cluster, cluster) {
                    // A new version warms from the start, as Envoy restarts a warming
                    // cluster's initialization when CDS replaces it.
                    *v = Version::new(cluster, now, clock);
                }
            })
            .or_insert_with(|| Version::new(cluster, now, clock));
        if version.active {
            return State::Active;
        }
        // Each init target: done (arrived or timed out), or pending until when.
        let mut pending: Vec<Option<Instant>> = Vec::new();
        let mut target = |what: &str, arrived: bool, timeout: Option<Duration>| {
            let deadline = timeout.map(|t| version.since + t);
            if arrived {
                return;
            }
            if deadline.is_some_and(|d| now >= d) {
                tracing::warn!(cluster = %cluster.name, "{what} not received within initial_fetch_timeout: the cluster is used without them");
            } else {
                pending.push(deadline);
            }
        };
        if let Some(tls) = &cluster.tls {
            let arrived = tls
                .secret_names()
                .all(|(name, _)| secrets.contains_key(name));
            target("SDS secrets", arrived, tls.warming_timeout());
        }
        if let Discovery::Eds(eds) = &cluster.discovery {
            let arrived = self
                .arrivals
                .get(&eds.service)
                .is_some_and(|&at| at > version.born);
            target("EDS endpoints", arrived, eds.fetch_timeout);
        }
        if pending.is_empty() {
            version.active = true;
            return State::Active;
        }
        // Woken at the first deadline to look again.
        State::Warming(pending.into_iter().flatten().min())
    }

    /// Forgets the clusters no longer in the config.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.versions.retain(|name, _| keep(name));
    }

    /// Forgets the arrivals of assignments no longer in the config.
    pub fn retain_arrivals(&mut self, keep: impl Fn(&str) -> bool) {
        self.arrivals.retain(|name, _| keep(name));
    }
}

impl Version {
    fn new(cluster: &Arc<Cluster>, now: Instant, born: u64) -> Self {
        Version {
            cluster: cluster.clone(),
            since: now,
            born,
            active: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;

    fn eds(connect: &str, fetch: &str) -> Arc<Cluster> {
        let yaml = format!(
            "name: b\ntype: EDS\nconnect_timeout: {connect}\neds_cluster_config: {{ service_name: svc, eds_config: {{ ads: {{}}, initial_fetch_timeout: {fetch} }} }}"
        );
        let c: XdsCluster = xds_types::format::from_yaml_str(&yaml).expect("a cluster");
        Arc::new(Cluster::try_from(&c).expect("translates"))
    }

    #[test]
    fn a_new_eds_cluster_warms_until_its_assignment_arrives() {
        let (mut w, secrets, t0) = (Warming::default(), Secrets::default(), Instant::now());
        let v1 = eds("1s", "5s");
        let deadline = t0 + Duration::from_secs(5);
        assert_eq!(w.check(&v1, &secrets, t0), State::Warming(Some(deadline)));
        // Another assignment does not count.
        w.endpoints_arrived(["other"]);
        assert_eq!(w.check(&v1, &secrets, t0), State::Warming(Some(deadline)));
        w.endpoints_arrived(["svc"]);
        assert_eq!(w.check(&v1, &secrets, t0), State::Active);
        // Active stays active.
        assert_eq!(
            w.check(&v1, &secrets, t0 + Duration::from_secs(60)),
            State::Active
        );
    }

    #[test]
    fn an_updated_eds_cluster_waits_for_its_assignment_again_then_gives_up() {
        let (mut w, secrets, t0) = (Warming::default(), Secrets::default(), Instant::now());
        let v1 = eds("1s", "5s");
        w.check(&v1, &secrets, t0);
        w.endpoints_arrived(["svc"]);
        assert_eq!(w.check(&v1, &secrets, t0), State::Active);
        // The assignment arrived before this version: it waits for it to come again.
        let t1 = t0 + Duration::from_secs(10);
        let v2 = eds("2s", "5s");
        let deadline = t1 + Duration::from_secs(5);
        assert_eq!(w.check(&v2, &secrets, t1), State::Warming(Some(deadline)));
        assert_eq!(w.check(&v2, &secrets, deadline), State::Active);
        // With initial_fetch_timeout 0 it waits for the assignment, however long.
        let v3 = eds("3s", "0s");
        assert_eq!(w.check(&v3, &secrets, t1), State::Warming(None));
        assert_eq!(
            w.check(&v3, &secrets, t1 + Duration::from_secs(3600)),
            State::Warming(None)
        );
        w.endpoints_arrived(["svc"]);
        assert_eq!(w.check(&v3, &secrets, t1), State::Active);
    }
}
