//! An ensemble member as a pure node (sans-I/O, in the style of raft-rs's RawNode): the
//! client engine (`crate::engine`) and the ZAB peer (`crate::quorum::Peer`), wired together.
//!
//! Owns: the engine, the peer, the logged-but-unapplied entries, what the engine was last
//! told about the member's role, the syncs waiting to be answered and the read round they
//! need, and the count of log cuts (to tell stale durability reports). It must not touch
//! sockets, files, threads or clocks: [`Node::handle`] takes an [`Input`] and the time and
//! returns [`Io`] commands, which the host (`server::member`) performs in order; the
//! simulation in `tests/node_sim.rs` performs them on an in-memory disk and network.
//!
//! Decisions made here (and nowhere else):
//! * **Writes.** The leader's engine prepares a write and asks to log it; it becomes
//!   `Peer::propose` with the txn log entry body as the PROPOSAL payload, and the zxid ZAB
//!   assigns must be the one prep used (otherwise [`Diverged`]). A learner's engine forwards
//!   writes as REQUEST packets; PING replies carry the sessions its clients touched.
//! * **Durability.** ZAB's appends become [`Io::Append`]; the log writer's "synced up to"
//!   reports come back as [`Input::Durable`] and go to `Peer::durable`, unless they predate
//!   the last log cut this node asked for (they may name entries the cut removed).
//! * **Commits.** The engine holds exactly what ZAB has committed. A commit applies the
//!   logged entries up to it, in zxid order, to the engine at once (`Event::Apply`, which
//!   answers the local client waiting for each); a learner does not wait for its own log
//!   sync. At startup (and after a reload) the engine is the newest snapshot's state and the
//!   entries logged after it wait for their commit like any other: the next leader may cut
//!   some of them off.
//! * **Sync.** A learner's forwarded sync is answered (SYNC, carrying the applied zxid)
//!   only after every COMMIT handled in the same batch has been applied, so the answer
//!   follows them on the stream. A leader's waiting syncs ask for a read round; one round
//!   is started per host pass ([`Input::PassEnd`]).
//! * **SNAP.** A leader sends its engine's state labelled with ZAB's committed zxid, which
//!   is what the engine holds; the proposals after it follow. (ZooKeeper's LearnerHandler
//!   labels it with its data tree's zxid, which on a leader still establishing its epoch
//!   includes an uncommitted tail; a learner's snapshot of it can then hold transactions a
//!   later leader cuts off.) Only the leader a learner is syncing with, before NEWLEADER,
//!   may replace its state: the learner stops snapshotting, sets aside its snapshots past
//!   the leader's zxid, writes the leader's state as a snapshot, cuts its log after that
//!   zxid and starts a fresh engine on it.
//! * **TRUNC.** The log is cut after the given zxid, with the unapplied entries past it.
//!   The engine never applied them; only a snapshot written elsewhere (by ZooKeeper, or by
//!   an older zabd) can hold an uncommitted tail. If the engine is past the cut all the same,
//!   the snapshots past the cut are set aside and the state reloaded from disk
//!   ([`Io::Reload`] → [`Input::Reloaded`]); a reload that does not end exactly at the cut
//!   is [`Diverged`].
//! * **Role.** The engine is told when the member starts or stops serving, when its leader
//!   changes, and, if `read_only_mode` is on, when it has had no leader for long enough.

mod transport;
mod zab;

pub use transport::{packet_events, PeerCmd, PeerEvent, ReceivedSnap};

use crate::engine::{Clock, Engine, EngineAction, EngineConfig, Event, Mode, ToClient};
use crate::persist::txnlog;
use crate::quorum::{codec, Config, Durable, Msg, Peer, Sid, State, Zxid};
use crate::tree::DataTree;
use crate::txn::{Txn, TxnHeader};
use bytes::Bytes;
use std::collections::VecDeque;

/// A proposal on its way to commit, as this member saw it.
struct InFlight {
    zxid: Zxid,
    /// When the leader proposed it or the learner received it (mono us).
    at_us: i64,
}

/// An input to the node.
pub enum Input {
    /// From a client connection: `Accepted`, `Handshake`, `Request` or `Closed`.
    Client(Event),
    /// From the transport.
    Peer(PeerEvent),
    /// The log writer has synced everything up to `zxid`; `truncations` is how many log
    /// cuts it had made by then.
    Durable { zxid: Zxid, truncations: u64 },
    /// ZAB's tick (every core tick).
    PeerTick,
    /// The engine's tick: session expiry, container checks.
    EngineTick,
    /// The end of one pass of the host's loop: one read round for every sync that waits.
    PassEnd,
    /// The answer to [`Io::Reload`]: what the data directory holds now, as at startup: the
    /// newest snapshot's state and the entries logged after it (not applied).
    Reloaded {
        tree: Box<DataTree>,
        sessions: Vec<(i64, i32)>,
        logged: Vec<txnlog::Entry>,
    },
    /// The answer to [`Io::WriteSnap`]: the snapshot `snapshot.<zxid>` is durable.
    SnapWritten { zxid: Zxid },
}

/// A command for the host. They are performed in the order given; the ones marked
/// "synchronously" are complete before the next one starts.
pub enum Io {
    /// A frame for, or the close of, a client connection.
    Client(ToClient),
    Peer(PeerCmd),
    /// Synchronously write the `acceptedEpoch` or `currentEpoch` file.
    SaveEpoch {
        file: &'static str,
        epoch: u32,
    },
    /// Append to the log; its sync is reported as [`Input::Durable`].
    Append {
        zxid: Zxid,
        body: Bytes,
    },
    /// Drop every logged entry after `after`, before any append that follows; the log
    /// writer counts the cut (its durability reports carry the count), and a reload waits
    /// for it.
    CutLog {
        after: Zxid,
    },
    /// Abandon the snapshot being made or sealed: the state is about to be replaced.
    /// Whatever the snapshot thread is writing ends before anything sent to it afterwards
    /// (setting snapshots aside, writing a SNAP's state).
    StopSnapshots,
    /// Rename the snapshots past `newer_than` out of the way (suffix `why`), in order with
    /// the snapshot thread's other work.
    SetAsideSnapshots {
        newer_than: Zxid,
        why: &'static str,
    },
    /// Write a SNAP's state as the snapshot `snapshot.<zxid>` (the state is the file's body;
    /// `digest` is the tree digest at `zxid` for its tail), off the member task, and answer
    /// [`Input::SnapWritten`] once it is synced and in place. Until then the node takes
    /// nothing from its peers (see [`Node::handle`]).
    WriteSnap {
        zxid: Zxid,
        state: Bytes,
        digest: u64,
    },
    /// Recover the state from the data directory again, off the member task, and answer
    /// with [`Input::Reloaded`].
    Reload,
    /// Drop this off the member task (a replaced engine: freeing a large tree takes long).
    Discard(Box<dyn std::any::Any + Send>),
    /// A committed reconfig's membership is active: reach its members (and only them) on
    /// the election and quorum ports, and write it as the dynamic configuration file.
    Membership(crate::quorum::membership::Membership),
    /// A reconfig's membership is proposed: keep it as the `.next` dynamic file until it
    /// activates (ZooKeeper's last seen configuration).
    NextMembership(crate::quorum::membership::Membership),
}

/// What the node waits for from the host before it takes anything from its peers again.
enum Wait {
    /// After a TRUNC that needs a reload: the cut, and the ZAB actions held back until the
    /// host answers [`Io::Reload`].
    Reload {
        after: Zxid,
        queue: VecDeque<crate::quorum::PeerAction>,
    },
    /// After SNAP: the leader's state must be durable before anything that follows it is
    /// logged or acknowledged (as a ZooKeeper learner takes its snapshot before it reads on).
    SnapWrite { zxid: Zxid },
}

/// Something that would make this member's state diverge from the ensemble's: the host
/// stops the member.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Diverged(pub String);

/// The node's settings (a subset of the server configuration).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub engine: EngineConfig,
    pub extended_types: bool,
    /// Serve reads with no leader (`readonlymode.enabled`), after `read_only_after_ms`.
    pub read_only_mode: bool,
    pub read_only_after_ms: i64,
    /// The active membership, whose text `/zookeeper/config` shows (this member's own
    /// view, also after SNAP); replaced when a reconfig activates.
    pub membership: crate::quorum::membership::Membership,
}

pub struct Node {
    cfg: NodeConfig,
    engine: Engine,
    peer: Peer,
    /// Logged entries not yet applied to the engine, in zxid order.
    unapplied: VecDeque<txnlog::Entry>,
    /// Leader: the transaction being proposed, as prep made it, so that ZAB's append of
    /// it need not decode its own PROPOSAL back.
    proposing: Option<txnlog::Entry>,
    /// What the engine was last told: its mode, the leader and the epoch.
    served: (Mode, Option<Sid>, u32),
    /// Since when (monotonic ms) this member has had no leader.
    down_since: Option<i64>,
    /// When this member last handed its leadership over (`leaderServes` off).
    handed_over_at: Option<i64>,
    /// Learners whose sync may be answered once this batch of actions is done.
    sync_replies: Vec<Sid>,
    /// The read round the engine's waiting syncs need, started at the end of the pass.
    read_round: Option<u64>,
    /// Log cuts asked of the host.
    truncations: u64,
    /// The last and the largest time from the leader's prep of a transaction (its header
    /// time, wall clock) to its apply here, in ms.
    apply_lag_ms: (i64, i64),
    /// Proposals not yet committed, with when this member proposed (leader) or received
    /// (learner) each, for `quorum_ack_latency` and the write path's stage timings;
    /// emptied by commits and by role changes.
    in_flight: VecDeque<InFlight>,
    /// How many of `in_flight`, from the front, this member's log sync covers (syncs and
    /// commits both go in zxid order), so a durability report looks only at the rest.
    in_flight_synced: usize,
    /// Learner: PROPOSALs not yet acknowledged (zxid, creation time on the leader), for
    /// `proposal_ack_creation_latency`.
    received_at: VecDeque<(i64, i64)>,
    /// Learner: when it began syncing with its leader (mono ms), and whether as observer.
    sync_started: Option<(i64, bool)>,
    /// What the host is doing for the node that peer inputs must wait for.
    wait: Option<Wait>,
    /// Inputs that arrived while waiting, taken in order once the wait ends.
    deferred: VecDeque<Input>,
    out: Vec<Io>,
    diverged: Option<Diverged>,
    now: Clock,
}

impl Node {
    /// A node over recovered state: `tree` and `sessions` (the newest snapshot's) as the
    /// engine starts, `durable` as ZAB starts (the snapshot's zxid as its base, every entry
    /// logged after it as its log). The logged entries are applied once ZAB commits them:
    /// the next leader may cut some of them off, and a state that never held an uncommitted
    /// transaction is what a SNAP sends and a snapshot keeps. An entry that does not decode
    /// is [`Diverged`].
    pub fn new(
        cfg: NodeConfig,
        zab: Config,
        durable: Durable,
        tree: DataTree,
        sessions: Vec<(i64, i32)>,
        now: Clock,
    ) -> Result<Node, Diverged> {
        let mut unapplied = VecDeque::with_capacity(durable.log.len());
        for e in &durable.log {
            let entry = txnlog::decode_body(e.payload.clone()).map_err(|err| {
                Diverged(format!("cannot decode logged entry 0x{:x}: {err}", e.zxid))
            })?;
            unapplied.push_back(entry);
        }
        let engine = Self::fresh_engine(&cfg, tree, sessions, now);
        Ok(Node {
            cfg,
            engine,
            peer: Peer::new(zab, durable),
            unapplied,
            proposing: None,
            served: (Mode::Down, None, 0),
            down_since: Some(now.mono_ms),
            handed_over_at: None,
            sync_replies: Vec::new(),
            read_round: None,
            truncations: 0,
            apply_lag_ms: (0, 0),
            in_flight: VecDeque::new(),
            in_flight_synced: 0,
            received_at: VecDeque::new(),
            sync_started: None,
            wait: None,
            deferred: VecDeque::new(),
            out: Vec::new(),
            diverged: None,
            now,
        })
    }

    fn fresh_engine(
        cfg: &NodeConfig,
        tree: DataTree,
        sessions: Vec<(i64, i32)>,
        now: Clock,
    ) -> Engine {
        let mut engine = Engine::recovered(cfg.engine.clone(), tree, sessions, now);
        engine
            .tree
            .set_config_data(Bytes::from(cfg.membership.to_text()), now.wall_ms);
        engine.set_membership(cfg.membership.clone(), cfg.membership.clone());
        let down = Event::Mode {
            mode: Mode::Down,
            last_zxid: 0,
        };
        engine.handle(down, now);
        engine
    }

    /// Handles one input. The commands come back in the order they must be performed.
    ///
    /// While the host reloads the state (TRUNC) or writes a SNAP, peer messages, durability
    /// reports and (during a reload, when the engine is about to be replaced) client events
    /// are deferred and taken in order when the answer comes; ticks are skipped. During a
    /// SNAP's write the new engine serves its clients (four-letter words, pings, handshakes
    /// parked until it syncs) as usual.
    pub fn handle(&mut self, input: Input, now: Clock) -> Result<Vec<Io>, Diverged> {
        self.now = now;
        match self.wait.take() {
            None => self.take(input),
            Some(w) => self.while_waiting(w, input),
        }
        while self.wait.is_none() && self.diverged.is_none() {
            let Some(next) = self.deferred.pop_front() else {
                break;
            };
            self.take(next);
        }
        match self.diverged.take() {
            Some(d) => Err(d),
            None => Ok(std::mem::take(&mut self.out)),
        }
    }

    /// Whether the node waits for the host (a reload, a SNAP's write).
    pub fn waiting(&self) -> bool {
        self.wait.is_some()
    }

    fn while_waiting(&mut self, w: Wait, input: Input) {
        match (w, input) {
            (
                Wait::Reload { after, queue },
                Input::Reloaded {
                    tree,
                    sessions,
                    logged,
                },
            ) => self.reloaded(after, queue, *tree, sessions, logged),
            (Wait::SnapWrite { zxid }, Input::SnapWritten { zxid: z }) if z == zxid => {
                tracing::info!(
                    zxid = format_args!("0x{zxid:x}"),
                    deferred = self.deferred.len(),
                    "the leader's state is durable; taking the sync on"
                );
            }
            (w @ Wait::SnapWrite { .. }, Input::Client(ev)) => {
                self.wait = Some(w);
                self.engine_event(ev);
            }
            (w @ Wait::SnapWrite { .. }, Input::EngineTick) => {
                self.wait = Some(w);
                self.engine_event(Event::Tick);
            }
            (w, Input::PeerTick | Input::PassEnd | Input::EngineTick) => self.wait = Some(w),
            (w, Input::Reloaded { .. } | Input::SnapWritten { .. }) => {
                self.wait = Some(w);
                self.diverge("the host answered a request the node did not make".into());
            }
            (w, input) => {
                self.wait = Some(w);
                self.deferred.push_back(input);
            }
        }
    }

    fn take(&mut self, input: Input) {
        match input {
            Input::Client(ev) => self.engine_event(ev),
            Input::Peer(e) => self.peer_event(e),
            Input::Durable { zxid, truncations } if truncations == self.truncations => {
                if self.peer.state() == State::Leading {
                    self.note_synced(zxid);
                }
                let a = self.peer.durable(zxid);
                self.perform_peer(a);
            }
            Input::Durable { .. } => {}
            Input::PeerTick => {
                let a = self.peer.tick();
                self.perform_peer(a);
                self.hand_over_clients_leadership();
            }
            Input::EngineTick => self.engine_event(Event::Tick),
            Input::PassEnd => {
                if let Some(round) = self.read_round.take() {
                    let a = self.peer.start_read_round(round);
                    self.perform_peer(a);
                }
            }
            Input::Reloaded { .. } | Input::SnapWritten { .. } => {
                self.diverge("the host answered a request the node did not make".into())
            }
        }
    }

    fn engine_event(&mut self, ev: Event) {
        let reconfig = match &ev {
            Event::Request { req, .. } => {
                matches!(req, crate::proto::request::Request::Reconfig(_))
            }
            Event::Forwarded { op, .. } => *op == crate::proto::op::RECONFIG,
            _ => false,
        };
        if reconfig {
            self.engine
                .set_synced_followers(self.peer.synced_followers());
        }
        let a = self.engine.handle(ev, self.now);
        self.perform_engine(a);
    }

    /// With `leaderServes` off, a leader that still has clients (it kept them when it was
    /// elected) hands leadership to an up-to-date member with a larger id, whose clients
    /// are none if it joined after them: the clients stay connected through the change,
    /// and the next leader crash disconnects nobody. At most once every 10 s, so a member
    /// the election makes leader again does not keep trying.
    fn hand_over_clients_leadership(&mut self) {
        const EVERY_MS: i64 = 10_000;
        let recently = self
            .handed_over_at
            .is_some_and(|t| self.now.mono_ms - t < EVERY_MS);
        if self.cfg.engine.leader_serves
            || recently
            || self.engine.mode() != Mode::Leader
            || self.engine.connection_count() == 0
        {
            return;
        }
        if let Some(a) = self.peer.hand_over() {
            self.handed_over_at = Some(self.now.mono_ms);
            self.perform_peer(a);
        }
    }

    /// A learner's connection ended (or it connected anew): the syncs it forwarded on it
    /// are not answered; it sends them again once it is up to date.
    fn learner_gone(&mut self, learner: Sid) {
        if self.peer.state() == State::Leading {
            self.engine_event(Event::LearnerGone { origin: learner });
        }
    }

    fn peer_event(&mut self, e: PeerEvent) {
        match e {
            PeerEvent::Msg { from, msg } => {
                self.note_received(&msg);
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
                    Msg::FollowerInfo { .. } => self.learner_gone(from),
                    _ => {}
                }
                let a = self.peer.step(from, msg);
                self.perform_peer(a);
            }
            PeerEvent::Disconnected { peer } => {
                self.learner_gone(peer);
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
                if !self.peer.serves_learner(from) {
                    tracing::debug!(
                        from,
                        "a forwarded request from a learner not up to date here; ignored"
                    );
                    return;
                }
                let ids = auth
                    .iter()
                    .map(|(s, i)| crate::jute::records::Id::new(s, i))
                    .collect();
                self.engine_event(Event::Forwarded {
                    origin: from,
                    session,
                    cxid,
                    op,
                    body,
                    ids,
                });
            }
            PeerEvent::Touches { sessions, .. } => self.engine_event(Event::Touch { sessions }),
            PeerEvent::Revalidate {
                from,
                session,
                timeout,
            } => {
                self.engine.stats.quorum.revalidates += 1;
                let valid = self.engine.revalidate(session, timeout, self.now);
                let packet = codec::encode_revalidate_answer(session, valid);
                self.out.push(Io::Peer(PeerCmd::Raw { to: from, packet }));
            }
            PeerEvent::Revalidated {
                from,
                session,
                valid,
            } => {
                if self.peer.leader() == Some(from) {
                    self.engine_event(Event::Revalidated { session, valid });
                }
            }
            PeerEvent::Synced { from, zxid } => {
                if self.peer.leader() == Some(from) {
                    self.engine_event(Event::Synced { zxid });
                }
            }
            PeerEvent::Snap { from, zxid, snap } => self.load_snap(from, zxid, *snap),
        }
    }

    fn perform_engine(&mut self, actions: Vec<EngineAction>) {
        for a in actions {
            match a {
                EngineAction::Client(out) => self.out.push(Io::Client(out)),
                EngineAction::Log { hdr, txn, digest } => self.propose(hdr, txn, digest),
                EngineAction::Forward {
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
                    self.out.push(Io::Peer(PeerCmd::Raw { to: leader, packet }));
                }
                EngineAction::SyncDone { origin } => self.sync_replies.push(origin),
                EngineAction::ConfirmLeadership { round } => {
                    self.read_round = self.read_round.max(Some(round));
                }
                EngineAction::Revalidate { session, timeout } => {
                    self.engine.stats.quorum.connection_revalidates += 1;
                    let Some(leader) = self.peer.leader() else {
                        continue;
                    };
                    let packet = codec::encode_revalidate(session, timeout);
                    self.out.push(Io::Peer(PeerCmd::Raw { to: leader, packet }));
                }
            }
        }
    }

    /// Counts and times what a learner receives from its leader (ZooKeeper's learner
    /// metrics).
    fn note_received(&mut self, msg: &Msg) {
        let (wall, mono, mono_us) = (self.now.wall_ms, self.now.mono_ms, self.now.mono_us);
        let stats = &mut self.engine.stats;
        match msg {
            Msg::Proposal(e) => {
                stats.quorum.learner_proposals += 1;
                // The TxnHeader's time: after clientId (8), cxid (4) and zxid (8).
                if let Some(b) = e.payload.get(20..28) {
                    let created = i64::from_be_bytes(b.try_into().expect("8 bytes"));
                    stats.proposal_latency.add((wall - created).max(0));
                    if self.received_at.len() < 100_000 {
                        self.received_at.push_back((e.zxid, created));
                        self.in_flight.push_back(InFlight {
                            zxid: e.zxid,
                            at_us: mono_us,
                        });
                    }
                }
            }
            Msg::Commit { .. } => stats.quorum.learner_commits += 1,
            Msg::UpToDate => {
                if let Some((at, observer)) = self.sync_started.take() {
                    let ms = (mono - at).max(0);
                    if observer {
                        stats.observer_sync_time.add(ms);
                    } else {
                        stats.follower_sync_time.add(ms);
                    }
                }
            }
            _ => {}
        }
    }

    /// A prepared write: ZAB must number it as prep did.
    fn propose(&mut self, hdr: TxnHeader, txn: Txn, digest: u64) {
        let body = txnlog::encode_body(&hdr, &txn, Some(digest));
        self.engine.stats.record_proposal_size(body.len());
        self.engine.stats.quorum.proposals += 1;
        self.in_flight.push_back(InFlight {
            zxid: hdr.zxid,
            at_us: self.now.mono_us,
        });
        self.proposing = Some(txnlog::Entry {
            hdr,
            txn,
            digest: Some(digest),
        });
        let (zxid, acts) = self.peer.propose(body);
        self.proposing = None;
        match zxid {
            Some(z) if z == hdr.zxid => {}
            Some(z) => {
                return self.diverge(format!(
                    "ZAB assigned zxid 0x{z:x} to a transaction prepared as 0x{:x}",
                    hdr.zxid
                ))
            }
            // No longer leading: the role change resets the engine.
            None => tracing::info!(
                zxid = format_args!("0x{:x}", hdr.zxid),
                "not leading any more; dropping a prepared transaction"
            ),
        }
        self.perform_peer(acts);
    }

    fn diverge(&mut self, what: String) {
        if self.diverged.is_none() {
            self.diverged = Some(Diverged(what));
        }
    }

    // ---- queries for the host (four-letter words, status) ----

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// `srvr`/`mntr`'s server state.
    pub fn mode_name(&self) -> &'static str {
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

    /// `isro`'s answer.
    pub fn read_only_word(&self) -> &'static str {
        match self.engine.mode() {
            Mode::ReadOnly => "ro",
            Mode::Down => "null",
            _ => "rw",
        }
    }

    /// `mntr`'s ensemble rows: a leader's learners, or how far a learner's applied state
    /// trails the leader.
    pub fn ensemble_rows(&self) -> Vec<(&'static str, String)> {
        if let Some((learners, followers, observers, syncing)) = self.peer.learner_counts() {
            let sizes = self.engine.stats.proposal_sizes();
            return vec![
                ("zk_learners", learners.to_string()),
                // ZooKeeper 3.4's key, for older dashboards: voting followers only.
                ("zk_followers", followers.to_string()),
                ("zk_synced_followers", followers.to_string()),
                ("zk_synced_non_voting_followers", "0".to_string()),
                ("zk_synced_observers", observers.to_string()),
                ("zk_pending_syncs", syncing.to_string()),
                ("zk_last_proposal_size", sizes.0.to_string()),
                ("zk_max_proposal_size", sizes.2.to_string()),
                ("zk_min_proposal_size", sizes.1.to_string()),
            ];
        }
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
}

#[cfg(test)]
mod tests;
