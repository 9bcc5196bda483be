//! A client that never reads its replies (issue 11): once more than
//! `max_queued_bytes_per_connection` wait for it, the server closes it with one log line
//! naming it, the engine's connection goes (the `mntr` count of live connections drops
//! back), and everyone else is served as before. Before, the close was queued behind the
//! frames nobody read, the writer stayed blocked, and the connection leaked.
//!
//! A client that reads, only slowly, is slowed instead: the server stops reading its
//! requests while more than a few MiB of its replies wait, so it never reaches the bound.

mod common;

use common::raw;
use common::Zabd;
use std::io::Write;

fn alive(z: &Zabd) -> usize {
    z.four("mntr")
        .lines()
        .find_map(|l| l.strip_prefix("zk_num_alive_connections\t"))
        .and_then(|n| n.trim().parse().ok())
        .expect("zk_num_alive_connections in mntr")
}

/// Opens a session on a raw socket; returns it after the ConnectResponse.
fn session(addr: &str) -> std::net::TcpStream {
    let mut s = raw::open(addr);
    raw::send_frame(&mut s, &raw::connect_req(0, vec![0; 16], Some(false), 0));
    raw::read_frame(&mut s).expect("ConnectResponse");
    s
}

#[test]
fn a_client_that_never_reads_is_closed_and_released() {
    let z = Zabd::start_with("max_queued_bytes_per_connection = 4194304");
    // A node of 512 KiB: each getData reply carries it.
    let mut w = session(&z.addr);
    let data = vec![7u8; 512 << 10];
    let create = raw::request(1, 1, |w| {
        w.string("/big").buffer(Some(&data));
        w.i32(1).i32(31).string("world").string("anyone");
        w.i32(0);
    });
    raw::send_frame(&mut w, &create);
    let reply = raw::read_frame(&mut w).expect("create reply");
    assert_eq!(raw::reply_header(&reply).err, 0);
    drop(w);
    common::wait_until("the writer's connection is gone", || alive(&z) == 0);

    // 100 getData of it (50 MiB of replies), and not one read.
    let mut lazy = session(&z.addr);
    let mut batch = Vec::new();
    for xid in 1..=100 {
        batch.extend(raw::frame(&raw::get_data_req(xid, "/big")));
    }
    lazy.write_all(&batch).unwrap();
    common::wait_until("the server closes the client that does not read", || {
        z.log().contains("client is not reading its replies")
    });
    common::wait_until("its connection is released", || alive(&z) == 0);

    // Everyone else is served.
    let mut other = session(&z.addr);
    raw::send_frame(&mut other, &raw::get_data_req(1, "/big"));
    let reply = raw::read_frame(&mut other).expect("getData reply");
    assert_eq!(raw::reply_header(&reply).err, 0);
    drop(lazy);
}

/// Creates `/big` with `len` bytes of data over a session of its own.
fn create_big(addr: &str, len: usize) {
    let mut w = session(addr);
    let create = raw::request(1, 1, |w| {
        w.string("/big").buffer(Some(&vec![7u8; len]));
        w.i32(1).i32(31).string("world").string("anyone");
        w.i32(0);
    });
    raw::send_frame(&mut w, &create);
    let reply = raw::read_frame(&mut w).expect("create reply");
    assert_eq!(raw::reply_header(&reply).err, 0);
}

#[test]
fn a_client_that_reads_slowly_is_slowed_not_closed() {
    // Default bounds: 64 MiB of replies per connection.
    let z = Zabd::start();
    create_big(&z.addr, 512 << 10);
    // 300 getData of a 512 KiB node (150 MiB of replies), sent every 5 ms, while the
    // replies are read one every 20 ms. Were every request read as it came, the replies
    // would pass 64 MiB and the client would be closed; with the server reading no further
    // while its replies wait, every one of them comes back.
    let n = 300;
    let mut s = session(&z.addr);
    let mut requests = s.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        for xid in 1..=n {
            requests
                .write_all(&raw::frame(&raw::get_data_req(xid, "/big")))
                .expect("the server takes the request, in time");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    });
    for xid in 1..=n {
        let reply = raw::read_frame(&mut s).unwrap_or_else(|| {
            panic!(
                "reply {xid} of {n}: the connection was closed; server log:\n{}",
                z.log()
            )
        });
        let h = raw::reply_header(&reply);
        assert_eq!((h.xid, h.err), (xid, 0));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    sender.join().expect("sender");
    assert!(
        !z.log().contains("not reading its replies"),
        "a client that reads was closed"
    );
}
