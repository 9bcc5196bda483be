//! The core task: sole owner of the engine. It turns channel messages and ticks into engine
//! events, and engine actions into writes on connection channels.

use super::connection::Outbound;
use super::disk::LogCmd;
use super::disk::SnapMsg;
use super::Clocks;
use crate::admin::{self, ServerInfo};
use crate::engine::{ConnId, Engine, EngineAction, Event, ToClient};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How a connection task is reached.
pub struct ConnHandle {
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// Bytes queued in `tx` not yet written to the socket.
    pub queued: Arc<AtomicUsize>,
    pub max_queued: usize,
    /// `max_queued_bytes_total`, and the count it bounds (shared by every connection):
    /// see [`send_frame`].
    pub max_queued_total: usize,
    pub total_queued: Arc<AtomicUsize>,
    /// Tears the connection down at once, past whatever its writer is stuck on.
    pub kill: Arc<tokio::sync::Notify>,
    /// Its share of `globalOutstandingLimit`, given back as each answer is produced.
    pub outstanding: Arc<super::connection::Outstanding>,
    /// The client's address (`ip:port`), for `cons`.
    pub peer: String,
}

pub enum CoreMsg {
    Register {
        conn: ConnId,
        ip: String,
        /// What the transport proved (a TLS client certificate's identities).
        ids: Vec<crate::jute::records::Id>,
        handle: ConnHandle,
    },
    Event(Event),
    /// From the log writer: every entry up to `zxid` is written and synced, after
    /// `truncations` truncations of the log (see `disk::log_loop`).
    Durable {
        zxid: i64,
        truncations: u64,
    },
    /// An operator's question: a four-letter word, an AdminServer command, a scrape.
    Ask {
        question: Question,
        reply: oneshot::Sender<String>,
    },
    /// A graceful stop (`shutdown.rs`): take no new requests or handshakes, and answer
    /// once the writes under way are done.
    Drain {
        reply: oneshot::Sender<super::shutdown::Drained>,
    },
    /// Members only: what the host did for the node off the member task (a SNAP's state
    /// written, the state reloaded after a TRUNC), or why it could not.
    ForNode(Result<crate::node::Input, String>),
}

/// What an operator asks the engine's owner.
pub enum Question {
    /// A four-letter word (`arg`: `stmk`'s mask).
    Word {
        word: &'static str,
        arg: Option<i64>,
    },
    /// An AdminServer command (primary name) with its query parameters: JSON back.
    Command {
        name: &'static str,
        params: HashMap<String, String>,
    },
    /// The Prometheus text.
    Metrics,
}

/// Most messages taken from the channel before their actions are performed.
pub(super) const BATCH: usize = 256;

/// Where logged transactions and snapshots go.
pub struct Persistence {
    pub log: std::sync::mpsc::Sender<LogCmd>,
    pub snapshots: std::sync::mpsc::Sender<super::disk::SnapMsg>,
    pub snap_count: u64,
    /// Transactions logged since the last snapshot.
    pub since_snapshot: u64,
    /// This round's threshold: snap_count/2 plus a random part of snap_count/2.
    pub threshold: u64,
    /// A finished snapshot's last message, held back until the log is durable up to the
    /// zxid its walk ended at (see `seal`).
    held_seal: Option<(i64, SnapMsg)>,
}

impl Persistence {
    pub fn new(
        log: std::sync::mpsc::Sender<LogCmd>,
        snapshots: std::sync::mpsc::Sender<super::disk::SnapMsg>,
        snap_count: u64,
    ) -> Self {
        let mut p = Persistence {
            log,
            snapshots,
            snap_count,
            since_snapshot: 0,
            threshold: 0,
            held_seal: None,
        };
        p.new_threshold();
        p
    }

    /// Ends a snapshot whose walk saw the tree at `upto`: the snapshot thread seals (names)
    /// the file only once the log is durable up to `upto`. An ensemble member applies a
    /// committed transaction before its own log sync of it is done, so a walk can see
    /// transactions this member's log does not hold durably yet; a snapshot file sealed
    /// then and followed by a crash would carry effects that recovery's log replay cannot
    /// place (and a zxid the log may never reach). Held back, a crash leaves only the
    /// temporary file, which startup removes. A standalone server applies only durable
    /// transactions, so its snapshots seal at once.
    pub fn seal(&mut self, upto: i64, msg: SnapMsg, durable: i64) {
        self.held_seal = Some((upto, msg));
        self.release_seal(durable);
    }

    /// The log is durable up to `durable`: lets a held seal go if it may.
    pub fn release_seal(&mut self, durable: i64) {
        if self
            .held_seal
            .as_ref()
            .is_some_and(|(upto, _)| *upto <= durable)
        {
            let (_, msg) = self.held_seal.take().expect("checked");
            let _ = self.snapshots.send(msg);
        }
    }

    /// A snapshot is waiting for the log: no new one starts meanwhile.
    pub fn sealing(&self) -> bool {
        self.held_seal.is_some()
    }

    /// Drops a held seal (the engine is being replaced); the temporary file goes too.
    pub fn drop_seal(&mut self) {
        if let Some((_, msg)) = self.held_seal.take() {
            if matches!(msg, SnapMsg::End(_)) {
                let _ = self.snapshots.send(SnapMsg::Abort);
            }
        }
    }

    fn new_threshold(&mut self) {
        // Randomised so that ensemble members do not all snapshot at once (as ZooKeeper).
        let half = (self.snap_count / 2).max(1);
        let r = super::wall_ms() as u64 ^ (std::process::id() as u64).rotate_left(17);
        self.threshold = half + r % half;
    }
}

pub async fn run(
    mut engine: Engine,
    info: ServerInfo,
    mut rx: mpsc::UnboundedReceiver<CoreMsg>,
    clocks: Clocks,
    tick: Duration,
    mut disk: Persistence,
) {
    let mut conns: HashMap<ConnId, ConnHandle> = HashMap::new();
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut job: Option<SnapshotJob> = None;
    let mut last_tick = std::time::Instant::now();
    let mut draining: Option<super::shutdown::Draining> = None;
    loop {
        let mut actions = Vec::new();
        let mut busy_from = std::time::Instant::now();
        if job.is_some() {
            // A snapshot is in progress: take what is waiting without blocking, then write
            // the next slice of it.
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(m) => take(
                        &mut engine,
                        &info,
                        &mut conns,
                        m,
                        &clocks,
                        &mut actions,
                        &mut draining,
                    ),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            }
            if last_tick.elapsed() >= tick {
                last_tick = std::time::Instant::now();
                actions.extend(engine.handle(Event::Tick, clocks.now()));
            }
        } else {
            tokio::select! {
                msg = rx.recv() => {
                    let Some(msg) = msg else { return };
                    busy_from = std::time::Instant::now();
                    take(&mut engine, &info, &mut conns, msg, &clocks, &mut actions, &mut draining);
                    for _ in 0..BATCH {
                        match rx.try_recv() {
                            Ok(m) => take(&mut engine, &info, &mut conns, m, &clocks, &mut actions, &mut draining),
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => {
                    busy_from = std::time::Instant::now();
                    last_tick = std::time::Instant::now();
                    actions.extend(engine.handle(Event::Tick, clocks.now()));
                }
            }
        }
        perform(&mut conns, actions, &mut disk);
        if draining.is_some() && engine.writes_in_flight() == 0 {
            draining.take().expect("checked").finish(&disk.log);
        }
        if job.is_none() && disk.since_snapshot >= disk.threshold {
            job = Some(SnapshotJob::start(&engine, &mut disk));
        }
        if let Some(j) = job.as_mut() {
            if j.step(&engine, &disk, || !rx.is_empty()) {
                // Standalone: everything applied is durable.
                job = job
                    .take()
                    .expect("present")
                    .finish(&engine, &mut disk, i64::MAX);
            }
        }
        note_stall(&mut engine, busy_from.elapsed());
        if job.is_some() {
            tokio::task::yield_now().await;
        }
    }
}

/// Records how long one pass of the loop kept the core busy.
pub(super) fn note_stall(engine: &mut Engine, d: Duration) {
    let us = d.as_micros() as u64;
    if us > engine.stats.core_stall_max_us {
        engine.stats.core_stall_max_us = us;
        if us > 100_000 {
            tracing::warn!(
                ms = us / 1000,
                "the core loop was busy for a long time in one pass"
            );
        }
    }
}

/// Nodes serialized per pass of the core loop while a snapshot is in progress, whether or
/// not requests came in that pass: about 20-60 µs of work on a large tree. Tasks on the
/// core's worker thread (client connections among them) run only between passes, so a
/// longer slice is a longer wait for a request arriving then — 2,048 nodes per idle pass
/// gave single requests a p99 of ~0.7 ms during snapshots of 1.5M nodes — and a snapshot
/// taken in short slices simply lasts longer, which a fuzzy snapshot allows.
const SNAPSHOT_SLICE: usize = 64;

/// Nodes serialized between checks for waiting work: about 5-20 µs on a large tree, which
/// is what a request arriving during a snapshot waits at most.
const SNAPSHOT_CHUNK: usize = 32;

/// A snapshot being written a slice at a time (see `persist::snapshot::Builder`). Normally
/// streamed: each slice goes to the snapshot thread as soon as it is serialized, so the
/// serialized tree never sits in memory. If a node gets a brand-new ACL list during the
/// walk, the streamed file is abandoned and the snapshot is taken again in memory.
pub(super) struct SnapshotJob {
    builder: crate::persist::snapshot::Builder,
    streamed: bool,
    started: std::time::Instant,
}

impl SnapshotJob {
    /// Starts a new log file and a fuzzy snapshot named by the last applied zxid.
    pub(super) fn start(engine: &Engine, disk: &mut Persistence) -> SnapshotJob {
        Self::begin(engine, disk, true)
    }

    fn begin(engine: &Engine, disk: &mut Persistence, streamed: bool) -> SnapshotJob {
        use crate::persist::snapshot::Builder;
        let _ = disk.log.send(LogCmd::Roll);
        disk.since_snapshot = 0;
        disk.new_threshold();
        let (sessions, zxid) = (engine.session_list(), engine.last_zxid());
        let builder = if streamed {
            let mut b = Builder::streaming(&sessions, zxid, &engine.tree.acls);
            let head = b.take_head();
            let _ = disk.snapshots.send(SnapMsg::Begin { zxid, head });
            b
        } else {
            Builder::new(&sessions, zxid)
        };
        SnapshotJob {
            builder,
            streamed,
            started: std::time::Instant::now(),
        }
    }

    /// Serializes up to [`SNAPSHOT_SLICE`] more nodes, in chunks of [`SNAPSHOT_CHUNK`],
    /// stopping early once `waiting()` says that requests or sync completions are queued (at
    /// least one chunk per call, so the walk always advances); true once the walk is complete.
    pub(super) fn step(
        &mut self,
        engine: &Engine,
        disk: &Persistence,
        waiting: impl Fn() -> bool,
    ) -> bool {
        let mut left = SNAPSHOT_SLICE;
        let done = loop {
            let n = left.min(SNAPSHOT_CHUNK);
            left -= n;
            if self.builder.step(&engine.tree, n) {
                break true;
            }
            if left == 0 || waiting() {
                break false;
            }
        };
        if self.streamed {
            let nodes = self.builder.take_nodes();
            if !nodes.is_empty() {
                let _ = disk.snapshots.send(SnapMsg::Nodes(nodes));
            }
        }
        done
    }

    /// Hands the end of the snapshot to the snapshot thread, which seals, writes and syncs
    /// it once the log is durable up to what the walk saw (`Persistence::seal`; `durable`
    /// is how far it is now). Returns the in-memory retry when the streamed file had to be
    /// abandoned.
    pub(super) fn finish(
        self,
        engine: &Engine,
        disk: &mut Persistence,
        durable: i64,
    ) -> Option<SnapshotJob> {
        let upto = engine.last_zxid();
        let zxid = self.builder.zxid();
        let nodes = self.builder.visited;
        let ms = self.started.elapsed().as_millis() as u64;
        if self.streamed {
            let Some(tail) = self.builder.finish_streaming(&engine.tree) else {
                tracing::info!(
                    zxid = format_args!("0x{zxid:x}"),
                    "a new ACL list appeared during the snapshot; taking it again in memory"
                );
                let _ = disk.snapshots.send(SnapMsg::Abort);
                return Some(Self::begin(engine, disk, false));
            };
            disk.seal(upto, SnapMsg::End(tail), durable);
        } else {
            let parts = self.builder.finish(&engine.tree);
            disk.seal(upto, SnapMsg::Whole(parts), durable);
        }
        super::counters::COUNTERS.snapshot(ms as i64, zxid, super::wall_ms());
        let zxid = format_args!("0x{zxid:x}");
        tracing::info!(zxid, nodes, ms, "snapshot serialized");
        None
    }

    /// Drops the snapshot (the engine is being replaced) and its temporary file.
    pub(super) fn abandon(self, disk: &Persistence) {
        if self.streamed {
            let _ = disk.snapshots.send(SnapMsg::Abort);
        }
    }
}

fn take(
    engine: &mut Engine,
    info: &ServerInfo,
    conns: &mut HashMap<ConnId, ConnHandle>,
    msg: CoreMsg,
    clocks: &Clocks,
    actions: &mut Vec<EngineAction>,
    draining: &mut Option<super::shutdown::Draining>,
) {
    match msg {
        CoreMsg::Register {
            conn,
            ip,
            ids,
            handle,
        } => {
            conns.insert(conn, handle);
            actions.extend(engine.handle(Event::Accepted { conn, ip, ids }, clocks.now()));
        }
        CoreMsg::Event(ev) => {
            if let Event::Closed { conn } = ev {
                conns.remove(&conn);
            }
            let stopping = draining.is_some() && is_new_work(&ev);
            if !of_closed_connection(conns, &ev) && !stopping {
                actions.extend(engine.handle(ev, clocks.now()));
            }
        }
        CoreMsg::Drain { reply } => {
            *draining = Some(super::shutdown::Draining {
                reply,
                in_flight_at_start: engine.writes_in_flight(),
            });
        }
        CoreMsg::Durable { zxid, .. } => {
            // Standalone: durable is committed.
            actions.extend(engine.handle(Event::Durable { zxid }, clocks.now()));
        }
        CoreMsg::Ask { question, reply } => {
            let _ = reply.send(answer(question, engine, info, conns));
        }
        CoreMsg::ForNode(_) => tracing::error!("a member's message reached a standalone server"),
    }
}

/// An operator's answer, from the engine and the figures of now (`live.rs`).
pub(super) fn answer(
    q: Question,
    engine: &mut Engine,
    info: &ServerInfo,
    conns: &HashMap<ConnId, ConnHandle>,
) -> String {
    let peers = conns.iter().map(|(id, h)| (*id, h.peer.clone())).collect();
    // Reading /proc and the data directories is for the answers that show those figures,
    // not for every `ruok` a probe sends.
    let figures = match &q {
        Question::Word { word, .. } => matches!(*word, "mntr" | "conf" | "dirs"),
        Question::Command { .. } | Question::Metrics => true,
    };
    let info = if figures {
        super::live::refresh(info, peers)
    } else {
        ServerInfo {
            peers,
            ..info.clone()
        }
    };
    match q {
        Question::Word { word, arg } => admin::answer(word, arg, engine, &info),
        Question::Command { name, params } => {
            admin::commands::run(name, &params, engine, &info).to_string()
        }
        Question::Metrics => admin::prometheus::render(engine, &info),
    }
}

/// Performs actions: frames to connections, transactions to the log writer (which answers
/// with `Event::Durable` once they are synced).
fn perform(
    conns: &mut HashMap<ConnId, ConnHandle>,
    actions: Vec<EngineAction>,
    disk: &mut Persistence,
) {
    for a in actions {
        match a {
            EngineAction::Client(out) => to_client(conns, out),
            EngineAction::Log { hdr, txn, digest } => {
                disk.since_snapshot += 1;
                if disk
                    .log
                    .send(LogCmd::Append {
                        hdr,
                        txn,
                        digest: Some(digest),
                    })
                    .is_err()
                {
                    tracing::error!("the log writer is gone; stopping");
                    std::process::exit(3);
                }
            }
            // Ensemble actions; a standalone engine makes none.
            EngineAction::Forward { .. }
            | EngineAction::SyncDone { .. }
            | EngineAction::Revalidate { .. }
            | EngineAction::ConfirmLeadership { .. } => {}
        }
    }
}

/// Hands a frame or a close to its connection's writer.
pub(super) fn to_client(conns: &mut HashMap<ConnId, ConnHandle>, out: ToClient) {
    match out {
        ToClient::Send {
            conn,
            frame,
            completes,
        } => send_frame(conns, conn, frame, completes),
        ToClient::Close {
            conn,
            reason,
            linger,
        } => send(conns, conn, Outbound::Close(reason, linger)),
    }
}

/// Whether `ev` is a request from a connection the core has already given up (a slow
/// reader it closed, a writer that is gone): the engine would only make replies for no one,
/// and a client that pipelines a thousand reads of a large node before being closed would
/// have the server build them all. The client lost the connection, so a request it sent
/// has an unknown outcome, as with any connection loss; `Event::Closed` still follows.
pub(super) fn of_closed_connection(conns: &HashMap<ConnId, ConnHandle>, ev: &Event) -> bool {
    matches!(ev, Event::Request { conn, .. } if !conns.contains_key(conn))
}

/// A request or handshake: what a stopping server no longer takes.
pub(super) fn is_new_work(ev: &Event) -> bool {
    matches!(ev, Event::Request { .. } | Event::Handshake { .. })
}

/// A connection with more than this many reply bytes waiting counts as a slow reader when
/// the total over all connections passes `max_queued_bytes_total`.
const LAGGARD_BYTES: usize = 1 << 20;

/// A queued frame's share of its connection's and the server's count of unwritten reply
/// bytes, given back when the frame leaves the queue: taken by the writer, or dropped with
/// the queue of a connection that was closed. So frames still held for a connection being
/// torn down keep counting until they are really gone.
pub struct Accounted {
    bytes: usize,
    conn: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl Drop for Accounted {
    fn drop(&mut self) {
        self.conn.fetch_sub(self.bytes, Ordering::Relaxed);
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Queues a frame for a connection. A connection whose unwritten replies pass
/// `max_queued_bytes_per_connection`, or that has more than [`LAGGARD_BYTES`] waiting while
/// all connections together pass `max_queued_bytes_total`, is closed instead: its client
/// does not read, and memory must stay bounded however many such clients come.
fn send_frame(
    conns: &mut HashMap<ConnId, ConnHandle>,
    conn: ConnId,
    f: crate::proto::response::Frame,
    completes: bool,
) {
    let Some(h) = conns.get(&conn) else {
        return;
    };
    let n = f.len();
    if completes {
        h.outstanding.answered(n);
    }
    let queued = h.queued.fetch_add(n, Ordering::Relaxed) + n;
    let total = h.total_queued.fetch_add(n, Ordering::Relaxed) + n;
    let share = Accounted {
        bytes: n,
        conn: h.queued.clone(),
        total: h.total_queued.clone(),
    };
    if queued > h.max_queued || (queued > LAGGARD_BYTES && total > h.max_queued_total) {
        // Not queued behind the frames it does not read: the connection task drops the
        // socket and its writer now, and reports the connection closed.
        h.kill.notify_one();
        conns.remove(&conn);
        return;
    }
    if h.tx.send(Outbound::Frame(f, completes, share)).is_err() {
        conns.remove(&conn);
    }
}

/// Queues the close of a connection, behind what it was sent before.
pub(super) fn send(conns: &mut HashMap<ConnId, ConnHandle>, conn: ConnId, out: Outbound) {
    let Some(h) = conns.get(&conn) else {
        return;
    };
    if h.tx.send(out).is_err() {
        conns.remove(&conn);
    }
}
