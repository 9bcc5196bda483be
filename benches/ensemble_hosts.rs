//! Ensembles side by side with Apache ZooKeeper 3.8 on "hosts": each member in its own
//! network namespace with its own IP on a shared bridge (`common::hosts`), the load
//! generator in the root namespace. Where namespaces cannot be made (no CAP_NET_ADMIN) it
//! says so and runs on loopback.
//!
//! Run: `cargo bench --bench ensemble_hosts` as root (needs Debian's `zookeeper` package
//! and a JDK; `.ci/run` installs them). Per ensemble size in `HOSTS_MEMBERS` (default
//! "3,5"): zabd and ZooKeeper ensembles on the same hosts; ZooKeeper's JIT is warmed
//! until a round of creates stops improving by more than 3 % (at most `HOSTS_WARM_MAX`
//! rounds, default 8), zabd gets the same number of warm-up rounds; then each load runs
//! `HOSTS_ROUNDS` times (default 3) against one, then the other, alternating, and the
//! table shows medians. Loads: create, setData, getData and 90 % reads at 32 sessions x
//! 16 in flight, sessions spread round-robin over the members (`zabd bench --round-robin`;
//! with one session, it sits on the first member); setData and exists at
//! 1 x 1. Also the floor of a synced write here: fdatasync on the data disk plus one
//! TCP round trip between namespaces. Then zabd's observers: 3 voters against 3 voters +
//! 2 observers, getData and create throughput.
//!
//! Knobs: `HOSTS_SECONDS` (each load's measured seconds, default 5), `HOSTS_DELAY_US`
//! (one-way netem delay per veth end where the kernel has netem, default 0),
//! `HOSTS_PIN` (CPUs per member for taskset, e.g. "0,1,1"; default unpinned),
//! `HOSTS_LOOPBACK=1` (skip namespaces). Results: `target/versus/report-hosts.md`.

mod common;

use common::hosts::Hosts;
use common::side_by_side::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Ports inside each namespace (each has its own port space; none is 2181), as
/// (quorum, election, client), for zabd's member and for ZooKeeper's, which share the host.
const PORTS: [[u16; 3]; 2] = [[12888, 13888, 12181], [22888, 23888, 22181]];

/// Which server a member belongs to (its ports on a shared host).
#[derive(Clone, Copy)]
enum Kind {
    Zabd = 0,
    ZooKeeper = 1,
}

/// Where members run: namespace hosts, or loopback with free ports.
enum Place {
    Hosts(Hosts),
    Loopback(Vec<[[u16; 3]; 2]>),
}

impl Place {
    fn new(n: usize) -> (Place, String) {
        if env_u64("HOSTS_LOOPBACK", 0) == 0 {
            match Hosts::create(n, env_u64("HOSTS_DELAY_US", 0)) {
                Ok(h) => {
                    let d = h.describe();
                    return (Place::Hosts(h), d);
                }
                Err(e) => eprintln!(
                    "ensemble_hosts: cannot make network namespaces ({e}); running on loopback"
                ),
            }
        }
        let three = || [free_port(), free_port(), free_port()];
        let ports = (0..n).map(|_| [three(), three()]).collect();
        (
            Place::Loopback(ports),
            "loopback (no network namespaces could be made)".into(),
        )
    }

    fn ip(&self, i: usize) -> String {
        match self {
            Place::Hosts(h) => h.ip(i).to_string(),
            Place::Loopback(_) => "127.0.0.1".into(),
        }
    }

    /// (quorum, election, client) port of member `i` of `kind`.
    fn ports(&self, i: usize, kind: Kind) -> [u16; 3] {
        match self {
            Place::Hosts(_) => PORTS[kind as usize],
            Place::Loopback(p) => p[i][kind as usize],
        }
    }

    fn client_addr(&self, i: usize, kind: Kind) -> String {
        format!("{}:{}", self.ip(i), self.ports(i, kind)[2])
    }

    fn command(&self, i: usize, program: &str) -> Command {
        let pin = std::env::var("HOSTS_PIN").ok();
        let cpu = pin
            .as_deref()
            .and_then(|p| p.split(',').nth(i).map(str::to_string));
        match self {
            Place::Hosts(h) => h.command(i, program, cpu.as_deref()),
            Place::Loopback(_) => match cpu {
                Some(c) => {
                    let mut cmd = Command::new("taskset");
                    cmd.args(["-c", &c, program]);
                    cmd
                }
                None => Command::new(program),
            },
        }
    }
}

/// A load spread round-robin over the members (`zabd bench --round-robin`).
fn rr_load(mix: &str, sessions: usize, inflight: usize, secs: u64) -> Vec<String> {
    let mut v = load_args(mix, sessions, inflight, secs);
    v.push("--round-robin".into());
    v
}

/// Starts zabd members on `place`: `voters` participants then `observers` observers.
fn start_zabd(place: &Place, dir: &Path, voters: usize, observers: usize) -> Server {
    let n = voters + observers;
    let servers: String = (0..n)
        .map(|i| {
            let [q, e, c] = place.ports(i, Kind::Zabd);
            let role = if i >= voters { ":observer" } else { "" };
            format!(
                "{} = \"{ip}:{q}:{e}{role};{ip}:{c}\"\n",
                i + 1,
                ip = place.ip(i)
            )
        })
        .collect();
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..n {
        let d = dir.join(format!("m{}", i + 1));
        std::fs::create_dir_all(&d).unwrap();
        let cfg = d.with_extension("toml");
        std::fs::write(
            &cfg,
            format!(
                "max_client_cnxns = 0\nfour_letter_words = [\"*\"]\nadmin.enable = false\n\
                 data_dir = \"{}\"\nclient_port = {}\nclient_port_address = \"{}\"\n\
                 server_id = {}\n[servers]\n{servers}",
                d.display(),
                place.ports(i, Kind::Zabd)[2],
                place.ip(i),
                i + 1
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.with_extension("log")).unwrap();
        let child = place
            .command(i, &common::zabd_bin())
            .arg("--config")
            .arg(&cfg)
            .env("ZABD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start zabd");
        children.push(child);
        addrs.push(place.client_addr(i, Kind::Zabd));
    }
    for a in &addrs {
        wait_ruok(a);
    }
    Server {
        name: "zabd",
        children,
        addr: addrs.join(","),
        restart: Box::new(|| unreachable!()),
    }
}

/// Starts `n` ZooKeeper 3.8 participants on `place`.
fn start_zk(place: &Place, dir: &Path, n: usize) -> Server {
    let servers: String = (0..n)
        .map(|i| {
            let [q, e, c] = place.ports(i, Kind::ZooKeeper);
            format!("server.{}={ip}:{q}:{e};{ip}:{c}\n", i + 1, ip = place.ip(i))
        })
        .collect();
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..n {
        let (cfg, log) = zk_member_files(dir, i, &servers);
        let heap = if n > 3 { "-Xmx1g" } else { "-Xmx2g" };
        children.push(
            place
                .command(i, "java")
                .args([heap, "-cp", &classpath()])
                .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("java runs ZooKeeper"),
        );
        addrs.push(place.client_addr(i, Kind::ZooKeeper));
    }
    for a in &addrs {
        wait_ruok(a);
    }
    Server {
        name: "zookeeper",
        children,
        addr: addrs.join(","),
        restart: Box::new(|| unreachable!()),
    }
}

/// Warms ZooKeeper's JIT with rounds of creates until one improves on the best before by
/// no more than 3 %; zabd gets as many rounds. Returns the rounds and ZooKeeper's figures.
fn warm(zabd: &Server, zk: &Server, secs: u64) -> (usize, Vec<f64>) {
    let args = rr_load("create", 32, 16, secs);
    let max = env_u64("HOSTS_WARM_MAX", 8) as usize;
    let mut seen: Vec<f64> = Vec::new();
    while seen.len() < max {
        let t = bench(zk, &args)["ops_per_sec"].as_f64().unwrap();
        let best = seen.iter().copied().fold(0.0, f64::max);
        seen.push(t);
        eprintln!("  warm-up ZooKeeper round {}: {t:.0} creates/s", seen.len());
        if seen.len() > 1 && t <= best * 1.03 {
            break;
        }
    }
    for r in 0..seen.len() {
        let t = bench(zabd, &args)["ops_per_sec"].as_f64().unwrap();
        eprintln!("  warm-up zabd round {}: {t:.0} creates/s", r + 1);
    }
    (seen.len(), seen)
}

/// A member's `mntr`, key by key.
fn mntr(addr: &str) -> std::collections::HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut out = String::new();
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        let _ = s.write_all(b"mntr");
        let _ = s.read_to_string(&mut out);
    }
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('\t')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

type Mntr = std::collections::HashMap<String, f64>;

/// Every member's `mntr`, in connect-string order.
fn mntr_all(s: &Server) -> Vec<Mntr> {
    s.addr.split(',').map(mntr).collect()
}

/// The write path's stages (`mntr`'s `zabd_write_*_us`, the most recent 1,024 samples of
/// each) on every member, after the rounds of one load: a markdown table of p50 / p99.
/// A member's stage counts only if the load added at least 1,024 samples to it (`before`:
/// every member's `mntr` before the load), so that its samples are all this load's.
fn breakdown(label: &str, s: &Server, before: &[Mntr]) -> String {
    let members: Vec<(String, Mntr, &Mntr)> = s
        .addr
        .split(',')
        .zip(before)
        .map(|(a, b)| (common::mode(a), mntr(a), b))
        .collect();
    let stages = [
        (
            "leader",
            "update",
            "a client's write on the leader: arrival to reply",
        ),
        (
            "follower",
            "update",
            "a client's write on a follower: arrival to reply (forwarded)",
        ),
        (
            "leader",
            "leader_fsync",
            "leader: propose to its own log sync",
        ),
        (
            "leader",
            "leader_quorum",
            "leader: propose to commit (quorum of ACKs)",
        ),
        (
            "follower",
            "learner_fsync",
            "follower: PROPOSAL in to its log sync (ACK out)",
        ),
        (
            "follower",
            "learner_commit",
            "follower: PROPOSAL in to COMMIT in",
        ),
    ];
    let mut t = format!(
        "\nWrite path, zabd, {label} (us, p50 / p99 of the last 1,024 samples; followers: \
         the median member):\n\n| stage | p50 | p99 |\n|---|---|---|\n"
    );
    for (role, stage, what) in stages {
        let pick = |q: &str| {
            let v: Vec<f64> = members
                .iter()
                .filter(|(m, _, _)| m == role)
                .filter_map(|(_, x, b)| {
                    let key = format!("zabd_write_{stage}_us_cnt");
                    let added = x.get(&key)? - b.get(&key).copied().unwrap_or(0.0);
                    (added >= 1024.0)
                        .then(|| x.get(&format!("zabd_write_{stage}_us_{q}")).copied())?
                })
                .collect();
            (!v.is_empty()).then(|| median(v))
        };
        if let (Some(p50), Some(p99)) = (pick("p50"), pick("p99")) {
            t.push_str(&format!("| {what} | {p50:.0} | {p99:.0} |\n"));
        }
    }
    t
}

/// One TCP round trip to a member (connect's SYN / SYN-ACK), median of 300 (us).
fn round_trip_us(addr: &str) -> f64 {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let t: Vec<f64> = (0..300)
        .filter_map(|_| {
            let start = Instant::now();
            let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            let took = start.elapsed().as_secs_f64() * 1e6;
            drop(s);
            Some(took)
        })
        .collect();
    median(t)
}

/// The zabd / ZooKeeper rows for one ensemble size.
fn side_by_side(rows: &mut Vec<Row>, n: usize, work: &Path, secs: u64, rounds: u64) -> String {
    let (place, topology) = Place::new(n);
    eprintln!("{n} members: {topology}");
    let zabd = start_zabd(&place, &work.join(format!("zabd-{n}")), n, 0);
    let zk = start_zk(&place, &work.join(format!("zk-{n}")), n);
    let (warm_rounds, warm_zk) = warm(&zabd, &zk, secs);
    let mut stages = String::new();
    for mix in ["create", "set", "get", "read90"] {
        let label = format!("{n} members {mix}, 32 sessions x 16");
        let before = mntr_all(&zabd);
        versus(
            rows,
            &label,
            &zabd,
            &zk,
            &rr_load(mix, 32, 16, secs),
            rounds,
        );
        if mix == "create" {
            stages.push_str(&breakdown(&label, &zabd, &before));
        }
    }
    for mix in ["set", "exists"] {
        let label = format!("{n} members {mix}, 1 session x 1");
        let before = mntr_all(&zabd);
        versus(rows, &label, &zabd, &zk, &rr_load(mix, 1, 1, secs), rounds);
        if mix == "set" {
            stages.push_str(&breakdown(&label, &zabd, &before));
        }
    }
    let fsync = median(fdatasync_samples(work, 1000));
    let rtt = round_trip_us(&place.client_addr(1.min(n - 1), Kind::Zabd));
    drop(zabd);
    drop(zk);
    format!(
        "{n} members: {topology}. ZooKeeper warmed for {warm_rounds} rounds of creates \
         ({}), zabd for as many. Floor of a synced write: fdatasync {fsync:.0} us + one TCP \
         round trip {rtt:.0} us = {:.0} us.\n{stages}",
        warm_zk
            .iter()
            .map(|t| format!("{t:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
        fsync + rtt
    )
}

/// zabd's observers: 3 voters, then 3 voters + 2 observers, on 5 hosts; getData and
/// create throughput, medians of `rounds`.
fn observers(work: &Path, secs: u64, rounds: u64) -> String {
    let (place, topology) = Place::new(5);
    let mut out = format!("\nObservers ({topology}), zabd, medians of {rounds}:\n\n");
    out.push_str("| members | getData 32x16 (ops/s) | create 32x16 (ops/s) |\n|---|---|---|\n");
    for (voters, obs) in [(3, 0), (3, 2)] {
        let s = start_zabd(
            &place,
            &work.join(format!("obs-{voters}-{obs}")),
            voters,
            obs,
        );
        let run = |mix: &str| {
            let t: Vec<f64> = (0..rounds)
                .map(|_| {
                    bench(&s, &rr_load(mix, 32, 16, secs))["ops_per_sec"]
                        .as_f64()
                        .unwrap()
                })
                .collect();
            median(t)
        };
        let (get, create) = (run("get"), run("create"));
        eprintln!("  {voters} voters + {obs} observers: get {get:.0}/s, create {create:.0}/s");
        out.push_str(&format!(
            "| {voters} voters + {obs} observers | {get:.0} | {create:.0} |\n"
        ));
        drop(s);
    }
    out
}

fn main() {
    let secs = env_u64("HOSTS_SECONDS", 5);
    let rounds = env_u64("HOSTS_ROUNDS", 3);
    let sizes: Vec<usize> = std::env::var("HOSTS_MEMBERS")
        .unwrap_or_else(|_| "3,5".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/versus");
    std::fs::create_dir_all(&out).unwrap();
    let work = std::env::temp_dir().join(format!("zabd-hosts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let mut rows = Vec::new();
    let mut notes = String::new();
    for n in sizes {
        notes.push_str(&side_by_side(&mut rows, n, &work, secs, rounds));
    }
    if env_u64("HOSTS_OBSERVERS", 1) == 1 {
        notes.push_str(&observers(&work, secs, rounds));
    }
    let md = table(&rows) + "\n" + &notes;
    println!("{md}");
    std::fs::write(out.join("report-hosts.md"), &md).unwrap();
    let _ = std::fs::remove_dir_all(&work);
}
