//! The only module that does I/O: the client listener, one task per connection, and the
//! core task that owns the [`Engine`](crate::engine::Engine) and performs its actions.
//!
//! Tasks and channels (one owner per piece of state; no lock is held across `.await`):
//!
//! ```text
//!  listener ──accept──> connection task (reader) ──CoreMsg──> core task (Engine)
//!                        │                                     │ EngineAction::Client
//!                        └── writer task <──── Outbound ───────┘ EngineAction::Log → log stage
//! ```
//!
//! The log stage is, for now, immediate: every transaction logged in one pass of the core
//! loop is reported committed at the end of that pass (the durability work replaces it with
//! a group-committing, fsyncing writer thread without changing the engine).

mod connection;
mod core_task;
pub mod counters;
mod dir_lock;
pub mod disk;
pub mod ensemble;
#[cfg(feature = "kerberos")]
pub mod gssapi;
mod http;
mod live;
mod member;
mod peer_conn;
mod peer_guard;
pub mod peer_stream;
pub mod peers;
pub mod purge;
pub mod quorum_auth;
pub mod quorum_tls;
pub mod recovery;
pub mod sasl;
pub(crate) mod shutdown;
pub mod tls;

use crate::admin::ServerInfo;
use crate::config::Settings;
use crate::engine::{Clock, Engine, EngineConfig};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use core_task::CoreMsg;

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads the clocks the engine needs.
#[derive(Clone, Copy)]
pub struct Clocks {
    start: Instant,
}

impl Clocks {
    pub fn new() -> Self {
        Clocks {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Clock {
        let us = self.start.elapsed().as_micros() as i64;
        Clock {
            mono_ms: us / 1000,
            mono_us: us,
            wall_ms: wall_ms(),
        }
    }
}

impl Default for Clocks {
    fn default() -> Self {
        Self::new()
    }
}

/// Limits the connection tasks enforce: per connection, and `globalOutstandingLimit`
/// shared by all of them.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub max_frame: usize,
    pub max_outstanding: usize,
    pub max_queued_bytes: usize,
    pub max_queued_total: usize,
    /// Unwritten reply bytes over all connections.
    pub total_queued: Arc<std::sync::atomic::AtomicUsize>,
    pub global: Option<Arc<tokio::sync::Semaphore>>,
    /// SASL for clients, when configured.
    pub sasl: Option<Arc<sasl::SaslServer>>,
}

impl ConnLimits {
    /// The limits, and the SASL server (its JAAS file is read here: a bad one stops the
    /// start with a message naming it).
    pub fn from_settings(s: &Settings) -> std::io::Result<ConnLimits> {
        let sasl = sasl::SaslServer::load(&s.sasl).map_err(std::io::Error::other)?;
        Ok(ConnLimits {
            max_frame: s.jute_max_buffer + crate::proto::frame::HEADER_ALLOWANCE,
            max_outstanding: s.max_outstanding_per_connection,
            max_queued_bytes: s.max_queued_bytes_per_connection,
            max_queued_total: s.max_queued_bytes_total,
            total_queued: Default::default(),
            global: (s.global_outstanding_limit > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(s.global_outstanding_limit))),
            sasl,
        })
    }
}

/// Counts connections per client address for maxClientCnxns.
#[derive(Clone, Default)]
pub struct AddrCounts(Arc<Mutex<(HashMap<IpAddr, u32>, u32)>>);

/// Which connection limit a new connection ran into.
enum Refused {
    PerAddress(u32),
    Total(u32),
}

impl AddrCounts {
    /// Takes a slot for `ip`, or says which limit (non-zero) is reached: `per_ip` from one
    /// address (maxClientCnxns), `total` in all (maxCnxns).
    fn try_take(&self, ip: IpAddr, per_ip: u32, total: u32) -> Result<(), Refused> {
        let mut g = self.0.lock().expect("addr counts lock");
        let (by_ip, all) = &mut *g;
        if total != 0 && *all >= total {
            return Err(Refused::Total(total));
        }
        let n = by_ip.entry(ip).or_insert(0);
        if per_ip != 0 && *n >= per_ip {
            return Err(Refused::PerAddress(per_ip));
        }
        *n += 1;
        *all += 1;
        Ok(())
    }

    fn give_back(&self, ip: IpAddr) {
        let mut g = self.0.lock().expect("addr counts lock");
        let (by_ip, all) = &mut *g;
        if let Some(n) = by_ip.get_mut(&ip) {
            *n -= 1;
            *all -= 1;
            if *n == 0 {
                by_ip.remove(&ip);
            }
        }
    }
}

pub(super) fn engine_config(s: &Settings) -> EngineConfig {
    EngineConfig {
        server_id: s.server_id,
        tick_ms: s.tick_time as i64,
        min_session_timeout: s.min_session_timeout,
        max_session_timeout: s.max_session_timeout,
        extended_types: s.extended_types_enabled,
        super_digest: (!s.super_digest.is_empty()).then(|| s.super_digest.clone()),
        container_check_ms: s.container_check_interval_ms as i64,
        enforce_quota: s.enforce_quota,
        max_watches_per_session: s.max_watches_per_session,
        enforce_auth_schemes: match s.sasl.enforce {
            true => s.sasl.enforce_schemes.clone(),
            false => Vec::new(),
        },
        allow_sasl_failed: s.sasl.allow_failed_clients,
        leader_serves: s.leader_serves,
        local_sessions: s.local_sessions,
        local_sessions_upgrading: s.local_sessions_upgrading,
        reconfig_enabled: s.reconfig_enabled,
        standalone_enabled: s.standalone_enabled,
    }
}

/// What the operator's answers report of the configuration, in `mode`.
pub(super) fn server_info(s: &Settings, mode: &str) -> ServerInfo {
    ServerInfo {
        conf_lines: s.conf_lines(),
        configuration: configuration_json(s),
        initial_config: s.source_text.clone(),
        data_dir: s.data_dir.display().to_string(),
        data_log_dir: s.data_log_dir().display().to_string(),
        whitelist: s.four_letter_words.clone(),
        mode: mode.into(),
        environment: live::environment(),
        ..ServerInfo::default()
    }
}

/// The AdminServer's `configuration`: ZooKeeper's JSON names in its order (which differs
/// from `conf`'s: `server_id` before `client_port_listen_backlog`, no secure port).
fn configuration_json(s: &Settings) -> serde_json::Map<String, serde_json::Value> {
    // The quorum settings are in `conf`'s text only, as in ZooKeeper.
    const QUORUM: [&str; 6] = [
        "init_limit",
        "sync_limit",
        "election_alg",
        "election_port",
        "quorum_port",
        "peer_type",
    ];
    let mut entries: Vec<(&str, serde_json::Value)> = s
        .conf_entries()
        .into_iter()
        .filter(|(_, k, _)| *k != "secure_client_port" && !QUORUM.contains(k))
        .map(|(_, k, v)| (k, v))
        .collect();
    let backlog = entries
        .iter()
        .position(|(k, _)| *k == "client_port_listen_backlog");
    let id = entries.iter().position(|(k, _)| *k == "server_id");
    if let (Some(b), Some(i)) = (backlog, id) {
        entries.swap(b, i);
    }
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// `<dataDir>/version-2` and `<dataLogDir>/version-2`.
pub fn data_dirs(s: &Settings) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        s.data_dir.join(crate::persist::VERSION_DIR),
        s.data_log_dir().join(crate::persist::VERSION_DIR),
    )
}

/// The server id: `<dataDir>/myid` when that file exists (as ZooKeeper keeps it), else
/// `server_id` (`myid`) from the configuration; they must agree when both are given. An
/// ensemble member with neither is refused, naming the missing file.
fn read_myid(s: &mut Settings) -> std::io::Result<()> {
    let path = s.data_dir.join("myid");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id: i64 = text.trim().parse().map_err(|_| {
                std::io::Error::other(format!(
                    "{}: {:?} is not a server id",
                    path.display(),
                    text.trim()
                ))
            })?;
            if s.server_id != 0 && s.server_id != id {
                return Err(std::io::Error::other(format!(
                    "{} says server id {id}, the configuration says server_id = {}; \
                     they must agree",
                    path.display(),
                    s.server_id
                )));
            }
            s.server_id = id;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if s.is_ensemble() && s.server_id == 0 {
                return Err(std::io::Error::other(format!(
                    "{}: missing; an ensemble member needs its server id in this file \
                     (as ZooKeeper) or as server_id in the TOML configuration",
                    path.display()
                )));
            }
        }
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        }
    }
    Ok(())
}

/// `host:port`, with an IPv6 host in brackets.
pub(super) fn client_addr(host: &str, port: u16) -> String {
    format!("{}:{port}", crate::quorum::membership::bracketed(host))
}

/// Binds a listener, naming what it is for and the address when that fails.
pub(super) async fn bind(what: &str, addr: impl AsRef<str>) -> std::io::Result<TcpListener> {
    let addr = addr.as_ref();
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}"))
    })
}

/// The stable line that scripts and tests read to learn the client port (client_port = 0
/// picks one). Printed only once the data directory is recovered, so a readiness probe
/// that waits for it (or for the port to answer `ruok`) is not fooled by a server that
/// is about to fail recovery.
pub(super) fn announce_serving(local: SocketAddr) {
    use std::io::Write;
    println!("zabd: serving clients on {local}");
    let _ = std::io::stdout().flush();
}

/// Runs a standalone server, or an ensemble member, until the process is stopped.
pub async fn run(mut settings: Settings) -> std::io::Result<()> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
        std::io::Error::new(e.kind(), format!("{}: {e}", settings.data_dir.display()))
    })?;
    let _locks = dir_lock::lock_dirs(&settings.data_dir, settings.data_log_dir())?;
    let stop = shutdown::signals();
    live::mark_start();
    read_myid(&mut settings)?;
    if settings.is_ensemble() {
        return ensemble::run_member(&settings, stop).await;
    }
    let listener = match settings.tls.plain_port {
        true => Some(
            bind(
                "clients",
                client_addr(&settings.client_port_address, settings.client_port),
            )
            .await?,
        ),
        false => None,
    };
    if let Some(l) = &listener {
        // `conf` and `configuration` show the port really taken (client_port = 0 picks one).
        settings.client_port = l.local_addr()?.port();
    }

    let clocks = Clocks::new();
    let (snap_dir, log_dir) = data_dirs(&settings);
    let started = Instant::now();
    let rec = recovery::recover(&snap_dir, &log_dir, settings.extended_types_enabled)
        .map_err(|e| std::io::Error::other(format!("cannot recover the data directory: {e}")))?;
    counters::COUNTERS.startup(
        started.elapsed().as_millis() as i64,
        rec.replayed as u64,
        rec.snap_load_ms,
        rec.txns_load_ms,
    );
    tracing::info!(
        snapshot = format_args!("0x{:x}", rec.snapshot_zxid),
        replayed = rec.replayed,
        last_zxid = format_args!("0x{:x}", rec.tree.last_zxid),
        nodes = rec.tree.node_count(),
        digest = rec.tree.digest,
        sessions = rec.sessions.len(),
        ms = started.elapsed().as_millis() as u64,
        "data directory recovered"
    );
    let mut engine = Engine::recovered(
        engine_config(&settings),
        rec.tree,
        rec.sessions,
        clocks.now(),
    );
    engine.stats.digest_mismatches = rec.digest_mismatches as u64;
    let info = server_info(&settings, "standalone");
    let (core_tx, core_rx) = mpsc::unbounded_channel();
    let tick = std::time::Duration::from_millis((settings.tick_time / 4).clamp(10, 500));
    let log = disk::start_log_writer(
        disk::LogConfig::from_settings(log_dir.clone(), &settings),
        core_tx.clone(),
    );
    let retain = settings.autopurge_snap_retain_count;
    let snapshots = disk::start_snapshot_writer(snap_dir.clone());
    let persistence = core_task::Persistence::new(log, snapshots, settings.snap_count);
    if !settings.force_sync {
        tracing::warn!("force_sync is off: acknowledged writes can be lost in a power failure");
    }
    if settings.autopurge_purge_interval_hours > 0 {
        let every = std::time::Duration::from_secs(settings.autopurge_purge_interval_hours * 3600);
        tokio::spawn(autopurge(snap_dir, log_dir, retain, every));
    }
    supervise(
        "core",
        tokio::spawn(core_task::run(
            engine,
            info,
            core_rx,
            clocks,
            tick,
            persistence,
        )),
    );

    let limits = ConnLimits::from_settings(&settings)?;
    http::start(&settings, &core_tx).await?;
    let (listeners, local) = client_listeners(&settings, listener).await?;
    announce_serving(local);
    tracing::info!(%local, "zabd standalone server started");
    let accepting = accept_loop(
        listeners,
        core_tx.clone(),
        limits,
        settings.max_client_cnxns,
        settings.max_cnxns,
    );
    tokio::select! {
        r = accepting => r,
        signal = stop => {
            shutdown::drain(signal, &core_tx).await;
            Ok(())
        }
    }
}

/// Watches a task that owns state: if it panics or ends, the process stops with code 70
/// and one line saying which. A supervisor restarts it; it never lingers half-alive
/// (accepting connections nobody answers).
pub(super) fn supervise<T: Send + 'static>(name: &'static str, task: tokio::task::JoinHandle<T>) {
    tokio::spawn(async move {
        let why = match task.await {
            Err(e) if e.is_panic() => "panicked",
            Err(_) => "was cancelled",
            Ok(_) => "stopped",
        };
        tracing::error!(task = name, "the {name} task {why}; stopping");
        eprintln!("zabd: the {name} task {why}; stopping");
        std::process::exit(70);
    });
}

pub(super) async fn autopurge(
    snap_dir: std::path::PathBuf,
    log_dir: std::path::PathBuf,
    retain: u32,
    every: std::time::Duration,
) {
    let mut t = tokio::time::interval(every);
    loop {
        t.tick().await;
        let (s, l) = (snap_dir.clone(), log_dir.clone());
        match tokio::task::spawn_blocking(move || purge::purge(&s, &l, retain)).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "autopurge failed"),
            Err(e) => tracing::warn!(error = %e, "autopurge task failed"),
            Ok(Ok(_)) => {}
        }
    }
}

/// The client listeners: the plain port (taking TLS too with port unification), when open,
/// and the secure port, when configured; and the address announced as the clients' (the
/// plain port's, else the secure one's). The TLS stores are loaded here, so a bad one stops
/// the start with a message naming it.
pub(super) async fn client_listeners(
    settings: &Settings,
    plain: Option<TcpListener>,
) -> std::io::Result<(Vec<(TcpListener, tls::Transport)>, SocketAddr)> {
    let t = &settings.tls;
    let mut out = Vec::new();
    let loaded = match t.enabled() {
        true => {
            let loaded = tls::Tls::load(t).map_err(std::io::Error::other)?;
            loaded.watch();
            Some(loaded)
        }
        false => None,
    };
    if let Some(plain) = plain {
        let transport = match (&loaded, t.port_unification) {
            (Some(l), true) => tls::Transport::Unified(l.clone()),
            _ => tls::Transport::Plain,
        };
        out.push((plain, transport));
    }
    if let (Some(loaded), true) = (loaded, t.secure_client_port != 0) {
        let addr = client_addr(&t.secure_client_port_address, t.secure_client_port);
        let secure = bind("TLS clients (secureClientPort)", addr).await?;
        println!("zabd: serving TLS clients on {}", secure.local_addr()?);
        out.push((secure, tls::Transport::Tls(loaded)));
    }
    let Some((first, _)) = out.first() else {
        return Err(std::io::Error::other("no client port is configured"));
    };
    let announced = first.local_addr()?;
    Ok((out, announced))
}

/// Accepts clients on every listener until one fails for good; the connection limits
/// (`maxClientCnxns`, `maxCnxns`) count all of them together.
pub(super) async fn accept_loop(
    listeners: Vec<(TcpListener, tls::Transport)>,
    core_tx: mpsc::UnboundedSender<CoreMsg>,
    limits: ConnLimits,
    max_per_ip: u32,
    max_total: u32,
) -> std::io::Result<()> {
    let counts = AddrCounts::default();
    let next_conn = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let mut loops = tokio::task::JoinSet::new();
    for (listener, transport) in listeners {
        let port = PortLoop {
            counts: counts.clone(),
            next_conn: next_conn.clone(),
            core_tx: core_tx.clone(),
            limits: limits.clone(),
            max_per_ip,
            max_total,
        };
        loops.spawn(port.run(listener, transport));
    }
    match loops.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(std::io::Error::other(e)),
        None => Ok(()),
    }
}

/// What one client listener's accept loop shares with the others.
struct PortLoop {
    counts: AddrCounts,
    next_conn: Arc<std::sync::atomic::AtomicU64>,
    core_tx: mpsc::UnboundedSender<CoreMsg>,
    limits: ConnLimits,
    max_per_ip: u32,
    max_total: u32,
}

impl PortLoop {
    async fn run(self, listener: TcpListener, transport: tls::Transport) -> std::io::Result<()> {
        loop {
            let (stream, peer): (_, SocketAddr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self
                .counts
                .try_take(peer.ip(), self.max_per_ip, self.max_total)
            {
                Ok(()) => {}
                Err(Refused::PerAddress(max)) => {
                    counters::COUNTERS.connection_rejected();
                    tracing::warn!(%peer, max, "too many connections from this address (maxClientCnxns); closing");
                    continue;
                }
                Err(Refused::Total(max)) => {
                    counters::COUNTERS.connection_rejected();
                    tracing::warn!(%peer, "Too many connections, max allowed is {max} (maxCnxns); closing");
                    continue;
                }
            }
            let _ = stream.set_nodelay(true);
            let conn = self
                .next_conn
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let core_tx = self.core_tx.clone();
            let counts = self.counts.clone();
            let limits = self.limits.clone();
            let transport = transport.clone();
            tokio::spawn(async move {
                connection::serve(conn, stream, peer, transport, core_tx, limits).await;
                counts.give_back(peer.ip());
            });
        }
    }
}
