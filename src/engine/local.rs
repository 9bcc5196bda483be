//! Local sessions, as ZooKeeper 3.5+ has them (`localSessionsEnabled`,
//! `localSessionsUpgradingEnabled`), and the sessions of read-only mode, which are local too.
//!
//! Owns: which of the engine's sessions are local (`Engine.local`), their expiry, their
//! close, and their upgrade to global sessions. A local session lives in `Engine.sessions`
//! like any other, so every request path finds it live, but it is known to this member
//! only: no createSession or closeSession transaction is logged for it, it is not in
//! snapshots nor in the session list sent to learners, and learners do not report it to
//! the leader in their PINGs. Must not: touch the tree (a local session owns no ephemeral).
//!
//! The rules, from ZooKeeper's `UpgradeableSessionTracker` and `QuorumZooKeeperServer`:
//! - With `localSessionsEnabled`, every new session on a leader, follower or observer is
//!   local. (Standalone servers have none.)
//! - Its client's closeSession is answered here and closes it; when it expires (this member
//!   expires it, leader or not), its connection closes and the client then finds it gone.
//! - A client that takes it to another member finds it expired there: that member asks the
//!   leader, which never heard of it.
//! - Its writes are forwarded as any other. The leader takes a write from a session it does
//!   not know when local sessions are on and the session id was made by another member
//!   (its top byte), as ZooKeeper's `LeaderSessionTracker.checkSession` does.
//! - A create of an ephemeral node (alone or in a multi) needs a global session: with
//!   `localSessionsUpgradingEnabled`, the session is first upgraded — a createSession
//!   transaction with the same id and timeout goes ahead of the write, in order — and
//!   stays global; without it, the write gets EphemeralOnLocalSession. Should the leader
//!   change before that createSession applies, it is sent again under the new one, ahead
//!   of the writes sent again.

use super::{ConnId, Done, Engine, EngineAction, Mode, ToClient, Waiter};
use crate::proto::request::{CreateRequest, Request};
use crate::proto::{op, response, CreateMode, ZkError};
use crate::txn::{Txn, TxnHeader};
use bytes::{BufMut, BytesMut};

/// What a write on a local session needs before it may go on.
pub(super) enum LocalWrite {
    /// Nothing: it goes on as any write.
    Proceeds,
    /// Its closeSession: answered here.
    Closes,
    /// It creates an ephemeral node: the session must become global first.
    NeedsGlobal,
}

impl Engine {
    /// Whether a new session on this member is local.
    pub(super) fn new_sessions_are_local(&self) -> bool {
        match self.mode {
            Mode::ReadOnly => true,
            Mode::Leader | Mode::Follower => self.cfg.local_sessions,
            Mode::Standalone | Mode::Down => false,
        }
    }

    pub(super) fn is_local(&self, session: i64) -> bool {
        !self.local.is_empty() && self.local.contains(&session)
    }

    /// Sessions only this member knows.
    pub fn local_session_count(&self) -> usize {
        self.local.len()
    }

    /// Starts a session only this member knows, and answers the handshake at once.
    pub(super) fn local_session(&mut self, conn: ConnId, id: i64, timeout: i32) {
        self.sessions.add(id, timeout, self.now.mono_ms);
        self.local.insert(id);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(id);
        }
        self.session_established(conn, id, timeout);
    }

    /// Leader: may `req` from `session`, which it does not know, go ahead? Only when it
    /// can be another member's local session, and does not need a global one (that member
    /// upgrades first; a write that still needs one lost its createSession in a change of
    /// leader, and gets SessionExpired).
    pub(super) fn takes_remote_local(&self, session: i64, req: &Request) -> bool {
        self.cfg.local_sessions
            && self.mode == Mode::Leader
            && crate::session::server_of(session) != self.cfg.server_id & 0xff
            && !matches!(self.local_write(req), LocalWrite::NeedsGlobal)
    }

    pub(super) fn local_write(&self, req: &Request) -> LocalWrite {
        let ephemeral = |c: &CreateRequest| {
            CreateMode::from_flags(c.flags).is_some_and(CreateMode::is_ephemeral)
        };
        match req {
            Request::CloseSession => LocalWrite::Closes,
            Request::Create(c) if ephemeral(c) => LocalWrite::NeedsGlobal,
            Request::Multi(ops)
                if ops
                    .iter()
                    .any(|o| matches!(o, Request::Create(c) if ephemeral(c))) =>
            {
                LocalWrite::NeedsGlobal
            }
            _ => LocalWrite::Proceeds,
        }
    }

    /// A write on local session `session`, before it is forwarded or prepared: `Some`
    /// when it is answered here instead (its closeSession, or EphemeralOnLocalSession), in
    /// its turn among the connection's replies.
    pub(super) fn local_session_write(
        &mut self,
        session: i64,
        x: i32,
        req: &Request,
    ) -> Option<Done> {
        let zxid = self.tree.last_zxid;
        match self.local_write(req) {
            LocalWrite::Proceeds => None,
            LocalWrite::Closes => {
                // The reply closes the connection (see `complete`).
                self.end_local_session(session, None);
                let f = response::header_only(x, zxid, 0);
                Some(Done::Reply(f, op::CLOSE_SESSION))
            }
            LocalWrite::NeedsGlobal if !self.cfg.local_sessions_upgrading => {
                let err = ZkError::EphemeralOnLocalSession.code();
                let f = response::header_only(x, zxid, err);
                Some(Done::Reply(f, req.opcode()))
            }
            LocalWrite::NeedsGlobal => {
                self.upgrade_session(session);
                None
            }
        }
    }

    /// Makes a local session global: its createSession goes ahead of the write that needs
    /// it (forwarded first, or logged first on the leader).
    fn upgrade_session(&mut self, session: i64) {
        self.local.remove(&session);
        let timeout = self.sessions.get(session).map_or(0, |s| s.timeout);
        tracing::info!(
            session = format_args!("0x{session:x}"),
            "upgrading a local session to a global one"
        );
        self.ensemble.upgrades.insert(session, timeout);
        self.send_create_session(session, timeout);
    }

    fn send_create_session(&mut self, session: i64, timeout: i32) {
        if self.mode.forwards() {
            let mut b = BytesMut::with_capacity(4);
            b.put_i32(timeout);
            self.out.push(EngineAction::Forward {
                session,
                cxid: 0,
                op: op::CREATE_SESSION,
                body: b.freeze(),
                ids: Vec::new(),
            });
            return;
        }
        let hdr = TxnHeader {
            client_id: session,
            cxid: 0,
            zxid: self.next_zxid(),
            time: self.now.wall_ms,
            op: op::CREATE_SESSION,
        };
        self.log(hdr, Txn::CreateSession { timeout }, Waiter::None);
    }

    /// Under a new leader: the upgrades whose createSession had not applied are sent again
    /// (before the writes that need them, which are sent again after), unless it is logged
    /// here and waits for its commit (`unapplied`). Returns how many were sent.
    pub(super) fn resend_upgrades(
        &mut self,
        unapplied: &std::collections::HashSet<(i64, i32)>,
    ) -> usize {
        let mut upgrades: Vec<(i64, i32)> = self.ensemble.upgrades.clone().into_iter().collect();
        upgrades.sort_unstable();
        let mut sent = 0;
        for (session, timeout) in upgrades {
            if !unapplied.contains(&(session, 0)) {
                self.send_create_session(session, timeout);
                sent += 1;
            }
        }
        sent
    }

    /// Expires the local sessions whose time has passed (any mode: this member alone
    /// knows them).
    pub(super) fn expire_local_sessions(&mut self) {
        if self.local.is_empty() {
            return;
        }
        let now = self.now.mono_ms;
        let mut gone: Vec<i64> = self
            .local
            .iter()
            .copied()
            .filter(|id| self.sessions.has_expired(*id, now))
            .collect();
        gone.sort_unstable();
        for id in gone {
            tracing::info!(session = format_args!("0x{id:x}"), "local session expired");
            self.stats.sessions_expired += 1;
            self.end_local_session(id, Some("session expired"));
        }
    }

    /// Forgets local session `id`, and closes its connection with `close` as the reason.
    fn end_local_session(&mut self, id: i64, close: Option<&'static str>) {
        self.local.remove(&id);
        self.sessions.remove(id);
        let Some(reason) = close else {
            return;
        };
        if let Some(conn) = self.session_conn.get(&id).copied() {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.queue.clear();
            }
            self.out.push(EngineAction::Client(ToClient::Close {
                conn,
                reason,
                linger: false,
            }));
        }
    }

    /// Drops every local session (read-only mode ends, or begins: ZooKeeper restarts its
    /// server then, and its clients' sessions with it).
    pub(super) fn drop_local_sessions(&mut self) {
        for id in std::mem::take(&mut self.local) {
            self.sessions.remove(id);
        }
    }
}
