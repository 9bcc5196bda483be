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
}

impl Zabd {
    pub fn start() -> Zabd {
        Zabd::start_with("")
    }

    /// Starts with extra TOML settings appended to a test base config.
    pub fn start_with(extra: &str) -> Zabd {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("zabd.toml");
        let mut base = format!(
            "client_port = 0\nclient_port_address = \"127.0.0.1\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        );
        if !extra.contains("four_letter_words") {
            base.push_str("four_letter_words = [\"*\"]\n");
        }
        std::fs::write(&cfg, format!("{base}{extra}\n")).expect("write config");
        let log = std::fs::File::create(dir.path().join("zabd.log")).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_zabd"))
            .arg("--config")
            .arg(&cfg)
            .env("ZABD_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start zabd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(a) = line.strip_prefix("zabd: serving clients on ") {
                    let _ = tx.send(a.to_string());
                }
            }
        });
        let addr = rx.recv_timeout(DEADLINE).expect("zabd printed its address");
        Zabd { child, addr, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zabd.log")).unwrap_or_default()
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
