//! Local sessions (`local.rs`), seen by the engine: scripted events in, actions out.

use super::tests::{clock, create, hdr, new_session_request, replies, request, zx};
use super::*;
use crate::proto::request::CreateRequest;
use crate::tree::acl_cache::open_acl;

/// A member in `mode` with local sessions on, and a fresh session on connection 1 (the
/// handshake's actions are returned).
fn local_member(mode: Mode, upgrading: bool) -> (Engine, Vec<EngineAction>) {
    let cfg = EngineConfig {
        server_id: 2,
        local_sessions: true,
        local_sessions_upgrading: upgrading,
        ..EngineConfig::default()
    };
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
            ids: Vec::new(),
        },
        clock(0),
    );
    let req = new_session_request();
    let a = e.handle(Event::Handshake { conn: 1, req }, clock(0));
    (e, a)
}

fn session_of(e: &Engine) -> i64 {
    e.conns[&1].session.expect("a session")
}

fn ephemeral(path: &str) -> Request {
    Request::Create(CreateRequest {
        op: op::CREATE,
        path: path.into(),
        data: None,
        acl: open_acl(),
        flags: 1,
        ttl: -1,
    })
}

fn forwards(a: &[EngineAction]) -> Vec<(i64, i32, i32)> {
    a.iter()
        .filter_map(|a| match a {
            EngineAction::Forward {
                session, cxid, op, ..
            } => Some((*session, *cxid, *op)),
            _ => None,
        })
        .collect()
}

fn closed(a: &[EngineAction]) -> bool {
    a.iter()
        .any(|a| matches!(a, EngineAction::Client(ToClient::Close { conn: 1, .. })))
}

#[test]
fn a_new_session_on_a_follower_is_local_answered_at_once_and_never_logged_or_listed() {
    let (e, a) = local_member(Mode::Follower, false);
    assert!(forwards(&a).is_empty(), "no createSession forwarded: {a:?}");
    assert!(
        matches!(
            a.as_slice(),
            [EngineAction::Client(ToClient::Send { conn: 1, .. })]
        ),
        "the ConnectResponse at once: {a:?}"
    );
    let s = session_of(&e);
    assert!(e.sessions.is_live(s) && e.is_local(s));
    assert_eq!(e.local_session_count(), 1);
    assert!(e.session_list().is_empty(), "not in snapshots or SNAPs");
}

#[test]
fn the_leaders_own_new_sessions_are_local_too_and_standalone_has_none() {
    let (e, a) = local_member(Mode::Leader, false);
    assert!(
        super::tests::logged(&a).is_empty(),
        "no createSession txn: {a:?}"
    );
    assert!(e.is_local(session_of(&e)));
    let (e, _) = local_member(Mode::Standalone, false);
    assert_eq!(e.local_session_count(), 0);
}

#[test]
fn a_persistent_write_goes_on_but_an_ephemeral_create_needs_a_global_session() {
    let (mut e, _) = local_member(Mode::Follower, false);
    let s = session_of(&e);
    let a = request(&mut e, 1, create("/p"), 1);
    assert_eq!(forwards(&a), vec![(s, 1, op::CREATE)]);
    // Answered in its turn: after the create before it.
    let a = request(&mut e, 2, ephemeral("/e"), 2);
    assert!(
        forwards(&a).is_empty() && replies(&a, 1).is_empty(),
        "{a:?}"
    );
    let a = super::tests::apply(
        &mut e,
        hdr(s, 1, zx(1), op::CREATE),
        super::tests::create_txn("/p"),
        3,
    );
    let r: Vec<(i32, i32)> = replies(&a, 1).iter().map(|h| (h.xid, h.err)).collect();
    assert_eq!(
        r,
        vec![(1, 0), (2, ZkError::EphemeralOnLocalSession.code())]
    );
    assert!(e.is_local(s), "still local");
}

#[test]
fn with_upgrading_an_ephemeral_create_makes_the_session_global_first() {
    let (mut e, _) = local_member(Mode::Follower, true);
    let s = session_of(&e);
    let multi = Request::Multi(vec![create("/p"), ephemeral("/p/e")]);
    let a = request(&mut e, 1, multi, 1);
    assert_eq!(
        forwards(&a),
        vec![(s, 0, op::CREATE_SESSION), (s, 1, op::MULTI)],
        "createSession ahead of the write"
    );
    assert!(!e.is_local(s) && e.session_list() == vec![(s, 10_000)]);
    // Global now: its activity goes to the leader with the PINGs.
    request(
        &mut e,
        2,
        Request::Exists {
            path: "/".into(),
            watch: false,
        },
        2,
    );
    assert_eq!(e.take_touches(), vec![(s, 10_000)]);
}

#[test]
fn the_leader_upgrades_by_logging_the_create_session_before_the_write() {
    let (mut e, _) = local_member(Mode::Leader, true);
    let s = session_of(&e);
    let a = request(&mut e, 1, ephemeral("/e"), 1);
    let ops: Vec<(i64, i32)> = a
        .iter()
        .filter_map(|a| match a {
            EngineAction::Log { hdr, .. } => Some((hdr.client_id, hdr.op)),
            _ => None,
        })
        .collect();
    assert_eq!(ops, vec![(s, op::CREATE_SESSION), (s, op::CREATE)]);
}

#[test]
fn close_session_is_answered_here_and_closes_the_connection() {
    let (mut e, _) = local_member(Mode::Follower, false);
    let s = session_of(&e);
    let a = request(&mut e, 5, Request::CloseSession, 1);
    assert!(forwards(&a).is_empty(), "{a:?}");
    assert_eq!(
        replies(&a, 1)
            .iter()
            .map(|h| (h.xid, h.err))
            .collect::<Vec<_>>(),
        vec![(5, 0)]
    );
    assert!(closed(&a));
    assert!(!e.sessions.is_live(s) && e.local_session_count() == 0);
}

#[test]
fn a_local_session_expires_on_its_member_and_cannot_be_resumed() {
    let (mut e, _) = local_member(Mode::Follower, false);
    let s = session_of(&e);
    let a = e.handle(Event::Tick, clock(5_000));
    assert!(!closed(&a), "not yet: {a:?}");
    let a = e.handle(Event::Tick, clock(20_000));
    assert!(closed(&a), "expired: {a:?}");
    assert!(!e.sessions.is_live(s));
    e.handle(Event::Closed { conn: 1 }, clock(20_001));
    e.handle(
        Event::Accepted {
            conn: 2,
            ip: "127.0.0.1".into(),
            ids: Vec::new(),
        },
        clock(20_002),
    );
    let mut req = new_session_request();
    req.session_id = s;
    req.passwd = bytes::Bytes::copy_from_slice(&crate::session::password(s));
    // Forgotten here, it is asked of the leader like any session this member does not
    // know, and the leader never knew it.
    let a = e.handle(Event::Handshake { conn: 2, req }, clock(20_003));
    assert!(
        matches!(a.as_slice(), [EngineAction::Revalidate { session, .. }] if *session == s),
        "{a:?}"
    );
    let a = e.handle(
        Event::Revalidated {
            session: s,
            valid: false,
        },
        clock(20_004),
    );
    assert!(a
        .iter()
        .any(|a| matches!(a, EngineAction::Client(ToClient::Close { conn: 2, .. }))));
    assert_eq!(e.stats.sessions_expired, 1);
}

#[test]
fn a_local_session_reconnecting_to_its_member_resumes_without_the_leader() {
    let (mut e, _) = local_member(Mode::Follower, false);
    let s = session_of(&e);
    e.handle(Event::Closed { conn: 1 }, clock(1));
    e.handle(
        Event::Accepted {
            conn: 2,
            ip: "127.0.0.1".into(),
            ids: Vec::new(),
        },
        clock(2),
    );
    let mut req = new_session_request();
    req.session_id = s;
    req.passwd = bytes::Bytes::copy_from_slice(&crate::session::password(s));
    let a = e.handle(Event::Handshake { conn: 2, req }, clock(3));
    assert!(
        matches!(
            a.as_slice(),
            [EngineAction::Client(ToClient::Send { conn: 2, .. })]
        ),
        "resumed here: {a:?}"
    );
}

#[test]
fn the_leader_takes_writes_from_another_members_unknown_session_only_with_local_sessions() {
    let other = 7i64 << 56 | 5;
    for (local, want) in [(true, 0), (false, ZkError::SessionExpired.code())] {
        let cfg = EngineConfig {
            server_id: 2,
            local_sessions: local,
            ..EngineConfig::default()
        };
        let mut e = Engine::fresh(cfg, clock(0));
        e.handle(
            Event::Mode {
                mode: Mode::Leader,
                last_zxid: zx(0),
            },
            clock(0),
        );
        // CreateRequest: path, data (null), ACL [world:anyone, ALL], flags 0.
        let mut w = crate::jute::Writer::new();
        w.string("/x").buffer(None).i32(1).i32(31);
        w.string("world").string("anyone").i32(0);
        let a = e.handle(
            Event::Forwarded {
                origin: 7,
                session: other,
                cxid: 3,
                op: op::CREATE,
                body: w.into_bytes(),
                ids: Vec::new(),
            },
            clock(1),
        );
        let errs: Vec<i32> = a
            .iter()
            .filter_map(|a| match a {
                EngineAction::Log { txn, .. } => Some(match txn {
                    Txn::Error { err } => *err,
                    _ => 0,
                }),
                _ => None,
            })
            .collect();
        assert_eq!(errs, vec![want], "local sessions {local}");
    }
}

#[test]
fn the_leader_does_not_vouch_for_its_own_local_sessions_to_learners() {
    let (mut e, _) = local_member(Mode::Leader, false);
    let s = session_of(&e);
    assert!(
        !e.revalidate(s, 10_000, clock(1)),
        "a learner must find it expired"
    );
    assert!(e.sessions.is_live(s), "still live on the leader itself");
}

#[test]
fn an_upgrade_lost_in_a_change_of_leader_is_sent_again_ahead_of_its_write() {
    let (mut e, _) = local_member(Mode::Follower, true);
    let s = session_of(&e);
    let a = request(&mut e, 1, ephemeral("/e"), 1);
    assert_eq!(
        forwards(&a),
        vec![(s, 0, op::CREATE_SESSION), (s, 1, op::CREATE)]
    );
    let to =
        |e: &mut Engine, mode, last_zxid, ms| e.handle(Event::Mode { mode, last_zxid }, clock(ms));
    to(&mut e, Mode::Down, 0, 2);
    let a = to(&mut e, Mode::Follower, crate::quorum::make_zxid(2, 0), 3);
    assert_eq!(
        forwards(&a),
        vec![(s, 0, op::CREATE_SESSION), (s, 1, op::CREATE)],
        "the createSession again, then the write"
    );
    // Once it applies, a later change of leader sends nothing for it.
    let h = hdr(s, 0, crate::quorum::make_zxid(2, 1), op::CREATE_SESSION);
    super::tests::apply(&mut e, h, Txn::CreateSession { timeout: 10_000 }, 4);
    to(&mut e, Mode::Down, 0, 5);
    let a = to(&mut e, Mode::Follower, crate::quorum::make_zxid(3, 0), 6);
    assert_eq!(forwards(&a), vec![(s, 1, op::CREATE)]);
}
