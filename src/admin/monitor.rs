//! The figures of `mntr`, the AdminServer's `monitor` and the Prometheus endpoint: one list,
//! with ZooKeeper 3.8's names (without the `zk_` prefix `mntr` adds) and kinds.
//!
//! Left out on purpose, because they count ZooKeeper's own machinery that zabd does not
//! have (the JVM, Netty, its request-processor threads and queues, its TLS handshakes,
//! its response cache, per-namespace quota gauges): see `docs/monitoring.md` for the list.

use super::summary::Summary;
use super::{version_line, znode_count, ServerInfo};
use crate::engine::Engine;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Value {
    /// As `mntr` prints it (Java's formatting of a long, a double or a string).
    pub fn text(&self) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::Float(x) => super::words::java_double(*x),
            Value::Text(s) => s.clone(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        match self {
            Value::Int(n) => serde_json::json!(n),
            Value::Float(x) => serde_json::json!((x * 10_000.0).round() / 10_000.0),
            Value::Text(s) => serde_json::json!(s),
        }
    }
}

/// How Prometheus sees a figure (ZooKeeper registers each as a gauge or a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    /// Text: `mntr` and `monitor` only.
    Info,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub value: Value,
    pub kind: Kind,
}

fn row(key: &str, value: Value, kind: Kind) -> Row {
    Row {
        key: key.to_string(),
        value,
        kind,
    }
}

fn gauge(key: &str, n: impl TryInto<i64>) -> Row {
    row(
        key,
        Value::Int(n.try_into().unwrap_or(i64::MAX)),
        Kind::Gauge,
    )
}

fn counter(key: &str, n: u64) -> Row {
    row(key, Value::Int(n as i64), Kind::Counter)
}

/// A summary: name, figures, and whether ZooKeeper adds percentiles (its "advanced" ones).
pub struct SummaryRow {
    pub key: &'static str,
    pub summary: Summary,
    pub percentiles: bool,
}

/// The summaries zabd keeps, by ZooKeeper's names.
pub fn summaries(engine: &Engine, info: &ServerInfo) -> Vec<SummaryRow> {
    let one = |v: i64| {
        let mut s = Summary::default();
        s.add(v);
        s
    };
    // ZooKeeper's "basic" summaries carry the median; its "advanced" ones percentiles too.
    let basic = |key, summary| SummaryRow {
        key,
        summary,
        percentiles: false,
    };
    let advanced = |key, summary| SummaryRow {
        key,
        summary,
        percentiles: true,
    };
    vec![
        basic("fsynctime", info.io.fsync.clone()),
        basic("snapshottime", info.io.snapshot.clone()),
        basic("dbinittime", one(info.io.dbinit_ms)),
        basic("startup_txns_loaded", one(info.io.startup_txns as i64)),
        basic("startup_snap_load_time", one(info.io.snap_load_ms)),
        basic("startup_txns_load_time", one(info.io.txns_load_ms)),
        basic(
            "node_created_watch_count",
            engine.stats.watch_fired[0].clone(),
        ),
        basic(
            "node_deleted_watch_count",
            engine.stats.watch_fired[1].clone(),
        ),
        basic(
            "node_changed_watch_count",
            engine.stats.watch_fired[2].clone(),
        ),
        basic(
            "node_children_watch_count",
            engine.stats.watch_fired[3].clone(),
        ),
        basic("election_time", info.io.election.clone()),
        advanced(
            "propagation_latency",
            engine.stats.propagation_latency.clone(),
        ),
        advanced(
            "quorum_ack_latency",
            engine.stats.quorum_ack_latency.clone(),
        ),
        advanced("proposal_latency", engine.stats.proposal_latency.clone()),
        advanced(
            "proposal_ack_creation_latency",
            engine.stats.proposal_ack_creation_latency.clone(),
        ),
        advanced(
            "commit_propagation_latency",
            engine.stats.commit_propagation_latency.clone(),
        ),
        basic(
            "follower_sync_time",
            engine.stats.follower_sync_time.clone(),
        ),
        basic(
            "observer_sync_time",
            engine.stats.observer_sync_time.clone(),
        ),
        basic("unavailable_time", info.io.unavailable.clone()),
        basic(
            "leader_unavailable_time",
            info.io.leader_unavailable.clone(),
        ),
        advanced("readlatency", engine.stats.read_latency.clone()),
        advanced("updatelatency", engine.stats.update_latency.clone()),
    ]
}

/// Every figure, in `mntr`'s order: ZooKeeper's gauges, its counters, its summaries
/// expanded as `mntr` prints them (`avg_`, `min_`, `max_`, `cnt_`, `sum_`, and `p50_`...
/// for the percentile ones), then zabd's own under `zabd_`.
pub fn rows(engine: &Engine, info: &ServerInfo) -> Vec<Row> {
    let st = &engine.stats;
    let (last_rsp, min_rsp, max_rsp) = st
        .response_size
        .map_or((-1, -1, -1), |(a, b, c)| (a as i64, b as i64, c as i64));
    let mut v = vec![
        row("version", Value::Text(version_line()), Kind::Info),
        row("server_state", Value::Text(info.mode.clone()), Kind::Info),
    ];
    if let Some(q) = &info.quorum {
        v.push(row(
            "peer_state",
            Value::Text(q.peer_state.clone()),
            Kind::Info,
        ));
    }
    v.extend([
        gauge("ephemerals_count", engine.tree.ephemeral_count()),
        gauge("num_alive_connections", engine.connection_count()),
        row("avg_latency", Value::Float(st.avg_latency()), Kind::Gauge),
        gauge("outstanding_requests", engine.outstanding()),
        gauge("znode_count", znode_count(engine)),
        gauge(
            "global_sessions",
            engine.sessions.len() - engine.local_session_count(),
        ),
        gauge("last_client_response_size", last_rsp),
        gauge("max_client_response_size", max_rsp),
        gauge("watch_count", engine.tree.watches.count()),
        gauge("auth_failed_count", st.auth_failed),
        gauge("min_latency", st.latency_min_ms),
        gauge("max_file_descriptor_count", info.fds.1),
        gauge("approximate_data_size", engine.tree.approximate_data_size()),
        gauge("open_file_descriptor_count", info.fds.0),
        gauge("local_sessions", engine.local_session_count()),
        gauge("uptime", info.uptime_ms),
        gauge("max_latency", st.latency_max_ms),
        gauge("min_client_response_size", min_rsp),
        gauge("packets_sent", st.packets_sent),
        gauge("packets_received", st.packets_received),
    ]);
    if let Some(q) = &info.quorum {
        v.push(gauge("quorum_size", q.quorum_size));
        if let Some(up) = q.leader_uptime_ms {
            v.push(gauge("leader_uptime", up));
        }
    }
    for (k, val) in &info.ensemble_rows {
        if let Some(key) = k.strip_prefix("zk_") {
            let n = val.parse::<i64>().unwrap_or(0);
            v.push(gauge(key, n));
        }
    }
    v.extend([
        counter("connection_rejected", info.io.connection_rejected),
        counter("unsuccessful_handshake", info.io.unsuccessful_handshake),
        counter(
            "sessionless_connections_expired",
            info.io.sessionless_expired,
        ),
        counter("digest_mismatches_count", st.digest_mismatches),
        counter("stale_sessions_expired", st.sessions_expired),
        counter("bytes_received_count", info.io.bytes_received),
        counter("connection_request_count", st.connection_requests),
        counter("response_bytes", st.response_bytes),
        counter("looking_count", info.io.looking),
        counter("proposal_count", st.quorum.proposals),
        counter("commit_count", st.quorum.commits),
        counter(
            "learner_proposal_received_count",
            st.quorum.learner_proposals,
        ),
        counter("learner_commit_received_count", st.quorum.learner_commits),
        counter("diff_count", st.quorum.diffs),
        counter("snap_count", st.quorum.snaps),
        counter("revalidate_count", st.quorum.revalidates),
        counter(
            "connection_revalidate_count",
            st.quorum.connection_revalidates,
        ),
        counter(
            "fsync_threshold_exceed_count",
            info.io.fsync_threshold_exceeded,
        ),
    ]);
    for s in summaries(engine, info) {
        let k = s.key;
        let m = &s.summary;
        v.push(row(&format!("avg_{k}"), Value::Float(m.avg()), Kind::Gauge));
        v.push(gauge(&format!("min_{k}"), m.min));
        v.push(gauge(&format!("max_{k}"), m.max));
        v.push(gauge(&format!("cnt_{k}"), m.count));
        v.push(gauge(&format!("sum_{k}"), m.sum));
        if s.percentiles {
            for (p, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999)] {
                v.push(gauge(&format!("{p}_{k}"), m.quantile(q)));
            }
        }
    }
    // zabd's own: what replicas compare, the core loop's longest pass, and the write
    // path's stages in microseconds (`engine::stats::WritePath`).
    v.extend([
        gauge("zabd_last_applied_zxid", engine.last_zxid()),
        row(
            "zabd_tree_digest",
            Value::Text(engine.tree.digest.to_string()),
            Kind::Info,
        ),
        row(
            "zabd_core_stall_max_ms",
            Value::Float(st.core_stall_max_us as f64 / 1000.0),
            Kind::Gauge,
        ),
    ]);
    let wp = &st.write_path;
    for (stage, m) in [
        ("update", &wp.update_us),
        ("leader_fsync", &wp.leader_fsync_us),
        ("leader_quorum", &wp.leader_quorum_us),
        ("learner_fsync", &wp.learner_fsync_us),
        ("learner_commit", &wp.learner_commit_us),
    ] {
        let k = format!("zabd_write_{stage}_us");
        v.push(gauge(&format!("{k}_cnt"), m.count));
        v.push(row(&format!("{k}_avg"), Value::Float(m.avg()), Kind::Gauge));
        v.push(gauge(&format!("{k}_p50"), m.quantile(0.5)));
        v.push(gauge(&format!("{k}_p99"), m.quantile(0.99)));
    }
    for (k, val) in &info.ensemble_rows {
        if k.starts_with("zabd_") {
            v.push(gauge(k, val.parse::<i64>().unwrap_or(0)));
        }
    }
    v
}

/// The name `mntr` prints for a row: `zk_<key>`, or zabd's own `zabd_<key>` as it is.
pub fn mntr_name(r: &Row) -> String {
    if r.key.starts_with("zabd_") {
        r.key.clone()
    } else {
        format!("zk_{}", r.key)
    }
}

/// Each session's ephemeral nodes, sessions without any left out.
pub fn ephemerals_by_session(engine: &Engine) -> Vec<(i64, Vec<String>)> {
    engine
        .session_list()
        .iter()
        .map(|(id, _)| (*id, engine.tree.ephemerals_of(*id)))
        .filter(|(_, paths)| !paths.is_empty())
        .collect()
}

/// `envi` and `environment`: ZooKeeper's keys where zabd has them (no `java.*`).
pub fn environment(info: &ServerInfo) -> Vec<(String, String)> {
    let mut v = vec![("zookeeper.version".to_string(), version_line())];
    v.extend(info.environment.iter().cloned());
    v.push(("zookeeper.dataDir".into(), info.data_dir.clone()));
    v.push(("zookeeper.dataLogDir".into(), info.data_log_dir.clone()));
    v
}
