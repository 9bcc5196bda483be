//! Requests answered from the applied tree without a transaction: reads, watch management,
//! auth, ping, sync, whoAmI, and the opcodes that answer with an error.
//!
//! Reply rules follow ZooKeeper's FinalRequestProcessor: a missing node is NoNode (and
//! only `exists` still leaves a watch behind); READ is checked on the node itself;
//! getACL needs READ or ADMIN, and without ADMIN digest ids come back as `user:x`.

use super::{ConnId, Engine};
use crate::auth;
use crate::jute::records::{write_acls, Acl, Id};
use crate::jute::{Record, Writer};
use crate::proto::request::{Request, SetWatches};
use crate::proto::response::{self, ReadResult};
use crate::proto::{event, xid, ZkError};
use crate::tree::acl_cache::perms;
use crate::tree::watch::WatchKind;
use bytes::Bytes;

type ReadReply = Result<Option<Bytes>, ZkError>;

fn body(f: impl FnOnce(&mut Writer)) -> ReadReply {
    let mut w = Writer::new();
    f(&mut w);
    Ok(Some(w.into_bytes()))
}

impl Engine {
    pub(super) fn answer_read(&mut self, conn: ConnId, x: i32, req: Request) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let session = c.session.unwrap_or(0);
        let check_session = !matches!(req, Request::Auth { .. } | Request::Sasl(_));
        if check_session && !self.sessions.is_live(session) {
            self.expired_request(conn, x);
            return;
        }
        let ids = c.ids.clone();
        let r = match req {
            Request::Ping => {
                let f = response::header_only(xid::PING, self.tree.last_zxid, 0);
                self.send(conn, f, true);
                return;
            }
            Request::Auth { scheme, auth } => return self.auth(conn, x, &scheme, &auth),
            Request::Sasl(sasl) => return self.answer_sasl(conn, x, sasl),
            Request::SetWatches(sw) => {
                self.set_watches(conn, session, &sw);
                Ok(None)
            }
            Request::GetData { path, watch } => match self.get_data(session, &ids, &path, watch) {
                Ok((data, stat)) => {
                    let f = response::get_data(x, self.tree.last_zxid, data, &stat);
                    self.send(conn, f, true);
                    return;
                }
                Err(e) => Err(e),
            },
            other => self.read(session, &ids, other),
        };
        self.reply_read(conn, x, r);
    }

    fn read(&mut self, session: i64, ids: &[Id], req: Request) -> ReadReply {
        match req {
            Request::Exists { path, watch } => self.exists(session, ids, &path, watch),
            Request::GetChildren { path, watch } => {
                let (children, _) = self.get_children(session, ids, &path, watch)?;
                body(|w| {
                    w.strings(&children);
                })
            }
            Request::GetChildren2 { path, watch } => {
                let (children, stat) = self.get_children(session, ids, &path, watch)?;
                body(|w| {
                    w.strings(&children);
                    stat.write(w);
                })
            }
            Request::GetAcl { path } => self.get_acl(ids, &path),
            Request::GetAllChildrenNumber { path } => {
                let n = self.tree.get(&path).ok_or(ZkError::NoNode)?;
                auth::check(&self.tree.acl_of(n), perms::READ, ids)?;
                let count = self.tree.all_children_number(&path) as i32;
                body(|w| {
                    w.i32(count);
                })
            }
            Request::GetEphemerals { prefix } => {
                let all = self.tree.ephemerals_of(session);
                let p = prefix.trim();
                let list: Vec<String> = if p.is_empty() || p == "/" {
                    all
                } else {
                    all.into_iter().filter(|e| e.starts_with(&prefix)).collect()
                };
                body(|w| {
                    w.strings(&list);
                })
            }
            Request::Sync { path } => body(|w| {
                w.string(&path);
            }),
            Request::CheckWatches { path, kind } => {
                if self.tree.watches.contains(session, kind, &path) {
                    Ok(None)
                } else {
                    Err(ZkError::NoWatcher)
                }
            }
            Request::RemoveWatches { path, kind } => {
                if self.tree.watches.remove(session, kind, &path) {
                    Ok(None)
                } else {
                    Err(ZkError::NoWatcher)
                }
            }
            Request::AddWatch { path, mode } => {
                let kind = match mode {
                    0 => WatchKind::Persistent,
                    1 => WatchKind::Recursive,
                    _ => return Err(ZkError::BadArguments),
                };
                self.watch(session, kind, &path)?;
                body(|w| {
                    w.i32(0);
                })
            }
            Request::WhoAmI => {
                let infos = auth::client_infos(ids);
                body(|w| {
                    w.vec(&infos, |w, (scheme, user)| {
                        w.string(scheme).string(user);
                    });
                })
            }
            Request::MultiRead(ops) => {
                let results: Vec<ReadResult> = ops
                    .into_iter()
                    .map(|o| self.multi_read_op(session, ids, o))
                    .collect();
                body(|w| response::write_multi_read(w, &results))
            }
            _ => Err(ZkError::Unimplemented),
        }
    }

    fn multi_read_op(&mut self, session: i64, ids: &[Id], o: Request) -> ReadResult {
        let r = match o {
            Request::GetData { path, .. } => self
                .get_data(session, ids, &path, false)
                .map(|(d, s)| ReadResult::Data(d, s)),
            Request::GetChildren { path, .. } => self
                .get_children(session, ids, &path, false)
                .map(|(c, _)| ReadResult::Children(c)),
            _ => Err(ZkError::Unimplemented),
        };
        r.unwrap_or_else(|e| ReadResult::Error(e.code()))
    }

    fn exists(&mut self, session: i64, ids: &[Id], path: &str, watch: bool) -> ReadReply {
        if path.contains('\0') {
            return Err(ZkError::BadArguments);
        }
        if let Some(n) = self.tree.get(path) {
            auth::check(&self.tree.acl_of(n), perms::READ, ids)?;
        }
        if watch {
            self.watch(session, WatchKind::Data, path)?;
        }
        let stat = self.tree.stat(self.tree.get(path).ok_or(ZkError::NoNode)?);
        body(|w| stat.write(w))
    }

    fn get_data(
        &mut self,
        session: i64,
        ids: &[Id],
        path: &str,
        watch: bool,
    ) -> Result<(Option<Bytes>, crate::jute::records::Stat), ZkError> {
        let n = self.tree.get(path).ok_or(ZkError::NoNode)?;
        auth::check(&self.tree.acl_of(n), perms::READ, ids)?;
        let out = (n.data.clone(), self.tree.stat(n));
        if watch {
            self.watch(session, WatchKind::Data, path)?;
        }
        Ok(out)
    }

    fn get_children(
        &mut self,
        session: i64,
        ids: &[Id],
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, crate::jute::records::Stat), ZkError> {
        let n = self.tree.get(path).ok_or(ZkError::NoNode)?;
        auth::check(&self.tree.acl_of(n), perms::READ, ids)?;
        let out = (self.tree.children_sorted(path), self.tree.stat(n));
        if watch {
            self.watch(session, WatchKind::Child, path)?;
        }
        Ok(out)
    }

    fn get_acl(&self, ids: &[Id], path: &str) -> ReadReply {
        let n = self.tree.get(path).ok_or(ZkError::NoNode)?;
        let acl = self.tree.acl_of(n);
        auth::check(&acl, perms::READ | perms::ADMIN, ids)?;
        let shown: Vec<Acl> = if auth::check(&acl, perms::ADMIN, ids).is_ok() {
            acl.to_vec()
        } else {
            acl.iter()
                .map(|a| {
                    let mut a = a.clone();
                    if a.id.scheme == "digest" {
                        let user = a.id.id.split(':').next().unwrap_or("").to_string();
                        a.id.id = format!("{user}:x");
                    }
                    a
                })
                .collect()
        };
        let stat = self.tree.stat(n);
        body(|w| {
            write_acls(w, &shown);
            stat.write(w);
        })
    }

    fn auth(&mut self, conn: ConnId, x: i32, scheme: &str, auth_data: &[u8]) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        match auth::authenticate(scheme, auth_data, &c.ip, self.cfg.super_digest.as_deref()) {
            Ok(new_ids) => {
                let c = self.conns.get_mut(&conn).expect("checked");
                for id in new_ids {
                    if !c.ids.contains(&id) {
                        c.ids.push(id);
                    }
                }
                self.send(conn, response::header_only(x, 0, 0), true);
            }
            Err(e) => {
                self.stats.auth_failed += 1;
                tracing::info!(scheme, "authentication failed; closing connection");
                self.send(conn, response::header_only(x, 0, e.code()), true);
                self.close(conn, "authentication failed");
            }
        }
    }

    /// Registers a watch, unless the session already holds `max_watches_per_session`: then
    /// the request fails with QuotaExceeded (the read is not answered either, so the client
    /// never believes it holds a watch it does not), and the first refusal per session is
    /// logged.
    fn watch(&mut self, session: i64, kind: WatchKind, path: &str) -> Result<(), ZkError> {
        let max = self.cfg.max_watches_per_session;
        if max > 0
            && self.tree.watches.held_by(session) >= max
            && !self.tree.watches.has(session, kind, path)
        {
            if self.watch_limit_hit.insert(session) {
                tracing::warn!(
                    session = format_args!("0x{session:x}"),
                    max,
                    "session holds the most watches allowed (max_watches_per_session); \
                     refusing more with QuotaExceeded"
                );
            }
            return Err(ZkError::QuotaExceeded);
        }
        self.tree.watches.add(session, kind, path);
        Ok(())
    }

    /// A SASL token's answer, in the connection's order. A token no mechanism evaluated (no
    /// SASL configured) gets a null token, as ZooKeeper answers without a SASL server.
    fn answer_sasl(&mut self, conn: ConnId, x: i32, sasl: crate::proto::request::Sasl) {
        use crate::proto::request::Sasl;
        let (reply, failed) = match sasl {
            Sasl::Token(_) => (None, false),
            Sasl::Evaluated(o) => (o.reply, o.failed),
        };
        let sasl_required = self.cfg.enforce_auth_schemes.iter().any(|s| s == "sasl");
        if failed && (sasl_required || !self.cfg.allow_sasl_failed) {
            let code = match sasl_required {
                true => ZkError::SessionClosedRequireSaslAuth,
                false => ZkError::AuthFailed,
            };
            self.stats.auth_failed += 1;
            let f = response::reply_with_error_body(x, 0, code.code(), |w| {
                w.buffer(None);
            });
            self.send(conn, f, true);
            // Lingering, as ZooKeeper's close comes after the reply: the Java client reads
            // the reply and raises AuthFailed before it sees the connection go.
            self.out
                .push(super::EngineAction::Client(super::ToClient::Close {
                    conn,
                    reason: "SASL authentication failed",
                    linger: true,
                }));
            return;
        }
        let f = response::reply(x, 0, 0, |w| {
            w.buffer(reply.as_deref());
        });
        self.send(conn, f, true);
    }

    /// setWatches after a reconnect: fire at once what changed after relZxid, re-arm the rest.
    /// Re-armed watches past `max_watches_per_session` are dropped (and logged: setWatches
    /// has no per-watch answer).
    fn set_watches(&mut self, conn: ConnId, session: i64, sw: &SetWatches) {
        let rel = sw.relative_zxid;
        let mut fire: Vec<(i32, String)> = Vec::new();
        let mut dropped = 0usize;
        for p in &sw.data {
            match self.tree.get(p) {
                None => fire.push((event::NODE_DELETED, p.clone())),
                Some(n) if n.stat.mzxid > rel => fire.push((event::NODE_DATA_CHANGED, p.clone())),
                Some(_) => dropped += self.watch(session, WatchKind::Data, p).is_err() as usize,
            }
        }
        for p in &sw.exist {
            if self.tree.get(p).is_some() {
                fire.push((event::NODE_CREATED, p.clone()));
            } else {
                dropped += self.watch(session, WatchKind::Data, p).is_err() as usize;
            }
        }
        for p in &sw.child {
            match self.tree.get(p) {
                None => fire.push((event::NODE_DELETED, p.clone())),
                Some(n) if n.stat.pzxid > rel => {
                    fire.push((event::NODE_CHILDREN_CHANGED, p.clone()))
                }
                Some(_) => dropped += self.watch(session, WatchKind::Child, p).is_err() as usize,
            }
        }
        for p in &sw.persistent {
            dropped += self.watch(session, WatchKind::Persistent, p).is_err() as usize;
        }
        for p in &sw.persistent_recursive {
            dropped += self.watch(session, WatchKind::Recursive, p).is_err() as usize;
        }
        if dropped > 0 {
            tracing::warn!(
                session = format_args!("0x{session:x}"),
                dropped,
                "setWatches: watches past max_watches_per_session not re-armed"
            );
        }
        for (kind, p) in fire {
            // What setWatches reveals about a node that exists (changed, created, children
            // changed) goes only to whoever may read it, as a live event would; a deleted
            // node has no ACL left, and its absence is what `exists` tells anyone.
            let readable = match self.tree.get(&p) {
                Some(n) if kind != event::NODE_DELETED => {
                    let acl = self.tree.acl_of(n);
                    self.may_read(conn, &acl)
                }
                _ => true,
            };
            if readable {
                let f = response::notification(rel, kind, &p);
                self.send(conn, f, false);
            }
        }
    }
}
