//! A hash map split into shards, for the maps that grow with every new customer under a
//! lock every webhook waits on.
//!
//! A `HashMap` grows by moving every entry into a table twice the size at once: at
//! 114 688 entries of a customer's pseudonym and a small value that one insert took
//! 29 ms, at 229 376 61 ms, and every webhook of the process waited behind the lock
//! meanwhile (the paced ingest's slowest moments). Split into [`SHARDS`] maps, an insert
//! grows one shard, a sixty-fourth of the entries.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Shards of a map; a power of two.
const SHARDS: usize = 64;

type Shard<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub(crate) struct Sharded<K, V> {
    shards: Vec<Shard<K, V>>,
    /// Picks a key's shard; seeded apart from the shards' own hashers, so that the keys of
    /// one shard still spread over its buckets.
    pick: foldhash::fast::RandomState,
    len: usize,
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            pick: foldhash::fast::RandomState::default(),
            len: 0,
        }
    }
}

impl<K: Eq + Hash, V> Sharded<K, V> {
    fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // The high bits: a multiplicative hash mixes them best.
        (self.pick.hash_one(key) >> (u64::BITS - SHARDS.trailing_zeros())) as usize
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.shard_of(key)].get(key)
    }

    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard_of(key);
        self.shards[shard].get_mut(key)
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get(key).is_some()
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let shard = self.shard_of(&key);
        let old = self.shards[shard].insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard_of(key);
        let old = self.shards[shard].remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every entry, shard after shard.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    /// Some `n` of the keys (whichever come first), to forget.
    pub(crate) fn some_keys(&self, n: usize) -> Vec<K>
    where
        K: Clone,
    {
        self.iter().map(|(key, _)| key).take(n).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_what_a_map_keeps() {
        let mut map = Sharded::default();
        for i in 0..10_000u32 {
            assert_eq!(map.insert(format!("customer-{i}"), i), None);
        }
        assert_eq!(map.insert("customer-7".to_owned(), 70), Some(7));
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.get("customer-7"), Some(&70));
        assert_eq!(map.get("customer-9999"), Some(&9999));
        assert!(!map.contains_key("customer-10000"));
        assert_eq!(map.remove("customer-7"), Some(70));
        assert_eq!(map.remove("customer-7"), None);
        assert_eq!(map.len(), 9_999);
        let some = map.some_keys(100);
        assert_eq!(some.len(), 100);
        assert!(some.iter().all(|key| map.contains_key(key.as_str())));
    }

    #[test]
    fn its_keys_spread_over_every_shard() {
        let mut map = Sharded::default();
        for i in 0..SHARDS as u32 * 64 {
            map.insert(i, ());
        }
        assert!(map.shards.iter().all(|shard| !shard.is_empty()));
    }
}
