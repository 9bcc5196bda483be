//! An ensemble member's host: it performs what the pure node (`crate::node::Node`: the
//! engine and the ZAB peer, wired together, with every protocol decision) asks for. It owns
//! the I/O around it: the transport (`peers.rs`), the log writer and snapshot threads
//! (`disk.rs`), the client connections (`connection.rs`), freezing the state for snapshots,
//! the epoch files and the timers. Nothing here decides what the ensemble's state is.
//!
//! One loop pass: take what woke it (client messages in a batch, a peer event, a tick),
//! hand each to the node and perform its [`Io`] in order, then end the pass
//! (`Input::PassEnd`: one read round for the syncs that arrived) and, when one is due, hand
//! a frozen view of the state to the snapshot thread.
//!
//! At startup the newest snapshot is ZAB's base and the engine's state; every entry logged
//! after it is ZAB's log (its commit state decided by the next leader), applied only once
//! committed.

use super::core_task::{self, ConnHandle, CoreMsg, Persistence};
use super::disk::{self, LogCmd, SnapMsg};
use super::ensemble::{epoch_dir, read_member_epoch, write_epoch, Status};
use super::peers::{self, PeerAddrs};
use super::{recovery, Clocks};
use crate::admin::ServerInfo;
use crate::config::Settings;
use crate::engine::ConnId;
use crate::node::{Input, Io, Node, NodeConfig, PeerCmd, PeerEvent};
use crate::persist::txnlog;
use crate::quorum::{Config, Durable, Entry, Sid, State};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub struct Setup {
    pub settings: Settings,
    pub cfg: Config,
    pub peers: HashMap<Sid, PeerAddrs>,
    pub election: TcpListener,
    pub quorum: TcpListener,
    /// The plain client port; None when only the secure port is open.
    pub clients: Option<TcpListener>,
    pub core_tick: Duration,
    pub status: Arc<Mutex<Status>>,
    /// Resolves on SIGTERM/SIGINT (`shutdown.rs`).
    pub stop: std::pin::Pin<Box<dyn std::future::Future<Output = &'static str> + Send>>,
}

/// What woke the member's loop.
enum Woke {
    Core(Option<CoreMsg>),
    Peer(Option<PeerEvent>),
    PeerTick,
    EngineTick,
}

impl Woke {
    /// For the log line of a long pass.
    fn name(&self) -> &'static str {
        match self {
            Woke::Core(_) => "requests",
            Woke::Peer(Some(PeerEvent::Msg { .. })) => "a peer message",
            Woke::Peer(Some(PeerEvent::Snap { .. })) => "a SNAP",
            Woke::Peer(_) => "a peer event",
            Woke::PeerTick => "the peer tick",
            Woke::EngineTick => "the engine tick",
        }
    }
}

struct Member {
    node: Node,
    info: ServerInfo,
    settings: Settings,
    conns: HashMap<ConnId, ConnHandle>,
    transport: mpsc::UnboundedSender<PeerCmd>,
    /// For answers from work done off the member task ([`CoreMsg::ForNode`]).
    core_tx: mpsc::UnboundedSender<CoreMsg>,
    /// Log cuts sent to the log writer and perhaps not done yet (a reload waits for them).
    pending_cuts: Vec<std::sync::mpsc::Receiver<()>>,
    disk: Persistence,
    clocks: Clocks,
    status: Arc<Mutex<Status>>,
    /// What `status` shows: the role, the leader and the epoch.
    shown: (State, Option<Sid>, u32),
    /// A graceful stop under way (`shutdown.rs`).
    draining: Option<super::shutdown::Draining>,
    /// Since when this member leads (the `leader_uptime` metric).
    leading_since: Option<std::time::Instant>,
    /// Since when it looks for a leader (the `election_time` summary).
    looking_since: Option<std::time::Instant>,
    /// Since when it does not serve (the `unavailable_time` summaries).
    unavailable_since: Option<std::time::Instant>,
}

/// Stops the member: something that could make replicas diverge, or a disk that failed.
fn fatal(what: String) -> ! {
    tracing::error!("{what}; stopping");
    eprintln!("zabd: {what}; stopping");
    std::process::exit(3);
}

pub async fn run(setup: Setup) -> std::io::Result<()> {
    let s = setup.settings;
    let (snap_dir, log_dir) = super::data_dirs(&s);
    let recovery_started = std::time::Instant::now();
    let rec = recovery::recover_unapplied(&snap_dir, &log_dir, s.extended_types_enabled)
        .map_err(|e| std::io::Error::other(format!("cannot recover the data directory: {e}")))?;
    super::counters::COUNTERS.startup(
        recovery_started.elapsed().as_millis() as i64,
        rec.entries.len() as u64,
        rec.snap_load_ms,
        rec.txns_load_ms,
    );
    tracing::info!(
        snapshot = format_args!("0x{:x}", rec.snapshot_zxid),
        logged_after_it = rec.entries.len(),
        last_logged = format_args!(
            "0x{:x}",
            rec.entries.last().map_or(rec.snapshot_zxid, |e| e.hdr.zxid)
        ),
        "data directory recovered (the logged entries apply once ZAB commits them)"
    );
    let clocks = Clocks::new();
    let last_logged = rec.entries.last().map_or(rec.snapshot_zxid, |e| e.hdr.zxid);
    let durable = Durable {
        accepted_epoch: read_member_epoch(&s.data_dir, "acceptedEpoch", last_logged)?,
        current_epoch: read_member_epoch(&s.data_dir, "currentEpoch", last_logged)?,
        base: rec.snapshot_zxid,
        log: zab_log(&rec.entries),
    };
    let node_cfg = NodeConfig {
        engine: super::engine_config(&s),
        extended_types: s.extended_types_enabled,
        read_only_mode: s.read_only_mode,
        read_only_after_ms: s.tick_time.max(2000) as i64,
        membership: crate::quorum::membership::Membership::new(s.servers.clone(), s.config_version),
    };
    let sessions = rec.sessions.into_iter().collect();
    let node = Node::new(
        node_cfg,
        setup.cfg,
        durable,
        rec.tree,
        sessions,
        clocks.now(),
    )
    .map_err(|d| std::io::Error::other(format!("cannot start on the logged entries: {d}")))?;
    let (core_tx, core_rx) = mpsc::unbounded_channel();
    super::http::start(&s, &core_tx).await?;
    let (listeners, client_addr) = super::client_listeners(&s, setup.clients).await?;
    super::announce_serving(client_addr);
    let log = disk::start_log_writer(disk::LogConfig::from_settings(log_dir, &s), core_tx.clone());
    let snapshots = disk::start_snapshot_writer(snap_dir.clone());
    if s.autopurge_purge_interval_hours > 0 {
        let every = Duration::from_secs(s.autopurge_purge_interval_hours * 3600);
        let retain = s.autopurge_snap_retain_count;
        let dirs = super::data_dirs(&s);
        tokio::spawn(super::autopurge(dirs.0, dirs.1, retain, every));
    }
    if !s.force_sync {
        tracing::warn!("force_sync is off: acknowledged writes can be lost in a power failure");
    }
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let members: Vec<(String, std::net::IpAddr)> = setup
        .peers
        .values()
        .map(|a| (a.host.clone(), a.election.ip()))
        .collect();
    let quorum_tls = super::quorum_tls::QuorumTls::load(&s.quorum_tls, &members)
        .map_err(std::io::Error::other)?;
    let transport = peers::start(
        node.peer().id(),
        setup.peers,
        super::ensemble::transport_config(&s),
        setup.election,
        setup.quorum,
        ev_tx,
        peers::PeerOptions {
            extended_types: s.extended_types_enabled,
            auth: super::quorum_auth::QuorumAuth::load(
                &s.sasl,
                s.servers.iter().map(|m| m.host.clone()).collect(),
            )
            .map_err(std::io::Error::other)?,
            tls: quorum_tls,
        },
    );
    let limits = super::ConnLimits::from_settings(&s)?;
    let accepting = tokio::spawn(super::accept_loop(
        listeners,
        core_tx.clone(),
        limits,
        s.max_client_cnxns,
        s.max_cnxns,
    ));
    let stop_tx = core_tx.clone();
    let m = Member {
        node,
        info: super::server_info(&s, "looking"),
        conns: HashMap::new(),
        transport,
        core_tx,
        pending_cuts: Vec::new(),
        disk: Persistence::new(log, snapshots, s.snap_count),
        settings: s,
        clocks,
        status: setup.status,
        shown: (State::Looking, None, 0),
        draining: None,
        leading_since: None,
        looking_since: Some(std::time::Instant::now()),
        unavailable_since: Some(std::time::Instant::now()),
    };
    // A member starts looking (ZooKeeper counts that first election too).
    super::counters::COUNTERS.looking();
    let mut member = tokio::spawn(m.run(core_rx, ev_rx, setup.core_tick));
    tokio::select! {
        r = &mut member => match r {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(format!("the member task failed: {e}"))),
        },
        signal = setup.stop => {
            accepting.abort();
            super::shutdown::drain(signal, &stop_tx).await;
            Ok(())
        }
    }
}

/// Logged entries as ZAB's log: each entry's body is its payload.
fn zab_log(entries: &[txnlog::Entry]) -> Vec<Entry> {
    entries
        .iter()
        .map(|e| Entry {
            zxid: e.hdr.zxid,
            payload: txnlog::encode_body(&e.hdr, &e.txn, e.digest),
        })
        .collect()
}

impl Member {
    async fn run(
        mut self,
        mut core_rx: mpsc::UnboundedReceiver<CoreMsg>,
        mut ev_rx: mpsc::UnboundedReceiver<PeerEvent>,
        core_tick: Duration,
    ) -> std::io::Result<()> {
        let mut peer_ticker = tokio::time::interval(core_tick);
        peer_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let engine_tick = Duration::from_millis((self.settings.tick_time / 4).clamp(10, 500));
        let mut engine_ticker = tokio::time::interval(engine_tick);
        engine_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let first = self.node.start();
        self.perform(first);
        loop {
            let woke = tokio::select! {
                m = core_rx.recv() => Woke::Core(m),
                e = ev_rx.recv() => Woke::Peer(e),
                _ = peer_ticker.tick() => Woke::PeerTick,
                _ = engine_ticker.tick() => Woke::EngineTick,
            };
            let busy_from = std::time::Instant::now();
            let pass = woke.name();
            match woke {
                Woke::Core(None) => return Err(std::io::Error::other("the client side stopped")),
                Woke::Peer(None) => {
                    return Err(std::io::Error::other("the peer transport stopped"))
                }
                Woke::Core(Some(m)) => {
                    self.take(m);
                    for _ in 0..core_task::BATCH {
                        match core_rx.try_recv() {
                            Ok(m) => self.take(m),
                            Err(_) => break,
                        }
                    }
                }
                Woke::Peer(Some(e)) => self.input(Input::Peer(e)),
                Woke::PeerTick => self.input(Input::PeerTick),
                Woke::EngineTick => self.input(Input::EngineTick),
            }
            self.input(Input::PassEnd);
            if self.draining.is_some() && self.node.engine().writes_in_flight() == 0 {
                let d = self.draining.take().expect("checked");
                d.finish(&self.disk.log);
            }
            if !self.node.waiting() {
                let durable = self.node.peer().durable_zxid();
                self.disk.maybe_snapshot(self.node.engine_mut(), durable);
            }
            core_task::note_stall(self.node.engine_mut(), busy_from.elapsed(), pass);
        }
    }

    /// Hands one input to the node and performs what it asks.
    fn input(&mut self, input: Input) {
        let now = self.clocks.now();
        match self.node.handle(input, now) {
            Ok(io) => self.perform(io),
            Err(d) => fatal(d.0),
        }
    }

    fn take(&mut self, m: CoreMsg) {
        match m {
            CoreMsg::Register {
                conn,
                ip,
                ids,
                handle,
            } => {
                self.conns.insert(conn, handle);
                let ev = crate::engine::Event::Accepted { conn, ip, ids };
                self.input(Input::Client(ev));
            }
            CoreMsg::Durable { zxid, truncations } => {
                self.input(Input::Durable { zxid, truncations });
                self.disk.release_seal(self.node.peer().durable_zxid());
            }
            CoreMsg::Event(ev) => {
                if let crate::engine::Event::Closed { conn } = ev {
                    self.conns.remove(&conn);
                }
                let stopping = self.draining.is_some() && core_task::is_new_work(&ev);
                if !core_task::of_closed_connection(&self.conns, &ev) && !stopping {
                    self.input(Input::Client(ev));
                }
            }
            CoreMsg::Drain { reply } => {
                self.draining = Some(super::shutdown::Draining {
                    reply,
                    in_flight_at_start: self.node.engine().writes_in_flight(),
                });
            }
            CoreMsg::ForNode(Ok(input)) => self.input(input),
            CoreMsg::ForNode(Err(what)) => fatal(what),
            CoreMsg::Ask { question, reply } => {
                self.info.mode = self.node.mode_name().into();
                self.info.ensemble_rows = self.node.ensemble_rows();
                self.info.quorum = Some(self.quorum_info());
                let text = match question {
                    core_task::Question::Word { word: "isro", .. } => {
                        self.node.read_only_word().to_string()
                    }
                    q => core_task::answer(q, self.node.engine_mut(), &self.info, &self.conns),
                };
                let _ = reply.send(text);
            }
        }
    }

    /// A reconfig activated: the transport reaches the new members, the files say who
    /// they are, and the operator's answers show them.
    fn membership_active(&mut self, m: crate::quorum::membership::Membership) {
        match super::ensemble::write_membership(&self.settings, &m) {
            Ok(Some(file)) => {
                tracing::info!(file, "the new membership is written");
                self.settings.dynamic_file = Some(file);
            }
            Ok(None) => {}
            Err(e) => fatal(format!("writing the dynamic configuration file: {e}")),
        }
        self.settings.servers = m.servers.clone();
        self.settings.config_version = m.version;
        let _ = self.transport.send(PeerCmd::Members {
            servers: m.servers.clone(),
            config: Bytes::from(m.to_text()),
        });
    }

    /// Performs the node's commands in order.
    fn perform(&mut self, io: Vec<Io>) {
        let mut queue: VecDeque<Io> = io.into();
        while let Some(cmd) = queue.pop_front() {
            match cmd {
                Io::Client(out) => core_task::to_client(&mut self.conns, out),
                Io::Peer(cmd) => {
                    let _ = self.transport.send(cmd);
                }
                Io::SaveEpoch { file, epoch } => {
                    let dir = epoch_dir(&self.settings.data_dir);
                    if let Err(err) = write_epoch(&dir, file, epoch) {
                        fatal(format!("writing {file}: {err}"));
                    }
                }
                Io::Append { zxid, body } => {
                    self.disk.since_snapshot += 1;
                    if self
                        .disk
                        .log
                        .send(LogCmd::AppendBody { zxid, body })
                        .is_err()
                    {
                        fatal("the log writer is gone".into());
                    }
                }
                Io::CutLog { after } => self.cut_log(after),
                Io::StopSnapshots => self.stop_snapshots(),
                Io::SetAsideSnapshots { newer_than, why } => {
                    // On the snapshot thread: after anything it was writing.
                    let msg = SnapMsg::SetAside { newer_than, why };
                    if self.disk.snapshots.send(msg).is_err() {
                        fatal("the snapshot writer is gone".into());
                    }
                }
                Io::WriteSnap {
                    zxid,
                    state,
                    digest,
                } => self.write_snap(zxid, state, digest),
                Io::Reload => self.reload(),
                Io::Membership(m) => self.membership_active(m),
                Io::NextMembership(m) => {
                    if let Err(e) = super::ensemble::write_next_membership(&self.settings, &m) {
                        fatal(format!("writing the .next dynamic configuration file: {e}"));
                    }
                }
                Io::Discard(x) => {
                    let _ = std::thread::Builder::new()
                        .name("zabd-discard".into())
                        .spawn(move || drop(x));
                }
            }
        }
        self.note_availability();
        let peer = self.node.peer();
        let now = (peer.state(), peer.leader(), peer.current_epoch());
        if now != self.shown {
            let (was, is) = (self.shown.0 == State::Looking, now.0 == State::Looking);
            if is && !was {
                super::counters::COUNTERS.looking();
                self.looking_since = Some(std::time::Instant::now());
            } else if was && !is {
                if let Some(t) = self.looking_since.take() {
                    super::counters::COUNTERS.election(t.elapsed().as_millis() as i64);
                }
            }
            self.shown = now;
            self.leading_since = (now.0 == State::Leading).then(std::time::Instant::now);
            let mut st = self.status.lock().expect("status lock");
            (st.state, st.leader, st.epoch) = now;
        }
    }

    /// `unavailable_time`: from the moment this member stops serving (or starts) until it
    /// serves clients again as leader, follower or observer.
    fn note_availability(&mut self) {
        let mode = self.node.mode_name();
        let serving = matches!(mode, "leader" | "follower" | "observer");
        match (serving, self.unavailable_since) {
            (true, Some(t)) => {
                let ms = t.elapsed().as_millis() as i64;
                super::counters::COUNTERS.available(ms, mode == "leader");
                self.unavailable_since = None;
            }
            (false, None) => self.unavailable_since = Some(std::time::Instant::now()),
            _ => {}
        }
    }

    /// The member's part of the operator's answers (`admin::QuorumInfo`).
    fn quorum_info(&self) -> crate::admin::QuorumInfo {
        let peer = self.node.peer();
        let mode = self.node.mode_name();
        let members: Vec<(i64, String)> = super::ensemble::config_node_text(&self.settings)
            .lines()
            .filter_map(|l| l.strip_prefix("server."))
            .filter_map(|l| l.split_once('='))
            .filter_map(|(id, spec)| Some((id.parse().ok()?, spec.to_string())))
            .collect();
        let voters: Vec<i64> = self
            .settings
            .servers
            .iter()
            .filter(|x| x.role == crate::config::Role::Participant)
            .map(|x| x.id)
            .collect();
        let (peer_state, zab_state) = match mode {
            "leader" => ("leading - broadcast", "broadcast"),
            "follower" => ("following - broadcast", "broadcast"),
            "observer" => ("observing - broadcast", "broadcast"),
            _ => ("looking", "election"),
        };
        let me = self
            .settings
            .servers
            .iter()
            .find(|x| x.id == peer.id() as i64);
        let addresses = me.map_or_else(Default::default, |m| {
            (
                format!("{}:{}", m.host, m.quorum_port),
                format!("{}:{}", m.host, m.election_port),
                format!(
                    "{}:{}",
                    self.settings.client_port_address, self.settings.client_port
                ),
            )
        });
        crate::admin::QuorumInfo {
            my_id: peer.id() as i64,
            quorum_size: voters.len(),
            peer_state: peer_state.into(),
            members,
            voters,
            leader: peer.leader().map(|l| l as i64),
            leader_uptime_ms: (mode == "leader").then(|| {
                self.leading_since
                    .map_or(0, |t| t.elapsed().as_millis() as u64)
            }),
            learners: Vec::new(),
            synced_observers: peer.learner_counts().map_or(0, |c| c.2),
            zab_state: zab_state.into(),
            addresses,
        }
    }

    /// Has the snapshot thread write a SNAP's state as a snapshot; the node hears when it
    /// is in place. A disk that cannot take it stops the member, as every disk failure.
    fn write_snap(&mut self, zxid: i64, state: Bytes, digest: u64) {
        let Some(body) = crate::persist::snapshot::stream_body(&state) else {
            fatal("a SNAP state without its end marker reached the disk writer".into());
        };
        let tx = self.core_tx.clone();
        let done = Box::new(move |r: std::io::Result<()>| {
            let msg = match r {
                Ok(()) => Ok(Input::SnapWritten { zxid }),
                Err(e) => Err(format!("writing the leader's snapshot: {e}")),
            };
            let _ = tx.send(CoreMsg::ForNode(msg));
        });
        let msg = SnapMsg::Received {
            zxid,
            body,
            digest,
            done,
        };
        if self.disk.snapshots.send(msg).is_err() {
            fatal("the snapshot writer is gone".into());
        }
    }

    /// Recovers the state from the data directory again (after a TRUNC) on a thread of its
    /// own; the node hears the result.
    fn reload(&mut self) {
        let (snap_dir, log_dir) = super::data_dirs(&self.settings);
        let extended = self.settings.extended_types_enabled;
        let tx = self.core_tx.clone();
        // The log cuts and snapshot renames sent before must be done first.
        let cuts = std::mem::take(&mut self.pending_cuts);
        let (barrier, snapshots_done) = std::sync::mpsc::channel();
        if self.disk.snapshots.send(SnapMsg::Barrier(barrier)).is_err() {
            fatal("the snapshot writer is gone".into());
        }
        let spawned = std::thread::Builder::new()
            .name("zabd-reload".into())
            .spawn(move || {
                let writers_done = cuts.iter().all(|w| w.recv().is_ok());
                if !writers_done || snapshots_done.recv().is_err() {
                    let _ = tx.send(CoreMsg::ForNode(Err("a disk writer is gone".into())));
                    return;
                }
                let msg = recovery::recover_unapplied(&snap_dir, &log_dir, extended)
                    .map(|rec| Input::Reloaded {
                        tree: Box::new(rec.tree),
                        sessions: rec.sessions.into_iter().collect(),
                        logged: rec.entries,
                    })
                    .map_err(|e| format!("reloading after TRUNC: {e}"));
                let _ = tx.send(CoreMsg::ForNode(msg));
            });
        if let Err(e) = spawned {
            fatal(format!("cannot start a thread to reload the state: {e}"));
        }
    }

    /// Has the log writer remove every logged entry after `after`. Not waited for here:
    /// appends sent after it are written after it, durability reports carry the writer's
    /// count of cuts (older ones are ignored), and a reload waits for it ([`Member::reload`]).
    fn cut_log(&mut self, after: i64) {
        let (done, wait) = std::sync::mpsc::channel();
        let cmd = LogCmd::Truncate { after, done };
        if self.disk.log.send(cmd).is_err() {
            fatal("the log writer is gone".into());
        }
        self.pending_cuts
            .retain(|w| matches!(w.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty)));
        self.pending_cuts.push(wait);
    }

    /// Drops the snapshot held for the log, if any. What the snapshot thread is writing
    /// (committed state only) finishes first; everything sent to it after this (setting
    /// snapshots aside, writing a SNAP's state) comes after that, in order, so nothing here
    /// waits.
    fn stop_snapshots(&mut self) {
        self.disk.drop_seal();
    }
}
