//! The node map, split into shards so that no single resize stalls the server, and
//! copy-on-write so that a frozen view of it costs nothing to take.
//!
//! Owns: path → value storage (the tree keeps [`Node`]s in one map and child-name sets in
//! another). Pure.
//!
//! Shards: a hash table doubles in one go; with a million nodes that is a rehash of
//! everything, hundreds of milliseconds in which no request is served. With 64 shards each
//! resize moves 1/64 of the nodes.
//!
//! One keyed hash (ahash, randomly seeded per process: paths come from clients) per lookup:
//! bits 51..56 pick the shard, and the shard's table (hashbrown's `HashTable`, which takes
//! the hash from us) uses the low bits for the bucket and the top seven for its tags, so the
//! three never overlap.
//!
//! Copy-on-write: each shard sits behind an `Arc`, each value behind another. [`ShardMap::freeze`]
//! clones the 64 shard pointers: a [`Frozen`] view that never changes, for another thread
//! to serialize (a SNAP, a snapshot file). While a view is alive, the first change to a
//! shard copies that shard's slots (pointers only: a key and a value pointer, about 1/64 of
//! the map, well under a millisecond at a million nodes), and the first change to a value
//! copies that one value. Once the view is dropped nothing is copied again. Values must
//! therefore be cheap to clone: node data is a `Bytes`, and child-name sets live in a map
//! that is never frozen.
//!
//! Memory: a hash table is between 44 % and 87 % full, so every byte of a slot costs about
//! 1.6 bytes. A slot is therefore small: the path as an `Arc<str>` (16 bytes) and the value
//! behind an `Arc` (8).

use super::Node;
use ahash::RandomState;
use hashbrown::hash_table::{Entry, HashTable};
use std::sync::Arc;

const SHARDS: usize = 64;
const SHARD_SHIFT: u32 = 51;

type Slot<V> = (Arc<str>, Arc<V>);
type Shard<V> = Arc<HashTable<Slot<V>>>;

pub struct ShardMap<V> {
    shards: Vec<Shard<V>>,
    hasher: RandomState,
    len: usize,
}

/// The map of nodes by path.
pub type NodeMap = ShardMap<Node>;

impl<V> Default for ShardMap<V> {
    fn default() -> Self {
        ShardMap {
            shards: (0..SHARDS).map(|_| Arc::new(HashTable::new())).collect(),
            hasher: RandomState::new(),
            len: 0,
        }
    }
}

fn hash(hasher: &RandomState, p: &str) -> u64 {
    hasher.hash_one(p)
}

fn shard(h: u64) -> usize {
    (h >> SHARD_SHIFT) as usize % SHARDS
}

impl<V: Clone> ShardMap<V> {
    pub fn get(&self, p: &str) -> Option<&V> {
        let h = hash(&self.hasher, p);
        self.shards[shard(h)]
            .find(h, |(k, _)| **k == *p)
            .map(|(_, n)| &**n)
    }

    /// The value at `p`, for change: its shard and the value itself are copied first if a
    /// frozen view still shares them.
    pub fn get_mut(&mut self, p: &str) -> Option<&mut V> {
        let h = hash(&self.hasher, p);
        let s = &mut self.shards[shard(h)];
        // Look before copying: a miss must not copy a shard.
        s.find(h, |(k, _)| **k == *p)?;
        Arc::make_mut(s)
            .find_mut(h, |(k, _)| **k == *p)
            .map(|(_, n)| Arc::make_mut(n))
    }

    pub fn contains_key(&self, p: &str) -> bool {
        self.get(p).is_some()
    }

    pub fn insert(&mut self, p: &str, n: V) -> Option<V> {
        let h = hash(&self.hasher, p);
        let hasher = &self.hasher;
        let rehash = |(k, _): &Slot<V>| hash(hasher, k);
        let s = Arc::make_mut(&mut self.shards[shard(h)]);
        match s.entry(h, |(k, _)| **k == *p, rehash) {
            Entry::Occupied(mut o) => {
                let old = std::mem::replace(&mut o.get_mut().1, Arc::new(n));
                Some(Arc::unwrap_or_clone(old))
            }
            Entry::Vacant(v) => {
                v.insert((Arc::from(p), Arc::new(n)));
                self.len += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, p: &str) -> Option<V> {
        let h = hash(&self.hasher, p);
        let s = &mut self.shards[shard(h)];
        s.find(h, |(k, _)| **k == *p)?;
        let found = Arc::make_mut(s).find_entry(h, |(k, _)| **k == *p).ok()?;
        let ((_, n), _) = found.remove();
        self.len -= 1;
        Some(Arc::unwrap_or_clone(n))
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, n)| (&**k, &**n)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// A view of the map as it is now, unchanged by later changes to the map (see the
    /// module doc for what that costs).
    pub fn freeze(&self) -> Frozen<V> {
        Frozen {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

/// A frozen view of a [`ShardMap`]: `Send` and `Sync` when the values are, so another
/// thread can walk it while the map keeps changing.
pub struct Frozen<V> {
    shards: Vec<Shard<V>>,
    len: usize,
}

impl<V> Frozen<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, n)| (&**k, &**n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(version: i32) -> Node {
        let mut n = Node {
            data: None,
            acl: -1,
            stat: Default::default(),
            child_count: 0,
            digest: 0,
        };
        n.stat.version = version;
        n
    }

    #[test]
    fn insert_get_replace_remove_across_shards_and_resizes() {
        let mut m = NodeMap::default();
        for i in 0..20_000 {
            assert!(m.insert(&format!("/n{i}"), node(i)).is_none());
        }
        assert_eq!(m.len(), 20_000);
        assert_eq!(m.insert("/n7", node(-7)).map(|n| n.stat.version), Some(7));
        assert_eq!(m.get("/n7").map(|n| n.stat.version), Some(-7));
        m.get_mut("/n8").unwrap().stat.version = 88;
        assert_eq!(m.get("/n8").map(|n| n.stat.version), Some(88));
        for i in (0..20_000).step_by(2) {
            assert!(m.remove(&format!("/n{i}")).is_some());
        }
        assert!(m.remove("/n0").is_none());
        assert_eq!(m.len(), 10_000);
        assert!(m.contains_key("/n19999") && !m.contains_key("/n19998"));
        assert_eq!(m.iter().count(), 10_000);
        // Every shard is used: the shard bits are independent of the bucket bits.
        let used = m.shards.iter().filter(|s| !s.is_empty()).count();
        assert_eq!(used, SHARDS);
    }

    #[test]
    fn a_frozen_view_keeps_what_it_saw_while_the_map_changes() {
        let mut m = NodeMap::default();
        for i in 0..1_000 {
            m.insert(&format!("/n{i}"), node(i));
        }
        let view = m.freeze();
        m.get_mut("/n1").unwrap().stat.version = -1;
        m.remove("/n2");
        m.insert("/new", node(5));
        m.insert("/n3", node(33));
        let seen: std::collections::HashMap<&str, i32> =
            view.iter().map(|(k, n)| (k, n.stat.version)).collect();
        assert_eq!(view.len(), 1_000);
        assert_eq!(seen.len(), 1_000);
        assert_eq!((seen["/n1"], seen["/n2"], seen["/n3"]), (1, 2, 3));
        assert!(!seen.contains_key("/new"));
        assert_eq!(m.get("/n1").unwrap().stat.version, -1);
        assert_eq!(m.get("/n3").unwrap().stat.version, 33);
        assert!(m.get("/n2").is_none());
        // Once the view is gone, changes are made in place again.
        drop(view);
        let before = Arc::as_ptr(&m.shards[0]);
        for i in 0..1_000 {
            if let Some(n) = m.get_mut(&format!("/n{i}")) {
                n.stat.version += 1;
            }
        }
        assert_eq!(Arc::as_ptr(&m.shards[0]), before);
    }
}
