//! The operator's view of a server: four-letter words on the client port (`words.rs`), the
//! AdminServer's `/commands/<name>` JSON (`commands.rs`), the `mntr`/`monitor` figures that
//! both and the Prometheus endpoint share (`monitor.rs`, `prometheus.rs`), in Apache
//! ZooKeeper 3.8's formats and names.
//!
//! Owns: the text and JSON of each answer. Reads the engine; never changes it, except the
//! resets (`srst`, `crst`, `stat_reset`, `connection_stat_reset`) and the trace mask
//! (`stmk`, `set_trace_mask`). No I/O: what only the server knows (addresses, uptime,
//! file descriptors, disk counters) arrives in [`ServerInfo`], filled by `src/server/`.

pub mod commands;
pub mod monitor;
pub mod prometheus;
pub mod summary;
pub mod words;

use crate::engine::{ConnId, Engine};
use std::collections::HashMap;

pub use words::answer;

/// The ZooKeeper version zabd reports (clients such as kazoo parse it from `envi`).
pub const ZK_VERSION: &str = "3.9.2";

/// Every four-letter word ZooKeeper 3.8 has.
pub const WORDS: [&str; 18] = [
    "ruok", "srvr", "stat", "mntr", "envi", "conf", "isro", "cons", "wchs", "wchc", "wchp", "dump",
    "dirs", "srst", "crst", "gtmk", "stmk", "hash",
];

/// Is this 4-byte prefix a four-letter word?
pub fn is_word(prefix: &[u8]) -> Option<&'static str> {
    WORDS.iter().copied().find(|w| w.as_bytes() == prefix)
}

/// Figures the I/O side keeps (`server/counters.rs`).
#[derive(Debug, Clone, Default)]
pub struct IoFigures {
    pub bytes_received: u64,
    pub connection_rejected: u64,
    pub sessionless_expired: u64,
    /// TLS handshakes that failed on the client port.
    pub unsuccessful_handshake: u64,
    pub fsync_threshold_exceeded: u64,
    /// Times a member began looking for a leader, and how long each election took (ms).
    pub looking: u64,
    pub election: summary::Summary,
    /// ms from losing a leader (or starting) to serving again, and the same for the
    /// times this member came back as leader (`unavailable_time`, `leader_unavailable_time`).
    pub unavailable: summary::Summary,
    pub leader_unavailable: summary::Summary,
    /// Log syncs, in ms.
    pub fsync: summary::Summary,
    /// Snapshots serialized, in ms.
    pub snapshot: summary::Summary,
    /// Startup: ms to recover the data directory, and transactions replayed.
    pub dbinit_ms: i64,
    pub startup_txns: u64,
    pub snap_load_ms: i64,
    pub txns_load_ms: i64,
    /// The last snapshot written: zxid (-1: none this run) and wall-clock ms.
    pub last_snapshot: (i64, i64),
}

/// What an ensemble member adds: its role's details.
#[derive(Debug, Clone, Default)]
pub struct QuorumInfo {
    pub my_id: i64,
    /// Voting members.
    pub quorum_size: usize,
    /// ZooKeeper's `peer_state`, e.g. `following - broadcast`.
    pub peer_state: String,
    /// `server.N=...` lines of the configuration, by id (voters and observers).
    pub members: Vec<(i64, String)>,
    pub voters: Vec<i64>,
    /// The leader's id, when there is one.
    pub leader: Option<i64>,
    /// Leader only: ms since it began leading.
    pub leader_uptime_ms: Option<u64>,
    /// Leader only: connected learners (id, address, observer?).
    pub learners: Vec<(i64, String, bool)>,
    /// Leader only: observers synced with it.
    pub synced_observers: usize,
    /// The zab state, lower case (`broadcast`, `synchronization`, `discovery`, `election`).
    pub zab_state: String,
    /// This member's quorum, election and client addresses (`host:port`).
    pub addresses: (String, String, String),
}

/// Facts about the server that the engine does not hold.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    /// `key=value` lines for `conf`.
    pub conf_lines: Vec<String>,
    /// The AdminServer's `configuration`: the same settings by ZooKeeper's JSON names.
    pub configuration: serde_json::Map<String, serde_json::Value>,
    /// The configuration file's text (`initial_configuration`).
    pub initial_config: String,
    pub data_dir: String,
    pub data_log_dir: String,
    pub whitelist: Vec<String>,
    pub mode: String,
    /// Bytes in the snapshot and log directories, measured by the server for `dirs`.
    pub dir_sizes: (u64, u64),
    /// Rows an ensemble leader adds to `mntr` (learner counts).
    pub ensemble_rows: Vec<(&'static str, String)>,
    /// Each connection's remote address (`ip:port`).
    pub peers: HashMap<ConnId, String>,
    pub uptime_ms: u64,
    /// Open file descriptors and the limit (-1: unknown).
    pub fds: (i64, i64),
    pub io: IoFigures,
    pub quorum: Option<QuorumInfo>,
    /// Wall-clock ms now (for `dump`'s expiry times).
    pub wall_ms: i64,
    /// `envi`'s lines after the version: host and process facts gathered at startup.
    pub environment: Vec<(String, String)>,
    /// Process figures for Prometheus (`process_cpu_seconds_total`...), read now.
    pub process: Vec<(&'static str, monitor::Kind, f64)>,
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

/// ZooKeeper's node count: its map holds the root twice (as "" and "/"), and operators'
/// dashboards compare against that figure.
pub fn znode_count(engine: &Engine) -> usize {
    engine.tree.node_count() + 1
}
