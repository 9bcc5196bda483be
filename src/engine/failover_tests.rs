//! A change of leader seen by the engine (`failover.rs`): connections stay, requests in
//! flight are answered from the new history or sent again, exactly once and in order.

use super::tests::{apply, clock, create, create_txn, hdr, member, replies, request, zx};
use super::*;

/// A zxid of epoch 2 (the next leader's).
fn zx2(counter: u32) -> i64 {
    crate::quorum::make_zxid(2, counter)
}

fn mode(e: &mut Engine, mode: Mode, last_zxid: i64, ms: i64) -> Vec<EngineAction> {
    e.handle(Event::Mode { mode, last_zxid }, clock(ms))
}

fn closes(a: &[EngineAction]) -> Vec<ConnId> {
    a.iter()
        .filter_map(|a| match a {
            EngineAction::Client(ToClient::Close { conn, .. }) => Some(*conn),
            _ => None,
        })
        .collect()
}

/// The cxids of the requests forwarded to the leader.
fn forwarded(a: &[EngineAction]) -> Vec<i32> {
    a.iter()
        .filter_map(|a| match a {
            EngineAction::Forward { cxid, .. } => Some(*cxid),
            _ => None,
        })
        .collect()
}

fn get(path: &str) -> Request {
    Request::GetData {
        path: path.into(),
        watch: false,
    }
}

#[test]
fn a_write_in_the_new_history_is_answered_from_it_and_not_sent_again() {
    let (mut e, session) = member(Mode::Follower);
    assert_eq!(forwarded(&request(&mut e, 1, create("/a"), 1)), vec![1]);
    let a = mode(&mut e, Mode::Down, 0, 2);
    assert!(closes(&a).is_empty(), "the connection stays: {a:?}");
    // Without a leader: a read waits behind the write, a ping is answered at once.
    assert!(replies(&request(&mut e, 2, get("/a"), 3), 1).is_empty());
    let a = request(&mut e, -2, Request::Ping, 4);
    assert_eq!(
        replies(&a, 1).iter().map(|h| h.xid).collect::<Vec<_>>(),
        vec![-2]
    );
    // Syncing with the next leader applies the write: answered, and the read behind it.
    let a = apply(
        &mut e,
        hdr(session, 1, zx(2), op::CREATE),
        create_txn("/a"),
        5,
    );
    let r: Vec<(i32, i32)> = replies(&a, 1).iter().map(|h| (h.xid, h.err)).collect();
    assert_eq!(r, vec![(1, 0)], "the read waits for a leader: {a:?}");
    let a = mode(&mut e, Mode::Follower, zx2(0), 6);
    assert!(forwarded(&a).is_empty(), "applied once only: {a:?}");
    let r: Vec<(i32, i32)> = replies(&a, 1).iter().map(|h| (h.xid, h.err)).collect();
    assert_eq!(r, vec![(2, 0)]);
}

#[test]
fn writes_not_in_the_new_history_are_sent_again_in_order_before_later_ones() {
    let (mut e, session) = member(Mode::Follower);
    request(&mut e, 1, create("/a"), 1);
    request(&mut e, 2, create("/b"), 1);
    mode(&mut e, Mode::Down, 0, 2);
    let a = request(&mut e, 3, create("/c"), 3);
    assert!(
        forwarded(&a).is_empty(),
        "nothing starts without a leader: {a:?}"
    );
    let a = mode(&mut e, Mode::Follower, zx2(0), 4);
    assert_eq!(forwarded(&a), vec![1, 2, 3]);
    assert!(closes(&a).is_empty());
    // The new leader commits them; the replies go out in request order.
    let mut r = Vec::new();
    for (cxid, path) in [(1, "/a"), (2, "/b"), (3, "/c")] {
        let h = hdr(session, cxid, zx2(cxid as u32), op::CREATE);
        let a = apply(&mut e, h, create_txn(path), 5);
        r.extend(replies(&a, 1).iter().map(|h| h.xid));
    }
    assert_eq!(r, vec![1, 2, 3]);
}

#[test]
fn a_deposed_leaders_own_clients_learn_their_writes_fate_as_followers() {
    let (mut e, session) = member(Mode::Leader);
    // Two writes prepared and logged as leader; neither committed.
    request(&mut e, 1, create("/kept"), 1);
    request(&mut e, 2, create("/lost"), 1);
    let a = mode(&mut e, Mode::Down, 0, 2);
    assert!(closes(&a).is_empty(), "{a:?}");
    // The next leader's history has the first (same session and cxid), not the second.
    let a = apply(
        &mut e,
        hdr(session, 1, zx(2), op::CREATE),
        create_txn("/kept"),
        3,
    );
    assert_eq!(
        replies(&a, 1).iter().map(|h| h.xid).collect::<Vec<_>>(),
        vec![1]
    );
    let a = mode(&mut e, Mode::Follower, zx2(0), 4);
    assert_eq!(forwarded(&a), vec![2], "only the lost write goes again");
}

#[test]
fn a_leader_elected_again_prepares_what_was_lost_under_its_new_epoch() {
    let (mut e, _) = member(Mode::Leader);
    request(&mut e, 1, create("/x"), 1);
    mode(&mut e, Mode::Down, 0, 2);
    let a = mode(&mut e, Mode::Leader, zx2(0), 3);
    let zxids: Vec<i64> = a
        .iter()
        .filter_map(|a| match a {
            EngineAction::Log { hdr, .. } => Some(hdr.zxid),
            _ => None,
        })
        .collect();
    assert_eq!(zxids, vec![zx2(1)]);
}

#[test]
fn a_session_being_created_is_created_under_the_next_leader() {
    let mut e = super::tests::engine();
    mode(&mut e, Mode::Follower, zx(0), 0);
    e.handle(
        Event::Accepted {
            conn: 4,
            ip: "127.0.0.1".into(),
            ids: Vec::new(),
        },
        clock(0),
    );
    let req = super::tests::new_session_request();
    let a = e.handle(Event::Handshake { conn: 4, req }, clock(1));
    let Some(EngineAction::Forward { session, .. }) = a.first().cloned() else {
        panic!("createSession forwarded: {a:?}")
    };
    mode(&mut e, Mode::Down, 0, 2);
    let a = mode(&mut e, Mode::Follower, zx2(0), 3);
    assert!(
        matches!(a.as_slice(), [EngineAction::Forward { session: s, op: op::CREATE_SESSION, .. }] if *s == session),
        "the same session asked for again: {a:?}"
    );
    let h = hdr(session, 0, zx2(1), op::CREATE_SESSION);
    let a = apply(&mut e, h, Txn::CreateSession { timeout: 10_000 }, 4);
    assert!(
        matches!(
            a.first(),
            Some(EngineAction::Client(ToClient::Send { conn: 4, .. }))
        ),
        "ConnectResponse: {a:?}"
    );
}

#[test]
fn a_connection_without_a_leader_for_a_third_of_its_timeout_closes() {
    // member() negotiates 10 s.
    let (mut e, _) = member(Mode::Follower);
    mode(&mut e, Mode::Down, 0, 1_000);
    let a = e.handle(Event::Tick, clock(4_000));
    assert!(closes(&a).is_empty(), "{a:?}");
    let a = e.handle(Event::Tick, clock(4_400));
    assert_eq!(closes(&a), vec![1]);
}

#[test]
fn a_replaced_state_closes_every_connection() {
    let (mut e, _) = member(Mode::Follower);
    mode(&mut e, Mode::Down, 0, 1);
    let a = e.handle(Event::Replaced, clock(2));
    assert_eq!(closes(&a), vec![1]);
}

#[test]
fn without_leader_serves_a_new_leader_keeps_its_clients_and_refuses_new_ones() {
    let mut e = Engine::fresh(
        EngineConfig {
            leader_serves: false,
            ..EngineConfig::default()
        },
        clock(0),
    );
    mode(&mut e, Mode::Follower, zx(0), 0);
    e.handle(
        Event::Accepted {
            conn: 1,
            ip: "127.0.0.1".into(),
            ids: Vec::new(),
        },
        clock(0),
    );
    let req = super::tests::new_session_request();
    let a = e.handle(Event::Handshake { conn: 1, req }, clock(0));
    let Some(EngineAction::Forward { session, .. }) = a.first().cloned() else {
        panic!("{a:?}")
    };
    let h = hdr(session, 0, zx(1), op::CREATE_SESSION);
    apply(&mut e, h, Txn::CreateSession { timeout: 10_000 }, 1);
    // The leader dies; this member is elected and keeps its client.
    mode(&mut e, Mode::Down, 0, 2);
    let a = mode(&mut e, Mode::Leader, zx2(0), 3);
    assert!(closes(&a).is_empty(), "{a:?}");
    let a = request(&mut e, 1, create("/still-served"), 4);
    assert_eq!(super::tests::logged(&a), vec![zx2(1)]);
    // A new client is turned away, to a follower.
    e.handle(
        Event::Accepted {
            conn: 2,
            ip: "127.0.0.1".into(),
            ids: Vec::new(),
        },
        clock(5),
    );
    let req = super::tests::new_session_request();
    let a = e.handle(Event::Handshake { conn: 2, req }, clock(5));
    assert_eq!(closes(&a), vec![2]);
}

#[test]
fn a_write_logged_here_and_not_yet_committed_waits_for_its_commit() {
    let (mut e, session) = member(Mode::Follower);
    request(&mut e, 1, create("/pending"), 1);
    mode(&mut e, Mode::Down, 0, 2);
    // The next leader proposed it (from the request it read before this member came
    // back); its COMMIT comes after UPTODATE.
    e.handle(
        Event::Unapplied {
            requests: vec![(session, 1)],
        },
        clock(3),
    );
    let a = mode(&mut e, Mode::Follower, zx2(0), 3);
    assert!(forwarded(&a).is_empty(), "not sent twice: {a:?}");
    let a = apply(
        &mut e,
        hdr(session, 1, zx2(1), op::CREATE),
        create_txn("/pending"),
        4,
    );
    assert_eq!(
        replies(&a, 1).iter().map(|h| h.xid).collect::<Vec<_>>(),
        vec![1]
    );
}

/// A new leader answers a `sync` before its epoch's first write: nothing it has logged is
/// unapplied (the epoch's numbering base names no transaction). Seen in the node
/// simulation: every `sync` after a change of leader waited for some client to write.
#[test]
fn a_new_leader_answers_sync_before_any_write_of_its_epoch() {
    let (mut e, _) = member(Mode::Leader);
    mode(&mut e, Mode::Down, 0, 2);
    mode(&mut e, Mode::Leader, zx2(0), 3);
    let a = request(&mut e, 1, super::tests::sync_req(), 4);
    let round = a
        .iter()
        .find_map(|a| match a {
            EngineAction::ConfirmLeadership { round } => Some(*round),
            _ => None,
        })
        .expect("a read round");
    let a = e.handle(Event::LeadershipConfirmed { round }, clock(5));
    assert_eq!(
        replies(&a, 1)
            .iter()
            .map(|h| (h.xid, h.err))
            .collect::<Vec<_>>(),
        vec![(1, 0)]
    );
}
