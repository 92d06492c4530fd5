//! Subscribed names, shared by every stream that subscribed to the same set.
//!
//! A proxy subscribes to the EDS names of all its clusters and the RDS names of all its
//! listeners, and the proxies of one node group subscribe to the same sets: 10,000 proxies of
//! a 1,000-cluster group hold one set of 1,000 names, not 10,000 copies (each copy was ~70 KB
//! with its tree nodes and strings, and the status registry held another). A set is looked up
//! by its contents when a stream's subscription changes (rare: a stream's first request, then
//! cluster or listener changes), never on the ACK path.
//!
//! A set also keeps the order in which a SotW request first listed it: every SotW ACK repeats
//! the whole list, and an ACK listing the same names in that same order is recognized by one
//! pass of comparisons instead of a sort (see [`Names::is_listed_as`]).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};

/// An immutable, shared set of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names(Arc<NameSet>);

#[derive(Debug)]
struct NameSet {
    names: BTreeSet<String>,
    /// The names as a SotW request listed them (order, repeats and `*` included), recorded by
    /// the first stream that asks.
    listed: OnceLock<Box<[Box<[u8]>]>>,
}

impl PartialEq for NameSet {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

impl Eq for NameSet {}

impl Default for Names {
    fn default() -> Self {
        static EMPTY: LazyLock<Names> =
            LazyLock::new(|| Names(Arc::new(NameSet::new(BTreeSet::new()))));
        EMPTY.clone()
    }
}

impl Deref for Names {
    type Target = BTreeSet<String>;
    fn deref(&self) -> &BTreeSet<String> {
        &self.0.names
    }
}

impl serde::Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.names.iter())
    }
}

impl NameSet {
    fn new(names: BTreeSet<String>) -> Self {
        NameSet {
            names,
            listed: OnceLock::new(),
        }
    }
}

impl Names {
    /// Whether `requested` is the very list recorded by [`Names::record_listing`]: then it
    /// names exactly this set. `false` says nothing (another order, or none recorded).
    pub fn is_listed_as<'a>(&self, requested: impl ExactSizeIterator<Item = &'a [u8]>) -> bool {
        self.0.listed.get().is_some_and(|listed| {
            listed.len() == requested.len() && listed.iter().zip(requested).all(|(a, b)| **a == *b)
        })
    }

    /// Records `requested`, a request's list that names exactly this set, unless a list was
    /// recorded already (the set is shared: the first one stays).
    pub fn record_listing<'a>(&self, requested: impl Iterator<Item = &'a [u8]>) {
        if self.0.names.is_empty() || self.0.listed.get().is_some() {
            return;
        }
        let _ = self.0.listed.set(requested.map(Box::from).collect());
    }
}

/// Live sets by a hash of their contents. Entries whose sets are gone are swept as the table
/// grows, so it holds about as many entries as there are distinct live sets.
struct Table {
    sets: HashMap<u64, Vec<Weak<NameSet>>>,
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
                    .find(|s| s.names == names)
                {
                    Some(set) => set,
                    None => {
                        let set = Arc::new(NameSet::new(names));
                        bucket.push(Arc::downgrade(&set));
                        set
                    }
                }
            }
            Entry::Vacant(e) => {
                let set = Arc::new(NameSet::new(names));
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
    fn the_first_listing_recorded_is_the_one_recognized() {
        let a = Names::intern(set(&["listed-x", "listed-y"]));
        let list = |l: &[&'static str]| l.iter().map(|s| s.as_bytes()).collect::<Vec<_>>();
        assert!(!a.is_listed_as(list(&["listed-y", "listed-x"]).into_iter()));
        a.record_listing(list(&["listed-y", "listed-x", "listed-y"]).into_iter());
        a.record_listing(list(&["listed-x", "listed-y"]).into_iter());
        // Shared: a stream that interns the same set sees the listing.
        let b = Names::intern(set(&["listed-y", "listed-x"]));
        assert!(b.is_listed_as(list(&["listed-y", "listed-x", "listed-y"]).into_iter()));
        assert!(!b.is_listed_as(list(&["listed-x", "listed-y"]).into_iter()));
        assert!(!b.is_listed_as(list(&["listed-y", "listed-x"]).into_iter()));
        // The empty set (shared by every wildcard subscription) records nothing.
        Names::default().record_listing(list(&["*"]).into_iter());
        assert!(!Names::default().is_listed_as(list(&["*"]).into_iter()));
    }

    #[test]
    fn serializes_as_a_list() {
        let a = Names::intern(set(&["b", "a"]));
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"["a","b"]"#);
    }
}
