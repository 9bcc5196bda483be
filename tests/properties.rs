//! Property tests: no input crashes the decoders, and random operation sequences keep the
//! data tree's invariants (prep + apply, as the engine runs them).

use bytes::Bytes;
use proptest::prelude::*;
use zabd::jute::records::{ConnectRequest, Stat};
use zabd::jute::{Reader, Record};
use zabd::prep::{Prep, Requester};
use zabd::proto::request::{decode, CreateRequest, Request};
use zabd::tree::{acl_cache::open_acl, DataTree};
use zabd::txn::{Txn, TxnHeader};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let b = Bytes::from(data);
        let _ = zabd::proto::frame::check(&b, 1 << 20);
        let _ = ConnectRequest::from_bytes(b.clone());
        let _ = decode(b.clone());
        for op in [-11, -10, -1, 1, 2, 5, 7, 13, 14, 15, 19, 21] {
            let _ = Txn::read(op, &mut Reader::new(b.clone()));
        }
    }

    #[test]
    fn request_frames_with_any_body_never_panic(
        op in -20i32..120,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut f = vec![0, 0, 0, 1];
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&body);
        let _ = decode(Bytes::from(f));
    }

    #[test]
    fn stat_round_trips(v in proptest::array::uniform11(any::<i32>())) {
        let s = Stat {
            czxid: v[0] as i64, mzxid: v[1] as i64, ctime: v[2] as i64, mtime: v[3] as i64,
            version: v[4], cversion: v[5], aversion: v[6], ephemeral_owner: v[7] as i64,
            data_length: v[8], num_children: v[9], pzxid: v[10] as i64,
        };
        prop_assert_eq!(Stat::from_bytes(s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn random_operations_keep_tree_invariants(
        ops in proptest::collection::vec((0u8..6, 0u8..4, 0u8..4, 0u8..3), 1..120),
        batch_len in 1usize..6,
    ) {
        let mut tree = DataTree::new(true);
        let mut prep = Prep::new();
        let mut batch = Vec::new();
        let mut history: Vec<String> = Vec::new();
        let names = ["a", "b", "c", "d"];
        for (i, (kind, x, y, session)) in ops.into_iter().enumerate() {
            let path = if y == 0 { format!("/{}", names[x as usize]) } else { format!("/{}/{}", names[x as usize], names[y as usize]) };
            let session = session as i64 + 1;
            let req = match kind {
                0 => Request::Create(CreateRequest { op: 15, path: path.clone(), data: Some(Bytes::from_static(b"v")), acl: open_acl(), flags: 0, ttl: -1 }),
                1 => Request::Create(CreateRequest { op: 15, path: path.clone(), data: None, acl: open_acl(), flags: (x % 4) as i32, ttl: -1 }),
                2 => Request::Delete { path: path.clone(), version: -1 },
                3 => Request::SetData { path: path.clone(), data: Some(Bytes::from_static(b"w")), version: -1 },
                4 => Request::Multi(vec![
                    Request::Create(CreateRequest { op: 1, path: path.clone(), data: None, acl: open_acl(), flags: 0, ttl: -1 }),
                    Request::Delete { path: format!("/{}", names[y as usize]), version: -1 },
                ]),
                _ => Request::CloseSession,
            };
            let zxid = i as i64 + 1;
            let who = Requester { session, ids: &[] };
            let txn = prep.prepare(&tree, &who, &req, zxid, 1000).unwrap_or_else(|e| Txn::Error { err: e.code() });
            let hdr = TxnHeader { client_id: session, cxid: 0, zxid, time: 1000, op: txn.op() };
            history.push(format!("{zxid}: {req:?} -> {txn:?}"));
            batch.push((hdr, txn, prep.digest(&tree)));
            // Apply in batches of up to `batch_len`: later txns are prepared against earlier
            // ones still outstanding, and the digest prep projected must match the tree's.
            if batch.len() < batch_len {
                continue;
            }
            for (hdr, txn, digest) in batch.drain(..) {
                tree.apply(&hdr, &txn, &mut Vec::new());
                prep.applied(hdr.zxid);
                if tree.digest != digest {
                    for h in &history { eprintln!("{h}"); }
                }
                prop_assert_eq!(tree.digest, digest, "digest after zxid {} txn {:?}", hdr.zxid, txn);
            }
            prop_assert_eq!(prep.outstanding(), 0);
            // Every node but the root has its parent, which lists it; stats agree with children.
            for name in names {
                let p = format!("/{name}");
                if let Some(n) = tree.get(&p) {
                    prop_assert!(tree.child_names("/").unwrap().contains(name));
                    let st = tree.stat(n);
                    let kids = tree.children_sorted(&p);
                    prop_assert_eq!(st.num_children as usize, kids.len());
                    prop_assert!(st.cversion >= 0);
                    for c in &kids {
                        let child = format!("{}/{}", p, c);
                        prop_assert!(tree.get(&child).is_some());
                    }
                }
                for s in 1..=3 {
                    for e in tree.ephemerals_of(s) {
                        prop_assert_eq!(tree.get(&e).unwrap().stat.ephemeral_owner, s);
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// A fuzzy snapshot (written in slices while transactions keep applying) plus the
    /// transactions after its start zxid rebuilds exactly the live tree; and applying them
    /// with the digests the live tree had (as a member applies committed proposals after
    /// recovering) reports no mismatch: none is checked inside the snapshot's window, and
    /// every one after it matches.
    #[test]
    fn fuzzy_snapshots_converge_after_replay(
        before in proptest::collection::vec((0u8..6, 0u8..4, 0u8..4, 0u8..3), 0..60),
        during in proptest::collection::vec((0u8..6, 0u8..4, 0u8..4, 0u8..3), 1..60),
        slice in 1usize..4,
    ) {
        use zabd::persist::snapshot::{decode, Builder};
        let mut tree = DataTree::new(false);
        let mut prep = Prep::new();
        let mut zxid = 0i64;
        let mut log: Vec<(TxnHeader, Txn, u64)> = Vec::new();
        let mut run = |tree: &mut DataTree, prep: &mut Prep, op: (u8, u8, u8, u8), log: &mut Vec<(TxnHeader, Txn, u64)>| {
            zxid += 1;
            let req = random_request(op);
            let session = op.3 as i64 + 1;
            let who = Requester { session, ids: &[] };
            let txn = prep.prepare(tree, &who, &req, zxid, 1000 + zxid).unwrap_or_else(|e| Txn::Error { err: e.code() });
            let hdr = TxnHeader { client_id: session, cxid: 0, zxid, time: 1000 + zxid, op: txn.op() };
            tree.apply(&hdr, &txn, &mut Vec::new());
            prep.applied(zxid);
            log.push((hdr, txn, tree.digest));
        };
        for op in before {
            run(&mut tree, &mut prep, op, &mut log);
        }
        let start = tree.last_zxid;
        let mut b = Builder::new(&Vec::new(), start);
        let mut ops = during.into_iter();
        loop {
            let done = b.step(&tree, slice);
            match ops.next() {
                Some(op) => run(&mut tree, &mut prep, op, &mut log),
                None if done => break,
                None => {}
            }
        }
        let bytes = b.finish(&tree).to_vec();
        let loaded = decode(bytes.into(), false).unwrap();
        let mut back = loaded.tree;
        back.last_zxid = start;
        back.fuzzy_until = loaded.digest.filter(|(end, _)| *end > start);
        for (hdr, txn, digest) in log.iter().filter(|(h, _, _)| h.zxid > start) {
            back.apply(hdr, txn, &mut Vec::new());
            let expected = back.digest_to_check(hdr.zxid, Some(*digest));
            prop_assert!(expected.is_none_or(|d| d == back.digest), "digest mismatch at {}", hdr.zxid);
        }
        prop_assert_eq!(back.digest, tree.digest);
        prop_assert_eq!(back.node_count(), tree.node_count());
        for name in ["a", "b", "c", "d"] {
            for p in [format!("/{name}"), format!("/{name}/a"), format!("/{name}/b")] {
                let (x, y) = (tree.get(&p), back.get(&p));
                prop_assert_eq!(x.is_some(), y.is_some(), "{}", p);
                if let (Some(x), Some(y)) = (x, y) {
                    prop_assert_eq!(x.stat, y.stat, "{}", p);
                    prop_assert_eq!(&x.data, &y.data);
                    prop_assert_eq!(x.child_count, y.child_count);
                    prop_assert_eq!(tree.child_names(&p), back.child_names(&p));
                }
            }
        }
    }
}

fn random_request((kind, x, y, _): (u8, u8, u8, u8)) -> Request {
    let names = ["a", "b", "c", "d"];
    let path = if y == 0 {
        format!("/{}", names[x as usize])
    } else {
        format!("/{}/{}", names[x as usize], names[y as usize])
    };
    let create = |path: String, flags: i32| {
        Request::Create(CreateRequest {
            op: 15,
            path,
            data: Some(Bytes::from_static(b"v")),
            acl: open_acl(),
            flags,
            ttl: -1,
        })
    };
    match kind {
        0 => create(path, 0),
        1 => create(path, (x % 4) as i32),
        2 => Request::Delete { path, version: -1 },
        3 => Request::SetData {
            path,
            data: Some(Bytes::from(vec![x; y as usize])),
            version: -1,
        },
        4 => Request::Multi(vec![
            create(path.clone(), 0),
            Request::Delete {
                path: format!("/{}", names[y as usize]),
                version: -1,
            },
        ]),
        _ => Request::CloseSession,
    }
}
