//! Sessions (resume, close, expiry) and watches (one-shot, persistent, ordering) through
//! the `zookeeper-client` crate against the real binary.

mod common;

use common::{connect, wait_for, Zabd};
use std::time::Duration;
use zookeeper_client::{Acls, AddWatchMode, Client, CreateMode, EventType};

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

/// Fast ticks so sessions expire within a second or two.
const FAST: &str = "tick_time = 100";

async fn detached(z: &Zabd, timeout_ms: u64) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_millis(timeout_ms))
        .with_detached()
        .connect(&z.addr)
        .await
        .unwrap()
}

// `remove()` is deprecated in favour of Drop, but it is the call that sends removeWatches
// and reports the server's answer, which is what these tests check.
#[allow(deprecated)]
#[tokio::test]
async fn one_shot_watches_fire_once_with_type_and_path() {
    let z = Zabd::start();
    let a = connect(&z).await;
    let b = connect(&z).await;
    a.create("/w", b"0", &persistent()).await.unwrap();
    let (_, _, data_w) = a.get_and_watch_data("/w").await.unwrap();
    let (_, _, child_w) = a.get_and_watch_children("/w").await.unwrap();
    let (none, exist_w) = a.check_and_watch_stat("/w/new").await.unwrap();
    assert!(none.is_none());

    b.set_data("/w", b"1", None).await.unwrap();
    let e = data_w.changed().await;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDataChanged, "/w")
    );

    b.create("/w/new", b"", &persistent()).await.unwrap();
    let e = exist_w.changed().await;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeCreated, "/w/new")
    );
    let e = child_w.changed().await;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeChildrenChanged, "/w")
    );

    // Fired watches are gone: checkWatches-style removal finds nothing.
    let (_, _, w) = a.get_and_watch_data("/w").await.unwrap();
    w.remove().await.unwrap();
    let (_, _, w2) = a.get_and_watch_data("/w").await.unwrap();
    b.delete("/w/new", None).await.unwrap();
    b.delete("/w", None).await.unwrap();
    let e = w2.changed().await;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDeleted, "/w")
    );
}

#[tokio::test]
async fn watch_event_arrives_before_a_later_reply_that_sees_the_change() {
    let z = Zabd::start();
    let a = connect(&z).await;
    let b = connect(&z).await;
    a.create("/o", b"0", &persistent()).await.unwrap();
    for i in 1..=20u8 {
        let (_, _, w) = a.get_and_watch_data("/o").await.unwrap();
        b.set_data("/o", &[i], None).await.unwrap();
        // Read until a's read sees the change; the event must already be delivered then.
        loop {
            let (d, _) = a.get_data("/o").await.unwrap();
            if d == [i] {
                break;
            }
        }
        let e = tokio::time::timeout(Duration::ZERO, w.changed()).await;
        assert!(
            e.is_ok(),
            "event {i} had not arrived before the reply that saw the change"
        );
    }
}

#[allow(deprecated)]
#[tokio::test]
async fn persistent_recursive_watches_stay() {
    let z = Zabd::start();
    let a = connect(&z).await;
    let b = connect(&z).await;
    a.create("/r", b"", &persistent()).await.unwrap();
    let mut w = a
        .watch("/r", AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    b.create("/r/x", b"", &persistent()).await.unwrap();
    b.create("/r/x/y", b"", &persistent()).await.unwrap();
    b.set_data("/r/x/y", b"1", None).await.unwrap();
    b.delete("/r/x/y", None).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = w.changed().await;
        seen.push((e.event_type, e.path));
    }
    assert_eq!(
        seen,
        vec![
            (EventType::NodeCreated, "/r/x".to_string()),
            (EventType::NodeCreated, "/r/x/y".to_string()),
            (EventType::NodeDataChanged, "/r/x/y".to_string()),
            (EventType::NodeDeleted, "/r/x/y".to_string()),
        ]
    );
    w.remove().await.unwrap();
}

#[tokio::test]
async fn a_session_resumes_with_its_ephemerals() {
    let z = Zabd::start();
    let a = detached(&z, 10_000).await;
    let (s, _) = a.create("/eph", b"", &ephemeral()).await.unwrap();
    let info = a.session().clone();
    let id = a.session_id();
    drop(a);
    let b = Client::connector()
        .with_session(info)
        .with_session_timeout(Duration::from_secs(10))
        .connect(&z.addr)
        .await
        .unwrap();
    assert_eq!(b.session_id(), id);
    let (_, st) = b.get_data("/eph").await.unwrap();
    assert_eq!(st.ephemeral_owner, s.ephemeral_owner);
    assert_eq!(
        b.list_ephemerals("/").await.unwrap(),
        vec!["/eph".to_string()]
    );
}

#[tokio::test]
async fn close_session_deletes_ephemerals_at_once() {
    let z = Zabd::start();
    let a = connect(&z).await;
    let b = connect(&z).await;
    a.create("/gone", b"", &ephemeral()).await.unwrap();
    let (_, w) = b.check_and_watch_stat("/gone").await.unwrap();
    drop(a); // closes the session
    let e = w.changed().await;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDeleted, "/gone")
    );
    assert!(b.check_stat("/gone").await.unwrap().is_none());
}

#[tokio::test]
async fn an_idle_session_expires_and_takes_its_ephemerals() {
    let z = Zabd::start_with(FAST);
    let watcher = connect(&z).await;
    let a = detached(&z, 1000).await;
    a.create("/lease", b"", &ephemeral()).await.unwrap();
    let info = a.session().clone();
    let (_, w) = watcher.check_and_watch_stat("/lease").await.unwrap();
    drop(a); // no close, no pings
    let e = w.changed().await;
    assert_eq!(
        (e.event_type, e.path.as_str()),
        (EventType::NodeDeleted, "/lease")
    );
    // The expired session cannot be resumed.
    let r = Client::connector()
        .with_session(info)
        .connect(&z.addr)
        .await;
    assert!(
        matches!(r, Err(zookeeper_client::Error::SessionExpired)),
        "{r:?}"
    );
}

#[tokio::test]
async fn pings_keep_a_session_alive() {
    let z = Zabd::start_with(FAST);
    let a = Client::connector()
        .with_session_timeout(Duration::from_millis(600))
        .connect(&z.addr)
        .await
        .unwrap();
    a.create("/alive", b"", &ephemeral()).await.unwrap();
    let b = connect(&z).await;
    // Several timeouts pass while the client only pings.
    let start = std::time::Instant::now();
    wait_for("three session timeouts to pass", || async {
        start.elapsed() > Duration::from_millis(1800)
    })
    .await;
    assert!(b.check_stat("/alive").await.unwrap().is_some());
}
