//! ZAB over real TCP on loopback: three members speaking ZooKeeper's election and learner
//! wire formats elect one leader, fail over when it dies, and take it back as a follower.
//! Each member runs in its own runtime, so stopping one closes all its sockets at once.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zabd::quorum::{Config, Sid, State};
use zabd::server::ensemble::{self, Host, Status};
use zabd::server::peers::PeerAddrs;

struct Member {
    rt: Option<tokio::runtime::Runtime>,
    status: Arc<Mutex<Status>>,
}

/// Starts a member on already-bound listeners (so no port is ever handed out twice).
fn start(
    id: Sid,
    addrs: &HashMap<Sid, PeerAddrs>,
    dir: &std::path::Path,
    listeners: (std::net::TcpListener, std::net::TcpListener),
) -> Member {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let status = Arc::new(Mutex::new(Status {
        state: State::Looking,
        leader: None,
        epoch: 0,
    }));
    let host = Host {
        cfg: Config {
            id,
            voters: vec![1, 2, 3],
            observers: vec![],
            init_limit: 20,
            sync_limit: 10,
            finalize_ticks: 2,
            snap_threshold: 1000,
            log_window: 1000,
        },
        peers: addrs.clone(),
        data_dir: dir.join(format!("m{id}")),
        tick: Duration::from_millis(100),
        status: status.clone(),
    };
    let (e, q) = listeners;
    e.set_nonblocking(true).unwrap();
    q.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let election = tokio::net::TcpListener::from_std(e).expect("election port");
        let quorum = tokio::net::TcpListener::from_std(q).expect("quorum port");
        ensemble::run(host, election, quorum)
            .await
            .expect("host runs");
    });
    Member {
        rt: Some(rt),
        status,
    }
}

fn listen(addr: SocketAddr) -> std::net::TcpListener {
    std::net::TcpListener::bind(addr).unwrap()
}

/// The leader all live members agree on, if they do.
fn agreed(members: &HashMap<Sid, Member>) -> Option<(Sid, u32)> {
    let live: Vec<(Sid, Status)> = members
        .iter()
        .filter(|(_, m)| m.rt.is_some())
        .map(|(id, m)| (*id, m.status.lock().unwrap().clone()))
        .collect();
    let leaders: Vec<&(Sid, Status)> = live
        .iter()
        .filter(|(id, s)| s.state == State::Leading && s.leader == Some(*id))
        .collect();
    if leaders.len() != 1 {
        return None;
    }
    let (l, ls) = leaders[0];
    let all = live
        .iter()
        .all(|(id, s)| id == l || (s.state == State::Following && s.leader == Some(*l)));
    all.then_some((*l, ls.epoch))
}

#[test]
fn three_members_elect_fail_over_and_rejoin_over_tcp() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("ZABD_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut bound: HashMap<Sid, (std::net::TcpListener, std::net::TcpListener)> =
        (1..=3).map(|i| (i, (listen(any), listen(any)))).collect();
    let addrs: HashMap<Sid, PeerAddrs> = bound
        .iter()
        .map(|(i, (e, q))| {
            let a = PeerAddrs {
                election: e.local_addr().unwrap(),
                quorum: q.local_addr().unwrap(),
            };
            (*i, a)
        })
        .collect();
    let mut members: HashMap<Sid, Member> = (1..=3)
        .map(|i| (i, start(i, &addrs, dir.path(), bound.remove(&i).unwrap())))
        .collect();
    let mut first = None;
    let mut polls = 0;
    common::wait_until("one leader, two followers", || {
        first = agreed(&members);
        polls += 1;
        if polls % 100 == 0 {
            for (id, m) in &members {
                eprintln!("member {id}: {:?}", m.status.lock().unwrap());
            }
        }
        first.is_some()
    });
    let (leader, epoch) = first.unwrap();
    assert!(epoch >= 1);
    assert_eq!(
        ensemble::read_epoch(&dir.path().join(format!("m{leader}")), "currentEpoch").unwrap(),
        epoch
    );

    // Kill the leader: the other two elect a new one in a later epoch.
    // Waits until the runtime's tasks (and so its sockets) are gone.
    members
        .get_mut(&leader)
        .unwrap()
        .rt
        .take()
        .unwrap()
        .shutdown_timeout(Duration::from_secs(10));
    let mut second = None;
    common::wait_until("a new leader among the survivors", || {
        second = agreed(&members);
        second.is_some_and(|(l, e)| l != leader && e > epoch)
    });
    let (new_leader, new_epoch) = second.unwrap();

    // The old leader comes back and follows.
    let again = (
        listen(addrs[&leader].election),
        listen(addrs[&leader].quorum),
    );
    members.insert(leader, start(leader, &addrs, dir.path(), again));
    common::wait_until("the old leader rejoins as a follower", || {
        agreed(&members).is_some_and(|(l, e)| l == new_leader && e == new_epoch)
            && members[&leader].status.lock().unwrap().state == State::Following
    });
    for m in members.values_mut() {
        if let Some(rt) = m.rt.take() {
            rt.shutdown_background();
        }
    }
}
