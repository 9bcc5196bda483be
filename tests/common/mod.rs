//! Test harness: starts the real `zabd` binary on a free loopback port, and small helpers.
//! Every wait is on a condition with a generous deadline, never a bare sleep.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a slow, shared 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Zabd {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
}

impl Zabd {
    pub fn start() -> Zabd {
        Zabd::start_with("")
    }

    /// Starts with extra TOML settings appended to a test base config.
    pub fn start_with(extra: &str) -> Zabd {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        Zabd::start_at(dir, &data, extra)
    }

    /// Starts with its data directory at `data` (which may be outside `dir`).
    pub fn start_at(dir: tempfile::TempDir, data: &std::path::Path, extra: &str) -> Zabd {
        let cfg = dir.path().join("zabd.toml");
        let mut base = format!(
            "client_port = 0\nclient_port_address = \"127.0.0.1\"\ndata_dir = \"{}\"\n",
            data.display()
        );
        if !extra.contains("four_letter_words") {
            base.push_str("four_letter_words = [\"*\"]\n");
        }
        // Tests never take a fixed port: the AdminServer (8080 by default) only when asked.
        if !extra.contains("admin") {
            base.push_str("admin.enable = false\n");
        }
        std::fs::write(&cfg, format!("{base}{extra}\n")).expect("write config");
        let (child, addr) = spawn(&cfg, &dir.path().join("zabd.log")).expect("zabd starts");
        Zabd {
            child,
            addr,
            dir,
            cfg,
        }
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        let text = std::fs::read_to_string(&self.cfg).unwrap();
        let line = text.lines().find(|l| l.starts_with("data_dir")).unwrap();
        std::path::PathBuf::from(line.split('"').nth(1).unwrap())
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills (if running) and starts again on the same configuration and data.
    pub fn restart(&mut self) {
        self.kill9();
        let (child, addr) =
            spawn(&self.cfg, &self.dir.path().join("zabd.log")).expect("zabd restarts");
        self.child = child;
        self.addr = addr;
    }

    /// Starts again expecting failure; returns the exit code.
    pub fn restart_expecting_failure(&mut self) -> Option<i32> {
        self.kill9();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("zabd.log"))
            .unwrap();
        let out = Command::new(zabd_bin())
            .arg("--config")
            .arg(&self.cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .status()
            .expect("run zabd");
        out.code()
    }

    /// Waits for the process to end by itself; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("zabd did not exit");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zabd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a four-letter word and returns the answer.
    pub fn four(&self, word: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(word.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for Zabd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns zabd on a config, appending its log; returns the process and its client address.
pub fn spawn(cfg: &std::path::Path, log: &std::path::Path) -> Option<(Child, String)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .ok()?;
    let mut cmd = Command::new(zabd_bin());
    cmd.arg("--config")
        .arg(cfg)
        .env("ZABD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    let mut child = spawn_tied(cmd).ok()?;
    let stdout = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(a) = line.strip_prefix("zabd: serving clients on ") {
                let _ = tx.send(a.to_string());
            }
        }
    });
    let addr = rx.recv_timeout(DEADLINE).ok()?;
    Some((child, addr))
}

/// The binary under test: this build's `zabd`, or `ZABD_TEST_BIN` (to run a test against
/// another build, e.g. to see it fail before a fix).
pub fn zabd_bin() -> String {
    std::env::var("ZABD_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zabd").to_string())
}

type SpawnJob = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that it is killed when this test process dies, however it dies
/// (PR_SET_PDEATHSIG). The signal follows the spawning *thread*, so every child is
/// spawned from one thread that lives as long as the process.
pub fn spawn_tied(cmd: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    use std::sync::{mpsc, Mutex, OnceLock};
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                // SAFETY: prctl is async-signal-safe, as pre_exec requires.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .expect("spawner lock")
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))?
}

/// Sends SIGTERM to a process this test started.
pub fn signal_term(pid: u32) {
    // SAFETY: kill(2) on a pid of our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
}

/// Sends SIGSTOP (`pause`) or SIGCONT to a process this test started.
pub fn signal_pause(pid: u32, pause: bool) {
    let sig = if pause { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: kill(2) on a pid of our own child.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A number from the environment (a suite's size or length), or `default`.
#[allow(dead_code)]
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `cond` until it holds or the deadline passes.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}

/// Async version of [`wait_until`].
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub async fn connect(z: &Zabd) -> zookeeper_client::Client {
    zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&z.addr)
        .await
        .expect("client connects")
}

/// A seed for randomised tests: `ZABD_SEED` if set, else the clock.
pub fn seed() -> u64 {
    std::env::var("ZABD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// A small seeded generator (xorshift64) for tests that must replay from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub mod certs;
pub mod ensemble;
pub mod linearizable;
pub mod proxy;
pub mod raw;
