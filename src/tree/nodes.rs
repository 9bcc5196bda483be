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
//! Copy-on-write: each shard's table sits behind an `Arc`. [`ShardMap::freeze`] clones the
//! 64 shard pointers: a [`Frozen`] view that never changes, for another thread to serialize
//! (a SNAP, a snapshot file). While a view shares a shard's table, changes to that shard go
//! to the shard's *overlay* instead: a small table of the paths changed since the freeze,
//! each with its new value or a tombstone. Reads look in the overlay first. Nothing is
//! copied when a view is taken or while it lives but the values changed, one at a time.
//! Once the view is gone, the next change to a shard moves its overlay into the table
//! (work in proportion to what changed, not to the map).
//!
//! (The earlier design copied a shared table on its first change. The copy itself is small,
//! but cloning each slot touches the reference counts of every key and value in the shard,
//! one cache miss each: at four million nodes the 64 copies right after a freeze stalled
//! the core for half a second.)
//!
//! Two views at once (a snapshot and a SNAP to a learner): a freeze finds no overlay left
//! unless a view still shares its shard, and then copies that shard the old way before
//! merging, so that the new view sees the overlay's changes.
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
type Table<V> = Arc<HashTable<Slot<V>>>;
/// A change made while a view shared the table: the path's hash, the path, and its new
/// value (`None`: removed).
type Change<V> = (u64, Arc<str>, Option<Arc<V>>);

struct Shard<V> {
    table: Table<V>,
    overlay: HashTable<Change<V>>,
}

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
            shards: (0..SHARDS)
                .map(|_| Shard {
                    table: Arc::new(HashTable::new()),
                    overlay: HashTable::new(),
                })
                .collect(),
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

impl<V: Clone> Shard<V> {
    /// The table, for change in place, when no view shares it; the overlay is merged first.
    fn settled(&mut self, hasher: &RandomState) -> Option<&mut HashTable<Slot<V>>> {
        let table = Arc::get_mut(&mut self.table)?;
        if !self.overlay.is_empty() {
            merge(table, &mut self.overlay, hasher);
        }
        Some(table)
    }

    /// Copies a table a view still shares (each slot's key and value pointer), so that the
    /// overlay can be merged into the copy.
    fn unshare(&mut self, hasher: &RandomState) {
        Arc::make_mut(&mut self.table);
        self.settled(hasher);
    }

    fn overlay_find(&self, h: u64, p: &str) -> Option<&Change<V>> {
        if self.overlay.is_empty() {
            return None;
        }
        self.overlay.find(h, |(_, k, _)| **k == *p)
    }

    fn table_find(&self, h: u64, p: &str) -> Option<&Slot<V>> {
        self.table.find(h, |(k, _)| **k == *p)
    }

    fn get(&self, h: u64, p: &str) -> Option<&V> {
        match self.overlay_find(h, p) {
            Some((_, _, v)) => v.as_deref(),
            None => self.table_find(h, p).map(|(_, n)| &**n),
        }
    }

    /// Records a change while the table is shared: `v` is the path's new value, or `None`
    /// to remove it. Returns the value it had.
    fn shadow(&mut self, h: u64, p: &str, v: Option<Arc<V>>) -> Option<V> {
        if let Ok(mut o) = self.overlay.find_entry(h, |(_, k, _)| **k == *p) {
            let old = std::mem::replace(&mut o.get_mut().2, v);
            if o.get().2.is_none() && self.table.find(h, |(k, _)| **k == *p).is_none() {
                // Neither in the table nor changed any more: forget it.
                o.remove();
            }
            return old.map(Arc::unwrap_or_clone);
        }
        match self.table.find(h, |(k, _)| **k == *p) {
            Some((k, n)) => {
                let (k, old) = (k.clone(), (**n).clone());
                self.overlay.insert_unique(h, (h, k, v), |(h, _, _)| *h);
                Some(old)
            }
            None => {
                if v.is_some() {
                    self.overlay
                        .insert_unique(h, (h, Arc::from(p), v), |(h, _, _)| *h);
                }
                None
            }
        }
    }

    fn iter<'a>(&'a self, hasher: &'a RandomState) -> impl Iterator<Item = (&'a str, &'a V)> {
        let shadowed = move |k: &str| self.overlay_find(hash(hasher, k), k).is_some();
        let table = self
            .table
            .iter()
            .filter(move |(k, _)| self.overlay.is_empty() || !shadowed(k))
            .map(|(k, n)| (&**k, &**n));
        let changed = self
            .overlay
            .iter()
            .filter_map(|(_, k, v)| Some((&**k, &**v.as_ref()?)));
        table.chain(changed)
    }
}

/// Moves an overlay's changes into its (now unshared) table.
fn merge<V>(
    table: &mut HashTable<Slot<V>>,
    overlay: &mut HashTable<Change<V>>,
    hasher: &RandomState,
) {
    let rehash = |(k, _): &Slot<V>| hash(hasher, k);
    for (h, k, v) in overlay.drain() {
        let found = table.find_entry(h, |(t, _)| *t == k);
        match (found, v) {
            (Ok(mut o), Some(v)) => o.get_mut().1 = v,
            (Ok(o), None) => drop(o.remove()),
            (Err(_), Some(v)) => drop(table.insert_unique(h, (k, v), rehash)),
            (Err(_), None) => {}
        }
    }
}

impl<V: Clone> ShardMap<V> {
    pub fn get(&self, p: &str) -> Option<&V> {
        let h = hash(&self.hasher, p);
        self.shards[shard(h)].get(h, p)
    }

    /// The value at `p`, for change: copied first if a frozen view still shares it.
    pub fn get_mut(&mut self, p: &str) -> Option<&mut V> {
        let h = hash(&self.hasher, p);
        let s = &mut self.shards[shard(h)];
        if s.settled(&self.hasher).is_none() {
            if s.overlay_find(h, p).is_none() {
                // First change since the freeze: the overlay gets a copy of the value.
                let (k, n) = s.table_find(h, p)?;
                let copy = (h, k.clone(), Some(Arc::new((**n).clone())));
                s.overlay.insert_unique(h, copy, |(h, _, _)| *h);
            }
            let (_, _, v) = s.overlay.find_mut(h, |(_, k, _)| **k == *p)?;
            return v.as_mut().map(Arc::make_mut);
        }
        let table = s.settled(&self.hasher).expect("checked above");
        table
            .find_mut(h, |(k, _)| **k == *p)
            .map(|(_, n)| Arc::make_mut(n))
    }

    pub fn contains_key(&self, p: &str) -> bool {
        self.get(p).is_some()
    }

    pub fn insert(&mut self, p: &str, n: V) -> Option<V> {
        let h = hash(&self.hasher, p);
        let hasher = &self.hasher;
        let s = &mut self.shards[shard(h)];
        let old = match s.settled(hasher) {
            None => s.shadow(h, p, Some(Arc::new(n))),
            Some(table) => {
                let rehash = |(k, _): &Slot<V>| hash(hasher, k);
                match table.entry(h, |(k, _)| **k == *p, rehash) {
                    Entry::Occupied(mut o) => {
                        let old = std::mem::replace(&mut o.get_mut().1, Arc::new(n));
                        Some(Arc::unwrap_or_clone(old))
                    }
                    Entry::Vacant(v) => {
                        v.insert((Arc::from(p), Arc::new(n)));
                        None
                    }
                }
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, p: &str) -> Option<V> {
        let h = hash(&self.hasher, p);
        let s = &mut self.shards[shard(h)];
        let old = match s.settled(&self.hasher) {
            None => match s.get(h, p) {
                Some(_) => s.shadow(h, p, None),
                None => None,
            },
            Some(table) => {
                let found = table.find_entry(h, |(k, _)| **k == *p).ok()?;
                let ((_, n), _) = found.remove();
                Some(Arc::unwrap_or_clone(n))
            }
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.shards.iter().flat_map(|s| s.iter(&self.hasher))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// Whether [`ShardMap::freeze`] would have to copy a table: an earlier view still
    /// shares one that has changes waiting in its overlay.
    pub fn freeze_would_copy(&self) -> bool {
        self.shards
            .iter()
            .any(|s| !s.overlay.is_empty() && Arc::strong_count(&s.table) > 1)
    }

    /// A view of the map as it is now, unchanged by later changes to the map (see the
    /// module doc for what that costs). Takes `&mut self` to fold pending overlays in.
    pub fn freeze(&mut self) -> Frozen<V> {
        for s in &mut self.shards {
            if !s.overlay.is_empty() {
                s.unshare(&self.hasher);
            }
        }
        Frozen {
            shards: self.shards.iter().map(|s| s.table.clone()).collect(),
            len: self.len,
        }
    }
}

/// A frozen view of a [`ShardMap`]: `Send` and `Sync` when the values are, so another
/// thread can walk it while the map keeps changing.
pub struct Frozen<V> {
    shards: Vec<Table<V>>,
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
        let used = m.shards.iter().filter(|s| !s.table.is_empty()).count();
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
        let before = Arc::as_ptr(&m.shards[0].table);
        for i in 0..1_000 {
            if let Some(n) = m.get_mut(&format!("/n{i}")) {
                n.stat.version += 1;
            }
        }
        assert_eq!(Arc::as_ptr(&m.shards[0].table), before);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Insert(u8, i32),
        Change(u8, i32),
        Remove(u8),
        Freeze,
        DropView(u8),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (any::<u8>(), any::<i32>()).prop_map(|(k, v)| Step::Insert(k % 40, v)),
            3 => (any::<u8>(), any::<i32>()).prop_map(|(k, v)| Step::Change(k % 40, v)),
            3 => any::<u8>().prop_map(|k| Step::Remove(k % 40)),
            1 => Just(Step::Freeze),
            1 => any::<u8>().prop_map(Step::DropView),
        ]
    }

    fn contents<'a>(it: impl Iterator<Item = (&'a str, &'a Node)>) -> BTreeMap<String, i32> {
        it.map(|(k, n)| (k.to_string(), n.stat.version)).collect()
    }

    use std::collections::BTreeMap;

    proptest::proptest! {
        /// Against a plain map: every answer of the live map, and every view's contents as
        /// they were when it was taken, through overlays, merges and overlapping views.
        #[test]
        fn views_and_overlays_agree_with_a_plain_map(steps in proptest::collection::vec(step(), 1..300)) {
            let mut m = NodeMap::default();
            let mut model: BTreeMap<String, i32> = BTreeMap::new();
            let mut views: Vec<(Frozen<Node>, BTreeMap<String, i32>)> = Vec::new();
            for st in steps {
                match st {
                    Step::Insert(k, v) => {
                        let p = format!("/k{k}");
                        let old = m.insert(&p, node(v)).map(|n| n.stat.version);
                        proptest::prop_assert_eq!(old, model.insert(p, v));
                    }
                    Step::Change(k, v) => {
                        let p = format!("/k{k}");
                        let got = m.get_mut(&p).map(|n| {
                            n.stat.version = v;
                        });
                        let want = model.get_mut(&p).map(|x| *x = v);
                        proptest::prop_assert_eq!(got, want);
                    }
                    Step::Remove(k) => {
                        let p = format!("/k{k}");
                        let old = m.remove(&p).map(|n| n.stat.version);
                        proptest::prop_assert_eq!(old, model.remove(&p));
                    }
                    Step::Freeze => views.push((m.freeze(), model.clone())),
                    Step::DropView(i) => {
                        if !views.is_empty() {
                            let i = i as usize % views.len();
                            views.remove(i);
                        }
                    }
                }
                proptest::prop_assert_eq!(m.len(), model.len());
                proptest::prop_assert_eq!(contents(m.iter()), model.clone());
                for k in 0..40 {
                    let p = format!("/k{k}");
                    proptest::prop_assert_eq!(m.get(&p).map(|n| n.stat.version), model.get(&p).copied());
                }
                for (v, seen) in &views {
                    proptest::prop_assert_eq!(v.len(), seen.len());
                    proptest::prop_assert_eq!(&contents(v.iter()), seen);
                }
            }
        }
    }

    #[test]
    fn a_freeze_copies_nothing_and_changes_go_to_the_overlay() {
        let mut m = NodeMap::default();
        for i in 0..1_000 {
            m.insert(&format!("/n{i}"), node(i));
        }
        let tables: Vec<_> = m.shards.iter().map(|s| Arc::as_ptr(&s.table)).collect();
        let view = m.freeze();
        for i in 0..1_000 {
            m.get_mut(&format!("/n{i}")).unwrap().stat.version += 1;
        }
        let now: Vec<_> = m.shards.iter().map(|s| Arc::as_ptr(&s.table)).collect();
        assert_eq!(tables, now, "no table was copied while the view lives");
        assert_eq!(
            m.shards.iter().map(|s| s.overlay.len()).sum::<usize>(),
            1_000
        );
        drop(view);
        m.insert("/one-more", node(0));
        let settled = m.shards.iter().filter(|s| s.overlay.is_empty()).count();
        assert!(
            settled >= 1,
            "a change after the view is gone merges that shard"
        );
        let _ = m.freeze();
        assert!(m.shards.iter().all(|s| s.overlay.is_empty()));
        assert_eq!(m.get("/n5").unwrap().stat.version, 6);
    }
}
