//! The `zabd` binary: parse arguments, load configuration, start tracing and the runtime,
//! and hand over to `zabd::server::run`. No logic lives here.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use zabd::config::Settings;

/// jemalloc: about a quarter more requests per second than the system allocator under
/// load (`docs/performance.md`). Its background thread returns freed pages to the system
/// after a few seconds, so a large transient (loading a snapshot) does not stay in RSS.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:5000\0";

#[derive(Parser)]
#[command(
    name = "zabd",
    version,
    about = "A ZooKeeper-compatible coordination server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// zabd TOML, or an Apache ZooKeeper zoo.cfg when the name ends in .cfg.
    /// Without it, the embedded default (conf/zabd.toml) is used.
    /// (No short form: `-c` is `zabd cli`'s command, as zkCli's.)
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Overrides the client port (0 picks a free one; the chosen address is printed).
    #[arg(long)]
    client_port: Option<u16>,
    /// Overrides the client listen address.
    #[arg(long)]
    client_address: Option<String>,
    /// Overrides the data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log line format: text (human-readable; colour only on a terminal) or json (one JSON
    /// object per line, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// A ZooKeeper system property, as JVMFLAGS' -Dkey=value (e.g.
    /// zookeeper.snapCount=50000, jute.maxbuffer=4194304); repeatable, applied over the file.
    #[arg(long = "property", short = 'D', value_name = "KEY=VALUE", global = true, value_parser = parse_property)]
    properties: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Load generator for any ZooKeeper-compatible server or ensemble: prints throughput
    /// and latency percentiles, and writes them as JSON.
    #[cfg(feature = "tools")]
    Bench(BenchArgs),
    /// A client shell with zkCli's commands and output: interactive (history in
    /// ~/.zabd_history), `-c "command"`, or commands on stdin, one per line.
    #[cfg(feature = "tools")]
    Cli(CliArgs),
    /// Prints a transaction log file (zabd's or Apache ZooKeeper's), as ZooKeeper's
    /// TxnLogToolkit does.
    Txnlog {
        #[command(subcommand)]
        what: DumpCmd,
    },
    /// Prints a snapshot file (zabd's or Apache ZooKeeper's), as ZooKeeper's
    /// SnapshotFormatter does.
    Snapshot {
        #[command(subcommand)]
        what: DumpCmd,
    },
    /// Sends a four-letter word to a server and prints its answer (no nc needed).
    #[command(name = "4lw")]
    FourLetter(FourArgs),
    /// Deletes old snapshots and the logs only they need, keeping the newest COUNT snapshots
    /// (ZooKeeper's zkCleanup.sh / PurgeTxnLog). Uses the data directories of the config.
    Purge {
        /// Snapshots to keep (at least 3).
        #[arg(short = 'n', long, default_value_t = 3)]
        count: u32,
    },
}

#[derive(clap::Subcommand)]
enum DumpCmd {
    /// Print the file.
    Dump {
        file: PathBuf,
        /// Snapshots: also print each node's data (base64).
        #[arg(short, long)]
        data: bool,
    },
}

/// `zabd cli [host:port,...] [-c command]`.
#[cfg(feature = "tools")]
#[derive(clap::Args)]
struct CliArgs {
    /// Connect string.
    #[arg(default_value = "127.0.0.1:2181")]
    servers: String,
    /// Runs this command and exits (0 if it succeeded).
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Session timeout in ms.
    #[arg(long, default_value_t = 30000)]
    timeout: u64,
}

/// `zabd 4lw WORD [host:port]`.
#[derive(clap::Args)]
struct FourArgs {
    /// The word (ruok, srvr, stat, mntr, conf, cons, dump, envi, wchs, wchc, wchp, dirs,
    /// isro, crst, srst, gtmk, hash; stmk takes MASK).
    word: String,
    /// The server's client address.
    #[arg(default_value = "127.0.0.1:2181")]
    server: String,
    /// stmk's trace mask.
    #[arg(long)]
    mask: Option<i64>,
}

#[cfg(feature = "tools")]
#[derive(clap::Args)]
struct BenchArgs {
    /// Connect string: host:port[,host:port...] (sessions spread over them).
    #[arg(long, default_value = "127.0.0.1:2181")]
    servers: String,
    /// Client sessions.
    #[arg(long, default_value_t = 32)]
    sessions: usize,
    /// Requests in flight per session.
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    /// Op mix: create, set, get, exists, children, multi, churn (ephemeral create+delete),
    /// read90 (get=90,set=10), or a weighted list like get=80,create=20.
    #[arg(long, default_value = "create")]
    mix: String,
    /// Bytes per value written.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Existing nodes that reads and setData pick from.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// At most this many measured operations.
    #[arg(long, default_value_t = 50_000_000)]
    max_ops: u64,
    /// Watch fan-out instead: this many sessions watch one node that another updates;
    /// the figure is the time until all have seen the event.
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// Also measure staleness during the load: a write acknowledged on the first server
    /// of --servers until a reader polling the second sees it.
    #[arg(long)]
    staleness: bool,
    /// Session i connects to server i mod n of --servers only, instead of letting the
    /// client pick from the whole string: an even, repeatable spread over an ensemble.
    #[arg(long)]
    round_robin: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The client tools log only problems unless asked.
    let level = if cli.command.as_ref().is_some_and(Cmd::is_client_tool) {
        "warn"
    } else {
        "info"
    };
    let filter = match log_filter(level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("zabd: {e}");
            return ExitCode::from(2);
        }
    };
    // Colour only on a terminal: log files and journald get plain text.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().with_current_span(false).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    #[cfg(feature = "tools")]
    if let Some(Cmd::Bench(b)) = &cli.command {
        return bench(b);
    }
    #[cfg(feature = "tools")]
    if let Some(Cmd::Cli(c)) = &cli.command {
        return shell(c);
    }
    if let Some(Cmd::FourLetter(f)) = &cli.command {
        return four_letter(f);
    }
    if let Some(Cmd::Txnlog { what } | Cmd::Snapshot { what }) = &cli.command {
        let DumpCmd::Dump { file, data } = what;
        let is_log = matches!(cli.command, Some(Cmd::Txnlog { .. }));
        return dump(file, is_log, *data);
    }
    let settings = match load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zabd: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Cmd::Purge { count }) = cli.command {
        return purge(&settings, count);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zabd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(zabd::server::run(settings));
    // Tasks still parked (connections, peers) are dropped; nothing waits on them.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zabd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter: `ZABD_LOG` when set (an invalid one is an error, not silence), else
/// `default`.
fn log_filter(default: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    match std::env::var("ZABD_LOG") {
        Ok(v) => {
            // A bare word is a target to tracing ("verbose" would show nothing at all):
            // only a level or a module path makes sense here.
            const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
            for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                let bare = !d.contains(['=', '[', ':']);
                if bare && d != "zabd" && !LEVELS.contains(&d.to_ascii_lowercase().as_str()) {
                    return Err(format!(
                        "ZABD_LOG={v:?}: {d:?} is neither a level ({}) nor target=level",
                        LEVELS.join(", ")
                    ));
                }
            }
            tracing_subscriber::EnvFilter::try_new(&v)
                .map_err(|e| format!("ZABD_LOG={v:?} is not a valid log filter: {e}"))
        }
        Err(std::env::VarError::NotPresent) => Ok(tracing_subscriber::EnvFilter::new(default)),
        Err(e) => Err(format!("ZABD_LOG: {e}")),
    }
}

impl Cmd {
    fn is_client_tool(&self) -> bool {
        #[cfg(feature = "tools")]
        if matches!(self, Cmd::Bench(_) | Cmd::Cli(_)) {
            return true;
        }
        false
    }
}

#[cfg(feature = "tools")]
fn shell(c: &CliArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zabd cli: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(zabd::cli::run(zabd::cli::Options {
        servers: c.servers.clone(),
        command: c.command.clone(),
        session_timeout: std::time::Duration::from_millis(c.timeout),
    }));
    ExitCode::from(code as u8)
}

#[cfg(feature = "tools")]
fn bench(b: &BenchArgs) -> ExitCode {
    let mix = match zabd::loadgen::Mix::parse(&b.mix) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("zabd bench: --mix: {e}");
            return ExitCode::from(2);
        }
    };
    let o = zabd::loadgen::Options {
        servers: b.servers.clone(),
        sessions: b.sessions.max(1),
        inflight: b.inflight.max(1),
        warmup: std::time::Duration::from_secs_f64(b.warmup.max(0.0)),
        duration: std::time::Duration::from_secs_f64(b.duration.max(0.1)),
        max_ops: b.max_ops,
        mix,
        value_size: b.value_size,
        keys: b.keys.max(1),
        watchers: b.watchers,
        session_timeout: std::time::Duration::from_secs(30),
        progress: !b.quiet,
        staleness: b.staleness,
        round_robin: b.round_robin,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zabd bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match rt.block_on(zabd::loadgen::run(&o)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zabd bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{report}");
    if let Some(path) = &b.json {
        let text = serde_json::to_string_pretty(&report).expect("a report serializes");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("zabd bench: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn four_letter(f: &FourArgs) -> ExitCode {
    use std::io::{Read, Write};
    if f.word.len() != 4 || zabd::admin::is_word(f.word.as_bytes()).is_none() {
        eprintln!("zabd 4lw: {:?} is not a four-letter word", f.word);
        return ExitCode::from(2);
    }
    let timeout = std::time::Duration::from_secs(10);
    let addr = match std::net::ToSocketAddrs::to_socket_addrs(f.server.as_str())
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => {
            eprintln!("zabd 4lw: cannot resolve {}", f.server);
            return ExitCode::from(2);
        }
    };
    let run = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        let mut msg = f.word.as_bytes().to_vec();
        if f.word == "stmk" {
            msg.extend_from_slice(&f.mask.unwrap_or(306).to_be_bytes());
        }
        s.write_all(&msg)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    match run() {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') && !out.is_empty() {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zabd 4lw: {}: {e}", f.server);
            ExitCode::FAILURE
        }
    }
}

fn dump(file: &std::path::Path, is_log: bool, data: bool) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("zabd: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let text = if is_log {
        zabd::persist::dump::txnlog(&bytes)
    } else {
        zabd::persist::dump::snapshot(bytes, data)
    };
    match text {
        Ok(t) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(t.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zabd: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn purge(settings: &Settings, count: u32) -> ExitCode {
    if count < 3 {
        eprintln!("zabd purge: -n must be at least 3");
        return ExitCode::from(2);
    }
    let (snap_dir, log_dir) = zabd::server::data_dirs(settings);
    match zabd::server::purge::purge(&snap_dir, &log_dir, count) {
        Ok(n) => {
            println!("zabd purge: removed {n} files, kept the newest {count} snapshots");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zabd purge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> Result<Settings, zabd::config::ConfigError> {
    let mut s = match &cli.config {
        Some(p) => Settings::load(p, &cli.properties)?,
        None => Settings::embedded_with(&cli.properties)?,
    };
    if let Some(p) = cli.client_port {
        s.client_port = p;
    }
    if let Some(a) = &cli.client_address {
        s.client_port_address = a.clone();
    }
    if let Some(d) = &cli.data_dir {
        s.data_dir = d.clone();
    }
    Ok(s)
}
