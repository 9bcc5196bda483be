//! Raw client frames for tests that need byte-level control: framing, the handshake,
//! request headers, and a few request bodies.

use super::DEADLINE;
use std::io::{Read, Write};
use std::net::TcpStream;
use zabd::jute::records::{ConnectRequest, ReplyHeader, RequestHeader};
use zabd::jute::{Reader, Record, Writer};

pub fn open(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// A length-prefixed frame.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

pub fn send_frame(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(&frame(payload)).unwrap();
}

/// Reads one frame; None when the server closed the connection.
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

pub fn connect_req(session: i64, passwd: Vec<u8>, read_only: Option<bool>, zxid: i64) -> Vec<u8> {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: zxid,
        timeout: 30000,
        session_id: session,
        passwd: passwd.into(),
        read_only,
    }
    .to_bytes()
    .to_vec()
}

pub fn request(xid: i32, op: i32, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    RequestHeader { xid, op }.write(&mut w);
    body(&mut w);
    w.into_bytes().to_vec()
}

/// addAuthInfo as the Java client sends it (xid -4, opcode 100).
pub fn auth_req(scheme: &str, auth: &[u8]) -> Vec<u8> {
    request(-4, 100, |w| {
        w.i32(0).string(scheme).buffer(Some(auth));
    })
}

/// getData (opcode 4) without a watch.
pub fn get_data_req(xid: i32, path: &str) -> Vec<u8> {
    request(xid, 4, |w| {
        w.string(path).bool(false);
    })
}

pub fn reply_header(f: &[u8]) -> ReplyHeader {
    ReplyHeader::read(&mut Reader::new(f.to_vec().into())).unwrap()
}

/// Opens a session with everything after the ConnectRequest in the same write, as the
/// Java client's `primeConnection` pipelines auth and queued requests; returns the stream
/// and the frames that answer them, in order (the ConnectResponse first).
pub fn pipelined_session(addr: &str, requests: &[Vec<u8>]) -> (TcpStream, Vec<Vec<u8>>) {
    let mut s = open(addr);
    let mut batch = frame(&connect_req(0, vec![0; 16], Some(false), 0));
    for r in requests {
        batch.extend(frame(r));
    }
    s.write_all(&batch).unwrap();
    let replies = (0..=requests.len())
        .map(|i| read_frame(&mut s).unwrap_or_else(|| panic!("reply {i} of the pipeline")))
        .collect();
    (s, replies)
}

/// The Java client's `addAuthInfo` right after `new ZooKeeper(...)`, with a creator-only
/// node: session 1 pipelines auth + create(CREATOR_ALL_ACL) on `create_at`; session 2
/// pipelines auth + sync + getData on `read_at` and reads it; session 3, without auth,
/// gets NoAuth.
pub fn check_pipelined_auth(create_at: &str, read_at: &str, path: &str) {
    use zabd::jute::records::{write_acls, Acl, ConnectResponse, Id};
    let creator_all = [Acl {
        perms: 31,
        id: Id::new("auth", ""),
    }];
    let create = request(1, 1, |w| {
        w.string(path).buffer(Some(b"secret"));
        write_acls(w, &creator_all);
        w.i32(0);
    });
    let auth = auth_req("digest", b"alice:pw");
    let (_s1, r) = pipelined_session(create_at, &[auth.clone(), create]);
    assert!(
        ConnectResponse::from_bytes(r[0].clone().into())
            .unwrap()
            .timeout
            > 0
    );
    let (a, c) = (reply_header(&r[1]), reply_header(&r[2]));
    assert_eq!((a.xid, a.err), (-4, 0), "auth reply");
    assert_eq!(
        (c.xid, c.err),
        (1, 0),
        "create with CREATOR_ALL_ACL after pipelined auth"
    );

    let sync = request(1, 9, |w| {
        w.string(path);
    });
    let (_s2, r) = pipelined_session(read_at, &[auth, sync, get_data_req(2, path)]);
    let (a, s, g) = (
        reply_header(&r[1]),
        reply_header(&r[2]),
        reply_header(&r[3]),
    );
    assert_eq!(
        (a.xid, a.err, s.xid, s.err),
        (-4, 0, 1, 0),
        "auth and sync replies"
    );
    assert_eq!((g.xid, g.err), (2, 0), "getData by the same identity");
    let mut rd = Reader::new(r[3][16..].to_vec().into());
    assert_eq!(rd.buffer().unwrap().as_deref(), Some(&b"secret"[..]));

    let (_s3, r) = pipelined_session(read_at, &[get_data_req(1, path)]);
    assert_eq!(reply_header(&r[1]).err, -102, "NoAuth without the identity");
}
