//! What the proxy runs with: the current [`Snapshot`] behind an `ArcSwap`.
//!
//! Convert, then publish once: a new snapshot is built to the side (config + runtime clusters)
//! and stored with one swap. A request loads it once and keeps that `Arc` to its end.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::config::cluster::Discovery;
use crate::config::{Config, LoadAssignment, NameMap, Secret};
use crate::upstream::UpstreamCluster;

#[derive(Debug, Default)]
pub struct Snapshot {
    pub config: Config,
    pub clusters: NameMap<Arc<UpstreamCluster>>,
}

/// The shared state of the process.
#[derive(Debug)]
pub struct Runtime {
    current: ArcSwap<Snapshot>,
    changed: watch::Sender<u64>,
    ready: AtomicBool,
    /// The latest answers for DNS clusters (upstream/dns.rs), by cluster name.
    resolved: std::sync::Mutex<HashMap<String, Arc<LoadAssignment>>>,
    /// Secrets read from SDS files (tls/files.rs), by key (`config::tls::file_key`); merged
    /// into every published config's secrets.
    file_secrets: std::sync::Mutex<HashMap<String, Arc<Secret>>>,
    /// What the admin API's /config_dump shows: the accepted resources as JSON, by type.
    pub dump: std::sync::Mutex<serde_json::Value>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            current: ArcSwap::from_pointee(Snapshot::default()),
            changed: watch::channel(0).0,
            ready: AtomicBool::new(false),
            resolved: Default::default(),
            file_secrets: Default::default(),
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
        let clusters = config
            .clusters
            .iter()
            .map(|(name, c)| {
                let assignment = match &c.discovery {
                    Discovery::Static(la) => la,
                    Discovery::Eds(service) => config
                        .endpoints
                        .get(service)
                        .map(|a| a.as_ref())
                        .unwrap_or(&empty),
                    Discovery::Dns(_) => resolved.get(name).map(|a| a.as_ref()).unwrap_or(&empty),
                };
                let upstream = UpstreamCluster::new(
                    c.clone(),
                    assignment,
                    previous.clusters.get(name).map(|c| c.as_ref()),
                );
                (name.clone(), Arc::new(upstream))
            })
            .collect();
        self.current.store(Arc::new(Snapshot { config, clusters }));
        self.changed.send_modify(|g| *g += 1);
    }

    /// The current answer for a DNS cluster, if resolved.
    pub fn resolved(&self, cluster: &str) -> Option<Arc<LoadAssignment>> {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cluster)
            .cloned()
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
