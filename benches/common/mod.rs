//! Shared by the benches: start the zabd binary on a free loopback port.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Starts zabd with its data under `dir` (config `dir.toml`, log `dir.log`), no per-address
/// connection limit; returns the process and its client address.
pub fn start_zabd(dir: &Path, log_level: &str) -> (Child, String) {
    let cfg = dir.with_extension("toml");
    std::fs::create_dir_all(dir.parent().expect("a parent")).expect("bench directory");
    std::fs::write(
        &cfg,
        format!(
            "client_port = 0\nclient_port_address = \"127.0.0.1\"\nmax_client_cnxns = 0\ndata_dir = \"{}\"\n",
            dir.display()
        ),
    )
    .expect("write config");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_zabd"))
        .arg("--config")
        .arg(&cfg)
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
