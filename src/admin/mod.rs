//! Four-letter words: the operator's health and status commands on the client port.
//!
//! Owns: the text of each answer. Reads the engine; never changes it (except `srst` and `crst`,
//! which reset counters). A connection whose first four bytes spell a known word gets
//! the answer and is closed; a known word not in `4lw.commands.whitelist` gets ZooKeeper's
//! "is not executed because it is not in the whitelist." line.

use crate::engine::Engine;
use std::fmt::Write;

/// The ZooKeeper version zabd reports (clients such as kazoo parse it from `envi`).
pub const ZK_VERSION: &str = "3.9.2";

/// Every word zabd recognises.
pub const WORDS: [&str; 15] = [
    "ruok", "srvr", "stat", "mntr", "envi", "conf", "isro", "cons", "wchs", "wchc", "wchp", "dump",
    "dirs", "srst", "crst",
];

/// Is this 4-byte prefix a four-letter word?
pub fn is_word(prefix: &[u8]) -> Option<&'static str> {
    WORDS.iter().copied().find(|w| w.as_bytes() == prefix)
}

/// Facts about the server that the engine does not hold.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// `key=value` lines for `conf`.
    pub conf_lines: Vec<String>,
    pub data_dir: String,
    pub data_log_dir: String,
    pub whitelist: Vec<String>,
    pub mode: String,
    /// Bytes in the snapshot and log directories, measured by the server for `dirs`.
    pub dir_sizes: (u64, u64),
    /// Rows an ensemble leader adds to `mntr` (learner counts).
    pub ensemble_rows: Vec<(&'static str, String)>,
}

pub fn version_line() -> String {
    format!(
        "{ZK_VERSION}-zabd-{}, built on {}",
        env!("CARGO_PKG_VERSION"),
        "zabd"
    )
}

/// Is `word` in the whitelist (`*` allows every word)?
pub fn allowed(word: &str, whitelist: &[String]) -> bool {
    whitelist.iter().any(|w| w == "*" || w == word)
}

/// ZooKeeper's answer to a known word that the whitelist does not allow.
pub fn not_whitelisted(word: &str) -> String {
    format!("{word} is not executed because it is not in the whitelist.\n")
}

/// The answer to `word`.
pub fn answer(word: &str, engine: &mut Engine, info: &ServerInfo) -> String {
    if !allowed(word, &info.whitelist) {
        return not_whitelisted(word);
    }
    match word {
        "ruok" => "imok".to_string(),
        "isro" => "rw".to_string(),
        "srvr" => srvr(engine, info, false),
        "stat" => srvr(engine, info, true),
        "mntr" => mntr(engine, info),
        "envi" => envi(info),
        "conf" => info.conf_lines.iter().map(|l| format!("{l}\n")).collect(),
        "cons" => cons(engine),
        "wchs" => format!(
            "{} connections watching {} paths\nTotal watches:{}\n",
            engine.connection_count(),
            engine.tree.watches.paths(),
            engine.tree.watches.count()
        ),
        "wchc" => wchc(engine),
        "wchp" => wchp(engine),
        "dump" => dump(engine),
        "dirs" => dirs(info),
        "srst" => {
            engine.stats.reset();
            "Server stats reset.\n".to_string()
        }
        "crst" => {
            engine.reset_connection_stats();
            "Connection stats reset.\n".to_string()
        }
        _ => String::new(),
    }
}

/// `wchc`: each watching session and the paths it watches.
fn wchc(engine: &Engine) -> String {
    let mut s = String::new();
    for (session, paths) in engine.tree.watches.by_session() {
        let _ = writeln!(s, "0x{session:x}");
        for p in paths {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s
}

/// `wchp`: each watched path and the sessions watching it.
fn wchp(engine: &Engine) -> String {
    let mut s = String::new();
    for (p, sessions) in engine.tree.watches.by_path() {
        let _ = writeln!(s, "{p}");
        for session in sessions {
            let _ = writeln!(s, "\t0x{session:x}");
        }
    }
    s
}

/// `dump`: the open sessions with their timeouts, then each session's ephemeral nodes.
fn dump(engine: &Engine) -> String {
    let sessions = engine.session_list();
    let mut s = String::from("SessionTracker dump:\n");
    let _ = writeln!(s, "Global Sessions({}):", sessions.len());
    for (id, timeout) in &sessions {
        let _ = writeln!(s, "0x{id:x}\t{timeout}ms");
    }
    s.push_str("ephemeral nodes dump:\n");
    let owners: Vec<(i64, Vec<String>)> = sessions
        .iter()
        .map(|(id, _)| (*id, engine.tree.ephemerals_of(*id)))
        .filter(|(_, paths)| !paths.is_empty())
        .collect();
    let _ = writeln!(s, "Sessions with Ephemerals ({}):", owners.len());
    for (id, paths) in owners {
        let _ = writeln!(s, "0x{id:x}:");
        for p in paths {
            let _ = writeln!(s, "\t{p}");
        }
    }
    s
}

fn dirs(info: &ServerInfo) -> String {
    format!(
        "datadir_size: {}\nlogdir_size: {}\n",
        info.dir_sizes.0, info.dir_sizes.1
    )
}

fn cons(engine: &Engine) -> String {
    let mut s = String::new();
    for c in engine.connection_views() {
        let _ = writeln!(
            s,
            " /{}:0[1](queued={},recved={},sent={},sid=0x{:x})",
            c.ip,
            c.queued,
            c.received,
            c.sent,
            c.session.unwrap_or(0)
        );
    }
    s.push('\n');
    s
}

fn srvr(engine: &Engine, info: &ServerInfo, with_clients: bool) -> String {
    let st = &engine.stats;
    let mut s = String::new();
    let _ = writeln!(s, "Zookeeper version: {}", version_line());
    if with_clients {
        s.push_str("Clients:\n");
        s.push_str(&cons(engine));
    }
    let _ = writeln!(
        s,
        "Latency min/avg/max: {}/{:.4}/{}",
        st.latency_min_ms,
        st.avg_latency(),
        st.latency_max_ms
    );
    let _ = writeln!(s, "Received: {}", st.packets_received);
    let _ = writeln!(s, "Sent: {}", st.packets_sent);
    let _ = writeln!(s, "Connections: {}", engine.connection_count());
    let _ = writeln!(s, "Outstanding: {}", engine.outstanding());
    let _ = writeln!(s, "Zxid: 0x{:x}", engine.reported_zxid());
    let _ = writeln!(s, "Mode: {}", info.mode);
    let _ = writeln!(s, "Node count: {}", znode_count(engine));
    s
}

fn mntr(engine: &Engine, info: &ServerInfo) -> String {
    let st = &engine.stats;
    let rows: Vec<(&str, String)> = vec![
        ("zk_version", version_line()),
        ("zk_server_state", info.mode.clone()),
        ("zk_avg_latency", format!("{:.4}", st.avg_latency())),
        ("zk_max_latency", st.latency_max_ms.to_string()),
        ("zk_min_latency", st.latency_min_ms.to_string()),
        ("zk_packets_received", st.packets_received.to_string()),
        ("zk_packets_sent", st.packets_sent.to_string()),
        (
            "zk_num_alive_connections",
            engine.connection_count().to_string(),
        ),
        ("zk_outstanding_requests", engine.outstanding().to_string()),
        ("zk_znode_count", znode_count(engine).to_string()),
        ("zk_watch_count", engine.tree.watches.count().to_string()),
        (
            "zk_ephemerals_count",
            engine.tree.ephemeral_count().to_string(),
        ),
        (
            "zk_approximate_data_size",
            engine.tree.approximate_data_size().to_string(),
        ),
        ("zk_global_sessions", engine.sessions.len().to_string()),
        ("zk_last_proposal_size", "-1".to_string()),
        (
            "zk_digest_mismatches_count",
            st.digest_mismatches.to_string(),
        ),
        // What replicas compare: the last applied zxid and the tree digest there.
        ("zabd_last_applied_zxid", engine.last_zxid().to_string()),
        ("zabd_tree_digest", engine.tree.digest.to_string()),
        (
            "zabd_core_stall_max_ms",
            format!("{:.1}", st.core_stall_max_us as f64 / 1000.0),
        ),
    ];
    rows.iter()
        .chain(info.ensemble_rows.iter())
        .map(|(k, v)| format!("{k}\t{v}\n"))
        .collect()
}

/// ZooKeeper's node count: its map holds the root twice (as "" and "/"), and operators'
/// dashboards compare against that figure.
fn znode_count(engine: &Engine) -> usize {
    engine.tree.node_count() + 1
}

fn envi(info: &ServerInfo) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let mut s = String::from("Environment:\n");
    let _ = writeln!(s, "zookeeper.version={}", version_line());
    let _ = writeln!(s, "host.name={}", host.trim());
    let _ = writeln!(s, "zabd.version={}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(s, "os.name={}", std::env::consts::OS);
    let _ = writeln!(s, "os.arch={}", std::env::consts::ARCH);
    let _ = writeln!(
        s,
        "user.dir={}",
        std::env::current_dir().unwrap_or_default().display()
    );
    let _ = writeln!(s, "zookeeper.dataDir={}", info.data_dir);
    let _ = writeln!(s, "zookeeper.dataLogDir={}", info.data_log_dir);
    s
}
