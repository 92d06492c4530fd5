//! Node groups: which nodes a snapshot is for.

use super::Snapshot;

/// Which nodes a group is for: by node id or node cluster, `*` and `?` globs allowed.
/// An empty selector matches every node (the default group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSelector {
    pub node_ids: Vec<String>,
    pub node_clusters: Vec<String>,
}

/// A named group of nodes and the snapshot they are served.
#[derive(Debug, Clone)]
pub struct NodeGroup {
    pub name: String,
    pub selector: NodeSelector,
    pub snapshot: Snapshot,
}
