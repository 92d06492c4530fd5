//! What the proxy runs with: the current [`Snapshot`] behind an `ArcSwap`.
//!
//! Convert, then publish once: a new snapshot is built to the side (config + runtime clusters)
//! and stored with one swap. A request loads it once and keeps that `Arc` to its end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::cluster::Discovery;
use crate::config::{Config, LoadAssignment, NameMap, Secret};
use crate::upstream::UpstreamCluster;
use crate::upstream::warming::{State, Warming};

#[derive(Debug, Default)]
pub struct Snapshot {
    /// The config as received: every cluster, warming or not.
    pub config: Config,
    /// The active clusters (what requests use): a warming cluster is absent, or its
    /// previous version serves (upstream/warming.rs).
    pub clusters: NameMap<Arc<UpstreamCluster>>,
    /// The clusters warming for their SDS secrets or EDS endpoints, and when to look again
    /// (`None`: when something arrives).
    pub warming: BTreeMap<String, Option<Instant>>,
}

impl Snapshot {
    /// When the next warming cluster gives up waiting for its secrets.
    pub fn next_warming_deadline(&self) -> Option<Instant> {
        self.warming.values().flatten().min().copied()
    }
}

#[derive(Debug, Default)]
struct Merge {
    last: Option<Instant>,
    pending: bool,
}

/// The shared state of the process.
#[derive(Debug)]
pub struct Runtime {
    current: ArcSwap<Snapshot>,
    changed: watch::Sender<u64>,
    ready: AtomicBool,
    /// An xDS client will deliver clusters (CDS) that have not arrived yet.
    cds_pending: AtomicBool,
    /// The initial clusters are all warm (Envoy's cluster manager initialized): listeners may
    /// start. Set once, never cleared.
    clusters_initialized: AtomicBool,
    /// Which cluster versions are warming for their SDS secrets or EDS endpoints, since when.
    warming: std::sync::Mutex<Warming>,
    /// The latest answers for DNS clusters (upstream/dns.rs), by cluster name.
    resolved: std::sync::Mutex<HashMap<String, Arc<LoadAssignment>>>,
    /// Secrets read from SDS files (tls/files.rs), by key (`config::tls::file_key`); merged
    /// into every published config's secrets.
    file_secrets: std::sync::Mutex<HashMap<String, Arc<Secret>>>,
    /// Wakes the outlier detection task (upstream/outlier.rs).
    outlier_wake: Arc<tokio::sync::Notify>,
    /// Per cluster: when health changes were last applied, and whether a merged application
    /// is pending (`update_merge_window`).
    merges: std::sync::Mutex<HashMap<String, Merge>>,
    /// What the admin API's /config_dump shows: the accepted resources as JSON, by type.
    pub dump: std::sync::Mutex<serde_json::Value>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            current: ArcSwap::from_pointee(Snapshot::default()),
            changed: watch::channel(0).0,
            ready: AtomicBool::new(false),
            cds_pending: AtomicBool::new(false),
            clusters_initialized: AtomicBool::new(false),
            warming: Default::default(),
            resolved: Default::default(),
            file_secrets: Default::default(),
            outlier_wake: Default::default(),
            merges: Default::default(),
            dump: std::sync::Mutex::new(serde_json::json!({ "configs": [] })),
        }
    }
}

impl Runtime {
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Builds the runtime clusters for `config` and swaps it in.
    pub fn publish(&self, config: Config) {
        // The DNS answers' lock also orders publications: a DNS republish and an xDS one
        // cannot interleave and store an older config last.
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        self.build_and_store(config, &resolved);
    }

    /// Records a DNS cluster's new answer and republishes the current config with it (the
    /// cluster's host set changes; nothing else does).
    pub fn set_resolved(&self, cluster: &str, assignment: LoadAssignment) {
        let mut resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        resolved.insert(cluster.to_string(), Arc::new(assignment));
        let config = self.load().config.clone();
        self.build_and_store(config, &resolved);
    }

    /// Replaces the secrets read from the SDS file `path` and republishes the current config
    /// with them (new handshakes use them; established connections keep theirs).
    pub fn set_file_secrets(&self, path: &str, secrets: HashMap<String, Arc<Secret>>) {
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = crate::config::tls::file_key(path, "");
        {
            let mut files = self.file_secrets.lock().unwrap_or_else(|p| p.into_inner());
            files.retain(|key, _| !key.starts_with(&prefix));
            files.extend(secrets);
        }
        let mut config = self.load().config.clone();
        config.secrets.retain(|key, _| !key.starts_with(&prefix));
        self.build_and_store(config, &resolved);
    }

    fn build_and_store(&self, mut config: Config, resolved: &HashMap<String, Arc<LoadAssignment>>) {
        {
            let files = self.file_secrets.lock().unwrap_or_else(|p| p.into_inner());
            config
                .secrets
                .extend(files.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let previous = self.current.load();
        let empty = Default::default();
        let now = Instant::now();
        let mut warming = self.warming.lock().unwrap_or_else(|p| p.into_inner());
        warming.retain(|name| config.clusters.contains_key(name));
        warming.retain_arrivals(|name| config.endpoints.contains_key(name));
        let mut waiting = BTreeMap::new();
        let mut clusters = NameMap::default();
        for (name, c) in &config.clusters {
            let old = previous.clusters.get(name);
            // The version that serves: this one once warm, else the previous one (if any).
            let serving = match warming.check(c, &config.secrets, now) {
                State::Active => c.clone(),
                State::Warming(deadline) => {
                    waiting.insert(name.clone(), deadline);
                    match old {
                        Some(old) => old.config.clone(),
                        None => continue,
                    }
                }
            };
            let assignment = match &serving.discovery {
                Discovery::Static(la) => la,
                Discovery::Eds(eds) => config
                    .endpoints
                    .get(&eds.service)
                    .map(|a| a.as_ref())
                    .unwrap_or(&empty),
                Discovery::Dns(_) => resolved.get(name).map(|a| a.as_ref()).unwrap_or(&empty),
            };
            let upstream = UpstreamCluster::new(
                serving.clone(),
                assignment,
                old.map(|c| c.as_ref()),
                &self.outlier_wake,
            );
            clusters.insert(name.clone(), Arc::new(upstream));
        }
        drop(warming);
        self.current.store(Arc::new(Snapshot {
            config,
            clusters,
            warming: waiting,
        }));
        self.changed.send_modify(|g| *g += 1);
    }

    /// An EDS response carried these assignments (accepted or not: either ends a cluster's
    /// wait for them, as in Envoy, whose EDS init target completes on a rejected update).
    /// Call before publishing the config they are in.
    pub fn endpoints_arrived<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut warming = self.warming.lock().unwrap_or_else(|p| p.into_inner());
        warming.endpoints_arrived(names);
    }

    /// Rebuilds the current snapshot from its own config: a warming cluster whose deadline
    /// passed becomes active.
    pub fn refresh(&self) {
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let config = self.load().config.clone();
        self.build_and_store(config, &resolved);
    }

    /// An xDS client will deliver clusters: listeners wait for them (and for them to warm)
    /// before starting, as Envoy starts LDS only once its cluster manager is initialized.
    pub fn expect_clusters(&self) {
        if !self.clusters_initialized.load(Ordering::Relaxed) {
            self.cds_pending.store(true, Ordering::Relaxed);
        }
    }

    /// The first CDS response has been applied (or its initial fetch gave up).
    pub fn clusters_arrived(&self) {
        if self.cds_pending.swap(false, Ordering::Relaxed) {
            self.changed.send_modify(|g| *g += 1);
        }
    }

    /// Whether the initial clusters have all warmed (or given up warming): Envoy's cluster
    /// manager initialization, after which listeners start. Latched: clusters added later
    /// warm without holding listeners back.
    pub fn clusters_initialized(&self) -> bool {
        if self.clusters_initialized.load(Ordering::Relaxed) {
            return true;
        }
        let done = !self.cds_pending.load(Ordering::Relaxed) && self.load().warming.is_empty();
        if done {
            self.clusters_initialized.store(true, Ordering::Relaxed);
        }
        done
    }

    /// The current answer for a DNS cluster, if resolved.
    pub fn resolved(&self, cluster: &str) -> Option<Arc<LoadAssignment>> {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cluster)
            .cloned()
    }

    /// A host of `cluster` changed health (an active check or an outlier ejection): applied
    /// at once if the last application is older than the cluster's `update_merge_window`,
    /// else with every other change in the window at its end, as Envoy's cluster manager
    /// merges updates.
    pub fn health_changed(self: &Arc<Self>, cluster: &str) {
        let Some(window) = self
            .load()
            .clusters
            .get(cluster)
            .map(|c| c.config.update_merge_window)
        else {
            return;
        };
        let now = Instant::now();
        let mut merges = self.merges.lock().unwrap_or_else(|p| p.into_inner());
        let merge = merges.entry(cluster.to_string()).or_default();
        if merge.pending {
            return;
        }
        if window.is_zero()
            || merge
                .last
                .is_none_or(|last| now.duration_since(last) > window)
        {
            merge.last = Some(now);
            drop(merges);
            self.apply_health(cluster);
            return;
        }
        merge.pending = true;
        drop(merges);
        let runtime = self.clone();
        let cluster = cluster.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            {
                let mut merges = runtime.merges.lock().unwrap_or_else(|p| p.into_inner());
                let merge = merges.entry(cluster.clone()).or_default();
                merge.pending = false;
                merge.last = Some(Instant::now());
            }
            runtime.apply_health(&cluster);
        });
    }

    /// Applies the current health of `cluster`'s hosts and rebuilds the clusters, now.
    pub fn apply_health(&self, cluster: &str) {
        if let Some(c) = self.load().clusters.get(cluster) {
            c.all.iter().for_each(|h| h.apply_health());
        }
        self.refresh();
    }

    /// What wakes the outlier detection task: a host a worker queued.
    pub fn outlier_wake(&self) -> Arc<tokio::sync::Notify> {
        self.outlier_wake.clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}
