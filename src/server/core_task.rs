//! The core task: sole owner of the engine. It turns channel messages and ticks into engine
//! events, and engine actions into writes on connection channels.

use super::connection::Outbound;
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

pub async fn run(
    mut engine: Engine,
    info: ServerInfo,
    mut rx: mpsc::UnboundedReceiver<CoreMsg>,
    clocks: Clocks,
    tick: Duration,
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
        perform(&mut engine, &mut conns, actions, &clocks);
    }
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

/// Performs actions; logged transactions are committed at once (the immediate log stage),
/// which may produce more actions.
fn perform(
    engine: &mut Engine,
    conns: &mut HashMap<ConnId, ConnHandle>,
    mut actions: Vec<Action>,
    clocks: &Clocks,
) {
    loop {
        let mut logged = None;
        for a in actions.drain(..) {
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
                Action::Log { hdr, .. } => logged = Some(hdr.zxid),
            }
        }
        match logged {
            Some(zxid) => actions = engine.handle(Event::Committed { zxid }, clocks.now()),
            None => return,
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
