//! What SotW and Delta streams share: one type's subscription on one stream, and what that
//! stream was sent of it.
//!
//! Both protocols answer the same question on every request and every snapshot change:
//! which resources in this stream's scope changed since we last sent them, and which that we
//! sent are gone. SotW and Delta differ only in how they put the answer on the wire.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::names::Names;
use crate::cache::{EncodedResource, Snapshot};

/// One type URL's subscription on one stream, and what its client holds.
///
/// What the client holds is kept as "the versions of snapshot `base`, for every name in scope,
/// except `overrides`", not as a map per stream: 10,000 streams of 2,000 resources share a
/// few snapshots instead of holding 20 million entries, and when the new snapshot records
/// what changed since `base` ([`Snapshot::changes`]) a diff looks only at those names.
#[derive(Debug, Default, Clone)]
pub struct TypeSubscription {
    /// Subscribed to every resource of the type (wildcard).
    pub wildcard: bool,
    /// Names subscribed explicitly (beside the wildcard, if any).
    pub names: Names,
    base: Option<Arc<Snapshot>>,
    /// Exceptions to `base`: the version the client holds, or `None` for nothing.
    overrides: HashMap<String, Option<String>>,
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

    /// The version of `name` the client holds, if any.
    fn held(&self, url: &str, name: &str) -> Option<&str> {
        match self.overrides.get(name) {
            Some(held) => held.as_deref(),
            None => self
                .base
                .as_ref()?
                .resources(url)
                .get(name)
                .map(|r| r.version.as_str()),
        }
    }

    /// After a Delta reconnect: the client says what it holds.
    pub fn set_initial(&mut self, versions: &HashMap<String, String>) {
        self.base = None;
        self.overrides = versions
            .iter()
            .map(|(n, v)| (n.clone(), Some(v.clone())))
            .collect();
    }

    /// Replaces the subscription. Names that enter the scope are not held by the client
    /// (so subscribing again resends them). Returns whether the subscription changed.
    pub fn set_names(&mut self, url: &str, wildcard: bool, names: BTreeSet<String>) -> bool {
        if self.wildcard == wildcard && *self.names == names {
            return false;
        }
        if wildcard && !self.wildcard {
            // Every name not in scope before enters it: hold on to what the client had of
            // the explicit names and say it has nothing else.
            let mut held = self.overrides.clone();
            for name in self.names.iter() {
                if !held.contains_key(name) {
                    held.insert(name.clone(), self.held(url, name).map(str::to_string));
                }
            }
            self.base = None;
            self.overrides = held;
        } else if !wildcard {
            let entering: Vec<String> = names
                .iter()
                .filter(|n| !self.in_scope(n))
                .cloned()
                .collect();
            for name in entering {
                // Unless the client said it holds it (Delta initial_resource_versions).
                self.overrides.entry(name).or_insert(None);
            }
            let keep = |n: &String| names.contains(n);
            self.overrides.retain(|n, _| keep(n));
        }
        self.wildcard = wildcard;
        self.names = Names::intern(names);
        true
    }

    /// Resources in scope whose version differs from what the client holds, and names it
    /// holds that are no longer in the snapshot.
    pub fn diff(&self, snapshot: &Arc<Snapshot>, url: &str) -> Diff {
        let resources = snapshot.resources(url);
        let mut diff = Diff::default();
        if let Some(base) = &self.base
            && self.overrides.is_empty()
        {
            if Arc::ptr_eq(base, snapshot) {
                return diff;
            }
            if let Some(changes) = snapshot
                .changes()
                .filter(|c| c.parent_version == base.version)
            {
                for name in changes
                    .names
                    .get(url)
                    .into_iter()
                    .flatten()
                    .filter(|n| self.in_scope(n))
                {
                    match resources.get(name) {
                        Some(r) => diff.changed.push(r.clone()),
                        None if base.resources(url).contains_key(name) => {
                            diff.removed.push(name.clone())
                        }
                        None => {}
                    }
                }
                return diff;
            }
        }
        let mut consider = |r: &Arc<EncodedResource>| {
            if self.held(url, &r.name) != Some(r.version.as_str()) {
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
        let base_names = self
            .base
            .iter()
            .flat_map(|b| b.resources(url).keys())
            .filter(|n| !self.overrides.contains_key(*n));
        let held_names = self
            .overrides
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(n, _)| n);
        let mut removed: Vec<String> = base_names
            .chain(held_names)
            .filter(|n| self.in_scope(n) && !resources.contains_key(*n))
            .cloned()
            .collect();
        removed.sort();
        diff.removed = removed;
        diff
    }

    /// Records that the client now holds `snapshot`'s versions for every name in scope (the
    /// diff against it was sent, or was empty).
    pub fn mark_sent(&mut self, snapshot: &Arc<Snapshot>) {
        self.base = Some(snapshot.clone());
        // Drop the table, not just its entries: after a first EDS request it has a slot per
        // subscribed name (~100 KB for 1,000 names), and most streams never need it again.
        self.overrides = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_types::Resource;
    use xds_types::pb::envoy::config::cluster::v3::Cluster;

    const URL: &str = xds_types::type_url::CLUSTER;

    fn snapshot(version: &str, names: &[(&str, i64)]) -> Snapshot {
        let clusters = names
            .iter()
            .map(|(n, t)| {
                let timeout = xds_types::pb::google::protobuf::Duration {
                    seconds: *t,
                    nanos: 0,
                };
                Cluster {
                    name: n.to_string(),
                    connect_timeout: Some(timeout),
                    ..Default::default()
                }
                .to_any()
            })
            .collect();
        Snapshot::new(version, clusters).unwrap()
    }

    fn names(d: &Diff) -> Vec<&str> {
        d.changed.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn diff_tracks_changes_and_removals() {
        let mut sub = TypeSubscription {
            wildcard: true,
            ..Default::default()
        };
        let s1 = Arc::new(snapshot("1", &[("a", 1), ("b", 1)]));
        let d = sub.diff(&s1, URL);
        assert_eq!(d.changed.len(), 2);
        sub.mark_sent(&s1);
        assert!(sub.diff(&s1, URL).is_empty());
        let s2 = Arc::new(snapshot("2", &[("a", 2)]));
        let d = sub.diff(&s2, URL);
        assert_eq!(names(&d), ["a"]);
        assert_eq!(d.removed, ["b"]);
    }

    #[test]
    fn the_recorded_changes_give_the_same_diff_as_a_full_comparison() {
        let s1 = Arc::new(snapshot("1", &[("a", 1), ("b", 1), ("c", 1)]));
        let s2_plain = snapshot("2", &[("a", 2), ("c", 1), ("d", 1)]);
        let s2_fast = Arc::new(s2_plain.clone().with_parent(&s1));
        let s2_plain = Arc::new(s2_plain);
        for wildcard in [true, false] {
            let mut sub = TypeSubscription::default();
            sub.set_names(
                URL,
                wildcard,
                ["a".to_string(), "b".to_string(), "d".to_string()].into(),
            );
            sub.mark_sent(&s1);
            let (fast, full) = (sub.diff(&s2_fast, URL), sub.diff(&s2_plain, URL));
            assert_eq!(names(&fast), names(&full));
            assert_eq!(fast.removed, full.removed);
            assert_eq!(names(&fast), ["a", "d"]);
            assert_eq!(fast.removed, ["b"]);
        }
        // The unchanged resource is the parent's copy; the changed and the new are not.
        let shared = |name: &str| {
            let (new, old) = (s2_fast.resources(URL), s1.resources(URL));
            old.get(name).is_some_and(|o| Arc::ptr_eq(o, &new[name]))
        };
        assert!(shared("c"));
        assert!(!shared("a") && !shared("d"));
    }

    #[test]
    fn names_entering_scope_are_sent_and_leaving_ones_forgotten() {
        let s = Arc::new(snapshot("1", &[("a", 1), ("b", 1)]));
        let mut sub = TypeSubscription::default();
        assert!(sub.set_names(URL, false, ["a".to_string()].into()));
        assert_eq!(names(&sub.diff(&s, URL)), ["a"]);
        sub.mark_sent(&s);
        assert!(!sub.set_names(URL, false, ["a".to_string()].into()));
        sub.set_names(URL, false, ["a".to_string(), "b".to_string()].into());
        assert_eq!(names(&sub.diff(&s, URL)), ["b"], "a is held, b is new");
        sub.mark_sent(&s);
        sub.set_names(URL, false, ["a".to_string()].into());
        sub.set_names(URL, false, ["a".to_string(), "b".to_string()].into());
        assert_eq!(
            names(&sub.diff(&s, URL)),
            ["b"],
            "b left and came back: resent"
        );
    }

    #[test]
    fn initial_versions_and_turning_the_wildcard_on() {
        let s = Arc::new(snapshot("1", &[("a", 1), ("b", 1)]));
        let mut sub = TypeSubscription::default();
        sub.set_names(URL, false, ["a".to_string(), "gone".to_string()].into());
        let held = sub.diff(&s, URL).changed[0].version.clone();
        sub.set_initial(
            &[
                ("a".to_string(), held),
                ("gone".to_string(), "v".to_string()),
            ]
            .into(),
        );
        let d = sub.diff(&s, URL);
        assert!(d.changed.is_empty());
        assert_eq!(d.removed, ["gone"]);
        sub.mark_sent(&s);
        sub.set_names(URL, true, ["a".to_string(), "gone".to_string()].into());
        assert_eq!(names(&sub.diff(&s, URL)), ["b"]);
    }
}
