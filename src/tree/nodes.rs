//! The node map, split into shards so that no single resize stalls the server.
//!
//! Owns: path → [`Node`] storage. A `HashMap` doubles its table in one go; with a million
//! nodes that is a rehash of everything, hundreds of milliseconds in which no request is
//! served. With 64 shards each resize moves 1/64 of the nodes. Pure.
//!
//! Memory: a hash table is between 44 % and 87 % full, so every byte of a slot costs about
//! 1.6 bytes. A slot is therefore small — the path as a `Box<str>` (16 bytes) and the node
//! behind a `Box` (8) — instead of a `String` and the whole 136-byte `Node` inline, which
//! cost about 80 bytes more per znode at a million znodes.

use super::Node;
use ahash::RandomState;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

const SHARDS: usize = 64;

pub struct NodeMap {
    /// Keyed hashing (ahash, randomly seeded per process): paths come from clients.
    shards: Vec<HashMap<Box<str>, Box<Node>, RandomState>>,
    picker: RandomState,
    len: usize,
}

impl Default for NodeMap {
    fn default() -> Self {
        NodeMap {
            shards: (0..SHARDS)
                .map(|_| HashMap::with_hasher(RandomState::new()))
                .collect(),
            picker: RandomState::new(),
            len: 0,
        }
    }
}

impl NodeMap {
    fn shard(&self, p: &str) -> usize {
        (self.picker.hash_one(p) as usize) % SHARDS
    }

    pub fn get(&self, p: &str) -> Option<&Node> {
        self.shards[self.shard(p)].get(p).map(|n| &**n)
    }

    pub fn get_mut(&mut self, p: &str) -> Option<&mut Node> {
        let s = self.shard(p);
        self.shards[s].get_mut(p).map(|n| &mut **n)
    }

    pub fn contains_key(&self, p: &str) -> bool {
        self.get(p).is_some()
    }

    pub fn insert(&mut self, p: String, n: Node) -> Option<Node> {
        let s = self.shard(&p);
        match self.shards[s].entry(p.into_boxed_str()) {
            Entry::Occupied(mut o) => Some(std::mem::replace(&mut **o.get_mut(), n)),
            Entry::Vacant(v) => {
                v.insert(Box::new(n));
                self.len += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, p: &str) -> Option<Node> {
        let s = self.shard(p);
        let n = self.shards[s].remove(p).map(|n| *n);
        if n.is_some() {
            self.len -= 1;
        }
        n
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
