//! Watches: who is told when a node changes. Standard watches fire once; persistent and
//! persistent-recursive watches (addWatch) stay until removed.
//!
//! Owns: the watch tables, keyed by path and by session (the watcher). Pure: a trigger
//! returns the sessions to notify; delivering the event is the caller's business.
//!
//! Rules, as in ZooKeeper's WatchManager and DataTree:
//! - getData/exists watches live in the data table, getChildren watches in the child table;
//! - NodeCreated, NodeDataChanged fire data watches on the path;
//! - NodeDeleted fires data and child watches on the path;
//! - NodeChildrenChanged fires child watches on the parent;
//! - a persistent watch on P sits in both tables; a recursive one on P fires for data-table
//!   events on P and every descendant, never for NodeChildrenChanged;
//! - one trigger notifies each session at most once.

use super::path;
use crate::proto::event;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The watch kinds a session can hold on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchKind {
    Data,
    Child,
    Persistent,
    Recursive,
}

/// removeWatches / checkWatches types (WatcherType).
pub mod watcher_type {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

#[derive(Default)]
pub struct Watches {
    tables: HashMap<(WatchKind, String), HashSet<i64>>,
    by_session: HashMap<i64, HashSet<(WatchKind, String)>>,
    recursive_count: usize,
}

impl Watches {
    pub fn add(&mut self, session: i64, kind: WatchKind, path: &str) {
        let key = (kind, path.to_string());
        if self.tables.entry(key.clone()).or_default().insert(session)
            && kind == WatchKind::Recursive
        {
            self.recursive_count += 1;
        }
        self.by_session.entry(session).or_default().insert(key);
    }

    /// How many watches `session` holds.
    pub fn held_by(&self, session: i64) -> usize {
        self.by_session.get(&session).map_or(0, HashSet::len)
    }

    /// Whether `session` holds a watch of `kind` on `path`.
    pub fn has(&self, session: i64, kind: WatchKind, path: &str) -> bool {
        self.by_session
            .get(&session)
            .is_some_and(|s| s.contains(&(kind, path.to_string())))
    }

    fn remove_one(&mut self, session: i64, kind: WatchKind, path: &str) -> bool {
        let key = (kind, path.to_string());
        let Some(set) = self.tables.get_mut(&key) else {
            return false;
        };
        if !set.remove(&session) {
            return false;
        }
        if set.is_empty() {
            self.tables.remove(&key);
        }
        if kind == WatchKind::Recursive {
            self.recursive_count -= 1;
        }
        if let Some(s) = self.by_session.get_mut(&session) {
            s.remove(&key);
            if s.is_empty() {
                self.by_session.remove(&session);
            }
        }
        true
    }

    fn kinds_for(watcher_type: i32) -> &'static [WatchKind] {
        use WatchKind::*;
        match watcher_type {
            watcher_type::CHILDREN => &[Child],
            watcher_type::DATA => &[Data],
            watcher_type::PERSISTENT => &[Persistent],
            watcher_type::PERSISTENT_RECURSIVE => &[Recursive],
            watcher_type::ANY => &[Data, Child, Persistent, Recursive],
            _ => &[],
        }
    }

    pub fn contains(&self, session: i64, watcher_type: i32, path: &str) -> bool {
        Self::kinds_for(watcher_type).iter().any(|k| {
            self.tables
                .get(&(*k, path.to_string()))
                .is_some_and(|s| s.contains(&session))
        })
    }

    /// removeWatches: true if anything was removed.
    pub fn remove(&mut self, session: i64, watcher_type: i32, path: &str) -> bool {
        let mut removed = false;
        for k in Self::kinds_for(watcher_type) {
            removed |= self.remove_one(session, *k, path);
        }
        removed
    }

    /// Forgets every watch of a closed session.
    pub fn remove_session(&mut self, session: i64) {
        if let Some(keys) = self.by_session.remove(&session) {
            for (kind, p) in keys {
                let key = (kind, p);
                if let Some(set) = self.tables.get_mut(&key) {
                    if set.remove(&session) && kind == WatchKind::Recursive {
                        self.recursive_count -= 1;
                    }
                    if set.is_empty() {
                        self.tables.remove(&key);
                    }
                }
            }
        }
    }

    /// Takes the one-shot watchers of `kind` on `path` and adds them to `out`.
    fn fire_standard(&mut self, kind: WatchKind, p: &str, out: &mut Vec<i64>) {
        if let Some(set) = self.tables.remove(&(kind, p.to_string())) {
            for s in set {
                if let Some(keys) = self.by_session.get_mut(&s) {
                    keys.remove(&(kind, p.to_string()));
                    if keys.is_empty() {
                        self.by_session.remove(&s);
                    }
                }
                out.push(s);
            }
        }
    }

    fn fire_lasting(&self, kind: WatchKind, p: &str, out: &mut Vec<i64>) {
        if let Some(set) = self.tables.get(&(kind, p.to_string())) {
            out.extend(set.iter().copied());
        }
    }

    /// The sessions to notify of `event_type` on `p`, in a stable order, each once.
    pub fn trigger(&mut self, p: &str, event_type: i32) -> Vec<i64> {
        let mut out = Vec::new();
        use WatchKind::*;
        match event_type {
            event::NODE_CHILDREN_CHANGED => {
                self.fire_standard(Child, p, &mut out);
                self.fire_lasting(Persistent, p, &mut out);
            }
            _ => {
                self.fire_standard(Data, p, &mut out);
                if event_type == event::NODE_DELETED {
                    self.fire_standard(Child, p, &mut out);
                }
                self.fire_lasting(Persistent, p, &mut out);
                if self.recursive_count > 0 {
                    let mut cur = p;
                    loop {
                        self.fire_lasting(Recursive, cur, &mut out);
                        if cur == "/" {
                            break;
                        }
                        cur = path::parent(cur);
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        out.retain(|s| seen.insert(*s));
        out
    }

    /// Number of (path, session) watch registrations, for `mntr` and `wchs`.
    pub fn count(&self) -> usize {
        self.tables.values().map(HashSet::len).sum()
    }

    /// The registrations `wchs` counts: as ZooKeeper's, whose `wch*` words read its data
    /// watch manager, every kind but child watches.
    pub fn data_count(&self) -> usize {
        self.tables
            .iter()
            .filter(|((k, _), _)| *k != WatchKind::Child)
            .map(|(_, set)| set.len())
            .sum()
    }

    /// Watched paths per session, sorted, for `wchc` (child watches left out, as there).
    pub fn by_session(&self) -> BTreeMap<i64, BTreeSet<&str>> {
        let mut m: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
        for (s, keys) in &self.by_session {
            let paths = keys
                .iter()
                .filter(|(k, _)| *k != WatchKind::Child)
                .map(|(_, p)| p.as_str());
            let e = m.entry(*s).or_default();
            e.extend(paths);
        }
        m.retain(|_, paths| !paths.is_empty());
        m
    }

    /// Watching sessions per path, sorted, for `wchp` (child watches left out, as there).
    pub fn by_path(&self) -> BTreeMap<&str, BTreeSet<i64>> {
        let mut m: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
        for ((k, p), set) in &self.tables {
            if *k != WatchKind::Child {
                m.entry(p.as_str()).or_default().extend(set.iter().copied());
            }
        }
        m.retain(|_, s| !s.is_empty());
        m
    }

    /// Paths with a watch other than a child watch (`wchs`).
    pub fn paths(&self) -> usize {
        self.tables
            .iter()
            .filter(|((k, _), set)| *k != WatchKind::Child && !set.is_empty())
            .map(|((_, p), _)| p)
            .collect::<HashSet<_>>()
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::event::*;

    #[test]
    fn standard_watches_fire_once() {
        let mut w = Watches::default();
        w.add(1, WatchKind::Data, "/a");
        assert_eq!(w.trigger("/a", NODE_DATA_CHANGED), vec![1]);
        assert!(w.trigger("/a", NODE_DATA_CHANGED).is_empty());
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn delete_fires_data_and_child_once_per_session() {
        let mut w = Watches::default();
        w.add(1, WatchKind::Data, "/a");
        w.add(1, WatchKind::Child, "/a");
        w.add(2, WatchKind::Child, "/a");
        let mut got = w.trigger("/a", NODE_DELETED);
        got.sort();
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn persistent_and_recursive() {
        let mut w = Watches::default();
        w.add(1, WatchKind::Persistent, "/a");
        w.add(2, WatchKind::Recursive, "/a");
        assert_eq!(w.trigger("/a", NODE_CHILDREN_CHANGED), vec![1]);
        assert_eq!(w.trigger("/a/b/c", NODE_CREATED), vec![2]);
        let mut got = w.trigger("/a", NODE_DATA_CHANGED);
        got.sort();
        assert_eq!(got, vec![1, 2]);
        assert!(w.remove(2, watcher_type::PERSISTENT_RECURSIVE, "/a"));
        assert!(w.trigger("/a/b", NODE_CREATED).is_empty());
        assert!(!w.remove(2, watcher_type::ANY, "/a"));
        w.remove_session(1);
        assert_eq!(w.count(), 0);
    }
}
