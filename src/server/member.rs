//! An ensemble member: one task owns both the engine (tree, sessions, client queues) and
//! the ZAB `Peer`, and wires them together; the transport (`peers.rs`), the log writer and
//! snapshot threads (`disk.rs`) and the client connections (`connection.rs`) are reached
//! only through channels.
//!
//! The write path (see `docs/architecture.md`):
//! * the leader's engine prepares a write and logs it; here it becomes `Peer::propose`
//!   with the txn log entry body as the PROPOSAL payload, and the zxid ZAB assigns must be
//!   the one prep used (otherwise the member stops: replicas would diverge);
//! * a learner's engine forwards writes as REQUEST packets (the client's identities in
//!   authinfo); PING replies carry the sessions its clients touched;
//! * `Append` goes to the log writer, whose "synced up to" answers become `Peer::durable`;
//! * `Commit` applies the logged entries, in order, to the engine (`Event::Apply`), which
//!   answers the local client waiting for each;
//! * SNAP: the leader sends its engine's state (`snapshot::Parts::to_stream`) labelled with
//!   the zxid it is at; the learner writes it as `snapshot.<zxid>`, cuts its log after it,
//!   and starts a fresh engine on it. TRUNC cuts the log and reloads the engine from disk.
//!
//! At startup the newest snapshot is ZAB's base and every entry logged after it is ZAB's
//! log (its commit state decided by the next leader); the engine has them all applied, and
//! commits at or below what it has applied are skipped.

use super::connection::Outbound;
use super::core_task::{self, ConnHandle, CoreMsg, Persistence, SnapshotJob};
use super::disk::{self, LogCmd, SnapMsg};
use super::ensemble::{read_epoch, write_epoch, Status};
use super::peers::{self, PeerAddrs, PeerCmd, PeerEvent};
use super::{recovery, Clocks};
use crate::admin::ServerInfo;
use crate::config::Settings;
use crate::engine::{self, ConnId, Engine, Event, Mode};
use crate::jute::records::Id;
use crate::persist::{snapshot, txnlog};
use crate::quorum::{codec, make_zxid, Config, Durable, Entry, Msg, Peer, PeerAction, Sid, State};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
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
    pub clients: TcpListener,
    pub core_tick: Duration,
    pub status: Arc<Mutex<Status>>,
}

/// What woke the member's loop.
enum Woke {
    Core(Option<CoreMsg>),
    Peer(Option<PeerEvent>),
    PeerTick,
    EngineTick,
    Snapshot,
}

struct Member {
    engine: Engine,
    peer: Peer,
    info: ServerInfo,
    settings: Settings,
    snap_dir: PathBuf,
    conns: HashMap<ConnId, ConnHandle>,
    transport: mpsc::UnboundedSender<PeerCmd>,
    disk: Persistence,
    job: Option<SnapshotJob>,
    /// Logged entries not yet applied to the engine, in zxid order.
    unapplied: VecDeque<txnlog::Entry>,
    /// What the engine was last told: its mode, the leader and the epoch.
    served: (Mode, Option<Sid>, u32),
    /// Since when this member has had no leader (read-only mode starts after a while).
    down_since: Option<std::time::Instant>,
    /// Learners whose sync may be answered once this batch of actions is out.
    sync_replies: Vec<Sid>,
    /// The read round the engine's waiting syncs need, started once per loop pass.
    read_round: Option<u64>,
    /// Log truncations asked of the log writer (see `CoreMsg::Durable`).
    truncations: u64,
    /// The last and the largest time from the leader's prep of a transaction (its
    /// header time, wall clock) to its apply here, in ms (`mntr` shows them on learners).
    apply_lag_ms: (i64, i64),
    clocks: Clocks,
    status: Arc<Mutex<Status>>,
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
    let rec = recovery::recover_keeping(&snap_dir, &log_dir, s.extended_types_enabled, true)
        .map_err(|e| std::io::Error::other(format!("cannot recover the data directory: {e}")))?;
    tracing::info!(
        snapshot = format_args!("0x{:x}", rec.snapshot_zxid),
        logged_after_it = rec.entries.len(),
        last_zxid = format_args!("0x{:x}", rec.tree.last_zxid),
        "data directory recovered"
    );
    let clocks = Clocks::new();
    let log: Vec<Entry> = rec
        .entries
        .iter()
        .map(|e| Entry {
            zxid: e.hdr.zxid,
            payload: txnlog::encode_body(&e.hdr, &e.txn, e.digest),
        })
        .collect();
    let durable = Durable {
        accepted_epoch: read_epoch(&s.data_dir, "acceptedEpoch")?,
        current_epoch: read_epoch(&s.data_dir, "currentEpoch")?,
        base: rec.snapshot_zxid,
        log,
    };
    let mut engine = Engine::recovered(
        super::engine_config(&s),
        rec.tree,
        rec.sessions,
        clocks.now(),
    );
    engine.handle(
        Event::Mode {
            mode: Mode::Down,
            last_zxid: 0,
        },
        clocks.now(),
    );
    let (core_tx, core_rx) = mpsc::unbounded_channel();
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
    let transport = peers::start(
        setup.cfg.id,
        setup.peers,
        Bytes::new(),
        setup.election,
        setup.quorum,
        ev_tx,
    );
    let limits = super::ConnLimits {
        max_frame: s.jute_max_buffer + crate::proto::frame::HEADER_ALLOWANCE,
        max_outstanding: s.max_outstanding_per_connection,
        max_queued_bytes: s.max_queued_bytes_per_connection,
    };
    tokio::spawn(super::accept_loop(
        setup.clients,
        core_tx,
        limits,
        s.max_client_cnxns,
    ));
    let info = super::server_info(&s, "looking");
    let m = Member {
        engine,
        peer: Peer::new(setup.cfg, durable),
        info,
        snap_dir,
        conns: HashMap::new(),
        transport,
        disk: Persistence::new(log, snapshots, s.snap_count),
        settings: s,
        job: None,
        unapplied: VecDeque::new(),
        served: (Mode::Down, None, 0),
        down_since: Some(std::time::Instant::now()),
        sync_replies: Vec::new(),
        read_round: None,
        truncations: 0,
        apply_lag_ms: (0, 0),
        clocks,
        status: setup.status,
    };
    let mut m = m;
    m.set_config_node();
    m.run(core_rx, ev_rx, setup.core_tick).await
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
        let first = self.peer.tick();
        self.perform_peer(first);
        loop {
            let woke = tokio::select! {
                m = core_rx.recv() => Woke::Core(m),
                e = ev_rx.recv() => Woke::Peer(e),
                _ = peer_ticker.tick() => Woke::PeerTick,
                _ = engine_ticker.tick() => Woke::EngineTick,
                _ = std::future::ready(()), if self.job.is_some() => Woke::Snapshot,
            };
            let busy_from = std::time::Instant::now();
            match woke {
                Woke::Core(None) | Woke::Peer(None) => return Ok(()),
                Woke::Core(Some(m)) => {
                    self.take(m);
                    for _ in 0..core_task::BATCH {
                        match core_rx.try_recv() {
                            Ok(m) => self.take(m),
                            Err(_) => break,
                        }
                    }
                }
                Woke::Peer(Some(e)) => self.peer_event(e),
                Woke::PeerTick => {
                    let a = self.peer.tick();
                    self.perform_peer(a);
                }
                Woke::EngineTick => {
                    let a = self.engine.handle(Event::Tick, self.clocks.now());
                    self.perform_engine(a);
                }
                Woke::Snapshot => {}
            }
            if let Some(round) = self.read_round.take() {
                // One round for every sync that arrived in this pass.
                let a = self.peer.start_read_round(round);
                self.perform_peer(a);
            }
            self.snapshot_step(|| !core_rx.is_empty() || !ev_rx.is_empty());
            core_task::note_stall(&mut self.engine, busy_from.elapsed());
            if self.job.is_some() {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Advances the snapshot, yielding to queued client or peer messages (`waiting`).
    fn snapshot_step(&mut self, waiting: impl Fn() -> bool) {
        if self.job.is_none()
            && !self.disk.sealing()
            && self.disk.since_snapshot >= self.disk.threshold
        {
            self.job = Some(SnapshotJob::start(&self.engine, &mut self.disk));
        }
        if let Some(j) = self.job.as_mut() {
            if j.step(&self.engine, &self.disk, waiting) {
                let j = self.job.take().expect("present");
                let durable = self.peer.durable_zxid();
                self.job = j.finish(&self.engine, &mut self.disk, durable);
            }
        }
    }

    fn take(&mut self, m: CoreMsg) {
        let now = self.clocks.now();
        match m {
            CoreMsg::Register { conn, ip, handle } => {
                self.conns.insert(conn, handle);
                let a = self.engine.handle(Event::Accepted { conn, ip }, now);
                self.perform_engine(a);
            }
            // From the log writer: synced up to `zxid` (a report from before the last
            // truncation may name entries the cut removed: ignored).
            CoreMsg::Durable { zxid, truncations } if truncations == self.truncations => {
                let a = self.peer.durable(zxid);
                self.perform_peer(a);
                self.disk.release_seal(self.peer.durable_zxid());
            }
            CoreMsg::Durable { .. } => {}
            CoreMsg::Event(ev) => {
                if let Event::Closed { conn } = ev {
                    self.conns.remove(&conn);
                }
                let a = self.engine.handle(ev, now);
                self.perform_engine(a);
            }
            CoreMsg::FourLetter { word, reply } => {
                self.info.mode = self.mode_name().into();
                self.info.ensemble_rows = match self.peer.learner_counts() {
                    Some((learners, followers, observers, syncing)) => vec![
                        ("zk_learners", learners.to_string()),
                        ("zk_followers", learners.to_string()),
                        ("zk_synced_followers", followers.to_string()),
                        ("zk_synced_non_voting_followers", "0".to_string()),
                        ("zk_synced_observers", observers.to_string()),
                        ("zk_pending_syncs", syncing.to_string()),
                    ],
                    None => self.learner_rows(),
                };
                let text = match word {
                    "isro" => match self.engine.mode() {
                        Mode::ReadOnly => "ro",
                        Mode::Down => "null",
                        _ => "rw",
                    }
                    .to_string(),
                    _ => core_task::answer_word(word, &mut self.engine, &self.info),
                };
                let _ = reply.send(text);
            }
        }
    }

    /// `mntr` rows of a learner: how far its applied state trails the leader.
    fn learner_rows(&self) -> Vec<(&'static str, String)> {
        if !matches!(self.peer.state(), State::Following | State::Observing) {
            return Vec::new();
        }
        let (committed, applied) = (self.peer.committed(), self.engine.last_zxid());
        let unapplied = if committed >> 32 == applied >> 32 {
            (committed - applied).max(0)
        } else {
            self.unapplied.len() as i64
        };
        vec![
            ("zabd_learner_apply_lag_ms", self.apply_lag_ms.0.to_string()),
            (
                "zabd_learner_apply_lag_max_ms",
                self.apply_lag_ms.1.to_string(),
            ),
            ("zabd_learner_unapplied_commits", unapplied.to_string()),
        ]
    }

    fn mode_name(&self) -> &'static str {
        if self.engine.mode() == Mode::ReadOnly {
            return "read-only";
        }
        match (self.peer.state(), self.peer.leader()) {
            (State::Leading, Some(_)) => "leader",
            (State::Following, Some(_)) => "follower",
            (State::Observing, Some(_)) => "observer",
            _ => "looking",
        }
    }

    fn peer_event(&mut self, e: PeerEvent) {
        let now = self.clocks.now();
        match e {
            PeerEvent::Msg { from, msg } => {
                match &msg {
                    Msg::Diff { zxid } => tracing::info!(
                        from,
                        zxid = format_args!("0x{zxid:x}"),
                        "sync with the leader by DIFF"
                    ),
                    Msg::Trunc { zxid } => tracing::info!(
                        from,
                        zxid = format_args!("0x{zxid:x}"),
                        "sync with the leader by TRUNC"
                    ),
                    _ => {}
                }
                let a = self.peer.step(from, msg);
                self.perform_peer(a);
            }
            PeerEvent::Disconnected { peer } => {
                let a = self.peer.disconnected(peer);
                self.perform_peer(a);
            }
            PeerEvent::Request {
                from,
                session,
                cxid,
                op,
                body,
                auth,
            } => {
                let ids = auth.iter().map(|(s, i)| Id::new(s, i)).collect();
                let ev = Event::Forwarded {
                    origin: from,
                    session,
                    cxid,
                    op,
                    body,
                    ids,
                };
                let a = self.engine.handle(ev, now);
                self.perform_engine(a);
            }
            PeerEvent::Touches { sessions, .. } => {
                let a = self.engine.handle(Event::Touch { sessions }, now);
                self.perform_engine(a);
            }
            PeerEvent::Revalidate {
                from,
                session,
                timeout,
            } => {
                let valid = self.engine.revalidate(session, timeout, now);
                let packet = codec::encode_revalidate_answer(session, valid);
                let _ = self.transport.send(PeerCmd::Raw { to: from, packet });
            }
            PeerEvent::Revalidated {
                from,
                session,
                valid,
            } => {
                if self.peer.leader() == Some(from) {
                    let ev = Event::Revalidated { session, valid };
                    let a = self.engine.handle(ev, now);
                    self.perform_engine(a);
                }
            }
            PeerEvent::Synced { from, zxid } => {
                if self.peer.leader() == Some(from) {
                    let a = self.engine.handle(Event::Synced { zxid }, now);
                    self.perform_engine(a);
                }
            }
            PeerEvent::Snap { from, zxid, state } => self.load_snap(from, zxid, state),
        }
    }

    fn perform_engine(&mut self, actions: Vec<engine::EngineAction>) {
        for a in actions {
            match a {
                engine::EngineAction::Send {
                    conn,
                    frame,
                    completes,
                } => core_task::send(&mut self.conns, conn, Outbound::Frame(frame, completes)),
                engine::EngineAction::Close {
                    conn,
                    reason,
                    linger,
                } => core_task::send(&mut self.conns, conn, Outbound::Close(reason, linger)),
                engine::EngineAction::Log { hdr, txn, digest } => {
                    let body = txnlog::encode_body(&hdr, &txn, Some(digest));
                    let (zxid, acts) = self.peer.propose(body);
                    match zxid {
                        Some(z) if z == hdr.zxid => {}
                        Some(z) => fatal(format!(
                            "ZAB assigned zxid 0x{z:x} to a transaction prepared as 0x{:x}",
                            hdr.zxid
                        )),
                        // No longer leading: the role change resets the engine.
                        None => tracing::info!(
                            zxid = format_args!("0x{:x}", hdr.zxid),
                            "not leading any more; dropping a prepared transaction"
                        ),
                    }
                    self.perform_peer(acts);
                }
                engine::EngineAction::Forward {
                    session,
                    cxid,
                    op,
                    body,
                    ids,
                } => {
                    let Some(leader) = self.peer.leader() else {
                        continue;
                    };
                    let auth = ids.into_iter().map(|i| (i.scheme, i.id)).collect();
                    let packet = codec::encode_request(session, cxid, op, &body, auth);
                    let _ = self.transport.send(PeerCmd::Raw { to: leader, packet });
                }
                engine::EngineAction::SyncDone { origin } => self.sync_replies.push(origin),
                engine::EngineAction::ConfirmLeadership { round } => {
                    self.read_round = self.read_round.max(Some(round));
                }
                engine::EngineAction::Revalidate { session, timeout } => {
                    let Some(leader) = self.peer.leader() else {
                        continue;
                    };
                    let packet = codec::encode_revalidate(session, timeout);
                    let _ = self.transport.send(PeerCmd::Raw { to: leader, packet });
                }
            }
        }
    }

    fn perform_peer(&mut self, actions: Vec<PeerAction>) {
        let mut queue: VecDeque<PeerAction> = actions.into();
        while let Some(a) = queue.pop_front() {
            match a {
                PeerAction::Send { to, msg } => self.send(to, msg),
                PeerAction::Disconnect { peer } => {
                    let _ = self.transport.send(PeerCmd::Disconnect { peer });
                }
                PeerAction::SaveAcceptedEpoch(e) => self.save_epoch("acceptedEpoch", e),
                PeerAction::SaveCurrentEpoch(e) => self.save_epoch("currentEpoch", e),
                PeerAction::Append(e) => self.append(e),
                PeerAction::Truncate { after } => self.truncate(after),
                PeerAction::Commit { zxid } => self.apply_upto(zxid),
                PeerAction::ReadConfirmed { round } => {
                    let ev = Event::LeadershipConfirmed { round };
                    let a = self.engine.handle(ev, self.clocks.now());
                    self.perform_engine(a);
                }
                PeerAction::Role {
                    state,
                    leader,
                    epoch,
                } => self.role(state, leader, epoch),
            }
        }
        self.update_mode();
        // After every COMMIT of this batch, so a learner applies them before the answer.
        for to in std::mem::take(&mut self.sync_replies) {
            let packet = codec::sync_answer(self.engine.last_zxid());
            let _ = self.transport.send(PeerCmd::Raw { to, packet });
        }
        let mut st = self.status.lock().expect("status lock");
        st.state = self.peer.state();
        st.leader = self.peer.leader();
        st.epoch = self.peer.current_epoch();
    }

    fn send(&mut self, to: Sid, msg: Msg) {
        let cmd = match msg {
            Msg::PingReply => PeerCmd::Raw {
                to,
                packet: codec::ping_reply(self.peer.last_zxid(), &self.engine.take_touches()),
            },
            Msg::Snap { .. } => {
                // The engine's whole state, named by the zxid it has applied (at or past
                // what ZAB committed; the learner skips proposals it already holds).
                let zxid = self.engine.last_zxid();
                let mut b = snapshot::Builder::new(&self.engine.session_list(), zxid);
                b.step(&self.engine.tree, usize::MAX);
                let state = Bytes::from(b.finish(&self.engine.tree).to_stream());
                tracing::info!(
                    to,
                    zxid = format_args!("0x{zxid:x}"),
                    bytes = state.len(),
                    "sending SNAP"
                );
                PeerCmd::SendSnap { to, zxid, state }
            }
            msg => PeerCmd::Send { to, msg },
        };
        let _ = self.transport.send(cmd);
    }

    fn save_epoch(&self, name: &str, e: u32) {
        if let Err(err) = write_epoch(&self.settings.data_dir, name, e) {
            fatal(format!("writing {name}: {err}"));
        }
    }

    fn append(&mut self, e: Entry) {
        let entry = match txnlog::decode_body(e.payload) {
            Ok(x) => x,
            Err(err) => fatal(format!("cannot decode proposal 0x{:x}: {err}", e.zxid)),
        };
        self.disk.since_snapshot += 1;
        let cmd = LogCmd::Append {
            hdr: entry.hdr,
            txn: entry.txn.clone(),
            digest: entry.digest,
        };
        if self.disk.log.send(cmd).is_err() {
            fatal("the log writer is gone".into());
        }
        self.unapplied.push_back(entry);
    }

    /// Removes every logged entry after `after`, waiting for the log writer.
    fn cut_log(&mut self, after: i64) {
        let (done, wait) = std::sync::mpsc::channel();
        if self
            .disk
            .log
            .send(LogCmd::Truncate { after, done })
            .is_err()
            || wait.recv().is_err()
        {
            fatal("the log writer is gone".into());
        }
        self.truncations += 1;
        self.unapplied.retain(|e| e.hdr.zxid <= after);
    }

    fn truncate(&mut self, after: i64) {
        tracing::info!(
            after = format_args!("0x{after:x}"),
            "TRUNC: dropping the log after this zxid"
        );
        self.cut_log(after);
        if self.engine.last_zxid() > after {
            // A snapshot past `after` holds transactions the leader discarded: reloading
            // from it would keep them. Nothing may be writing one meanwhile.
            self.stop_snapshots();
            disk::set_aside_snapshots(&self.snap_dir, after, "truncated");
            let (snap_dir, log_dir) = super::data_dirs(&self.settings);
            let rec = recovery::recover(&snap_dir, &log_dir, self.settings.extended_types_enabled)
                .unwrap_or_else(|e| fatal(format!("reloading after TRUNC: {e}")));
            if rec.tree.last_zxid != after {
                fatal(format!(
                    "TRUNC to 0x{after:x}: what is left on disk reaches 0x{:x}, not 0x{after:x} \
                     (no snapshot at or below it with the logs after it); this member needs \
                     an empty data directory to sync again",
                    rec.tree.last_zxid
                ));
            }
            self.replace_engine(rec.tree, rec.sessions.into_iter().collect());
        }
    }

    /// Abandons the snapshot being made or sealed, and waits until the snapshot thread
    /// has finished whatever it was writing.
    fn stop_snapshots(&mut self) {
        if let Some(j) = self.job.take() {
            j.abandon(&self.disk);
        }
        self.disk.drop_seal();
        let (done, wait) = std::sync::mpsc::channel();
        if self.disk.snapshots.send(SnapMsg::Barrier(done)).is_err() || wait.recv().is_err() {
            fatal("the snapshot writer is gone".into());
        }
    }

    fn replace_engine(&mut self, tree: crate::tree::DataTree, sessions: Vec<(i64, i32)>) {
        let now = self.clocks.now();
        let stats = std::mem::take(&mut self.engine.stats);
        if let Some(j) = self.job.take() {
            j.abandon(&self.disk);
        }
        self.disk.drop_seal();
        let a = self.engine.handle(
            Event::Mode {
                mode: Mode::Down,
                last_zxid: 0,
            },
            now,
        );
        self.perform_engine(a);
        self.engine = Engine::recovered(super::engine_config(&self.settings), tree, sessions, now);
        self.engine.stats = stats;
        self.set_config_node();
        self.engine.handle(
            Event::Mode {
                mode: Mode::Down,
                last_zxid: 0,
            },
            now,
        );
        self.served = (Mode::Down, None, 0);
    }

    /// `/zookeeper/config` from this member's configuration (also after SNAP, as ZooKeeper
    /// keeps its own over the leader's).
    fn set_config_node(&mut self) {
        let text = super::ensemble::config_node_text(&self.settings);
        let now = self.clocks.now().wall_ms;
        self.engine.tree.set_config_data(Bytes::from(text), now);
    }

    fn load_snap(&mut self, from: Sid, zxid: i64, state: Bytes) {
        let loaded = match snapshot::decode_stream(state, self.settings.extended_types_enabled) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(from, error = %e, "bad SNAP state from the leader; reconnecting");
                let _ = self.transport.send(PeerCmd::Disconnect { peer: from });
                let a = self.peer.disconnected(from);
                self.perform_peer(a);
                return;
            }
        };
        let mut tree = loaded.tree;
        tree.last_zxid = zxid;
        // The leader's state supersedes this member's: a snapshot of its own history past
        // `zxid` would be loaded at the next start instead of the leader's.
        self.stop_snapshots();
        disk::set_aside_snapshots(&self.snap_dir, zxid, "superseded");
        let mut b = snapshot::Builder::new(&loaded.sessions, zxid);
        b.step(&tree, usize::MAX);
        if let Err(e) = disk::write_snapshot(&self.snap_dir, &b.finish(&tree)) {
            fatal(format!("writing the leader's snapshot: {e}"));
        }
        self.cut_log(zxid);
        self.unapplied.clear();
        tracing::info!(
            from,
            zxid = format_args!("0x{zxid:x}"),
            nodes = tree.node_count(),
            "loaded the leader's state (SNAP)"
        );
        self.replace_engine(tree, loaded.sessions);
        let a = self.peer.step(from, Msg::Snap { zxid });
        self.perform_peer(a);
    }

    /// Applies every logged entry up to `zxid` that the engine has not applied yet.
    fn apply_upto(&mut self, zxid: i64) {
        while self.unapplied.front().is_some_and(|e| e.hdr.zxid <= zxid) {
            let e = self.unapplied.pop_front().expect("front");
            if e.hdr.zxid <= self.engine.last_zxid() {
                continue;
            }
            let now = self.clocks.now();
            let lag = (now.wall_ms - e.hdr.time).max(0);
            self.apply_lag_ms = (lag, self.apply_lag_ms.1.max(lag));
            let ev = Event::Apply {
                hdr: e.hdr,
                txn: e.txn,
                digest: e.digest,
            };
            let a = self.engine.handle(ev, now);
            self.perform_engine(a);
        }
        if self.engine.last_zxid() < zxid {
            fatal(format!(
                "ZAB committed up to 0x{zxid:x} but the log here ends at 0x{:x}",
                self.engine.last_zxid()
            ));
        }
    }

    fn role(&mut self, state: State, leader: Option<Sid>, epoch: u32) {
        if matches!(state, State::Following | State::Observing) {
            if let Some(l) = leader {
                let _ = self.transport.send(PeerCmd::ConnectLeader { leader: l });
            }
        }
        if state == State::Looking {
            tracing::info!(id = self.peer.id(), "looking for a leader");
        } else {
            tracing::info!(id = self.peer.id(), ?state, ?leader, epoch, "role");
        }
    }

    /// Tells the engine when this member starts or stops serving, or its leader changes.
    fn update_mode(&mut self) {
        let leader = self.peer.leader();
        let mode = match (self.peer.state(), leader) {
            (State::Leading, Some(_)) => Mode::Leader,
            (State::Following | State::Observing, Some(_)) => Mode::Follower,
            _ => Mode::Down,
        };
        let mode = if mode == Mode::Down {
            let since = *self.down_since.get_or_insert_with(std::time::Instant::now);
            let delay = Duration::from_millis(self.settings.tick_time.max(2000));
            if self.settings.read_only_mode && since.elapsed() >= delay {
                Mode::ReadOnly
            } else {
                Mode::Down
            }
        } else {
            self.down_since = None;
            mode
        };
        let epoch = self.peer.current_epoch();
        if self.served == (mode, leader, epoch) {
            return;
        }
        self.served = (mode, leader, epoch);
        let last_zxid = make_zxid(epoch, 0);
        tracing::info!(?mode, ?leader, epoch, "client service");
        let a = self
            .engine
            .handle(Event::Mode { mode, last_zxid }, self.clocks.now());
        self.perform_engine(a);
    }
}
