//! The ZAB host: runs one `quorum::Peer` on the peer transport, a tick at a time, and
//! performs its actions: messages to the transport, epoch files to disk, role changes to
//! the status that `srvr`/`mntr` will show.
//!
//! Files, as ZooKeeper keeps them in `dataDir`: `acceptedEpoch` and `currentEpoch`, each the
//! epoch in decimal with no newline, replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory).
//!
//! [`run`] is ZAB alone (no log, no engine: `tests/ensemble_net.rs` drives it); a real
//! member is [`run_member`], which hands over to `member.rs` with the engine and the log.

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
                // Session traffic needs an engine: see `member.rs`.
                Some(_) => Vec::new(),
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
            Action::Truncate { .. } | Action::Commit { .. } | Action::ReadConfirmed { .. } => {}
        }
    }
    // Keep the status true to what the peer now is (a role message may predate the epoch).
    let mut st = h.status.lock().expect("status lock");
    st.state = peer.state();
    st.leader = peer.leader();
    st.epoch = peer.current_epoch();
    Ok(())
}

/// `/zookeeper/config` as ZooKeeper 3.8 writes it for a static ensemble: one
/// `server.N=host:quorum:election:role[;clientHost:clientPort]` line per member in id
/// order, then `version=0` (no newline at the end). A server line without a client
/// address gets none here either: ZooKeeper fills its own member's from `clientPort` but
/// leaves that out of the text (`QuorumServer.isClientAddrFromStatic`), and Curator's
/// ensemble tracker, on by default, rewrites the client's connect string from these
/// lines, so an address made up here would send every client to one member.
pub fn config_node_text(s: &crate::config::Settings) -> String {
    use crate::config::Role;
    let mut servers: Vec<_> = s.servers.iter().collect();
    servers.sort_by_key(|x| x.id);
    let mut out = String::new();
    for x in servers {
        let role = if x.role == Role::Observer {
            "observer"
        } else {
            "participant"
        };
        let host = bracketed(&x.host);
        out.push_str(&format!(
            "server.{}={host}:{}:{}:{role}",
            x.id, x.quorum_port, x.election_port
        ));
        if let Some((ch, cp)) = &x.client {
            out.push_str(&format!(";{}:{cp}", bracketed(ch)));
        }
        out.push('\n');
    }
    out.push_str("version=0");
    out
}

/// An IPv6 host in brackets, as ZooKeeper's `delimitedHostString`.
fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Core ticks per second: election back-off and the init/sync limits run on this clock,
/// while ZooKeeper's tickTime keeps its meaning (limits are converted).
const CORE_TICK_MS: u64 = 50;

/// Runs this member of the configured ensemble: election and quorum ports, and the client
/// port answering four-letter words from the current role.
pub async fn run_member(s: &crate::config::Settings) -> std::io::Result<()> {
    use crate::config::Role;
    let me = s.server_id as Sid;
    let mine = s
        .servers
        .iter()
        .find(|x| x.id as Sid == me)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "server id {me} (myid) is not among the server.N lines"
            ))
        })?;
    let mut peers = HashMap::new();
    for x in &s.servers {
        let resolve = |port: u16| -> std::io::Result<std::net::SocketAddr> {
            use std::net::ToSocketAddrs;
            (x.host.as_str(), port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("cannot resolve {}", x.host)))
        };
        peers.insert(
            x.id as Sid,
            PeerAddrs {
                election: resolve(x.election_port)?,
                quorum: resolve(x.quorum_port)?,
            },
        );
    }
    let per_tick = (s.tick_time / CORE_TICK_MS).max(1) as u32;
    let ids = |role: Role| -> Vec<Sid> {
        s.servers
            .iter()
            .filter(|x| x.role == role)
            .map(|x| x.id as Sid)
            .collect()
    };
    let cfg = Config {
        id: me,
        voters: ids(Role::Participant),
        observers: ids(Role::Observer),
        init_limit: s.init_limit * per_tick,
        sync_limit: s.sync_limit * per_tick,
        // 50–100 ms for a better vote once a quorum agrees (ZooKeeper waits 200 ms). Safety
        // does not depend on it: a quorum only ever votes for a history at least as new as
        // each voter's own; the wait only lets a better candidate win.
        finalize_ticks: 1,
        snap_threshold: s.commit_log_count,
        log_window: s.commit_log_count,
    };
    let election = TcpListener::bind(peers[&me].election).await?;
    let quorum = TcpListener::bind(peers[&me].quorum).await?;
    let client_addr = match &mine.client {
        Some((h, p)) => format!("{h}:{p}"),
        None => format!("{}:{}", s.client_port_address, s.client_port),
    };
    let clients = TcpListener::bind(&client_addr).await?;
    println!("zabd: serving clients on {}", clients.local_addr()?);
    tracing::info!(id = me, election = %peers[&me].election, quorum = %peers[&me].quorum, "ensemble member starting; waiting for a quorum");
    let status = Arc::new(Mutex::new(Status {
        state: State::Looking,
        leader: None,
        epoch: 0,
    }));
    super::member::run(super::member::Setup {
        settings: s.clone(),
        cfg,
        peers,
        election,
        quorum,
        clients,
        core_tick: Duration::from_millis(CORE_TICK_MS),
        status,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(lines: &[&str]) -> crate::config::Settings {
        let mut s = crate::config::Settings::default();
        for (i, l) in lines.iter().enumerate() {
            let id = i as i64 + 1;
            s.servers
                .push(crate::config::parse_server_spec(id, l).expect("spec"));
        }
        s
    }

    #[test]
    fn config_node_leaves_out_unknown_client_addresses() {
        let s = settings(&["h1:2888:3888", "h2:2888:3888:observer", "h3:2888:3888"]);
        assert_eq!(
            config_node_text(&s),
            "server.1=h1:2888:3888:participant\nserver.2=h2:2888:3888:observer\n\
             server.3=h3:2888:3888:participant\nversion=0"
        );
    }

    #[test]
    fn config_node_keeps_configured_client_addresses() {
        let s = settings(&["h1:1:2;10.0.0.1:2181", "h2:1:2:participant;2182"]);
        assert_eq!(
            config_node_text(&s),
            "server.1=h1:1:2:participant;10.0.0.1:2181\n\
             server.2=h2:1:2:participant;0.0.0.0:2182\nversion=0"
        );
    }
}
