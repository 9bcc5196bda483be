//! Side by side with Apache ZooKeeper 3.8 (Debian's): what the benches that compare the two
//! share. The classpath of Debian's ZooKeeper, a running server or ensemble under test, one
//! `zabd bench` run against it, alternating rounds with medians, and the report table.
//!
//! Owns no process of its own beyond those a [`Server`] holds (stopped on drop, by PID).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const JARS: [&str; 12] = [
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
    "netty-handler.jar",
    "netty-transport.jar",
    "netty-common.jar",
    "netty-buffer.jar",
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-unix-common.jar",
    "commons-cli.jar",
];

pub fn classpath() -> String {
    JARS.iter()
        .map(|j| format!("/usr/share/java/{j}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One running server (or ensemble) under test.
pub struct Server {
    pub name: &'static str,
    pub children: Vec<Child>,
    pub addr: String,
    pub restart: Box<dyn Fn() -> (Vec<Child>, String)>,
}

impl Server {
    pub fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }

    pub fn rss_mib(&self) -> f64 {
        self.children
            .iter()
            .map(|c| rss_kib(c.id()) as f64 / 1024.0)
            .sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn wait_ruok(addr: &str) {
    use std::io::{Read, Write};
    let end = Instant::now() + Duration::from_secs(120);
    while Instant::now() < end {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.write_all(b"ruok");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out == "imok" && super::mode(addr) != "looking" {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{addr} did not start");
}

/// Runs `zabd bench` with `args` against `s`; returns its JSON report.
pub fn bench(s: &Server, args: &[String]) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!("versus-{}.json", std::process::id()));
    let st = Command::new(super::zabd_bin())
        .args(["bench", "--quiet", "--servers", &s.addr, "--json"])
        .arg(&json)
        .args(args)
        .status()
        .expect("zabd bench runs");
    assert!(
        st.success(),
        "zabd bench {args:?} against {} failed",
        s.name
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub struct Row {
    pub figure: String,
    pub unit: &'static str,
    pub zabd: f64,
    pub zk: f64,
    /// Larger is better (throughput) or smaller (latency, memory, time).
    pub higher_better: bool,
}

/// Runs one load against both, alternating, and records median throughput and p99.
pub fn versus(
    rows: &mut Vec<Row>,
    label: &str,
    a: &Server,
    b: &Server,
    args: &[String],
    rounds: u64,
) -> (f64, f64) {
    let (mut ta, mut tb, mut pa, mut pb) = (vec![], vec![], vec![], vec![]);
    let (mut ma50, mut mb50) = (vec![], vec![]);
    for r in 0..rounds {
        let order: [(&Server, bool); 2] = if r % 2 == 0 {
            [(a, true), (b, false)]
        } else {
            [(b, false), (a, true)]
        };
        for (s, is_a) in order {
            // Each load starts with nothing dirty in the page cache, so neither server's
            // fsyncs wait on write-back the other one (or an earlier load) left behind.
            let _ = Command::new("sync").status();
            let rep = bench(s, args);
            let t = rep["ops_per_sec"].as_f64().unwrap();
            let p = rep["latency_us"]["p99"].as_f64().unwrap();
            let p50 = rep["latency_us"]["p50"].as_f64().unwrap();
            eprintln!(
                "  {label} {}: {t:.0} ops/s, p50 {p50} us, p99 {p} us",
                s.name
            );
            if is_a {
                ta.push(t);
                pa.push(p);
                ma50.push(p50);
            } else {
                tb.push(t);
                pb.push(p);
                mb50.push(p50);
            }
        }
    }
    let (ma, mb) = (median(ta), median(tb));
    rows.push(Row {
        figure: format!("{label}: throughput"),
        unit: "ops/s",
        zabd: ma,
        zk: mb,
        higher_better: true,
    });
    rows.push(Row {
        figure: format!("{label}: p99 latency"),
        unit: "us",
        zabd: median(pa),
        zk: median(pb),
        higher_better: false,
    });
    if label.contains("1 session x 1") {
        rows.push(Row {
            figure: format!("{label}: p50 latency"),
            unit: "us",
            zabd: median(ma50),
            zk: median(mb50),
            higher_better: false,
        });
    }
    (ma, mb)
}

pub fn load_args(mix: &str, sessions: usize, inflight: usize, secs: u64) -> Vec<String> {
    vec![
        "--mix".into(),
        mix.into(),
        "--sessions".into(),
        sessions.to_string(),
        "--inflight".into(),
        inflight.to_string(),
        "--duration".into(),
        secs.to_string(),
        "--warmup".into(),
        "1".into(),
    ]
}

pub fn table(rows: &[Row]) -> String {
    let mut s =
        String::from("| figure | zabd | ZooKeeper 3.8 | zabd / ZooKeeper |\n|---|---|---|---|\n");
    for r in rows {
        let ratio = if r.zk > 0.0 { r.zabd / r.zk } else { f64::NAN };
        let better = if r.higher_better { "higher" } else { "lower" };
        s.push_str(&format!(
            "| {} ({}, {better} is better) | {:.0} | {:.0} | {ratio:.2} |\n",
            r.figure, r.unit, r.zabd, r.zk
        ));
    }
    s
}

/// A free loopback port (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// fdatasync after a 128 B write into a preallocated file under `dir`, `n` times, the way
/// a preallocated transaction log is written (both servers preallocate theirs, so a sync
/// carries no change of file size): the floor under any synced write's latency. Returns
/// the samples in us, sorted.
pub fn fdatasync_samples(dir: &Path, n: usize) -> Vec<f64> {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("fdatasync-floor");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&vec![0u8; n * 128]).unwrap();
    f.sync_all().unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let start = Instant::now();
            f.write_all(&[7u8; 128]).unwrap();
            f.sync_data().unwrap();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t
}

/// ZooKeeper ensemble member `i`'s files under `dir`: `m<i+1>/myid`, and `m<i+1>.cfg` with
/// the settings both servers get (sync on, tickTime 2000, no connection limit) and the
/// `server.N` lines `servers`; returns the config's path and a fresh log file.
pub fn zk_member_files(dir: &Path, i: usize, servers: &str) -> (std::path::PathBuf, std::fs::File) {
    let d = dir.join(format!("m{}", i + 1));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("myid"), format!("{}", i + 1)).unwrap();
    let cfg = d.with_extension("cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nmaxClientCnxns=0\n\
             4lw.commands.whitelist=*\nadmin.enableServer=false\nforceSync=yes\n{servers}",
            d.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(d.with_extension("log")).unwrap();
    (cfg, log)
}
