//! Durability figures for docs/performance.md (bounded in count and time):
//! - the fdatasync floor of this machine's disk;
//! - synced create throughput with 1, 8 and 64 sessions (one request in flight each);
//! - on a tree of NODES znodes of 100 bytes: snapshot size and serialization time, restart
//!   time to the first served request (median of RESTARTS), and RSS once loaded.
//!
//! Run: `cargo bench --bench durability` (optionally `-- NODES`).

mod common;

use std::io::Write;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zookeeper_client::{Acls, Client, CreateMode};

const RESTARTS: usize = 3;
const THROUGHPUT_SECS: u64 = 5;

fn start(dir: &std::path::Path) -> (Child, String, Instant) {
    let t = Instant::now();
    let (child, addr) = common::start_zabd(dir, "info");
    (child, addr, t)
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

fn rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn fsync_floor(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    let mut lat = Vec::new();
    for _ in 0..1000 {
        let t = Instant::now();
        f.write_all(&[0x42u8; 128]).unwrap();
        f.sync_data().unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "fdatasync of 128 bytes (1000 times): p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        us(lat[500]),
        us(lat[990]),
        us(lat[999])
    );
    let _ = std::fs::remove_file(path);
}

async fn throughput(addr: &str, sessions: usize) {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(THROUGHPUT_SECS);
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let c = Client::connect(addr).await.unwrap();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
            let mut i = 0u64;
            while Instant::now() < end {
                if c.create(&format!("/t/{sessions}-{s}-{i}"), &[0u8; 100], &opts)
                    .await
                    .is_ok()
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "synced creates, {sessions:>2} sessions x 1 in flight: {:.0}/s",
        n as f64 / THROUGHPUT_SECS as f64
    );
}

async fn populate(addr: &str, nodes: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let c = Client::connect(addr).await.unwrap();
        for _ in 0..16 {
            let (c, next) = (c.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= nodes {
                        return;
                    }
                    c.create(&format!("/big/n{i}"), &[1u8; 100], &opts)
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn first_served(addr: &str, since: Instant) -> Duration {
    loop {
        if let Ok(c) = Client::connect(addr).await {
            if c.get_data("/big/n0").await.is_ok() {
                return since.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn log_figures(dir: &std::path::Path) {
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
    let strip = |l: &str| {
        let mut out = String::new();
        let mut esc = false;
        for ch in l.chars() {
            match (esc, ch) {
                (_, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    if let Some(l) = log
        .lines()
        .rev()
        .find(|l| l.contains("snapshot serialized"))
    {
        println!(
            "last snapshot serialized: {}",
            strip(l).split("snapshot serialized").nth(1).unwrap_or("")
        );
    }
    if let Some(l) = log.lines().rev().find(|l| l.contains("snapshot written")) {
        println!(
            "last snapshot written:   {}",
            strip(l).split("snapshot written").nth(1).unwrap_or("")
        );
    }
}

#[tokio::main]
async fn main() {
    let nodes: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let base = std::env::temp_dir().join(format!("zabd-durability-{}", std::process::id()));
    fsync_floor(&base);

    let dir = base.join("throughput");
    let (child, addr, _) = start(&dir);
    let c = Client::connect(&addr).await.unwrap();
    c.create(
        "/t",
        b"",
        &CreateMode::Persistent.with_acls(Acls::anyone_all()),
    )
    .await
    .unwrap();
    for s in [1, 8, 64] {
        throughput(&addr, s).await;
    }
    stop(child);

    let dir = base.join("big");
    let (child, addr, _) = start(&dir);
    let c = Client::connect(&addr).await.unwrap();
    c.create(
        "/big",
        b"",
        &CreateMode::Persistent.with_acls(Acls::anyone_all()),
    )
    .await
    .unwrap();
    let t = Instant::now();
    populate(&addr, nodes).await;
    println!(
        "populated {nodes} znodes of 100 bytes in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Wait for the snapshot in progress (if any) to be written.
    tokio::time::sleep(Duration::from_secs(5)).await;
    log_figures(&dir);
    println!("RSS after populating: {:.0} MiB", rss_mb(child.id()));
    stop(child);
    let snaps: Vec<_> = std::fs::read_dir(dir.join("version-2"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot."))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    println!(
        "largest snapshot file: {:.1} MiB",
        *snaps.iter().max().unwrap_or(&0) as f64 / 1048576.0
    );
    let mut times = Vec::new();
    for _ in 0..RESTARTS {
        let (child, addr, since) = start(&dir);
        let d = first_served(&addr, since).await;
        println!(
            "restart: first request served after {:.2} s; RSS {:.0} MiB",
            d.as_secs_f64(),
            rss_mb(child.id())
        );
        times.push(d);
        stop(child);
    }
    times.sort();
    println!(
        "restart to first served request, median of {RESTARTS}: {:.2} s",
        times[RESTARTS / 2].as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&base);
}
