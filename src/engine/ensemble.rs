//! The engine as an ensemble member: the parts of the pipeline that differ from standalone.
//!
//! Owns nothing beyond the engine's own state; the host (`server::member`) runs ZAB and
//! turns its commits into [`Event::Apply`](super::Event::Apply).
//!
//! * **Leader**: prepares every write itself — its own clients' and those learners forward
//!   ([`Event::Forwarded`](super::Event::Forwarded)) — and logs them; the host proposes
//!   each logged transaction, and the zxids must match the ones ZAB assigns. It alone
//!   expires sessions (learners report their clients' activity with
//!   [`Event::Touch`](super::Event::Touch)) and deletes containers. A learner's `sync` is
//!   answered once everything logged before it has been applied.
//! * **Follower / observer**: forwards writes, new sessions and `sync` to the leader
//!   ([`EngineAction::Forward`](super::EngineAction::Forward)), applies what the quorum commits, and
//!   answers a local client when its own transaction (same session and cxid) applies.
//!   Reads are answered locally, in order behind the connection's pending writes.
//! * **Down** (looking for a leader): holds client handshakes until it serves (see
//!   `park_handshake`); with no quorum for good, clients give up and try elsewhere.
//! * **ReadOnly** (no leader, read-only mode enabled): serves clients that allow read-only
//!   sessions from the local state, with sessions only this member knows; writes get
//!   NotReadOnly; everyone else is refused.
//!
//! A change of leader (Leader or Follower → Down → Leader or Follower) keeps every client
//! connection and resolves what was in flight once the member serves again
//! (`failover.rs`); other role changes (into or out of read-only mode) close every client
//! connection and drop what was prepared but not committed, as ZooKeeper restarts its
//! request pipeline. Every member applies createSession/closeSession, but a learner that a
//! client brings a session to asks the leader (REVALIDATE) before taking it, as the leader
//! alone knows which sessions it is expiring.

use super::{ConnId, Done, Engine, EngineAction, Pending, Waiter};
use crate::jute::records::{ConnectRequest, Id};
use crate::proto::request::{self, Request};
use crate::proto::{op, ZkError};
use crate::txn::{Txn, TxnHeader};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Leader,
    /// Follower or observer: both forward writes and apply commits.
    Follower,
    /// An ensemble member with no established leader.
    Down,
    /// No leader, read-only mode enabled: read-only clients are served from the local
    /// state; writes get NotReadOnly; sessions are local to this member.
    ReadOnly,
}

impl Mode {
    pub fn serves(self) -> bool {
        self != Mode::Down
    }

    pub fn forwards(self) -> bool {
        self == Mode::Follower
    }

    pub fn decides_expiry(self) -> bool {
        matches!(self, Mode::Standalone | Mode::Leader)
    }
}

/// Leader: a `sync` waiting until everything logged before it is applied and a quorum has
/// confirmed this leadership after it arrived.
#[derive(Debug, Clone, Copy)]
pub(super) struct SyncWait {
    zxid: i64,
    round: u64,
    from: SyncFrom,
}

#[derive(Debug, Clone, Copy)]
enum SyncFrom {
    /// A learner forwarded it: answer with SYNC.
    Learner(u64),
    /// This member's own client (connection, xid).
    Local(ConnId, i32),
}

/// Ensemble bookkeeping of the engine.
#[derive(Default)]
pub(super) struct State {
    /// Learner: sessions its clients touched since the last PING (id → timeout).
    touched: HashMap<i64, i32>,
    /// Learner: connections waiting for their forwarded createSession to apply.
    pub(super) handshakes: HashMap<i64, (ConnId, i32)>,
    /// Learner: forwarded syncs in the order sent (connection, xid).
    syncs: VecDeque<(ConnId, i32)>,
    /// Learner: syncs the leader answered, waiting until its zxid then is applied here.
    answered_syncs: VecDeque<(ConnId, i32, i64)>,
    /// Leader: syncs waiting, in arrival order (so zxids and rounds both ascend).
    leader_syncs: VecDeque<SyncWait>,
    /// Leader: the last read round asked for, and the last one confirmed.
    read_round: u64,
    confirmed_round: u64,
    /// The zxid the current epoch starts at (`srvr` reports at least this).
    epoch_start: i64,
    /// Local sessions being upgraded (`local.rs`), with their timeout, until their
    /// createSession applies: sent again under a new leader, ahead of the writes.
    pub(super) upgrades: HashMap<i64, i32>,
    /// Learner: reconnects waiting for the leader's REVALIDATE answer.
    pub(super) revalidating: HashMap<i64, (ConnId, i32)>,
    /// Handshakes that arrived while this member had no leader, and when (monotonic ms).
    pub(super) parked: Vec<(ConnId, ConnectRequest, i64)>,
    /// Since when (monotonic ms) this member has had no leader, while it keeps its clients.
    pub(super) down_since: Option<i64>,
    /// Logged and not yet applied here, by (session, cxid): told before serving again.
    pub(super) unapplied: std::collections::HashSet<(i64, i32)>,
}

impl Engine {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The zxid `srvr` reports: the last applied, or the start of the member's epoch when
    /// nothing has been committed in it yet (as ZooKeeper's leader reports epoch << 32).
    pub fn reported_zxid(&self) -> i64 {
        self.tree.last_zxid.max(self.ensemble.epoch_start)
    }

    /// Learner: the sessions touched since the last call (for the PING reply).
    pub fn take_touches(&mut self) -> Vec<(i64, i32)> {
        let mut v: Vec<(i64, i32)> = self.ensemble.touched.drain().collect();
        v.sort_unstable();
        v
    }

    pub(super) fn note_touch(&mut self, session: i64) {
        if self.mode.forwards() && !self.is_local(session) {
            if let Some(s) = self.sessions.get(session) {
                self.ensemble.touched.insert(session, s.timeout);
            }
        }
    }

    /// Read-only mode: a write is refused (closeSession just closes).
    pub(super) fn refuse_in_read_only(&mut self, conn: ConnId, x: i32, req: &Request) {
        let zxid = self.tree.last_zxid;
        if matches!(req, Request::CloseSession) {
            let f = crate::proto::response::header_only(x, zxid, 0);
            self.send(conn, f, true);
            self.out.push(EngineAction::Client(super::ToClient::Close {
                conn,
                reason: "session closed by client",
                linger: true,
            }));
            return;
        }
        let f = crate::proto::response::header_only(x, zxid, ZkError::NotReadOnly.code());
        self.send(conn, f, true);
    }

    pub(super) fn set_mode(&mut self, mode: super::Mode, last_zxid: i64) {
        let change_of_leader = |m: Mode| matches!(m, Mode::Leader | Mode::Follower | Mode::Down);
        if change_of_leader(self.mode) && change_of_leader(mode) {
            self.change_leader(mode, last_zxid);
        } else {
            self.restart_pipeline(mode, last_zxid);
        }
    }

    /// A change of leader: connections, sessions and watches stay; what was in flight is
    /// held and resolved once this member serves again (`failover.rs`).
    fn change_leader(&mut self, mode: Mode, last_zxid: i64) {
        let was = self.mode;
        if was != Mode::Down || mode != Mode::Down {
            self.hold_in_flight();
        }
        let down_since = match mode {
            Mode::Down => Some(self.ensemble.down_since.unwrap_or(self.now.mono_ms)),
            _ => None,
        };
        let parked = std::mem::take(&mut self.ensemble.parked);
        let handshakes = std::mem::take(&mut self.ensemble.handshakes);
        let revalidating = std::mem::take(&mut self.ensemble.revalidating);
        let unapplied = std::mem::take(&mut self.ensemble.unapplied);
        let upgrades = std::mem::take(&mut self.ensemble.upgrades);
        self.ensemble = State {
            epoch_start: if mode == Mode::Down { 0 } else { last_zxid },
            handshakes,
            upgrades,
            revalidating,
            down_since,
            unapplied,
            ..State::default()
        };
        self.enter(mode, last_zxid);
        if mode != Mode::Down {
            self.resume_in_flight();
        }
        self.retry_parked(parked);
    }

    /// Any other role change: every connection but the held handshakes closes, and what was
    /// prepared and not committed is dropped.
    fn restart_pipeline(&mut self, mode: Mode, last_zxid: i64) {
        // Handshakes held while there was no leader stay; every other connection closes.
        let parked = std::mem::take(&mut self.ensemble.parked);
        let conns: Vec<ConnId> = self
            .conns
            .keys()
            .copied()
            .filter(|c| !parked.iter().any(|(p, _, _)| p == c))
            .collect();
        for c in conns {
            self.close(c, "this member's ensemble role changed; reconnect");
            self.on_closed(c);
        }
        self.session_conn.clear();
        self.pending.clear();
        self.prep = crate::prep::Prep::with_quota_enforcement(self.cfg.enforce_quota);
        self.drop_local_sessions();
        self.ensemble = State {
            epoch_start: if matches!(mode, Mode::Leader | Mode::Follower) {
                last_zxid
            } else {
                0
            },
            ..State::default()
        };
        self.enter(mode, last_zxid);
        self.retry_parked(parked);
    }

    /// Takes the new mode: a leader numbers from `last_zxid` and gives every session a
    /// full timeout, as ZooKeeper's does.
    fn enter(&mut self, mode: Mode, last_zxid: i64) {
        self.mode = mode;
        self.last_logged = if mode == Mode::Leader {
            last_zxid
        } else {
            self.tree.last_zxid
        };
        if mode == Mode::Leader {
            // A new leader gives every session a full timeout, as ZooKeeper's does.
            let ids: Vec<i64> = self.sessions.iter().map(|s| s.id).collect();
            for id in ids {
                self.sessions.touch(id, self.now.mono_ms);
            }
        }
    }

    /// Now serving (or still not): takes the held handshakes up again, or keeps holding.
    fn retry_parked(&mut self, parked: Vec<(ConnId, ConnectRequest, i64)>) {
        for (conn, req, since) in parked {
            self.on_handshake(conn, req);
            // Still not serving: it keeps its place in the wait.
            if let Some(p) = self.ensemble.parked.last_mut() {
                if p.0 == conn {
                    p.2 = since;
                }
            }
        }
    }

    /// No leader yet: hold a client's handshake until this member serves, rather than
    /// closing it as ZooKeeper does. A client turned away by every member backs off
    /// before trying again (the Java and Rust clients wait about 100 ms per member in
    /// the connect string), which made a failover take that long; held here, its session
    /// is answered as soon as the election is over. A client that gives up first just
    /// closes the connection.
    /// A held handshake waits at most its session timeout (the client has given up on this
    /// member by then); its connection goes with the client ([`Self::unpark`]).
    pub(super) fn park_handshake(&mut self, conn: ConnId, req: ConnectRequest) {
        self.ensemble.parked.push((conn, req, self.now.mono_ms));
    }

    /// A connection that closed no longer waits.
    pub(super) fn unpark(&mut self, conn: ConnId) {
        self.ensemble.parked.retain(|(c, _, _)| *c != conn);
    }

    /// Closes the held handshakes that have waited longer than their session timeout.
    pub(super) fn expire_parked(&mut self) {
        let now = self.now.mono_ms;
        let (min, max) = (self.cfg.min_session_timeout, self.cfg.max_session_timeout);
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ensemble.parked)
            .into_iter()
            .partition(|(_, req, since)| now - since > req.timeout.clamp(min, max) as i64);
        self.ensemble.parked = keep;
        for (conn, _, _) in late {
            self.close(conn, "no leader within the session timeout");
            self.conns.remove(&conn);
        }
    }

    #[cfg(test)]
    pub(super) fn parked_len(&self) -> usize {
        self.ensemble.parked.len()
    }

    /// Learner: sends a client's write (or sync) to the leader.
    pub(super) fn forward(&mut self, conn: ConnId, x: i32, req: &Request, body: Bytes) {
        let Some((session, ids)) = self.writer(conn, x, req) else {
            return;
        };
        if matches!(req, Request::Sync { .. }) {
            self.ensemble.syncs.push_back((conn, x));
        }
        self.out.push(EngineAction::Forward {
            session,
            cxid: x,
            op: req.opcode(),
            body,
            ids,
        });
    }

    pub(super) fn forward_create_session(&mut self, conn: ConnId, id: i64, timeout: i32) {
        self.ensemble.handshakes.insert(id, (conn, timeout));
        let mut b = BytesMut::with_capacity(4);
        b.put_i32(timeout);
        self.out.push(EngineAction::Forward {
            session: id,
            cxid: 0,
            op: op::CREATE_SESSION,
            body: b.freeze(),
            ids: Vec::new(),
        });
    }

    /// Leader: a request a learner forwarded.
    pub(super) fn on_forwarded(
        &mut self,
        origin: u64,
        session: i64,
        cxid: i32,
        opcode: i32,
        body: Bytes,
        ids: Vec<Id>,
    ) {
        if self.mode != Mode::Leader {
            return;
        }
        match opcode {
            op::CREATE_SESSION => {
                let timeout = body.get(..4).map_or(self.cfg.min_session_timeout, |b| {
                    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
                });
                if !self.sessions.is_live(session) {
                    self.sessions.add(session, timeout, self.now.mono_ms);
                }
                let hdr = TxnHeader {
                    client_id: session,
                    cxid,
                    zxid: self.next_zxid(),
                    time: self.now.wall_ms,
                    op: op::CREATE_SESSION,
                };
                self.log(hdr, Txn::CreateSession { timeout }, Waiter::None);
            }
            op::SYNC => self.wait_for_sync(SyncFrom::Learner(origin)),
            _ => {
                let mut payload = BytesMut::with_capacity(8 + body.len());
                payload.put_i32(cxid);
                payload.put_i32(opcode);
                payload.put_slice(&body);
                let req = match request::decode(payload.freeze()) {
                    Ok((_, r)) if r.is_write() => r,
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(session = format_args!("0x{session:x}"), error = %e, "undecodable forwarded request");
                        Request::Unknown(opcode)
                    }
                };
                if matches!(req, Request::Unknown(_)) {
                    let hdr = TxnHeader {
                        client_id: session,
                        cxid,
                        zxid: self.next_zxid(),
                        time: self.now.wall_ms,
                        op: op::ERROR,
                    };
                    let err = ZkError::MarshallingError.code();
                    self.log(hdr, Txn::Error { err }, Waiter::None);
                    return;
                }
                self.prep_and_log(session, &ids, cxid, &req, Waiter::None);
            }
        }
    }

    /// Leader: is this session live (a client brought it to a learner)? Touches it if so.
    pub fn revalidate(&mut self, session: i64, _timeout: i32, now: super::Clock) -> bool {
        self.now = now;
        // The leader's own local sessions are unknown to the ensemble, as elsewhere.
        self.mode == Mode::Leader
            && !self.is_local(session)
            && self.sessions.touch(session, now.mono_ms)
    }

    /// Learner: a client brings a session here; the leader says whether it lives.
    pub(super) fn revalidate_with_leader(&mut self, conn: ConnId, id: i64, timeout: i32) {
        if let Some((old, _)) = self.ensemble.revalidating.insert(id, (conn, timeout)) {
            if old != conn {
                self.close(old, "session moved to a new connection");
            }
        }
        self.out.push(EngineAction::Revalidate {
            session: id,
            timeout,
        });
    }

    pub(super) fn on_revalidated(&mut self, session: i64, valid: bool) {
        let Some((conn, timeout)) = self.ensemble.revalidating.remove(&session) else {
            return;
        };
        if !self.conns.contains_key(&conn) {
            return;
        }
        if !valid {
            self.refuse_resume(conn, session);
            return;
        }
        if !self.sessions.is_live(session) {
            // Live at the leader; its createSession has not been applied here yet.
            self.sessions.add(session, timeout, self.now.mono_ms);
        }
        self.resume(conn, session, timeout);
    }

    /// Leader: a learner's clients were active.
    pub(super) fn on_touch(&mut self, sessions: Vec<(i64, i32)>) {
        for (id, _) in sessions {
            self.sessions.touch(id, self.now.mono_ms);
        }
    }

    /// A committed transaction from the quorum.
    pub(super) fn on_apply(&mut self, hdr: TxnHeader, txn: Txn, digest: Option<u64>) {
        if hdr.zxid <= self.tree.last_zxid {
            return;
        }
        match self.pending.front() {
            Some(p) if p.hdr.zxid == hdr.zxid => {}
            Some(p) if p.hdr.zxid < hdr.zxid => {
                // The quorum skipped a transaction this member prepared: replicas would
                // diverge.
                panic!(
                    "committed zxid 0x{:x} skips prepared 0x{:x}",
                    hdr.zxid, p.hdr.zxid
                );
            }
            _ => {
                let waiter = self.remote_waiter(&hdr, &txn);
                self.pending.push_front(Pending {
                    hdr,
                    txn,
                    digest,
                    waiter,
                });
            }
        }
        self.on_committed(hdr.zxid);
        self.release_syncs();
        self.release_answered_syncs();
    }

    /// Learner: who, here, waits for a transaction the leader prepared: the request of
    /// that session with that cxid, wherever it stands in its connection's queue (a
    /// `sync` ahead of it may still be waiting).
    fn remote_waiter(&mut self, hdr: &TxnHeader, txn: &Txn) -> Waiter {
        if let Txn::CreateSession { .. } = txn {
            if let Some((conn, timeout)) = self.ensemble.handshakes.remove(&hdr.client_id) {
                return Waiter::Handshake { conn, timeout };
            }
        }
        let Some(&conn) = self.session_conn.get(&hdr.client_id) else {
            return Waiter::None;
        };
        let queue = self.conns.get(&conn).map(|c| &c.queue);
        let waiting = queue.and_then(|q| {
            q.iter()
                .find(|q| q.logged && q.done.is_none() && q.xid == hdr.cxid && q.req.is_write())
        });
        match waiting {
            Some(q) => Waiter::Request {
                conn,
                xid: q.xid,
                op: q.req.opcode(),
            },
            None => Waiter::None,
        }
    }

    /// Leader: a learner's syncs die with its connection (it sends them again).
    pub(super) fn forget_learner(&mut self, origin: u64) {
        self.ensemble
            .leader_syncs
            .retain(|w| !matches!(w.from, SyncFrom::Learner(o) if o == origin));
    }

    /// Leader: a `sync` of this member's own client (connection, xid).
    pub(super) fn leader_sync(&mut self, conn: ConnId, x: i32) {
        self.wait_for_sync(SyncFrom::Local(conn, x));
    }

    /// Leader: a `sync` waits for what was logged before it and for a new read round.
    fn wait_for_sync(&mut self, from: SyncFrom) {
        self.ensemble.read_round += 1;
        let round = self.ensemble.read_round;
        self.out.push(EngineAction::ConfirmLeadership { round });
        // Before this epoch's first write, `last_logged` is the numbering base (epoch, 0),
        // which names no transaction: the history before it was applied when this member
        // took the lead, and waiting for it would hold every `sync` until the next write.
        let zxid = if self.last_logged == self.ensemble.epoch_start {
            self.tree.last_zxid
        } else {
            self.last_logged
        };
        self.ensemble
            .leader_syncs
            .push_back(SyncWait { zxid, round, from });
    }

    pub(super) fn on_leadership_confirmed(&mut self, round: u64) {
        if self.mode == Mode::Leader {
            self.ensemble.confirmed_round = self.ensemble.confirmed_round.max(round);
            self.release_syncs();
        }
    }

    /// Leader: answers the syncs whose wait is over.
    fn release_syncs(&mut self) {
        while let Some(&w) = self.ensemble.leader_syncs.front() {
            if w.zxid > self.tree.last_zxid || w.round > self.ensemble.confirmed_round {
                break;
            }
            self.ensemble.leader_syncs.pop_front();
            match w.from {
                SyncFrom::Learner(origin) => self.out.push(EngineAction::SyncDone { origin }),
                SyncFrom::Local(conn, x) => self.set_done(conn, x, Done::Synced),
            }
        }
    }

    /// Learner: the leader answered our oldest sync, as of its applied `zxid`.
    pub(super) fn on_synced(&mut self, zxid: i64) {
        let Some((conn, x)) = self.ensemble.syncs.pop_front() else {
            return;
        };
        self.ensemble.answered_syncs.push_back((conn, x, zxid));
        self.release_answered_syncs();
    }

    /// Learner: completes the answered syncs whose zxid is applied here.
    fn release_answered_syncs(&mut self) {
        while let Some(&(conn, x, zxid)) = self.ensemble.answered_syncs.front() {
            if zxid > self.tree.last_zxid {
                break;
            }
            self.ensemble.answered_syncs.pop_front();
            self.set_done(conn, x, Done::Synced);
        }
    }
}
