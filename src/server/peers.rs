//! Ensemble networking: ZooKeeper 3.8's election connections (QuorumCnxManager) and learner
//! connections (the quorum port), carrying `crate::quorum` messages. One task owns every
//! connection; readers report to the member's node as [`PeerEvent`]s.
//!
//! Election port: the side that connects sends `long -65535 (protocol V2), long sid,
//! int length, "host:port"`; of two peers only the connection opened by the larger id is
//! kept (a smaller id that calls is hung up on and called back). Then both ways:
//! `int length` + notification. Quorum port: the learner connects to its leader and both
//! sides exchange QuorumPacket records back to back (no length prefix); the first packet,
//! FOLLOWERINFO or OBSERVERINFO, names the learner.

use crate::quorum::codec;
use crate::quorum::wire::{packet, QuorumPacket, PROTOCOL_VERSION_V2};
use crate::quorum::{Msg, Sid};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::peer_conn::{spawn_writer, Conn, MAX_PEER_QUEUE};
use super::peer_guard::Guard;
use super::peer_stream::PeerStream;
use super::quorum_auth::QuorumAuth;
use super::quorum_tls::QuorumTls;
pub use crate::node::{PeerCmd, PeerEvent};

#[derive(Clone, Debug)]
pub struct PeerAddrs {
    /// The host its `server.N` line names (what its certificate is checked against).
    pub host: String,
    pub election: SocketAddr,
    pub quorum: SocketAddr,
}

/// How long a learner keeps trying to reach its new leader's quorum port.
const LEADER_CONNECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Largest quorum packet accepted from a peer (its data, and the whole packet with its
/// authinfo).
const MAX_PEER_FRAME: usize = 64 << 20;
/// Largest election message accepted (ZooKeeper's QuorumCnxManager.PACKETMAXSIZE).
const MAX_ELECTION_MESSAGE: usize = 512 << 10;
/// Most authinfo entries in one REQUEST (a session's identities; real ones have a few).
const MAX_AUTH_ENTRIES: i32 = 1024;
/// Most connections open at once on each peer port (an ensemble needs a few per member).
const MAX_PEER_PORT_CONNS: usize = 256;
/// How long a new connection on a peer port may take to say who it is.
pub(super) const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

enum Internal {
    ElectionUp {
        sid: Sid,
        conn: Conn,
    },
    /// A quorum connection is up; `first` (the learner's FOLLOWERINFO, on the leader's side)
    /// is passed on only once the connection is registered, so a reply can find it.
    QuorumUp {
        sid: Sid,
        conn: Conn,
        first: Option<PeerEvent>,
    },
    Down {
        sid: Sid,
        id: u64,
        quorum: bool,
    },
    /// A peer with a smaller id called with its election address: it is called back there
    /// if it is not a member (a member about to join, as ZooKeeper calls one back).
    Introduced {
        sid: Sid,
        election: SocketAddr,
    },
}

/// Most peers outside the membership remembered for calling back.
const MAX_INTRODUCED: usize = 64;

pub struct Transport {
    me: Sid,
    peers: HashMap<Sid, PeerAddrs>,
    config: Bytes,
    election: HashMap<Sid, Conn>,
    /// Election connections being dialled.
    dialing: std::collections::HashSet<Sid>,
    quorum: HashMap<Sid, Conn>,
    /// The leader we are connecting to, the attempt's connection id, and messages for it.
    pending_leader: Option<(Sid, u64, Vec<Bytes>)>,
    /// Peers outside the membership that called with their election address.
    introduced: HashMap<Sid, PeerAddrs>,
    events: mpsc::UnboundedSender<PeerEvent>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    next_id: u64,
    /// Redial ticks until the next report of unreachable members.
    report_in: u32,
    /// How a SNAP's state decodes (`zookeeper.extendedTypesEnabled`).
    extended_types: bool,
    /// Quorum SASL, when on.
    auth: Option<Arc<QuorumAuth>>,
    /// Quorum TLS, when on.
    tls: Option<Arc<QuorumTls>>,
    /// The last PROPOSAL encoded, by (zxid, its payload's address): the packet for the
    /// next follower is the same bytes.
    last_proposal: Option<((i64, usize), Bytes)>,
}

/// What the transport needs besides its listeners.
pub struct PeerOptions {
    /// How a SNAP's state decodes (`zookeeper.extendedTypesEnabled`).
    pub extended_types: bool,
    /// Quorum SASL (`quorum.auth.*`), when on.
    pub auth: Option<Arc<QuorumAuth>>,
    /// Quorum TLS (`sslQuorum`, `portUnification`), when on.
    pub tls: Option<Arc<QuorumTls>>,
}

/// Starts the transport on the given listeners; returns its command channel.
pub fn start(
    me: Sid,
    peers: HashMap<Sid, PeerAddrs>,
    config: Bytes,
    election_listener: TcpListener,
    quorum_listener: TcpListener,
    events: mpsc::UnboundedSender<PeerEvent>,
    options: PeerOptions,
) -> mpsc::UnboundedSender<PeerCmd> {
    let PeerOptions {
        extended_types,
        auth,
        tls,
    } = options;
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let me_addr = peers.get(&me).map(|a| a.election);
    let guard = Guard {
        auth: auth.clone(),
        tls: tls.clone(),
    };
    tokio::spawn(accept_election(
        election_listener,
        me,
        internal_tx.clone(),
        events.clone(),
        guard.clone(),
    ));
    tokio::spawn(accept_quorum(
        quorum_listener,
        internal_tx.clone(),
        events.clone(),
        guard,
    ));
    let t = Transport {
        me,
        peers,
        config,
        election: HashMap::new(),
        dialing: std::collections::HashSet::new(),
        quorum: HashMap::new(),
        pending_leader: None,
        introduced: HashMap::new(),
        events,
        internal_tx,
        next_id: 1,
        report_in: 20,
        extended_types,
        auth,
        tls,
        last_proposal: None,
    };
    super::supervise(
        "peer transport",
        tokio::spawn(t.run(cmd_rx, internal_rx, me_addr)),
    );
    cmd_tx
}

impl Transport {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<PeerCmd>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
        me_addr: Option<SocketAddr>,
    ) {
        let mut redial = tokio::time::interval(std::time::Duration::from_millis(500));
        let mut knock = 0u32;
        loop {
            tokio::select! {
                c = cmds.recv() => match c {
                    Some(c) => self.command(c),
                    None => return,
                },
                i = internal.recv() => if let Some(i) = i { self.internal(i) },
                _ = redial.tick() => {
                    self.dial_smaller(me_addr);
                    knock = (knock + 1) % 4;
                    if knock == 0 {
                        self.knock_larger(me_addr);
                    }
                    self.report_unreachable();
                }
            }
        }
    }

    /// Keeps an election connection to every peer with a smaller id (ours are the ones kept).
    /// Every 10 s while some peer has no election connection, says which (a member without
    /// a quorum waits and keeps trying; this is the why).
    fn report_unreachable(&mut self) {
        self.report_in = self.report_in.saturating_sub(1);
        if self.report_in > 0 {
            return;
        }
        self.report_in = 20;
        let mut missing: Vec<Sid> = self
            .peers
            .keys()
            .copied()
            .filter(|s| *s != self.me && !self.election.contains_key(s))
            .collect();
        missing.sort_unstable();
        if !missing.is_empty() {
            tracing::info!(
                ?missing,
                "no election connection to these members yet; retrying"
            );
        }
    }

    fn dial_smaller(&mut self, me_addr: Option<SocketAddr>) {
        let introduced = self
            .introduced
            .iter()
            .filter(|(s, _)| !self.peers.contains_key(s));
        let targets: Vec<(Sid, PeerAddrs)> = self
            .peers
            .iter()
            .chain(introduced)
            .filter(|(s, _)| {
                **s < self.me && !self.election.contains_key(s) && !self.dialing.contains(s)
            })
            .map(|(s, a)| (*s, a.clone()))
            .collect();
        for (sid, addrs) in targets {
            self.dialing.insert(sid);
            let (me, tx, ev) = (self.me, self.internal_tx.clone(), self.events.clone());
            let id = self.fresh_id();
            let my_addr = me_addr.map(|a| a.to_string()).unwrap_or_default();
            let guard = self.guard();
            tokio::spawn(async move {
                let dial = guard.dial(addrs.election, &addrs.host, sid, "election");
                let Some(mut s) = dial.await else {
                    let _ = tx.send(Internal::Down {
                        sid,
                        id,
                        quorum: false,
                    });
                    return;
                };
                let greeted = send_hello(&mut s, me, &my_addr).await
                    && guard.authenticate_to(&mut s, sid, "election").await;
                if !greeted {
                    let _ = tx.send(Internal::Down {
                        sid,
                        id,
                        quorum: false,
                    });
                    return;
                }
                run_election_conn(s, sid, id, tx, ev).await;
            });
        }
    }

    /// Calls every larger-id peer we have no election connection with; it hangs up and
    /// calls back (the larger id keeps the connection). zabd members call smaller ids
    /// themselves, but an Apache ZooKeeper member that is not looking calls nobody: without
    /// this, a restarted smaller member would never reach it.
    fn knock_larger(&mut self, me_addr: Option<SocketAddr>) {
        let me = self.me;
        let my_addr = me_addr.map(|a| a.to_string()).unwrap_or_default();
        for (sid, a) in &self.peers {
            if *sid <= me || self.election.contains_key(sid) {
                continue;
            }
            let (a, my_addr) = (a.clone(), my_addr.clone());
            let (guard, peer) = (self.guard(), *sid);
            tokio::spawn(async move {
                let wait = std::time::Duration::from_secs(2);
                let Some(mut s) = guard.dial(a.election, &a.host, peer, "election").await else {
                    return;
                };
                if send_hello(&mut s, me, &my_addr).await
                    && guard.authenticate_to(&mut s, peer, "election").await
                {
                    let mut sink = [0u8; 64];
                    let _ = tokio::time::timeout(wait, s.read(&mut sink)).await;
                }
            });
        }
    }

    fn guard(&self) -> Guard {
        Guard {
            auth: self.auth.clone(),
            tls: self.tls.clone(),
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn command(&mut self, c: PeerCmd) {
        match c {
            PeerCmd::Send { to, msg } => self.send(to, msg),
            PeerCmd::Raw { to, packet } => self.send_bytes(to, packet.encode()),
            PeerCmd::SendSnap { to, zxid, state } => {
                let p = QuorumPacket {
                    kind: packet::SNAP,
                    zxid,
                    data: None,
                    auth: Vec::new(),
                };
                self.send_bytes(to, p.encode());
                if let Some(c) = self.quorum.get(&to) {
                    c.stream_snap(to, state);
                }
            }
            PeerCmd::ConnectLeader { leader } => self.connect_leader(leader),
            PeerCmd::Members { servers, config } => {
                match super::ensemble::peer_addrs(&servers) {
                    Ok(peers) => self.peers = peers,
                    Err(e) => tracing::error!(error = %e, "cannot resolve the new members"),
                }
                self.config = config;
            }
            PeerCmd::Disconnect { peer } => {
                self.quorum.remove(&peer);
                if self
                    .pending_leader
                    .as_ref()
                    .is_some_and(|(l, _, _)| *l == peer)
                {
                    self.pending_leader = None;
                }
            }
        }
    }

    fn send(&mut self, to: Sid, msg: Msg) {
        if let Msg::Notify(v) = &msg {
            if let Some(c) = self.election.get(&to) {
                let body = codec::encode_notification(v, self.config.clone());
                let mut f = BytesMut::with_capacity(4 + body.len());
                f.extend_from_slice(&(body.len() as i32).to_be_bytes());
                f.extend_from_slice(&body);
                if !c.push(f.freeze()) {
                    tracing::warn!(
                        peer = to,
                        bytes = MAX_PEER_QUEUE,
                        "election connection not draining; closing it"
                    );
                    self.election.remove(&to);
                }
            }
            return;
        }
        if let Msg::Proposal(e) = &msg {
            // One PROPOSAL goes to every follower in a row: encoded once, shared by all.
            let key = (e.zxid, e.payload.as_ptr() as usize);
            let bytes = match &self.last_proposal {
                Some((k, b)) if *k == key => b.clone(),
                _ => {
                    let Some(p) = codec::encode_packet(&msg, self.me, 0, &self.config) else {
                        return;
                    };
                    let b = p.encode();
                    self.last_proposal = Some((key, b.clone()));
                    b
                }
            };
            return self.send_bytes(to, bytes);
        }
        let Some(p) = codec::encode_packet(&msg, self.me, 0, &self.config) else {
            return;
        };
        self.send_bytes(to, p.encode());
    }

    /// Bytes on the quorum connection to `to` (queued while it is being opened).
    fn send_bytes(&mut self, to: Sid, bytes: Bytes) {
        if let Some(c) = self.quorum.get(&to) {
            if !c.push(bytes) {
                self.drop_stuck(to);
            }
        } else if let Some((leader, _, queue)) = self.pending_leader.as_mut() {
            if *leader == to {
                queue.push(bytes);
            }
        }
    }

    /// A quorum connection whose peer has not read [`MAX_PEER_QUEUE`] bytes: closed, as
    /// ZooKeeper closes a learner that falls behind; the node hears it as a disconnect.
    fn drop_stuck(&mut self, peer: Sid) {
        tracing::warn!(
            peer,
            bytes = MAX_PEER_QUEUE,
            "quorum connection not draining (peer stopped or too slow); closing it"
        );
        self.quorum.remove(&peer);
        let _ = self.events.send(PeerEvent::Disconnected { peer });
    }

    fn connect_leader(&mut self, leader: Sid) {
        if self.quorum.contains_key(&leader)
            || self
                .pending_leader
                .as_ref()
                .is_some_and(|(l, _, _)| *l == leader)
        {
            return;
        }
        let Some(addrs) = self.peers.get(&leader).cloned() else {
            return;
        };
        let addr = addrs.quorum;
        let id = self.fresh_id();
        self.pending_leader = Some((leader, id, Vec::new()));
        let (tx, ev) = (self.internal_tx.clone(), self.events.clone());
        let ext = self.extended_types;
        let guard = self.guard();
        tokio::spawn(async move {
            // A new leader opens its quorum port only once it starts leading: keep trying for
            // a while, as ZooKeeper's Learner.connectToLeader does.
            let deadline = tokio::time::Instant::now() + LEADER_CONNECT_PATIENCE;
            let mut r = TcpStream::connect(addr).await;
            while r.is_err() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                r = TcpStream::connect(addr).await;
            }
            match Ok::<_, ()>(r) {
                Ok(Ok(tcp)) => {
                    let opened = guard.secure(tcp, &addrs.host, leader, "quorum").await;
                    let Some(mut s) = opened else {
                        let _ = tx.send(Internal::Down {
                            sid: leader,
                            id,
                            quorum: true,
                        });
                        return;
                    };
                    if !guard.authenticate_to(&mut s, leader, "quorum").await {
                        let _ = tx.send(Internal::Down {
                            sid: leader,
                            id,
                            quorum: true,
                        });
                        return;
                    }
                    run_quorum_conn(s, Some(leader), id, tx, ev, Side::Learner { ext }).await;
                }
                r => {
                    let why = match r {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_string(),
                    };
                    tracing::info!(leader, %addr, why, "cannot reach the leader's quorum port");
                    let _ = tx.send(Internal::Down {
                        sid: leader,
                        id,
                        quorum: true,
                    });
                }
            }
        });
    }

    fn internal(&mut self, i: Internal) {
        match i {
            Internal::Introduced { sid, election } => {
                if !self.peers.contains_key(&sid)
                    && (self.introduced.len() < MAX_INTRODUCED
                        || self.introduced.contains_key(&sid))
                {
                    let addrs = PeerAddrs {
                        host: election.ip().to_string(),
                        election,
                        quorum: election,
                    };
                    self.introduced.insert(sid, addrs);
                }
            }
            Internal::ElectionUp { sid, conn } => {
                self.dialing.remove(&sid);
                self.election.insert(sid, conn);
            }
            Internal::QuorumUp { sid, conn, first } => {
                // What was queued while the connection was being opened goes first, all
                // of it or (past the budget) none: a stream with a gap is worse than none.
                let mut whole = true;
                if let Some((leader, attempt, queue)) = self.pending_leader.take() {
                    if leader == sid && attempt == conn.id {
                        whole = queue.into_iter().all(|b| conn.push(b));
                    } else {
                        self.pending_leader = Some((leader, attempt, queue));
                    }
                }
                self.quorum.insert(sid, conn);
                if !whole {
                    self.drop_stuck(sid);
                    return;
                }
                if let Some(e) = first {
                    let _ = self.events.send(e);
                }
            }
            Internal::Down { sid, id, quorum } => {
                if !quorum {
                    self.dialing.remove(&sid);
                }
                let map = if quorum {
                    &mut self.quorum
                } else {
                    &mut self.election
                };
                let mut current = false;
                if map.get(&sid).is_some_and(|c| c.id == id) {
                    map.remove(&sid);
                    current = true;
                }
                let attempt = |(l, a, _): &(Sid, u64, Vec<Bytes>)| *l == sid && *a == id;
                if quorum && self.pending_leader.as_ref().is_some_and(attempt) {
                    self.pending_leader = None;
                    current = true;
                }
                // Only the end of the connection in use is news to the core: a late report
                // from an older attempt must not tear down its successor.
                if quorum && current {
                    let _ = self.events.send(PeerEvent::Disconnected { peer: sid });
                }
            }
        }
    }
}

/// The election handshake: protocol version, our id, our election address.
fn hello(me: Sid, my_addr: &str) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&PROTOCOL_VERSION_V2.to_be_bytes());
    h.extend_from_slice(&(me as i64).to_be_bytes());
    h.extend_from_slice(&(my_addr.len() as i32).to_be_bytes());
    h.extend_from_slice(my_addr.as_bytes());
    h
}

/// Sends the election handshake; false when the connection broke.
async fn send_hello(s: &mut PeerStream, me: Sid, my_addr: &str) -> bool {
    s.write_all(&hello(me, my_addr)).await.is_ok() && s.flush().await.is_ok()
}

/// Accepts connections on a peer port for as long as the member runs. An accept error
/// (EMFILE, ENFILE, ...) is logged and retried after a pause that grows to a second; past
/// [`MAX_PEER_PORT_CONNS`] open connections a new one is closed at once, with a log line.
async fn accept_peers<F, Fut>(l: TcpListener, port: &'static str, mut handle: F)
where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let live = Arc::new(AtomicUsize::new(0));
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        let (s, peer) = match l.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(port, error = %e, "accept failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
        };
        pause = std::time::Duration::from_millis(10);
        if live.load(Ordering::Relaxed) >= MAX_PEER_PORT_CONNS {
            tracing::warn!(port, %peer, max = MAX_PEER_PORT_CONNS, "too many connections on this peer port; closing");
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let conn = handle(s, peer);
        let live = live.clone();
        tokio::spawn(async move {
            conn.await;
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The first address of an election handshake's address text (`host:port`, several
/// separated by `|` in ZooKeeper 3.6+), if it is an IP address.
fn first_address(text: &str) -> Option<SocketAddr> {
    let first = text.split('|').next()?.trim().trim_start_matches('/');
    first.parse().ok()
}

/// The election handshake a connecting peer sends: its id (protocol V0: the first long;
/// V2: version, id, then its election address). None if it is malformed or late.
async fn election_hello(s: &mut PeerStream, peer: SocketAddr) -> Option<(i64, Option<String>)> {
    let read = async {
        let mut head = [0u8; 8];
        s.read_exact(&mut head).await.ok()?;
        let first = i64::from_be_bytes(head);
        if first >= 0 {
            return Some((first, None));
        }
        s.read_exact(&mut head).await.ok()?;
        let sid = i64::from_be_bytes(head);
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.ok()?;
        let n = i32::from_be_bytes(len);
        if !(0..=4096).contains(&n) {
            tracing::warn!(%peer, n, "election handshake with a bad address length; closing");
            return None;
        }
        let mut addr = vec![0u8; n as usize];
        s.read_exact(&mut addr).await.ok()?;
        Some((sid, String::from_utf8(addr).ok()))
    };
    match tokio::time::timeout(HANDSHAKE_DEADLINE, read).await {
        Ok(sid) => sid,
        Err(_) => {
            tracing::warn!(%peer, "no election handshake within {HANDSHAKE_DEADLINE:?}; closing");
            None
        }
    }
}

async fn accept_election(
    l: TcpListener,
    me: Sid,
    tx: mpsc::UnboundedSender<Internal>,
    ev: mpsc::UnboundedSender<PeerEvent>,
    guard: Guard,
) {
    let mut next = 1u64 << 40;
    accept_peers(l, "election", move |tcp, peer| {
        next += 1;
        let (tx, ev, id, guard) = (tx.clone(), ev.clone(), next, guard.clone());
        async move {
            let Some(mut s) = guard.accepted(tcp, peer, "election").await else {
                return;
            };
            let Some((sid, addr)) = election_hello(&mut s, peer).await else {
                return;
            };
            if !guard.authenticate_from(&mut s, peer, "election").await {
                return;
            }
            if sid < 0 || (sid as Sid) <= me {
                // The larger id keeps the connection; we call it back ourselves, at the
                // address it gave if it is no member we know (one about to join).
                if let Some(election) = addr.as_deref().and_then(first_address) {
                    let _ = tx.send(Internal::Introduced {
                        sid: sid as Sid,
                        election,
                    });
                }
                return;
            }
            run_election_conn(s, sid as Sid, id, tx, ev).await;
        }
    })
    .await;
}

async fn run_election_conn(
    s: PeerStream,
    sid: Sid,
    id: u64,
    tx: mpsc::UnboundedSender<Internal>,
    ev: mpsc::UnboundedSender<PeerEvent>,
) {
    let (mut rd, wr) = s.into_split();
    let (out_tx, queued, writer) = spawn_writer(wr);
    let _ = tx.send(Internal::ElectionUp {
        sid,
        conn: Conn {
            tx: out_tx,
            queued,
            id,
            alive: Arc::new(AtomicBool::new(true)),
        },
    });
    loop {
        let mut len = [0u8; 4];
        if rd.read_exact(&mut len).await.is_err() {
            break;
        }
        let n = i32::from_be_bytes(len);
        if n < 0 || n as usize > MAX_ELECTION_MESSAGE {
            tracing::warn!(
                sid,
                n,
                max = MAX_ELECTION_MESSAGE,
                "election message with a bad length; closing"
            );
            break;
        }
        let mut body = vec![0u8; n as usize];
        if rd.read_exact(&mut body).await.is_err() {
            break;
        }
        match codec::decode_notification(Bytes::from(body)) {
            Ok((vote, config)) => {
                if let Some(msg) = config {
                    let _ = ev.send(PeerEvent::Msg { from: sid, msg });
                }
                let _ = ev.send(PeerEvent::Msg {
                    from: sid,
                    msg: vote,
                });
            }
            Err(e) => {
                tracing::warn!(sid, error = %e, "bad notification; closing");
                break;
            }
        }
    }
    writer.abort();
    let _ = tx.send(Internal::Down {
        sid,
        id,
        quorum: false,
    });
}

async fn accept_quorum(
    l: TcpListener,
    tx: mpsc::UnboundedSender<Internal>,
    ev: mpsc::UnboundedSender<PeerEvent>,
    guard: Guard,
) {
    let mut next = 1u64 << 50;
    accept_peers(l, "quorum", move |tcp, peer| {
        next += 1;
        let (tx, ev, id, guard) = (tx.clone(), ev.clone(), next, guard.clone());
        async move {
            let Some(mut s) = guard.accepted(tcp, peer, "quorum").await else {
                return;
            };
            if !guard.authenticate_from(&mut s, peer, "quorum").await {
                return;
            }
            run_quorum_conn(s, None, id, tx, ev, Side::Leader).await
        }
    })
    .await;
}

/// A quorum packet whose framing cannot be right: the connection closes.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("a quorum packet of {0} bytes or more (at most {MAX_PEER_FRAME})")]
    TooLarge(usize),
    #[error("{0} authinfo entries in a quorum packet (at most {MAX_AUTH_ENTRIES})")]
    TooManyIds(i32),
}

/// Length of the QuorumPacket at the start of `b`, if it is whole.
pub fn packet_len(b: &[u8]) -> Result<Option<usize>, FrameError> {
    let int_at = |at: usize| -> Option<i32> {
        b.get(at..at + 4)
            .map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
    };
    let mut at = 12; // int type, long zxid
    let Some(n) = int_at(at) else { return Ok(None) };
    at += 4;
    if n > 0 {
        if n as usize > MAX_PEER_FRAME {
            return Err(FrameError::TooLarge(n as usize));
        }
        at += n as usize;
    }
    let Some(count) = int_at(at) else {
        return Ok(None);
    };
    at += 4;
    if count > MAX_AUTH_ENTRIES {
        return Err(FrameError::TooManyIds(count));
    }
    for _ in 0..count.max(0) {
        for _ in 0..2 {
            let Some(len) = int_at(at) else {
                return Ok(None);
            };
            at += 4 + len.max(0) as usize;
            if at > MAX_PEER_FRAME + 16 {
                return Err(FrameError::TooLarge(at));
            }
        }
    }
    Ok(if b.len() >= at { Some(at) } else { None })
}

/// Which end of a learner connection this member is.
#[derive(Clone, Copy)]
enum Side {
    Leader,
    /// `ext`: how a SNAP's state decodes (`zookeeper.extendedTypesEnabled`).
    Learner {
        ext: bool,
    },
}

/// A learner connection. `sid` is known on the learner's side (its leader); on the leader's
/// side it comes from the first packet.
async fn run_quorum_conn(
    s: PeerStream,
    mut sid: Option<Sid>,
    id: u64,
    tx: mpsc::UnboundedSender<Internal>,
    ev: mpsc::UnboundedSender<PeerEvent>,
    side: Side,
) {
    let to_leader = matches!(side, Side::Learner { .. });
    let (mut rd, wr) = s.into_split();
    let (out_tx, queued, writer) = spawn_writer(wr);
    let mut out_tx = Some(out_tx);
    let alive = Arc::new(AtomicBool::new(true));
    if let Some(s) = sid {
        if let Some(t) = out_tx.take() {
            let conn = Conn {
                tx: t,
                queued: queued.clone(),
                id,
                alive: alive.clone(),
            };
            let _ = tx.send(Internal::QuorumUp {
                sid: s,
                conn,
                first: None,
            });
        }
    }
    let handshake_until = tokio::time::Instant::now() + HANDSHAKE_DEADLINE;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // The zxid of a SNAP whose state is still arriving, and how far it has been measured.
    let mut snap: Option<(i64, crate::persist::snapshot::StreamScan)> = None;
    'read: loop {
        loop {
            if let Some((zxid, scan)) = snap.as_mut() {
                match scan.advance(&buf) {
                    Err(e) => {
                        tracing::warn!(?sid, "closing quorum connection: bad SNAP state: {e}");
                        break 'read;
                    }
                    Ok(None) => break,
                    Ok(Some(n)) => {
                        let zxid = *zxid;
                        let state = buf.split_to(n).freeze();
                        snap = None;
                        let Side::Learner { ext } = side else {
                            break 'read;
                        };
                        // Decoded on a blocking thread; this reader waits for it, so the
                        // packets after the state still reach the node after it.
                        let decode = move || crate::node::ReceivedSnap::decode(state, ext);
                        let Ok(snap) = tokio::task::spawn_blocking(decode).await else {
                            break 'read;
                        };
                        if let Some(from) = sid {
                            let snap = Box::new(snap);
                            let _ = ev.send(PeerEvent::Snap { from, zxid, snap });
                        }
                        continue;
                    }
                }
            }
            match packet_len(&buf) {
                Err(e) => {
                    tracing::warn!(?sid, "closing quorum connection: {e}");
                    break 'read;
                }
                Ok(None) => break,
                Ok(Some(n)) => {
                    let frame = buf.split_to(n).freeze();
                    let p = match QuorumPacket::decode(frame) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(?sid, error = %e, "undecodable quorum packet; closing");
                            break 'read;
                        }
                    };
                    if sid.is_none() {
                        if p.kind != packet::FOLLOWERINFO && p.kind != packet::OBSERVERINFO {
                            break 'read;
                        }
                        let Ok(s) = codec::learner_sid(&p) else {
                            break 'read;
                        };
                        sid = Some(s);
                        let Ok(msg) = codec::decode_packet(&p, to_leader) else {
                            break 'read;
                        };
                        if let Some(t) = out_tx.take() {
                            let conn = Conn {
                                tx: t,
                                queued: queued.clone(),
                                id,
                                alive: alive.clone(),
                            };
                            let first = Some(PeerEvent::Msg { from: s, msg });
                            let _ = tx.send(Internal::QuorumUp {
                                sid: s,
                                conn,
                                first,
                            });
                        }
                        continue;
                    }
                    let from = sid.expect("set above");
                    if !alive.load(Ordering::Acquire) {
                        tracing::debug!(from, "quorum connection let go of; not reading on");
                        break 'read;
                    }
                    tracing::trace!(from, kind = p.kind, zxid = p.zxid, "quorum packet");
                    if to_leader && p.kind == packet::SNAP {
                        snap = Some((p.zxid, Default::default()));
                        continue;
                    }
                    for e in crate::node::packet_events(from, &p, to_leader) {
                        let _ = ev.send(e);
                    }
                }
            }
        }
        let read = if sid.is_some() {
            rd.read_buf(&mut buf).await
        } else {
            match tokio::time::timeout_at(handshake_until, rd.read_buf(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        "closing quorum connection: no FOLLOWERINFO/OBSERVERINFO within {HANDSHAKE_DEADLINE:?}"
                    );
                    break;
                }
            }
        };
        match read {
            Ok(0) => {
                tracing::debug!(?sid, "quorum connection closed by the other side");
                break;
            }
            Err(e) => {
                tracing::debug!(?sid, error = %e, "quorum connection read error");
                break;
            }
            Ok(_) => {}
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let _ = buf.remaining();
    }
    writer.abort();
    tracing::debug!(?sid, to_leader, "quorum connection ended");
    if let Some(s) = sid {
        let _ = tx.send(Internal::Down {
            sid: s,
            id,
            quorum: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A QuorumPacket's head: type, zxid, then the data length.
    fn head(data_len: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&packet::REQUEST.to_be_bytes());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&data_len.to_be_bytes());
        b
    }

    #[test]
    fn a_whole_packet_is_measured_and_a_partial_one_waits() {
        let mut b = head(3);
        b.extend_from_slice(b"abc");
        b.extend_from_slice(&1i32.to_be_bytes());
        for s in ["digest", "u:p"] {
            b.extend_from_slice(&(s.len() as i32).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        assert_eq!(packet_len(&b).unwrap(), Some(b.len()));
        assert_eq!(packet_len(&b[..b.len() - 1]).unwrap(), None);
    }

    #[test]
    fn claimed_sizes_past_the_bounds_close_the_connection_before_anything_is_buffered() {
        // Data larger than a frame may be.
        assert!(packet_len(&head(MAX_PEER_FRAME as i32 + 1)).is_err());
        // An authinfo count no session has.
        let mut b = head(0);
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(packet_len(&b), Err(FrameError::TooManyIds(_))));
        // An authinfo string claiming 2 GiB: refused at once, not waited for.
        let mut b = head(0);
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(packet_len(&b), Err(FrameError::TooLarge(_))));
    }
}
