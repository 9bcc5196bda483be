//! What the operator's answers need from the process and the I/O side, read when asked:
//! remote addresses, uptime, file descriptors, directory sizes, the disk counters, and the
//! process figures Prometheus scrapes. Also the environment `envi` shows, gathered once.

use super::counters::COUNTERS;
use crate::admin::monitor::Kind;
use crate::admin::ServerInfo;
use crate::engine::ConnId;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

static STARTED: OnceLock<(Instant, i64)> = OnceLock::new();

/// Marks the process start (uptime counts from here).
pub fn mark_start() {
    STARTED.get_or_init(|| (Instant::now(), super::wall_ms()));
}

/// `info` with the figures of now filled in; `peers` are the connections' addresses.
pub fn refresh(info: &ServerInfo, peers: HashMap<ConnId, String>) -> ServerInfo {
    mark_start();
    let (start, start_wall) = *STARTED.get().expect("marked");
    let fds = fd_counts();
    ServerInfo {
        peers,
        uptime_ms: start.elapsed().as_millis() as u64,
        fds,
        io: COUNTERS.figures(),
        wall_ms: super::wall_ms(),
        dir_sizes: (
            version_dir_bytes(&info.data_dir),
            version_dir_bytes(&info.data_log_dir),
        ),
        process: process_figures(fds, start_wall),
        ..info.clone()
    }
}

/// Open file descriptors and the soft limit (-1 where /proc does not say).
fn fd_counts() -> (i64, i64) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(-1, |d| d.count() as i64);
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(-1);
    (open, max)
}

/// simpleclient_hotspot's process collector's figures, as ZooKeeper exports them.
fn process_figures(fds: (i64, i64), start_wall_ms: i64) -> Vec<(&'static str, Kind, f64)> {
    let mut v = vec![
        ("process_open_fds", Kind::Gauge, fds.0 as f64),
        ("process_max_fds", Kind::Gauge, fds.1 as f64),
        (
            "process_start_time_seconds",
            Kind::Gauge,
            start_wall_ms as f64 / 1000.0,
        ),
    ];
    let page = 4096.0;
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let f: Vec<f64> = statm
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() >= 2 {
            v.push(("process_virtual_memory_bytes", Kind::Gauge, f[0] * page));
            v.push(("process_resident_memory_bytes", Kind::Gauge, f[1] * page));
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // utime and stime are fields 14 and 15, after the parenthesised command name.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
            // /proc counts in USER_HZ, which is 100 on every Linux.
            let hz = 100.0;
            v.push((
                "process_cpu_seconds_total",
                Kind::Counter,
                (ticks(11) + ticks(12)) / hz,
            ));
        }
    }
    v
}

/// Bytes in the files of `<dir>/version-2`, as ZooKeeper's `dirs` counts them.
fn version_dir_bytes(dir: &str) -> u64 {
    let Ok(entries) =
        std::fs::read_dir(std::path::Path::new(dir).join(crate::persist::VERSION_DIR))
    else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// `envi`'s lines after the version, gathered once at startup.
pub fn environment() -> Vec<(String, String)> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut host = read("/proc/sys/kernel/hostname");
    if host.is_empty() {
        host = read("/etc/hostname");
    }
    let user = std::env::var("USER").unwrap_or_default();
    vec![
        ("host.name".into(), host),
        ("zabd.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("os.name".into(), "Linux".into()),
        ("os.arch".into(), std::env::consts::ARCH.into()),
        ("os.version".into(), read("/proc/sys/kernel/osrelease")),
        ("user.name".into(), user),
        (
            "user.home".into(),
            std::env::var("HOME").unwrap_or_default(),
        ),
        (
            "user.dir".into(),
            std::env::current_dir()
                .unwrap_or_default()
                .display()
                .to_string(),
        ),
    ]
}
