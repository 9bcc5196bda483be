//! The `zabd` binary: parse arguments, load configuration, start tracing and the runtime,
//! and hand over to `zabd::server::run`. No logic lives here.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use zabd::config::Settings;

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
    #[arg(long, short, global = true)]
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
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Deletes old snapshots and the logs only they need, keeping the newest COUNT snapshots
    /// (ZooKeeper's zkCleanup.sh / PurgeTxnLog). Uses the data directories of the config.
    Purge {
        /// Snapshots to keep (at least 3).
        #[arg(short = 'n', long, default_value_t = 3)]
        count: u32,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZABD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
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
    match rt.block_on(zabd::server::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zabd: {e}");
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
        Some(p) => Settings::load(p)?,
        None => Settings::embedded(),
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
