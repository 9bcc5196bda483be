//! Transactions: what prep decides and every replica applies, in zxid order.
//!
//! Owns: the [`Txn`] values and their jute encoding, which is Apache ZooKeeper's
//! (`zookeeper.jute`, module `txn`) so that logs, snapshots and the quorum protocol can be
//! exchanged with it. Pure.
//!
//! | header type (op)            | record                                                       |
//! |-----------------------------|--------------------------------------------------------------|
//! | `TxnHeader`                 | long clientId, int cxid, long zxid, long time, int type      |
//! | create 1 / create2 15       | CreateTxn: ustring path, buffer data, vector<ACL>, boolean ephemeral, int parentCVersion |
//! | createContainer 19          | CreateContainerTxn: path, data, acl, int parentCVersion       |
//! | createTTL 21                | CreateTTLTxn: path, data, acl, int parentCVersion, long ttl   |
//! | delete 2 / deleteContainer 20 | DeleteTxn: ustring path                                     |
//! | setData 5                   | SetDataTxn: ustring path, buffer data, int version            |
//! | reconfig 16                 | SetDataTxn of `/zookeeper/config`: the new membership's text, version -1 |
//! | setACL 7                    | SetACLTxn: ustring path, vector<ACL>, int version             |
//! | check 13                    | CheckVersionTxn: ustring path, int version                    |
//! | createSession -10           | CreateSessionTxn: int timeOut                                 |
//! | closeSession -11            | CloseSessionTxn: vector<ustring> paths2Delete                 |
//! | error -1                    | ErrorTxn: int err                                             |
//! | multi 14                    | MultiTxn: vector<Txn{int type, buffer data}>                  |

use crate::jute::records::{read_acls, write_acls, Acl};
use crate::jute::{DecodeError, Reader, Record, Writer};
use crate::proto::op;
use bytes::Bytes;

/// zxid = epoch in the high 32 bits, counter in the low 32.
pub fn zxid(epoch: u32, counter: u32) -> i64 {
    ((epoch as i64) << 32) | counter as i64
}

pub fn epoch_of(zxid: i64) -> u32 {
    (zxid >> 32) as u32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnHeader {
    pub client_id: i64,
    pub cxid: i32,
    pub zxid: i64,
    pub time: i64,
    pub op: i32,
}

impl Record for TxnHeader {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(TxnHeader {
            client_id: r.i64()?,
            cxid: r.i32()?,
            zxid: r.i64()?,
            time: r.i64()?,
            op: r.i32()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i64(self.client_id)
            .i32(self.cxid)
            .i64(self.zxid)
            .i64(self.time)
            .i32(self.op);
    }
}

/// The kinds of node a create transaction makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateKind {
    Persistent,
    Ephemeral,
    Container,
    Ttl(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    /// `op` is the header type: create, create2, createContainer or createTTL.
    Create {
        op: i32,
        path: String,
        data: Option<Bytes>,
        acl: Vec<Acl>,
        kind: CreateKind,
        parent_cversion: i32,
    },
    /// `op` is delete or deleteContainer.
    Delete {
        op: i32,
        path: String,
    },
    SetData {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    /// A membership change: `/zookeeper/config` gets `data` (see `quorum::membership`).
    Reconfig {
        path: String,
        data: Option<Bytes>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    CreateSession {
        timeout: i32,
    },
    CloseSession {
        paths: Vec<String>,
    },
    Error {
        err: i32,
    },
    Multi(Vec<Txn>),
}

impl Txn {
    /// The type this transaction carries in its TxnHeader (or in a multi's sub-txn).
    pub fn op(&self) -> i32 {
        match self {
            Txn::Create { op, .. } | Txn::Delete { op, .. } => *op,
            Txn::SetData { .. } => op::SET_DATA,
            Txn::Reconfig { .. } => op::RECONFIG,
            Txn::SetAcl { .. } => op::SET_ACL,
            Txn::Check { .. } => op::CHECK,
            Txn::CreateSession { .. } => op::CREATE_SESSION,
            Txn::CloseSession { .. } => op::CLOSE_SESSION,
            Txn::Error { .. } => op::ERROR,
            Txn::Multi(_) => op::MULTI,
        }
    }

    pub fn write(&self, w: &mut Writer) {
        match self {
            Txn::Create {
                path,
                data,
                acl,
                kind,
                parent_cversion,
                ..
            } => {
                w.string(path).buffer(data.as_deref());
                write_acls(w, acl);
                match kind {
                    CreateKind::Persistent | CreateKind::Ephemeral => {
                        w.bool(*kind == CreateKind::Ephemeral).i32(*parent_cversion);
                    }
                    CreateKind::Container => {
                        w.i32(*parent_cversion);
                    }
                    CreateKind::Ttl(ttl) => {
                        w.i32(*parent_cversion).i64(*ttl);
                    }
                }
            }
            Txn::Delete { path, .. } => {
                w.string(path);
            }
            Txn::SetData {
                path,
                data,
                version,
            }
            | Txn::Reconfig {
                path,
                data,
                version,
            } => {
                w.string(path).buffer(data.as_deref()).i32(*version);
            }
            Txn::SetAcl { path, acl, version } => {
                w.string(path);
                write_acls(w, acl);
                w.i32(*version);
            }
            Txn::Check { path, version } => {
                w.string(path).i32(*version);
            }
            Txn::CreateSession { timeout } => {
                w.i32(*timeout);
            }
            Txn::CloseSession { paths } => {
                w.strings(paths);
            }
            Txn::Error { err } => {
                w.i32(*err);
            }
            Txn::Multi(txns) => {
                w.vec(txns, |w, t| {
                    let mut inner = Writer::new();
                    t.write(&mut inner);
                    w.i32(t.op()).buffer(Some(&inner.into_bytes()));
                });
            }
        }
    }

    /// Reads the record for header type `op`. A closeSession with no body (as ZooKeeper
    /// writes when closeSession txns are disabled) reads as an empty path list.
    pub fn read(op_code: i32, r: &mut Reader) -> Result<Txn, DecodeError> {
        Ok(match op_code {
            op::CREATE | op::CREATE2 => {
                let path = r.string()?;
                let data = r.buffer()?;
                let acl = read_acls(r)?;
                let ephemeral = r.bool()?;
                let parent_cversion = if r.remaining() >= 4 { r.i32()? } else { -1 };
                Txn::Create {
                    op: op_code,
                    path,
                    data,
                    acl,
                    kind: if ephemeral {
                        CreateKind::Ephemeral
                    } else {
                        CreateKind::Persistent
                    },
                    parent_cversion,
                }
            }
            op::CREATE_CONTAINER | op::CREATE_TTL => {
                let path = r.string()?;
                let data = r.buffer()?;
                let acl = read_acls(r)?;
                let parent_cversion = r.i32()?;
                let kind = if op_code == op::CREATE_TTL {
                    CreateKind::Ttl(r.i64()?)
                } else {
                    CreateKind::Container
                };
                Txn::Create {
                    op: op_code,
                    path,
                    data,
                    acl,
                    kind,
                    parent_cversion,
                }
            }
            op::DELETE | op::DELETE_CONTAINER => Txn::Delete {
                op: op_code,
                path: r.string()?,
            },
            op::SET_DATA => Txn::SetData {
                path: r.string()?,
                data: r.buffer()?,
                version: r.i32()?,
            },
            op::RECONFIG => Txn::Reconfig {
                path: r.string()?,
                data: r.buffer()?,
                version: r.i32()?,
            },
            op::SET_ACL => Txn::SetAcl {
                path: r.string()?,
                acl: read_acls(r)?,
                version: r.i32()?,
            },
            op::CHECK => Txn::Check {
                path: r.string()?,
                version: r.i32()?,
            },
            op::CREATE_SESSION => Txn::CreateSession { timeout: r.i32()? },
            op::CLOSE_SESSION => Txn::CloseSession {
                paths: if r.remaining() > 0 {
                    r.strings()?
                } else {
                    Vec::new()
                },
            },
            op::ERROR => Txn::Error { err: r.i32()? },
            op::MULTI => Txn::Multi(r.vec(|r| {
                let sub_op = r.i32()?;
                let body = r.buffer()?.unwrap_or_default();
                if sub_op == op::MULTI {
                    return Err(DecodeError::Invalid("nested multi txn".into()));
                }
                Txn::read(sub_op, &mut Reader::new(body))
            })?),
            other => return Err(DecodeError::Invalid(format!("unknown txn type {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(t: Txn) {
        let mut w = Writer::new();
        t.write(&mut w);
        let back = Txn::read(t.op(), &mut Reader::new(w.into_bytes())).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn txns_round_trip() {
        let acl = vec![Acl {
            perms: 31,
            id: crate::jute::records::Id::new("world", "anyone"),
        }];
        round_trip(Txn::Create {
            op: op::CREATE2,
            path: "/a".into(),
            data: Some(Bytes::from_static(b"x")),
            acl: acl.clone(),
            kind: CreateKind::Ephemeral,
            parent_cversion: 3,
        });
        round_trip(Txn::Create {
            op: op::CREATE_TTL,
            path: "/t".into(),
            data: None,
            acl: acl.clone(),
            kind: CreateKind::Ttl(500),
            parent_cversion: 1,
        });
        round_trip(Txn::Multi(vec![
            Txn::Delete {
                op: op::DELETE,
                path: "/a".into(),
            },
            Txn::Error { err: -2 },
        ]));
        round_trip(Txn::CloseSession {
            paths: vec!["/e".into()],
        });
        assert_eq!(zxid(2, 5), 0x2_0000_0005);
        assert_eq!(epoch_of(0x2_0000_0005), 2);
    }
}
