//! Node groups: which nodes a snapshot is for.

use std::sync::Arc;

use serde::Serialize;
use xds_types::pb::envoy::config::core::v3::Node;

use super::Snapshot;

/// Which nodes a group is for: by node id or node cluster, `*` and `?` globs allowed.
/// An empty selector matches every node (the default group).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeSelector {
    pub node_ids: Vec<String>,
    pub node_clusters: Vec<String>,
}

impl NodeSelector {
    /// Whether the selector is the default one (matches every node).
    pub fn is_default(&self) -> bool {
        self.node_ids.is_empty() && self.node_clusters.is_empty()
    }

    /// Whether `node` is selected: its id matches one of `node_ids` or its cluster one of
    /// `node_clusters`.
    pub fn matches(&self, node: &Node) -> bool {
        self.is_default()
            || self.node_ids.iter().any(|p| glob_match(p, &node.id))
            || self
                .node_clusters
                .iter()
                .any(|p| glob_match(p, &node.cluster))
    }
}

/// A named group of nodes and the snapshot they are served.
#[derive(Debug, Clone)]
pub struct NodeGroup {
    pub name: String,
    pub selector: NodeSelector,
    pub snapshot: Arc<Snapshot>,
}

/// Shell-style glob: `*` any run of characters, `?` one character, the rest literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("edge-*", "edge-1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*-canary-*", "web-canary-3"));
        assert!(!glob_match("edge-*", "core-1"));
    }

    #[test]
    fn selector_by_id_or_cluster() {
        let s = NodeSelector {
            node_ids: vec!["edge-*".into()],
            node_clusters: vec!["canary".into()],
        };
        let node = |id: &str, cluster: &str| Node {
            id: id.into(),
            cluster: cluster.into(),
            ..Default::default()
        };
        assert!(s.matches(&node("edge-7", "prod")));
        assert!(s.matches(&node("core-1", "canary")));
        assert!(!s.matches(&node("core-1", "prod")));
        assert!(NodeSelector::default().matches(&node("x", "y")));
    }
}
