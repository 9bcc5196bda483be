//! zabd — a ZooKeeper-compatible coordination server.
//!
//! The pure cores (no I/O, no clock) and the one I/O layer:
//!
//! ```text
//!            ┌──────────────── src/server/ (tokio: sockets, timers) ───────────────┐
//!  client ──>│ connection task ──Event──> core task ──> engine::Engine ──EngineAction─> │──> client
//!            └─────────────────────────────────────────────────────────────────────┘
//!  engine::Engine (pure): proto (codec) → prep (request → txn) → Log → Durable → tree::apply
//!                         sessions (expiry), tree::watch (notifications), auth (ACLs)
//!  server::disk threads: log writer (group commit, fdatasync) → Durable; snapshot writer
//!  persist (pure): ZooKeeper's log and snapshot formats; server::recovery reads them back
//!  quorum (pure): ZAB. node (pure): an ensemble member, engine + quorum::Peer, Input in and
//!                Io out; server::member performs its Io
//!  loadgen: `zabd bench`, a client-side load generator for any ZooKeeper-compatible server
//!  cli: `zabd cli`, a zkCli-like shell (loadgen and cli: feature "tools", on by default)
//! ```
//!
//! See `docs/architecture.md` for the tour and the flow of a write.

pub mod admin;
pub mod auth;
#[cfg(feature = "tools")]
pub mod cli;
pub mod config;
pub mod engine;
pub mod jute;
#[cfg(feature = "tools")]
pub mod loadgen;
pub mod node;
pub mod persist;
pub mod prep;
pub mod proto;
pub mod quorum;
pub mod sasl;
pub mod server;
pub mod session;
pub mod tree;
pub mod txn;
