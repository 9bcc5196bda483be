//! The follower and observer side of ZAB: connect, acknowledge the epoch, sync, then log
//! proposals and commit in order (see the module doc of `quorum`).
//! Owns only the `Learning` role data of a `Peer`; does no I/O and reads no clock.

use super::*;

impl Peer {
    pub(super) fn become_learner(&mut self, leader: Sid) {
        self.early_learners.clear();
        // A member outside the membership (joining, or removed) follows without a vote, as
        // ZooKeeper's non-voting follower; only a listed observer observes.
        let observer = self.cfg.observers.contains(&self.cfg.id);
        self.role = Role::Learning(Learning {
            leader,
            observer,
            synced: false,
            silent: 0,
            newleader: None,
            newleader_acked: false,
            up_to_date: false,
            to_ack: Default::default(),
            commit_target: self.committed,
            batched: false,
        });
        self.out.push(PeerAction::Role {
            state: if observer {
                State::Observing
            } else {
                State::Following
            },
            leader: Some(leader),
            epoch: self.current_epoch,
        });
        self.send(
            leader,
            Msg::FollowerInfo {
                accepted_epoch: self.accepted_epoch,
                observer,
                batched: self.cfg.batched,
            },
        );
    }

    pub(super) fn learner_step(&mut self, from: Sid, msg: Msg) {
        let Role::Learning(l) = &mut self.role else {
            return;
        };
        if from != l.leader {
            return;
        }
        l.silent = 0;
        match msg {
            Msg::LeaderInfo { epoch, batched } => {
                if epoch < self.accepted_epoch {
                    self.look();
                    return;
                }
                l.batched = batched && self.cfg.batched;
                let counts = epoch > self.accepted_epoch;
                if counts {
                    self.accepted_epoch = epoch;
                    self.out.push(PeerAction::SaveAcceptedEpoch(epoch));
                }
                let (current_epoch, last_zxid) = (self.current_epoch, self.last_zxid());
                self.send(
                    from,
                    Msg::AckEpoch {
                        current_epoch,
                        last_zxid,
                        counts,
                    },
                );
            }
            Msg::Diff { .. } => {}
            Msg::Trunc { zxid } => {
                self.log.retain(|e| e.zxid <= zxid);
                self.durable_zxid = self.durable_zxid.min(zxid);
                self.out.push(PeerAction::Truncate { after: zxid });
                self.pending_after_cut(zxid, false);
            }
            Msg::Snap { zxid } => {
                // The host has loaded (and persisted) the leader's state at `zxid`.
                self.log.clear();
                self.base = zxid;
                self.durable_zxid = zxid;
                self.committed = zxid;
                l.commit_target = l.commit_target.max(zxid);
                self.pending_after_cut(zxid, true);
            }
            Msg::Proposal(e) => self.learner_proposal(e),
            Msg::Inform(e) => {
                // An observer's committed proposal: logged and committed at once.
                let zxid = e.zxid;
                self.learner_proposal(e);
                if let Role::Learning(l) = &mut self.role {
                    l.commit_target = l.commit_target.max(zxid);
                }
                self.deliver();
            }
            Msg::NewLeader { zxid } => {
                // The new epoch is adopted (and persisted) only once everything received
                // before NEWLEADER is durable, in `ack_durable`: persisting it first and then
                // crashing would claim a history this peer does not have (the bug
                // ZOOKEEPER-4643 fixed in Apache ZooKeeper).
                let before = self.last_zxid();
                let committed = self.committed;
                // Back with a leader of the epoch it was already in (it was dropped, or its
                // connection broke): the proposals of that epoch it logged before may never
                // have been acknowledged, and the DIFF does not send them again. They are
                // acknowledged once durable, like the ones the sync brought; the leader
                // counts an ACK of what it has committed already as nothing.
                let held: Vec<Zxid> = self
                    .log
                    .iter()
                    .map(|e| e.zxid)
                    .filter(|z| epoch_of(*z) == epoch_of(zxid) && *z > committed)
                    .collect();
                if let Role::Learning(l) = &mut self.role {
                    l.newleader = Some((zxid, before));
                    if !l.observer {
                        // Proposals that came during this sync are both logged and queued.
                        let mut all: Vec<Zxid> = l.to_ack.drain(..).chain(held).collect();
                        all.sort_unstable();
                        all.dedup();
                        l.to_ack = all.into();
                    }
                }
                self.ack_durable();
            }
            Msg::UpToDate => {
                let Role::Learning(l) = &mut self.role else {
                    return;
                };
                l.up_to_date = true;
                l.synced = true;
                // The NEWLEADER quorum committed the leader's history from earlier epochs:
                // everything this learner got before NEWLEADER, up to the new epoch. A
                // proposal of the new epoch in the sync (a leader already broadcasting
                // sends the ones still in flight) is committed only by its own COMMIT,
                // as ZooKeeper's learner keeps them in `packetsNotCommitted`.
                if let Some((newleader, before)) = l.newleader {
                    l.commit_target = l.commit_target.max(before.min(newleader));
                }
                let leader = l.leader;
                let state = if l.observer {
                    State::Observing
                } else {
                    State::Following
                };
                self.out.push(PeerAction::Role {
                    state,
                    leader: Some(leader),
                    epoch: self.current_epoch,
                });
                self.deliver();
            }
            Msg::Commit { zxid } => {
                l.commit_target = l.commit_target.max(zxid);
                self.deliver();
            }
            Msg::CommitAndActivate { zxid, leader } => {
                l.commit_target = l.commit_target.max(zxid);
                self.deliver_then_activate(Some(leader));
            }
            Msg::InformAndActivate { entry, leader } => {
                let zxid = entry.zxid;
                self.learner_proposal(entry);
                if let Role::Learning(l) = &mut self.role {
                    l.commit_target = l.commit_target.max(zxid);
                }
                self.deliver_then_activate(Some(leader));
            }
            // Answered only once up to date, as ZooKeeper's learner (its sync loop drops
            // PINGs): the leader counts replies against the PINGs it sent after UPTODATE to
            // confirm its leadership for `sync` (see `leader.rs`, read rounds).
            Msg::Ping if l.up_to_date => self.send(from, Msg::PingReply),
            _ => {}
        }
    }

    pub(super) fn learner_proposal(&mut self, e: Entry) {
        let last = self.last_zxid();
        if e.zxid <= last {
            return;
        }
        if epoch_of(e.zxid) == epoch_of(last) && e.zxid != last + 1 {
            // A hole: messages were lost. Start over with a fresh sync.
            self.look();
            return;
        }
        let Role::Learning(l) = &mut self.role else {
            return;
        };
        if !l.observer {
            l.to_ack.push_back(e.zxid);
        }
        self.note_reconfig(&e);
        self.log.push(e.clone());
        self.out.push(PeerAction::Append(e));
    }

    /// Sends what durability now allows: NEWLEADER's ACK, proposal ACKs.
    pub(super) fn ack_durable(&mut self) {
        let durable = self.durable_zxid;
        let last = self.last_zxid();
        let Role::Learning(l) = &mut self.role else {
            return;
        };
        let leader = l.leader;
        let mut sends = Vec::new();
        let mut adopt = None;
        if let Some((zxid, before)) = l.newleader {
            if !l.newleader_acked && durable >= before.min(last) {
                l.newleader_acked = true;
                adopt = Some(epoch_of(zxid));
                sends.push(Msg::Ack { zxid });
            }
        }
        if let Some(epoch) = adopt {
            self.current_epoch = epoch;
            self.out.push(PeerAction::SaveCurrentEpoch(epoch));
            // QuorumPeer.updateElectionVote: report the established epoch from now on.
            self.vote.peer_epoch = epoch;
        }
        let Role::Learning(l) = &mut self.role else {
            return;
        };
        if l.newleader_acked {
            let mut newest = None;
            while let Some(&z) = l.to_ack.front() {
                if z > durable {
                    break;
                }
                l.to_ack.pop_front();
                if epoch_of(z) == self.current_epoch {
                    newest = Some(z);
                    if !l.batched {
                        sends.push(Msg::Ack { zxid: z });
                    }
                }
            }
            if let Some(z) = newest.filter(|_| l.batched) {
                sends.push(Msg::Ack { zxid: z });
            }
        }
        for m in sends {
            self.send(leader, m);
        }
    }

    /// Commits, in order, what the leader has committed and this peer has received, as soon
    /// as the COMMIT is in: a quorum already holds it durably, so this peer's own log sync
    /// need not be waited for (ZooKeeper's `FollowerZooKeeperServer.commit` does the same).
    /// Only ACKs wait for durability (`ack_durable`). Applying at once keeps a learner's
    /// state a message behind the leader rather than an fsync behind, and keeps a SYNC,
    /// which follows its COMMITs on the stream, behind their effects.
    pub(super) fn deliver(&mut self) {
        self.deliver_then_activate(None);
    }

    /// [`Peer::deliver`], then the activation of a pending reconfig the commit passed, with
    /// the leader COMMITANDACTIVATE or INFORMANDACTIVATE named.
    pub(super) fn deliver_then_activate(&mut self, designated: Option<Sid>) {
        let target = match &self.role {
            Role::Learning(l) if l.up_to_date => l.commit_target,
            Role::Leading(_) => self.committed,
            _ => return,
        };
        // The last entry held at or below the target (which may fall between entries,
        // e.g. the new epoch's first zxid at UPTODATE).
        let upto = match self.log.partition_point(|e| e.zxid <= target) {
            0 => self.base,
            n => self.log[n - 1].zxid,
        };
        if upto > self.committed {
            self.committed = upto;
            self.out.push(PeerAction::Commit { zxid: upto });
            self.trim();
        }
        if matches!(self.role, Role::Learning(_)) {
            self.learner_activation(designated);
        }
    }
}
