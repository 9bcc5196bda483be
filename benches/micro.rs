//! Criterion micro-benchmarks: the request codec and the data tree, the two hot paths of
//! every request. Run: `cargo bench --bench micro`.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use zabd::proto::{op, request};
use zabd::tree::{acl_cache, DataTree};
use zabd::txn::{CreateKind, Txn, TxnHeader};

/// A getData request frame payload (header + record), as a client sends it.
fn get_data_payload(path: &str) -> Bytes {
    let mut v = Vec::new();
    v.extend_from_slice(&7i32.to_be_bytes());
    v.extend_from_slice(&op::GET_DATA.to_be_bytes());
    v.extend_from_slice(&(path.len() as i32).to_be_bytes());
    v.extend_from_slice(path.as_bytes());
    v.push(0);
    Bytes::from(v)
}

fn create(path: &str, zxid: i64) -> (TxnHeader, Txn) {
    let hdr = TxnHeader {
        client_id: 1,
        cxid: 1,
        zxid,
        time: zxid,
        op: op::CREATE,
    };
    let txn = Txn::Create {
        op: op::CREATE,
        path: path.to_string(),
        data: Some(Bytes::from_static(&[7u8; 100])),
        acl: acl_cache::open_acl(),
        kind: CreateKind::Persistent,
        parent_cversion: -1,
    };
    (hdr, txn)
}

fn codec(c: &mut Criterion) {
    let payload = get_data_payload("/app/checkpoints/job-0001/counter");
    c.bench_function("decode getData request", |b| {
        b.iter(|| request::decode(black_box(payload.clone())).unwrap())
    });
    let mut t = DataTree::new(false);
    let (hdr, txn) = create("/n", 1);
    t.apply(&hdr, &txn, &mut Vec::new());
    let stat = t.get("/n").unwrap().stat.to_stat(100, 0);
    c.bench_function("encode getData reply (100 B + Stat)", |b| {
        b.iter(|| {
            zabd::proto::response::reply(7, 1, 0, |w| {
                w.buffer(Some(&[7u8; 100]));
                zabd::jute::Record::write(black_box(&stat), w);
            })
        })
    });
}

fn tree(c: &mut Criterion) {
    let mut t = DataTree::new(false);
    for i in 0..100_000i64 {
        let (hdr, txn) = create(&format!("/k{i}"), i + 1);
        t.apply(&hdr, &txn, &mut Vec::new());
    }
    c.bench_function("tree lookup among 100k nodes", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % 100_000;
            black_box(t.get(&format!("/k{i}")).is_some())
        })
    });
    c.bench_function("snapshot walk of 100k nodes (256-node slices)", |b| {
        b.iter(|| {
            let mut s = zabd::persist::snapshot::Builder::new(&Vec::new(), 0);
            while !s.step(&t, 256) {}
            black_box(s.visited)
        })
    });
    let mut z = 200_000i64;
    c.bench_function("tree apply create (100 B) with 100k nodes", |b| {
        b.iter(|| {
            z += 1;
            let (hdr, txn) = create(&format!("/n{z}"), z);
            t.apply(&hdr, &txn, &mut Vec::new())
        })
    });
}

criterion_group!(benches, codec, tree);
criterion_main!(benches);
