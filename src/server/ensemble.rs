//! The ZAB host: runs one `quorum::Peer` on the peer transport, a tick at a time, and
//! performs its actions: messages to the transport, epoch files to disk, role changes to
//! the status that `srvr`/`mntr` will show.
//!
//! Files, as ZooKeeper keeps them in `dataDir`: `acceptedEpoch` and `currentEpoch`, each the
//! epoch in decimal with no newline, replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory).
//!
//! Not yet here (issue 4): the transaction log and the engine behind `Append`/`Commit`
//! (client writes in ensemble mode), SNAP state transfer, sessions across members.

use super::peers::{self, PeerAddrs, PeerCmd, PeerEvent};
use crate::quorum::{Action, Config, Durable, Peer, Sid, State};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub leader: Option<Sid>,
    pub epoch: u32,
}

pub fn read_epoch(dir: &Path, name: &str) -> std::io::Result<u32> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(t) => t.trim().parse().map_err(|_| {
            std::io::Error::other(format!(
                "{}: {t:?} is not an epoch",
                dir.join(name).display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

pub fn write_epoch(dir: &Path, name: &str, epoch: u32) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(epoch.to_string().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    super::disk::sync_dir(dir);
    Ok(())
}

pub struct Host {
    pub cfg: Config,
    pub peers: HashMap<Sid, PeerAddrs>,
    pub data_dir: PathBuf,
    pub tick: Duration,
    pub status: Arc<Mutex<Status>>,
}

/// Runs the host until the task is dropped or aborted.
pub async fn run(h: Host, election: TcpListener, quorum: TcpListener) -> std::io::Result<()> {
    std::fs::create_dir_all(&h.data_dir)?;
    let durable = Durable {
        accepted_epoch: read_epoch(&h.data_dir, "acceptedEpoch")?,
        current_epoch: read_epoch(&h.data_dir, "currentEpoch")?,
        base: 0,
        log: Vec::new(),
    };
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let config = bytes::Bytes::new();
    let transport = peers::start(h.cfg.id, h.peers.clone(), config, election, quorum, ev_tx);
    let mut peer = Peer::new(h.cfg.clone(), durable);
    let mut ticker = tokio::time::interval(h.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let first = peer.tick();
    perform(&h, &mut peer, &transport, first)?;
    loop {
        let actions = tokio::select! {
            e = ev_rx.recv() => match e {
                Some(PeerEvent::Msg { from, msg }) => peer.step(from, msg),
                Some(PeerEvent::Disconnected { peer: p }) => peer.disconnected(p),
                None => return Ok(()),
            },
            _ = ticker.tick() => peer.tick(),
        };
        perform(&h, &mut peer, &transport, actions)?;
    }
}

fn perform(
    h: &Host,
    peer: &mut Peer,
    transport: &mpsc::UnboundedSender<PeerCmd>,
    actions: Vec<Action>,
) -> std::io::Result<()> {
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    while let Some(a) = queue.pop_front() {
        match a {
            Action::Send { to, msg } => {
                let _ = transport.send(PeerCmd::Send { to, msg });
            }
            Action::Disconnect { peer: p } => {
                let _ = transport.send(PeerCmd::Disconnect { peer: p });
            }
            Action::SaveAcceptedEpoch(e) => write_epoch(&h.data_dir, "acceptedEpoch", e)?,
            Action::SaveCurrentEpoch(e) => write_epoch(&h.data_dir, "currentEpoch", e)?,
            Action::Role {
                state,
                leader,
                epoch,
            } => {
                if matches!(state, State::Following | State::Observing) {
                    if let Some(l) = leader {
                        let _ = transport.send(PeerCmd::ConnectLeader { leader: l });
                    }
                }
                if state == State::Looking {
                    tracing::info!(id = h.cfg.id, "looking for a leader");
                } else {
                    tracing::info!(id = h.cfg.id, ?state, ?leader, epoch, "role");
                }
                *h.status.lock().expect("status lock") = Status {
                    state,
                    leader,
                    epoch,
                };
            }
            // No log behind the ensemble yet: entries are durable at once.
            Action::Append(e) => queue.extend(peer.durable(e.zxid)),
            Action::Truncate { .. } | Action::Commit { .. } => {}
        }
    }
    // Keep the status true to what the peer now is (a role message may predate the epoch).
    let mut st = h.status.lock().expect("status lock");
    st.state = peer.state();
    st.leader = peer.leader();
    st.epoch = peer.current_epoch();
    Ok(())
}
