//! The leader's longest member-task pause while it sends a SNAP, for docs/performance.md
//! (issue 11): a 3-member ensemble holding NODES znodes; one follower is killed, its data
//! directory emptied and restarted, so the leader must send it the whole state. Meanwhile
//! a probe client on the leader writes in a loop. Reported: the leader's
//! `zabd_core_stall_max_ms` over the resync (the longest single pass of its member loop,
//! reset by `srst` just before), the probe's slowest and 99th-percentile write, and the
//! time until the follower serves at the leader's zxid.
//!
//! Run: `cargo bench --bench snap_pause` (optionally `-- NODES`); `ZABD_BIN=path` measures
//! another build of zabd with the same procedure. Bounded: the fill is NODES creates, every
//! wait has a deadline.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn word(addr: &str, w: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(w.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn key(text: &str, k: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (a, b) = l.split_once(['\t', ':'])?;
        (a.trim() == k).then(|| b.trim().to_string())
    })
}

/// Writes in a loop on `addr` until `stop`; the latencies.
fn probe(addr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let c = zookeeper_client::Client::connect(&addr)
                .await
                .expect("probe connects");
            let opts = zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all());
            let _ = c.create("/snap-probe", b"", &opts).await;
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) && lat.len() < 10_000_000 {
                let t = Instant::now();
                c.set_data("/snap-probe", b"x", None)
                    .await
                    .expect("probe write");
                lat.push(t.elapsed());
            }
            lat
        })
    })
}

fn main() {
    let nodes: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let work = tempfile::tempdir().expect("temp dir");
    let (mut children, connect) = common::start_ensemble(work.path(), 3, "info");
    let addrs: Vec<String> = connect.split(',').map(str::to_string).collect();
    let leader = (0..3)
        .find(|i| common::mode(&addrs[*i]) == "leader")
        .expect("a leader");
    let f = (leader + 1) % 3;
    let t = Instant::now();
    common::fill(&addrs[leader], nodes);
    println!(
        "filled {nodes} znodes in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let _ = children[f].kill();
    let _ = children[f].wait();
    let fdir = work.path().join(format!("m{}", f + 1));
    std::fs::remove_dir_all(&fdir).expect("empty the follower's data directory");
    let stop = Arc::new(AtomicBool::new(false));
    let p = probe(addrs[leader].clone(), stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    word(&addrs[leader], "srst");
    let t = Instant::now();
    let (child, faddr) = common::restart(&fdir, "info");
    children[f] = child;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let zxid = |t: &str| {
            key(t, "Zxid").and_then(|z| i64::from_str_radix(z.trim_start_matches("0x"), 16).ok())
        };
        let lz = zxid(&word(&addrs[leader], "srvr"));
        let fs = word(&faddr, "srvr");
        if key(&fs, "Mode").as_deref() == Some("follower") && zxid(&fs) >= lz {
            break;
        }
        assert!(Instant::now() < deadline, "the follower did not resync");
        std::thread::sleep(Duration::from_millis(50));
    }
    let synced = t.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let stall = key(&word(&addrs[leader], "mntr"), "zabd_core_stall_max_ms").unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    let mut lat = p.join().expect("probe");
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p99 = lat.get(lat.len() * 99 / 100).copied().unwrap_or_default();
    let max = lat.last().copied().unwrap_or_default();
    println!(
        "SNAP of {nodes} znodes: follower serving at the leader's zxid after {:.1} s; \
         leader's longest member-loop pass {stall} ms; probe writes on the leader: {} \
         (p99 {:.1} ms, max {:.1} ms)",
        synced.as_secs_f64(),
        lat.len(),
        ms(p99),
        ms(max)
    );
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
