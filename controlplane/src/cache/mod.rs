//! The snapshot cache: the current snapshot of every node group, and which group a node is in.
//!
//! Sources (the file directory, the management API) call [`SnapshotCache::set_groups`] /
//! [`SnapshotCache::set_group`]; every ADS stream follows [`SnapshotCache::subscribe`] and asks
//! [`SnapshotCache::snapshot_for`] its node's current snapshot when the generation moves.
//! One watch channel for all streams: a change wakes each stream once, and a stream that was
//! busy sees only the latest generation (a push storm coalesces by itself).

pub mod node_group;
pub mod snapshot;

use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use xds_types::pb::envoy::config::core::v3::Node;

pub use node_group::{NodeGroup, NodeSelector};
pub use snapshot::{EncodedResource, ResourceMap, Snapshot, SnapshotError};

/// Where a group came from. API groups take precedence over file groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Api,
    Files,
}

#[derive(Debug, Default)]
struct Groups {
    /// Sorted by (origin, name): the order in which selectors are tried.
    groups: Vec<(Origin, NodeGroup)>,
}

/// All node groups and their snapshots; cheap to clone.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    groups: Arc<RwLock<Groups>>,
    generation: Arc<watch::Sender<u64>>,
}

impl Default for SnapshotCache {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotCache {
    pub fn new() -> Self {
        SnapshotCache {
            groups: Arc::default(),
            generation: Arc::new(watch::channel(0).0),
        }
    }

    /// Replaces every group of `origin` with `groups`.
    pub fn set_groups(&self, origin: Origin, groups: Vec<NodeGroup>) {
        self.update(|all| {
            all.retain(|(o, _)| *o != origin);
            all.extend(groups.into_iter().map(|g| (origin, g)));
        });
    }

    /// Adds or replaces one group of `origin`, by name.
    pub fn set_group(&self, origin: Origin, group: NodeGroup) {
        self.update(|all| {
            all.retain(|(o, g)| !(*o == origin && g.name == group.name));
            all.push((origin, group));
        });
    }

    fn update(&self, change: impl FnOnce(&mut Vec<(Origin, NodeGroup)>)) {
        {
            let mut guard = self
                .groups
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            change(&mut guard.groups);
            guard
                .groups
                .sort_by(|(oa, a), (ob, b)| (oa, &a.name).cmp(&(ob, &b.name)));
        }
        crate::server::fanout::published();
        self.generation.send_modify(|g| *g += 1);
    }

    /// A group by name (an API group before a file group of the same name).
    pub fn group(&self, name: &str) -> Option<NodeGroup> {
        self.read(|all| {
            all.iter()
                .find(|(_, g)| g.name == name)
                .map(|(_, g)| g.clone())
        })
    }

    /// Every group with its origin, in selection order.
    pub fn groups(&self) -> Vec<(Origin, NodeGroup)> {
        self.read(|all| all.to_vec())
    }

    /// A receiver whose value moves on every change of any group.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The group a node belongs to and its snapshot: the first group (API before files, by
    /// name) whose non-empty selector matches, else a group with the empty selector.
    pub fn snapshot_for(&self, node: &Node) -> Option<(String, Arc<Snapshot>)> {
        self.read(|all| {
            all.iter()
                .find(|(_, g)| !g.selector.is_default() && g.selector.matches(node))
                .or_else(|| all.iter().find(|(_, g)| g.selector.is_default()))
                .map(|(_, g)| (g.name.clone(), g.snapshot.clone()))
        })
    }

    fn read<T>(&self, f: impl FnOnce(&[(Origin, NodeGroup)]) -> T) -> T {
        let guard = self
            .groups
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&guard.groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, ids: &[&str], version: &str) -> NodeGroup {
        NodeGroup {
            name: name.into(),
            selector: NodeSelector {
                node_ids: ids.iter().map(|s| s.to_string()).collect(),
                node_clusters: vec![],
            },
            snapshot: Arc::new(Snapshot::new(version, vec![]).unwrap()),
        }
    }

    #[test]
    fn selection_order_and_default() {
        let cache = SnapshotCache::new();
        let mut rx = cache.subscribe();
        cache.set_groups(
            Origin::Files,
            vec![
                group("default", &[], "f1"),
                group("canary", &["edge-*"], "c1"),
            ],
        );
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let node = |id: &str| Node {
            id: id.into(),
            ..Default::default()
        };
        assert_eq!(cache.snapshot_for(&node("edge-1")).unwrap().1.version, "c1");
        assert_eq!(cache.snapshot_for(&node("core-1")).unwrap().1.version, "f1");
        cache.set_group(Origin::Api, group("pinned", &["edge-1"], "a1"));
        assert!(rx.has_changed().unwrap());
        assert_eq!(cache.snapshot_for(&node("edge-1")).unwrap().1.version, "a1");
        assert_eq!(cache.snapshot_for(&node("edge-2")).unwrap().1.version, "c1");
        cache.set_groups(Origin::Files, vec![group("canary", &["edge-*"], "c2")]);
        assert!(cache.snapshot_for(&node("core-1")).is_none());
        assert_eq!(cache.groups().len(), 2);
    }
}
