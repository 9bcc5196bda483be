//! Watch notifications respect READ, as in ZooKeeper 3.8.4+/3.9.2+ (CVE-2024-23944): a
//! session is told of a change only if it may read the node the event is about (the parent,
//! for NodeChildrenChanged). One test per leak: persistent recursive watches, a watch set
//! before the node existed, and the events `setWatches` fires on a reconnect.

mod common;

use common::raw::{auth_req, connect_req, open, read_frame, reply_header, request, send_frame};
use common::Zabd;
use std::net::TcpStream;
use zabd::jute::records::{write_acls, Acl, Id, ReplyHeader, WatcherEvent};
use zabd::jute::{Reader, Record};

const NODE_CREATED: i32 = 1;
const NODE_DELETED: i32 = 2;
const NODE_DATA_CHANGED: i32 = 3;
const NODE_CHILDREN_CHANGED: i32 = 4;

fn session(z: &Zabd) -> TcpStream {
    let mut s = open(&z.addr);
    send_frame(&mut s, &connect_req(0, vec![0; 16], Some(false), 0));
    read_frame(&mut s).expect("connect response");
    s
}

/// A session authenticated as digest alice.
fn alice(z: &Zabd) -> TcpStream {
    let mut s = session(z);
    send_frame(&mut s, &auth_req("digest", b"alice:secret"));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    s
}

/// Sends a request and returns its reply's error code.
fn call(s: &mut TcpStream, req: &[u8]) -> i32 {
    send_frame(s, req);
    let h = reply_header(&read_frame(s).expect("a reply"));
    assert!(h.xid >= 0, "a reply, not an event");
    h.err
}

/// create(path) with alice-only ACL (`private`) or the open ACL.
fn create(xid: i32, path: &str, private: bool) -> Vec<u8> {
    let acl = if private {
        vec![Acl {
            perms: 31,
            id: Id::new("digest", &zabd::auth::digest_id("alice:secret")),
        }]
    } else {
        zabd::tree::acl_cache::open_acl()
    };
    request(xid, 1, |w| {
        w.string(path).buffer(Some(b"v"));
        write_acls(w, &acl);
        w.i32(0);
    })
}

fn set_data(xid: i32, path: &str) -> Vec<u8> {
    request(xid, 5, |w| {
        w.string(path).buffer(Some(b"w")).i32(-1);
    })
}

/// (type, path) of a notification, or None for a reply.
fn event(f: &[u8]) -> Option<(i32, String)> {
    let mut r = Reader::new(f.to_vec().into());
    let h = ReplyHeader::read(&mut r).unwrap();
    (h.xid == -1).then(|| {
        let e = WatcherEvent::read(&mut r).unwrap();
        (e.kind, e.path)
    })
}

fn next_event(s: &mut TcpStream) -> (i32, String) {
    event(&read_frame(s).expect("a notification")).expect("a notification, not a reply")
}

#[test]
fn a_recursive_watch_is_not_told_of_nodes_it_cannot_read() {
    let z = Zabd::start();
    let mut watcher = session(&z);
    // addWatch("/", PERSISTENT_RECURSIVE)
    let add = request(1, 106, |w| {
        w.string("/").i32(1);
    });
    assert_eq!(call(&mut watcher, &add), 0);
    let mut a = alice(&z);
    assert_eq!(call(&mut a, &create(1, "/secret", true)), 0);
    assert_eq!(call(&mut a, &set_data(2, "/secret")), 0);
    assert_eq!(call(&mut a, &create(3, "/secret/inner", true)), 0);
    assert_eq!(call(&mut a, &create(4, "/open", false)), 0);
    // Events arrive in order: the first one the watcher gets is the readable node's.
    assert_eq!(next_event(&mut watcher), (NODE_CREATED, "/open".into()));

    // Alice herself, watching the same way, hears of everything.
    let add = request(5, 106, |w| {
        w.string("/").i32(1);
    });
    assert_eq!(call(&mut a, &add), 0);
    let mut b = alice(&z);
    assert_eq!(call(&mut b, &set_data(1, "/secret")), 0);
    assert_eq!(next_event(&mut a), (NODE_DATA_CHANGED, "/secret".into()));
}

#[test]
fn a_watch_set_before_a_node_existed_is_not_told_of_it_if_unreadable() {
    let z = Zabd::start();
    let mut watcher = session(&z);
    for (xid, p) in [(1, "/hidden"), (2, "/shown")] {
        let exists = request(xid, 3, |w| {
            w.string(p).bool(true);
        });
        assert_eq!(call(&mut watcher, &exists), -101, "NoNode, watch set");
    }
    let mut a = alice(&z);
    assert_eq!(call(&mut a, &create(1, "/hidden", true)), 0);
    assert_eq!(call(&mut a, &create(2, "/shown", false)), 0);
    assert_eq!(next_event(&mut watcher), (NODE_CREATED, "/shown".into()));
}

#[test]
fn set_watches_fires_only_what_the_session_may_read() {
    let z = Zabd::start();
    let mut a = alice(&z);
    assert_eq!(call(&mut a, &create(1, "/p", true)), 0);
    assert_eq!(call(&mut a, &create(2, "/p/kid", true)), 0);
    assert_eq!(call(&mut a, &set_data(3, "/p")), 0);
    // A reconnecting client's watches as of zxid 0: /p changed (data and children) and
    // exists; /gone does not exist any more.
    let set_watches = request(-8, 101, |w| {
        w.i64(0)
            .strings(&["/p", "/gone"])
            .strings(&["/p/kid"])
            .strings(&["/p"]);
    });
    let mut stranger = session(&z);
    send_frame(&mut stranger, &set_watches);
    let first = read_frame(&mut stranger).unwrap();
    assert_eq!(
        event(&first),
        Some((NODE_DELETED, "/gone".into())),
        "only the deletion, which exists() tells anyone"
    );
    let last = read_frame(&mut stranger).unwrap();
    assert_eq!(
        (event(&last), reply_header(&last).xid),
        (None, -8),
        "nothing about /p or /p/kid before the setWatches reply"
    );

    // The owner, reconnecting the same way, is told everything.
    let mut owner = alice(&z);
    send_frame(&mut owner, &set_watches);
    let mut got: Vec<(i32, String)> = (0..4).map(|_| next_event(&mut owner)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (NODE_CREATED, "/p/kid".into()),
            (NODE_DELETED, "/gone".into()),
            (NODE_DATA_CHANGED, "/p".into()),
            (NODE_CHILDREN_CHANGED, "/p".into()),
        ]
    );
    assert_eq!(reply_header(&read_frame(&mut owner).unwrap()).xid, -8);
}
