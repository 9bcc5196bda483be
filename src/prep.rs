//! Request preparation: a write request plus the tree plus the outstanding (not yet applied)
//! changes → a transaction, or an error code.
//!
//! Owns: the outstanding-change records (ZooKeeper's `outstandingChanges`), so that a write
//! prepared while earlier ones are still on their way to the log sees their effects
//! (sequence numbers, versions, existence). Pure: time and zxid come in as arguments.
//! Must not: change the tree (only committed transactions do, through `DataTree::apply`).
//!
//! Checks run in Apache ZooKeeper's order (PrepRequestProcessor), so the same bad request
//! gets the same error code: e.g. for delete — path form, parent exists, DELETE permission
//! on the parent, node exists, version, no children.

use crate::auth;
use crate::jute::records::{Acl, Id, StatPersisted};
use crate::proto::request::{CreateRequest, Request};
use crate::proto::{op, CreateMode, ZkError};
use crate::tree::acl_cache::perms;
use crate::tree::{owner_kind, path, ttl_owner, DataTree, OwnerKind, CONTAINER_OWNER, MAX_TTL};
use crate::txn::{CreateKind, Txn};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What prep needs to know of a node: its stat, child count and ACL.
#[derive(Clone, Debug)]
struct Shadow {
    stat: StatPersisted,
    child_count: i32,
    acl: Arc<Vec<Acl>>,
    data: Option<Bytes>,
    /// This node's digest as it will be (see `tree::digest`).
    digest: u64,
}

impl Shadow {
    fn data_len(&self) -> i64 {
        self.data.as_ref().map_or(0, |d| d.len() as i64)
    }
}

/// A pending change: the node as it will be once the txn with `zxid` applies (None: deleted).
#[derive(Clone, Debug)]
struct Change {
    zxid: i64,
    node: Option<Shadow>,
}

/// Who is asking.
pub struct Requester<'a> {
    pub session: i64,
    pub ids: &'a [Id],
}

#[derive(Default)]
pub struct Prep {
    changes: HashMap<String, Change>,
    order: VecDeque<(i64, String)>,
    /// Refuse writes past a hard quota limit (QuotaExceeded) instead of only logging.
    enforce_quota: bool,
    /// The tree digest once every outstanding change applies; None when there are none.
    digest: Option<u64>,
}

/// What to restore if a request (or a multi) fails part way.
struct Undo {
    changes: Vec<(String, Option<Change>)>,
    digest: Option<u64>,
}

impl Undo {
    fn new(prep: &Prep) -> Undo {
        Undo {
            changes: Vec::new(),
            digest: prep.digest,
        }
    }
}

impl Prep {
    pub fn new() -> Self {
        Prep::default()
    }

    pub fn with_quota_enforcement(enforce: bool) -> Self {
        Prep {
            enforce_quota: enforce,
            ..Prep::default()
        }
    }

    /// ZooKeeper's checkQuota: a write that takes a quota'd subtree past a limit is logged;
    /// past a hard limit, with enforcement on, it is refused.
    fn check_quota(&self, tree: &DataTree, p: &str, bytes: i64, count: i64) -> Result<(), ZkError> {
        let Some((prefix, limits, usage)) = tree.quota_for(p) else {
            return Ok(());
        };
        let checks = [
            ("count", "countHardLimit", count, usage.count()),
            ("bytes", "byteHardLimit", bytes, usage.bytes()),
        ];
        for (soft, hard, diff, current) in checks {
            let hard_limit = limits.get(hard);
            let limit = if hard_limit > -1 {
                hard_limit
            } else {
                limits.get(soft)
            };
            if diff == 0 || limit < 0 || current + diff <= limit {
                continue;
            }
            tracing::warn!(
                quota = prefix,
                kind = soft,
                current = current + diff,
                limit,
                "quota exceeded"
            );
            if hard_limit > -1 && self.enforce_quota {
                return Err(ZkError::QuotaExceeded);
            }
        }
        Ok(())
    }

    /// Forgets changes made by transactions up to and including `zxid` (now in the tree).
    pub fn applied(&mut self, zxid: i64) {
        while let Some((z, _)) = self.order.front() {
            if *z > zxid {
                break;
            }
            let (z, p) = self.order.pop_front().expect("front exists");
            if self.changes.get(&p).is_some_and(|c| c.zxid == z) {
                self.changes.remove(&p);
            }
        }
        if self.order.is_empty() {
            self.digest = None;
        }
    }

    /// The tree digest as it will be once every prepared transaction has applied.
    pub fn digest(&self, tree: &DataTree) -> u64 {
        self.digest.unwrap_or(tree.digest)
    }

    pub fn outstanding(&self) -> usize {
        self.changes.len()
    }

    fn lookup(&self, tree: &DataTree, p: &str) -> Option<Shadow> {
        if let Some(c) = self.changes.get(p) {
            return c.node.clone();
        }
        tree.get(p).map(|n| Shadow {
            stat: n.stat,
            child_count: n.child_count,
            acl: tree.acl_of(n),
            data: n.data.clone(),
            digest: n.digest,
        })
    }

    fn record(&self, tree: &DataTree, p: &str) -> Result<Shadow, ZkError> {
        self.lookup(tree, p).ok_or(ZkError::NoNode)
    }

    fn add(
        &mut self,
        tree: &DataTree,
        p: &str,
        zxid: i64,
        mut node: Option<Shadow>,
        undo: &mut Undo,
    ) {
        let old = self.lookup(tree, p).map_or(0, |n| n.digest);
        if let Some(n) = node.as_mut() {
            n.digest = crate::tree::digest::node_digest(p, n.data.as_deref(), &n.stat);
        }
        let new = node.as_ref().map_or(0, |n| n.digest);
        self.digest = Some(self.digest(tree).wrapping_sub(old).wrapping_add(new));
        let prev = self.changes.insert(p.to_string(), Change { zxid, node });
        undo.changes.push((p.to_string(), prev));
        self.order.push_back((zxid, p.to_string()));
    }

    fn rollback(&mut self, zxid: i64, undo: Undo) {
        for (p, prev) in undo.changes.into_iter().rev() {
            match prev {
                Some(c) => self.changes.insert(p, c),
                None => self.changes.remove(&p),
            };
        }
        self.order.retain(|(z, _)| *z != zxid);
        self.digest = undo.digest;
    }

    /// Prepares one write. On error nothing is recorded.
    pub fn prepare(
        &mut self,
        tree: &DataTree,
        who: &Requester,
        req: &Request,
        zxid: i64,
        now: i64,
    ) -> Result<Txn, ZkError> {
        let mut undo = Undo::new(self);
        let r = match req {
            Request::Multi(ops) => Ok(self.prepare_multi(tree, who, ops, zxid, now)),
            Request::CloseSession => Ok(self.prepare_close(tree, who.session, zxid, &mut undo)),
            single => self.prepare_op(tree, who, single, zxid, now, &mut undo),
        };
        if r.is_err() {
            self.rollback(zxid, undo);
        }
        r
    }

    /// A reconfig's transaction, once the membership checks have passed (the engine's
    /// `reconfig.rs`): WRITE on `/zookeeper/config` (super passes), then the node's new
    /// data, version -1, as ZooKeeper's PrepRequestProcessor writes it.
    pub fn prepare_reconfig(
        &mut self,
        tree: &DataTree,
        who: &Requester,
        text: Bytes,
        zxid: i64,
        now: i64,
    ) -> Result<Txn, ZkError> {
        let path = crate::tree::CONFIG_PATH;
        let mut n = self.record(tree, path)?;
        auth::check(&n.acl, perms::WRITE, who.ids)?;
        let mut undo = Undo::new(self);
        n.data = Some(text.clone());
        n.stat.version = -1;
        n.stat.mtime = now;
        n.stat.mzxid = zxid;
        self.add(tree, path, zxid, Some(n), &mut undo);
        Ok(Txn::Reconfig {
            path: path.to_string(),
            data: Some(text),
            version: -1,
        })
    }

    /// A multi: every op prepared in turn against the changes of the ones before it; the
    /// first failure rolls all of them back and the txn lists Error records.
    fn prepare_multi(
        &mut self,
        tree: &DataTree,
        who: &Requester,
        ops: &[Request],
        zxid: i64,
        now: i64,
    ) -> Txn {
        let mut undo = Undo::new(self);
        let mut txns = Vec::with_capacity(ops.len());
        let mut failed = false;
        for o in ops {
            if failed {
                txns.push(Txn::Error {
                    err: ZkError::RuntimeInconsistency.code(),
                });
                continue;
            }
            match self.prepare_op(tree, who, o, zxid, now, &mut undo) {
                Ok(t) => txns.push(t),
                Err(e) => {
                    failed = true;
                    txns.push(Txn::Error { err: e.code() });
                }
            }
        }
        if failed {
            self.rollback(zxid, undo);
        }
        Txn::Multi(txns)
    }

    fn prepare_op(
        &mut self,
        tree: &DataTree,
        who: &Requester,
        req: &Request,
        zxid: i64,
        now: i64,
        undo: &mut Undo,
    ) -> Result<Txn, ZkError> {
        match req {
            Request::Create(c) => self.prepare_create(tree, who, c, zxid, now, undo),
            Request::Delete { path, version } => {
                self.prepare_delete(tree, who, path, Some(*version), zxid, undo)
            }
            Request::DeleteContainer { path } => {
                self.prepare_delete(tree, who, path, None, zxid, undo)
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                path::validate(path).map_err(|_| ZkError::BadArguments)?;
                let mut n = self.record(tree, path)?;
                auth::check(&n.acl, perms::WRITE, who.ids)?;
                let new_len = data.as_ref().map_or(0, |d| d.len() as i64);
                self.check_quota(tree, path, new_len - n.data_len(), 0)?;
                let new_version = check_and_inc(n.stat.version, *version)?;
                n.data = data.clone();
                n.stat.version = new_version;
                n.stat.mtime = now;
                n.stat.mzxid = zxid;
                self.add(tree, path, zxid, Some(n), undo);
                Ok(Txn::SetData {
                    path: path.clone(),
                    data: data.clone(),
                    version: new_version,
                })
            }
            Request::SetAcl { path, acl, version } => {
                path::validate(path).map_err(|_| ZkError::BadArguments)?;
                let acl = auth::fixup(acl, who.ids)?;
                let mut n = self.record(tree, path)?;
                auth::check(&n.acl, perms::ADMIN, who.ids)?;
                let new_version = check_and_inc(n.stat.aversion, *version)?;
                n.stat.aversion = new_version;
                n.acl = Arc::new(acl.clone());
                self.add(tree, path, zxid, Some(n), undo);
                Ok(Txn::SetAcl {
                    path: path.clone(),
                    acl,
                    version: new_version,
                })
            }
            Request::Check { path, version } => {
                path::validate(path).map_err(|_| ZkError::BadArguments)?;
                let n = self.record(tree, path)?;
                auth::check(&n.acl, perms::READ, who.ids)?;
                Ok(Txn::Check {
                    path: path.clone(),
                    version: check_and_inc(n.stat.version, *version)?,
                })
            }
            _ => Err(ZkError::Unimplemented),
        }
    }

    fn prepare_create(
        &mut self,
        tree: &DataTree,
        who: &Requester,
        c: &CreateRequest,
        zxid: i64,
        now: i64,
        undo: &mut Undo,
    ) -> Result<Txn, ZkError> {
        let (kind, mode) = create_kind(c, tree.extended_types(), who.session)?;
        if !c.path.contains('/') || c.path.contains('\0') {
            return Err(ZkError::BadArguments);
        }
        let acl = auth::fixup(&c.acl, who.ids)?;
        let parent_path = path::parent(&c.path).to_string();
        let mut parent = self.record(tree, &parent_path)?;
        auth::check(&parent.acl, perms::CREATE, who.ids)?;
        let mut full = c.path.clone();
        if mode.is_sequential() {
            full.push_str(&format!("{:010}", parent.stat.cversion));
        }
        path::validate(&full).map_err(|_| ZkError::BadArguments)?;
        if self.lookup(tree, &full).is_some() {
            return Err(ZkError::NodeExists);
        }
        if matches!(
            owner_kind(parent.stat.ephemeral_owner, tree.extended_types()),
            OwnerKind::Session(_)
        ) {
            return Err(ZkError::NoChildrenForEphemerals);
        }
        let data_len = c.data.as_ref().map_or(0, |d| d.len() as i64);
        self.check_quota(tree, &full, data_len, 1)?;
        let new_cversion = parent.stat.cversion.wrapping_add(1);
        parent.child_count += 1;
        parent.stat.cversion = new_cversion;
        parent.stat.pzxid = zxid;
        self.add(tree, &parent_path, zxid, Some(parent), undo);
        let owner = match kind {
            CreateKind::Persistent => 0,
            CreateKind::Ephemeral => who.session,
            CreateKind::Container => CONTAINER_OWNER,
            CreateKind::Ttl(ttl) => ttl_owner(ttl),
        };
        let node = Shadow {
            stat: StatPersisted {
                czxid: zxid,
                mzxid: zxid,
                ctime: now,
                mtime: now,
                version: 0,
                cversion: 0,
                aversion: 0,
                ephemeral_owner: owner,
                pzxid: zxid,
            },
            child_count: 0,
            acl: Arc::new(acl.clone()),
            data: c.data.clone(),
            digest: 0,
        };
        self.add(tree, &full, zxid, Some(node), undo);
        let txn_op = match kind {
            CreateKind::Container => op::CREATE_CONTAINER,
            CreateKind::Ttl(_) => op::CREATE_TTL,
            _ if c.op == op::CREATE2 => op::CREATE2,
            _ => op::CREATE,
        };
        Ok(Txn::Create {
            op: txn_op,
            path: full,
            data: c.data.clone(),
            acl,
            kind,
            parent_cversion: new_cversion,
        })
    }

    /// delete (with a version) or deleteContainer (without; only containers and TTL nodes).
    fn prepare_delete(
        &mut self,
        tree: &DataTree,
        who: &Requester,
        p: &str,
        version: Option<i32>,
        zxid: i64,
        undo: &mut Undo,
    ) -> Result<Txn, ZkError> {
        if !p.contains('/') || p.contains('\0') || is_special(p) {
            return Err(ZkError::BadArguments);
        }
        let parent_path = path::parent(p).to_string();
        let mut parent = self.record(tree, &parent_path)?;
        if version.is_some() {
            auth::check(&parent.acl, perms::DELETE, who.ids)?;
        }
        let node = self.record(tree, p)?;
        match version {
            Some(v) => {
                check_and_inc(node.stat.version, v)?;
            }
            None => {
                let kind = owner_kind(node.stat.ephemeral_owner, tree.extended_types());
                if !matches!(kind, OwnerKind::Container | OwnerKind::Ttl(_)) {
                    return Err(ZkError::BadVersion);
                }
            }
        }
        if node.child_count > 0 {
            return Err(ZkError::NotEmpty);
        }
        parent.child_count -= 1;
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        self.add(tree, &parent_path, zxid, Some(parent), undo);
        self.add(tree, p, zxid, None, undo);
        Ok(Txn::Delete {
            op: if version.is_some() {
                op::DELETE
            } else {
                op::DELETE_CONTAINER
            },
            path: p.to_string(),
        })
    }

    /// closeSession: every ephemeral of the session, including ones still on their way.
    fn prepare_close(&mut self, tree: &DataTree, session: i64, zxid: i64, undo: &mut Undo) -> Txn {
        // Candidates: the tree's ephemerals and every path with a pending change; kept if the
        // node as it will be is this session's ephemeral.
        let mut doomed: Vec<String> = tree.ephemerals_of(session);
        doomed.extend(self.changes.keys().cloned());
        doomed.sort();
        doomed.dedup();
        doomed.retain(|p| {
            self.lookup(tree, p)
                .is_some_and(|n| n.stat.ephemeral_owner == session)
        });
        doomed.sort();
        for p in &doomed {
            let parent_path = path::parent(p).to_string();
            if let Some(mut parent) = self.lookup(tree, &parent_path) {
                parent.child_count -= 1;
                parent.stat.pzxid = parent.stat.pzxid.max(zxid);
                self.add(tree, &parent_path, zxid, Some(parent), undo);
            }
            self.add(tree, p, zxid, None, undo);
        }
        Txn::CloseSession { paths: doomed }
    }
}

/// `/`, `/zookeeper`, `/zookeeper/quota` and `/zookeeper/config` cannot be deleted.
fn is_special(p: &str) -> bool {
    matches!(
        p,
        "/" | crate::tree::ZOOKEEPER_PATH | crate::tree::QUOTA_PATH | crate::tree::CONFIG_PATH
    )
}

/// The node kind a create asks for, with ZooKeeper's checks of flags and TTL.
fn create_kind(
    c: &CreateRequest,
    extended: bool,
    _session: i64,
) -> Result<(CreateKind, CreateMode), ZkError> {
    let mode = CreateMode::from_flags(c.flags).ok_or(ZkError::BadArguments)?;
    if mode.is_ttl() && !extended {
        return Err(ZkError::Unimplemented);
    }
    if mode.is_ttl() != (c.op == op::CREATE_TTL) {
        return Err(ZkError::BadArguments);
    }
    let kind = if mode.is_ttl() {
        if c.ttl <= 0 || c.ttl > MAX_TTL {
            return Err(ZkError::BadArguments);
        }
        CreateKind::Ttl(c.ttl)
    } else if mode.is_container() {
        CreateKind::Container
    } else if mode.is_ephemeral() {
        CreateKind::Ephemeral
    } else {
        CreateKind::Persistent
    };
    if c.op == op::CREATE_CONTAINER && kind != CreateKind::Container {
        return Err(ZkError::BadArguments);
    }
    Ok((kind, mode))
}

/// ZooKeeper's checkAndIncVersion: -1 matches any version; the next version wraps past -1.
fn check_and_inc(current: i32, expected: i32) -> Result<i32, ZkError> {
    if expected != -1 && expected != current {
        return Err(ZkError::BadVersion);
    }
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::acl_cache::open_acl;
    use crate::txn::TxnHeader;
    use bytes::Bytes;

    fn create(p: &str, flags: i32) -> Request {
        Request::Create(CreateRequest {
            op: op::CREATE2,
            path: p.into(),
            data: Some(Bytes::from_static(b"x")),
            acl: open_acl(),
            flags,
            ttl: -1,
        })
    }

    struct Fixture {
        tree: DataTree,
        prep: Prep,
        zxid: i64,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                tree: DataTree::new(true),
                prep: Prep::new(),
                zxid: 0,
            }
        }
        /// Prepares without applying (the txn stays outstanding).
        fn prep(&mut self, req: &Request) -> Result<Txn, ZkError> {
            self.zxid += 1;
            let who = Requester {
                session: 7,
                ids: &[],
            };
            self.prep.prepare(&self.tree, &who, req, self.zxid, 100)
        }
        fn apply(&mut self, txn: &Txn, zxid: i64) {
            let hdr = TxnHeader {
                client_id: 7,
                cxid: 0,
                zxid,
                time: 100,
                op: txn.op(),
            };
            self.tree.apply(&hdr, txn, &mut Vec::new());
            self.prep.applied(zxid);
        }
    }

    #[test]
    fn sequence_numbers_see_outstanding_creates() {
        let mut f = Fixture::new();
        f.prep(&create("/q", 0)).unwrap();
        let a = f.prep(&create("/q/n-", 2)).unwrap();
        let b = f.prep(&create("/q/n-", 2)).unwrap();
        let path = |t: &Txn| match t {
            Txn::Create { path, .. } => path.clone(),
            _ => panic!(),
        };
        assert_eq!(path(&a), "/q/n-0000000000");
        assert_eq!(path(&b), "/q/n-0000000001");
        assert_eq!(f.prep(&create("/q", 0)), Err(ZkError::NodeExists));
    }

    #[test]
    fn error_codes_in_zookeeper_order() {
        let mut f = Fixture::new();
        assert_eq!(f.prep(&create("/a/b", 0)), Err(ZkError::NoNode));
        assert_eq!(f.prep(&create("/a/", 0)), Err(ZkError::NoNode));
        assert_eq!(
            f.prep(&create("/zookeeper/", 0)),
            Err(ZkError::BadArguments)
        );
        assert_eq!(f.prep(&create("/a", 9)), Err(ZkError::BadArguments));
        let t = f.prep(&create("/e", 1)).unwrap();
        f.apply(&t, f.zxid);
        assert_eq!(
            f.prep(&create("/e/c", 0)),
            Err(ZkError::NoChildrenForEphemerals)
        );
        let del = |p: &str, v| Request::Delete {
            path: p.into(),
            version: v,
        };
        assert_eq!(f.prep(&del("/e", 5)), Err(ZkError::BadVersion));
        assert_eq!(f.prep(&del("/zookeeper", -1)), Err(ZkError::BadArguments));
        let t = f.prep(&create("/p", 0)).unwrap();
        f.apply(&t, f.zxid);
        let t = f.prep(&create("/p/c", 0)).unwrap();
        f.apply(&t, f.zxid);
        assert_eq!(f.prep(&del("/p", -1)), Err(ZkError::NotEmpty));
        assert_eq!(f.prep(&del("/nope", -1)), Err(ZkError::NoNode));
    }

    #[test]
    fn failed_multi_rolls_back_its_changes() {
        let mut f = Fixture::new();
        let m = Request::Multi(vec![
            create("/m", 0),
            create("/m", 0),
            Request::Check {
                path: "/m".into(),
                version: 0,
            },
        ]);
        let t = f.prep(&m).unwrap();
        match t {
            Txn::Multi(subs) => {
                assert!(matches!(subs[0], Txn::Create { .. }));
                assert_eq!(subs[1], Txn::Error { err: -110 });
                assert_eq!(subs[2], Txn::Error { err: -2 });
            }
            _ => panic!(),
        }
        assert_eq!(f.prep.outstanding(), 0);
        assert!(f.prep(&create("/m", 0)).is_ok());
    }

    #[test]
    fn versions_wrap_like_zookeeper() {
        assert_eq!(check_and_inc(i32::MAX, -1), Ok(i32::MIN));
        assert_eq!(check_and_inc(-2, -1), Ok(0));
        assert_eq!(check_and_inc(3, 4), Err(ZkError::BadVersion));
    }

    #[test]
    fn close_session_lists_pending_ephemerals() {
        let mut f = Fixture::new();
        f.prep(&create("/e1", 1)).unwrap();
        match f.prep(&Request::CloseSession).unwrap() {
            Txn::CloseSession { paths } => assert_eq!(paths, vec!["/e1"]),
            _ => panic!(),
        }
    }
}
