//! The core task: sole owner of the engine. It turns channel messages and ticks into engine
//! events, and engine actions into writes on connection channels.

use super::connection::Outbound;
use super::disk::LogCmd;
use super::Clocks;
use crate::admin::{self, ServerInfo};
use crate::engine::{Action, ConnId, Engine, Event};
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
}

pub enum CoreMsg {
    Register {
        conn: ConnId,
        ip: String,
        handle: ConnHandle,
    },
    Event(Event),
    FourLetter {
        word: &'static str,
        reply: oneshot::Sender<String>,
    },
}

/// Most messages taken from the channel before their actions are performed.
const BATCH: usize = 256;

/// Where logged transactions and snapshots go.
pub struct Persistence {
    pub log: std::sync::mpsc::Sender<LogCmd>,
    pub snapshots: std::sync::mpsc::Sender<(i64, Vec<u8>)>,
    pub snap_count: u64,
    /// Transactions logged since the last snapshot.
    pub since_snapshot: u64,
    /// This round's threshold: snap_count/2 plus a random part of snap_count/2.
    pub threshold: u64,
}

impl Persistence {
    pub fn new(
        log: std::sync::mpsc::Sender<LogCmd>,
        snapshots: std::sync::mpsc::Sender<(i64, Vec<u8>)>,
        snap_count: u64,
    ) -> Self {
        let mut p = Persistence {
            log,
            snapshots,
            snap_count,
            since_snapshot: 0,
            threshold: 0,
        };
        p.new_threshold();
        p
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
    loop {
        let mut actions = Vec::new();
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return };
                take(&mut engine, &info, &mut conns, msg, &clocks, &mut actions);
                for _ in 0..BATCH {
                    match rx.try_recv() {
                        Ok(m) => take(&mut engine, &info, &mut conns, m, &clocks, &mut actions),
                        Err(_) => break,
                    }
                }
            }
            _ = ticker.tick() => actions.extend(engine.handle(Event::Tick, clocks.now())),
        }
        perform(&mut conns, actions, &mut disk);
        if disk.since_snapshot >= disk.threshold {
            snapshot(&engine, &mut disk);
        }
    }
}

/// Starts a new log file and hands a snapshot of the applied tree to the snapshot thread.
/// Serializing happens here (a pause for the core); writing and syncing do not.
fn snapshot(engine: &Engine, disk: &mut Persistence) {
    let started = std::time::Instant::now();
    let zxid = engine.last_zxid();
    let _ = disk.log.send(LogCmd::Roll);
    let bytes = crate::persist::snapshot::encode(&engine.tree, &engine.session_list(), zxid);
    tracing::info!(
        zxid = format_args!("0x{zxid:x}"),
        nodes = engine.tree.node_count(),
        pause_ms = started.elapsed().as_millis() as u64,
        "snapshot serialized"
    );
    let _ = disk.snapshots.send((zxid, bytes));
    disk.since_snapshot = 0;
    disk.new_threshold();
}

fn take(
    engine: &mut Engine,
    info: &ServerInfo,
    conns: &mut HashMap<ConnId, ConnHandle>,
    msg: CoreMsg,
    clocks: &Clocks,
    actions: &mut Vec<Action>,
) {
    match msg {
        CoreMsg::Register { conn, ip, handle } => {
            conns.insert(conn, handle);
            actions.extend(engine.handle(Event::Accepted { conn, ip }, clocks.now()));
        }
        CoreMsg::Event(ev) => {
            if let Event::Closed { conn } = ev {
                conns.remove(&conn);
            }
            actions.extend(engine.handle(ev, clocks.now()));
        }
        CoreMsg::FourLetter { word, reply } => {
            let _ = reply.send(admin::answer(word, engine, info));
        }
    }
}

/// Performs actions: frames to connections, transactions to the log writer (which answers
/// with `Event::Committed` once they are synced).
fn perform(conns: &mut HashMap<ConnId, ConnHandle>, actions: Vec<Action>, disk: &mut Persistence) {
    for a in actions {
        match a {
            Action::Send {
                conn,
                frame,
                completes,
            } => send(conns, conn, Outbound::Frame(frame, completes)),
            Action::Close {
                conn,
                reason,
                linger,
            } => send(conns, conn, Outbound::Close(reason, linger)),
            Action::Log { hdr, txn, digest } => {
                disk.since_snapshot += 1;
                if disk.log.send(LogCmd::Append { hdr, txn, digest }).is_err() {
                    tracing::error!("the log writer is gone; stopping");
                    std::process::exit(3);
                }
            }
        }
    }
}

fn send(conns: &mut HashMap<ConnId, ConnHandle>, conn: ConnId, out: Outbound) {
    let Some(h) = conns.get(&conn) else {
        return;
    };
    if let Outbound::Frame(f, _) = &out {
        let queued = h.queued.fetch_add(f.len(), Ordering::Relaxed) + f.len();
        if queued > h.max_queued {
            tracing::warn!(
                conn,
                queued,
                "client is not reading its replies; closing connection"
            );
            let _ = h.tx.send(Outbound::Close(
                "client fell too far behind reading replies",
                false,
            ));
            conns.remove(&conn);
            return;
        }
    }
    if h.tx.send(out).is_err() {
        conns.remove(&conn);
    }
}
