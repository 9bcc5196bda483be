//! The leader's prep of `reconfig`: ZooKeeper's order of refusals, the transaction it logs
//! and the reply once it applies.

use super::tests::{member_with, replies, request};
use super::*;
use crate::quorum::membership::Membership;
use crate::quorum::reconfig::ReconfigAsk;

fn three() -> Membership {
    Membership::parse(
        "server.1=127.0.0.1:1001:2001:participant;127.0.0.1:3001\n\
         server.2=127.0.0.1:1002:2002:participant;127.0.0.1:3002\n\
         server.3=127.0.0.1:1003:2003:participant;127.0.0.1:3003\n\
         version=100000000",
    )
    .unwrap()
}

fn add(id: u64, from: i64) -> Request {
    Request::Reconfig(ReconfigAsk {
        joining: Some(format!(
            "server.{id}=127.0.0.1:{}:{}:participant;127.0.0.1:{}",
            1000 + id,
            2000 + id,
            3000 + id
        )),
        leaving: None,
        new_members: None,
        cur_config_id: from,
    })
}

/// A leader with reconfig on (or off), its membership three voters all synced, and a
/// client that is super (or not) on connection 1.
fn leader(enabled: bool, super_user: bool) -> Engine {
    let cfg = EngineConfig {
        reconfig_enabled: enabled,
        ..EngineConfig::default()
    };
    let ids = match super_user {
        true => vec![Id::new("super", "")],
        false => Vec::new(),
    };
    let (mut e, _) = member_with(cfg, ids, Mode::Leader);
    e.set_membership(three(), three());
    e.set_synced_followers(vec![1, 2, 3]);
    e
}

/// The error code of the transaction `req` logs (0 for a reconfig), and that transaction.
fn prepared(e: &mut Engine, xid: i32, req: Request) -> (i32, Txn) {
    let a = request(e, xid, req, 1);
    let txn = a
        .iter()
        .find_map(|x| match x {
            EngineAction::Log { txn, .. } => Some(txn.clone()),
            _ => None,
        })
        .expect("a logged transaction");
    let err = match &txn {
        Txn::Error { err } => *err,
        _ => 0,
    };
    (err, txn)
}

#[test]
fn refusals_come_in_zookeepers_order() {
    let mut off = leader(false, true);
    assert_eq!(
        prepared(&mut off, 1, add(4, -1)).0,
        ZkError::ReconfigDisabled.code()
    );
    let mut e = leader(true, false);
    assert_eq!(
        prepared(&mut e, 1, add(4, 7)).0,
        ZkError::BadVersion.code(),
        "-from is checked before permissions"
    );
    assert_eq!(prepared(&mut e, 2, add(4, -1)).0, ZkError::NoAuth.code());
    let mut e = leader(true, true);
    e.set_synced_followers(vec![1]);
    let five = Request::Reconfig(ReconfigAsk {
        joining: Some(
            "server.4=127.0.0.1:1004:2004;127.0.0.1:3004,server.5=127.0.0.1:1005:2005;127.0.0.1:3005"
                .into(),
        ),
        leaving: None,
        new_members: None,
        cur_config_id: -1,
    });
    assert_eq!(
        prepared(&mut e, 1, five).0,
        ZkError::NewConfigNoQuorum.code(),
        "one of five voters synced"
    );
    let bad = Request::Reconfig(ReconfigAsk {
        joining: Some("some thing".into()),
        leaving: None,
        new_members: None,
        cur_config_id: -1,
    });
    assert_eq!(prepared(&mut e, 2, bad).0, ZkError::BadArguments.code());
}

#[test]
fn a_reconfig_is_a_setdata_of_the_config_node_and_its_reply_the_new_text() {
    let mut e = leader(true, true);
    let (err, txn) = prepared(&mut e, 1, add(4, 0x1_0000_0000));
    assert_eq!(err, 0);
    let Txn::Reconfig {
        path,
        data,
        version,
    } = txn.clone()
    else {
        panic!("{txn:?}")
    };
    assert_eq!((path.as_str(), version), ("/zookeeper/config", -1));
    let text = String::from_utf8(data.unwrap().to_vec()).unwrap();
    let m = Membership::parse(&text).unwrap();
    assert_eq!(m.voters(), [1, 2, 3, 4]);
    assert_eq!(
        m.version,
        super::tests::zx(2),
        "the version is the reconfig's zxid"
    );
    // A second one while the first is not applied: in progress.
    assert_eq!(
        prepared(&mut e, 2, add(5, -1)).0,
        ZkError::ReconfigInProgress.code()
    );
    // The first applies: its client gets the new text and the node's Stat.
    let hdr = super::tests::hdr(1, 1, super::tests::zx(2), op::RECONFIG);
    let a = e.handle(
        Event::Apply {
            hdr,
            txn,
            digest: None,
        },
        super::tests::clock(2),
    );
    let r = replies(&a, 1);
    assert_eq!((r[0].xid, r[0].err), (1, 0));
    assert_eq!(e.tree.get("/zookeeper/config").unwrap().stat.version, -1);
}

#[test]
fn standalone_reconfig_is_unimplemented() {
    let cfg = EngineConfig {
        reconfig_enabled: true,
        ..EngineConfig::default()
    };
    let (mut e, _) = member_with(cfg, vec![Id::new("super", "")], Mode::Leader);
    assert_eq!(
        prepared(&mut e, 1, add(4, -1)).0,
        ZkError::Unimplemented.code()
    );
}
