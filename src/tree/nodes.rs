//! The node map, split into shards so that no single resize stalls the server.
//!
//! Owns: path → [`Node`] storage. A `HashMap` doubles its table in one go; with a million
//! nodes that is a rehash of everything, hundreds of milliseconds in which no request is
//! served. With 64 shards each resize moves 1/64 of the nodes. Pure.

use super::Node;
use ahash::RandomState;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

const SHARDS: usize = 64;

pub struct NodeMap {
    /// Keyed hashing (ahash, randomly seeded per process): paths come from clients.
    shards: Vec<HashMap<String, Node, RandomState>>,
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
        self.shards[self.shard(p)].get(p)
    }

    pub fn get_mut(&mut self, p: &str) -> Option<&mut Node> {
        let s = self.shard(p);
        self.shards[s].get_mut(p)
    }

    pub fn contains_key(&self, p: &str) -> bool {
        self.get(p).is_some()
    }

    pub fn insert(&mut self, p: String, n: Node) -> Option<Node> {
        let s = self.shard(&p);
        match self.shards[s].entry(p) {
            Entry::Occupied(mut o) => Some(o.insert(n)),
            Entry::Vacant(v) => {
                v.insert(n);
                self.len += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, p: &str) -> Option<Node> {
        let s = self.shard(p);
        let n = self.shards[s].remove(p);
        if n.is_some() {
            self.len -= 1;
        }
        n
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.iter().map(|(k, _)| k)
    }
}
