//! Deterministic simulation of whole members (`zabd::node::Node`: engine + ZAB peer) from
//! seeds, with real client sessions speaking the ZooKeeper wire protocol to them.
//!
//! `tests/zab_sim.rs` checks ZAB alone; this one drives the node and plays its host: every
//! [`Io`] is performed on an in-memory disk (a log with a synced prefix and an unsynced
//! tail, snapshots, epoch files) and an in-memory network (per-link FIFO with delays;
//! a break drops what is in flight and tells both ends). Faults: crashes that lose the
//! unsynced tail and restart from the disk (the snapshot's state and the log after it, as
//! a real member starts), one member isolated for a while, and a slow disk (durability
//! reports that arrive late, sometimes after a log cut). Snapshots are taken as the host
//! takes them: only of state the log already holds durably.
//!
//! Clients (several sessions, reconnecting to another member when their connection
//! breaks) create unique nodes and issue `sync` + `exists` of the newest create any
//! client had seen acknowledged. Checked:
//! - replies on each connection come in request order;
//! - each create is applied once (every path is created by one request; members keep
//!   their client connections across a change of leader and send again what the new
//!   leader does not have, so a NodeExists would mean a create applied twice);
//! - after a `sync` succeeds, the `exists` behind it finds every create acknowledged
//!   before the `sync` was sent (`sync` is a quorum read);
//! - no node ever returns `Diverged`, and no TRUNC ever cuts below what a member has applied
//!   (the engine holds only committed transactions, so it never needs `Io::Reload`);
//! - after healing: one leader, every member at the same zxid with the same tree digest,
//!   every request outstanding answered, a `sync` + `exists` answered on every client's
//!   connection, and every acknowledged create present everywhere.
//!
//! In some seeds `leaderServes` is off: leaders refuse new clients and hand leadership to a
//! larger id while they still have some.
//!
//! `NODE_SEED=<seed>` replays one seed; `NODE_SEEDS=<n>` sets how many run (default 150).

mod common;

use bytes::Bytes;
use common::{raw, Rng};
use std::collections::{BTreeMap, HashMap, VecDeque};
use zabd::engine::{Clock, ConnId, EngineConfig, Event, Mode, ToClient};
use zabd::jute::records::{ConnectRequest, ReplyHeader};
use zabd::jute::{Reader, Record};
use zabd::node::{packet_events, Input, Io, Node, NodeConfig, PeerCmd, PeerEvent, ReceivedSnap};
use zabd::persist::{snapshot, txnlog};
use zabd::quorum::wire::QuorumPacket;
use zabd::quorum::{Config, Durable, Entry, Msg, Sid, State, Zxid};
use zabd::tree::DataTree;

const STEP_MS: i64 = 10;
const NO_NODE: i32 = -101;
const NODE_EXISTS: i32 = -110;

/// What a member keeps on disk.
#[derive(Default)]
struct Disk {
    accepted_epoch: u32,
    current_epoch: u32,
    /// Snapshots by zxid: the `to_stream` form of the state.
    snapshots: BTreeMap<Zxid, Bytes>,
    /// The log: `synced` entries survive a crash, the rest do not.
    log: Vec<txnlog::Entry>,
    synced: usize,
    /// Log cuts made (the log writer's count).
    cuts: u64,
    /// Durability reports in flight to the node: (due step, zxid, cuts then).
    reports: VecDeque<(u64, Zxid, u64)>,
    /// Appended since the last snapshot.
    since_snapshot: usize,
    /// A SNAP's state being written (`Io::WriteSnap`): (due step, zxid, state). Lost in
    /// a crash before it is due.
    snap_write: Option<(u64, Zxid, Bytes)>,
}

impl Disk {
    /// What a member recovers (`server::recovery::recover_unapplied`): the newest
    /// snapshot's state, and the log after it, not applied.
    fn recover(&self) -> (DataTree, Vec<(i64, i32)>, Zxid, Vec<txnlog::Entry>) {
        let (base, bytes) = self.snapshots.iter().next_back().expect("snapshot.0");
        let loaded = snapshot::decode_stream(bytes.clone(), false).expect("own snapshot");
        let mut tree = loaded.tree;
        tree.last_zxid = *base;
        let after: Vec<txnlog::Entry> = self.log[..self.synced.min(self.log.len())]
            .iter()
            .filter(|e| e.hdr.zxid > *base)
            .cloned()
            .collect();
        (tree, loaded.sessions, *base, after)
    }

    fn cut(&mut self, after: Zxid) {
        self.log.retain(|e| e.hdr.zxid <= after);
        self.synced = self.synced.min(self.log.len());
        self.cuts += 1;
    }
}

fn snapshot_bytes(tree: &DataTree, sessions: &Vec<(i64, i32)>, zxid: Zxid) -> Bytes {
    let mut b = snapshot::Builder::new(sessions, zxid);
    b.step(tree, usize::MAX);
    Bytes::from(b.finish(tree).to_stream())
}

enum Wire {
    Msg(Msg),
    Raw(QuorumPacket, bool),
    Snap(Zxid, Bytes),
}

struct Member {
    node: Option<Node>,
    disk: Disk,
    /// Steps a durability report takes (a slow disk: many).
    sync_delay: u64,
}

#[derive(Debug, Clone)]
enum Op {
    Create(String),
    Sync,
    /// The exists behind a sync, of the newest create acknowledged to anyone when the sync
    /// was sent.
    ExistsAfterSync(Option<String>),
}

struct Client {
    member: Sid,
    conn: Option<ConnId>,
    handshaken: bool,
    session: i64,
    passwd: Bytes,
    next_xid: i32,
    sent: VecDeque<(i32, Op)>,
    /// The result of the last sync on this connection (Some(true) when it succeeded).
    last_sync_ok: bool,
    /// Requests outstanding when the member lost its leader (their connection stayed).
    crossed: Vec<i32>,
}

struct Sim {
    /// `leaderServes`: off in some seeds (the leader refuses new clients and hands its
    /// leadership over when it has some).
    leader_serves: bool,
    /// Each member's engine mode at the end of the last step.
    modes: BTreeMap<Sid, Mode>,
    /// Replies that came after their member lost its leader, on the same connection.
    answered_across: usize,
    rng: Rng,
    seed: u64,
    step: u64,
    ids: Vec<Sid>,
    zab: BTreeMap<Sid, Config>,
    members: BTreeMap<Sid, Member>,
    net: Vec<(u64, u64, Sid, Sid, Wire)>,
    seq: u64,
    link_due: BTreeMap<(Sid, Sid), u64>,
    isolated: Option<Sid>,
    /// A paused (SIGSTOPped) member: the step it resumes at, and what reached it meanwhile.
    paused: Option<(Sid, u64, Vec<Input>)>,
    pauses: usize,
    clients: Vec<Client>,
    conn_owner: HashMap<ConnId, (usize, Sid)>,
    next_conn: ConnId,
    next_node: u64,
    /// Creates acknowledged, in the order the acknowledgements arrived.
    acked: Vec<String>,
    checked_syncs: usize,
    /// Syncs answered on every connection once healed.
    final_syncs: usize,
    /// Samples of the write path's stages (update, leader fsync, leader quorum, learner
    /// fsync, learner commit) the members held at the end.
    stages_timed: [u64; 5],
    truncs: usize,
    snaps_loaded: usize,
}

fn clock(step: u64) -> Clock {
    Clock {
        mono_ms: step as i64 * STEP_MS,
        mono_us: step as i64 * STEP_MS * 1000,
        wall_ms: 1_800_000_000_000 + step as i64 * STEP_MS,
    }
}

fn node_config(id: Sid, leader_serves: bool) -> NodeConfig {
    NodeConfig {
        engine: EngineConfig {
            server_id: id as i64,
            leader_serves,
            ..EngineConfig::default()
        },
        extended_types: false,
        read_only_mode: false,
        read_only_after_ms: 2000,
        membership: Default::default(),
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng::new(seed);
        let n = if rng.chance(70) { 3 } else { 5 };
        let leader_serves = !rng.chance(30);
        let ids: Vec<Sid> = (1..=n).collect();
        let mut sim = Sim {
            seed,
            step: 0,
            ids: ids.clone(),
            zab: BTreeMap::new(),
            members: BTreeMap::new(),
            net: Vec::new(),
            seq: 0,
            link_due: BTreeMap::new(),
            isolated: None,
            paused: None,
            pauses: 0,
            clients: Vec::new(),
            conn_owner: HashMap::new(),
            next_conn: 1,
            next_node: 0,
            acked: Vec::new(),
            checked_syncs: 0,
            final_syncs: 0,
            stages_timed: [0; 5],
            truncs: 0,
            snaps_loaded: 0,
            modes: BTreeMap::new(),
            answered_across: 0,
            leader_serves: true,
            rng: Rng::new(0),
        };
        for &id in &ids {
            let cfg = Config {
                id,
                voters: ids.clone(),
                observers: vec![],
                init_limit: 10,
                sync_limit: 5,
                finalize_ticks: 1,
                snap_threshold: 30 + rng.below(60) as usize,
                log_window: 5 + rng.below(60) as usize,
                batched: rng.below(2) == 0,
                config_version: 0,
            };
            sim.zab.insert(id, cfg);
            let mut disk = Disk::default();
            let empty = DataTree::new(false);
            disk.snapshots
                .insert(0, snapshot_bytes(&empty, &Vec::new(), 0));
            let sync_delay = if rng.chance(30) { 5 + rng.below(40) } else { 1 };
            sim.members.insert(
                id,
                Member {
                    node: None,
                    disk,
                    sync_delay,
                },
            );
        }
        for c in 0..4 {
            let member = ids[c % ids.len()];
            sim.clients.push(Client {
                member,
                conn: None,
                handshaken: false,
                session: 0,
                passwd: Bytes::from(vec![0u8; 16]),
                next_xid: 1,
                sent: VecDeque::new(),
                last_sync_ok: false,
                crossed: Vec::new(),
            });
        }
        sim.rng = rng;
        sim.leader_serves = leader_serves;
        for id in ids {
            sim.boot(id);
        }
        sim
    }

    fn fail(&self, what: String) -> ! {
        let mut state = String::new();
        for (id, m) in &self.members {
            match m.node.as_ref() {
                None => state.push_str(&format!("\n  member {id}: down")),
                Some(n) => state.push_str(&format!(
                    "\n  member {id}: {:?} leader {:?} zab 0x{:x} durable 0x{:x} committed 0x{:x} \
                     log {}/{} reports {} applied 0x{:x} digest {:x} mode {}",
                    n.peer().state(),
                    n.peer().leader(),
                    n.peer().last_zxid(),
                    n.peer().durable_zxid(),
                    n.peer().committed(),
                    m.disk.synced,
                    m.disk.log.len(),
                    m.disk.reports.len(),
                    n.engine().last_zxid(),
                    n.engine().tree.digest,
                    n.mode_name(),
                )),
            }
        }
        panic!("seed {}: step {}: {what}{state}", self.seed, self.step)
    }

    /// Starts a member from its disk, as `server::member::run` does.
    fn trace(&self, id: Sid, what: impl FnOnce() -> String) {
        if std::env::var("NODE_TRACE").is_ok_and(|t| t == id.to_string()) {
            eprintln!("[{}] {id}: {}", self.step, what());
        }
    }

    fn boot(&mut self, id: Sid) {
        let m = self.members.get_mut(&id).expect("member");
        let (tree, sessions, base, after) = m.disk.recover();
        m.disk.log.truncate(m.disk.synced);
        m.disk.reports.clear();
        m.disk.snap_write = None;
        // A new process, a new log writer: its count of cuts starts again.
        m.disk.cuts = 0;
        let durable = Durable {
            accepted_epoch: m.disk.accepted_epoch,
            current_epoch: m.disk.current_epoch,
            base,
            log: after
                .iter()
                .map(|e| Entry {
                    zxid: e.hdr.zxid,
                    payload: txnlog::encode_body(&e.hdr, &e.txn, e.digest),
                })
                .collect(),
        };
        let zab = self.zab[&id].clone();
        let mut node = Node::new(
            node_config(id, self.leader_serves),
            zab,
            durable,
            tree,
            sessions,
            clock(self.step),
        )
        .unwrap_or_else(|d| panic!("seed {}: member {id} cannot start: {d}", self.seed));
        let io = node.start();
        m.node = Some(node);
        self.trace(id, || {
            format!(
                "boot: snapshot 0x{base:x}, {} entries after it",
                after.len()
            )
        });
        self.perform(id, io);
    }

    fn crash(&mut self, id: Sid) {
        if self.paused.as_ref().is_some_and(|p| p.0 == id) {
            self.paused = None;
        }
        let m = self.members.get_mut(&id).expect("member");
        m.node = None;
        m.disk.log.truncate(m.disk.synced);
        m.disk.reports.clear();
        m.disk.snap_write = None;
        for other in self.ids.clone() {
            if other != id {
                self.break_link(id, other);
            }
        }
        let conns: Vec<ConnId> = self
            .conn_owner
            .iter()
            .filter(|(_, (_, m))| *m == id)
            .map(|(c, _)| *c)
            .collect();
        for c in conns {
            self.drop_conn(c);
        }
    }

    fn input(&mut self, id: Sid, input: Input) {
        if let Some((p, _, held)) = self.paused.as_mut() {
            if *p == id {
                held.push(input);
                return;
            }
        }
        let now = clock(self.step);
        let Some(node) = self.members.get_mut(&id).and_then(|m| m.node.as_mut()) else {
            return;
        };
        match node.handle(input, now) {
            Ok(io) => self.perform(id, io),
            Err(d) => self.fail(format!("member {id} diverged: {d}")),
        }
    }

    /// Performs a node's commands, as the host does.
    fn perform(&mut self, id: Sid, io: Vec<Io>) {
        let mut queue: VecDeque<Io> = io.into();
        while let Some(cmd) = queue.pop_front() {
            self.trace(id, || match &cmd {
                Io::CutLog { after } => format!("cut log after 0x{after:x}"),
                Io::SetAsideSnapshots { newer_than, .. } => {
                    format!("set aside snapshots past 0x{newer_than:x}")
                }
                Io::WriteSnap { zxid, .. } => format!("write SNAP state 0x{zxid:x}"),
                Io::Reload => "reload".into(),
                Io::Append { zxid, .. } => format!("append 0x{zxid:x}"),
                Io::Peer(PeerCmd::Send { to, msg }) => format!("to {to}: {msg:?}"),
                Io::Peer(PeerCmd::Raw { to, packet }) => {
                    format!("to {to}: packet {} 0x{:x}", packet.kind, packet.zxid)
                }
                Io::Peer(PeerCmd::ConnectLeader { leader }) => format!("connect to {leader}"),
                Io::Peer(PeerCmd::Disconnect { peer }) => format!("disconnect {peer}"),
                _ => String::new(),
            });
            let m = self.members.get_mut(&id).expect("member");
            match cmd {
                Io::Client(ToClient::Send { conn, frame, .. }) => {
                    self.client_frame(conn, frame.to_bytes())
                }
                Io::Client(ToClient::Close { conn, .. }) => self.drop_conn(conn),
                Io::Peer(cmd) => self.transport(id, cmd),
                Io::SaveEpoch { file, epoch } => match file {
                    "acceptedEpoch" => m.disk.accepted_epoch = epoch,
                    _ => m.disk.current_epoch = epoch,
                },
                Io::Append { body, .. } => {
                    let entry = txnlog::decode_body(body).expect("the node logs what decodes");
                    m.disk.log.push(entry);
                    m.disk.since_snapshot += 1;
                }
                Io::CutLog { after } => {
                    // A cut syncs the file: what is left is durable, and the log writer
                    // says so under the new count.
                    m.disk.cut(after);
                    m.disk.synced = m.disk.log.len();
                    let report = (self.step + m.sync_delay, after, m.disk.cuts);
                    m.disk.reports.push_back(report);
                }
                Io::StopSnapshots => {}
                Io::SetAsideSnapshots { newer_than, .. } => {
                    m.disk.snapshots.retain(|z, _| *z <= newer_than);
                }
                Io::WriteSnap { zxid, state, .. } => {
                    // Written off the member task: done after the disk's delay, and the
                    // node takes nothing from its peers meanwhile.
                    assert!(m.disk.snap_write.is_none(), "two SNAP writes at once");
                    m.disk.snap_write = Some((self.step + m.sync_delay, zxid, state));
                }
                // No reconfig in this simulation: memberships stay as they start.
                Io::Discard(_) | Io::Membership(_) | Io::NextMembership(_) => {}
                // Only a snapshot holding an uncommitted tail makes a TRUNC reload, and
                // the engine never holds one.
                Io::Reload => self.fail(format!(
                    "member {id}: a TRUNC cut below its applied state (it applied an \
                     uncommitted transaction)"
                )),
            }
        }
    }

    fn transport(&mut self, from: Sid, cmd: PeerCmd) {
        match cmd {
            PeerCmd::Send { to, msg } => self.post(from, to, Wire::Msg(msg)),
            PeerCmd::Raw { to, packet } => {
                let leading = self.state(from) == Some(State::Leading);
                self.post(from, to, Wire::Raw(packet, leading));
            }
            PeerCmd::SendSnap { to, zxid, state } => {
                let state = Bytes::from(state.to_stream());
                self.post(from, to, Wire::Snap(zxid, state))
            }
            PeerCmd::ConnectLeader { .. } | PeerCmd::Members { .. } => {}
            PeerCmd::Disconnect { peer } => self.break_link(from, peer),
        }
    }

    fn state(&self, id: Sid) -> Option<State> {
        self.members[&id].node.as_ref().map(|n| n.peer().state())
    }

    fn cut_off(&self, a: Sid, b: Sid) -> bool {
        self.isolated.is_some_and(|i| i == a || i == b)
            || self.members[&a].node.is_none()
            || self.members[&b].node.is_none()
    }

    fn post(&mut self, from: Sid, to: Sid, w: Wire) {
        if from == to || self.cut_off(from, to) {
            return;
        }
        let delay = 1 + self.rng.below(3);
        let due = (self.step + delay).max(*self.link_due.get(&(from, to)).unwrap_or(&0));
        self.link_due.insert((from, to), due);
        self.seq += 1;
        self.net.push((due, self.seq, from, to, w));
    }

    /// A broken connection: what is in flight either way is lost, and both ends are told.
    fn break_link(&mut self, a: Sid, b: Sid) {
        self.net
            .retain(|(_, _, f, t, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
        self.input(a, Input::Peer(PeerEvent::Disconnected { peer: b }));
        self.input(b, Input::Peer(PeerEvent::Disconnected { peer: a }));
    }

    fn deliver(&mut self) {
        let mut due: Vec<_> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].0 <= self.step {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|d| (d.0, d.1));
        for (_, _, from, to, w) in due {
            if self.cut_off(from, to) {
                continue;
            }
            self.trace(to, || match &w {
                Wire::Msg(m) => format!("from {from}: {m:?}"),
                Wire::Snap(z, _) => format!("from {from}: SNAP state 0x{z:x}"),
                Wire::Raw(p, _) => format!("from {from}: packet {} 0x{:x}", p.kind, p.zxid),
            });
            match w {
                Wire::Msg(msg) => {
                    if matches!(msg, Msg::Trunc { .. }) {
                        self.truncs += 1;
                    }
                    self.input(to, Input::Peer(PeerEvent::Msg { from, msg }))
                }
                Wire::Raw(p, from_leader) => {
                    for e in packet_events(from, &p, from_leader) {
                        self.input(to, Input::Peer(e));
                    }
                }
                Wire::Snap(zxid, state) => {
                    self.snaps_loaded += 1;
                    let snap = Box::new(ReceivedSnap::decode(state, false));
                    let e = PeerEvent::Snap { from, zxid, snap };
                    self.input(to, Input::Peer(e));
                }
            }
        }
    }

    /// The log writer: syncs the tail and reports it after the member's disk delay.
    fn disks(&mut self) {
        for id in self.ids.clone() {
            let step = self.step;
            let m = self.members.get_mut(&id).expect("member");
            if m.node.is_none() {
                continue;
            }
            if m.disk.synced < m.disk.log.len() && m.disk.reports.is_empty() {
                m.disk.synced = m.disk.log.len();
                let zxid = m.disk.log.last().expect("entry").hdr.zxid;
                m.disk
                    .reports
                    .push_back((step + m.sync_delay, zxid, m.disk.cuts));
            }
            let mut due = Vec::new();
            while m.disk.reports.front().is_some_and(|r| r.0 <= step) {
                due.push(m.disk.reports.pop_front().expect("front"));
            }
            let written = match m.disk.snap_write.take() {
                Some((due, zxid, state)) if due <= step => {
                    m.disk.snapshots.insert(zxid, state);
                    Some(zxid)
                }
                pending => {
                    m.disk.snap_write = pending;
                    None
                }
            };
            for (_, zxid, truncations) in due {
                self.input(id, Input::Durable { zxid, truncations });
            }
            if let Some(zxid) = written {
                self.input(id, Input::SnapWritten { zxid });
            }
            self.snapshot(id);
        }
    }

    /// A snapshot, as the host takes one: of state the log holds durably.
    fn snapshot(&mut self, id: Sid) {
        let m = self.members.get_mut(&id).expect("member");
        let Some(node) = m.node.as_ref() else { return };
        if node.waiting() {
            return;
        }
        let engine = node.engine();
        let durable = m.disk.log[..m.disk.synced].last().map_or(0, |e| e.hdr.zxid);
        if m.disk.since_snapshot < 20 || durable < engine.last_zxid() {
            return;
        }
        let zxid = engine.last_zxid();
        let bytes = snapshot_bytes(&engine.tree, &engine.session_list(), zxid);
        m.disk.snapshots.insert(zxid, bytes);
        m.disk.since_snapshot = 0;
    }

    // ---- clients ----

    fn open(&mut self, c: usize) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let cl = &mut self.clients[c];
        cl.conn = Some(conn);
        cl.handshaken = false;
        cl.sent.clear();
        cl.crossed.clear();
        let member = cl.member;
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: 30_000,
            session_id: cl.session,
            passwd: cl.passwd.clone(),
            read_only: None,
        };
        self.conn_owner.insert(conn, (c, member));
        let ip = "127.0.0.1".to_string();
        self.input(
            member,
            Input::Client(Event::Accepted {
                conn,
                ip,
                ids: Vec::new(),
            }),
        );
        self.input(member, Input::Client(Event::Handshake { conn, req }));
    }

    fn drop_conn(&mut self, conn: ConnId) {
        let Some((c, member)) = self.conn_owner.remove(&conn) else {
            return;
        };
        let cl = &mut self.clients[c];
        cl.conn = None;
        cl.sent.clear();
        self.input(member, Input::Client(Event::Closed { conn }));
    }

    /// A ping: answered out of band of the request order, as the clients treat it.
    fn ping(&mut self, c: usize) {
        let (Some(conn), member) = (self.clients[c].conn, self.clients[c].member) else {
            return;
        };
        self.submit(member, conn, raw::request(-2, 11, |_| {}));
    }

    /// A request frame's payload, as the connection task hands it to the member.
    fn submit(&mut self, member: Sid, conn: ConnId, payload: Vec<u8>) {
        let payload = Bytes::from(payload);
        let body = payload.slice(8..);
        let (hdr, req) = zabd::proto::request::decode(payload).expect("a valid request");
        let ev = Event::Request {
            conn,
            xid: hdr.xid,
            req,
            body,
        };
        self.input(member, Input::Client(ev));
    }

    fn request(&mut self, c: usize, op: Op) {
        let cl = &mut self.clients[c];
        let Some(conn) = cl.conn else { return };
        cl.next_xid += 1;
        let xid = cl.next_xid;
        let payload = match &op {
            Op::Create(path) => raw::request(xid, 1, |w| {
                w.string(path).buffer(Some(b"v"));
                w.i32(1).i32(31).string("world").string("anyone");
                w.i32(0);
            }),
            Op::Sync => raw::request(xid, 9, |w| {
                w.string("/");
            }),
            Op::ExistsAfterSync(_) => raw::request(xid, 3, |w| {
                let path = match &op {
                    Op::ExistsAfterSync(Some(p)) => p.as_str(),
                    _ => "/",
                };
                w.string(path).bool(false);
            }),
        };
        cl.sent.push_back((xid, op));
        let member = cl.member;
        self.submit(member, conn, payload);
    }

    fn client_frame(&mut self, conn: ConnId, frame: Bytes) {
        let Some(&(c, _)) = self.conn_owner.get(&conn) else {
            return;
        };
        let body = frame.slice(4..);
        if !self.clients[c].handshaken {
            let resp = zabd::jute::records::ConnectResponse::read(&mut Reader::new(body))
                .expect("ConnectResponse");
            let cl = &mut self.clients[c];
            if resp.timeout <= 0 {
                // Expired: a new session next time.
                cl.session = 0;
                cl.passwd = Bytes::from(vec![0u8; 16]);
                return;
            }
            cl.handshaken = true;
            cl.session = resp.session_id;
            cl.passwd = resp.passwd;
            return;
        }
        let mut r = Reader::new(body);
        let h = ReplyHeader::read(&mut r).expect("reply header");
        if h.xid == -1 || h.xid == -2 {
            return; // a watch event, a ping
        }
        let Some((xid, op)) = self.clients[c].sent.pop_front() else {
            self.fail(format!("client {c}: a reply (xid {}) to nothing", h.xid));
        };
        if xid != h.xid {
            self.fail(format!(
                "client {c}: reply for xid {} while xid {xid} was the oldest outstanding",
                h.xid
            ));
        }
        if let Some(i) = self.clients[c].crossed.iter().position(|x| *x == xid) {
            self.clients[c].crossed.remove(i);
            self.answered_across += 1;
        }
        match op {
            Op::Create(path) if h.err == 0 => self.acked.push(path),
            Op::Create(path) if h.err == NODE_EXISTS => {
                // Every path is created once by one request: it was applied twice (a
                // request in flight across a leader change sent again after it committed).
                self.fail(format!(
                    "client {c}: create {path} answered NodeExists: applied twice"
                ));
            }
            Op::Sync => self.clients[c].last_sync_ok = h.err == 0,
            Op::ExistsAfterSync(Some(path)) if self.clients[c].last_sync_ok => {
                self.checked_syncs += 1;
                if h.err == NO_NODE {
                    self.fail(format!(
                        "client {c}: {path} was acknowledged before its sync, but the read \
                         behind the sync on member {} does not find it",
                        self.clients[c].member
                    ));
                }
            }
            _ => {}
        }
    }

    fn clients_act(&mut self, load: bool) {
        for c in 0..self.clients.len() {
            if self.clients[c].conn.is_none() {
                if self.rng.chance(10) {
                    let ids = self.ids.clone();
                    let live: Vec<Sid> = ids
                        .into_iter()
                        .filter(|i| self.members[i].node.is_some())
                        .collect();
                    if !live.is_empty() {
                        let pick = live[self.rng.below(live.len() as u64) as usize];
                        self.clients[c].member = pick;
                        self.open(c);
                    }
                }
                continue;
            }
            let cl = &self.clients[c];
            if !cl.handshaken {
                continue;
            }
            if self.step % 100 == c as u64 {
                self.ping(c);
            }
            if !load || self.clients[c].sent.len() >= 6 || !self.rng.chance(30) {
                continue;
            }
            if self.rng.chance(50) {
                self.next_node += 1;
                let path = format!("/n{}", self.next_node);
                self.request(c, Op::Create(path));
            } else {
                let newest = self.acked.last().cloned();
                self.request(c, Op::Sync);
                self.request(c, Op::ExistsAfterSync(newest));
            }
        }
    }

    fn tick(&mut self) {
        for id in self.ids.clone() {
            if self.paused.as_ref().is_some_and(|p| p.0 == id) {
                continue;
            }
            if self.step.is_multiple_of(5) {
                self.input(id, Input::PeerTick);
            }
            if self.step.is_multiple_of(20) {
                self.input(id, Input::EngineTick);
            }
            self.input(id, Input::PassEnd);
        }
    }

    /// A paused member resumes. Its sockets are read in no set order: the clients' first
    /// here, the worst case for a deposed leader that still believes it leads.
    fn resume(&mut self) {
        let Some((id, _, held)) = self.paused.take() else {
            return;
        };
        let (clients, rest): (Vec<Input>, Vec<Input>) = held
            .into_iter()
            .partition(|i| matches!(i, Input::Client(_)));
        for input in clients.into_iter().chain(rest) {
            self.input(id, input);
        }
    }

    fn faults(&mut self) {
        let ids = self.ids.clone();
        let pick = ids[self.rng.below(ids.len() as u64) as usize];
        if self.paused.as_ref().is_some_and(|p| p.1 <= self.step) {
            self.resume();
        } else if self.paused.is_none() && self.members[&pick].node.is_some() && self.rng.chance(1)
        {
            // Often the leader, and long enough for the others to elect another.
            let leader = ids
                .iter()
                .copied()
                .find(|i| self.state(*i) == Some(State::Leading));
            let who = if self.rng.chance(70) {
                leader.unwrap_or(pick)
            } else {
                pick
            };
            let until = self.step + 30 + self.rng.below(300);
            self.paused = Some((who, until, Vec::new()));
            self.pauses += 1;
        }
        if self.rng.chance(1) {
            let live = ids
                .iter()
                .filter(|i| self.members[i].node.is_some())
                .count();
            if self.members[&pick].node.is_some() && live >= 2 {
                self.crash(pick);
            }
        }
        if self.rng.chance(2) {
            if let Some(&down) = ids.iter().find(|i| self.members[i].node.is_none()) {
                self.boot(down);
            }
        }
        if self.rng.chance(1) {
            match self.isolated {
                None => {
                    for other in ids.iter().copied().filter(|o| *o != pick) {
                        self.break_link(pick, other);
                    }
                    self.isolated = Some(pick);
                }
                Some(_) => self.isolated = None,
            }
        }
    }

    fn run_step(&mut self, faults: bool, load: bool) {
        self.step += 1;
        if faults {
            self.faults();
        }
        self.deliver();
        self.disks();
        self.clients_act(load);
        self.tick();
        self.watch_modes();
    }

    /// Notes the requests outstanding on each connection of a member that lost its leader.
    fn watch_modes(&mut self) {
        for id in self.ids.clone() {
            let Some(mode) = self.members[&id].node.as_ref().map(|n| n.engine().mode()) else {
                self.modes.remove(&id);
                continue;
            };
            let was = self.modes.insert(id, mode);
            if mode == Mode::Down && matches!(was, Some(Mode::Leader | Mode::Follower)) {
                for cl in self
                    .clients
                    .iter_mut()
                    .filter(|c| c.member == id && c.conn.is_some())
                {
                    cl.crossed = cl.sent.iter().map(|(x, _)| *x).collect();
                }
            }
        }
    }

    fn converged(&self) -> bool {
        let nodes: Vec<&Node> = self
            .members
            .values()
            .filter_map(|m| m.node.as_ref())
            .collect();
        if nodes.len() != self.ids.len() {
            return false;
        }
        let leaders = nodes
            .iter()
            .filter(|n| n.peer().state() == State::Leading && n.peer().is_serving_leader())
            .count();
        let followers = nodes
            .iter()
            .filter(|n| n.peer().state() == State::Following && n.peer().leader().is_some())
            .count();
        let first = nodes[0].engine();
        leaders == 1
            && followers == nodes.len() - 1
            && nodes.iter().all(|n| {
                n.engine().last_zxid() == first.last_zxid()
                    && n.engine().tree.digest == first.tree.digest
                    && n.engine().last_zxid() == n.peer().last_zxid()
            })
    }
}

fn run(seed: u64) -> Sim {
    let mut sim = Sim::new(seed);
    for _ in 0..1500 {
        sim.run_step(true, true);
    }
    sim.isolated = None;
    sim.resume();
    for id in sim.ids.clone() {
        if sim.members[&id].node.is_none() {
            sim.boot(id);
        }
    }
    let mut quiet = 0;
    while !sim.converged() {
        sim.run_step(false, quiet < 300);
        quiet += 1;
        if quiet > 20_000 {
            sim.fail("the ensemble did not converge after healing".into());
        }
    }
    final_syncs(&mut sim);
    // The write path's stages timed by the members as they are at the end.
    let wp: Vec<_> = sim
        .members
        .values()
        .filter_map(|m| m.node.as_ref())
        .map(|n| n.engine().stats.write_path.clone())
        .collect();
    for w in wp {
        for (i, n) in [
            w.update_us.count,
            w.leader_fsync_us.count,
            w.leader_quorum_us.count,
            w.learner_fsync_us.count,
            w.learner_commit_us.count,
        ]
        .into_iter()
        .enumerate()
        {
            sim.stages_timed[i] += n;
        }
    }
    for id in &sim.ids {
        let tree = &sim.members[id].node.as_ref().expect("live").engine().tree;
        for path in &sim.acked {
            if tree.get(path).is_none() {
                sim.fail(format!("acknowledged {path} is missing on member {id}"));
            }
        }
    }
    sim
}

/// Liveness once healed: every client (reconnecting where its connection broke) gets every
/// request it has outstanding answered, then a `sync` + `exists` on each connection, within
/// a generous bound. A read round that can never be confirmed would hang every `sync` on
/// its leader for good while the ensemble otherwise looks healthy.
fn final_syncs(sim: &mut Sim) {
    let settled = |sim: &Sim| {
        sim.clients
            .iter()
            .all(|cl| cl.conn.is_some() && cl.handshaken && cl.sent.is_empty())
    };
    let mut steps = 0;
    let mut wait = |sim: &mut Sim, what: &str| {
        while !settled(sim) {
            sim.run_step(false, false);
            steps += 1;
            if steps > 20_000 {
                let stuck: Vec<_> = sim
                    .clients
                    .iter()
                    .enumerate()
                    .filter(|(_, cl)| !cl.sent.is_empty() || !cl.handshaken)
                    .map(|(c, cl)| (c, cl.member, cl.conn, cl.sent.clone()))
                    .collect();
                let modes: Vec<_> = sim.modes.iter().collect();
                sim.fail(format!(
                    "{what}: not answered after healing {stuck:?}; modes {modes:?}"
                ));
            }
        }
    };
    wait(sim, "requests outstanding at the heal");
    for c in 0..sim.clients.len() {
        let newest = sim.acked.last().cloned();
        sim.request(c, Op::Sync);
        sim.request(c, Op::ExistsAfterSync(newest));
    }
    wait(sim, "a sync + exists on every connection");
    sim.final_syncs += sim.clients.len();
}

#[test]
fn members_keep_client_promises_through_crashes_partitions_and_slow_disks() {
    let seeds: Vec<u64> = match std::env::var("NODE_SEED") {
        Ok(s) => vec![s.parse().expect("NODE_SEED")],
        Err(_) => {
            let n = std::env::var("NODE_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(150);
            (1..=n).collect()
        }
    };
    let (mut acked, mut syncs, mut truncs, mut snaps, mut pauses) = (0, 0, 0, 0, 0);
    let (mut across, mut finals) = (0, 0);
    let mut stages = [0u64; 5];
    for seed in &seeds {
        let sim = run(*seed);
        acked += sim.acked.len();
        syncs += sim.checked_syncs;
        truncs += sim.truncs;
        snaps += sim.snaps_loaded;
        pauses += sim.pauses;
        across += sim.answered_across;
        finals += sim.final_syncs;
        for (t, n) in stages.iter_mut().zip(sim.stages_timed) {
            *t += n;
        }
    }
    println!(
        "{} seeds: {acked} acknowledged creates, {syncs} sync+reads checked, {truncs} TRUNCs, \
         {snaps} SNAPs loaded, {pauses} pauses, {across} requests answered on a connection \
         that outlived its member's leader, {finals} syncs answered once healed",
        seeds.len()
    );
    assert!(acked > 0 && syncs > 0, "the workload ran");
    assert!(
        stages.iter().all(|n| *n > 0),
        "every stage of the write path was timed (update, leader fsync, leader quorum, \
         learner fsync, learner commit): {stages:?}"
    );
    if seeds.len() >= 50 {
        assert!(truncs > 0, "no TRUNC was exercised");
        assert!(snaps > 0, "no SNAP was exercised");
        assert!(
            across > 0,
            "no request was answered across a change of leader"
        );
    }
}
