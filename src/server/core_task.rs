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
    /// A frozen snapshot held back until the log is durable up to its zxid (see `seal`).
    held_seal: Option<(i64, SnapMsg)>,
    /// Shut while a snapshot is on its way to disk, and for a rest after it
    /// (`disk::SnapGate`).
    gate: std::sync::Arc<super::disk::SnapGate>,
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
            gate: Default::default(),
        };
        p.new_threshold();
        p
    }

    /// Takes a snapshot once `threshold` transactions have been logged since the last one,
    /// none is still on its way to disk nor resting after one (`disk::SnapGate`), and no
    /// earlier view (a SNAP being sent) shares a
    /// changed node table, which the freeze would have to copy. A new log file starts, and
    /// the engine's state is frozen (a copy-on-write view: 64 table pointers; see
    /// `tree::nodes`) and handed to the snapshot thread, which serializes and writes it;
    /// the engine's owner never walks the tree. `durable`: how far the log is durable now
    /// (see `seal`).
    pub fn maybe_snapshot(&mut self, engine: &mut Engine, durable: i64) {
        if self.since_snapshot < self.threshold
            || self.sealing()
            || !self.gate.open()
            || engine.tree.freeze_would_copy()
        {
            return;
        }
        let _ = self.log.send(LogCmd::Roll);
        self.since_snapshot = 0;
        self.new_threshold();
        let zxid = engine.last_zxid();
        let sessions = engine.session_list();
        let view = crate::persist::snapshot::View::of(&mut engine.tree, sessions, zxid);
        let busy = super::disk::Busy::take(&self.gate);
        tracing::info!(
            zxid = format_args!("0x{zxid:x}"),
            nodes = view.node_count(),
            "snapshot: state frozen for the snapshot thread"
        );
        self.seal(zxid, SnapMsg::Frozen(Box::new(view), busy), durable);
    }

    /// Hands a snapshot of the state at `upto` to the snapshot thread once the log is
    /// durable up to `upto`. An ensemble member applies a committed transaction before its
    /// own log sync of it is done, so a frozen state can hold transactions this member's
    /// log does not hold durably yet; a snapshot file written then and followed by a crash
    /// would carry effects that recovery's log replay cannot place (and a zxid the log may
    /// never reach). Held back, a crash leaves nothing. A standalone server applies only
    /// durable transactions, so its snapshots go at once.
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

    /// Drops a held snapshot (the engine is being replaced).
    pub fn drop_seal(&mut self) {
        self.held_seal = None;
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
    let mut draining: Option<super::shutdown::Draining> = None;
    loop {
        let mut actions = Vec::new();
        let busy_from;
        let mut pass = "requests";
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
                pass = "tick";
                actions.extend(engine.handle(Event::Tick, clocks.now()));
            }
        }
        perform(&mut conns, actions, &mut disk);
        if draining.is_some() && engine.writes_in_flight() == 0 {
            draining.take().expect("checked").finish(&disk.log);
        }
        // Standalone: everything applied is durable.
        disk.maybe_snapshot(&mut engine, i64::MAX);
        note_stall(&mut engine, busy_from.elapsed(), pass);
    }
}

/// Records how long one pass of the loop kept the core busy.
/// `pass`: what woke it (client requests, peer messages, a tick).
pub(super) fn note_stall(engine: &mut Engine, d: Duration, pass: &'static str) {
    let us = d.as_micros() as u64;
    if us > engine.stats.core_stall_max_us {
        engine.stats.core_stall_max_us = us;
        if us > 100_000 {
            tracing::warn!(
                ms = us / 1000,
                pass,
                "the core loop was busy for a long time in one pass"
            );
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
