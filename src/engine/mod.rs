//! The engine: one standalone member's whole request pipeline, as a pure state machine.
//!
//! Owns: the data tree, the session table, prep's outstanding changes, the per-connection
//! request queues, and the transactions between prep and apply. It takes [`Event`]s (with
//! the time) and emits [`EngineAction`]s; `crate::server` performs them. No I/O, no clock.
//!
//! A write: `Request` → prep (against tree + outstanding changes) → txn with the next zxid
//! → [`EngineAction::Log`] → the log stage answers [`Event::Durable`] → apply to the tree →
//! watch notifications → the reply. Replies leave in request order per connection: a read
//! that arrives behind a write of the same connection waits in that connection's queue until
//! the write has been applied and answered; later writes are prepared at once (pipelined).
//! The tree changes only from committed transactions, so replication can later sit between
//! `Log` and `Durable` without touching this flow.

mod connect;
mod ensemble;
mod failover;
mod local;
mod reads;
mod reconfig;
mod stats;

pub use ensemble::Mode;

pub use stats::{Stats, WritePath};

use crate::auth;
use crate::jute::records::{Acl, Id};
use crate::prep::{Prep, Requester};
use crate::proto::request::Request;
use crate::proto::{op, response, xid, ZkError};
use crate::session::{self, Sessions};
use crate::tree::acl_cache::perms;
use crate::tree::{DataTree, TxnResult, WatchEvent};
use crate::txn::{Txn, TxnHeader};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

pub type ConnId = u64;

/// The current time, passed in with every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Monotonic milliseconds: session expiry.
    pub mono_ms: i64,
    /// The same monotonic clock in microseconds (`mono_ms` is it divided by 1000): only for
    /// the write path's stage timings, which are far below a millisecond.
    pub mono_us: i64,
    /// Wall-clock milliseconds since the epoch: ctime/mtime, TTLs, session ids.
    pub wall_ms: i64,
}

/// Settings the engine reads (a subset of the server configuration).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub server_id: i64,
    pub tick_ms: i64,
    pub min_session_timeout: i32,
    pub max_session_timeout: i32,
    pub extended_types: bool,
    pub super_digest: Option<String>,
    pub container_check_ms: i64,
    pub enforce_quota: bool,
    /// Most watches one session may hold here (0: no limit).
    pub max_watches_per_session: usize,
    /// `enforce.auth.enabled` with `enforce.auth.schemes` (or
    /// `sessionRequireClientSASLAuth`: `["sasl"]`): a connection that has no identity of
    /// these schemes gets SessionClosedRequireSaslAuth for any request but auth and sasl,
    /// and is closed. Empty: not enforced.
    pub enforce_auth_schemes: Vec<String>,
    /// `zookeeper.allowSaslFailedClients`: a failed SASL exchange leaves the connection
    /// open (unless SASL is enforced).
    pub allow_sasl_failed: bool,
    /// `leaderServes`: as leader, this member accepts new client sessions.
    pub leader_serves: bool,
    /// `localSessionsEnabled` (see `local.rs`).
    pub local_sessions: bool,
    /// `localSessionsUpgradingEnabled` (see `local.rs`).
    pub local_sessions_upgrading: bool,
    /// `reconfigEnabled` (see `reconfig.rs`).
    pub reconfig_enabled: bool,
    /// `standaloneEnabled`: a reconfig must leave two voters.
    pub standalone_enabled: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            server_id: 0,
            tick_ms: 2000,
            min_session_timeout: 4000,
            max_session_timeout: 40000,
            extended_types: false,
            super_digest: None,
            container_check_ms: 60_000,
            enforce_quota: false,
            max_watches_per_session: 1_000_000,
            enforce_auth_schemes: Vec::new(),
            allow_sasl_failed: false,
            leader_serves: true,
            local_sessions: false,
            local_sessions_upgrading: false,
            reconfig_enabled: false,
            standalone_enabled: true,
        }
    }
}

pub enum Event {
    /// A client connection was accepted.
    /// `ids`: what the transport proved (a TLS client certificate's x509 identity).
    Accepted {
        conn: ConnId,
        ip: String,
        ids: Vec<Id>,
    },
    /// Its first frame, the ConnectRequest.
    Handshake {
        conn: ConnId,
        req: crate::jute::records::ConnectRequest,
    },
    /// A request frame after the handshake.
    Request {
        conn: ConnId,
        xid: i32,
        req: Request,
        /// The request record's bytes (after the header), as a follower forwards them.
        body: Bytes,
    },
    /// The connection is gone (closed by either side).
    Closed { conn: ConnId },
    /// Standalone: every transaction up to `zxid` is durable, which is committed there (an
    /// ensemble member hands durability to ZAB in `node::Node`, and applies quorum commits
    /// as [`Event::Apply`]).
    Durable { zxid: i64 },
    /// Time has passed: expire sessions, check containers.
    Tick,
    /// Ensemble: a quorum-committed transaction, in zxid order (see `ensemble.rs`).
    Apply {
        hdr: TxnHeader,
        txn: Txn,
        digest: Option<u64>,
    },
    /// Ensemble leader: a request a learner forwarded (REQUEST); `origin` names the learner.
    Forwarded {
        origin: u64,
        session: i64,
        cxid: i32,
        op: i32,
        body: Bytes,
        ids: Vec<Id>,
    },
    /// Ensemble leader: sessions a learner's clients kept alive (its PING).
    Touch { sessions: Vec<(i64, i32)> },
    /// Ensemble learner: the leader answered the oldest sync this member forwarded; it
    /// completes once everything up to `zxid` (the leader's applied zxid then) is applied
    /// here too.
    Synced { zxid: i64 },
    /// Ensemble leader: read round `round` (and every earlier one) is confirmed: a quorum
    /// still followed this leader after it started (see `quorum::Peer::start_read_round`).
    LeadershipConfirmed { round: u64 },
    /// Ensemble learner: the leader's answer to a REVALIDATE.
    Revalidated { session: i64, valid: bool },
    /// Ensemble: this member's role changed. A leader numbers its transactions from
    /// `last_zxid` + 1.
    Mode { mode: Mode, last_zxid: i64 },
    /// Ensemble leader: learner `origin`'s connection ended, or it connected anew; what it
    /// forwarded on it and is still waiting (its syncs) is not answered.
    LearnerGone { origin: u64 },
    /// Ensemble: the transactions this member has logged and not yet applied, by (session,
    /// cxid), told just before it serves again: a request in flight whose transaction is
    /// among them is not sent again (its own COMMIT will answer it).
    Unapplied { requests: Vec<(i64, i32)> },
    /// Ensemble: this engine's state is being replaced (a SNAP from the leader, a reload
    /// after TRUNC): every client connection closes, and its clients reconnect.
    Replaced,
}

/// What goes to a client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    /// Write a frame on a connection. `completes` marks replies to client requests (the
    /// connection's outstanding-request count goes down); notifications don't.
    Send {
        conn: ConnId,
        frame: response::Frame,
        completes: bool,
    },
    /// Close the connection once what was sent before is written. With `linger` the
    /// server first gives the client a moment to close its end (after closeSession, so the
    /// client does not see the socket vanish under it).
    Close {
        conn: ConnId,
        reason: &'static str,
        linger: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineAction {
    /// A frame for, or the close of, a client connection.
    Client(ToClient),
    /// Make this transaction durable, then answer with `Event::Durable`. `digest` is the
    /// tree digest once it applies (written beside it, as ZooKeeper's TxnDigest).
    Log {
        hdr: TxnHeader,
        txn: Txn,
        digest: u64,
    },
    /// Ensemble learner: send this request to the leader (REQUEST).
    Forward {
        session: i64,
        cxid: i32,
        op: i32,
        body: Bytes,
        ids: Vec<Id>,
    },
    /// Ensemble leader: everything committed before learner `origin`'s sync is applied;
    /// answer it (SYNC).
    SyncDone { origin: u64 },
    /// Ensemble learner: ask the leader whether this session is live (REVALIDATE).
    Revalidate { session: i64, timeout: i32 },
    /// Ensemble leader: a `sync` waits for read round `round`; start it (or a later one)
    /// and answer with `Event::LeadershipConfirmed`. The host may start one round for all
    /// the rounds asked for in one pass.
    ConfirmLeadership { round: u64 },
}

/// A request waiting in its connection's queue.
struct Queued {
    xid: i32,
    req: Request,
    body: Bytes,
    arrived: i64,
    /// The same, in mono us (the write path's `update_us`).
    arrived_us: i64,
    /// Set once a write has been prepared and logged (or forwarded), or a `sync` has
    /// started waiting.
    logged: bool,
    /// The outcome, once known; it leaves when the request reaches the front of its queue,
    /// so replies go out in request order even when a later write applies before an
    /// earlier `sync` completes.
    done: Option<Done>,
}

/// A request's outcome, waiting for its turn.
enum Done {
    /// A write's reply, and the request opcode.
    Reply(Bytes, i32),
    /// A `sync` whose wait is over: answered from the tree when it leaves.
    Synced,
}

struct Conn {
    ip: String,
    session: Option<i64>,
    ids: Vec<Id>,
    /// Handshake done: requests may be processed.
    ready: bool,
    queue: VecDeque<Queued>,
    /// Mirrors the client's readOnly byte presence in the ConnectResponse.
    read_only_field: Option<bool>,
    stats: stats::ConnStats,
}

/// Who waits for a logged transaction.
pub(super) enum Waiter {
    /// A client request: its connection, xid and request opcode.
    Request { conn: ConnId, xid: i32, op: i32 },
    /// A new session's handshake.
    Handshake { conn: ConnId, timeout: i32 },
    /// Nobody (session expiry, container cleanup).
    None,
}

pub(super) struct Pending {
    hdr: TxnHeader,
    txn: Txn,
    digest: Option<u64>,
    waiter: Waiter,
}

pub struct Engine {
    cfg: EngineConfig,
    pub tree: DataTree,
    pub sessions: Sessions,
    prep: Prep,
    conns: HashMap<ConnId, Conn>,
    session_conn: HashMap<i64, ConnId>,
    pending: VecDeque<Pending>,
    /// The zxid of the last transaction handed to the log.
    last_logged: i64,
    now: Clock,
    next_container_check: i64,
    out: Vec<EngineAction>,
    pub stats: Stats,
    /// Standalone, or this member's role in an ensemble.
    mode: Mode,
    ensemble: ensemble::State,
    /// Sessions already told (in the log) that they hold the most watches allowed; cleared
    /// when their connection goes.
    watch_limit_hit: std::collections::HashSet<i64>,
    /// The sessions only this member knows (`local.rs`).
    local: std::collections::HashSet<i64>,
    /// An ensemble's membership, as a reconfig's checks need it (`reconfig.rs`); None
    /// standalone.
    membership: Option<reconfig::View>,
}

impl Engine {
    pub fn new(cfg: EngineConfig, tree: DataTree, sessions: Sessions) -> Self {
        let last = tree.last_zxid;
        Engine {
            prep: Prep::with_quota_enforcement(cfg.enforce_quota),
            cfg,
            tree,
            sessions,
            conns: HashMap::new(),
            session_conn: HashMap::new(),
            pending: VecDeque::new(),
            last_logged: last,
            now: Clock::default(),
            next_container_check: 0,
            out: Vec::new(),
            stats: Stats::default(),
            mode: Mode::Standalone,
            ensemble: ensemble::State::default(),
            watch_limit_hit: Default::default(),
            local: Default::default(),
            membership: None,
        }
    }

    /// A fresh standalone engine with an empty tree.
    pub fn fresh(cfg: EngineConfig, now: Clock) -> Self {
        let tree = DataTree::new(cfg.extended_types);
        let sessions = Sessions::new(
            cfg.tick_ms,
            session::first_session_id(cfg.server_id, now.wall_ms),
        );
        Engine::new(cfg, tree, sessions)
    }

    /// An engine over a recovered tree; each recovered session gets its full timeout from now.
    pub fn recovered(
        cfg: EngineConfig,
        tree: DataTree,
        sessions: impl IntoIterator<Item = (i64, i32)>,
        now: Clock,
    ) -> Self {
        let mut table = Sessions::new(
            cfg.tick_ms,
            session::first_session_id(cfg.server_id, now.wall_ms),
        );
        for (id, timeout) in sessions {
            table.add(id, timeout, now.mono_ms);
        }
        Engine::new(cfg, tree, table)
    }

    /// The session table as snapshots hold it.
    pub fn session_list(&self) -> Vec<(i64, i32)> {
        let mut v: Vec<(i64, i32)> = self
            .sessions
            .iter()
            .filter(|s| !self.is_local(s.id))
            .map(|s| (s.id, s.timeout))
            .collect();
        v.sort_unstable();
        v
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn last_zxid(&self) -> i64 {
        self.tree.last_zxid
    }

    /// The time of the last event handled.
    pub fn clock(&self) -> Clock {
        self.now
    }

    /// Feeds one event; returns the actions it caused, in order.
    pub fn handle(&mut self, event: Event, now: Clock) -> Vec<EngineAction> {
        self.now = now;
        match event {
            Event::Accepted { conn, ip, ids } => self.on_accepted(conn, ip, ids),
            Event::Handshake { conn, req } => self.on_handshake(conn, req),
            Event::Request {
                conn,
                xid,
                req,
                body,
            } => self.on_request(conn, xid, req, body),
            Event::Closed { conn } => self.on_closed(conn),
            Event::Durable { zxid } => self.on_committed(zxid),
            Event::Tick => self.on_tick(),
            Event::Apply { hdr, txn, digest } => self.on_apply(hdr, txn, digest),
            Event::Forwarded {
                origin,
                session,
                cxid,
                op,
                body,
                ids,
            } => self.on_forwarded(origin, session, cxid, op, body, ids),
            Event::Touch { sessions } => self.on_touch(sessions),
            Event::Synced { zxid } => self.on_synced(zxid),
            Event::LeadershipConfirmed { round } => self.on_leadership_confirmed(round),
            Event::Revalidated { session, valid } => self.on_revalidated(session, valid),
            Event::Mode { mode, last_zxid } => self.set_mode(mode, last_zxid),
            Event::LearnerGone { origin } => self.forget_learner(origin),
            Event::Unapplied { requests } => {
                self.ensemble.unapplied = requests.into_iter().collect();
            }
            Event::Replaced => self.close_all("this member loaded a new state; reconnect"),
        }
        std::mem::take(&mut self.out)
    }

    fn send(&mut self, conn: ConnId, frame: impl Into<response::Frame>, completes: bool) {
        self.stats.packets_sent += 1;
        let frame = frame.into();
        // ZooKeeper counts the reply without its 4-byte length.
        self.stats
            .record_response_size(frame.len().saturating_sub(4));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.stats.sent += 1;
        }
        self.out.push(EngineAction::Client(ToClient::Send {
            conn,
            frame,
            completes,
        }));
    }

    fn close(&mut self, conn: ConnId, reason: &'static str) {
        self.out.push(EngineAction::Client(ToClient::Close {
            conn,
            reason,
            linger: false,
        }));
    }

    fn on_accepted(&mut self, conn: ConnId, ip: String, proven: Vec<Id>) {
        let mut ids = vec![Id::new("ip", &ip)];
        ids.extend(proven);
        self.conns.insert(
            conn,
            Conn {
                ip,
                session: None,
                ids,
                ready: false,
                queue: VecDeque::new(),
                read_only_field: None,
                stats: stats::ConnStats::default(),
            },
        );
    }

    /// A connection is gone. Its session lives on (until it expires or the client comes
    /// back), but its watches go with the connection, as in ZooKeeper (whose watcher is
    /// the connection): a client that reconnects, here or elsewhere, sends them again with
    /// setWatches, and any that fired meanwhile fire then. Unless the session has already
    /// moved to a newer connection on this member, which holds them now.
    fn on_closed(&mut self, conn: ConnId) {
        self.unpark(conn);
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(s) = c.session {
                if self.session_conn.get(&s) == Some(&conn) {
                    self.session_conn.remove(&s);
                    self.tree.watches.remove_session(s);
                    self.watch_limit_hit.remove(&s);
                }
            }
        }
    }

    fn on_request(&mut self, conn: ConnId, xid: i32, req: Request, body: Bytes) {
        self.stats.packets_received += 1;
        let (arrived, arrived_us) = (self.now.mono_ms, self.now.mono_us);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.stats.received += 1;
        if !self.authentication_enforced(conn, xid, &req) {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Request::Sasl(crate::proto::request::Sasl::Evaluated(o)) = &req {
            // As ZooKeeper: the identity holds from the moment the token is evaluated.
            for id in &o.ids {
                if !c.ids.contains(id) {
                    c.ids.push(id.clone());
                }
            }
        }
        if let Some(s) = c.session {
            self.sessions.touch(s, self.now.mono_ms);
            self.note_touch(s);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.queue.push_back(Queued {
            xid,
            req,
            body,
            arrived,
            arrived_us,
            logged: false,
            done: None,
        });
        self.pump(conn);
    }

    /// ZooKeeper's AuthenticationHelper: with enforcement on, a request other than auth or
    /// sasl from a connection without an identity of an enforced scheme is answered with
    /// SessionClosedRequireSaslAuth and the connection closed (its session lives on until
    /// it expires). False when the request was refused.
    fn authentication_enforced(&mut self, conn: ConnId, xid: i32, req: &Request) -> bool {
        let schemes = &self.cfg.enforce_auth_schemes;
        if schemes.is_empty() || matches!(req, Request::Auth { .. } | Request::Sasl(_)) {
            return true;
        }
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        if c.ids.iter().any(|i| schemes.contains(&i.scheme)) {
            return true;
        }
        let schemes = schemes.clone();
        let held: Vec<&str> = c.ids.iter().map(|i| i.scheme.as_str()).collect();
        tracing::warn!(conn, ?held, enforced = ?schemes, "request from a connection not authenticated by an enforced scheme; closing it");
        let code = ZkError::SessionClosedRequireSaslAuth.code();
        let f = response::header_only(xid, self.tree.last_zxid, code);
        self.send(conn, f, true);
        self.close(conn, "authentication required");
        false
    }

    /// Works through a connection's queue: sends the finished outcomes and answers reads
    /// at the front, prepares and logs every not-yet-logged write, and stops at the first
    /// read behind a logged write. In an ensemble a `sync` waits like a write (forwarded
    /// to the leader, or on the leader until its read round is confirmed).
    fn pump(&mut self, conn: ConnId) {
        if self.mode == Mode::Down {
            self.pump_held(conn);
            return;
        }
        let forwarding = self.mode.forwards();
        let gated_sync = forwarding || self.mode == Mode::Leader;
        let mut i = 0;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if !c.ready || i >= c.queue.len() {
                return;
            }
            let item = &c.queue[i];
            if i == 0 && item.done.is_some() {
                let mut item = c.queue.pop_front().expect("front");
                let done = item.done.take().expect("checked");
                if !self.complete(conn, item, done) {
                    return;
                }
                continue;
            }
            if item.logged {
                i += 1;
                continue;
            }
            if self.mode == Mode::ReadOnly && item.req.is_write() {
                let item = c.queue.remove(i).expect("present");
                self.refuse_in_read_only(conn, item.xid, &item.req);
                continue;
            }
            let sync = matches!(item.req, Request::Sync { .. });
            if item.req.is_write() || (gated_sync && sync) {
                let (x, req, body) = (item.xid, item.req.clone(), item.body.clone());
                let session = c.session.unwrap_or(0);
                c.queue[i].logged = true;
                if req.is_write() && self.is_local(session) {
                    if let Some(done) = self.local_session_write(session, x, &req) {
                        // Answered here, in its turn.
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.queue[i].done = Some(done);
                        }
                        continue;
                    }
                }
                if forwarding {
                    self.forward(conn, x, &req, body);
                } else if sync {
                    self.leader_sync(conn, x);
                } else {
                    self.start_write(conn, x, &req);
                }
                i += 1;
            } else if i == 0 {
                let item = c.queue.pop_front().expect("front");
                self.note_answered(conn, &item);
                self.answer_read(conn, item.xid, item.req);
            } else {
                return;
            }
        }
    }

    fn next_zxid(&mut self) -> i64 {
        self.last_logged += 1;
        self.last_logged
    }

    fn log(&mut self, hdr: TxnHeader, txn: Txn, waiter: Waiter) {
        let digest = self.prep.digest(&self.tree);
        self.out.push(EngineAction::Log {
            hdr,
            txn: txn.clone(),
            digest,
        });
        self.pending.push_back(Pending {
            hdr,
            txn,
            digest: Some(digest),
            waiter,
        });
    }

    /// Prepares a client write and logs its transaction (an Error txn when prep refuses,
    /// as ZooKeeper logs failed writes too, so zxids match).
    fn start_write(&mut self, conn: ConnId, x: i32, req: &Request) {
        let Some((session, ids)) = self.writer(conn, x, req) else {
            return;
        };
        let waiter = Waiter::Request {
            conn,
            xid: x,
            op: req.opcode(),
        };
        self.prep_and_log(session, &ids, x, req, waiter);
    }

    /// The session and identities a write on `conn` runs as; None (after answering
    /// SessionExpired) when the session is gone, unless the write is its closeSession.
    fn writer(&mut self, conn: ConnId, x: i32, req: &Request) -> Option<(i64, Vec<Id>)> {
        let c = &self.conns[&conn];
        let session = c.session.unwrap_or(0);
        let ids = c.ids.clone();
        if !self.sessions.is_live(session) && !matches!(req, Request::CloseSession) {
            self.expired_request(conn, x);
            return None;
        }
        Some((session, ids))
    }

    /// Prepares a write for `session` and logs its transaction (an Error txn when prep
    /// refuses).
    fn prep_and_log(&mut self, session: i64, ids: &[Id], x: i32, req: &Request, waiter: Waiter) {
        let zxid = self.next_zxid();
        let who = Requester { session, ids };
        let time = self.now.wall_ms;
        let unknown = !self.sessions.is_live(session)
            && !matches!(req, Request::CloseSession)
            && !self.takes_remote_local(session, req);
        let txn = if unknown {
            Txn::Error {
                err: ZkError::SessionExpired.code(),
            }
        } else if let Request::Reconfig(ask) = req {
            self.prepare_reconfig(&who, ask, zxid, time)
                .unwrap_or_else(|e| Txn::Error { err: e.code() })
        } else {
            self.prep
                .prepare(&self.tree, &who, req, zxid, time)
                .unwrap_or_else(|e| Txn::Error { err: e.code() })
        };
        if matches!(req, Request::CloseSession) {
            self.sessions.set_closing(session);
        }
        let hdr = TxnHeader {
            client_id: session,
            cxid: x,
            zxid,
            time,
            op: if matches!(txn, Txn::Error { .. }) {
                op::ERROR
            } else {
                txn.op()
            },
        };
        self.log(hdr, txn, waiter);
    }

    /// A request on a session that has expired: SessionExpired, then the connection closes.
    fn expired_request(&mut self, conn: ConnId, x: i32) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queue.clear();
        }
        let f = response::header_only(x, self.tree.last_zxid, ZkError::SessionExpired.code());
        self.send(conn, f, true);
        self.close(conn, "session expired");
    }

    fn on_committed(&mut self, zxid: i64) {
        while self.pending.front().is_some_and(|p| p.hdr.zxid <= zxid) {
            let p = self.pending.pop_front().expect("front");
            let mut events = Vec::new();
            let result = self.tree.apply(&p.hdr, &p.txn, &mut events);
            self.prep.applied(p.hdr.zxid);
            let expected = self.tree.digest_to_check(p.hdr.zxid, p.digest);
            if expected.is_some_and(|d| d != self.tree.digest) {
                self.stats.digest_mismatches += 1;
                tracing::error!(
                    zxid = format_args!("0x{:x}", p.hdr.zxid),
                    expected = expected.unwrap_or_default(),
                    actual = self.tree.digest,
                    "tree digest mismatch after applying a transaction"
                );
            }
            self.after_apply(&p);
            self.deliver(events);
            self.finish(p, result);
        }
    }

    /// Session bookkeeping that follows a session transaction.
    fn after_apply(&mut self, p: &Pending) {
        match &p.txn {
            Txn::CreateSession { timeout } => {
                self.ensemble.upgrades.remove(&p.hdr.client_id);
                if !self.sessions.is_live(p.hdr.client_id) {
                    self.sessions
                        .add(p.hdr.client_id, *timeout, self.now.mono_ms);
                }
            }
            Txn::CloseSession { .. } => {
                self.sessions.remove(p.hdr.client_id);
            }
            _ => {}
        }
    }

    fn deliver(&mut self, events: Vec<WatchEvent>) {
        self.count_fired(&events);
        for e in events {
            let Some(&conn) = self.session_conn.get(&e.session) else {
                continue;
            };
            if !self.may_read(conn, &e.acl) {
                tracing::trace!(path = %e.path, "event not delivered: no READ on the node");
                continue;
            }
            let f = response::notification(e.zxid, e.kind, &e.path);
            self.send(conn, f, false);
        }
    }

    /// Whether the connection's identities pass READ on `acl`: a watch event goes only to
    /// whoever could read the node (ZooKeeper 3.8.4+/3.9.2+, CVE-2024-23944).
    fn may_read(&self, conn: ConnId, acl: &[Acl]) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| auth::check(acl, perms::READ, &c.ids).is_ok())
    }

    /// Watchers fired per event (one path, one type), for `node_*_watch_count`.
    fn count_fired(&mut self, events: &[WatchEvent]) {
        use crate::proto::event;
        let mut i = 0;
        while i < events.len() {
            let (kind, path) = (events[i].kind, &events[i].path);
            let n = events[i..]
                .iter()
                .take_while(|e| e.kind == kind && &e.path == path)
                .count();
            let slot = match kind {
                event::NODE_CREATED => Some(0),
                event::NODE_DELETED => Some(1),
                event::NODE_DATA_CHANGED => Some(2),
                event::NODE_CHILDREN_CHANGED => Some(3),
                _ => None,
            };
            if let Some(k) = slot {
                self.stats.watch_fired[k].add(n as i64);
            }
            i += n;
        }
    }

    /// Answers whoever waited for an applied transaction.
    fn finish(&mut self, p: Pending, result: TxnResult) {
        match p.waiter {
            Waiter::Request { conn, xid: x, op } => {
                let frame = response::reply(x, p.hdr.zxid, result.err, |w| match op {
                    op::RECONFIG => {
                        reconfig::write_reply(w, &p.txn, &result.stat.unwrap_or_default())
                    }
                    _ => response::write_result(w, op, &result),
                });
                self.set_done(conn, x, Done::Reply(frame, op));
            }
            Waiter::Handshake { conn, timeout } => {
                self.session_established(conn, p.hdr.client_id, timeout);
            }
            Waiter::None => {
                if let Txn::CloseSession { .. } = p.txn {
                    if let Some(conn) = self.session_conn.remove(&p.hdr.client_id) {
                        self.close(conn, "session expired");
                    }
                }
            }
        }
    }

    /// Records the outcome of `conn`'s waiting request `x` and sends what is now in turn.
    fn set_done(&mut self, conn: ConnId, x: i32, done: Done) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let waiting = c
            .queue
            .iter_mut()
            .find(|q| q.logged && q.done.is_none() && q.xid == x);
        if let Some(q) = waiting {
            q.done = Some(done);
            self.pump(conn);
        }
    }

    /// Sends a finished request's outcome; false once the connection is closing.
    fn complete(&mut self, conn: ConnId, item: Queued, done: Done) -> bool {
        self.note_answered(conn, &item);
        match done {
            Done::Reply(frame, op) => {
                self.send(conn, frame, true);
                if op == op::CLOSE_SESSION {
                    self.out.push(EngineAction::Client(ToClient::Close {
                        conn,
                        reason: "session closed by client",
                        linger: true,
                    }));
                    return false;
                }
            }
            Done::Synced => self.answer_read(conn, item.xid, item.req),
        }
        true
    }

    fn on_tick(&mut self) {
        self.expire_parked();
        self.close_leaderless();
        self.expire_local_sessions();
        if !self.mode.decides_expiry() {
            return;
        }
        for s in self.sessions.expire(self.now.mono_ms) {
            if self.is_local(s) {
                continue;
            }
            self.stats.sessions_expired += 1;
            tracing::info!(session = format_args!("0x{s:x}"), "session expired");
            self.system_write(s, &Request::CloseSession);
        }
        if self.now.mono_ms >= self.next_container_check {
            self.next_container_check = self.now.mono_ms + self.cfg.container_check_ms.max(1);
            for p in self.tree.expired_containers(self.now.wall_ms) {
                self.system_write(0, &Request::DeleteContainer { path: p });
            }
        }
    }

    /// A write the server itself makes. If prep refuses (e.g. already being deleted),
    /// nothing is logged.
    fn system_write(&mut self, session: i64, req: &Request) {
        let ids = [Id::new("super", "")];
        let who = Requester { session, ids: &ids };
        let zxid = self.last_logged + 1;
        let time = self.now.wall_ms;
        let Ok(txn) = self.prep.prepare(&self.tree, &who, req, zxid, time) else {
            return;
        };
        self.last_logged = zxid;
        let hdr = TxnHeader {
            client_id: session,
            cxid: 0,
            zxid,
            time,
            op: txn.op(),
        };
        self.log(hdr, txn, Waiter::None);
    }

    /// Sends a reply to a read-type request.
    fn reply_read(&mut self, conn: ConnId, x: i32, r: Result<Option<Bytes>, ZkError>) {
        let zxid = self.tree.last_zxid;
        let frame = match r {
            Ok(Some(body)) => response::reply_with_body(x, zxid, &body),
            Ok(None) => response::header_only(x, zxid, 0),
            Err(e) => response::header_only(x, zxid, e.code()),
        };
        self.send(conn, frame, true);
    }

    /// The server's and the connection's latency counters for an answered request.
    fn note_answered(&mut self, conn: ConnId, item: &Queued) {
        let latency = self.now.mono_ms - item.arrived;
        self.stats.record_latency(latency);
        if item.req.is_write() {
            self.stats.update_latency.add(latency.max(0));
            let us = self.now.mono_us - item.arrived_us;
            self.stats.write_path.update_us.add(us.max(0));
        } else {
            self.stats.read_latency.add(latency.max(0));
        }
        let (zxid, wall) = (self.tree.last_zxid, self.now.wall_ms);
        if let Some(c) = self.conns.get_mut(&conn) {
            let op = item.req.opcode();
            c.stats.answered(op, item.xid, zxid, latency, wall);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn outstanding(&self) -> usize {
        self.conns.values().map(|c| c.queue.len()).sum()
    }

    /// Writes whose outcome is not decided yet: logged and not yet applied, or forwarded
    /// to the leader and not yet answered. A graceful stop waits for them.
    pub fn writes_in_flight(&self) -> usize {
        let forwarded: usize = self
            .conns
            .values()
            .flat_map(|c| c.queue.iter())
            .filter(|q| q.logged && q.done.is_none())
            .count();
        self.pending.len().max(forwarded)
    }
}

/// Replies use these xids for requests the server answers specially.
pub fn is_special_xid(x: i32) -> bool {
    x == xid::PING || x == xid::AUTH
}

#[cfg(test)]
mod failover_tests;
#[cfg(test)]
mod local_tests;
#[cfg(test)]
mod reconfig_tests;
#[cfg(test)]
mod tests;
