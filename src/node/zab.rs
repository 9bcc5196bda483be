//! The node's side of ZAB: what each `quorum::PeerAction` means for the engine, the log and
//! the snapshots (see the module header of `node` for the rules), and telling the engine
//! when the member's role changes.

use super::{Io, Node, PeerCmd};
use crate::engine::{Event, Mode};
use crate::persist::{snapshot, txnlog};
use crate::quorum::{codec, make_zxid, Entry, Msg, PeerAction, Sid, State, Zxid};
use crate::tree::DataTree;
use std::collections::VecDeque;

impl Node {
    /// The first actions: ZAB's first tick (it starts looking).
    pub fn start(&mut self) -> Vec<Io> {
        let a = self.peer.tick();
        self.perform_peer(a);
        std::mem::take(&mut self.out)
    }

    pub(super) fn perform_peer(&mut self, actions: Vec<PeerAction>) {
        if let Some(done) = self.run_peer_actions(actions.into()) {
            // Back to ZAB, empty, for its next actions: no allocation per write.
            self.peer.recycle(done.into());
        }
    }

    /// Carries out `queue`; gives it back, empty, unless it stopped early (divergence, or
    /// the rest waits for a reload).
    fn run_peer_actions(
        &mut self,
        mut queue: VecDeque<PeerAction>,
    ) -> Option<VecDeque<PeerAction>> {
        while let Some(a) = queue.pop_front() {
            if self.diverged.is_some() {
                return None;
            }
            match a {
                PeerAction::Send { to, msg } => {
                    match &msg {
                        Msg::Diff { .. } => self.engine.stats.quorum.diffs += 1,
                        Msg::Snap { .. } => self.engine.stats.quorum.snaps += 1,
                        Msg::Ack { zxid } => self.note_ack(*zxid),
                        _ => {}
                    }
                    self.send(to, msg)
                }
                PeerAction::Disconnect { peer } => {
                    if self.peer.state() == State::Leading {
                        // Still leading: ZAB dropped one learner, not its whole role.
                        tracing::warn!(
                            peer,
                            "closing the connection to a learner silent past its limit \
                             (init_limit ticks while it syncs, sync_limit after)"
                        );
                    }
                    self.out.push(Io::Peer(PeerCmd::Disconnect { peer }));
                }
                PeerAction::SaveAcceptedEpoch(epoch) => self.out.push(Io::SaveEpoch {
                    file: "acceptedEpoch",
                    epoch,
                }),
                PeerAction::SaveCurrentEpoch(epoch) => self.out.push(Io::SaveEpoch {
                    file: "currentEpoch",
                    epoch,
                }),
                PeerAction::Append(e) => self.append(e),
                PeerAction::Truncate { after } => {
                    if self.truncate(after) {
                        // The rest waits for the reloaded state.
                        self.wait = Some(super::Wait::Reload { after, queue });
                        return None;
                    }
                }
                PeerAction::Commit { zxid } => {
                    self.note_committed(zxid);
                    self.apply_upto(zxid)
                }
                PeerAction::ReadConfirmed { round } => {
                    self.engine_event(Event::LeadershipConfirmed { round });
                }
                PeerAction::Role {
                    state,
                    leader,
                    epoch,
                } => self.role(state, leader, epoch),
                PeerAction::Activate { membership } => self.activated(membership),
                PeerAction::Seen { membership } => self.out.push(Io::NextMembership(membership)),
            }
        }
        self.update_mode();
        // After every COMMIT of this batch, so a learner applies them before the answer.
        for to in std::mem::take(&mut self.sync_replies) {
            let packet = codec::sync_answer(self.engine.last_zxid());
            self.out.push(Io::Peer(PeerCmd::Raw { to, packet }));
        }
        Some(queue)
    }

    fn send(&mut self, to: Sid, msg: Msg) {
        let cmd = match msg {
            Msg::PingReply => PeerCmd::Raw {
                to,
                packet: codec::ping_reply(self.peer.last_zxid(), &self.engine.take_touches()),
            },
            Msg::Snap { zxid } => {
                // The engine's whole state at what ZAB has committed (the proposals after
                // it follow). The engine applies exactly what ZAB commits, never an
                // uncommitted tail, so a learner's copy holds nothing a later leader may cut.
                if self.engine.last_zxid() != zxid {
                    return self.diverge(format!(
                        "a SNAP at 0x{zxid:x} asked of an engine at 0x{:x}",
                        self.engine.last_zxid()
                    ));
                }
                // A frozen view, serialized by the transport on another thread.
                let sessions = self.engine.session_list();
                let state = snapshot::View::of(&mut self.engine.tree, sessions, zxid);
                tracing::info!(
                    to,
                    zxid = format_args!("0x{zxid:x}"),
                    nodes = state.node_count(),
                    "sending SNAP"
                );
                let state = Box::new(state);
                PeerCmd::SendSnap { to, zxid, state }
            }
            msg => PeerCmd::Send { to, msg },
        };
        self.out.push(Io::Peer(cmd));
    }

    /// Logs a proposal as its bytes came (or were made), and keeps it decoded until its
    /// commit: the leader's own from prep, a learner's from the PROPOSAL.
    fn append(&mut self, e: Entry) {
        let entry = match self.proposing.take() {
            Some(mine) if mine.hdr.zxid == e.zxid => mine,
            _ => match txnlog::decode_body(e.payload.clone()) {
                Ok(x) => x,
                Err(err) => {
                    return self.diverge(format!("cannot decode proposal 0x{:x}: {err}", e.zxid))
                }
            },
        };
        self.out.push(Io::Append {
            zxid: entry.hdr.zxid,
            body: e.payload,
        });
        self.unapplied.push_back(entry);
    }

    fn cut_log(&mut self, after: Zxid) {
        self.out.push(Io::CutLog { after });
        self.truncations += 1;
        self.unapplied.retain(|e| e.hdr.zxid <= after);
    }

    /// TRUNC: cuts the log; true when the state must be reloaded from disk first.
    fn truncate(&mut self, after: Zxid) -> bool {
        tracing::info!(
            after = format_args!("0x{after:x}"),
            "TRUNC: dropping the log after this zxid"
        );
        self.cut_log(after);
        if self.engine.last_zxid() <= after {
            return false;
        }
        // A snapshot past `after` holds transactions the leader discarded: reloading from
        // it would keep them. Nothing may be writing one meanwhile.
        self.out.push(Io::StopSnapshots);
        self.out.push(Io::SetAsideSnapshots {
            newer_than: after,
            why: "truncated",
        });
        self.out.push(Io::Reload);
        true
    }

    /// The host's answer to `Io::Reload` after a TRUNC: the snapshot's state, and the
    /// entries logged after it (applied once committed), which must end exactly at the cut.
    pub(super) fn reloaded(
        &mut self,
        after: Zxid,
        queue: VecDeque<PeerAction>,
        tree: DataTree,
        sessions: Vec<(i64, i32)>,
        logged: Vec<txnlog::Entry>,
    ) {
        let end = logged.last().map_or(tree.last_zxid, |e| e.hdr.zxid);
        if end != after {
            return self.diverge(format!(
                "TRUNC to 0x{after:x}: what is left on disk reaches 0x{end:x}, not 0x{after:x} \
                 (no snapshot at or below it with the logs after it); this member needs an \
                 empty data directory to sync again"
            ));
        }
        self.replace_engine(tree, sessions);
        self.unapplied = logged.into();
        let _ = self.run_peer_actions(queue);
    }

    pub(super) fn load_snap(&mut self, from: Sid, zxid: Zxid, snap: super::ReceivedSnap) {
        if !self.peer.expects_snap_from(from) {
            tracing::warn!(
                from,
                "ignoring a SNAP from a peer this member is not syncing with"
            );
            return;
        }
        let super::ReceivedSnap { state, loaded } = snap;
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(from, error = %e, "bad SNAP state from the leader; reconnecting");
                self.out.push(Io::Peer(PeerCmd::Disconnect { peer: from }));
                let a = self.peer.disconnected(from);
                return self.perform_peer(a);
            }
        };
        let mut tree = loaded.tree;
        tree.last_zxid = zxid;
        // The leader's state supersedes this member's: a snapshot of its own history past
        // `zxid` would be loaded at the next start instead of the leader's.
        self.out.push(Io::StopSnapshots);
        self.out.push(Io::SetAsideSnapshots {
            newer_than: zxid,
            why: "superseded",
        });
        self.out.push(Io::WriteSnap {
            zxid,
            state,
            digest: tree.digest,
        });
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
        self.wait = Some(super::Wait::SnapWrite { zxid });
    }

    fn replace_engine(&mut self, tree: DataTree, sessions: Vec<(i64, i32)>) {
        let down = Event::Mode {
            mode: Mode::Down,
            last_zxid: 0,
        };
        self.engine_event(down);
        self.engine_event(Event::Replaced);
        let stats = std::mem::take(&mut self.engine.stats);
        let fresh = Self::fresh_engine(&self.cfg, tree, sessions, self.now);
        let old = std::mem::replace(&mut self.engine, fresh);
        self.out.push(Io::Discard(Box::new(old)));
        self.engine.stats = stats;
        self.served = (Mode::Down, None, 0);
    }

    /// Applies every logged entry up to `zxid` that the engine has not applied yet.
    fn apply_upto(&mut self, zxid: Zxid) {
        while self.unapplied.front().is_some_and(|e| e.hdr.zxid <= zxid) {
            let e = self.unapplied.pop_front().expect("front");
            if e.hdr.zxid <= self.engine.last_zxid() {
                continue;
            }
            let lag = (self.now.wall_ms - e.hdr.time).max(0);
            self.apply_lag_ms = (lag, self.apply_lag_ms.1.max(lag));
            self.engine.stats.propagation_latency.add(lag);
            if self.peer.state() != State::Leading {
                self.engine.stats.commit_propagation_latency.add(lag);
            }
            self.engine_event(Event::Apply {
                hdr: e.hdr,
                txn: e.txn,
                digest: e.digest,
            });
        }
        if self.engine.last_zxid() < zxid {
            self.diverge(format!(
                "ZAB committed up to 0x{zxid:x} but the log here ends at 0x{:x}",
                self.engine.last_zxid()
            ));
        }
    }

    /// This member's log sync covers the proposals up to `zxid`: the fsync stage of the
    /// write path (the leader's, or a learner's before its ACK).
    pub(super) fn note_synced(&mut self, zxid: Zxid) {
        let (now, leading) = (self.now.mono_us, self.peer.state() == State::Leading);
        let wp = &mut self.engine.stats.write_path;
        while let Some(f) = self.in_flight.get(self.in_flight_synced) {
            if f.zxid > zxid {
                break;
            }
            self.in_flight_synced += 1;
            let us = (now - f.at_us).max(0);
            if leading {
                wp.leader_fsync_us.add(us);
            } else {
                wp.learner_fsync_us.add(us);
            }
        }
    }

    /// Proposals up to `zxid` are committed: the leader's quorum stage (and ZooKeeper's
    /// `quorum_ack_latency`, in ms), or a learner's wait from PROPOSAL to COMMIT.
    fn note_committed(&mut self, zxid: Zxid) {
        let leading = self.peer.state() == State::Leading;
        if leading {
            self.engine.stats.quorum.commits += 1;
        }
        let now = self.now.mono_us;
        while self.in_flight.front().is_some_and(|f| f.zxid <= zxid) {
            let f = self.in_flight.pop_front().expect("front");
            self.in_flight_synced = self.in_flight_synced.saturating_sub(1);
            let us = (now - f.at_us).max(0);
            let stats = &mut self.engine.stats;
            if leading {
                stats.quorum_ack_latency.add(us / 1000);
                stats.write_path.leader_quorum_us.add(us);
            } else {
                stats.write_path.learner_commit_us.add(us);
            }
        }
    }

    /// A learner acknowledges proposals up to `zxid` (after its log sync).
    fn note_ack(&mut self, zxid: Zxid) {
        self.note_synced(zxid);
        while self.received_at.front().is_some_and(|(z, _)| *z <= zxid) {
            let (_, created) = self.received_at.pop_front().expect("front");
            let ms = (self.now.wall_ms - created).max(0);
            self.engine.stats.proposal_ack_creation_latency.add(ms);
        }
    }

    /// A reconfig committed: its membership is this member's from now on.
    fn activated(&mut self, m: crate::quorum::membership::Membership) {
        self.cfg.membership = m.clone();
        self.engine.set_membership(m.clone(), m.clone());
        self.out.push(Io::Membership(m));
    }

    /// The engine's membership view after a role change: a reconfig the peer has seen
    /// (and may yet commit) stays in progress.
    fn reset_membership_view(&mut self) {
        let active = self.cfg.membership.clone();
        let last_seen = self
            .peer
            .pending_membership()
            .cloned()
            .unwrap_or(active.clone());
        self.engine.set_membership(active, last_seen);
    }

    fn role(&mut self, state: State, leader: Option<Sid>, epoch: u32) {
        self.reset_membership_view();
        if matches!(state, State::Following | State::Observing) {
            if let Some(leader) = leader {
                self.out.push(Io::Peer(PeerCmd::ConnectLeader { leader }));
                self.sync_started = Some((self.now.mono_ms, state == State::Observing));
            }
        }
        self.received_at.clear();
        self.in_flight.clear();
        self.in_flight_synced = 0;
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
            let since = *self.down_since.get_or_insert(self.now.mono_ms);
            let waited = self.now.mono_ms - since;
            if self.cfg.read_only_mode && waited >= self.cfg.read_only_after_ms {
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
        if matches!(mode, Mode::Leader | Mode::Follower) {
            let requests = self
                .unapplied
                .iter()
                .map(|e| (e.hdr.client_id, e.hdr.cxid))
                .collect();
            self.engine_event(Event::Unapplied { requests });
        }
        self.engine_event(Event::Mode { mode, last_zxid });
    }
}
