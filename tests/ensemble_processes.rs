//! Real `zabd` processes forming an ensemble on loopback: one leader, two followers; kill -9
//! the leader and the survivors elect another in a later epoch; the old one rejoins.
//! (Client sessions on ensemble members are not served yet; roles are read with `srvr`.)

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Member {
    child: Child,
    client: String,
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn start(cfg: &std::path::Path) -> Member {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.with_extension("log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_zabd"))
        .arg("--config")
        .arg(cfg)
        .env(
            "ZABD_LOG",
            std::env::var("ZABD_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let client = line
        .trim()
        .trim_start_matches("zabd: serving clients on ")
        .to_string();
    Member { child, client }
}

/// (mode, epoch) from `srvr`.
fn role(m: &Member) -> Option<(String, u32)> {
    let mut s = TcpStream::connect(&m.client).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    s.write_all(b"srvr").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let mode = out
        .lines()
        .find_map(|l| l.strip_prefix("Mode: "))?
        .to_string();
    let epoch = out
        .lines()
        .find_map(|l| l.strip_prefix("Epoch: "))?
        .parse()
        .ok()?;
    Some((mode, epoch))
}

fn settled(members: &[Option<Member>]) -> Option<(usize, u32)> {
    let roles: Vec<(usize, (String, u32))> = members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.as_ref().and_then(role).map(|r| (i, r)))
        .collect();
    let live = members.iter().filter(|m| m.is_some()).count();
    let leaders: Vec<&(usize, (String, u32))> =
        roles.iter().filter(|(_, (m, _))| m == "leader").collect();
    if roles.len() != live || leaders.len() != 1 {
        return None;
    }
    let (li, (_, epoch)) = leaders[0];
    roles
        .iter()
        .all(|(i, (m, e))| i == li || (m == "follower" && e == epoch))
        .then_some((*li, *epoch))
}

#[test]
fn three_processes_elect_fail_over_and_rejoin() {
    let dir = tempfile::tempdir().unwrap();
    let p = free_ports(9);
    let servers: String = (0..3)
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
    let cfgs: Vec<std::path::PathBuf> = (0..3)
        .map(|i| {
            let cfg = dir.path().join(format!("m{}.toml", i + 1));
            let text = format!(
                "server_id = {}\ntick_time = 200\ninit_limit = 10\nsync_limit = 5\ndata_dir = \"{}\"\n\
                 four_letter_words = [\"*\"]\n[servers]\n{servers}",
                i + 1,
                dir.path().join(format!("m{}", i + 1)).display()
            );
            std::fs::write(&cfg, text).unwrap();
            cfg
        })
        .collect();
    let mut members: Vec<Option<Member>> = cfgs.iter().map(|c| Some(start(c))).collect();
    let mut first = None;
    common::wait_until("one leader and two followers", || {
        first = settled(&members);
        first.is_some()
    });
    let (leader, epoch) = first.unwrap();
    let mut dead = members[leader].take().unwrap();
    let killed_at = std::time::Instant::now();
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    let mut second = None;
    let mut polls = 0;
    common::wait_until("a new leader in a later epoch", || {
        second = settled(&members);
        polls += 1;
        if polls % 200 == 0 {
            let roles: Vec<_> = members.iter().map(|m| m.as_ref().and_then(role)).collect();
            eprintln!("roles: {roles:?}");
            if polls == 400 {
                for c in &cfgs {
                    let log = std::fs::read_to_string(c.with_extension("log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    eprintln!(
                        "--- {}\n{}",
                        c.display(),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
            }
        }
        second.is_some_and(|(l, e)| l != leader && e > epoch)
    });
    let (_, new_epoch) = second.unwrap();
    // A figure for docs/performance.md (printed, never asserted).
    println!(
        "election after kill -9 of the leader: {} ms",
        killed_at.elapsed().as_millis()
    );
    members[leader] = Some(start(&cfgs[leader]));
    common::wait_until("the old leader follows", || {
        settled(&members).is_some_and(|(l, e)| l != leader && e == new_epoch)
    });
    for m in members.iter_mut().flatten() {
        let _ = m.child.kill();
        let _ = m.child.wait();
    }
}
