//! The node map, split into shards so that no single resize stalls the server.
//!
//! Owns: path → [`Node`] storage. A hash table doubles in one go; with a million nodes that
//! is a rehash of everything, hundreds of milliseconds in which no request is served. With
//! 64 shards each resize moves 1/64 of the nodes. Pure.
//!
//! One keyed hash (ahash, randomly seeded per process: paths come from clients) per lookup:
//! bits 51..56 pick the shard, and the shard's table (hashbrown's `HashTable`, which takes
//! the hash from us) uses the low bits for the bucket and the top seven for its tags, so the
//! three never overlap.
//!
//! Memory: a hash table is between 44 % and 87 % full, so every byte of a slot costs about
//! 1.6 bytes. A slot is therefore small — the path as a `Box<str>` (16 bytes) and the node
//! behind a `Box` (8) — instead of a `String` and the whole 136-byte `Node` inline, which
//! cost about 80 bytes more per znode at a million znodes.

use super::Node;
use ahash::RandomState;
use hashbrown::hash_table::{Entry, HashTable};

const SHARDS: usize = 64;
const SHARD_SHIFT: u32 = 51;

type Slot = (Box<str>, Box<Node>);

pub struct NodeMap {
    shards: Vec<HashTable<Slot>>,
    hasher: RandomState,
    len: usize,
}

impl Default for NodeMap {
    fn default() -> Self {
        NodeMap {
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
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

impl NodeMap {
    pub fn get(&self, p: &str) -> Option<&Node> {
        let h = hash(&self.hasher, p);
        self.shards[shard(h)]
            .find(h, |(k, _)| **k == *p)
            .map(|(_, n)| &**n)
    }

    pub fn get_mut(&mut self, p: &str) -> Option<&mut Node> {
        let h = hash(&self.hasher, p);
        self.shards[shard(h)]
            .find_mut(h, |(k, _)| **k == *p)
            .map(|(_, n)| &mut **n)
    }

    pub fn contains_key(&self, p: &str) -> bool {
        self.get(p).is_some()
    }

    pub fn insert(&mut self, p: String, n: Node) -> Option<Node> {
        let h = hash(&self.hasher, &p);
        let hasher = &self.hasher;
        let rehash = |(k, _): &Slot| hash(hasher, k);
        match self.shards[shard(h)].entry(h, |(k, _)| **k == *p, rehash) {
            Entry::Occupied(mut o) => Some(std::mem::replace(&mut *o.get_mut().1, n)),
            Entry::Vacant(v) => {
                v.insert((p.into_boxed_str(), Box::new(n)));
                self.len += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, p: &str) -> Option<Node> {
        let h = hash(&self.hasher, p);
        let found = self.shards[shard(h)]
            .find_entry(h, |(k, _)| **k == *p)
            .ok()?;
        let ((_, n), _) = found.remove();
        self.len -= 1;
        Some(*n)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, n)| (&**k, &**n)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
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
            children: Default::default(),
            digest: 0,
        };
        n.stat.version = version;
        n
    }

    #[test]
    fn insert_get_replace_remove_across_shards_and_resizes() {
        let mut m = NodeMap::default();
        for i in 0..20_000 {
            assert!(m.insert(format!("/n{i}"), node(i)).is_none());
        }
        assert_eq!(m.len(), 20_000);
        assert_eq!(
            m.insert("/n7".into(), node(-7)).map(|n| n.stat.version),
            Some(7)
        );
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
}
