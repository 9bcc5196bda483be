//! Raw-socket tests: the handshake's exact forms, malformed / truncated / oversized frames,
//! unknown opcodes, four-letter words, refusals, per-address limits and backpressure.
//! After every abuse the server must keep serving other clients.

mod common;

use common::raw::{connect_req, open, read_frame, reply_header, request, send_frame};
use common::{wait_until, Zabd};
use std::io::{Read, Write};
use std::net::TcpStream;
use zabd::jute::records::{ConnectRequest, ConnectResponse, ReplyHeader};
use zabd::jute::{Reader, Record};

fn raw(z: &Zabd) -> TcpStream {
    open(&z.addr)
}

/// Opens a session; returns the stream and the response.
fn session(z: &Zabd) -> (TcpStream, ConnectResponse) {
    let mut s = raw(z);
    send_frame(&mut s, &connect_req(0, vec![0; 16], Some(false), 0));
    let f = read_frame(&mut s).expect("connect response");
    (s, ConnectResponse::from_bytes(f.into()).unwrap())
}

/// A create (opcode 1) of a persistent node with an open ACL.
fn create_with(xid: i32, path: &str, data: &[u8]) -> Vec<u8> {
    request(xid, 1, |w| {
        w.string(path).buffer(Some(data));
        zabd::jute::records::write_acls(w, &zabd::tree::acl_cache::open_acl());
        w.i32(0);
    })
}

fn create_req(xid: i32, path: &str) -> Vec<u8> {
    create_with(xid, path, b"x")
}

fn is_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

/// Another client still gets served.
fn still_serving(z: &Zabd) {
    let (mut s, r) = session(z);
    assert!(r.timeout > 0);
    send_frame(&mut s, &request(1, 11, |_| {}));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).xid, -2);
}

#[test]
fn handshake_answers_in_the_form_it_was_asked() {
    let z = Zabd::start();
    let mut s = raw(&z);
    send_frame(&mut s, &connect_req(0, vec![0; 16], None, 0));
    let f = read_frame(&mut s).unwrap();
    assert_eq!(f.len(), 36);
    let mut s = raw(&z);
    send_frame(&mut s, &connect_req(0, vec![0; 16], Some(false), 0));
    let f = read_frame(&mut s).unwrap();
    assert_eq!(f.len(), 37);
    let r = ConnectResponse::from_bytes(f.into()).unwrap();
    assert_eq!(r.timeout, 30000);
    assert_eq!(r.passwd.len(), 16);
    assert_eq!(r.passwd[..], zabd::session::password(r.session_id)[..]);
}

#[test]
fn timeouts_are_negotiated_into_bounds() {
    let z = Zabd::start_with("tick_time = 1000");
    for (asked, got) in [(100, 2000), (5000, 5000), (999_999, 20000)] {
        let mut s = raw(&z);
        let mut req =
            ConnectRequest::from_bytes(connect_req(0, vec![0; 16], None, 0).into()).unwrap();
        req.timeout = asked;
        send_frame(&mut s, &req.to_bytes());
        let r = ConnectResponse::from_bytes(read_frame(&mut s).unwrap().into()).unwrap();
        assert_eq!(r.timeout, got);
    }
}

#[test]
fn wrong_password_or_unknown_session_gets_expired_answer() {
    let z = Zabd::start();
    let (_keep, r) = session(&z);
    for (id, pw) in [(r.session_id, vec![1u8; 16]), (12345, vec![0u8; 16])] {
        let mut s = raw(&z);
        send_frame(&mut s, &connect_req(id, pw, None, 0));
        let resp = ConnectResponse::from_bytes(read_frame(&mut s).unwrap().into()).unwrap();
        assert_eq!((resp.timeout, resp.session_id), (0, 0));
        assert!(is_closed(&mut s));
    }
    // The right password resumes the same session.
    let mut s = raw(&z);
    send_frame(
        &mut s,
        &connect_req(r.session_id, r.passwd.to_vec(), None, 0),
    );
    let resp = ConnectResponse::from_bytes(read_frame(&mut s).unwrap().into()).unwrap();
    assert_eq!(resp.session_id, r.session_id);
    assert!(resp.timeout > 0);
}

#[test]
fn a_client_ahead_of_the_server_is_refused() {
    let z = Zabd::start();
    let mut s = raw(&z);
    send_frame(&mut s, &connect_req(0, vec![0; 16], None, 0x7_0000_0000));
    assert!(read_frame(&mut s).is_none());
    still_serving(&z);
}

#[test]
fn unknown_opcode_gets_unimplemented_and_the_connection_stays() {
    let z = Zabd::start();
    let (mut s, _) = session(&z);
    send_frame(&mut s, &request(7, 999, |_| {}));
    let h = reply_header(&read_frame(&mut s).unwrap());
    assert_eq!((h.xid, h.err), (7, -6));
    send_frame(
        &mut s,
        &request(8, 16, |w| {
            w.ustring(None).ustring(None).ustring(None).i64(-1);
        }),
    );
    assert_eq!(
        reply_header(&read_frame(&mut s).unwrap()).err,
        -123,
        "reconfig is disabled"
    );
    send_frame(
        &mut s,
        &request(9, 102, |w| {
            w.buffer(Some(b"tok"));
        }),
    );
    let f = read_frame(&mut s).unwrap();
    assert_eq!(
        reply_header(&f).err,
        0,
        "sasl answers as ZooKeeper without SASL"
    );
    send_frame(&mut s, &request(-2, 11, |_| {}));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).xid, -2);
}

#[test]
fn replies_keep_request_order_under_pipelining() {
    let z = Zabd::start();
    let (mut s, _) = session(&z);
    let mut batch = Vec::new();
    for i in 0..200 {
        let p = format!("/p{}", i / 2);
        let f = if i % 2 == 0 {
            request(i, 1, |w| {
                w.string(&p).buffer(Some(b"x"));
                zabd::jute::records::write_acls(w, &zabd::tree::acl_cache::open_acl());
                w.i32(0);
            })
        } else {
            request(i, 4, |w| {
                w.string(&p).bool(false);
            })
        };
        batch.extend_from_slice(&(f.len() as i32).to_be_bytes());
        batch.extend_from_slice(&f);
    }
    s.write_all(&batch).unwrap();
    let mut last_zxid = 0;
    for i in 0..200 {
        let h = reply_header(&read_frame(&mut s).unwrap());
        assert_eq!((h.xid, h.err), (i, 0), "reply {i}");
        assert!(h.zxid >= last_zxid);
        last_zxid = h.zxid;
    }
}

#[test]
fn malformed_frames_close_only_that_connection() {
    let z = Zabd::start();
    // Oversized length prefix.
    let (mut s, _) = session(&z);
    s.write_all(&(2_000_000i32).to_be_bytes()).unwrap();
    assert!(is_closed(&mut s));
    // Negative length.
    let (mut s, _) = session(&z);
    s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(is_closed(&mut s));
    // A getData whose path length points past the end of the frame.
    let (mut s, _) = session(&z);
    send_frame(
        &mut s,
        &request(1, 4, |w| {
            w.i32(1000).raw(b"/abc");
        }),
    );
    assert!(is_closed(&mut s));
    // A multi that mixes a read into writes.
    let (mut s, _) = session(&z);
    send_frame(
        &mut s,
        &request(1, 14, |w| {
            zabd::jute::records::MultiHeader {
                op: 4,
                done: false,
                err: -1,
            }
            .write(w);
            w.string("/a").bool(false);
            zabd::jute::records::MultiHeader::END.write(w);
        }),
    );
    assert!(is_closed(&mut s));
    // Garbage instead of a ConnectRequest.
    let mut s = raw(&z);
    send_frame(&mut s, b"\x01\x02");
    assert!(is_closed(&mut s));
    // A frame cut short, then the client goes away.
    let (mut s, _) = session(&z);
    s.write_all(&[0, 0, 0, 50, 1, 2, 3]).unwrap();
    drop(s);
    still_serving(&z);
    let log = z.log();
    assert!(
        log.contains("exceeds the limit"),
        "log names the reason: {log}"
    );
    assert!(log.contains("malformed request"), "{log}");
}

#[test]
fn a_value_of_about_one_megabyte_is_accepted() {
    let z = Zabd::start();
    let (mut s, _) = session(&z);
    let big = vec![7u8; 1_000_000];
    send_frame(&mut s, &create_with(1, "/big", &big));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    send_frame(
        &mut s,
        &request(2, 4, |w| {
            w.string("/big").bool(false);
        }),
    );
    let f = read_frame(&mut s).unwrap();
    assert_eq!(reply_header(&f).err, 0);
    assert!(f.len() > 1_000_000);
}

#[test]
fn four_letter_words() {
    let z = Zabd::start_with("four_letter_words = [\"ruok\", \"srvr\", \"envi\", \"mntr\", \"stat\", \"conf\", \"isro\"]");
    assert_eq!(z.four("ruok"), "imok");
    assert_eq!(z.four("isro"), "rw");
    assert!(z.four("srvr").contains("Mode: standalone"));
    assert!(z.four("stat").contains("Clients:"));
    assert!(z.four("envi").contains("zookeeper.version=3.9"));
    assert!(z.four("mntr").contains("zk_znode_count\t5"));
    assert!(z.four("conf").contains("tickTime=2000"));
    assert_eq!(
        z.four("wchs"),
        "wchs is not executed because it is not in the whitelist.\n"
    );
    still_serving(&z);
}

#[test]
fn watch_session_and_directory_words() {
    let z = Zabd::start();
    let (mut s, conn) = session(&z);
    let ephemeral = request(1, 1, |w| {
        w.string("/e").buffer(Some(b"x"));
        zabd::jute::records::write_acls(w, &zabd::tree::acl_cache::open_acl());
        w.i32(1);
    });
    send_frame(&mut s, &ephemeral);
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    send_frame(
        &mut s,
        &request(2, 3, |w| {
            w.string("/e").bool(true);
        }),
    );
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    let sid = format!("0x{:x}", conn.session_id);
    // ZooKeeper's formats: a blank line after the lists, session expiry sets in `dump`.
    assert_eq!(z.four("wchc"), format!("{sid}\n\t/e\n\n"));
    assert_eq!(z.four("wchp"), format!("/e\n\t{sid}\n\n"));
    assert_eq!(
        z.four("wchs"),
        "1 connections watching 1 paths\nTotal watches:1\n"
    );
    let dump = z.four("dump");
    assert!(
        dump.contains("Session Sets (1)/(1):\n1 expire at "),
        "{dump}"
    );
    assert!(dump.contains(" UTC 20"), "{dump}");
    assert!(dump.contains(&format!(":\n\t{sid}\n")), "{dump}");
    assert!(
        dump.contains(&format!("Sessions with Ephemerals (1):\n{sid}:\n\t/e\n")),
        "{dump}"
    );
    let dirs = z.four("dirs");
    let size = |key: &str| -> u64 {
        let line = dirs.lines().find(|l| l.starts_with(key)).expect(key);
        line[key.len()..].trim().parse().expect("a byte count")
    };
    assert!(size("datadir_size:") > 0, "the initial snapshot: {dirs}");
    assert!(size("logdir_size:") > 0, "the log with the create: {dirs}");
    let cons = z.four("cons");
    assert!(!cons.contains("recved=0,"), "{cons}");
    // The client's real port, and ZooKeeper's per-connection fields.
    assert!(
        cons.contains(&format!(
            "/127.0.0.1:{}[1](queued=0,",
            s.local_addr().unwrap().port()
        )),
        "{cons}"
    );
    for field in [
        ",sid=0x",
        ",lop=EXIS,",
        ",est=",
        ",to=",
        ",lcxid=0x2,",
        ",lzxid=0x",
        ",lresp=",
        ",llat=",
        ",minlat=",
        ",avglat=",
        ",maxlat=",
    ] {
        assert!(cons.contains(field), "{field} in {cons}");
    }
    assert_eq!(z.four("crst"), "Connection stats reset.\n");
    assert!(z.four("cons").contains("recved=0,sent=0"));
    still_serving(&z);
}

/// With a limit of two connections: a third is refused (the log says `why`), and one is
/// accepted again once a slot frees up.
fn third_connection_refused_until_one_closes(z: &Zabd, why: &str) {
    let (a, _) = session(z);
    let (_b, _) = session(z);
    let mut c = raw(z);
    send_frame(&mut c, &connect_req(0, vec![0; 16], None, 0));
    assert!(read_frame(&mut c).is_none(), "third connection refused");
    assert!(z.log().contains(why), "the log names the limit: {why}");
    drop(a);
    wait_until("a slot frees up", || {
        let mut d = raw(z);
        send_frame(&mut d, &connect_req(0, vec![0; 16], None, 0));
        read_frame(&mut d).is_some()
    });
}

#[test]
fn max_client_cnxns_limits_one_address() {
    let z = Zabd::start_with("max_client_cnxns = 2");
    third_connection_refused_until_one_closes(&z, "too many connections from this address");
}

#[test]
fn max_cnxns_limits_all_connections() {
    let z = Zabd::start_with("max_cnxns = 2");
    third_connection_refused_until_one_closes(&z, "Too many connections, max allowed is 2");
}

#[test]
fn a_client_that_never_reads_is_disconnected() {
    let z = Zabd::start_with("max_queued_bytes_per_connection = 2000000");
    let (mut w, _) = session(&z);
    let value = vec![1u8; 100_000];
    send_frame(&mut w, &create_with(1, "/v", &value));
    read_frame(&mut w).unwrap();
    // A second client asks for the value over and over and never reads a reply.
    let (mut hog, _) = session(&z);
    hog.set_write_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let get = request(2, 4, |wr| {
        wr.string("/v").bool(false);
    });
    let mut frame = (get.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&get);
    for _ in 0..2000 {
        if hog.write_all(&frame).is_err() {
            break;
        }
    }
    wait_until("the hog is disconnected", || {
        z.four("srvr").contains("Connections: 1\n")
    });
    assert!(z.log().contains("not reading its replies"));
    still_serving(&z);
}

/// (type, path) of a notification frame.
fn event_of(f: &[u8]) -> (i32, String) {
    let mut r = Reader::new(f.to_vec().into());
    let h = ReplyHeader::read(&mut r).unwrap();
    assert_eq!(h.xid, -1, "a notification");
    let ev = zabd::jute::records::WatcherEvent::read(&mut r).unwrap();
    (ev.kind, ev.path)
}

#[test]
fn set_watches_fires_what_changed_after_rel_zxid_and_rearms_the_rest() {
    let z = Zabd::start();
    let (mut s, _) = session(&z);
    send_frame(&mut s, &create_req(1, "/sw"));
    let created = reply_header(&read_frame(&mut s).unwrap()).zxid;
    send_frame(&mut s, &create_req(2, "/same"));
    let rel = reply_header(&read_frame(&mut s).unwrap()).zxid;
    send_frame(
        &mut s,
        &request(3, 5, |w| {
            w.string("/sw").buffer(Some(b"y")).i32(-1);
        }),
    );
    read_frame(&mut s).unwrap();
    assert!(created < rel);

    // A reconnecting client's watches, as of `rel`.
    let (mut c, _) = session(&z);
    send_frame(
        &mut c,
        &request(-8, 101, |w| {
            w.i64(rel)
                .strings(&["/sw", "/same"])
                .strings(&["/new"])
                .strings(&["/gone"]);
        }),
    );
    let frames = [read_frame(&mut c).unwrap(), read_frame(&mut c).unwrap()];
    let last = read_frame(&mut c).unwrap();
    assert_eq!(
        reply_header(&last).xid,
        -8,
        "events come before the setWatches reply"
    );
    let mut got: Vec<(i32, String)> = frames.iter().map(|f| event_of(f)).collect();
    got.sort();
    assert_eq!(got, vec![(2, "/gone".to_string()), (3, "/sw".to_string())]);
    // The re-armed exist watch on /new and data watch on /same fire later.
    send_frame(&mut s, &create_req(4, "/new"));
    read_frame(&mut s).unwrap();
    assert_eq!(
        event_of(&read_frame(&mut c).unwrap()),
        (1, "/new".to_string())
    );
    send_frame(
        &mut s,
        &request(5, 5, |w| {
            w.string("/same").buffer(Some(b"z")).i32(-1);
        }),
    );
    read_frame(&mut s).unwrap();
    assert_eq!(
        event_of(&read_frame(&mut c).unwrap()),
        (3, "/same".to_string())
    );
}

#[test]
fn check_and_remove_watches_answer_no_watcher_when_nothing_matches() {
    let z = Zabd::start();
    let (mut s, _) = session(&z);
    send_frame(&mut s, &create_req(1, "/cw"));
    read_frame(&mut s).unwrap();
    let check = |xid, kind| {
        request(xid, 17, move |w| {
            w.string("/cw").i32(kind);
        })
    };
    send_frame(&mut s, &check(2, 2));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, -121);
    send_frame(
        &mut s,
        &request(3, 4, |w| {
            w.string("/cw").bool(true);
        }),
    );
    read_frame(&mut s).unwrap();
    send_frame(&mut s, &check(4, 2));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    send_frame(&mut s, &check(5, 1));
    assert_eq!(
        reply_header(&read_frame(&mut s).unwrap()).err,
        -121,
        "no child watch"
    );
    send_frame(
        &mut s,
        &request(6, 18, |w| {
            w.string("/cw").i32(3);
        }),
    );
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    send_frame(&mut s, &check(7, 3));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, -121);
}

#[test]
fn a_connection_without_a_handshake_is_closed() {
    let z = Zabd::start();
    let mut idle = raw(&z);
    // Closed by the server after its 10 s handshake timeout (the read blocks until then).
    assert!(is_closed(&mut idle));
    assert!(z.log().contains("no handshake within"));
    still_serving(&z);
}

#[test]
fn set_watches2_rearms_persistent_and_recursive_watches() {
    let z = Zabd::start();
    let (mut s, _) = session(&z);
    send_frame(&mut s, &create_req(1, "/pw"));
    let rel = reply_header(&read_frame(&mut s).unwrap()).zxid;
    let (mut c, _) = session(&z);
    send_frame(
        &mut c,
        &request(-8, 105, |w| {
            let none: [&str; 0] = [];
            w.i64(rel).strings(&none).strings(&none).strings(&none);
            w.strings(&["/pw"]).strings(&["/pw"]);
        }),
    );
    assert_eq!(reply_header(&read_frame(&mut c).unwrap()).xid, -8);
    for (xid, data) in [(2, b"a"), (3, b"b")] {
        send_frame(
            &mut s,
            &request(xid, 5, |w| {
                w.string("/pw").buffer(Some(data)).i32(-1);
            }),
        );
        read_frame(&mut s).unwrap();
        // One event per change although both kinds are armed; neither is used up.
        assert_eq!(
            event_of(&read_frame(&mut c).unwrap()),
            (3, "/pw".to_string())
        );
    }
    send_frame(
        &mut c,
        &request(4, 17, |w| {
            w.string("/pw").i32(4);
        }),
    );
    assert_eq!(
        reply_header(&read_frame(&mut c).unwrap()).err,
        0,
        "persistent watch still there"
    );
}

#[test]
fn delete_container_from_a_client_only_removes_containers() {
    let z = Zabd::start();
    let (mut s, _) = session(&z);
    send_frame(&mut s, &create_req(1, "/plain"));
    read_frame(&mut s).unwrap();
    send_frame(
        &mut s,
        &request(2, 19, |w| {
            w.string("/box").buffer(None);
            zabd::jute::records::write_acls(w, &zabd::tree::acl_cache::open_acl());
            w.i32(4);
        }),
    );
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    let delete_container = |xid, path: &'static str| {
        request(xid, 20, move |w| {
            w.string(path);
        })
    };
    send_frame(&mut s, &delete_container(3, "/plain"));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, -103);
    send_frame(&mut s, &delete_container(4, "/box"));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    send_frame(&mut s, &delete_container(5, "/box"));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, -101);
}

#[test]
fn auth_and_requests_pipelined_behind_the_handshake_run_on_the_new_session() {
    let z = Zabd::start();
    common::raw::check_pipelined_auth(&z.addr, &z.addr, "/creator-only");
    still_serving(&z);
}

fn mntr_value(z: &Zabd, key: &str) -> i64 {
    let text = z.four("mntr");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in mntr: {text}"))
}

fn get_data_req(xid: i32, path: &str, watch: bool) -> Vec<u8> {
    request(xid, 4, |w| {
        w.string(path).bool(watch);
    })
}

#[test]
fn a_connections_watches_go_with_it_and_its_session_lives_on() {
    let z = Zabd::start();
    let (mut s, r) = session(&z);
    send_frame(&mut s, &create_req(1, "/cw"));
    read_frame(&mut s).unwrap();
    send_frame(&mut s, &get_data_req(2, "/cw", true));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    assert_eq!(mntr_value(&z, "zk_watch_count"), 1);
    drop(s);
    // ZooKeeper's watcher is the connection: the watch goes, the session stays.
    wait_until("the closed connection's watch is dropped", || {
        mntr_value(&z, "zk_watch_count") == 0
    });
    let mut back = raw(&z);
    send_frame(
        &mut back,
        &connect_req(r.session_id, r.passwd.to_vec(), Some(false), 0),
    );
    let again = ConnectResponse::from_bytes(read_frame(&mut back).unwrap().into()).unwrap();
    assert_eq!(again.session_id, r.session_id);
    assert!(again.timeout > 0, "the session outlived its connection");
}

#[test]
fn watches_per_session_are_bounded_with_quota_exceeded() {
    let z = Zabd::start_with("max_watches_per_session = 3\n");
    let (mut s, _) = session(&z);
    for (i, p) in ["/w0", "/w1", "/w2", "/w3"].iter().enumerate() {
        send_frame(&mut s, &create_req(i as i32 + 1, p));
        read_frame(&mut s).unwrap();
    }
    for (i, p) in ["/w0", "/w1", "/w2"].iter().enumerate() {
        send_frame(&mut s, &get_data_req(10 + i as i32, p, true));
        assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    }
    // A fourth is refused, and the read with it, so the client never thinks it holds it.
    send_frame(&mut s, &get_data_req(20, "/w3", true));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, -125);
    // One it already holds, or a read without a watch, is fine.
    send_frame(&mut s, &get_data_req(21, "/w1", true));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    send_frame(&mut s, &get_data_req(22, "/w3", false));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    assert_eq!(mntr_value(&z, "zk_watch_count"), 3);
    assert!(
        z.log().contains("max_watches_per_session"),
        "the refusal is logged"
    );
    // Once one fires, there is room again.
    send_frame(
        &mut s,
        &request(30, 5, |w| {
            w.string("/w0").buffer(Some(b"y")).i32(-1);
        }),
    );
    let mut saw_event = false;
    for _ in 0..2 {
        let f = read_frame(&mut s).unwrap();
        saw_event |= reply_header(&f).xid == -1;
    }
    assert!(saw_event);
    send_frame(&mut s, &get_data_req(31, "/w3", true));
    assert_eq!(reply_header(&read_frame(&mut s).unwrap()).err, 0);
    still_serving(&z);
}

#[test]
fn global_outstanding_limit_throttles_reading_and_drops_nothing() {
    const CONNS: usize = 6;
    const EACH: i32 = 40;
    let z = Zabd::start_with("global_outstanding_limit = 4\ntest_log_sync_delay_ms = 20\n");
    let clients: Vec<_> = (0..CONNS)
        .map(|c| {
            let (mut s, _) = session(&z);
            std::thread::spawn(move || {
                let mut batch = Vec::new();
                for i in 0..EACH {
                    let f = create_req(i + 1, &format!("/g{c}-{i}"));
                    batch.extend_from_slice(&(f.len() as i32).to_be_bytes());
                    batch.extend_from_slice(&f);
                }
                s.write_all(&batch).unwrap();
                for i in 0..EACH {
                    let h = reply_header(&read_frame(&mut s).expect("every request answered"));
                    assert_eq!((h.xid, h.err), (i + 1, 0));
                }
            })
        })
        .collect();
    // Requests read and unanswered never pass the limit plus one per connection (a
    // connection with nothing outstanding may always send one).
    let mut most = 0;
    while !clients.iter().all(|c| c.is_finished()) {
        most = most.max(mntr_value(&z, "zk_outstanding_requests"));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    for c in clients {
        c.join().expect("a client saw every answer");
    }
    assert!(most <= 4 + CONNS as i64, "{most} requests outstanding");
    assert!(
        most > 1,
        "the load never built up ({most}): the test shows nothing"
    );
    still_serving(&z);
}
