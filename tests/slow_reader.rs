//! A client that never reads its replies (issue 11): once more than
//! `max_queued_bytes_per_connection` wait for it, the server closes it with one log line
//! naming it, the engine's connection goes (the `mntr` count of live connections drops
//! back), and everyone else is served as before. Before, the close was queued behind the
//! frames nobody read, the writer stayed blocked, and the connection leaked.

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
