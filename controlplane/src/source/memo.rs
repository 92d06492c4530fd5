//! Results of costly, pure functions of a resource's content, kept from one load to the next.
//!
//! A change to one endpoint rewrites (at least) one file, and every load parses and checks
//! every resource again: turning a resource's JSON into its protobuf goes through the
//! reflection descriptors, and so does validating it, about 0.4 ms per resource; for a
//! 2,000-resource directory that was most of a reload. Both depend only on the resource's
//! content, so a load looks them up by that content (the exact text or bytes, never a hash
//! that could collide) and computes only what changed.
//!
//! Only what the last load used is kept: each load moves the entries it uses from the
//! previous generation to the current one, and the rest is dropped when the next starts.

use std::collections::HashMap;
use std::hash::Hash;

use xds_types::Any;

/// One function's memo, by exact key.
#[derive(Debug)]
pub struct Memo<K, V> {
    previous: HashMap<K, V>,
    current: HashMap<K, V>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            previous: HashMap::new(),
            current: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    /// The value for `key`, computed by `f` only when no load since the previous one has it.
    /// Errors are not kept (they are rare, and their messages name the file they are in).
    pub fn get_or_try<E>(&mut self, key: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        if let Some(v) = self.current.get(&key) {
            return Ok(v.clone());
        }
        let v = match self.previous.remove(&key) {
            Some(v) => v,
            None => f()?,
        };
        self.current.insert(key, v.clone());
        Ok(v)
    }

    /// A new load starts: what the load before the last did not use is dropped.
    pub fn rotate(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    #[cfg(test)]
    fn entries(&self) -> usize {
        self.previous.len() + self.current.len()
    }
}

/// What a source keeps from one load to the next.
#[derive(Debug, Default)]
pub struct Memos {
    /// A resource's JSON text (serde_json's rendering of the parsed value, so YAML and JSON
    /// of the same content meet) to its protobuf.
    pub parsed: Memo<String, Any>,
    /// A resource (type URL and bytes) that passed the API's validation rules.
    pub validated: Memo<(String, Vec<u8>), ()>,
}

impl Memos {
    pub fn rotate(&mut self) {
        self.parsed.rotate();
        self.validated.rotate();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_and_keeps_only_what_the_last_load_used() {
        let mut memo: Memo<String, u32> = Memo::default();
        let mut calls = 0;
        let mut get = |memo: &mut Memo<String, u32>, k: &str| {
            memo.get_or_try::<()>(k.to_string(), || {
                calls += 1;
                Ok(k.len() as u32)
            })
            .unwrap()
        };
        assert_eq!(get(&mut memo, "ab"), 2);
        assert_eq!(get(&mut memo, "ab"), 2);
        assert_eq!(get(&mut memo, "abc"), 3);
        memo.rotate();
        // The next load uses "ab" only: "abc" is dropped when the one after starts.
        assert_eq!(get(&mut memo, "ab"), 2);
        memo.rotate();
        assert_eq!(memo.entries(), 1);
        assert_eq!(get(&mut memo, "abc"), 3);
        assert_eq!(calls, 3, "ab once, abc twice (dropped in between)");
        let failed: Result<u32, &str> = memo.get_or_try("x".into(), || Err("bad"));
        assert_eq!(failed, Err("bad"));
        assert_eq!(memo.entries(), 2, "errors are not kept");
    }
}
