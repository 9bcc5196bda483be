//! Shared by the benches: start the zabd binary on a free loopback port.

pub mod hosts;
pub mod side_by_side;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts zabd with its data under `dir` (config `dir.toml`, log `dir.log`), no per-address
/// connection limit; returns the process and its client address.
#[allow(dead_code)]
pub fn start_zabd(dir: &Path, log_level: &str) -> (Child, String) {
    start_with(
        dir,
        log_level,
        "client_port = 0\nclient_port_address = \"127.0.0.1\"\n",
    )
}

/// Starts an ensemble of `n` members under `dir` on free loopback ports and waits until
/// one leads and the others follow; returns the processes and the connect string.
#[allow(dead_code)]
pub fn start_ensemble(dir: &Path, n: usize, log_level: &str) -> (Vec<Child>, String) {
    let ls: Vec<std::net::TcpListener> = (0..n * 3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let p: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
    drop(ls);
    let servers: String = (0..n)
        .map(|i| {
            format!(
                "{} = \"127.0.0.1:{}:{};127.0.0.1:{}\"\n",
                i + 1,
                p[i * 3],
                p[i * 3 + 1],
                p[i * 3 + 2]
            )
        })
        .collect();
    let mut children = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..n {
        let extra = format!("server_id = {}\n[servers]\n{servers}", i + 1);
        let (c, a) = start_with(&dir.join(format!("m{}", i + 1)), log_level, &extra);
        children.push(c);
        addrs.push(a);
    }
    let end = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let modes: Vec<String> = addrs.iter().map(|a| mode(a)).collect();
        let leaders = modes.iter().filter(|m| *m == "leader").count();
        let followers = modes.iter().filter(|m| *m == "follower").count();
        if leaders == 1 && followers == n - 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the ensemble did not settle: {modes:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (children, addrs.join(","))
}

/// Fills a server or ensemble with `n` znodes of 100 bytes (32 sessions x 16 in flight),
/// rounded to whole batches of 512, through `zabd bench`.
#[allow(dead_code)]
pub fn fill(connect: &str, n: u64) {
    let per = (n / 512).max(1);
    let status = Command::new(zabd_bin())
        .args(["bench", "--servers", connect, "--mix", "create"])
        .args(["--sessions", "32", "--inflight", "16", "--warmup", "0"])
        .args(["--duration", "3600", "--keys", "1", "--quiet"])
        .args(["--max-ops", &(per * 512).to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("run zabd bench");
    assert!(status.success(), "filling {connect} failed");
}

/// `Mode:` from a member's `srvr`.
pub fn mode(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(b"srvr");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .unwrap_or_default()
        .to_string()
}

fn start_with(dir: &Path, log_level: &str, extra: &str) -> (Child, String) {
    let cfg = dir.with_extension("toml");
    std::fs::create_dir_all(dir.parent().expect("a parent")).expect("bench directory");
    std::fs::write(
        &cfg,
        format!(
            "max_client_cnxns = 0\nfour_letter_words = [\"*\"]\nadmin.enable = false\ndata_dir = \"{}\"\n{extra}",
            dir.display()
        ),
    )
    .expect("write config");
    spawn(&cfg, dir, log_level)
}

/// The binary benches run: `ZABD_BIN` when set (to measure an older build), else this
/// crate's.
pub fn zabd_bin() -> String {
    std::env::var("ZABD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zabd").to_string())
}

/// Starts zabd on the config a bench wrote before (`dir.toml`), as after a restart.
#[allow(dead_code)]
pub fn restart(dir: &Path, log_level: &str) -> (Child, String) {
    spawn(&dir.with_extension("toml"), dir, log_level)
}

fn spawn(cfg: &Path, dir: &Path, log_level: &str) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .expect("log file");
    let mut child = Command::new(zabd_bin())
        .arg("--config")
        .arg(cfg)
        .env("ZABD_LOG", log_level)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start zabd");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("zabd prints its address");
    let addr = line
        .trim()
        .trim_start_matches("zabd: serving clients on ")
        .to_string();
    (child, addr)
}
