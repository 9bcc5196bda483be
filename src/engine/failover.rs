//! A change of leader without dropping clients: what the engine does with its client
//! connections when this member loses its leader (or its leadership) and when it serves
//! again under the next one.
//!
//! Owns nothing of its own: it works on the engine's connections, queues and ensemble
//! bookkeeping. Must not: answer a request whose fate is unknown, or send one twice to the
//! quorum.
//!
//! * **Losing the leader** (Leader or Follower → Down): every connection stays, with its
//!   session and watches. What was prepared and not committed is dropped (the next leader
//!   decides its fate); each request that was in flight (forwarded, or prepared here as
//!   leader) stays in its connection's queue, waiting. A createSession in flight is kept
//!   by session id, as is a reconnect waiting for REVALIDATE.
//! * **Without a leader** (Down): requests queue up in order and nothing starts; pings are
//!   answered at once (out of order: every client matches a ping reply by its xid, -2), so
//!   the client's read timeout does not fire. Outcomes that arrive (transactions applied
//!   while syncing with the new leader) are sent in turn. A connection whose session
//!   timeout passes a third without a leader is closed ([`Engine::close_leaderless`]): its
//!   client still has two thirds of the timeout to reach a member that serves, as the new
//!   leader starts every session's expiry afresh.
//! * **Serving again** (Down → Leader or Follower, once synced: ZAB reports the new role
//!   only after the sync's transactions are applied here). A request in flight whose
//!   transaction (same session and cxid) was in the new history has been answered by its
//!   apply, as any forwarded write is. One that is still waiting was not in it, and never
//!   will be (the new leader's history is final for older epochs): it is sent again, in
//!   its connection's order, before anything that queued behind it. Except one whose
//!   transaction this member has logged and not applied yet (a proposal of the new epoch
//!   made from a request the leader read just before this member reconnected: its
//!   COMMIT comes after UPTODATE): that one waits for its COMMIT. Each goes to the quorum
//!   once per leader that could commit it, and is applied at most once.
//!
//! A change of leader that replaces the engine's state (SNAP, or a reload after TRUNC)
//! closes every connection instead ([`Engine::close_all`]): the transactions in between
//! were not applied one by one, so neither outcomes nor watch events can be told; clients
//! reconnect and set their watches again, as with ZooKeeper.

use super::{ConnId, Engine, Mode, Waiter};
use crate::proto::request::Request;

impl Engine {
    /// The leader is gone (or this member stopped leading): hold what was in flight.
    pub(super) fn hold_in_flight(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            if let Waiter::Handshake { conn, timeout } = p.waiter {
                self.ensemble
                    .handshakes
                    .insert(p.hdr.client_id, (conn, timeout));
            }
        }
        self.prep = crate::prep::Prep::with_quota_enforcement(self.cfg.enforce_quota);
    }

    /// Serving again: sends every request still in flight again, in each connection's
    /// order, and resumes the queues.
    pub(super) fn resume_in_flight(&mut self) {
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        let mut resent = 0usize;
        // Logged here and not yet committed: its COMMIT answers it, so it is not sent again.
        let unapplied = std::mem::take(&mut self.ensemble.unapplied);
        for c in &conns {
            if let Some(c) = self.conns.get_mut(c) {
                let session = c.session.unwrap_or(0);
                for q in c.queue.iter_mut().filter(|q| q.logged && q.done.is_none()) {
                    if q.req.is_write() && unapplied.contains(&(session, q.xid)) {
                        continue;
                    }
                    q.logged = false;
                    resent += 1;
                }
            }
        }
        let mut handshakes: Vec<(i64, (ConnId, i32))> =
            std::mem::take(&mut self.ensemble.handshakes)
                .into_iter()
                .collect();
        handshakes.sort_unstable();
        for (session, (conn, timeout)) in handshakes {
            if !self.conns.contains_key(&conn) {
                continue;
            }
            if unapplied.contains(&(session, 0)) {
                // Its createSession is logged here: it answers the handshake once committed.
                self.ensemble.handshakes.insert(session, (conn, timeout));
                continue;
            }
            resent += 1;
            match self.mode {
                Mode::Leader => self.log_create_session(conn, session, timeout),
                _ => self.forward_create_session(conn, session, timeout),
            }
        }
        resent += self.resend_upgrades(&unapplied);
        let mut revalidating: Vec<(i64, (ConnId, i32))> =
            std::mem::take(&mut self.ensemble.revalidating)
                .into_iter()
                .collect();
        revalidating.sort_unstable();
        for (session, (conn, timeout)) in revalidating {
            if !self.conns.contains_key(&conn) {
                continue;
            }
            match self.mode {
                Mode::Leader if self.sessions.is_live(session) => {
                    self.resume(conn, session, timeout)
                }
                Mode::Leader => self.refuse_resume(conn, session),
                _ => self.revalidate_with_leader(conn, session, timeout),
            }
        }
        if resent > 0 {
            tracing::info!(
                requests = resent,
                "serving again: requests the previous leader did not commit are sent again"
            );
        }
        for c in conns {
            self.pump(c);
        }
    }

    /// Without a leader: sends the outcomes at the front of the queue and answers pings
    /// wherever they wait; everything else waits for the next leader.
    pub(super) fn pump_held(&mut self, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.queue.front().is_none_or(|q| q.done.is_none()) {
                break;
            }
            let mut item = c.queue.pop_front().expect("front");
            let done = item.done.take().expect("checked");
            if !self.complete(conn, item, done) {
                return;
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.ready {
            return;
        }
        let (pings, rest): (std::collections::VecDeque<_>, _) = std::mem::take(&mut c.queue)
            .into_iter()
            .partition(|q| matches!(q.req, Request::Ping) && !q.logged);
        c.queue = rest;
        for item in pings {
            self.note_answered(conn, &item);
            self.answer_read(conn, item.xid, item.req);
        }
    }

    /// Without a leader for longer than a third of a session's timeout: its connection
    /// closes, so its client tries another member while its session still lives.
    pub(super) fn close_leaderless(&mut self) {
        let Some(since) = self.ensemble.down_since else {
            return;
        };
        let waited = self.now.mono_ms - since;
        let min = self.cfg.min_session_timeout;
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.ready)
            .filter(|(_, c)| {
                let timeout = c
                    .session
                    .and_then(|s| self.sessions.get(s))
                    .map_or(min, |s| s.timeout);
                waited > (timeout / 3) as i64
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in late {
            self.close(
                conn,
                "no leader within a third of the session timeout; try another member",
            );
            self.on_closed(conn);
        }
    }

    /// Closes every client connection (the engine's state is about to be replaced).
    pub(super) fn close_all(&mut self, reason: &'static str) {
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for c in conns {
            self.close(c, reason);
            self.on_closed(c);
        }
        self.ensemble.parked.clear();
        self.ensemble.handshakes.clear();
        self.ensemble.revalidating.clear();
    }
}
