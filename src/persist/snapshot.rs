//! The snapshot file (ZooKeeper's FileSnap + SerializeUtils + DataTree.serialize).
//!
//! Layout:
//!
//! ```text
//! FileHeader    int magic "ZKSN", int version 2, long dbid -1                   16 bytes
//! sessions      int count; then per session: long id, int timeout
//! ACL cache     int count; then per entry: long id, vector<ACL>
//! nodes         per node, parents before children (depth-first pre-order, root first):
//!                 ustring path   (the root is "", its children "/a", ...)
//!                 buffer  data
//!                 long    acl    (ACL cache id; -1 is world:anyone with every permission)
//!                 StatPersisted  (60 bytes, see `crate::jute::records`)
//!               then ustring "/" as the end marker
//! seal          long Adler-32 of every byte before it, then ustring "/"
//! zxid digest   long zxid, int digest version 2, long tree digest
//! seal          long Adler-32 of every byte before it, then ustring "/"
//! ```
//!
//! The same state travels on a learner connection after SNAP (ZooKeeper's
//! `ZKDatabase.serializeSnapshot` then `writeString("BenWasHere")`): the sessions, ACL cache
//! and nodes above with no file header and no seals, then ustring "BenWasHere".
//!
//! A reader that finds the first seal and nothing after it (ZooKeeper before 3.6) has no
//! digest. The zxid digest is taken when the walk ends, so for a fuzzy snapshot its zxid
//! can be past the file's name; recovery checks the digest when replay reaches that zxid. A file whose last five bytes are not `00 00 00 01 '/'` is not a complete snapshot.

use super::{file_header, Error, SNAP_DBID, SNAP_MAGIC};
use crate::jute::records::{read_acls, write_acls, Acl, StatPersisted};
use crate::jute::{Reader, Record, Writer};
use crate::tree::acl_cache::OPEN_ACL_ID;
use crate::tree::load::Loader;
use crate::tree::DataTree;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;

/// The session table as snapshots hold it: (id, timeout).
pub type SessionList = Vec<(i64, i32)>;

/// A snapshot in the making: a depth-first walk that can stop after any node and resume
/// after the tree has changed (a *fuzzy* snapshot, as ZooKeeper's). Each node is written as
/// it is when visited; nodes created under an already visited parent are missed and nodes
/// deleted before their visit are skipped. Replaying the log from the zxid at the start
/// (the file's name) converges to the tree as it is at the end.
pub struct Builder {
    zxid: i64,
    head: Writer,
    /// The walk: per open node, the last child name visited. Resuming "after that name"
    /// needs no copy of a child list, so a node with a million children costs nothing
    /// extra, and children created or deleted meanwhile are simply met or missed.
    stack: Vec<(String, Option<String>)>,
    root_done: bool,
    /// Serialized nodes, one chunk per step: no large buffer is ever copied to grow it.
    nodes: Vec<Bytes>,
    /// Every ACL list a written node refers to (ids are never reused, so the list an id
    /// had when its node was written is the one it has).
    acls: BTreeMap<i64, Arc<Vec<Acl>>>,
    pub visited: usize,
}

impl Builder {
    /// Starts a snapshot of `tree` (applied up to `zxid`) and the session table.
    pub fn new(sessions: &SessionList, zxid: i64) -> Builder {
        let mut head = Writer::new();
        head.raw(&file_header(SNAP_MAGIC, SNAP_DBID));
        head.i32(sessions.len() as i32);
        for (id, timeout) in sessions {
            head.i64(*id).i32(*timeout);
        }
        Builder {
            zxid,
            head,
            stack: Vec::new(),
            root_done: false,
            nodes: Vec::new(),
            acls: BTreeMap::new(),
            visited: 0,
        }
    }

    pub fn zxid(&self) -> i64 {
        self.zxid
    }

    /// Writes up to `budget` more nodes; true once every node has been visited.
    ///
    /// Per slice, each open parent is looked up once and its children are walked in one
    /// B-tree range; per node there is one map lookup (through a reused path buffer) and
    /// the serialization itself.
    pub fn step(&mut self, tree: &DataTree, budget: usize) -> bool {
        let mut w = Writer::with_capacity(budget.clamp(1, 4096) * 192);
        let mut left = budget;
        if !self.root_done {
            self.root_done = true;
            if let Some(n) = tree.get("/") {
                self.write_node(&mut w, tree, "", n);
                self.stack.push(("/".to_string(), None));
            }
            left = left.saturating_sub(1);
        }
        let mut child = String::new();
        while left > 0 {
            let Some((parent, mut after)) = self.stack.pop() else {
                break;
            };
            let Some(names) = tree.child_names(&parent) else {
                continue;
            };
            let from = match &after {
                None => Unbounded,
                Some(a) => Excluded(a.as_str()),
            };
            let mut last: Option<&str> = None;
            let mut descend = false;
            let mut exhausted = true;
            for name in names.range::<str, _>((from, Unbounded)) {
                if left == 0 {
                    exhausted = false;
                    break;
                }
                left -= 1;
                last = Some(name);
                child.clear();
                if parent != "/" {
                    child.push_str(&parent);
                }
                child.push('/');
                child.push_str(name);
                if let Some(n) = tree.get(&child) {
                    self.write_node(&mut w, tree, &child, n);
                    if n.child_count > 0 {
                        descend = true;
                        exhausted = false;
                        break;
                    }
                }
            }
            if !exhausted {
                let a = after.get_or_insert_with(String::new);
                a.clear();
                a.push_str(last.expect("a child was visited"));
                self.stack.push((parent, after));
            }
            if descend {
                self.stack.push((child.clone(), None));
            }
        }
        if !w.is_empty() {
            self.nodes.push(w.into_bytes());
        }
        self.stack.is_empty()
    }

    fn write_node(&mut self, w: &mut Writer, tree: &DataTree, p: &str, n: &crate::tree::Node) {
        w.string(p);
        w.buffer(n.data.as_deref()).i64(n.acl);
        n.stat.write(w);
        if n.acl != OPEN_ACL_ID {
            self.acls
                .entry(n.acl)
                .or_insert_with(|| tree.acls.get(n.acl));
        }
        self.visited += 1;
    }

    /// Completes the snapshot; `tree` gives the zxid and digest at the end of the walk.
    /// Cheap: checksums and concatenation happen in [`Parts::write_to`].
    pub fn finish(self, tree: &DataTree) -> Parts {
        let mut head = self.head;
        head.i32(self.acls.len() as i32);
        for (id, list) in &self.acls {
            head.i64(*id);
            write_acls(&mut head, list);
        }
        Parts {
            zxid: self.zxid,
            head: head.into_bytes(),
            nodes: self.nodes,
            tail: Tail {
                zxid: tree.last_zxid,
                digest: tree.digest,
            },
        }
    }
}

/// What a snapshot file holds after its nodes: the zxid and tree digest at the end of the
/// walk (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Tail {
    zxid: i64,
    digest: u64,
}

impl Tail {
    pub fn new(zxid: i64, digest: u64) -> Tail {
        Tail { zxid, digest }
    }
}

/// The part of a SNAP state that is also a snapshot file's body (sessions, ACL cache,
/// nodes; no end marker, no signature): a learner writes it as it came. `None` if the
/// state does not end as one does.
pub fn stream_body(state: &Bytes) -> Option<Bytes> {
    let mut end = END_MARKER.to_vec();
    end.extend_from_slice(&(SIGNATURE.len() as i32).to_be_bytes());
    end.extend_from_slice(SIGNATURE.as_bytes());
    state
        .ends_with(&end)
        .then(|| state.slice(..state.len() - end.len()))
}

/// Writes a snapshot file piece by piece, keeping its running Adler-32 and length.
#[derive(Default)]
pub struct Sealer {
    sum: adler2::Adler32,
    pub written: u64,
}

impl Sealer {
    pub fn put(&mut self, out: &mut impl std::io::Write, b: &[u8]) -> std::io::Result<()> {
        self.sum.write_slice(b);
        self.written += b.len() as u64;
        out.write_all(b)
    }

    /// The end marker, seal, zxid digest and second seal; the file is then complete.
    pub fn finish(&mut self, out: &mut impl std::io::Write, tail: &Tail) -> std::io::Result<()> {
        self.put(out, &END_MARKER)?;
        self.seal(out)?;
        let mut d = tail.zxid.to_be_bytes().to_vec();
        d.extend_from_slice(&crate::tree::digest::DIGEST_VERSION.to_be_bytes());
        d.extend_from_slice(&(tail.digest as i64).to_be_bytes());
        self.put(out, &d)?;
        self.seal(out)
    }

    fn seal(&mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut b = (self.sum.checksum() as i64).to_be_bytes().to_vec();
        b.extend_from_slice(&END_MARKER);
        self.put(out, &b)
    }
}

/// ustring "/": ends the node list, and follows each seal.
const END_MARKER: [u8; 5] = [0, 0, 0, 1, b'/'];

/// A finished snapshot, to be sealed and written by the snapshot thread.
pub struct Parts {
    pub zxid: i64,
    head: Bytes,
    nodes: Vec<Bytes>,
    tail: Tail,
}

impl Parts {
    /// Writes the whole file: head, nodes, seal, zxid digest, seal. Returns the bytes written.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<u64> {
        let mut s = Sealer::default();
        s.put(out, &self.head)?;
        for chunk in &self.nodes {
            s.put(out, chunk)?;
        }
        s.finish(out, &self.tail)?;
        Ok(s.written)
    }

    /// The file header, sessions and ACL cache.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The serialized nodes, in chunks.
    pub fn nodes(&self) -> &[Bytes] {
        &self.nodes
    }

    pub fn tail(&self) -> Tail {
        self.tail
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let len: usize = self.nodes.iter().map(Bytes::len).sum();
        let mut v = Vec::with_capacity(self.head.len() + len + 64);
        self.write_to(&mut v).expect("writing to memory");
        v
    }
}

/// Serializes the tree and sessions at once, as the snapshot named `snapshot.<zxid>`.
pub fn encode(tree: &DataTree, sessions: &SessionList, zxid: i64) -> Vec<u8> {
    let mut b = Builder::new(sessions, zxid);
    b.step(tree, usize::MAX);
    b.finish(tree).to_vec()
}

/// Does the file end as a complete snapshot does?
pub fn looks_complete(file: &[u8]) -> bool {
    file.len() >= 10 && file[file.len() - 5..] == [0, 0, 0, 1, b'/']
}

pub struct Loaded {
    pub tree: DataTree,
    pub sessions: SessionList,
    /// (zxid, tree digest) recorded at the end of the snapshot, when present.
    pub digest: Option<(i64, u64)>,
}

/// Reads a snapshot file; any inconsistency is an error naming what is wrong.
/// Takes the file's bytes by value: node data is copied out of them, and they are dropped
/// when loading ends.
pub fn decode(file: Bytes, extended_types: bool) -> Result<Loaded, Error> {
    decode_with(file, extended_types, Checksum::default)
}

/// The Adler-32 of a snapshot file's first `upto` bytes.
#[derive(Clone, Default)]
pub struct Checksum {
    upto: usize,
    sum: adler2::Adler32,
}

impl Checksum {
    /// Of `file[..n]`: recovery computes it on another thread while the nodes decode,
    /// with `n` from [`first_seal_offset`].
    pub fn of_prefix(file: &[u8], n: usize) -> Checksum {
        let mut c = Checksum::default();
        c.extend_to(file, n.min(file.len()));
        c
    }

    /// Of `file[..n]`, continuing from what is already summed when `n` is past it.
    fn extend_to(&mut self, file: &[u8], n: usize) -> u32 {
        if n < self.upto {
            *self = Checksum::default();
        }
        self.sum.write_slice(&file[self.upto..n]);
        self.upto = n;
        self.sum.checksum()
    }
}

/// Where the first seal starts in a snapshot that ends with a zxid digest (every snapshot
/// since ZooKeeper 3.6): before the seal (13 bytes), the digest (20) and the last seal (13).
pub fn first_seal_offset(len: usize) -> usize {
    len.saturating_sub(46)
}

/// [`decode`], with `prefix` giving the checksum of the file's first bytes when the first
/// seal is reached (the more it covers, the less is summed after the nodes).
pub fn decode_with(
    file: Bytes,
    extended_types: bool,
    prefix: impl FnOnce() -> Checksum,
) -> Result<Loaded, Error> {
    if !looks_complete(&file) {
        return Err(Error::Unsealed);
    }
    let mut r = Reader::new(file.clone());
    let magic = r.i32()?;
    if magic != SNAP_MAGIC {
        return Err(Error::BadMagic {
            magic,
            what: "snapshot",
        });
    }
    r.i32()?;
    r.i64()?;
    let (sessions, mut tree) = read_state(&mut r, extended_types)?;
    let mut sum = prefix();
    check_seal(&file, &mut r, &mut sum)?;
    let digest = if r.remaining() > 0 {
        let zxid = r.i64()?;
        r.i32()?;
        let d = r.i64()? as u64;
        check_seal(&file, &mut r, &mut sum)?;
        (zxid > 0).then_some((zxid, d))
    } else {
        None
    };
    tree.finish_load();
    Ok(Loaded {
        tree,
        sessions,
        digest,
    })
}

/// Sessions, ACL cache and nodes, up to and including the "/" end marker.
fn read_state(r: &mut Reader, extended_types: bool) -> Result<(SessionList, DataTree), Error> {
    let count = r.i32()?;
    if count < 0 {
        return Err(Error::Invalid(format!("negative session count {count}")));
    }
    let mut sessions = Vec::new();
    for _ in 0..count {
        sessions.push((r.i64()?, r.i32()?));
    }
    let mut tree = Loader::new(DataTree::empty(extended_types));
    let acl_count = r.i32()?;
    for _ in 0..acl_count.max(0) {
        let id = r.i64()?;
        let list = read_acls(r)?;
        tree.tree_mut().acls.load(id, list);
    }
    loop {
        let p = r.string()?;
        if p == "/" {
            break;
        }
        let data = r.buffer_owned()?;
        let acl = r.i64()?;
        let stat = StatPersisted::read(r)?;
        let p = if p.is_empty() { "/".to_string() } else { p };
        tree.node(p, data, acl, stat).map_err(Error::Invalid)?;
    }
    Ok((sessions, tree.finish().map_err(Error::Invalid)?))
}

/// Marks the end of the state sent after SNAP.
pub const SIGNATURE: &str = "BenWasHere";

impl Parts {
    /// The state as sent after SNAP on a learner connection (see the module doc).
    pub fn to_stream(&self) -> Vec<u8> {
        let len: usize = self.nodes.iter().map(Bytes::len).sum();
        let mut v = Vec::with_capacity(self.head.len() + len + 16);
        v.extend_from_slice(&self.head[16..]);
        for chunk in &self.nodes {
            v.extend_from_slice(chunk);
        }
        v.extend_from_slice(&END_MARKER);
        v.extend_from_slice(&(SIGNATURE.len() as i32).to_be_bytes());
        v.extend_from_slice(SIGNATURE.as_bytes());
        v
    }
}

/// The state at one zxid, frozen: what a leader sends after SNAP, taken on the member task
/// in microseconds (the node map is copy-on-write, see `tree/nodes.rs`) and serialized on
/// another thread while the tree keeps changing. Unlike [`Builder`]'s walk it is exact,
/// not fuzzy: every node as it was at `zxid`.
pub struct View {
    pub zxid: i64,
    sessions: SessionList,
    acls: Vec<(i64, Arc<Vec<Acl>>)>,
    nodes: crate::tree::nodes::Frozen<crate::tree::Node>,
    /// The tree digest at `zxid`.
    pub digest: u64,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("zxid", &format_args!("0x{:x}", self.zxid))
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl View {
    /// Freezes `tree` (applied up to `zxid`) and the session table.
    pub fn of(tree: &mut DataTree, sessions: SessionList, zxid: i64) -> View {
        View {
            zxid,
            sessions,
            acls: tree.acls.entries(),
            nodes: tree.freeze_nodes(),
            digest: tree.digest,
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Serializes the SNAP state (the layout of [`Parts::to_stream`]) and hands it to `out`
    /// in chunks of about `chunk` bytes. Stops, returning false, as soon as `out` does.
    pub fn write_stream(&self, chunk: usize, mut out: impl FnMut(Bytes) -> bool) -> bool {
        if !self.write_body(chunk, &mut out) {
            return false;
        }
        let mut w = Writer::new();
        w.raw(&END_MARKER);
        w.string(SIGNATURE);
        out(w.into_bytes())
    }

    /// A snapshot file's body for this state (sessions, ACL cache, nodes; what
    /// [`stream_body`] takes from a SNAP state), to `out` in chunks of about `chunk` bytes.
    /// A file written from a frozen view is exact, not fuzzy: its tail is `zxid` and
    /// `digest`. Stops, returning false, as soon as `out` does.
    ///
    /// Nodes go parents first, depth first (what both servers' loaders take fastest;
    /// Apache ZooKeeper needs only a node's parent before it), siblings in no particular
    /// order, as ZooKeeper writes them: see [`View::depth_first`].
    pub fn write_body(&self, chunk: usize, out: &mut impl FnMut(Bytes) -> bool) -> bool {
        let mut w = Writer::with_capacity(chunk + 4096);
        w.i32(self.sessions.len() as i32);
        for (id, timeout) in &self.sessions {
            w.i64(*id).i32(*timeout);
        }
        w.i32(self.acls.len() as i32);
        for (id, list) in &self.acls {
            w.i64(*id);
            write_acls(&mut w, list);
        }
        let order = self.depth_first();
        for (i, &(p, n)) in order.iter().enumerate() {
            // The nodes lie all over the heap: ask for the ones coming next while this one
            // is written (path and node a few nodes ahead, then the data they point to).
            if let Some(&(p, n)) = order.get(i + 16) {
                prefetch(p.as_ptr());
                prefetch(n);
            }
            if let Some(d) = order.get(i + 8).and_then(|(_, n)| n.data.as_ref()) {
                prefetch(d.as_ptr());
            }
            w.string(if p == "/" { "" } else { p });
            w.buffer(n.data.as_deref()).i64(n.acl);
            n.stat.write(&mut w);
            if w.len() >= chunk {
                let full = std::mem::replace(&mut w, Writer::with_capacity(chunk + 4096));
                if !out(full.into_bytes()) {
                    return false;
                }
            }
        }
        w.is_empty() || out(w.into_bytes())
    }

    pub fn tail(&self) -> Tail {
        Tail::new(self.zxid, self.digest)
    }

    /// Every node, depth first, in linear time: a frozen view has no child lists, so each
    /// node's index is filed under its parent's path, then the walk starts at the root.
    /// (Sorting the paths instead, with `/` below every other byte, cost two thirds of the
    /// snapshot thread on a tree of a million nodes.) A node whose parent is missing,
    /// which a tree never has, comes last, and the reader refuses the state.
    fn depth_first(&self) -> Vec<(&str, &crate::tree::Node)> {
        let mut all: Vec<(&str, &crate::tree::Node)> = Vec::with_capacity(self.nodes.len());
        all.extend(self.nodes.iter());
        let mut kids: HashMap<&str, Vec<u32>, ahash::RandomState> = HashMap::default();
        let mut stack = Vec::new();
        for (i, (p, _)) in all.iter().enumerate() {
            if let Some((p, _)) = all.get(i + 16) {
                prefetch(p.as_ptr());
            }
            if *p == "/" {
                stack.push(i as u32);
            } else {
                kids.entry(crate::tree::path::parent(p))
                    .or_default()
                    .push(i as u32);
            }
        }
        let mut order = Vec::with_capacity(all.len());
        while let Some(i) = stack.pop() {
            order.push(i);
            if let Some(&next) = stack.len().checked_sub(8).and_then(|k| stack.get(k)) {
                prefetch(all[next as usize].1);
            }
            let (p, n) = all[i as usize];
            // A leaf (most nodes) is known by its count, without hashing its path.
            if n.child_count > 0 {
                if let Some(children) = kids.remove(p) {
                    stack.extend(children);
                }
            }
        }
        order.extend(kids.into_values().flatten());
        order.into_iter().map(|i| all[i as usize]).collect()
    }

    /// The whole SNAP state in one buffer.
    pub fn to_stream(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_stream(1 << 20, |b| {
            v.extend_from_slice(&b);
            true
        });
        v
    }
}

/// Asks the CPU to bring the cache line at `p` in ahead of its use (a hint: nothing is
/// read, and a bad address is ignored).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 (SSE, in every x86_64 CPU) never faults and reads nothing into
    // the program.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Reads the state sent after SNAP.
pub fn decode_stream(b: Bytes, extended_types: bool) -> Result<Loaded, Error> {
    let mut r = Reader::new(b);
    let (sessions, mut tree) = read_state(&mut r, extended_types)?;
    let sig = r.string()?;
    if sig != SIGNATURE {
        return Err(Error::Invalid(format!(
            "bad signature {sig:?} after the snapshot"
        )));
    }
    tree.finish_load();
    Ok(Loaded {
        tree,
        sessions,
        digest: None,
    })
}

/// Length of the SNAP state at the start of `b` once it has all arrived (`None` until
/// then), so the transport can cut it from the stream without decoding it.
pub fn stream_len(b: &[u8]) -> Result<Option<usize>, Error> {
    StreamScan::default().advance(b)
}

/// Measures a SNAP state as it arrives, in linear time: [`StreamScan::advance`] is called
/// with the whole buffer after every read and resumes at the first record it could not
/// finish (a session, an ACL entry, a node), so no byte is scanned twice but for the one
/// incomplete record at the end. Lengths are checked, never trusted: nothing is allocated.
#[derive(Debug, Default, Clone)]
pub struct StreamScan {
    /// Where the next record starts.
    at: usize,
    phase: ScanPhase,
}

#[derive(Debug, Default, Clone, Copy)]
enum ScanPhase {
    #[default]
    SessionCount,
    Sessions(usize),
    AclCount,
    Acls(i32),
    Nodes,
    Signature,
    Done,
}

impl StreamScan {
    /// Bytes the state takes once it has all arrived in `b` (which grows between calls and
    /// keeps its start).
    pub fn advance(&mut self, b: &[u8]) -> Result<Option<usize>, Error> {
        loop {
            let mut at = self.at;
            let next = match self.phase {
                ScanPhase::SessionCount => match int(b, &mut at) {
                    None => return Ok(None),
                    Some(n) => ScanPhase::Sessions(n.max(0) as usize),
                },
                ScanPhase::Sessions(n) => {
                    at = at.saturating_add(n.saturating_mul(12));
                    if b.len() < at {
                        return Ok(None);
                    }
                    ScanPhase::AclCount
                }
                ScanPhase::AclCount => match int(b, &mut at) {
                    None => return Ok(None),
                    Some(n) => ScanPhase::Acls(n.max(0)),
                },
                ScanPhase::Acls(0) => ScanPhase::Nodes,
                ScanPhase::Acls(left) => match acl_entry(b, &mut at)? {
                    None => return Ok(None),
                    Some(()) => ScanPhase::Acls(left - 1),
                },
                ScanPhase::Nodes => match node_record(b, &mut at)? {
                    None => return Ok(None),
                    Some(true) => ScanPhase::Signature,
                    Some(false) => ScanPhase::Nodes,
                },
                ScanPhase::Signature => {
                    let Some(l) = int(b, &mut at) else {
                        return Ok(None);
                    };
                    skip(&mut at, l)?;
                    if b.len() < at {
                        return Ok(None);
                    }
                    ScanPhase::Done
                }
                ScanPhase::Done => return Ok(Some(self.at)),
            };
            self.at = at;
            self.phase = next;
        }
    }
}

fn int(b: &[u8], at: &mut usize) -> Option<i32> {
    let x = b.get(*at..at.checked_add(4)?)?;
    *at += 4;
    Some(i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn skip(at: &mut usize, n: i32) -> Result<(), Error> {
    if !(-1..=(64 << 20)).contains(&n) {
        return Err(Error::Invalid(format!("length {n} in the SNAP state")));
    }
    *at += n.max(0) as usize;
    Ok(())
}

/// One ACL cache entry: long id, vector of (int perms, ustring scheme, ustring id).
fn acl_entry(b: &[u8], at: &mut usize) -> Result<Option<()>, Error> {
    *at += 8;
    let Some(n) = int(b, at) else {
        return Ok(None);
    };
    for _ in 0..n.max(0) {
        *at += 4;
        for _ in 0..2 {
            let Some(l) = int(b, at) else {
                return Ok(None);
            };
            skip(at, l)?;
        }
    }
    Ok((b.len() >= *at).then_some(()))
}

/// One node (ustring path, buffer data, long acl, StatPersisted), or the "/" end marker
/// (`Some(true)`).
fn node_record(b: &[u8], at: &mut usize) -> Result<Option<bool>, Error> {
    let Some(l) = int(b, at) else {
        return Ok(None);
    };
    let start = *at;
    skip(at, l)?;
    if b.len() < *at {
        return Ok(None);
    }
    if l == 1 && b[start] == b'/' {
        return Ok(Some(true));
    }
    let Some(d) = int(b, at) else {
        return Ok(None);
    };
    skip(at, d)?;
    *at += 8 + StatPersisted::LEN;
    Ok((b.len() >= *at).then_some(false))
}

fn check_seal(file: &[u8], r: &mut Reader, sum: &mut Checksum) -> Result<(), Error> {
    let at = r.position();
    let stored = r.i64()?;
    let slash = r.string()?;
    if stored != sum.extend_to(file, at) as i64 || slash != "/" {
        return Err(Error::Checksum { at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::op;
    use crate::tree::acl_cache;
    use crate::txn::{CreateKind, Txn, TxnHeader};

    /// Inputs the fuzzer (`fuzz/fuzz_targets/snap_stream.rs`) found making the loader
    /// panic; each must now be a plain error.
    #[test]
    fn fuzzer_finds_decode_to_errors() {
        let found: [&[u8]; 1] = [include_bytes!(
            "../../fuzz/regressions/snap_stream/open-node-missing.bin"
        )];
        for input in found {
            let b = Bytes::copy_from_slice(input);
            assert!(decode_stream(b, false).is_err());
        }
    }

    #[test]
    fn a_node_listed_twice_or_a_malformed_path_is_an_error() {
        use crate::jute::records::StatPersisted;
        use crate::tree::load::Loader;
        let load = |paths: &[&str]| {
            let mut l = Loader::new(DataTree::empty(false));
            for p in paths {
                l.node(p.to_string(), None, -1, StatPersisted::default())?;
            }
            l.finish()
        };
        assert!(load(&["/", "/a", "/a/b"]).is_ok());
        assert!(load(&["/", "/a", "/a"]).is_err());
        assert!(load(&["/", "a"]).is_err());
        assert!(load(&["/", "/a/"]).is_err());
        assert!(load(&["/", "/a//b"]).is_err());
    }

    #[test]
    fn round_trip_keeps_every_node_stat_acl_and_digest() {
        let mut t = DataTree::new(false);
        let mut ev = Vec::new();
        let hdr = |z| TxnHeader {
            client_id: 9,
            cxid: 0,
            zxid: z,
            time: z * 100,
            op: 1,
        };
        for (z, p, kind) in [
            (1, "/a", CreateKind::Persistent),
            (2, "/a/b", CreateKind::Ephemeral),
            (3, "/c", CreateKind::Container),
        ] {
            let txn = Txn::Create {
                op: op::CREATE,
                path: p.into(),
                data: Some(Bytes::from(p.to_string())),
                acl: if z == 1 {
                    acl_cache::read_acl()
                } else {
                    acl_cache::open_acl()
                },
                kind,
                parent_cversion: -1,
            };
            t.apply(&hdr(z), &txn, &mut ev);
        }
        let bytes = encode(&t, &vec![(9, 30000)], 3);
        let l = decode(Bytes::from(bytes.clone()), false).unwrap();
        assert_eq!(l.sessions, vec![(9, 30000)]);
        assert_eq!(l.digest, Some((3, t.digest)));
        assert_eq!(l.tree.digest, t.digest);
        assert_eq!(l.tree.node_count(), t.node_count());
        for p in ["/", "/a", "/a/b", "/c", "/zookeeper/config"] {
            let (x, y) = (t.get(p).unwrap(), l.tree.get(p).unwrap());
            assert_eq!(
                (x.stat, &x.data, t.child_names(p), x.child_count),
                (y.stat, &y.data, l.tree.child_names(p), y.child_count),
                "{p}"
            );
            assert_eq!(t.acl_of(x), l.tree.acl_of(y), "{p}");
        }
        assert_eq!(l.tree.ephemerals_of(9), vec!["/a/b".to_string()]);
        // Written in slices, it reads back the same.
        let mut b = Builder::new(&vec![(9, 30000)], 3);
        while !b.step(&t, 2) {}
        assert_eq!(b.finish(&t).to_vec(), bytes);
        let mut broken = bytes.clone();
        broken[40] ^= 1;
        assert!(decode(Bytes::from(broken), false).is_err());
        assert!(decode(Bytes::copy_from_slice(&bytes[..bytes.len() - 3]), false).is_err());
        // The SNAP state on a learner connection: cut from the stream at exactly its end.
        let mut b = Builder::new(&vec![(9, 30000)], 3);
        b.step(&t, usize::MAX);
        let mut stream = b.finish(&t).to_stream();
        let n = stream.len();
        for cut in 0..n {
            assert_eq!(stream_len(&stream[..cut]), Ok(None), "cut at {cut}");
        }
        stream.extend_from_slice(b"next packet");
        assert_eq!(stream_len(&stream), Ok(Some(n)));
        let s = decode_stream(Bytes::copy_from_slice(&stream[..n]), false).unwrap();
        assert_eq!(s.sessions, vec![(9, 30000)]);
        assert_eq!(s.tree.digest, t.digest);
        assert_eq!(s.tree.ephemerals_of(9), vec!["/a/b".to_string()]);
    }

    fn create(t: &mut DataTree, zxid: i64, p: &str, acl: Vec<Acl>) {
        let hdr = TxnHeader {
            client_id: 9,
            cxid: 0,
            zxid,
            time: zxid * 100,
            op: 1,
        };
        let txn = Txn::Create {
            op: op::CREATE,
            path: p.into(),
            data: Some(Bytes::from(p.to_string())),
            acl,
            kind: CreateKind::Persistent,
            parent_cversion: -1,
        };
        t.apply(&hdr, &txn, &mut Vec::new());
    }

    /// Walks the whole tree in `budget`-node slices, calling `between` after each slice.
    fn walk(
        t: &mut DataTree,
        budget: usize,
        mut between: impl FnMut(&mut DataTree, usize),
    ) -> Vec<u8> {
        let mut b = Builder::new(&vec![(9, 30000)], t.last_zxid);
        let mut slices = 0;
        while !b.step(t, budget) {
            slices += 1;
            between(t, slices);
        }
        b.finish(t).to_vec()
    }

    #[test]
    fn a_walk_in_slices_is_the_whole_one_and_a_fuzzy_walk_reads_back() {
        let mut t = DataTree::new(false);
        create(&mut t, 1, "/a", acl_cache::read_acl());
        create(&mut t, 2, "/a/b", acl_cache::open_acl());
        create(&mut t, 3, "/d", acl_cache::open_acl());
        for i in 0..40 {
            create(&mut t, 4 + i, &format!("/d/x{i:02}"), acl_cache::read_acl());
        }
        create(&mut t, 44, "/d/x07/deep", acl_cache::open_acl());
        let whole = encode(&t, &vec![(9, 30000)], t.last_zxid);
        for budget in [1, 3, 7, 1000] {
            assert_eq!(walk(&mut t, budget, |_, _| {}), whole);
        }
        // Nodes created during the walk, one with an ACL list first seen then: a valid
        // fuzzy snapshot whose tail is the zxid and digest at the walk's end.
        let new_list = vec![Acl {
            perms: acl_cache::perms::READ,
            id: crate::jute::records::Id::new("ip", "10.0.0.1"),
        }];
        let fuzzy = walk(&mut t, 5, |t, i| {
            let z = t.last_zxid + 1;
            let acl = if i == 2 {
                new_list.clone()
            } else {
                acl_cache::read_acl()
            };
            create(t, z, &format!("/d/y{i}"), acl);
        });
        let back = decode(Bytes::from(fuzzy), false).unwrap();
        assert!(back.tree.get("/d/x39").is_some());
        assert_eq!(back.digest, Some((t.last_zxid, t.digest)));
    }

    #[test]
    fn a_frozen_view_streams_the_state_at_its_zxid_while_the_tree_moves_on() {
        let mut t = DataTree::new(false);
        create(&mut t, 1, "/a", acl_cache::read_acl());
        create(&mut t, 2, "/a/b", acl_cache::open_acl());
        create(&mut t, 3, "/a-c", acl_cache::open_acl());
        create(&mut t, 4, "/d", acl_cache::open_acl());
        for i in 0..40 {
            create(&mut t, 5 + i, &format!("/d/x{i:02}"), acl_cache::read_acl());
        }
        create(&mut t, 45, "/d/x07/deep", acl_cache::open_acl());
        let sessions = vec![(9, 30000)];
        let mut b = Builder::new(&sessions, t.last_zxid);
        b.step(&t, usize::MAX);
        let walked = b.finish(&t).to_stream();
        let last = t.last_zxid;
        let view = View::of(&mut t, sessions.clone(), last);
        let digest = t.digest;
        // The tree moves on: the view does not.
        create(&mut t, 46, "/d/x07/later", acl_cache::open_acl());
        create(&mut t, 47, "/z", acl_cache::open_acl());
        let streamed = view.to_stream();
        assert_eq!(streamed.len(), walked.len());
        let (mut a, mut b) = (decode_stream(Bytes::from(walked), false).unwrap(), {
            decode_stream(Bytes::from(streamed.clone()), false).unwrap()
        });
        assert_eq!(
            listing(&mut a.tree),
            listing(&mut b.tree),
            "the same nodes as the walk"
        );
        assert_eq!((a.sessions, b.sessions), (sessions.clone(), sessions));
        assert_eq!((b.tree.digest, view.digest), (digest, digest));
        assert!(b.tree.get("/z").is_none());
        // Parents first, depth first: every node follows its parent, and a subtree is
        // written whole before the next sibling of its root.
        let paths = node_paths(&streamed);
        for (i, p) in paths.iter().enumerate().skip(1) {
            let parent = crate::tree::path::parent(p);
            let at = paths.iter().position(|q| q == parent).unwrap();
            assert!(at < i, "{p} before its parent");
            assert!(
                paths[at + 1..i]
                    .iter()
                    .all(|q| q.starts_with(&format!("{parent}/")) || parent == "/"),
                "{p}: a node outside its parent's subtree came between them"
            );
        }
        // In small chunks, with an early stop honoured.
        let mut chunks = Vec::new();
        assert!(view.write_stream(64, |c| {
            chunks.push(c);
            true
        }));
        assert!(chunks.len() > 5);
        assert_eq!(chunks.concat(), streamed);
        let mut calls = 0;
        assert!(!view.write_stream(64, |_| {
            calls += 1;
            calls < 2
        }));
        assert_eq!(calls, 2);
    }

    /// A node as (path, data, ACL id, stat, children by name).
    type Listed = (String, Option<Bytes>, i64, StatPersisted, Vec<String>);

    /// Every node, by path.
    fn listing(t: &mut DataTree) -> Vec<Listed> {
        let frozen = t.freeze_nodes();
        let mut v: Vec<_> = frozen
            .iter()
            .map(|(p, n)| {
                (
                    p.to_string(),
                    n.data.clone(),
                    n.acl,
                    n.stat,
                    t.children_sorted(p),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The node paths of a SNAP state, in the order written.
    fn node_paths(state: &[u8]) -> Vec<String> {
        let mut r = Reader::new(Bytes::copy_from_slice(state));
        for _ in 0..r.i32().unwrap() {
            r.i64().unwrap();
            r.i32().unwrap();
        }
        for _ in 0..r.i32().unwrap() {
            r.i64().unwrap();
            read_acls(&mut r).unwrap();
        }
        let mut paths = Vec::new();
        loop {
            let p = r.string().unwrap();
            if p == "/" {
                return paths;
            }
            r.buffer().unwrap();
            r.i64().unwrap();
            StatPersisted::read(&mut r).unwrap();
            paths.push(if p.is_empty() { "/".into() } else { p });
        }
    }

    #[test]
    fn the_stream_scan_resumes_where_it_stopped_and_agrees_with_a_whole_scan() {
        let mut t = DataTree::new(false);
        create(&mut t, 1, "/a", acl_cache::read_acl());
        for i in 0..30 {
            create(&mut t, 2 + i, &format!("/a/n{i}"), acl_cache::open_acl());
        }
        let last = t.last_zxid;
        let mut stream = View::of(&mut t, vec![(1, 2), (3, 4)], last).to_stream();
        let n = stream.len();
        stream.extend_from_slice(&[0, 0, 0, 9]);
        for step in [1, 2, 7, 64] {
            let mut scan = StreamScan::default();
            let mut got = None;
            let mut upto = 0;
            while got.is_none() && upto < stream.len() {
                upto = (upto + step).min(stream.len());
                got = scan.advance(&stream[..upto]).unwrap();
                if upto < n {
                    assert_eq!(got, None, "complete at {upto} of {n}");
                }
            }
            assert_eq!(got, Some(n), "step {step}");
        }
        assert_eq!(stream_len(&stream), Ok(Some(n)));
        // A length past the bound is refused, not trusted.
        let mut bad = stream.clone();
        bad[0..4].copy_from_slice(&0i32.to_be_bytes());
        bad[4..8].copy_from_slice(&0i32.to_be_bytes());
        bad[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(StreamScan::default().advance(&bad).is_err());
    }
}
