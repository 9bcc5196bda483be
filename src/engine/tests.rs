//! Engine tests: scripted event sequences in, assertions on the actions out. The log stage
//! is played by the test, so commits can be held back to see what waits for them.

use super::*;
use crate::jute::records::{ConnectRequest, ConnectResponse, ReplyHeader};
use crate::jute::{Reader, Record};
use crate::proto::request::CreateRequest;
use crate::tree::acl_cache::open_acl;

pub(super) fn clock(ms: i64) -> Clock {
    Clock {
        mono_ms: ms,
        mono_us: ms * 1000,
        wall_ms: 1_700_000_000_000 + ms,
    }
}

pub(super) fn engine() -> Engine {
    Engine::fresh(EngineConfig::default(), clock(0))
}

/// Frames sent to `conn`, as (xid, zxid, err) reply headers.
pub(super) fn replies(actions: &[EngineAction], conn: ConnId) -> Vec<ReplyHeader> {
    actions
        .iter()
        .filter_map(|a| match a {
            EngineAction::Client(ToClient::Send { conn: c, frame, .. })
                if *c == conn && frame.len() >= 20 =>
            {
                ReplyHeader::read(&mut Reader::new(frame.to_bytes().slice(4..))).ok()
            }
            _ => None,
        })
        .collect()
}

pub(super) fn logged(actions: &[EngineAction]) -> Vec<i64> {
    actions
        .iter()
        .filter_map(|a| match a {
            EngineAction::Log { hdr, .. } => Some(hdr.zxid),
            _ => None,
        })
        .collect()
}

pub(super) fn new_session_request() -> ConnectRequest {
    ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout: 10_000,
        session_id: 0,
        passwd: vec![0u8; 16].into(),
        read_only: None,
    }
}

/// Accepts a connection and establishes a new session on it; returns the session id.
fn open(e: &mut Engine, conn: ConnId) -> i64 {
    e.handle(
        Event::Accepted {
            conn,
            ip: "127.0.0.1".into(),
            ids: Vec::new(),
        },
        clock(0),
    );
    let req = new_session_request();
    let a = e.handle(Event::Handshake { conn, req }, clock(0));
    let z = logged(&a)[0];
    let a = e.handle(Event::Durable { zxid: z }, clock(0));
    let EngineAction::Client(ToClient::Send { frame, .. }) = &a[0] else {
        panic!("expected the ConnectResponse, got {a:?}")
    };
    ConnectResponse::from_bytes(frame.to_bytes().slice(4..))
        .unwrap()
        .session_id
}

pub(super) fn create(path: &str) -> Request {
    Request::Create(CreateRequest {
        op: op::CREATE,
        path: path.into(),
        data: None,
        acl: open_acl(),
        flags: 0,
        ttl: -1,
    })
}

#[test]
fn a_read_waits_behind_its_connections_uncommitted_write() {
    let mut e = engine();
    open(&mut e, 1);
    open(&mut e, 2);
    let a = request(&mut e, 1, create("/a"), 1);
    let z = logged(&a);
    assert_eq!(z.len(), 1);
    let read = Request::Exists {
        path: "/a".into(),
        watch: false,
    };
    // Same connection: held back. Another connection: answered at once, from committed state.
    let a = request(&mut e, 2, read.clone(), 1);
    assert!(replies(&a, 1).is_empty());
    let a = e.handle(
        Event::Request {
            conn: 2,
            xid: 9,
            req: read,
            body: Bytes::new(),
        },
        clock(1),
    );
    assert_eq!(replies(&a, 2)[0].err, ZkError::NoNode.code());
    // The commit releases the write's reply, then the read's, in order.
    let a = e.handle(Event::Durable { zxid: z[0] }, clock(2));
    let r = replies(&a, 1);
    assert_eq!((r[0].xid, r[0].zxid, r[0].err), (1, z[0], 0));
    assert_eq!((r[1].xid, r[1].err), (2, 0));
}

#[test]
fn pipelined_writes_are_prepared_against_each_other() {
    let mut e = engine();
    open(&mut e, 1);
    let a1 = request(&mut e, 1, create("/p"), 1);
    let a2 = request(&mut e, 2, create("/p/c"), 1);
    let a3 = request(&mut e, 3, create("/p"), 1);
    let (z1, z3) = (logged(&a1)[0], logged(&a3)[0]);
    assert_eq!(
        logged(&a2).len(),
        1,
        "the child create is prepared before /p is applied"
    );
    let a = e.handle(Event::Durable { zxid: z3 }, clock(2));
    let r = replies(&a, 1);
    assert_eq!(r.iter().map(|h| h.xid).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(r[0].zxid, z1);
    assert_eq!(r[1].err, 0);
    assert_eq!(r[2].err, ZkError::NodeExists.code());
}

#[test]
fn expiry_is_a_close_session_transaction() {
    let mut e = engine();
    let s = open(&mut e, 1);
    let eph = Request::Create(CreateRequest {
        op: op::CREATE,
        path: "/e".into(),
        data: None,
        acl: open_acl(),
        flags: 1,
        ttl: -1,
    });
    let a = request(&mut e, 1, eph, 1);
    e.handle(
        Event::Durable {
            zxid: logged(&a)[0],
        },
        clock(1),
    );
    e.handle(Event::Closed { conn: 1 }, clock(2));
    assert!(logged(&e.handle(Event::Tick, clock(5_000))).is_empty());
    let a = e.handle(Event::Tick, clock(20_000));
    let Some(EngineAction::Log { hdr, txn, .. }) = a.first() else {
        panic!("expected a closeSession txn, got {a:?}")
    };
    assert_eq!(hdr.client_id, s);
    assert_eq!(
        txn,
        &Txn::CloseSession {
            paths: vec!["/e".into()]
        }
    );
    e.handle(Event::Durable { zxid: hdr.zxid }, clock(20_001));
    assert!(e.tree.get("/e").is_none());
    assert_eq!(e.stats.digest_mismatches, 0);
    assert!(!e.sessions.is_live(s));
}

#[test]
fn requests_before_the_connect_response_wait_for_it() {
    let mut e = engine();
    e.handle(
        Event::Accepted {
            conn: 1,
            ip: "127.0.0.1".into(),
            ids: Vec::new(),
        },
        clock(0),
    );
    let req = new_session_request();
    let a = e.handle(Event::Handshake { conn: 1, req }, clock(0));
    let z = logged(&a)[0];
    let a = request(&mut e, -2, Request::Ping, 0);
    assert!(
        a.is_empty(),
        "nothing may overtake the ConnectResponse: {a:?}"
    );
    let a = e.handle(Event::Durable { zxid: z }, clock(0));
    assert_eq!(a.len(), 2);
    assert_eq!(replies(&a[1..], 1)[0].xid, -2);
}

// ---- ensemble: sync and reply order --------------------------------------------------

pub(super) fn zx(counter: u32) -> i64 {
    crate::quorum::make_zxid(1, counter)
}

/// An engine in `mode` with a session on connection 1 whose createSession applied at zx(1).
pub(super) fn member(mode: Mode) -> (Engine, i64) {
    member_with(EngineConfig::default(), Vec::new(), mode)
}

/// [`member`] with its configuration, and the identities connection 1 has.
pub(super) fn member_with(cfg: EngineConfig, ids: Vec<Id>, mode: Mode) -> (Engine, i64) {
    let mut e = Engine::fresh(cfg, clock(0));
    e.handle(
        Event::Mode {
            mode,
            last_zxid: zx(0),
        },
        clock(0),
    );
    e.handle(
        Event::Accepted {
            conn: 1,
            ip: "127.0.0.1".into(),
            ids,
        },
        clock(0),
    );
    let req = new_session_request();
    let a = e.handle(Event::Handshake { conn: 1, req }, clock(0));
    let session = a
        .iter()
        .find_map(|a| match a {
            EngineAction::Forward { session, .. } => Some(*session),
            EngineAction::Log { hdr, .. } => Some(hdr.client_id),
            _ => None,
        })
        .expect("createSession forwarded or logged");
    let hdr = hdr(session, 0, zx(1), op::CREATE_SESSION);
    let txn = Txn::CreateSession { timeout: 10_000 };
    let a = apply(&mut e, hdr, txn, 0);
    assert!(
        matches!(a.first(), Some(EngineAction::Client(ToClient::Send { .. }))),
        "ConnectResponse: {a:?}"
    );
    (e, session)
}

pub(super) fn hdr(client_id: i64, cxid: i32, zxid: i64, op: i32) -> TxnHeader {
    TxnHeader {
        client_id,
        cxid,
        zxid,
        time: 0,
        op,
    }
}

pub(super) fn create_txn(path: &str) -> Txn {
    Txn::Create {
        op: op::CREATE,
        path: path.into(),
        data: None,
        acl: open_acl(),
        kind: crate::txn::CreateKind::Persistent,
        parent_cversion: 1,
    }
}

/// A quorum commit applied on `e`.
pub(super) fn apply(e: &mut Engine, hdr: TxnHeader, txn: Txn, ms: i64) -> Vec<EngineAction> {
    let digest = None;
    e.handle(Event::Apply { hdr, txn, digest }, clock(ms))
}

/// A request frame on connection 1.
pub(super) fn request(e: &mut Engine, xid: i32, req: Request, ms: i64) -> Vec<EngineAction> {
    let body = Bytes::new();
    e.handle(
        Event::Request {
            conn: 1,
            xid,
            req,
            body,
        },
        clock(ms),
    )
}

pub(super) fn sync_req() -> Request {
    Request::Sync { path: "/".into() }
}

#[test]
fn a_write_applied_before_an_earlier_sync_completes_is_answered_after_it() {
    let (mut e, session) = member(Mode::Follower);
    let a = request(&mut e, 1, sync_req(), 1);
    assert!(a
        .iter()
        .any(|a| matches!(a, EngineAction::Forward { op: op::SYNC, .. })));
    request(&mut e, 2, create("/a"), 1);
    // The write's COMMIT comes before the leader's SYNC answer.
    let hdr = hdr(session, 2, zx(2), op::CREATE);
    let txn = create_txn("/a");
    let a = apply(&mut e, hdr, txn, 2);
    assert!(
        replies(&a, 1).is_empty(),
        "nothing may overtake the sync: {a:?}"
    );
    // The SYNC answer: both replies, in request order, and pings flow again.
    let a = e.handle(Event::Synced { zxid: zx(2) }, clock(3));
    let r: Vec<(i32, i32)> = replies(&a, 1).iter().map(|h| (h.xid, h.err)).collect();
    assert_eq!(r, vec![(1, 0), (2, 0)]);
    let a = request(&mut e, -2, Request::Ping, 4);
    assert_eq!(replies(&a, 1).len(), 1);
}

#[test]
fn a_learner_sync_completes_only_once_the_leaders_zxid_is_applied_here() {
    let (mut e, _) = member(Mode::Follower);
    request(&mut e, 1, sync_req(), 1);
    // The leader had applied zx(2); this member has zx(1) only.
    let a = e.handle(Event::Synced { zxid: zx(2) }, clock(2));
    assert!(replies(&a, 1).is_empty(), "{a:?}");
    let hdr = hdr(0, 0, zx(2), op::CREATE);
    let txn = create_txn("/b");
    let a = apply(&mut e, hdr, txn, 3);
    assert_eq!(
        replies(&a, 1).iter().map(|h| h.xid).collect::<Vec<_>>(),
        vec![1]
    );
}

#[test]
fn a_leader_answers_sync_only_after_its_read_round_is_confirmed() {
    let (mut e, _) = member(Mode::Leader);
    let a = request(&mut e, 1, sync_req(), 1);
    assert!(replies(&a, 1).is_empty(), "{a:?}");
    assert!(a.contains(&EngineAction::ConfirmLeadership { round: 1 }));
    let a = e.handle(
        Event::Forwarded {
            origin: 2,
            session: 0,
            cxid: 5,
            op: op::SYNC,
            body: Bytes::new(),
            ids: Vec::new(),
        },
        clock(1),
    );
    assert!(a.contains(&EngineAction::ConfirmLeadership { round: 2 }));
    assert!(!a.iter().any(|a| matches!(a, EngineAction::SyncDone { .. })));
    let a = e.handle(Event::LeadershipConfirmed { round: 1 }, clock(2));
    assert_eq!(
        replies(&a, 1).iter().map(|h| h.xid).collect::<Vec<_>>(),
        vec![1]
    );
    assert!(!a.iter().any(|a| matches!(a, EngineAction::SyncDone { .. })));
    let a = e.handle(Event::LeadershipConfirmed { round: 2 }, clock(3));
    assert_eq!(a, vec![EngineAction::SyncDone { origin: 2 }]);
}

/// An engine of a member with no leader, and a client whose handshake it holds.
fn down_with_a_held_handshake(conn: ConnId) -> Engine {
    let mut e = engine();
    let down = Event::Mode {
        mode: Mode::Down,
        last_zxid: 0,
    };
    e.handle(down, clock(0));
    let ip = "127.0.0.1".to_string();
    e.handle(
        Event::Accepted {
            conn,
            ip,
            ids: Vec::new(),
        },
        clock(0),
    );
    let req = new_session_request();
    let a = e.handle(Event::Handshake { conn, req }, clock(0));
    assert!(a.is_empty(), "held, not answered: {a:?}");
    assert_eq!(e.parked_len(), 1);
    e
}

#[test]
fn a_held_handshake_goes_with_its_connection() {
    let mut e = down_with_a_held_handshake(7);
    e.handle(Event::Closed { conn: 7 }, clock(100));
    assert_eq!(e.parked_len(), 0);
}

#[test]
fn a_held_handshake_is_closed_after_its_session_timeout() {
    let mut e = down_with_a_held_handshake(7);
    // The request asked for 10 s.
    let a = e.handle(Event::Tick, clock(9_000));
    assert!(a.is_empty() && e.parked_len() == 1, "still waiting: {a:?}");
    let a = e.handle(Event::Tick, clock(10_001));
    assert!(
        matches!(
            a.as_slice(),
            [EngineAction::Client(ToClient::Close { conn: 7, .. })]
        ),
        "{a:?}"
    );
    assert_eq!(e.parked_len(), 0);
}

/// The write path's `update_us`: a write's arrival in the engine to its reply, in
/// microseconds; reads are not counted.
#[test]
fn a_writes_time_from_arrival_to_reply_is_kept_in_microseconds() {
    let (mut e, session) = member(Mode::Follower);
    let before = e.stats.write_path.update_us.count;
    request(&mut e, 1, create("/t"), 4);
    let a = apply(
        &mut e,
        hdr(session, 1, zx(2), op::CREATE),
        create_txn("/t"),
        7,
    );
    assert_eq!(replies(&a, 1).len(), 1);
    let u = &e.stats.write_path.update_us;
    assert_eq!(u.count, before + 1);
    assert_eq!(u.max, 3000, "3 ms from arrival to reply");
    request(
        &mut e,
        2,
        Request::GetData {
            path: "/t".into(),
            watch: false,
        },
        8,
    );
    assert_eq!(e.stats.write_path.update_us.count, before + 1);
}
