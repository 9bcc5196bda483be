//! zabd against Apache ZooKeeper 3.8 (Debian's), side by side on this machine.
//!
//! Run: `cargo bench --bench versus_zookeeper` (needs Debian's `zookeeper` package and a
//! JDK; `.ci/run` installs them). Both servers get equivalent settings: sync on
//! (ZooKeeper's forceSync=yes, zabd's force_sync = true), tickTime 2000, no per-address
//! connection limit, data on the same disk. Each load runs with `zabd bench` against one
//! server, then the other, alternating, `VERSUS_ROUNDS` times (default 3); the table shows
//! medians and the zabd/ZooKeeper ratio. Also: a throughput-against-concurrency chart (SVG),
//! watch fan-out to `VERSUS_WATCHERS` sessions (default 10,000), and memory, snapshot size
//! and restart time (median of `VERSUS_RESTARTS`, default 3) with `VERSUS_NODES` znodes of
//! 100 bytes (default 200,000; the figure is 1,000,000). `VERSUS_SECONDS` sets each
//! load's measured seconds (default 5). `VERSUS_ENSEMBLE=1` adds 3-member ensembles.
//! `VERSUS_ONLY=bigtree` runs only the big tree; `VERSUS_ONLY=failover` only leader kill -9
//! and leader SIGTERM
//! on 3 members, `VERSUS_ROUNDS` times, on a small tree and, with
//! `VERSUS_FAILOVER_NODES=n`, again on members holding n znodes.
//! Results: `target/versus/report.md`, `report.json`, `concurrency.svg`.

mod common;

use common::side_by_side::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start_zk(dir: &Path, port: u16) -> (Vec<Child>, String) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = dir.with_extension("cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\n4lw.commands.whitelist=*\nadmin.enableServer=false\nforceSync=yes\n",
            dir.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let child = Command::new("java")
        .args(["-Xmx4g", "-cp", &classpath()])
        .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("java runs ZooKeeper");
    let addr = format!("127.0.0.1:{port}");
    wait_ruok(&addr);
    (vec![child], addr)
}

fn start_zk_ensemble(dir: &Path, ports: &[u16]) -> (Vec<Child>, String) {
    let servers: String = (0..3)
        .map(|i| {
            format!(
                "server.{}=127.0.0.1:{}:{};127.0.0.1:{}\n",
                i + 1,
                ports[i * 3],
                ports[i * 3 + 1],
                ports[i * 3 + 2]
            )
        })
        .collect();
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..3 {
        let (cfg, log) = zk_member_files(dir, i, &servers);
        children.push(
            Command::new("java")
                .args(["-Xmx2g", "-cp", &classpath()])
                .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("java runs ZooKeeper"),
        );
        addrs.push(format!("127.0.0.1:{}", ports[i * 3 + 2]));
    }
    for a in &addrs {
        wait_ruok(a);
    }
    (children, addrs.join(","))
}

fn zabd_server(work: &Path) -> Server {
    let dir = work.join("zabd");
    let start = move || {
        let (c, a) = common::start_zabd(&dir.join("data"), "warn");
        (vec![c], a)
    };
    let (children, addr) = start();
    Server {
        name: "zabd",
        children,
        addr,
        restart: Box::new(start),
    }
}

fn zk_server(work: &Path) -> Server {
    let dir = work.join("zk");
    let port = free_port();
    let start = move || start_zk(&dir, port);
    let (children, addr) = start();
    Server {
        name: "zookeeper",
        children,
        addr,
        restart: Box::new(start),
    }
}

/// 3-member ensembles of each: the loads in `mixes`, then staleness under 32x16 setData.
fn ensemble(rows: &mut Vec<Row>, work: &Path, secs: u64, rounds: u64, mixes: &[&str]) {
    let (zc, za) = common::start_ensemble(&work.join("zabd-ens"), 3, "warn");
    let ea = Server {
        name: "zabd",
        children: zc,
        addr: za,
        restart: Box::new(|| unreachable!()),
    };
    let ports: Vec<u16> = (0..9).map(|_| free_port()).collect();
    let (kc, ka) = start_zk_ensemble(&work.join("zk-ens"), &ports);
    let eb = Server {
        name: "zookeeper",
        children: kc,
        addr: ka,
        restart: Box::new(|| unreachable!()),
    };
    for mix in mixes {
        versus(
            rows,
            &format!("3 members {mix}, 32 sessions x 16"),
            &ea,
            &eb,
            &load_args(mix, 32, 16, secs),
            rounds,
        );
    }
    staleness(rows, &ea, &eb, &load_args("set", 32, 16, secs), rounds);
}

/// How long after a write is acknowledged on the first member of the connect string a
/// reader polling the second sees it (`zabd bench --staleness`), under the load `args`:
/// medians over alternating rounds of the p50, p99 and max.
fn staleness(rows: &mut Vec<Row>, a: &Server, b: &Server, args: &[String], rounds: u64) {
    let mut args = args.to_vec();
    args.push("--staleness".into());
    let mut got: [[Vec<f64>; 3]; 2] = Default::default();
    let keys = ["p50", "p99", "max"];
    for r in 0..rounds {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let s = if k == 0 { a } else { b };
            let _ = Command::new("sync").status();
            let rep = bench(s, &args);
            let st = &rep["staleness"]["latency_us"];
            eprintln!(
                "  3 members set 32x16 staleness {}: p50 {} us, p99 {} us, max {} us ({} writes)",
                s.name, st["p50"], st["p99"], st["max"], rep["staleness"]["writes"]
            );
            for (i, key) in keys.iter().enumerate() {
                got[k][i].push(st[*key].as_f64().unwrap_or(f64::NAN));
            }
        }
    }
    for (i, key) in keys.iter().enumerate() {
        rows.push(Row {
            figure: format!(
                "3 members set 32x16: staleness (acked on one member, seen on another) {key}"
            ),
            unit: "us",
            zabd: median(got[0][i].clone()),
            zk: median(got[1][i].clone()),
            higher_better: false,
        });
    }
}

/// Fills a server with `n` znodes of 100 bytes; then RSS, snapshot size and restart time.
fn big_tree(rows: &mut Vec<Row>, a: &mut Server, b: &mut Server, data: [&Path; 2], n: u64) {
    let mut rss = [0.0; 2];
    let mut restart = [0.0; 2];
    let mut snap = [0.0; 2];
    for (i, s) in [a, b].into_iter().enumerate() {
        common::fill(&s.addr, n);
        std::thread::sleep(Duration::from_secs(2));
        rss[i] = s.rss_mib();
        let mut times = Vec::new();
        for _ in 0..env_u64("VERSUS_RESTARTS", 3) {
            // Write back what earlier runs left dirty in the page cache first: otherwise the
            // restarted server's first fsync waits for gigabytes of other files (seen: 0.9 s
            // for the first restart, 8.4 s for the next, on both servers).
            let _ = Command::new("sync").status();
            s.stop();
            let started = Instant::now();
            let (c, addr) = (s.restart)();
            s.children = c;
            s.addr = addr;
            times.push(first_write(&s.addr, started).as_secs_f64() * 1000.0);
        }
        eprintln!("  restarts {}: {times:.0?} ms", s.name);
        restart[i] = median(times);
        snap[i] = newest_snapshot_mib(data[i]);
        eprintln!(
            "  {n} znodes {}: RSS {:.0} MiB, restart {:.0} ms, snapshot {:.0} MiB",
            s.name, rss[i], restart[i], snap[i]
        );
    }
    let row = |figure: String, unit, v: [f64; 2]| Row {
        figure,
        unit,
        zabd: v[0],
        zk: v[1],
        higher_better: false,
    };
    rows.push(row(format!("RSS with {n} znodes of 100 B"), "MiB", rss));
    rows.push(row(format!("newest snapshot, {n} znodes"), "MiB", snap));
    rows.push(row(
        format!("restart to first served write, {n} znodes"),
        "ms",
        restart,
    ));
}

/// Time from `since` until a create through a fresh session succeeds.
fn first_write(addr: &str, since: Instant) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let end = Instant::now() + Duration::from_secs(600);
        loop {
            assert!(Instant::now() < end, "{addr} never took a write");
            let c = tokio::time::timeout(
                Duration::from_secs(2),
                zookeeper_client::Client::connect(addr),
            )
            .await;
            if let Ok(Ok(c)) = c {
                // Sequential: the ephemeral of the previous restart's session is still there
                // until that session expires, and a fixed name would wait for it.
                let opts = zookeeper_client::CreateMode::EphemeralSequential
                    .with_acls(zookeeper_client::Acls::anyone_all());
                if c.create("/versus-restart-", b"", &opts).await.is_ok() {
                    return since.elapsed();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

fn newest_snapshot_mib(version2: &Path) -> f64 {
    let Ok(entries) = std::fs::read_dir(version2) else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("snapshot.") && !name.ends_with(".tmp")
        })
        .filter_map(|e| e.metadata().ok().map(|m| (m.modified().ok(), m.len())))
        .max_by_key(|(t, _)| *t)
        .map_or(0.0, |(_, len)| len as f64 / (1024.0 * 1024.0))
}

/// Throughput against concurrency for both servers, as an SVG line chart.
fn chart(points: &[(String, f64, f64)], path: &Path) {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max = points
        .iter()
        .flat_map(|(_, a, b)| [*a, *b])
        .fold(1.0, f64::max);
    let x = |i: usize| pad + i as f64 * (w - 2.0 * pad) / (points.len().max(2) - 1) as f64;
    let y = |v: f64| h - pad - v / max * (h - 2.0 * pad);
    let line = |sel: fn(&(String, f64, f64)) -> f64| -> String {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(sel(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\
         <rect width='100%' height='100%' fill='white'/>\
         <text x='{pad}' y='20'>creates/s against sessions x in flight (blue: zabd, red: ZooKeeper 3.8)</text>\
         <line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='black'/><line x1='{pad}' y1='{pad}' x2='{pad}' y2='{}' stroke='black'/>\
         <text x='5' y='{}'>{max:.0}</text><text x='5' y='{}'>0</text>",
        h - pad,
        w - pad,
        h - pad,
        h - pad,
        pad + 4.0,
        h - pad
    );
    svg.push_str(&format!(
        "<polyline fill='none' stroke='blue' stroke-width='2' points='{}'/>",
        line(|p| p.1)
    ));
    svg.push_str(&format!(
        "<polyline fill='none' stroke='red' stroke-width='2' points='{}'/>",
        line(|p| p.2)
    ));
    for (i, (label, _, _)) in points.iter().enumerate() {
        svg.push_str(&format!(
            "<text x='{:.1}' y='{}' text-anchor='middle'>{label}</text>",
            x(i),
            h - pad + 18.0
        ));
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).unwrap();
}

/// Leader kill -9 on 3-member ensembles of each: from the kill to the first create
/// acknowledged in a later epoch, through a session on the whole connect string that keeps
/// creating, on 3 members holding `nodes` znodes. The killed member is restarted between
/// rounds.
fn failover(rows: &mut Vec<Row>, work: &Path, rounds: u64, nodes: u64, sigterm: bool) {
    let mut med = [0.0; 2];
    let how = if sigterm { "SIGTERM" } else { "kill -9" };
    for (k, name) in ["zabd", "zookeeper"].into_iter().enumerate() {
        let dir = work.join(format!("{name}-failover-{nodes}-{}", sigterm as u8));
        let ports: Vec<u16> = (0..9).map(|_| free_port()).collect();
        let start = |dir: &Path| -> (Vec<Child>, String) {
            if k == 0 {
                common::start_ensemble(dir, 3, "warn")
            } else {
                start_zk_ensemble(dir, &ports)
            }
        };
        let (mut children, connect) = start(&dir);
        let addrs: Vec<String> = connect.split(',').map(String::from).collect();
        if nodes > 0 {
            let t = Instant::now();
            common::fill(&connect, nodes);
            eprintln!(
                "  {name}: {nodes} znodes in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let mut times = Vec::new();
        for _ in 0..rounds {
            let leader = wait_leader(&addrs);
            let epoch = zxid_of(&addrs[leader]) >> 32;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let t = rt.block_on(time_failover(&connect, epoch, || {
                if sigterm {
                    // SAFETY: kill(2) on a child of this process.
                    unsafe { libc::kill(children[leader].id() as i32, libc::SIGTERM) };
                } else {
                    let _ = children[leader].kill();
                }
                let _ = children[leader].wait();
            }));
            eprintln!(
                "  failover {name} ({nodes} znodes, {how}): {} ms",
                t.as_millis()
            );
            times.push(t.as_secs_f64() * 1000.0);
            // Bring the member back with the same configuration and data.
            children[leader] = restart_member(k, &dir, leader, &ports);
            wait_all_serving(&addrs);
        }
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        med[k] = median(times);
    }
    rows.push(Row {
        figure: format!("3 members, {nodes} znodes: leader {how} -> first write in the new epoch"),
        unit: "ms",
        zabd: med[0],
        zk: med[1],
        higher_better: false,
    });
}

fn restart_member(kind: usize, dir: &Path, i: usize, _ports: &[u16]) -> Child {
    let d = dir.join(format!("m{}", i + 1));
    if kind == 0 {
        let cfg = d.with_extension("toml");
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(d.with_extension("log"))
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_zabd"))
            .arg("--config")
            .arg(cfg)
            .env("ZABD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    } else {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(d.with_extension("log"))
            .unwrap();
        Command::new("java")
            .args(["-Xmx2g", "-cp", &classpath()])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(d.with_extension("cfg"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

fn zxid_of(addr: &str) -> i64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.write_all(b"srvr");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix("Zxid: 0x"))
        .and_then(|z| i64::from_str_radix(z.trim(), 16).ok())
        .unwrap_or(0)
}

fn wait_leader(addrs: &[String]) -> usize {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let modes: Vec<String> = addrs.iter().map(|a| common::mode(a)).collect();
        let leaders: Vec<usize> = (0..addrs.len()).filter(|i| modes[*i] == "leader").collect();
        if leaders.len() == 1
            && modes.iter().filter(|m| *m == "follower").count() == addrs.len() - 1
        {
            return leaders[0];
        }
        assert!(Instant::now() < end, "no settled leader: {modes:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_all_serving(addrs: &[String]) {
    wait_leader(addrs);
}

async fn time_failover(connect: &str, epoch: i64, kill: impl FnOnce()) -> Duration {
    let c = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .connect(connect)
        .await
        .expect("connects");
    let opts = zookeeper_client::CreateMode::PersistentSequential
        .with_acls(zookeeper_client::Acls::anyone_all());
    for _ in 0..20 {
        let _ = c.create("/versus-failover-", b"", &opts).await;
    }
    let killed = Instant::now();
    kill();
    let end = killed + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < end, "no write after the kill");
        if let Ok((stat, _)) = c.create("/versus-failover-", b"", &opts).await {
            if stat.czxid >> 32 > epoch {
                return killed.elapsed();
            }
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The 1x1 rows against the fdatasync floor: the server's share of a synced write is the
/// setData round trip less the exists round trip (client, loopback and dispatch).
fn floor_note(rows: &[Row], floor: (f64, f64)) -> String {
    let p50 = |name: &str| {
        rows.iter()
            .find(|r| r.figure == format!("standalone {name}, 1 session x 1: p50 latency"))
            .map(|r| (r.zabd, r.zk))
    };
    let mut s = format!(
        "\nfdatasync after a 128 B write into a preallocated file on the data disk (the floor): p50 {:.0} us, p99 {:.0} us.\n",
        floor.0, floor.1
    );
    if let (Some(set), Some(exists)) = (p50("set"), p50("exists")) {
        s.push_str(&format!(
            "setData 1x1 p50: zabd {:.0} us ({:.2}x the floor), ZooKeeper {:.0} us ({:.2}x). \
             Less the exists 1x1 round trip (zabd {:.0} us, ZooKeeper {:.0} us): zabd {:.0} us \
             ({:.2}x the floor), ZooKeeper {:.0} us ({:.2}x).\n",
            set.0,
            set.0 / floor.0,
            set.1,
            set.1 / floor.0,
            exists.0,
            exists.1,
            set.0 - exists.0,
            (set.0 - exists.0) / floor.0,
            set.1 - exists.1,
            (set.1 - exists.1) / floor.0,
        ));
    }
    s
}

fn main() {
    let rounds = env_u64("VERSUS_ROUNDS", 3);
    let secs = env_u64("VERSUS_SECONDS", 5);
    let nodes = env_u64("VERSUS_NODES", 200_000);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/versus");
    std::fs::create_dir_all(&out).unwrap();
    let work = std::env::temp_dir().join(format!("zabd-versus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let mut rows = Vec::new();
    let only = std::env::var("VERSUS_ONLY").unwrap_or_default();
    if only == "staleness" {
        ensemble(&mut rows, &work, secs, rounds, &[]);
        let md = table(&rows);
        println!("{md}");
        std::fs::write(out.join("report-staleness.md"), &md).unwrap();
        let _ = std::fs::remove_dir_all(&work);
        return;
    }
    if only == "bigtree" || only == "failover" {
        if only == "bigtree" {
            let mut a = zabd_server(&work);
            let mut b = zk_server(&work);
            let dirs = [work.join("zabd/data/version-2"), work.join("zk/version-2")];
            big_tree(&mut rows, &mut a, &mut b, [&dirs[0], &dirs[1]], nodes);
        } else {
            failover(&mut rows, &work, rounds, 0, false);
            failover(&mut rows, &work, rounds, 0, true);
            let big = env_u64("VERSUS_FAILOVER_NODES", 0);
            if big > 0 {
                failover(&mut rows, &work, rounds, big, false);
            }
        }
        let md = table(&rows);
        println!("{md}");
        std::fs::write(out.join(format!("report-{only}.md")), &md).unwrap();
        let _ = std::fs::remove_dir_all(&work);
        return;
    }
    let a = zabd_server(&work);
    let b = zk_server(&work);
    eprintln!("standalone: zabd {} vs ZooKeeper {}", a.addr, b.addr);
    for mix in ["create", "set", "get", "read90"] {
        versus(
            &mut rows,
            &format!("standalone {mix}, 32 sessions x 16"),
            &a,
            &b,
            &load_args(mix, 32, 16, secs),
            rounds,
        );
    }
    for mix in ["exists", "set"] {
        versus(
            &mut rows,
            &format!("standalone {mix}, 1 session x 1"),
            &a,
            &b,
            &load_args(mix, 1, 1, secs),
            rounds,
        );
    }
    let floor = {
        let t = fdatasync_samples(&work, 2000);
        (t[t.len() / 2], t[t.len() * 99 / 100])
    };
    let mut points = Vec::new();
    for (s, k) in [(1, 1), (4, 4), (16, 8), (32, 16), (64, 16)] {
        let label = format!("{s}x{k}");
        let (za, zb) = versus(
            &mut rows,
            &format!("standalone create, {label}"),
            &a,
            &b,
            &load_args("create", s, k, secs),
            1,
        );
        points.push((label, za, zb));
    }
    chart(&points, &out.join("concurrency.svg"));
    let fan: Vec<String> = vec![
        "--watchers".into(),
        env_u64("VERSUS_WATCHERS", 10_000).to_string(),
        "--duration".into(),
        secs.to_string(),
        "--warmup".into(),
        "1".into(),
    ];
    versus(&mut rows, "watch fan-out", &a, &b, &fan, 1);
    drop(a);
    drop(b);
    // The big tree on fresh servers, so that it holds exactly `nodes` znodes (and the
    // bench's one key).
    let _ = std::fs::remove_dir_all(work.join("zabd"));
    let _ = std::fs::remove_dir_all(work.join("zk"));
    let mut a = zabd_server(&work);
    let mut b = zk_server(&work);
    big_tree(
        &mut rows,
        &mut a,
        &mut b,
        [
            &work.join("zabd/data/version-2"),
            &work.join("zk/version-2"),
        ],
        nodes,
    );
    drop(a);
    drop(b);
    if env_u64("VERSUS_ENSEMBLE", 0) == 1 {
        ensemble(&mut rows, &work, secs, rounds, &["create", "get", "read90"]);
    }
    let md = table(&rows) + &floor_note(&rows, floor);
    println!("{md}");
    std::fs::write(out.join("report.md"), &md).unwrap();
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"figure": r.figure, "unit": r.unit, "zabd": r.zabd, "zookeeper": r.zk}))
        .collect();
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&work);
}
