//! Bounds on the peer ports of a real 3-member ensemble (issue 11): what a stranger can
//! make a member hold there, and that the ensemble keeps working through it.
//! - an election message claiming 60 MiB is refused at once (ZooKeeper's limit is 512 KiB),
//!   not allocated and waited for;
//! - a quorum packet claiming 2 GiB, and random bytes, close the connection;
//! - a connection that never says who it is is closed after the handshake deadline;
//! - afterwards a follower killed and restarted rejoins, so both peer ports still work.

mod common;

use common::ensemble::Ensemble;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn open(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    s
}

/// Waits for the server to close `s` (end of stream or reset); Err if it is still open
/// when the read times out.
fn closed_by_server(mut s: TcpStream) -> Result<Duration, String> {
    let from = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(from.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("still open after {:?}", from.elapsed()))
            }
            Err(_) => return Ok(from.elapsed()),
        }
    }
}

/// ZooKeeper's election handshake, protocol V2, as peer `sid`.
fn hello(sid: i64) -> Vec<u8> {
    let addr = b"127.0.0.1:1";
    let mut h = Vec::new();
    h.extend_from_slice(&(-65535i64).to_be_bytes());
    h.extend_from_slice(&sid.to_be_bytes());
    h.extend_from_slice(&(addr.len() as i32).to_be_bytes());
    h.extend_from_slice(addr);
    h
}

#[test]
fn peer_ports_refuse_oversized_and_silent_connections_and_keep_working() {
    let mut e = Ensemble::start(3, "");
    let leader = e.wait_settled();
    let (_, election) = e.members[0].peer_ports;

    // As peer 99 (a larger id than member 1's, so member 1 keeps the connection, and no
    // real member's, so nothing replaces it), an election message claiming 60 MiB.
    let mut s = open(election);
    s.write_all(&hello(99)).unwrap();
    s.write_all(&(60i32 << 20).to_be_bytes()).unwrap();
    s.write_all(&[7u8; 1000]).unwrap();
    closed_by_server(s).expect("an oversized election message closes the connection");

    // A quorum packet claiming 2 GiB of data, then random bytes.
    let (quorum, _) = e.members[leader].peer_ports;
    let mut s = open(quorum);
    let mut p = Vec::new();
    p.extend_from_slice(&11i32.to_be_bytes()); // FOLLOWERINFO
    p.extend_from_slice(&0i64.to_be_bytes());
    p.extend_from_slice(&i32::MAX.to_be_bytes());
    p.extend_from_slice(&[0x5au8; 4096]);
    s.write_all(&p).unwrap();
    closed_by_server(s).expect("a 2 GiB quorum packet closes the connection");

    // Silent connections on both ports are closed after the handshake deadline (10 s).
    let silent = [open(quorum), open(election)];
    for s in silent {
        let took = closed_by_server(s).expect("a silent peer connection is closed");
        assert!(took < Duration::from_secs(40));
    }

    // Both ports still work: a follower killed and restarted rejoins.
    let f = (leader + 1) % 3;
    e.kill9(f);
    e.restart(f);
    common::wait_until("the restarted follower rejoins", || {
        e.settled().is_some() && e.role(f).is_some_and(|(r, _)| r == "follower")
    });
}

/// A follower that stops answering (SIGSTOP) is dropped by the leader once it has been
/// silent past `sync_limit` ticks, as ZooKeeper's LearnerHandler closes it, so the leader
/// stops queueing for it; once resumed it finds the same leader and syncs again, and the
/// leader keeps leading throughout.
#[test]
fn a_follower_silent_past_sync_limit_is_dropped_and_rejoins() {
    let e = Ensemble::start(3, "");
    let leader = e.wait_settled();
    let f = (leader + 1) % 3;
    common::signal_pause(e.pid(f).expect("running"), true);
    common::wait_until("the leader drops the stopped follower", || {
        e.log(leader).contains("silent past its limit")
    });
    common::signal_pause(e.pid(f).expect("running"), false);
    common::wait_until("the follower follows again", || {
        e.role(f).is_some_and(|(m, _)| m == "follower")
    });
    e.converged().expect("every member converges");
    common::wait_until("the same leader leads, the others follow", || {
        e.settled() == Some(leader)
    });
    assert_eq!(
        e.log(leader).matches("looking for a leader").count(),
        1,
        "the leader looked only at startup: it kept leading throughout"
    );
}
