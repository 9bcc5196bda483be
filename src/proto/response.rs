//! Reply frames: each is `int32 length`, `ReplyHeader {xid, zxid, err}`, then — only when
//! `err == 0` — the reply record for the request's opcode. Pure.
//!
//! | request                               | reply record                                   |
//! |---------------------------------------|------------------------------------------------|
//! | create                                | ustring path                                   |
//! | create2, createContainer, createTTL   | ustring path, Stat                             |
//! | setData, setACL, check                | Stat                                           |
//! | exists                                | Stat                                           |
//! | getData                               | buffer data, Stat                              |
//! | getChildren                           | vector<ustring>                                |
//! | getChildren2                          | vector<ustring>, Stat                          |
//! | getACL                                | vector<ACL>, Stat                              |
//! | sync                                  | ustring path                                   |
//! | getAllChildrenNumber                  | int                                            |
//! | getEphemerals                         | vector<ustring>                                |
//! | whoAmI                                | vector<ClientInfo{ustring scheme, ustring user}>|
//! | addWatch                              | int 0                                          |
//! | multi, multiRead                      | (MultiHeader{type,false,err}, result)*, MultiHeader{-1,true,-1} |
//! | delete, closeSession, ping, auth, setWatches, checkWatches, removeWatches | nothing  |
//!
//! A notification is `ReplyHeader {-1, zxid, 0}` + `WatcherEvent {type, state 3, path}`.
//!
//! A reply leaves here as a [`Frame`]: one buffer, except a getData reply for a node of at
//! least [`SHARED_DATA_MIN`] bytes, which is three pieces (length, header and data length;
//! the node's data buffer itself, shared with the tree; the Stat) written back to back.

use super::{event, op, xid};
use crate::jute::records::{ConnectResponse, MultiHeader, ReplyHeader, Stat, WatcherEvent};
use crate::jute::{Record, Writer};
use crate::tree::TxnResult;
use bytes::Bytes;

/// A getData reply's data from this size on is sent from the tree's own buffer.
pub const SHARED_DATA_MIN: usize = 16 * 1024;

/// A reply frame, as the bytes go on the wire: `head`, then `data`, then `tail`. Only a
/// getData reply of a large node uses `data` (the node's buffer, not copied: a client that
/// reads a 1 MiB node in a loop costs a reference per queued reply, not a MiB); every other
/// frame is all `head`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    head: Bytes,
    data: Bytes,
    tail: Bytes,
}

impl Frame {
    /// Bytes on the wire, the length prefix included.
    pub fn len(&self) -> usize {
        self.head.len() + self.data.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces in wire order; empty ones are left out.
    pub fn parts(&self) -> impl Iterator<Item = &Bytes> {
        [&self.head, &self.data, &self.tail]
            .into_iter()
            .filter(|b| !b.is_empty())
    }

    /// The frame as one buffer (copies when it is in pieces).
    pub fn to_bytes(&self) -> Bytes {
        if self.data.is_empty() && self.tail.is_empty() {
            return self.head.clone();
        }
        let mut b = bytes::BytesMut::with_capacity(self.len());
        for p in self.parts() {
            b.extend_from_slice(p);
        }
        b.freeze()
    }
}

impl From<Bytes> for Frame {
    fn from(head: Bytes) -> Self {
        Frame {
            head,
            ..Frame::default()
        }
    }
}

/// A successful getData reply: `buffer data, Stat`. Large data is not copied (see [`Frame`]).
pub fn get_data(xid: i32, zxid: i64, data: Option<Bytes>, stat: &Stat) -> Frame {
    let shared = data.as_ref().map_or(0, Bytes::len);
    if shared < SHARED_DATA_MIN {
        let mut w = Writer::framed_with_capacity(4 + 16 + 4 + shared + 80);
        ReplyHeader { xid, zxid, err: 0 }.write(&mut w);
        w.buffer(data.as_deref());
        stat.write(&mut w);
        return w.finish_frame().into();
    }
    let data = data.unwrap_or_default();
    // Length prefix, header, data length; then the Stat: one small buffer, split around the data.
    let mut w = Writer::with_capacity(4 + 16 + 4 + 80);
    w.i32(0);
    ReplyHeader { xid, zxid, err: 0 }.write(&mut w);
    w.i32(data.len() as i32);
    let head_len = w.len();
    stat.write(&mut w);
    let total = w.len() - 4 + data.len();
    w.patch_i32(0, total as i32);
    let mut head = w.into_bytes();
    let tail = head.split_off(head_len);
    Frame { head, data, tail }
}

/// A reply with a body written by `body` (called only when err is 0).
pub fn reply(xid: i32, zxid: i64, err: i32, body: impl FnOnce(&mut Writer)) -> Bytes {
    let mut w = Writer::framed();
    ReplyHeader { xid, zxid, err }.write(&mut w);
    if err == 0 {
        body(&mut w);
    }
    w.finish_frame()
}

/// A successful reply whose body is already serialized: one allocation of the exact size.
pub fn reply_with_body(xid: i32, zxid: i64, body: &[u8]) -> Bytes {
    let mut w = Writer::framed_with_capacity(4 + 16 + body.len());
    ReplyHeader { xid, zxid, err: 0 }.write(&mut w);
    w.raw(body);
    w.finish_frame()
}

/// A reply whose body is sent whatever the error, as ZooKeeper answers a failed SASL step
/// (header with AuthFailed, then SetSASLResponse with a null token): the Java client reads
/// the token of every reply while its SASL exchange is in progress.
pub fn reply_with_error_body(
    xid: i32,
    zxid: i64,
    err: i32,
    body: impl FnOnce(&mut Writer),
) -> Bytes {
    let mut w = Writer::framed();
    ReplyHeader { xid, zxid, err }.write(&mut w);
    body(&mut w);
    w.finish_frame()
}

pub fn header_only(xid: i32, zxid: i64, err: i32) -> Bytes {
    reply(xid, zxid, err, |_| {})
}

pub fn notification(zxid: i64, kind: i32, path: &str) -> Bytes {
    reply(xid::NOTIFICATION, zxid, 0, |w| {
        WatcherEvent {
            kind,
            state: event::STATE_SYNC_CONNECTED,
            path: path.to_string(),
        }
        .write(w)
    })
}

pub fn connect(resp: &ConnectResponse) -> Bytes {
    let mut w = Writer::framed();
    resp.write(&mut w);
    w.finish_frame()
}

/// The body of a successful single write, by the opcode the client used.
pub fn write_result(w: &mut Writer, request_op: i32, r: &TxnResult) {
    let stat = r.stat.unwrap_or_default();
    match request_op {
        op::CREATE => {
            w.string(&r.path);
        }
        op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
            w.string(&r.path);
            stat.write(w);
        }
        op::SET_DATA | op::SET_ACL | op::CHECK => stat.write(w),
        op::MULTI => write_multi(w, &r.multi),
        _ => {}
    }
}

/// One result inside a multi reply.
fn write_multi(w: &mut Writer, results: &[TxnResult]) {
    for r in results {
        let (kind, err) = match r.op {
            op::ERROR => (op::ERROR, r.err),
            op::CREATE_CONTAINER | op::CREATE_TTL | op::CREATE2 => (op::CREATE2, 0),
            op::DELETE_CONTAINER => (op::DELETE, 0),
            other => (other, 0),
        };
        MultiHeader {
            op: kind,
            done: false,
            err,
        }
        .write(w);
        match kind {
            op::CREATE => {
                w.string(&r.path);
            }
            op::CREATE2 => {
                w.string(&r.path);
                r.stat.unwrap_or_default().write(w);
            }
            op::SET_DATA => r.stat.unwrap_or_default().write(w),
            op::ERROR => {
                w.i32(err);
            }
            _ => {}
        }
    }
    MultiHeader::END.write(w);
}

/// A multiRead result: data and stat, children, or an error.
pub enum ReadResult {
    Data(Option<Bytes>, Stat),
    Children(Vec<String>),
    Error(i32),
}

pub fn write_multi_read(w: &mut Writer, results: &[ReadResult]) {
    for r in results {
        match r {
            ReadResult::Data(d, s) => {
                MultiHeader {
                    op: op::GET_DATA,
                    done: false,
                    err: 0,
                }
                .write(w);
                w.buffer(d.as_deref());
                s.write(w);
            }
            ReadResult::Children(c) => {
                MultiHeader {
                    op: op::GET_CHILDREN,
                    done: false,
                    err: 0,
                }
                .write(w);
                w.strings(c);
            }
            ReadResult::Error(e) => {
                MultiHeader {
                    op: op::ERROR,
                    done: false,
                    err: *e,
                }
                .write(w);
                w.i32(*e);
            }
        }
    }
    MultiHeader::END.write(w);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::Reader;

    #[test]
    fn a_get_data_frame_in_pieces_is_the_same_bytes_as_in_one() {
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            version: 3,
            data_length: 7,
            ..Stat::default()
        };
        for len in [
            None,
            Some(0),
            Some(10),
            Some(SHARED_DATA_MIN - 1),
            Some(SHARED_DATA_MIN),
            Some(1 << 20),
        ] {
            let data = len.map(|n| Bytes::from(vec![7u8; n]));
            let f = get_data(4, 99, data.clone(), &stat);
            let whole = reply(4, 99, 0, |w| {
                w.buffer(data.as_deref());
                stat.write(w);
            });
            assert_eq!(f.to_bytes(), whole, "data {len:?}");
            assert_eq!(f.len(), whole.len());
            let pieces = f.parts().count();
            assert_eq!(
                pieces,
                if len.unwrap_or(0) >= SHARED_DATA_MIN {
                    3
                } else {
                    1
                }
            );
            if let (Some(d), 3) = (&data, pieces) {
                // The data piece is the node's own buffer, not a copy.
                assert_eq!(f.parts().nth(1).unwrap().as_ptr(), d.as_ptr());
            }
        }
    }

    #[test]
    fn error_replies_carry_no_body() {
        let f = reply(5, 9, -101, |w| {
            w.string("never");
        });
        assert_eq!(f.len(), 4 + 16);
        let mut r = Reader::new(f.slice(4..));
        assert_eq!(
            ReplyHeader::read(&mut r).unwrap(),
            ReplyHeader {
                xid: 5,
                zxid: 9,
                err: -101
            }
        );
    }

    #[test]
    fn failed_multi_reply_shape() {
        let results = vec![
            TxnResult {
                op: op::ERROR,
                err: 0,
                ..Default::default()
            },
            TxnResult {
                op: op::ERROR,
                err: -110,
                ..Default::default()
            },
        ];
        let mut w = Writer::new();
        write_multi(&mut w, &results);
        let mut r = Reader::new(w.into_bytes());
        let h = MultiHeader::read(&mut r).unwrap();
        assert_eq!((h.op, h.err), (-1, 0));
        assert_eq!(r.i32().unwrap(), 0);
        let h = MultiHeader::read(&mut r).unwrap();
        assert_eq!((h.op, h.err), (-1, -110));
        assert_eq!(r.i32().unwrap(), -110);
        assert!(MultiHeader::read(&mut r).unwrap().done);
    }
}
