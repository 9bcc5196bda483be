//! `zabd bench` against a real zabd: the report and its JSON hold what the server did.

mod common;

use common::{connect, Zabd};
use std::process::Command;

fn bench(z: &Zabd, args: &[&str]) -> (serde_json::Value, u32) {
    let json = z
        .dir
        .path()
        .join(format!("report-{}.json", args.join("_").replace('/', "")));
    let child = Command::new(env!("CARGO_BIN_EXE_zabd"))
        .args([
            "bench",
            "--servers",
            &z.addr,
            "--quiet",
            "--warmup",
            "0.2",
            "--duration",
            "1",
        ])
        .args([
            "--sessions",
            "2",
            "--inflight",
            "4",
            "--keys",
            "20",
            "--json",
        ])
        .arg(&json)
        .args(args)
        .spawn()
        .expect("zabd bench runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "zabd bench {args:?} failed");
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (report, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_what_the_server_did() {
    let z = Zabd::start();
    let (r, pid) = tokio::task::block_in_place(|| bench(&z, &["--mix", "create"]));
    let ops = r["ops"].as_u64().unwrap();
    assert!(ops > 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["mix"], "create");
    let l = &r["latency_us"];
    let (p50, p99, max) = (
        l["p50"].as_u64().unwrap(),
        l["p99"].as_u64().unwrap(),
        l["max"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99 && p99 <= max, "{r}");
    // Every measured create is on the server (warm-up ones too, so at least as many).
    let c = connect(&z).await;
    let made = c
        .list_children(&format!("/zabd-bench-{pid:x}/n"))
        .await
        .unwrap()
        .len() as u64;
    assert!(made >= ops, "{made} nodes for {ops} creates");

    let (r, _) = tokio::task::block_in_place(|| bench(&z, &["--mix", "read90"]));
    assert_eq!(r["mix"], "get=90,set=10");
    assert!(r["ops"].as_u64().unwrap() > 0, "{r}");

    let (r, _) = tokio::task::block_in_place(|| bench(&z, &["--watchers", "10"]));
    assert_eq!(r["mix"], "watch-fanout-10");
    assert!(r["ops"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
}
