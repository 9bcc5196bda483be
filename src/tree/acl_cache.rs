//! Reference-counted ACL lists, shared between nodes as ZooKeeper's ACL cache does.
//!
//! Owns: the map between an ACL list and its `long` id. Snapshots store this map and each
//! node's id (see the durability work); `-1` is the open ACL (world:anyone, all perms), as in
//! ZooKeeper. Pure.

use crate::jute::records::{Acl, Id};
use std::collections::HashMap;
use std::sync::Arc;

pub const OPEN_ACL_ID: i64 = -1;

pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const CREATE: i32 = 4;
    pub const DELETE: i32 = 8;
    pub const ADMIN: i32 = 16;
    pub const ALL: i32 = 31;
}

pub fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id::new("world", "anyone"),
    }]
}

pub fn read_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::READ,
        id: Id::new("world", "anyone"),
    }]
}

#[derive(Default)]
pub struct AclCache {
    by_id: HashMap<i64, (Arc<Vec<Acl>>, u64)>,
    by_list: HashMap<Vec<Acl>, i64>,
    next_id: i64,
    open: Arc<Vec<Acl>>,
}

impl AclCache {
    pub fn new() -> Self {
        AclCache {
            next_id: 1,
            open: Arc::new(open_acl()),
            ..Default::default()
        }
    }

    /// Takes a reference on `acl`, returning its id.
    pub fn acquire(&mut self, acl: &[Acl]) -> i64 {
        if acl == self.open.as_slice() {
            return OPEN_ACL_ID;
        }
        if let Some(&id) = self.by_list.get(acl) {
            self.by_id.get_mut(&id).expect("acl cache maps agree").1 += 1;
            return id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_list.insert(acl.to_vec(), id);
        self.by_id.insert(id, (Arc::new(acl.to_vec()), 1));
        id
    }

    /// Drops a reference taken by [`AclCache::acquire`].
    pub fn release(&mut self, id: i64) {
        if id == OPEN_ACL_ID {
            return;
        }
        if let Some(entry) = self.by_id.get_mut(&id) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                let (list, _) = self.by_id.remove(&id).expect("present");
                if self.by_list.get(list.as_slice()) == Some(&id) {
                    self.by_list.remove(list.as_slice());
                }
            }
        }
    }

    pub fn get(&self, id: i64) -> Arc<Vec<Acl>> {
        if id == OPEN_ACL_ID {
            return self.open.clone();
        }
        self.by_id
            .get(&id)
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| self.open.clone())
    }

    /// Every cached list with its id (not the implicit open ACL), by id.
    pub fn entries(&self) -> Vec<(i64, Arc<Vec<Acl>>)> {
        let mut v: Vec<_> = self
            .by_id
            .iter()
            .map(|(id, (l, _))| (*id, l.clone()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Adds a list read from a snapshot under its own id, with no references yet.
    pub fn load(&mut self, id: i64, acl: Vec<Acl>) {
        if id == OPEN_ACL_ID {
            return;
        }
        self.by_list.entry(acl.clone()).or_insert(id);
        self.by_id.insert(id, (Arc::new(acl), 0));
        self.next_id = self.next_id.max(id + 1);
    }

    /// Counts a reference from a node read from a snapshot; false if the id is unknown.
    pub fn add_usage(&mut self, id: i64) -> bool {
        if id == OPEN_ACL_ID {
            return true;
        }
        match self.by_id.get_mut(&id) {
            Some(e) => {
                e.1 += 1;
                true
            }
            None => false,
        }
    }

    /// Drops lists no node uses (after loading a snapshot).
    pub fn purge_unused(&mut self) {
        let unused: Vec<i64> = self
            .by_id
            .iter()
            .filter(|(_, (_, n))| *n == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in unused {
            if let Some((list, _)) = self.by_id.remove(&id) {
                if self.by_list.get(list.as_slice()) == Some(&id) {
                    self.by_list.remove(list.as_slice());
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_frees() {
        let mut c = AclCache::new();
        assert_eq!(c.acquire(&open_acl()), OPEN_ACL_ID);
        let a = c.acquire(&read_acl());
        let b = c.acquire(&read_acl());
        assert_eq!(a, b);
        c.release(a);
        assert_eq!(c.len(), 1);
        c.release(b);
        assert!(c.is_empty());
    }
}
