//! One stream's per-type state, kept in ADS order: the protocol state machines' and the
//! status registry's.
//!
//! A stream has four or five types. As a `HashMap<String, _>` they took ~1.2 KB per stream
//! (eight buckets for four entries), the key was allocated on every request to look it up,
//! and every push cloned and sorted the keys to answer in ADS order; the status's
//! `BTreeMap` node had room for eleven (1.4 KB). A list kept in that order does all of it
//! without allocating.

use serde::Serialize;
use xds_types::type_url;

/// States by type URL, in ADS order (CDS, EDS, LDS, RDS, SDS, then any other by name);
/// served as a JSON object.
#[derive(Debug, Clone)]
pub struct ByType<T>(Vec<(Box<str>, T)>);

impl<T> Default for ByType<T> {
    fn default() -> Self {
        ByType(Vec::new())
    }
}

/// Where a type URL sorts: its place in the ADS order, then its name.
fn rank(url: &str) -> (usize, &str) {
    let place = type_url::ALL
        .iter()
        .position(|a| *a == url)
        .unwrap_or(usize::MAX);
    (place, url)
}

impl<T> ByType<T> {
    fn find(&self, url: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| rank(k).cmp(&rank(url)))
    }

    /// The index of `url`'s state, added with `T::default()` if it has none yet.
    pub fn index_or_insert(&mut self, url: &str) -> usize
    where
        T: Default,
    {
        match self.find(url) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (url.into(), T::default()));
                i
            }
        }
    }

    /// `url`'s state, added with `T::default()` if it has none yet (the key is allocated only
    /// then).
    pub fn get_or_default(&mut self, url: &str) -> &mut T
    where
        T: Default,
    {
        let i = self.index_or_insert(url);
        &mut self.0[i].1
    }

    pub fn index(&self, url: &str) -> Option<usize> {
        self.find(url).ok()
    }

    pub fn get(&self, url: &str) -> Option<&T> {
        self.index(url).map(|i| &self.0[i].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }

    /// The type URL and state at `i` (indexes follow the ADS order).
    pub fn at_mut(&mut self, i: usize) -> (&str, &mut T) {
        let (url, state) = &mut self.0[i];
        (url, state)
    }
}

impl<T: Serialize> Serialize for ByType<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_kept_in_ads_order_once_each() {
        let mut types = ByType::<u32>::default();
        for url in [
            type_url::ROUTE,
            "type.googleapis.com/other.B",
            type_url::CLUSTER,
            "type.googleapis.com/other.A",
            type_url::LISTENER,
            type_url::ENDPOINT,
        ] {
            let i = types.index_or_insert(url);
            *types.at_mut(i).1 += 1;
        }
        let i = types.index_or_insert(type_url::CLUSTER);
        *types.at_mut(i).1 += 1;
        let order: Vec<(String, u32)> = (0..types.len())
            .map(|i| {
                let (url, n) = types.at_mut(i);
                (url.to_string(), *n)
            })
            .collect();
        assert_eq!(
            order,
            [
                (type_url::CLUSTER.to_string(), 2),
                (type_url::ENDPOINT.to_string(), 1),
                (type_url::LISTENER.to_string(), 1),
                (type_url::ROUTE.to_string(), 1),
                ("type.googleapis.com/other.A".to_string(), 1),
                ("type.googleapis.com/other.B".to_string(), 1),
            ]
        );
        assert_eq!(types.get(type_url::SECRET), None);
        assert_eq!(types.index(type_url::LISTENER), Some(2));
    }
}
