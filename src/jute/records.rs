//! The jute records shared by the client protocol, the transaction log and snapshots
//! (`zookeeper.jute`, modules `data` and `proto`).
//!
//! Owns: field order and encoding of each record. Pure.
//!
//! | record           | fields, in wire order                                                         |
//! |------------------|-------------------------------------------------------------------------------|
//! | `Id`             | ustring scheme, ustring id                                                    |
//! | `ACL`            | int perms, Id                                                                 |
//! | `Stat`           | long czxid, mzxid, ctime, mtime; int version, cversion, aversion;             |
//! |                  | long ephemeralOwner; int dataLength, numChildren; long pzxid  (68 bytes)      |
//! | `StatPersisted`  | as Stat without dataLength and numChildren (60 bytes)                         |
//! | `ConnectRequest` | int protocolVersion, long lastZxidSeen, int timeOut, long sessionId,          |
//! |                  | buffer passwd, [boolean readOnly] — 44 bytes, or 45 with readOnly             |
//! | `ConnectResponse`| int protocolVersion, int timeOut, long sessionId, buffer passwd,              |
//! |                  | [boolean readOnly] — 36 bytes, or 37                                          |
//! | `RequestHeader`  | int xid, int type                                                             |
//! | `ReplyHeader`    | int xid, long zxid, int err                                                   |
//! | `MultiHeader`    | int type, boolean done, int err                                               |
//! | `WatcherEvent`   | int type, int state, ustring path                                             |

use super::{DecodeError, Reader, Record, Writer};
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub scheme: String,
    pub id: String,
}

impl Id {
    pub fn new(scheme: &str, id: &str) -> Self {
        Id {
            scheme: scheme.to_string(),
            id: id.to_string(),
        }
    }
}

impl Record for Id {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Id {
            scheme: r.string()?,
            id: r.string()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.string(&self.scheme).string(&self.id);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    pub perms: i32,
    pub id: Id,
}

impl Record for Acl {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Acl {
            perms: r.i32()?,
            id: Id::read(r)?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i32(self.perms);
        self.id.write(w);
    }
}

pub fn read_acls(r: &mut Reader) -> Result<Vec<Acl>, DecodeError> {
    r.vec(Acl::read)
}

pub fn write_acls(w: &mut Writer, acls: &[Acl]) {
    w.vec(acls, |w, a| a.write(w));
}

/// The per-node metadata a client sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

impl Record for Stat {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(Stat {
            czxid: r.i64()?,
            mzxid: r.i64()?,
            ctime: r.i64()?,
            mtime: r.i64()?,
            version: r.i32()?,
            cversion: r.i32()?,
            aversion: r.i32()?,
            ephemeral_owner: r.i64()?,
            data_length: r.i32()?,
            num_children: r.i32()?,
            pzxid: r.i64()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i64(self.czxid)
            .i64(self.mzxid)
            .i64(self.ctime)
            .i64(self.mtime)
            .i32(self.version)
            .i32(self.cversion)
            .i32(self.aversion)
            .i64(self.ephemeral_owner)
            .i32(self.data_length)
            .i32(self.num_children)
            .i64(self.pzxid);
    }
}

/// The per-node metadata the server stores (snapshots); `dataLength` and `numChildren` are derived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

impl StatPersisted {
    pub fn to_stat(&self, data_length: i32, num_children: i32) -> Stat {
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion,
            aversion: self.aversion,
            ephemeral_owner: self.ephemeral_owner,
            data_length,
            num_children,
            pzxid: self.pzxid,
        }
    }
}

impl StatPersisted {
    /// Bytes in jute: czxid, mzxid, ctime, mtime (longs), version, cversion, aversion (ints),
    /// ephemeralOwner, pzxid (longs).
    pub const LEN: usize = 60;
}

impl Record for StatPersisted {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(StatPersisted {
            czxid: r.i64()?,
            mzxid: r.i64()?,
            ctime: r.i64()?,
            mtime: r.i64()?,
            version: r.i32()?,
            cversion: r.i32()?,
            aversion: r.i32()?,
            ephemeral_owner: r.i64()?,
            pzxid: r.i64()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i64(self.czxid)
            .i64(self.mzxid)
            .i64(self.ctime)
            .i64(self.mtime)
            .i32(self.version)
            .i32(self.cversion)
            .i32(self.aversion)
            .i64(self.ephemeral_owner)
            .i64(self.pzxid);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    /// `None` when the client sent the 44-byte form without the readOnly flag.
    pub read_only: Option<bool>,
}

impl Record for ConnectRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let protocol_version = r.i32()?;
        let last_zxid_seen = r.i64()?;
        let timeout = r.i32()?;
        let session_id = r.i64()?;
        let passwd = r.buffer()?.unwrap_or_default();
        let read_only = if r.remaining() > 0 {
            Some(r.bool()?)
        } else {
            None
        };
        Ok(ConnectRequest {
            protocol_version,
            last_zxid_seen,
            timeout,
            session_id,
            passwd,
            read_only,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i32(self.protocol_version)
            .i64(self.last_zxid_seen)
            .i32(self.timeout)
            .i64(self.session_id)
            .buffer(Some(&self.passwd));
        if let Some(ro) = self.read_only {
            w.bool(ro);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    /// Mirrors the request: present only if the client sent the readOnly byte.
    pub read_only: Option<bool>,
}

impl Record for ConnectResponse {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let protocol_version = r.i32()?;
        let timeout = r.i32()?;
        let session_id = r.i64()?;
        let passwd = r.buffer()?.unwrap_or_default();
        let read_only = if r.remaining() > 0 {
            Some(r.bool()?)
        } else {
            None
        };
        Ok(ConnectResponse {
            protocol_version,
            timeout,
            session_id,
            passwd,
            read_only,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i32(self.protocol_version)
            .i32(self.timeout)
            .i64(self.session_id)
            .buffer(Some(&self.passwd));
        if let Some(ro) = self.read_only {
            w.bool(ro);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub xid: i32,
    pub op: i32,
}

impl Record for RequestHeader {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(RequestHeader {
            xid: r.i32()?,
            op: r.i32()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i32(self.xid).i32(self.op);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

impl Record for ReplyHeader {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ReplyHeader {
            xid: r.i32()?,
            zxid: r.i64()?,
            err: r.i32()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i32(self.xid).i64(self.zxid).i32(self.err);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultiHeader {
    pub op: i32,
    pub done: bool,
    pub err: i32,
}

impl MultiHeader {
    pub const END: MultiHeader = MultiHeader {
        op: -1,
        done: true,
        err: -1,
    };
}

impl Record for MultiHeader {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(MultiHeader {
            op: r.i32()?,
            done: r.bool()?,
            err: r.i32()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i32(self.op).bool(self.done).i32(self.err);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEvent {
    pub kind: i32,
    pub state: i32,
    pub path: String,
}

impl Record for WatcherEvent {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(WatcherEvent {
            kind: r.i32()?,
            state: r.i32()?,
            path: r.string()?,
        })
    }
    fn write(&self, w: &mut Writer) {
        w.i32(self.kind).i32(self.state).string(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_68_bytes_and_round_trips() {
        let s = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let b = s.to_bytes();
        assert_eq!(b.len(), 68);
        assert_eq!(Stat::from_bytes(b).unwrap(), s);
    }

    #[test]
    fn connect_request_lengths() {
        let mut c = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout: 30000,
            session_id: 0,
            passwd: Bytes::from(vec![0u8; 16]),
            read_only: None,
        };
        assert_eq!(c.to_bytes().len(), 44);
        c.read_only = Some(false);
        assert_eq!(c.to_bytes().len(), 45);
        assert_eq!(ConnectRequest::from_bytes(c.to_bytes()).unwrap(), c);
        let r = ConnectResponse {
            protocol_version: 0,
            timeout: 1,
            session_id: 2,
            passwd: Bytes::from(vec![0u8; 16]),
            read_only: Some(false),
        };
        assert_eq!(r.to_bytes().len(), 37);
    }
}
