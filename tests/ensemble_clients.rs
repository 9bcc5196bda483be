//! Clients on a replicated ensemble of real `zabd` processes: writes through any member
//! are seen by every member, sessions and ephemerals move with their client, watches fire,
//! and members that were down catch up.

mod common;

use common::ensemble::Ensemble;
use common::wait_for;
use zookeeper_client::{Acls, CreateMode, EventType};

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_member_are_seen_everywhere() {
    let e = Ensemble::start(3, "");
    let leader = tokio::task::block_in_place(|| e.wait_settled());
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let a = e.client(followers[0]).await;
    let b = e.client(followers[1]).await;
    let l = e.client(leader).await;

    let (s1, _) = a.create("/a", b"one", &persistent()).await.unwrap();
    let (s2, _) = l.create("/b", b"two", &persistent()).await.unwrap();
    assert!(s2.czxid > s1.czxid);
    // A client reads its own writes on its member; sync makes another member catch up.
    assert_eq!(a.get_data("/a").await.unwrap().0, b"one");
    b.sync("/").await.unwrap();
    let (data, stat) = b.get_data("/a").await.unwrap();
    assert_eq!((data.as_slice(), stat), (&b"one"[..], s1));
    assert_eq!(b.get_data("/b").await.unwrap().0, b"two");

    // Versioned updates from two members: exactly one wins.
    let r1 = a.set_data("/a", b"x", Some(0)).await;
    let r2 = b.set_data("/a", b"y", Some(0)).await;
    assert!(r1.is_ok() != r2.is_ok(), "{r1:?} {r2:?}");
    assert_eq!(
        r2.err().or(r1.err()),
        Some(zookeeper_client::Error::BadVersion)
    );

    // A watch set on one member fires for a write through another.
    let (_, _, w) = b.get_and_watch_data("/b").await.unwrap();
    l.set_data("/b", b"changed", None).await.unwrap();
    let ev = w.changed().await;
    assert_eq!((ev.event_type, ev.path.as_str()), (EventType::NodeDataChanged, "/b"));

    // Ephemerals belong to a session wherever it is connected; closing it removes them
    // on every member.
    a.create("/eph", b"", &ephemeral()).await.unwrap();
    l.sync("/").await.unwrap();
    let owner = l.check_stat("/eph").await.unwrap().unwrap().ephemeral_owner;
    assert_eq!(owner, a.session_id().0);
    drop(a);
    wait_for("the ephemeral to go with its session", || async {
        l.check_stat("/eph").await.unwrap().is_none()
    })
    .await;
    b.sync("/").await.unwrap();
    assert!(b.check_stat("/eph").await.unwrap().is_none());

    // Every member holds the same data at the same zxid.
    let zxids: Vec<i64> = (0..3).map(|i| e.role(i).unwrap().1).collect();
    assert!(zxids.iter().all(|z| *z == zxids[0]), "{zxids:?}");
}
