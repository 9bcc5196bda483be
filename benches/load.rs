//! A first throughput figure: N sessions × K requests in flight against a fresh zabd on
//! loopback, for creates and for getData. Bounded in time and count.
//! Run: `cargo bench --bench load` (optionally `-- SESSIONS INFLIGHT SECONDS`); with
//! `ZABD_MEMBERS=3` against a fresh 3-member ensemble (sessions spread over the members), or
//! point it at any server or ensemble with `ZK_ADDR=host:port[,host:port...]`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zookeeper_client::{Acls, Client, CreateMode};

/// Upper bound on requests per phase, whatever the speed.
const MAX_OPS_PER_PHASE: u64 = 5_000_000;

/// One more session, on its own thread and runtime (so the load's tasks do not delay it),
/// doing one getData at a time: the longest it waits is the longest pause a request saw.
fn probe(addr: String, end: Instant) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let c = Client::connect(&addr).await.expect("probe connects");
            let mut worst = Duration::ZERO;
            while Instant::now() < end {
                let t = Instant::now();
                let _ = c.get_data("/bench/k0").await;
                worst = worst.max(t.elapsed());
            }
            worst
        })
    })
}

async fn phase(
    name: &str,
    addr: &str,
    clients: &[Client],
    inflight: usize,
    secs: u64,
    op: fn(Client, u64) -> tokio::task::JoinHandle<bool>,
) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        for k in 0..inflight {
            let (c, done, errors) = (c.clone(), done.clone(), errors.clone());
            let worker = (ci * inflight + k) as u64;
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < end && done.load(Ordering::Relaxed) < MAX_OPS_PER_PHASE {
                    let ok = match op(c.clone(), (worker << 32) | i).await {
                        Ok(ok) => ok,
                        Err(e) => {
                            eprintln!("load task failed: {e}");
                            false
                        }
                    };
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            }));
        }
    }
    let prober = probe(addr.to_string(), end);
    for t in tasks {
        let _ = t.await;
    }
    let worst = prober.join().unwrap_or_default();
    let n = done.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:>8}: {n} ops in {secs:.1} s = {:.0} ops/s ({} errors); longest single getData wait {:.1} ms",
        n as f64 / secs,
        errors.load(Ordering::Relaxed),
        worst.as_secs_f64() * 1000.0
    );
}

/// Distinguishes this run's node names from an earlier run's on the same server.
static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

fn create(c: Client, i: u64) -> tokio::task::JoinHandle<bool> {
    let run = *RUN.get_or_init(|| std::process::id() as u64);
    tokio::spawn(async move {
        let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
        let path = format!("/bench/n{run:x}-{i:x}");
        c.create(&path, &[0u8; 100], &opts).await.is_ok()
    })
}

fn get_data(c: Client, i: u64) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move { c.get_data(&format!("/bench/k{}", i % 1000)).await.is_ok() })
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sessions = *args.first().unwrap_or(&32) as usize;
    let inflight = *args.get(1).unwrap_or(&16) as usize;
    let secs = *args.get(2).unwrap_or(&10);
    let members: usize = std::env::var("ZABD_MEMBERS")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1);
    let dir = std::env::temp_dir().join(format!("zabd-bench-{}", std::process::id()));
    let (children, addr) = match std::env::var("ZK_ADDR") {
        Ok(a) => (Vec::new(), a),
        Err(_) if members > 1 => common::start_ensemble(&dir, members, "warn"),
        Err(_) => {
            let (c, a) = common::start_zabd(&dir.join("data"), "warn");
            (vec![c], a)
        }
    };
    println!(
        "load: {sessions} sessions x {inflight} in flight, {secs} s per phase, against {addr}"
    );
    let mut clients = Vec::new();
    for _ in 0..sessions {
        clients.push(Client::connect(&addr).await.expect("connect"));
    }
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let _ = clients[0].create("/bench", b"", &opts).await;
    for k in 0..1000 {
        let _ = clients[0]
            .create(&format!("/bench/k{k}"), &[1u8; 100], &opts)
            .await;
    }
    phase("create", &addr, &clients, inflight, secs, create).await;
    phase("getData", &addr, &clients, inflight, secs, get_data).await;
    drop(clients);
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
