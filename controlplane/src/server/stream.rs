//! What SotW and Delta streams share: one type's subscription on one stream, and what that
//! stream was sent of it.
//!
//! Both protocols answer the same question on every request and every snapshot change:
//! which resources in this stream's scope changed since we last sent them, and which that we
//! sent are gone. SotW and Delta differ only in how they put the answer on the wire.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::cache::{EncodedResource, ResourceMap};

/// One type URL's subscription on one stream.
#[derive(Debug, Default, Clone)]
pub struct TypeSubscription {
    /// Subscribed to every resource of the type (wildcard).
    pub wildcard: bool,
    /// Names subscribed explicitly (beside the wildcard, if any).
    pub names: BTreeSet<String>,
    /// Per resource name, the version this stream was last sent (or, after a Delta
    /// reconnect, the version the client says it has).
    pub sent: HashMap<String, String>,
}

/// What changed for one stream and type.
#[derive(Debug, Default)]
pub struct Diff {
    pub changed: Vec<Arc<EncodedResource>>,
    pub removed: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

impl TypeSubscription {
    pub fn in_scope(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Replaces the explicit names (a SotW request carries the whole set each time).
    /// Names that leave the scope are forgotten, so subscribing again resends them.
    /// Returns whether the subscription changed.
    pub fn set_names(&mut self, wildcard: bool, names: BTreeSet<String>) -> bool {
        if self.wildcard == wildcard && self.names == names {
            return false;
        }
        self.wildcard = wildcard;
        self.names = names;
        let (wildcard, names) = (self.wildcard, &self.names);
        self.sent.retain(|name, _| wildcard || names.contains(name));
        true
    }

    /// Resources in scope whose version differs from what was sent, and names that were sent
    /// but are no longer in the snapshot.
    pub fn diff(&self, resources: &ResourceMap) -> Diff {
        let mut diff = Diff::default();
        let mut consider = |r: &Arc<EncodedResource>| {
            if self.sent.get(&r.name) != Some(&r.version) {
                diff.changed.push(r.clone());
            }
        };
        if self.wildcard {
            resources.values().for_each(&mut consider);
        } else {
            self.names
                .iter()
                .filter_map(|n| resources.get(n))
                .for_each(&mut consider);
        }
        diff.removed = self
            .sent
            .keys()
            .filter(|n| !resources.contains_key(*n))
            .cloned()
            .collect();
        diff.removed.sort();
        diff
    }

    /// Records a diff as sent.
    pub fn mark_sent(&mut self, diff: &Diff) {
        for r in &diff.changed {
            self.sent.insert(r.name.clone(), r.version.clone());
        }
        for name in &diff.removed {
            self.sent.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Snapshot;
    use xds_types::Resource;
    use xds_types::pb::envoy::config::cluster::v3::Cluster;

    fn snapshot(names: &[(&str, u64)]) -> Snapshot {
        let clusters = names
            .iter()
            .map(|(n, t)| {
                Cluster {
                    name: n.to_string(),
                    connect_timeout: Some(xds_types::pb::google::protobuf::Duration {
                        seconds: *t as i64,
                        nanos: 0,
                    }),
                    ..Default::default()
                }
                .to_any()
            })
            .collect();
        Snapshot::new("v", clusters).unwrap()
    }

    #[test]
    fn diff_tracks_changes_and_removals() {
        let url = xds_types::type_url::CLUSTER;
        let mut sub = TypeSubscription {
            wildcard: true,
            ..Default::default()
        };
        let s1 = snapshot(&[("a", 1), ("b", 1)]);
        let d = sub.diff(s1.resources(url));
        assert_eq!(d.changed.len(), 2);
        sub.mark_sent(&d);
        assert!(sub.diff(s1.resources(url)).is_empty());
        let s2 = snapshot(&[("a", 2)]);
        let d = sub.diff(s2.resources(url));
        assert_eq!(
            d.changed
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(d.removed, ["b"]);
    }

    #[test]
    fn names_leaving_scope_are_forgotten() {
        let url = xds_types::type_url::CLUSTER;
        let s = snapshot(&[("a", 1), ("b", 1)]);
        let mut sub = TypeSubscription::default();
        assert!(sub.set_names(false, ["a".to_string()].into()));
        let d = sub.diff(s.resources(url));
        assert_eq!(d.changed.len(), 1);
        sub.mark_sent(&d);
        assert!(!sub.set_names(false, ["a".to_string()].into()));
        sub.set_names(false, ["b".to_string()].into());
        assert!(sub.sent.is_empty());
        sub.set_names(false, ["a".to_string(), "b".to_string()].into());
        assert_eq!(sub.diff(s.resources(url)).changed.len(), 2);
    }
}
