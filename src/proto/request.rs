//! Typed client requests, decoded from a frame's payload after the connect handshake.
//!
//! Owns: the mapping opcode → request record (`zookeeper.jute`, module `proto`). Pure.
//!
//! | opcode(s)                         | record after the `RequestHeader`                         |
//! |-----------------------------------|----------------------------------------------------------|
//! | create 1, create2 15, container 19| ustring path, buffer data, vector<ACL> acl, int flags     |
//! | createTTL 21                      | as create, then long ttl                                  |
//! | delete 2                          | ustring path, int version                                 |
//! | deleteContainer 20                | ustring path                                              |
//! | exists 3, getData 4               | ustring path, boolean watch                               |
//! | getChildren 8, getChildren2 12    | ustring path, boolean watch                               |
//! | setData 5                         | ustring path, buffer data, int version                    |
//! | getACL 6, sync 9, getAllChildrenNumber 104, getEphemerals 103 | ustring path              |
//! | setACL 7                          | ustring path, vector<ACL> acl, int version                |
//! | check 13                          | ustring path, int version                                 |
//! | multi 14, multiRead 22            | (MultiHeader, op record)* then MultiHeader{-1,true,-1}    |
//! | reconfig 16                       | ustring joining, leaving, newMembers; long curConfigId    |
//! | checkWatches 17, removeWatches 18 | ustring path, int type                                    |
//! | auth 100                          | int type, ustring scheme, buffer auth                     |
//! | setWatches 101                    | long relZxid, vector<ustring> data, exist, child          |
//! | setWatches2 105                   | as setWatches, then persistent, persistentRecursive       |
//! | sasl 102                          | buffer token                                              |
//! | addWatch 106                      | ustring path, int mode                                    |
//! | ping 11, whoAmI 107, closeSession -11 | nothing                                               |
//!
//! An opcode not in this table decodes to [`Request::Unknown`]; the server answers it with
//! Unimplemented and keeps the connection.

use super::op;
use crate::jute::records::{read_acls, Acl, MultiHeader, RequestHeader};
use crate::jute::{DecodeError, Reader, Record};
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// create, create2, createContainer or createTTL: decides the reply form.
    pub op: i32,
    pub path: String,
    pub data: Option<Bytes>,
    pub acl: Vec<Acl>,
    pub flags: i32,
    /// Only createTTL carries one; -1 otherwise.
    pub ttl: i64,
}

/// A `sasl` request: the client's token as decoded, or, once the connection's mechanism has
/// evaluated it (`server::sasl`), what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sasl {
    Token(Bytes),
    Evaluated(crate::sasl::SaslOutcome),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(CreateRequest),
    Delete {
        path: String,
        version: i32,
    },
    DeleteContainer {
        path: String,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    GetChildren {
        path: String,
        watch: bool,
    },
    GetChildren2 {
        path: String,
        watch: bool,
    },
    Sync {
        path: String,
    },
    Ping,
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<Request>),
    MultiRead(Vec<Request>),
    /// A membership change (see `quorum::reconfig` for what it asks, `engine/reconfig.rs`).
    Reconfig(crate::quorum::reconfig::ReconfigAsk),
    CheckWatches {
        path: String,
        kind: i32,
    },
    RemoveWatches {
        path: String,
        kind: i32,
    },
    Auth {
        scheme: String,
        auth: Bytes,
    },
    SetWatches(SetWatches),
    Sasl(Sasl),
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    AddWatch {
        path: String,
        mode: i32,
    },
    WhoAmI,
    CloseSession,
    Unknown(i32),
}

impl Request {
    /// Does this request change the tree (and so need a zxid and a transaction)?
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Create(_)
                | Request::Delete { .. }
                | Request::DeleteContainer { .. }
                | Request::SetData { .. }
                | Request::SetAcl { .. }
                | Request::Check { .. }
                | Request::Multi(_)
                | Request::CloseSession
                | Request::Reconfig(_)
        )
    }

    /// The opcode this request travels under.
    pub fn opcode(&self) -> i32 {
        match self {
            Request::Create(c) => c.op,
            Request::Delete { .. } => op::DELETE,
            Request::DeleteContainer { .. } => op::DELETE_CONTAINER,
            Request::Exists { .. } => op::EXISTS,
            Request::GetData { .. } => op::GET_DATA,
            Request::SetData { .. } => op::SET_DATA,
            Request::GetAcl { .. } => op::GET_ACL,
            Request::SetAcl { .. } => op::SET_ACL,
            Request::GetChildren { .. } => op::GET_CHILDREN,
            Request::GetChildren2 { .. } => op::GET_CHILDREN2,
            Request::Sync { .. } => op::SYNC,
            Request::Ping => op::PING,
            Request::Check { .. } => op::CHECK,
            Request::Multi(_) => op::MULTI,
            Request::MultiRead(_) => op::MULTI_READ,
            Request::Reconfig(_) => op::RECONFIG,
            Request::CheckWatches { .. } => op::CHECK_WATCHES,
            Request::RemoveWatches { .. } => op::REMOVE_WATCHES,
            Request::Auth { .. } => op::AUTH,
            Request::SetWatches(_) => op::SET_WATCHES,
            Request::Sasl(_) => op::SASL,
            Request::GetEphemerals { .. } => op::GET_EPHEMERALS,
            Request::GetAllChildrenNumber { .. } => op::GET_ALL_CHILDREN_NUMBER,
            Request::AddWatch { .. } => op::ADD_WATCH,
            Request::WhoAmI => op::WHO_AM_I,
            Request::CloseSession => op::CLOSE_SESSION,
            Request::Unknown(o) => *o,
        }
    }
}

/// Decodes one request frame payload (header + record). Trailing bytes are tolerated, as
/// ZooKeeper's own decoder tolerates them.
pub fn decode(payload: Bytes) -> Result<(RequestHeader, Request), DecodeError> {
    let mut r = Reader::new(payload);
    let hdr = RequestHeader::read(&mut r)?;
    let req = decode_body(hdr.op, &mut r)?;
    Ok((hdr, req))
}

fn decode_create(op: i32, r: &mut Reader) -> Result<CreateRequest, DecodeError> {
    let path = r.string()?;
    let data = r.buffer()?;
    let acl = read_acls(r)?;
    let flags = r.i32()?;
    let ttl = if op == op::CREATE_TTL { r.i64()? } else { -1 };
    Ok(CreateRequest {
        op,
        path,
        data,
        acl,
        flags,
        ttl,
    })
}

fn decode_body(opcode: i32, r: &mut Reader) -> Result<Request, DecodeError> {
    Ok(match opcode {
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
            Request::Create(decode_create(opcode, r)?)
        }
        op::DELETE => Request::Delete {
            path: r.string()?,
            version: r.i32()?,
        },
        op::DELETE_CONTAINER => Request::DeleteContainer { path: r.string()? },
        op::EXISTS => Request::Exists {
            path: r.string()?,
            watch: r.bool()?,
        },
        op::GET_DATA => Request::GetData {
            path: r.string()?,
            watch: r.bool()?,
        },
        op::SET_DATA => Request::SetData {
            path: r.string()?,
            data: r.buffer()?,
            version: r.i32()?,
        },
        op::GET_ACL => Request::GetAcl { path: r.string()? },
        op::SET_ACL => Request::SetAcl {
            path: r.string()?,
            acl: read_acls(r)?,
            version: r.i32()?,
        },
        op::GET_CHILDREN => Request::GetChildren {
            path: r.string()?,
            watch: r.bool()?,
        },
        op::GET_CHILDREN2 => Request::GetChildren2 {
            path: r.string()?,
            watch: r.bool()?,
        },
        op::SYNC => Request::Sync { path: r.string()? },
        op::PING => Request::Ping,
        op::CHECK => Request::Check {
            path: r.string()?,
            version: r.i32()?,
        },
        op::MULTI => Request::Multi(decode_multi(r, false)?),
        op::MULTI_READ => Request::MultiRead(decode_multi(r, true)?),
        op::RECONFIG => Request::Reconfig(crate::quorum::reconfig::ReconfigAsk {
            joining: r.ustring()?,
            leaving: r.ustring()?,
            new_members: r.ustring()?,
            cur_config_id: r.i64()?,
        }),
        op::CHECK_WATCHES => Request::CheckWatches {
            path: r.string()?,
            kind: r.i32()?,
        },
        op::REMOVE_WATCHES => Request::RemoveWatches {
            path: r.string()?,
            kind: r.i32()?,
        },
        op::AUTH => {
            r.i32()?;
            Request::Auth {
                scheme: r.string()?,
                auth: r.buffer()?.unwrap_or_default(),
            }
        }
        op::SET_WATCHES | op::SET_WATCHES2 => Request::SetWatches(decode_set_watches(opcode, r)?),
        op::SASL => Request::Sasl(Sasl::Token(r.buffer()?.unwrap_or_default())),
        op::GET_EPHEMERALS => Request::GetEphemerals {
            prefix: r.string()?,
        },
        op::GET_ALL_CHILDREN_NUMBER => Request::GetAllChildrenNumber { path: r.string()? },
        op::ADD_WATCH => Request::AddWatch {
            path: r.string()?,
            mode: r.i32()?,
        },
        op::WHO_AM_I => Request::WhoAmI,
        op::CLOSE_SESSION => Request::CloseSession,
        other => Request::Unknown(other),
    })
}

fn decode_set_watches(opcode: i32, r: &mut Reader) -> Result<SetWatches, DecodeError> {
    let mut sw = SetWatches {
        relative_zxid: r.i64()?,
        data: r.strings()?,
        exist: r.strings()?,
        child: r.strings()?,
        ..Default::default()
    };
    if opcode == op::SET_WATCHES2 {
        sw.persistent = r.strings()?;
        sw.persistent_recursive = r.strings()?;
    }
    Ok(sw)
}

/// Longest multi accepted; every op needs at least a 9-byte header, so a frame bounds it too.
const MAX_MULTI_OPS: usize = 1 << 20;

fn decode_multi(r: &mut Reader, read_only: bool) -> Result<Vec<Request>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(ops);
        }
        let allowed: &[i32] = if read_only {
            &[op::GET_CHILDREN, op::GET_DATA]
        } else {
            &[
                op::CREATE,
                op::CREATE2,
                op::CREATE_CONTAINER,
                op::CREATE_TTL,
                op::DELETE,
                op::SET_DATA,
                op::CHECK,
            ]
        };
        if !allowed.contains(&h.op) {
            return Err(DecodeError::Invalid(format!(
                "op {} is not allowed in a multi",
                h.op
            )));
        }
        if ops.len() >= MAX_MULTI_OPS {
            return Err(DecodeError::Invalid("too many ops in a multi".into()));
        }
        ops.push(decode_body(h.op, r)?);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::Writer;

    fn frame(hdr: RequestHeader, body: impl FnOnce(&mut Writer)) -> Bytes {
        let mut w = Writer::new();
        hdr.write(&mut w);
        body(&mut w);
        w.into_bytes()
    }

    #[test]
    fn decodes_reconfig_as_zkcli_sends_it() {
        let b = frame(
            RequestHeader {
                xid: 3,
                op: op::RECONFIG,
            },
            |w| {
                w.buffer(Some(b"server.4=10.0.0.4:2888:3888;2181"))
                    .buffer(Some(b"2"))
                    .buffer(None)
                    .i64(-1);
            },
        );
        let (_, r) = decode(b).unwrap();
        assert_eq!(
            r,
            Request::Reconfig(crate::quorum::reconfig::ReconfigAsk {
                joining: Some("server.4=10.0.0.4:2888:3888;2181".into()),
                leaving: Some("2".into()),
                new_members: None,
                cur_config_id: -1,
            })
        );
    }

    #[test]
    fn decodes_get_data() {
        let b = frame(RequestHeader { xid: 1, op: 4 }, |w| {
            w.string("/a").bool(true);
        });
        let (h, r) = decode(b).unwrap();
        assert_eq!(h.xid, 1);
        assert_eq!(
            r,
            Request::GetData {
                path: "/a".into(),
                watch: true
            }
        );
    }

    #[test]
    fn decodes_multi_and_rejects_mixed() {
        let b = frame(RequestHeader { xid: 2, op: 14 }, |w| {
            MultiHeader {
                op: 2,
                done: false,
                err: -1,
            }
            .write(w);
            w.string("/x").i32(-1);
            MultiHeader::END.write(w);
        });
        let (_, r) = decode(b).unwrap();
        assert_eq!(
            r,
            Request::Multi(vec![Request::Delete {
                path: "/x".into(),
                version: -1
            }])
        );
        let b = frame(RequestHeader { xid: 2, op: 14 }, |w| {
            MultiHeader {
                op: 4,
                done: false,
                err: -1,
            }
            .write(w);
            w.string("/x").bool(false);
            MultiHeader::END.write(w);
        });
        assert!(decode(b).is_err());
    }

    #[test]
    fn unknown_opcode_is_not_an_error() {
        let b = frame(RequestHeader { xid: 3, op: 999 }, |_| {});
        assert_eq!(decode(b).unwrap().1, Request::Unknown(999));
    }
}
