//! The data tree: znodes, their Stat, ACL references, ephemeral/container/TTL indexes, watches.
//!
//! Owns: the committed state every replica agrees on, and [`DataTree::apply`], the one way
//! it changes: a committed transaction in, a result and watch events out. Pure and
//! deterministic — no clock (times come in the TxnHeader), no channels, no I/O.
//! Must not: decide whether a request is allowed (that is `crate::prep`), or deliver events.
//!
//! Stat rules, as Apache ZooKeeper's DataTree:
//! - create: the node gets czxid = mzxid = pzxid = zxid, ctime = mtime = txn time; the
//!   parent's cversion becomes the txn's parentCVersion (when larger) and its pzxid the zxid;
//! - delete: the parent's pzxid becomes the zxid (when larger); its cversion is unchanged;
//! - setData: mzxid, mtime and version from the txn; setACL: aversion from the txn.

pub mod acl_cache;
pub mod digest;
pub mod load;
pub mod nodes;
pub mod path;
pub mod quota;
pub mod watch;

use crate::jute::records::{Acl, Stat, StatPersisted};
use crate::proto::{event, op, ZkError};
use crate::txn::{CreateKind, Txn, TxnHeader};
use acl_cache::{AclCache, OPEN_ACL_ID};
use bytes::Bytes;
use quota::{Quotas, StatsTrack};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use watch::Watches;

pub const ZOOKEEPER_PATH: &str = "/zookeeper";
pub const QUOTA_PATH: &str = "/zookeeper/quota";
pub const CONFIG_PATH: &str = "/zookeeper/config";

/// The ephemeralOwner of every container node.
pub const CONTAINER_OWNER: i64 = i64::MIN;
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
const EXTENDED_VALUE_MASK: i64 = 0x0000_00ff_ffff_ffff;
/// Largest TTL, in milliseconds (ZooKeeper's EphemeralType.TTL.maxValue()).
pub const MAX_TTL: i64 = EXTENDED_VALUE_MASK;

/// The ephemeralOwner that marks a TTL node.
pub fn ttl_owner(ttl: i64) -> i64 {
    EXTENDED_MASK | ttl
}

/// What an ephemeralOwner value means (ZooKeeper's EphemeralType with extended types on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    None,
    Session(i64),
    Container,
    Ttl(i64),
}

pub fn owner_kind(owner: i64, extended_types: bool) -> OwnerKind {
    if owner == 0 {
        OwnerKind::None
    } else if extended_types && owner & EXTENDED_MASK == EXTENDED_MASK {
        OwnerKind::Ttl(owner & EXTENDED_VALUE_MASK)
    } else if owner == CONTAINER_OWNER {
        OwnerKind::Container
    } else {
        OwnerKind::Session(owner)
    }
}

/// A znode. Cheap to clone (the data is shared), as the copy-on-write node map needs; its
/// child names are kept apart, in [`DataTree`]'s child map.
#[derive(Clone)]
pub struct Node {
    pub data: Option<Bytes>,
    pub acl: i64,
    pub stat: StatPersisted,
    /// How many children it has (their names: [`DataTree::child_names`]).
    pub child_count: i32,
    /// This node's contribution to the tree digest (see `digest.rs`), kept current.
    pub digest: u64,
}

impl Node {
    /// The Stat a client sees. As ZooKeeper's DataNode.copyStat: the stored cversion counts
    /// child creations, and clients see every child change (`2 × creations − children`);
    /// containers and TTL nodes show ephemeralOwner 0.
    pub fn client_stat(&self, extended_types: bool) -> Stat {
        let children = self.child_count;
        let mut s = self
            .stat
            .to_stat(self.data.as_ref().map_or(0, |d| d.len() as i32), children);
        s.cversion = self.stat.cversion.wrapping_mul(2).wrapping_sub(children);
        if !matches!(
            owner_kind(self.stat.ephemeral_owner, extended_types),
            OwnerKind::Session(_) | OwnerKind::None
        ) {
            s.ephemeral_owner = 0;
        }
        s
    }
}

/// A notification for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub session: i64,
    pub kind: i32,
    pub path: String,
    pub zxid: i64,
    /// The ACL of the node the event is about (the parent's for NodeChildrenChanged, the
    /// deleted node's for NodeDeleted): the session must have READ on it to be told, as
    /// ZooKeeper 3.8.4+/3.9.2+ check (CVE-2024-23944).
    pub acl: Arc<Vec<Acl>>,
}

/// What applying one transaction produced, for the reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResult {
    /// The sub-txn type (for multi results); the header type otherwise.
    pub op: i32,
    /// 0 or a ZooKeeper error code.
    pub err: i32,
    pub path: String,
    pub stat: Option<Stat>,
    pub multi: Vec<TxnResult>,
}

pub struct DataTree {
    nodes: nodes::NodeMap,
    /// Child names per node that has children, in order (getChildren answers sorted;
    /// snapshots walk them by cursor). Kept out of [`Node`] so that a node is cheap to copy
    /// when a frozen view shares it.
    kids: nodes::ShardMap<BTreeSet<Box<str>>>,
    pub acls: AclCache,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    pub watches: Watches,
    quotas: Quotas,
    /// The zxid of the last applied transaction.
    pub last_zxid: i64,
    /// The tree digest: wrapping sum of every node's digest.
    pub digest: u64,
    /// Set when the tree was loaded from a fuzzy snapshot and the entries logged after it
    /// are still to be applied: the zxid the snapshot's walk ended at, and the digest it
    /// recorded there. Until the tree reaches that zxid, a transaction being applied may
    /// already be in the state, so its digest says nothing (ZooKeeper's
    /// `digestFromLoadedSnapshot`); see [`DataTree::digest_to_check`].
    pub fuzzy_until: Option<(i64, u64)>,
    extended_types: bool,
}

impl DataTree {
    /// A tree with no nodes at all, to be filled from a snapshot ([`DataTree::load_node`]).
    pub fn empty(extended_types: bool) -> Self {
        DataTree {
            nodes: nodes::NodeMap::default(),
            kids: Default::default(),
            acls: AclCache::new(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            watches: Watches::default(),
            quotas: Quotas::default(),
            last_zxid: 0,
            digest: 0,
            fuzzy_until: None,
            extended_types,
        }
    }

    /// The digest the tree must have after applying transaction `zxid`, whose logged digest
    /// is `logged`: none while the tree is still inside a fuzzy snapshot's window (see
    /// [`DataTree::fuzzy_until`]), the snapshot's own at the zxid its walk ended at, the
    /// logged one after that.
    pub fn digest_to_check(&mut self, zxid: i64, logged: Option<u64>) -> Option<u64> {
        match self.fuzzy_until {
            Some((end, _)) if zxid < end => None,
            Some((end, recorded)) => {
                self.fuzzy_until = None;
                if zxid == end {
                    logged.or(Some(recorded))
                } else {
                    logged
                }
            }
            None => logged,
        }
    }

    /// Adds a node read from a snapshot, except to its parent's child set (that is
    /// [`load::Loader`]'s job). `data` is kept as given, so it should be in an allocation of
    /// its own (`Reader::buffer_owned`).
    fn load_detached(
        &mut self,
        p: String,
        data: Option<Bytes>,
        acl: i64,
        stat: StatPersisted,
    ) -> Result<(), String> {
        if !self.acls.add_usage(acl) {
            return Err(format!("node {p} refers to unknown ACL id {acl}"));
        }
        if p != "/" {
            self.index_owner(&p, stat.ephemeral_owner);
            if let Some((quota::LIMITS, prefix)) = Quotas::node_kind(&p) {
                self.quotas.add(prefix);
            }
        }
        let node = Node {
            data,
            acl,
            stat,
            child_count: 0,
            digest: 0,
        };
        match self.insert_node(p, node) {
            None => Ok(()),
            Some(_) => Err("a node is listed twice".to_string()),
        }
    }

    /// After the last node of a snapshot ([`load::Loader`]): drop unused ACLs, recount quota
    /// usage.
    pub fn finish_load(&mut self) {
        self.acls.purge_unused();
        let prefixes = self.quotas.all();
        for p in prefixes {
            self.recount_quota(&p);
        }
    }

    /// A fresh tree with `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config`.
    pub fn new(extended_types: bool) -> Self {
        let mut t = DataTree::empty(extended_types);
        let open = t.acls.acquire(&acl_cache::open_acl());
        t.insert_node("/".into(), empty_node(open));
        t.insert_system("/zookeeper", open);
        t.insert_system(QUOTA_PATH, open);
        let read_only = t.acls.acquire(&acl_cache::read_acl());
        t.insert_system(CONFIG_PATH, read_only);
        // ZooKeeper sets this ACL with version -1, which lands in aversion.
        t.nodes
            .get_mut(CONFIG_PATH)
            .expect("just made")
            .stat
            .aversion = -1;
        t
    }

    fn insert_system(&mut self, p: &str, acl: i64) {
        self.add_child(path::parent(p), path::name(p));
        self.insert_node(p.to_string(), empty_node(acl));
    }

    /// Files `name` under the node at `parent` (which must exist).
    pub(super) fn add_child(&mut self, parent: &str, name: &str) {
        let added = match self.kids.get_mut(parent) {
            Some(set) => set.insert(name.into()),
            None => {
                self.kids.insert(parent, BTreeSet::from([name.into()]));
                true
            }
        };
        if added {
            if let Some(n) = self.nodes.get_mut(parent) {
                n.child_count += 1;
            }
        }
    }

    fn remove_child(&mut self, parent: &str, name: &str) {
        let Some(set) = self.kids.get_mut(parent) else {
            return;
        };
        if !set.remove(name) {
            return;
        }
        if set.is_empty() {
            self.kids.remove(parent);
        }
        if let Some(n) = self.nodes.get_mut(parent) {
            n.child_count -= 1;
        }
    }

    /// Loading: files a whole list of names under the node at `parent` (which must exist).
    pub(super) fn add_children(&mut self, parent: &str, names: Vec<Box<str>>) {
        let set = match self.kids.get_mut(parent) {
            Some(set) => {
                set.extend(names);
                set.len()
            }
            None => {
                let set = BTreeSet::from_iter(names);
                let len = set.len();
                self.kids.insert(parent, set);
                len
            }
        };
        if let Some(n) = self.nodes.get_mut(parent) {
            n.child_count = set as i32;
        }
    }

    /// The child names of the node at `p`, in order (`None`: no children, or no node).
    pub fn child_names(&self, p: &str) -> Option<&BTreeSet<Box<str>>> {
        self.kids.get(p)
    }

    /// A view of every node as they are now, unchanged by later transactions, for another
    /// thread to serialize (see `nodes.rs` for what it costs).
    /// Whether freezing now would copy node tables (an earlier view is still alive).
    pub fn freeze_would_copy(&self) -> bool {
        self.nodes.freeze_would_copy()
    }

    pub fn freeze_nodes(&mut self) -> nodes::Frozen<Node> {
        self.nodes.freeze()
    }

    /// Puts a node in the map, adding its digest to the tree's.
    /// Inserts a node and counts it in the tree digest; gives back the node it replaced,
    /// if any (whose digest it takes out again).
    pub fn insert_node(&mut self, p: String, mut node: Node) -> Option<Node> {
        node.digest = digest::node_digest(&p, node.data.as_deref(), &node.stat);
        self.digest = self.digest.wrapping_add(node.digest);
        let old = self.nodes.insert(&p, node);
        if let Some(o) = &old {
            self.digest = self.digest.wrapping_sub(o.digest);
        }
        old
    }

    /// Re-computes a changed node's digest and the tree's.
    fn redigest(&mut self, p: &str) {
        if let Some(n) = self.nodes.get_mut(p) {
            let new = digest::node_digest(p, n.data.as_deref(), &n.stat);
            self.digest = self.digest.wrapping_sub(n.digest).wrapping_add(new);
            n.digest = new;
        }
    }

    pub fn extended_types(&self) -> bool {
        self.extended_types
    }

    pub fn get(&self, p: &str) -> Option<&Node> {
        self.nodes.get(p)
    }

    /// The Stat clients see for `node` (see [`Node::client_stat`]).
    pub fn stat(&self, node: &Node) -> Stat {
        node.client_stat(self.extended_types)
    }

    pub fn acl_of(&self, node: &Node) -> Arc<Vec<Acl>> {
        self.acls.get(node.acl)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Sum of data bytes and path bytes, as ZooKeeper's approximate data size.
    pub fn approximate_data_size(&self) -> u64 {
        self.nodes
            .iter()
            .map(|(p, n)| (p.len() + n.data.as_ref().map_or(0, |d| d.len())) as u64)
            .sum()
    }

    /// The child names of the node at `p`, sorted.
    pub fn children_sorted(&self, p: &str) -> Vec<String> {
        self.kids
            .get(p)
            .map(|set| set.iter().map(|c| c.to_string()).collect())
            .unwrap_or_default()
    }

    pub fn ephemerals_of(&self, session: i64) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// All descendants of `p` (not `p` itself).
    pub fn all_children_number(&self, p: &str) -> usize {
        if p == "/" {
            return self.nodes.len() - 1;
        }
        let prefix = format!("{p}/");
        self.nodes.keys().filter(|k| k.starts_with(&prefix)).count()
    }

    /// Sets `/zookeeper/config` (not a transaction: each member derives it from its own
    /// configuration, as ZooKeeper's initConfigInZKDatabase, which leaves dataVersion -1 and
    /// mZxid at the configuration's version, 0 for a static one).
    pub fn set_config_data(&mut self, data: Bytes, now_ms: i64) {
        if let Some(n) = self.nodes.get_mut(CONFIG_PATH) {
            n.data = Some(data);
            n.stat.version = -1;
            n.stat.mzxid = 0;
            n.stat.mtime = now_ms;
        }
    }

    /// Containers and TTL nodes due for deletion at wall-clock time `now_ms`.
    pub fn expired_containers(&self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.containers {
            if let Some(n) = self.nodes.get(p) {
                if n.child_count == 0 && n.stat.cversion > 0 {
                    out.push(p.clone());
                }
            }
        }
        for p in &self.ttls {
            if let Some(n) = self.nodes.get(p) {
                if let OwnerKind::Ttl(ttl) = owner_kind(n.stat.ephemeral_owner, true) {
                    if n.child_count == 0 && ttl != 0 && now_ms - n.stat.mtime > ttl {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    /// Applies one committed transaction. Errors inside are reported in the result, as
    /// ZooKeeper's `processTxn` does; the tree is never left half-changed by one sub-op.
    pub fn apply(&mut self, hdr: &TxnHeader, txn: &Txn, events: &mut Vec<WatchEvent>) -> TxnResult {
        let result = match txn {
            Txn::Multi(subs) => self.apply_multi(hdr, subs, events),
            single => self.apply_one(hdr, single, events),
        };
        if hdr.zxid > self.last_zxid {
            self.last_zxid = hdr.zxid;
        }
        result
    }

    fn apply_multi(
        &mut self,
        hdr: &TxnHeader,
        subs: &[Txn],
        events: &mut Vec<WatchEvent>,
    ) -> TxnResult {
        let failed = subs.iter().any(|t| matches!(t, Txn::Error { .. }));
        let mut results = Vec::with_capacity(subs.len());
        let mut past_failure = false;
        for t in subs {
            let r = if failed {
                let err = match t {
                    Txn::Error { err } => {
                        past_failure = true;
                        *err
                    }
                    _ if past_failure => ZkError::RuntimeInconsistency.code(),
                    _ => 0,
                };
                TxnResult {
                    op: op::ERROR,
                    err,
                    ..Default::default()
                }
            } else {
                self.apply_one(hdr, t, events)
            };
            results.push(r);
        }
        TxnResult {
            op: op::MULTI,
            multi: results,
            ..Default::default()
        }
    }

    fn apply_one(&mut self, hdr: &TxnHeader, txn: &Txn, events: &mut Vec<WatchEvent>) -> TxnResult {
        let mut r = TxnResult {
            op: txn.op(),
            ..Default::default()
        };
        let outcome = match txn {
            Txn::Create {
                path,
                data,
                acl,
                kind,
                parent_cversion,
                ..
            } => {
                r.path = path.clone();
                let owner = match kind {
                    CreateKind::Persistent => 0,
                    CreateKind::Ephemeral => hdr.client_id,
                    CreateKind::Container => CONTAINER_OWNER,
                    CreateKind::Ttl(ttl) => ttl_owner(*ttl),
                };
                let created = self.create_node(
                    path,
                    data.clone(),
                    acl,
                    owner,
                    *parent_cversion,
                    hdr,
                    events,
                );
                if created == Err(ZkError::NodeExists.code()) {
                    // Only in replay over a fuzzy snapshot (prep rules it out live): the node
                    // is already there, but its parent may predate the creation (ZooKeeper's
                    // processTxn does the same).
                    self.set_cversion_pzxid(path::parent(path), *parent_cversion, hdr.zxid);
                }
                created.map(|s| r.stat = Some(s))
            }
            Txn::Delete { path, .. } => {
                r.path = path.clone();
                self.delete_node(path, hdr.zxid, events)
            }
            Txn::SetData {
                path,
                data,
                version,
            }
            | Txn::Reconfig {
                path,
                data,
                version,
            } => {
                r.path = path.clone();
                self.set_data(path, data.clone(), *version, hdr, events)
                    .map(|s| r.stat = Some(s))
            }
            Txn::SetAcl { path, acl, version } => {
                r.path = path.clone();
                self.set_acl(path, acl, *version).map(|s| r.stat = Some(s))
            }
            Txn::Check { path, .. } => {
                r.path = path.clone();
                Ok(())
            }
            Txn::CreateSession { .. } => Ok(()),
            Txn::CloseSession { paths } => {
                self.kill_session(hdr.client_id, paths, hdr.zxid, events);
                Ok(())
            }
            Txn::Error { err } => Err(*err),
            Txn::Multi(_) => Err(ZkError::MarshallingError.code()),
        };
        if let Err(e) = outcome {
            r.err = e;
        }
        r
    }

    /// Fires the watches `kind` triggers on `p`; `acl_id` is the ACL the event is checked
    /// against when delivered (see `WatchEvent::acl`).
    fn notify(&mut self, p: &str, kind: i32, zxid: i64, acl_id: i64, events: &mut Vec<WatchEvent>) {
        let sessions = self.watches.trigger(p, kind);
        if sessions.is_empty() {
            return;
        }
        let acl = self.acls.get(acl_id);
        for session in sessions {
            events.push(WatchEvent {
                session,
                kind,
                path: p.to_string(),
                zxid,
                acl: acl.clone(),
            });
        }
    }

    /// The ACL id of the node at `p` (the parent of an event's node), or the open ACL's.
    fn acl_id_at(&self, p: &str) -> i64 {
        self.nodes.get(p).map_or(OPEN_ACL_ID, |n| n.acl)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        p: &str,
        data: Option<Bytes>,
        acl: &[Acl],
        owner: i64,
        parent_cversion: i32,
        hdr: &TxnHeader,
        events: &mut Vec<WatchEvent>,
    ) -> Result<Stat, i32> {
        let parent_path = path::parent(p).to_string();
        if !self.nodes.contains_key(&parent_path) {
            return Err(ZkError::NoNode.code());
        }
        if self.nodes.contains_key(p) {
            return Err(ZkError::NodeExists.code());
        }
        let acl_id = self.acls.acquire(acl);
        let parent = self.nodes.get_mut(&parent_path).expect("checked");
        raise_cversion(&mut parent.stat, parent_cversion, hdr.zxid);
        self.add_child(&parent_path, path::name(p));
        self.redigest(&parent_path);
        let node = Node {
            data: owned(data),
            acl: acl_id,
            stat: StatPersisted {
                czxid: hdr.zxid,
                mzxid: hdr.zxid,
                ctime: hdr.time,
                mtime: hdr.time,
                version: 0,
                cversion: 0,
                aversion: 0,
                ephemeral_owner: owner,
                pzxid: hdr.zxid,
            },
            child_count: 0,
            digest: 0,
        };
        let stat = node.client_stat(self.extended_types);
        self.insert_node(p.to_string(), node);
        self.index_owner(p, owner);
        self.quota_after_create(p);
        self.notify(p, event::NODE_CREATED, hdr.zxid, acl_id, events);
        let parent_acl = self.acl_id_at(&parent_path);
        self.notify(
            &parent_path,
            event::NODE_CHILDREN_CHANGED,
            hdr.zxid,
            parent_acl,
            events,
        );
        Ok(stat)
    }

    /// Files a node under its owner: a session's ephemerals, containers or TTL nodes.
    fn index_owner(&mut self, p: &str, owner: i64) {
        match owner_kind(owner, self.extended_types) {
            OwnerKind::Container => {
                self.containers.insert(p.to_string());
            }
            OwnerKind::Ttl(_) => {
                self.ttls.insert(p.to_string());
            }
            OwnerKind::Session(s) => {
                self.ephemerals.entry(s).or_default().insert(p.to_string());
            }
            OwnerKind::None => {}
        }
    }

    fn unindex_owner(&mut self, p: &str, owner: i64) {
        match owner_kind(owner, self.extended_types) {
            OwnerKind::Container => {
                self.containers.remove(p);
            }
            OwnerKind::Ttl(_) => {
                self.ttls.remove(p);
            }
            OwnerKind::Session(s) => {
                if let Some(set) = self.ephemerals.get_mut(&s) {
                    set.remove(p);
                    if set.is_empty() {
                        self.ephemerals.remove(&s);
                    }
                }
            }
            OwnerKind::None => {}
        }
    }

    /// Raises a node's cversion (and pzxid) to `cversion` when that is larger.
    fn set_cversion_pzxid(&mut self, p: &str, cversion: i32, zxid: i64) {
        if let Some(n) = self.nodes.get_mut(p) {
            if raise_cversion(&mut n.stat, cversion, zxid) {
                self.redigest(p);
            }
        }
    }

    fn delete_node(&mut self, p: &str, zxid: i64, events: &mut Vec<WatchEvent>) -> Result<(), i32> {
        let parent_path = path::parent(p).to_string();
        let Some(parent) = self.nodes.get_mut(&parent_path) else {
            return Err(ZkError::NoNode.code());
        };
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        self.remove_child(&parent_path, path::name(p));
        self.redigest(&parent_path);
        let Some(node) = self.nodes.remove(p) else {
            return Err(ZkError::NoNode.code());
        };
        self.kids.remove(p);
        self.digest = self.digest.wrapping_sub(node.digest);
        self.quota_after_delete(p, data_len(&node.data));
        self.unindex_owner(p, node.stat.ephemeral_owner);
        self.notify(p, event::NODE_DELETED, zxid, node.acl, events);
        self.acls.release(node.acl);
        let parent_acl = self.acl_id_at(&parent_path);
        self.notify(
            &parent_path,
            event::NODE_CHILDREN_CHANGED,
            zxid,
            parent_acl,
            events,
        );
        Ok(())
    }

    fn set_data(
        &mut self,
        p: &str,
        data: Option<Bytes>,
        version: i32,
        hdr: &TxnHeader,
        events: &mut Vec<WatchEvent>,
    ) -> Result<Stat, i32> {
        let node = self.nodes.get_mut(p).ok_or(ZkError::NoNode.code())?;
        let diff = data_len(&data) - data_len(&node.data);
        node.data = owned(data);
        node.stat.mtime = hdr.time;
        node.stat.mzxid = hdr.zxid;
        node.stat.version = version;
        let stat = node.client_stat(self.extended_types);
        self.redigest(p);
        if let Some(prefix) = self.quotas.prefix_for(p).map(str::to_string) {
            self.update_quota_stats(&prefix, diff, 0);
        }
        let acl_id = self.acl_id_at(p);
        self.notify(p, event::NODE_DATA_CHANGED, hdr.zxid, acl_id, events);
        Ok(stat)
    }

    fn set_acl(&mut self, p: &str, acl: &[Acl], version: i32) -> Result<Stat, i32> {
        if !self.nodes.contains_key(p) {
            return Err(ZkError::NoNode.code());
        }
        let new_id = self.acls.acquire(acl);
        let node = self.nodes.get_mut(p).expect("checked");
        let old = std::mem::replace(&mut node.acl, new_id);
        node.stat.aversion = version;
        let stat = node.client_stat(self.extended_types);
        self.acls.release(old);
        self.redigest(p);
        Ok(stat)
    }

    /// Deletes the paths the closeSession txn lists (whatever is there now: during replay
    /// over a fuzzy snapshot a path may already be gone, and the parent's pzxid still moves),
    /// then any other ephemeral of the session, as ZooKeeper's killSession does.
    fn kill_session(
        &mut self,
        session: i64,
        listed: &[String],
        zxid: i64,
        events: &mut Vec<WatchEvent>,
    ) {
        let mut rest: BTreeSet<String> = self.ephemerals.remove(&session).unwrap_or_default();
        for p in listed {
            rest.remove(p);
            // A missing node is not an error here.
            let _ = self.delete_node(p, zxid, events);
        }
        if !listed.is_empty() && !rest.is_empty() {
            tracing::warn!(
                session = format_args!("0x{session:x}"),
                extra = rest.len(),
                "ephemerals not listed in the closeSession txn"
            );
        }
        for p in rest {
            let _ = self.delete_node(&p, zxid, events);
        }
        self.watches.remove_session(session);
    }
}

/// Raises `stat.cversion` (and `pzxid`) to `cversion`, or by one when `cversion` is -1, if
/// that is larger. Returns whether the stat changed.
fn raise_cversion(stat: &mut StatPersisted, cversion: i32, zxid: i64) -> bool {
    let cversion = if cversion == -1 {
        stat.cversion + 1
    } else {
        cversion
    };
    let raised = cversion > stat.cversion;
    if raised {
        stat.cversion = cversion;
        stat.pzxid = zxid;
    }
    raised
}

fn data_len(d: &Option<Bytes>) -> i64 {
    d.as_ref().map_or(0, |d| d.len() as i64)
}

/// Quota bookkeeping (see `quota.rs`).
impl DataTree {
    /// The quota'd path `p` counts against, with its limits and current usage.
    pub fn quota_for(&self, p: &str) -> Option<(String, StatsTrack, StatsTrack)> {
        let prefix = self.quotas.prefix_for(p)?.to_string();
        let read = |q: String| {
            self.nodes
                .get(&q)
                .map(|n| StatsTrack::parse(n.data.as_deref().unwrap_or_default()))
                .unwrap_or_default()
        };
        let limits = read(Quotas::limits_path(&prefix));
        let stats = read(Quotas::stats_path(&prefix));
        Some((prefix, limits, stats))
    }

    fn update_quota_stats(&mut self, prefix: &str, bytes: i64, count: i64) {
        if let Some(n) = self.nodes.get_mut(&Quotas::stats_path(prefix)) {
            let mut t = StatsTrack::parse(n.data.as_deref().unwrap_or_default());
            t.set("count", t.count() + count);
            t.set("bytes", t.bytes() + bytes);
            n.data = Some(Bytes::from(t.to_text()));
        }
    }

    fn quota_after_create(&mut self, p: &str) {
        match Quotas::node_kind(p) {
            Some((quota::LIMITS, prefix)) => self.quotas.add(prefix),
            Some((_, prefix)) => self.recount_quota(&prefix),
            None => {
                if let Some(prefix) = self.quotas.prefix_for(p).map(str::to_string) {
                    let bytes = self.nodes.get(p).map_or(0, |n| data_len(&n.data));
                    self.update_quota_stats(&prefix, bytes, 1);
                }
            }
        }
    }

    fn quota_after_delete(&mut self, p: &str, bytes: i64) {
        if let Some((quota::LIMITS, prefix)) = Quotas::node_kind(p) {
            self.quotas.remove(&prefix);
        } else if let Some(prefix) = self.quotas.prefix_for(p).map(str::to_string) {
            self.update_quota_stats(&prefix, -bytes, -1);
        }
    }

    /// Sets a stats node from the subtree as it is (the node itself and all below it).
    fn recount_quota(&mut self, prefix: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        for (k, n) in self.nodes.iter() {
            if path::is_under(k, prefix) && prefix != "/" {
                count += 1;
                bytes += data_len(&n.data);
            }
        }
        if let Some(n) = self.nodes.get_mut(&Quotas::stats_path(prefix)) {
            let mut t = StatsTrack::default();
            t.set("count", count);
            t.set("bytes", bytes);
            n.data = Some(Bytes::from(t.to_text()));
        }
    }
}

fn empty_node(acl: i64) -> Node {
    Node {
        data: Some(Bytes::new()),
        acl,
        stat: StatPersisted::default(),
        child_count: 0,
        digest: 0,
    }
}

/// Node data in an allocation of its own. Decoded data is a slice of the request frame
/// (or of a whole snapshot file when loading), and keeping the slice would keep all of that
/// buffer alive for as long as the node lives.
fn owned(data: Option<Bytes>) -> Option<Bytes> {
    data.map(|d| Bytes::copy_from_slice(&d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::watch::WatchKind;

    fn hdr(zxid: i64, session: i64) -> TxnHeader {
        TxnHeader {
            client_id: session,
            cxid: 0,
            zxid,
            time: zxid * 10,
            op: 0,
        }
    }

    fn create(p: &str, kind: CreateKind, pcv: i32) -> Txn {
        Txn::Create {
            op: op::CREATE,
            path: p.into(),
            data: Some(Bytes::from_static(b"d")),
            acl: acl_cache::open_acl(),
            kind,
            parent_cversion: pcv,
        }
    }

    #[test]
    fn system_nodes_exist() {
        let t = DataTree::new(false);
        assert_eq!(t.children_sorted("/"), vec!["zookeeper"]);
        assert_eq!(t.get("/").unwrap().child_count, 1);
        assert_eq!(t.children_sorted("/zookeeper"), vec!["config", "quota"]);
        let cfg = t.get(CONFIG_PATH).unwrap();
        assert_eq!(t.stat(cfg).aversion, -1);
        assert_eq!(cfg.data.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn create_and_delete_maintain_parent_stat() {
        let mut t = DataTree::new(false);
        let mut ev = Vec::new();
        t.apply(
            &hdr(1, 5),
            &create("/a", CreateKind::Persistent, 1),
            &mut ev,
        );
        let r = t.apply(
            &hdr(2, 5),
            &create("/a/b", CreateKind::Ephemeral, 1),
            &mut ev,
        );
        assert_eq!(r.err, 0);
        let s = r.stat.unwrap();
        assert_eq!(
            (s.czxid, s.mzxid, s.pzxid, s.ctime, s.ephemeral_owner),
            (2, 2, 2, 20, 5)
        );
        let a = t.stat(t.get("/a").unwrap());
        assert_eq!((a.cversion, a.pzxid, a.num_children), (1, 2, 1));
        t.apply(
            &hdr(3, 5),
            &Txn::Delete {
                op: op::DELETE,
                path: "/a/b".into(),
            },
            &mut ev,
        );
        let a = t.stat(t.get("/a").unwrap());
        assert_eq!((a.cversion, a.pzxid, a.num_children), (2, 3, 0));
        assert!(t.ephemerals_of(5).is_empty());
        assert_eq!(t.last_zxid, 3);
    }

    #[test]
    fn failed_multi_applies_nothing() {
        let mut t = DataTree::new(false);
        let mut ev = Vec::new();
        t.watches.add(9, WatchKind::Child, "/");
        let m = Txn::Multi(vec![
            create("/x", CreateKind::Persistent, 1),
            Txn::Error {
                err: ZkError::NoNode.code(),
            },
            Txn::Error {
                err: ZkError::RuntimeInconsistency.code(),
            },
        ]);
        let r = t.apply(&hdr(1, 5), &m, &mut ev);
        let errs: Vec<i32> = r.multi.iter().map(|r| r.err).collect();
        assert_eq!(errs, vec![0, -101, -2]);
        assert!(t.get("/x").is_none());
        assert!(ev.is_empty());
    }

    #[test]
    fn close_session_deletes_ephemerals_and_fires_watches() {
        let mut t = DataTree::new(false);
        let mut ev = Vec::new();
        t.apply(&hdr(1, 5), &create("/e", CreateKind::Ephemeral, 1), &mut ev);
        t.watches.add(7, WatchKind::Data, "/e");
        t.apply(&hdr(2, 5), &Txn::CloseSession { paths: vec![] }, &mut ev);
        assert!(t.get("/e").is_none());
        assert_eq!(ev[0].session, 7);
        assert_eq!(ev[0].kind, event::NODE_DELETED);
    }

    #[test]
    fn containers_and_ttls_expire() {
        let mut t = DataTree::new(true);
        let mut ev = Vec::new();
        t.apply(&hdr(1, 5), &create("/c", CreateKind::Container, 1), &mut ev);
        assert!(t.expired_containers(1000).is_empty());
        t.apply(
            &hdr(2, 5),
            &create("/c/x", CreateKind::Persistent, 1),
            &mut ev,
        );
        t.apply(
            &hdr(3, 5),
            &Txn::Delete {
                op: op::DELETE,
                path: "/c/x".into(),
            },
            &mut ev,
        );
        assert_eq!(t.expired_containers(1000), vec!["/c"]);
        t.apply(&hdr(4, 5), &create("/t", CreateKind::Ttl(100), 2), &mut ev);
        assert_eq!(t.expired_containers(40 + 100), vec!["/c"]);
        assert_eq!(t.expired_containers(40 + 101), vec!["/c", "/t"]);
    }
}
