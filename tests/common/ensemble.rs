//! Ensembles of real `zabd` processes on loopback: free ports, one config per member,
//! roles read with `srvr`. Members are killed with SIGKILL, as crashes.

use super::{spawn, DEADLINE};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

pub struct Member {
    child: Option<Child>,
    pub addr: String,
    /// The quorum and election ports the member listens on.
    pub peer_ports: (u16, u16),
    cfg: std::path::PathBuf,
}

pub struct Ensemble {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    /// With `start_partitionable`: (from, to) → the proxies member `from` reaches `to`'s
    /// quorum and election ports through.
    links: Vec<((usize, usize), [super::proxy::Link; 2])>,
}

/// `n` ports free now, below Linux's ephemeral range (32768 and up), so that no outgoing
/// connection of a concurrently running test takes one before its member binds it.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 97) * 120;
    let mut out = Vec::new();
    while out.len() < n {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (20_000 + (offset + k) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            out.push(port);
        }
    }
    out
}

impl Ensemble {
    /// Starts `n` members with `extra` TOML for each.
    pub fn start(n: usize, extra: &str) -> Ensemble {
        Ensemble::start_with(n, extra, false, 0)
    }

    /// `start_partitionable` with `extra(i)` TOML for member `i`.
    pub fn start_partitionable_each(n: usize, extra: impl Fn(usize) -> String) -> Ensemble {
        Ensemble::start_members(n, &extra, true, 0)
    }

    /// Starts `n` members, member `i` with `extra(i)` TOML of its own.
    pub fn start_each(n: usize, extra: impl Fn(usize) -> String) -> Ensemble {
        Ensemble::start_members(n, &extra, false, 0)
    }

    /// `voters` participants and then `observers` observers.
    pub fn start_with_observers(voters: usize, observers: usize) -> Ensemble {
        Ensemble::start_with(voters + observers, "", false, observers)
    }

    /// Starts `n` members whose peer traffic goes through proxies, so that links can be
    /// cut ([`Ensemble::isolate`]).
    pub fn start_partitionable(n: usize, extra: &str) -> Ensemble {
        Ensemble::start_with(n, extra, true, 0)
    }

    fn start_with(n: usize, extra: &str, proxied: bool, observers: usize) -> Ensemble {
        Ensemble::start_members(n, &|_| extra.to_string(), proxied, observers)
    }

    fn start_members(
        n: usize,
        extra: &dyn Fn(usize) -> String,
        proxied: bool,
        observers: usize,
    ) -> Ensemble {
        use super::proxy::Link;
        let dir = tempfile::tempdir().unwrap();
        let p = free_ports(n * 3);
        let addr =
            |port: u16| -> std::net::SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
        let mut links = Vec::new();
        if proxied {
            for from in 0..n {
                for to in (0..n).filter(|t| *t != from) {
                    let l = [
                        Link::start(addr(p[to * 3])),
                        Link::start(addr(p[to * 3 + 1])),
                    ];
                    links.push(((from, to), l));
                }
            }
        }
        let servers_for = |me: usize| -> String {
            (0..n)
                .map(|i| {
                    let (q, e) = match links.iter().find(|(k, _)| *k == (me, i)) {
                        Some((_, l)) => (l[0].addr.port(), l[1].addr.port()),
                        None => (p[i * 3], p[i * 3 + 1]),
                    };
                    let role = if i >= n - observers { ":observer" } else { "" };
                    format!(
                        "{} = \"127.0.0.1:{q}:{e}{role};127.0.0.1:{}\"\n",
                        i + 1,
                        p[i * 3 + 2]
                    )
                })
                .collect()
        };
        let mut members = Vec::new();
        for i in 0..n {
            let servers = servers_for(i);
            let mut extra = extra(i);
            if !extra.contains("admin") {
                extra.push_str("\nadmin.enable = false");
            }
            let cfg = dir.path().join(format!("m{}.toml", i + 1));
            let text = format!(
                "server_id = {}\ntick_time = 200\ninit_limit = 10\nsync_limit = 5\n\
                 min_session_timeout = 400\ndata_dir = \"{}\"\nfour_letter_words = [\"*\"]\n{extra}\n\
                 [servers]\n{servers}",
                i + 1,
                dir.path().join(format!("m{}", i + 1)).display()
            );
            std::fs::write(&cfg, text).unwrap();
            let (child, addr) = spawn(&cfg, &cfg.with_extension("log")).expect("member starts");
            members.push(Member {
                child: Some(child),
                addr,
                peer_ports: (p[i * 3], p[i * 3 + 1]),
                cfg,
            });
        }
        Ensemble {
            dir,
            members,
            links,
        }
    }

    /// Cuts every link between member `i` and the others.
    pub fn isolate(&self, i: usize) {
        for ((from, to), l) in &self.links {
            if *from == i || *to == i {
                l.iter().for_each(|x| x.block());
            }
        }
    }

    /// Cuts the links between members `a` and `b` only (both directions).
    pub fn cut(&self, a: usize, b: usize) {
        for ((from, to), l) in &self.links {
            if (*from, *to) == (a, b) || (*from, *to) == (b, a) {
                l.iter().for_each(|x| x.block());
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for (_, l) in &self.links {
            l.iter().for_each(|x| x.heal());
        }
    }

    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| m.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        let m = &mut self.members[i];
        let (child, addr) = spawn(&m.cfg, &m.cfg.with_extension("log")).expect("member restarts");
        m.child = Some(child);
        m.addr = addr;
    }

    /// The process id of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(|c| c.id())
    }

    /// Member `i`'s exit code, if it has ended by itself (it was not killed by the test).
    pub fn exited(&mut self, i: usize) -> Option<Option<i32>> {
        let c = self.members[i].child.as_mut()?;
        c.try_wait().ok().flatten().map(|st| st.code())
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.members[i].cfg.with_extension("log")).unwrap_or_default()
    }

    /// A four-letter word's answer from member `i` (empty if it does not answer).
    pub fn four(&self, i: usize, word: &str) -> String {
        let Ok(mut s) = TcpStream::connect(&self.members[i].addr) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(word.as_bytes()).is_err() {
            return String::new();
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// (mode, zxid) of member `i` from `srvr`.
    pub fn role(&self, i: usize) -> Option<(String, i64)> {
        let out = self.four(i, "srvr");
        let mode = out
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))?
            .to_string();
        let zxid = out.lines().find_map(|l| l.strip_prefix("Zxid: 0x"))?;
        Some((mode, i64::from_str_radix(zxid, 16).ok()?))
    }

    /// The leader, once every live member serves: one leader, the others followers.
    pub fn settled(&self) -> Option<usize> {
        let live: Vec<usize> = (0..self.members.len()).filter(|i| self.is_up(*i)).collect();
        let roles: Vec<(usize, String)> = live
            .iter()
            .filter_map(|i| self.role(*i).map(|(m, _)| (*i, m)))
            .collect();
        if roles.len() != live.len() {
            return None;
        }
        let leaders: Vec<usize> = roles
            .iter()
            .filter(|(_, m)| m == "leader")
            .map(|(i, _)| *i)
            .collect();
        let followers = roles
            .iter()
            .filter(|(_, m)| m == "follower" || m == "observer")
            .count();
        (leaders.len() == 1 && followers + 1 == live.len()).then(|| leaders[0])
    }

    pub fn wait_settled(&self) -> usize {
        let end = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < end {
            if let Some(l) = self.settled() {
                return l;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let roles: Vec<_> = (0..self.members.len()).map(|i| self.role(i)).collect();
        panic!("the ensemble did not settle on one leader: (mode, zxid) per member {roles:?}");
    }

    /// Waits until every member reports the same applied zxid, then compares their digests.
    pub fn converged(&self) -> Result<(i64, String), String> {
        let row = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('\t'))
                .map(str::to_string)
        };
        let mut last = Vec::new();
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            let rows: Vec<(Option<String>, Option<String>)> = (0..self.members.len())
                .map(|i| {
                    let m = self.four(i, "mntr");
                    (
                        row(&m, "zabd_last_applied_zxid"),
                        row(&m, "zabd_tree_digest"),
                    )
                })
                .collect();
            if rows
                .iter()
                .all(|(z, d)| z.is_some() && d.is_some() && *z == rows[0].0)
            {
                let digests: Vec<&String> = rows.iter().filter_map(|(_, d)| d.as_ref()).collect();
                if digests.iter().all(|d| *d == digests[0]) {
                    let zxid = rows[0].0.as_ref().unwrap().parse().unwrap_or(0);
                    return Ok((zxid, digests[0].clone()));
                }
                return Err(format!("same zxid, different digests: {rows:?}"));
            }
            last = rows;
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("members never reached the same zxid: {last:?}"))
    }

    /// A client of member `i` alone.
    pub async fn client(&self, i: usize) -> zookeeper_client::Client {
        zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(&self.members[i].addr)
            .await
            .expect("client connects")
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
        if std::thread::panicking() {
            let keep = self.keep_logs();
            eprintln!("member logs kept in {}", keep.display());
        }
    }
}

impl Ensemble {
    /// Copies the members' logs and configurations out of the temporary directory, for the
    /// post-mortem of a failed test; returns where.
    pub fn keep_logs(&self) -> std::path::PathBuf {
        let keep = std::env::temp_dir().join(format!(
            "zabd-failed-ensemble-{}-{}",
            std::process::id(),
            self.members[0].addr.replace([':', '.'], "-")
        ));
        let _ = std::fs::create_dir_all(&keep);
        for m in &self.members {
            for f in [m.cfg.with_extension("log"), m.cfg.clone()] {
                if let Some(name) = f.file_name() {
                    let _ = std::fs::copy(&f, keep.join(name));
                }
            }
        }
        keep
    }
}
