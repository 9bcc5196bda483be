//! The connect handshake: new sessions, resumed sessions, refused ones.
//!
//! A ConnectRequest with session id 0 creates a session through a createSession
//! transaction; the ConnectResponse leaves once it is applied. A non-zero id resumes that
//! session if it is live and the password matches, and takes it over from any older
//! connection; otherwise the answer is timeout 0 / id 0 (the client's "session expired")
//! and the connection closes. A client that has seen a zxid this server has not is refused
//! without an answer, so it tries another member.

use super::{ConnId, Engine, Waiter};
use crate::jute::records::{ConnectRequest, ConnectResponse};
use crate::proto::response;
use crate::session;
use crate::txn::{Txn, TxnHeader};
use bytes::Bytes;

impl Engine {
    pub(super) fn on_handshake(&mut self, conn: ConnId, req: ConnectRequest) {
        self.stats.packets_received += 1;
        self.stats.connection_requests += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let read_only = self.mode == super::Mode::ReadOnly;
        c.read_only_field = req.read_only.map(|_| read_only);
        if !self.mode.serves() {
            self.park_handshake(conn, req);
            return;
        }
        if self.mode == super::Mode::Leader && !self.cfg.leader_serves {
            self.close(
                conn,
                "this member leads and leaderServes is off; try another member",
            );
            return;
        }
        if read_only && req.read_only != Some(true) {
            self.close(
                conn,
                "this member has no quorum and serves only read-only clients",
            );
            return;
        }
        if req.last_zxid_seen > self.tree.last_zxid {
            tracing::warn!(
                client_zxid = format_args!("0x{:x}", req.last_zxid_seen),
                our_zxid = format_args!("0x{:x}", self.tree.last_zxid),
                "refusing session: client has seen a newer zxid; it must try another server"
            );
            self.close(conn, "client is ahead of this server");
            return;
        }
        let timeout = req
            .timeout
            .clamp(self.cfg.min_session_timeout, self.cfg.max_session_timeout);
        if req.session_id == 0 {
            self.create_session(conn, timeout);
        } else {
            self.resume_session(conn, &req, timeout);
        }
    }

    fn create_session(&mut self, conn: ConnId, timeout: i32) {
        let id = self.sessions.next_id();
        if self.new_sessions_are_local() {
            self.local_session(conn, id, timeout);
            return;
        }
        if self.mode.forwards() {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.session = Some(id);
            }
            self.forward_create_session(conn, id, timeout);
            return;
        }
        self.log_create_session(conn, id, timeout);
    }

    /// Leader or standalone: logs session `id`'s createSession; the handshake is answered
    /// once it applies.
    pub(super) fn log_create_session(&mut self, conn: ConnId, id: i64, timeout: i32) {
        // Tracked from prep on, as ZooKeeper does, so a quick reconnect finds it.
        if !self.sessions.is_live(id) {
            self.sessions.add(id, timeout, self.now.mono_ms);
        }
        let zxid = self.next_zxid();
        let hdr = TxnHeader {
            client_id: id,
            cxid: 0,
            zxid,
            time: self.now.wall_ms,
            op: crate::proto::op::CREATE_SESSION,
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(id);
        }
        self.log(
            hdr,
            Txn::CreateSession { timeout },
            Waiter::Handshake { conn, timeout },
        );
    }

    fn resume_session(&mut self, conn: ConnId, req: &ConnectRequest, timeout: i32) {
        let id = req.session_id;
        if req.passwd[..] != session::password(id)[..] {
            self.refuse_resume(conn, id);
        } else if self.is_local(id) {
            // Only this member knows it: it is live here or nowhere.
            if self.sessions.is_live(id) {
                self.resume(conn, id, timeout);
            } else {
                self.refuse_resume(conn, id);
            }
        } else if self.mode.forwards() {
            // The leader decides (REVALIDATE), as it alone expires sessions.
            self.revalidate_with_leader(conn, id, timeout);
        } else if self.sessions.is_live(id) {
            self.resume(conn, id, timeout);
        } else {
            self.refuse_resume(conn, id);
        }
    }

    /// The client's "session expired": timeout 0, id 0, then the connection closes.
    pub(super) fn refuse_resume(&mut self, conn: ConnId, id: i64) {
        tracing::info!(
            session = format_args!("0x{id:x}"),
            "refusing reconnect: session expired, unknown or wrong password"
        );
        let ro = self.conns.get(&conn).and_then(|c| c.read_only_field);
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout: 0,
            session_id: 0,
            passwd: Bytes::from(vec![0u8; 16]),
            read_only: ro,
        };
        self.send(conn, response::connect(&resp), false);
        self.close(conn, "session expired or invalid");
    }

    /// Takes a live session over on this connection.
    pub(super) fn resume(&mut self, conn: ConnId, id: i64, timeout: i32) {
        self.sessions.touch(id, self.now.mono_ms);
        self.note_touch(id);
        if let Some(old) = self.session_conn.insert(id, conn) {
            if old != conn {
                if let Some(c) = self.conns.get_mut(&old) {
                    c.session = None;
                }
                self.close(old, "session moved to a new connection");
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(id);
        }
        self.session_established(conn, id, timeout);
    }

    /// Sends the ConnectResponse and releases the requests queued behind the handshake.
    pub(super) fn session_established(&mut self, conn: ConnId, id: i64, timeout: i32) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.ready = true;
        c.stats.established_ms = self.now.wall_ms;
        let zxid = self.tree.last_zxid;
        c.stats.answered(
            crate::proto::op::CREATE_SESSION,
            0,
            zxid,
            0,
            self.now.wall_ms,
        );
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: id,
            passwd: Bytes::copy_from_slice(&session::password(id)),
            read_only: c.read_only_field,
        };
        self.session_conn.insert(id, conn);
        self.send(conn, response::connect(&resp), false);
        self.pump(conn);
    }
}
