//! Subscribed names, shared by every stream that subscribed to the same set.
//!
//! A proxy subscribes to the EDS names of all its clusters and the RDS names of all its
//! listeners, and the proxies of one node group subscribe to the same sets: 10,000 proxies of
//! a 1,000-cluster group hold one set of 1,000 names, not 10,000 copies (each copy was ~70 KB
//! with its tree nodes and strings, and the status registry held another). A set is looked up
//! by its contents when a stream's subscription changes (rare: a stream's first request, then
//! cluster or listener changes), never on the ACK path.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// An immutable, shared set of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names(Arc<BTreeSet<String>>);

impl Default for Names {
    fn default() -> Self {
        static EMPTY: LazyLock<Names> = LazyLock::new(|| Names(Arc::default()));
        EMPTY.clone()
    }
}

impl Deref for Names {
    type Target = BTreeSet<String>;
    fn deref(&self) -> &BTreeSet<String> {
        &self.0
    }
}

impl serde::Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

/// Live sets by a hash of their contents. Entries whose sets are gone are swept as the table
/// grows, so it holds about as many entries as there are distinct live sets.
struct Table {
    sets: HashMap<u64, Vec<Weak<BTreeSet<String>>>>,
    /// Sweep when the table holds this many entries.
    sweep_at: usize,
}

static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        sets: HashMap::new(),
        sweep_at: 1024,
    })
});

/// The hasher of set contents: fixed keys, so equal sets always meet in one bucket.
static HASHER: LazyLock<std::hash::RandomState> = LazyLock::new(std::hash::RandomState::new);

impl Names {
    /// The shared set equal to `names`, or `names` made the shared one.
    pub fn intern(names: BTreeSet<String>) -> Names {
        if names.is_empty() {
            return Names::default();
        }
        let hash = {
            let mut h = HASHER.build_hasher();
            names.hash(&mut h);
            std::hash::Hasher::finish(&h)
        };
        let mut table = TABLE.lock().unwrap_or_else(|p| p.into_inner());
        let entries = table.sets.len();
        let sweep = entries >= table.sweep_at;
        let set = match table.sets.entry(hash) {
            Entry::Occupied(mut e) => {
                let bucket = e.get_mut();
                bucket.retain(|w| w.strong_count() > 0);
                match bucket
                    .iter()
                    .filter_map(Weak::upgrade)
                    .find(|s| **s == names)
                {
                    Some(set) => set,
                    None => {
                        let set = Arc::new(names);
                        bucket.push(Arc::downgrade(&set));
                        set
                    }
                }
            }
            Entry::Vacant(e) => {
                let set = Arc::new(names);
                e.insert(vec![Arc::downgrade(&set)]);
                set
            }
        };
        if sweep {
            table.sets.retain(|_, sets| {
                sets.retain(|w| w.strong_count() > 0);
                !sets.is_empty()
            });
            table.sweep_at = (table.sets.len() * 2).max(1024);
        }
        Names(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn equal_sets_are_one_set_and_unequal_ones_are_not() {
        let a = Names::intern(set(&["x", "y"]));
        let b = Names::intern(set(&["y", "x"]));
        let c = Names::intern(set(&["x"]));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert!(!Arc::ptr_eq(&a.0, &c.0));
        assert_eq!(c.iter().collect::<Vec<_>>(), ["x"]);
        assert!(Names::intern(BTreeSet::new()).is_empty());
    }

    #[test]
    fn a_set_nobody_holds_is_made_again() {
        let a = Names::intern(set(&["only-here"]));
        let weak = Arc::downgrade(&a.0);
        drop(a);
        assert!(weak.upgrade().is_none());
        let b = Names::intern(set(&["only-here"]));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn serializes_as_a_list() {
        let a = Names::intern(set(&["b", "a"]));
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"["a","b"]"#);
    }
}
