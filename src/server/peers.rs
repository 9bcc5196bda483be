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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub use crate::node::{PeerCmd, PeerEvent};

#[derive(Clone, Debug)]
pub struct PeerAddrs {
    pub election: SocketAddr,
    pub quorum: SocketAddr,
}

/// How long a learner keeps trying to reach its new leader's quorum port.
const LEADER_CONNECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Largest notification or quorum packet accepted from a peer.
const MAX_PEER_FRAME: usize = 64 << 20;

struct Conn {
    tx: mpsc::UnboundedSender<Bytes>,
    /// Distinguishes a connection from its replacement, so a stale reader's end is ignored.
    id: u64,
}

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
}

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
    events: mpsc::UnboundedSender<PeerEvent>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    next_id: u64,
    /// Redial ticks until the next report of unreachable members.
    report_in: u32,
}

/// Starts the transport on the given listeners; returns its command channel.
pub fn start(
    me: Sid,
    peers: HashMap<Sid, PeerAddrs>,
    config: Bytes,
    election_listener: TcpListener,
    quorum_listener: TcpListener,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> mpsc::UnboundedSender<PeerCmd> {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let me_addr = peers.get(&me).map(|a| a.election);
    tokio::spawn(accept_election(
        election_listener,
        me,
        internal_tx.clone(),
        events.clone(),
    ));
    tokio::spawn(accept_quorum(
        quorum_listener,
        internal_tx.clone(),
        events.clone(),
    ));
    let t = Transport {
        me,
        peers,
        config,
        election: HashMap::new(),
        dialing: std::collections::HashSet::new(),
        quorum: HashMap::new(),
        pending_leader: None,
        events,
        internal_tx,
        next_id: 1,
        report_in: 20,
    };
    tokio::spawn(t.run(cmd_rx, internal_rx, me_addr));
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
        let targets: Vec<(Sid, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(s, _)| {
                **s < self.me && !self.election.contains_key(s) && !self.dialing.contains(s)
            })
            .map(|(s, a)| (*s, a.election))
            .collect();
        for (sid, addr) in targets {
            self.dialing.insert(sid);
            let (me, tx, ev) = (self.me, self.internal_tx.clone(), self.events.clone());
            let id = self.fresh_id();
            let my_addr = me_addr.map(|a| a.to_string()).unwrap_or_default();
            tokio::spawn(async move {
                let Ok(Ok(mut s)) = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    TcpStream::connect(addr),
                )
                .await
                else {
                    let _ = tx.send(Internal::Down {
                        sid,
                        id,
                        quorum: false,
                    });
                    return;
                };
                let _ = s.set_nodelay(true);
                if s.write_all(&hello(me, &my_addr)).await.is_err() {
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
            let (addr, hello) = (a.election, hello(me, &my_addr));
            tokio::spawn(async move {
                let wait = std::time::Duration::from_secs(2);
                let Ok(Ok(mut s)) = tokio::time::timeout(wait, TcpStream::connect(addr)).await
                else {
                    return;
                };
                if s.write_all(&hello).await.is_ok() {
                    let mut sink = [0u8; 64];
                    let _ = tokio::time::timeout(wait, s.read(&mut sink)).await;
                }
            });
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
                self.send_bytes(to, state);
            }
            PeerCmd::ConnectLeader { leader } => self.connect_leader(leader),
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
                let _ = c.tx.send(f.freeze());
            }
            return;
        }
        let Some(p) = codec::encode_packet(&msg, self.me, 0, &self.config) else {
            return;
        };
        self.send_bytes(to, p.encode());
    }

    /// Bytes on the quorum connection to `to` (queued while it is being opened).
    fn send_bytes(&mut self, to: Sid, bytes: Bytes) {
        if let Some(c) = self.quorum.get(&to) {
            let _ = c.tx.send(bytes);
        } else if let Some((leader, _, queue)) = self.pending_leader.as_mut() {
            if *leader == to {
                queue.push(bytes);
            }
        }
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
        let Some(addr) = self.peers.get(&leader).map(|a| a.quorum) else {
            return;
        };
        let id = self.fresh_id();
        self.pending_leader = Some((leader, id, Vec::new()));
        let (tx, ev) = (self.internal_tx.clone(), self.events.clone());
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
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    run_quorum_conn(s, Some(leader), id, tx, ev, true).await;
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
            Internal::ElectionUp { sid, conn } => {
                self.dialing.remove(&sid);
                self.election.insert(sid, conn);
            }
            Internal::QuorumUp { sid, conn, first } => {
                if let Some((leader, attempt, queue)) = self.pending_leader.take() {
                    if leader == sid && attempt == conn.id {
                        for b in queue {
                            let _ = conn.tx.send(b);
                        }
                    } else {
                        self.pending_leader = Some((leader, attempt, queue));
                    }
                }
                self.quorum.insert(sid, conn);
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

async fn accept_election(
    l: TcpListener,
    me: Sid,
    tx: mpsc::UnboundedSender<Internal>,
    ev: mpsc::UnboundedSender<PeerEvent>,
) {
    let mut next = 1u64 << 40;
    while let Ok((mut s, peer)) = l.accept().await {
        next += 1;
        let (tx, ev, id) = (tx.clone(), ev.clone(), next);
        tokio::spawn(async move {
            let mut head = [0u8; 8];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            let first = i64::from_be_bytes(head);
            let sid = if first >= 0 {
                first // protocol V0: the first long is the sid
            } else {
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let sid = i64::from_be_bytes(head);
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let n = i32::from_be_bytes(len);
                if !(0..=4096).contains(&n) {
                    tracing::warn!(%peer, n, "election handshake with a bad address length; closing");
                    return;
                }
                let mut addr = vec![0u8; n as usize];
                if s.read_exact(&mut addr).await.is_err() {
                    return;
                }
                sid
            };
            if sid < 0 || (sid as Sid) <= me {
                // The larger id keeps the connection; we call it back ourselves.
                return;
            }
            let _ = s.set_nodelay(true);
            run_election_conn(s, sid as Sid, id, tx, ev).await;
        });
    }
}

async fn run_election_conn(
    s: TcpStream,
    sid: Sid,
    id: u64,
    tx: mpsc::UnboundedSender<Internal>,
    ev: mpsc::UnboundedSender<PeerEvent>,
) {
    let (mut rd, mut wr) = s.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let _ = tx.send(Internal::ElectionUp {
        sid,
        conn: Conn { tx: out_tx, id },
    });
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    loop {
        let mut len = [0u8; 4];
        if rd.read_exact(&mut len).await.is_err() {
            break;
        }
        let n = i32::from_be_bytes(len);
        if n < 0 || n as usize > MAX_PEER_FRAME {
            tracing::warn!(sid, n, "election message with a bad length; closing");
            break;
        }
        let mut body = vec![0u8; n as usize];
        if rd.read_exact(&mut body).await.is_err() {
            break;
        }
        match codec::decode_notification(Bytes::from(body)) {
            Ok(msg) => {
                let _ = ev.send(PeerEvent::Msg { from: sid, msg });
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
) {
    let mut next = 1u64 << 50;
    while let Ok((s, _)) = l.accept().await {
        next += 1;
        let _ = s.set_nodelay(true);
        tokio::spawn(run_quorum_conn(
            s,
            None,
            next,
            tx.clone(),
            ev.clone(),
            false,
        ));
    }
}

/// A quorum packet whose framing cannot be right: the connection closes.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("quorum packet data of {0} bytes (at most {MAX_PEER_FRAME})")]
    TooLarge(i32),
}

/// Length of the QuorumPacket at the start of `b`, if it is whole.
fn packet_len(b: &[u8]) -> Result<Option<usize>, FrameError> {
    let int_at = |at: usize| -> Option<i32> {
        b.get(at..at + 4)
            .map(|x| i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
    };
    let mut at = 12; // int type, long zxid
    let Some(n) = int_at(at) else { return Ok(None) };
    at += 4;
    if n > 0 {
        if n as usize > MAX_PEER_FRAME {
            return Err(FrameError::TooLarge(n));
        }
        at += n as usize;
    }
    let Some(count) = int_at(at) else {
        return Ok(None);
    };
    at += 4;
    for _ in 0..count.max(0) {
        for _ in 0..2 {
            let Some(len) = int_at(at) else {
                return Ok(None);
            };
            at += 4 + len.max(0) as usize;
        }
    }
    Ok(if b.len() >= at { Some(at) } else { None })
}

/// A learner connection. `sid` is known on the learner's side (its leader); on the leader's
/// side it comes from the first packet.
async fn run_quorum_conn(
    s: TcpStream,
    mut sid: Option<Sid>,
    id: u64,
    tx: mpsc::UnboundedSender<Internal>,
    ev: mpsc::UnboundedSender<PeerEvent>,
    to_leader: bool,
) {
    let (mut rd, mut wr) = s.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    let mut out_tx = Some(out_tx);
    if let Some(s) = sid {
        if let Some(t) = out_tx.take() {
            let conn = Conn { tx: t, id };
            let _ = tx.send(Internal::QuorumUp {
                sid: s,
                conn,
                first: None,
            });
        }
    }
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // The zxid of a SNAP whose state is still arriving.
    let mut snap: Option<i64> = None;
    'read: loop {
        loop {
            if let Some(zxid) = snap {
                match crate::persist::snapshot::stream_len(&buf) {
                    Err(e) => {
                        tracing::warn!(?sid, "closing quorum connection: bad SNAP state: {e}");
                        break 'read;
                    }
                    Ok(None) => break,
                    Ok(Some(n)) => {
                        let state = buf.split_to(n).freeze();
                        snap = None;
                        if let Some(from) = sid {
                            let _ = ev.send(PeerEvent::Snap { from, zxid, state });
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
                            let conn = Conn { tx: t, id };
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
                    tracing::trace!(from, kind = p.kind, zxid = p.zxid, "quorum packet");
                    if to_leader && p.kind == packet::SNAP {
                        snap = Some(p.zxid);
                        continue;
                    }
                    for e in crate::node::packet_events(from, &p, to_leader) {
                        let _ = ev.send(e);
                    }
                }
            }
        }
        match rd.read_buf(&mut buf).await {
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
