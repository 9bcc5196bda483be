//! The leader side of ZAB: choose the epoch, sync each learner (DIFF, TRUNC or SNAP), count
//! NEWLEADER acks, then propose and commit in zxid order (see the module doc of `quorum`).
//! Owns only the `Leading` role data of a `Peer`; does no I/O and reads no clock.

use super::*;

impl Peer {
    pub(super) fn become_leader(&mut self) {
        let mut learners = BTreeMap::new();
        learners.insert(
            self.cfg.id,
            LearnerState {
                ack_epoch: Some((self.current_epoch, self.last_zxid())),
                ack_counts: true,
                ..LearnerState::new(false, self.accepted_epoch, None)
            },
        );
        self.role = Role::Leading(Leading {
            epoch: None,
            learners,
            newleader_acks: BTreeSet::new(),
            broadcasting: false,
            next_counter: 0,
            ticks: 0,
            reads: Default::default(),
            next_generation: 0,
        });
        self.out.push(PeerAction::Role {
            state: State::Leading,
            leader: Some(self.cfg.id),
            epoch: self.current_epoch,
        });
        for (from, msg) in std::mem::take(&mut self.early_learners) {
            if !matches!(self.role, Role::Leading(_)) {
                return; // one of them made us step down
            }
            self.leader_step(from, msg);
        }
        self.leader_progress();
    }

    fn leader_info(&self, epoch: u32) -> Msg {
        Msg::LeaderInfo {
            epoch,
            batched: self.cfg.batched,
        }
    }

    pub(super) fn leading(&mut self) -> &mut Leading {
        match &mut self.role {
            Role::Leading(l) => l,
            _ => unreachable!("only called while leading"),
        }
    }

    pub(super) fn voter_count(&self, pred: impl Fn(Sid, &LearnerState) -> bool) -> usize {
        let Role::Leading(l) = &self.role else {
            return 0;
        };
        l.learners
            .iter()
            .filter(|(s, st)| self.cfg.voters.contains(s) && !st.observer && pred(**s, st))
            .count()
    }

    /// Moves discovery and sync forward as far as what has arrived allows.
    pub(super) fn leader_progress(&mut self) {
        let q = quorum_of(self.cfg.voters.len());
        let Role::Leading(l) = &self.role else { return };
        if l.epoch.is_none() {
            if self.voter_count(|_, _| true) < q {
                return;
            }
            let Role::Leading(l) = &self.role else { return };
            let epoch = l
                .learners
                .values()
                .map(|s| s.accepted_epoch)
                .max()
                .unwrap_or(0)
                + 1;
            self.accepted_epoch = epoch;
            self.out.push(PeerAction::SaveAcceptedEpoch(epoch));
            self.leading().epoch = Some(epoch);
            let me = self.cfg.id;
            let others: Vec<Sid> = self
                .leading()
                .learners
                .keys()
                .copied()
                .filter(|s| *s != me)
                .collect();
            for s in others {
                self.send(s, self.leader_info(epoch));
            }
        }
        // Sync every learner whose epoch ack is in, once a quorum of voters has acked (once
        // broadcasting, that quorum was had: learners coming back, whose acks do not count
        // for the epoch, are synced at once).
        let established = self.leading().broadcasting;
        if !established && self.voter_count(|_, st| st.ack_epoch.is_some() && st.ack_counts) < q {
            return;
        }
        let ready: Vec<Sid> = self
            .leading()
            .learners
            .iter()
            .filter(|(_, st)| st.ack_epoch.is_some() && st.phase == Some(LearnerPhase::Epoch))
            .map(|(s, _)| *s)
            .collect();
        for s in ready {
            self.sync_learner(s);
        }
        self.check_newleader_quorum();
    }

    /// DIFF, TRUNC or SNAP, then NEWLEADER.
    pub(super) fn sync_learner(&mut self, s: Sid) {
        let epoch = self.leading().epoch.expect("epoch chosen before sync");
        let (_, peer_last) = self.leading().learners[&s].ack_epoch.expect("acked");
        let last = self.last_zxid();
        let idx = self.log.partition_point(|e| e.zxid <= peer_last);
        let known = peer_last == self.base
            || self
                .log
                .get(idx.wrapping_sub(1))
                .is_some_and(|e| e.zxid == peer_last);
        let behind = self.log.len() - idx;
        let too_far = self.cfg.snap_threshold > 0 && behind > self.cfg.snap_threshold;
        let mut msgs = Vec::new();
        if peer_last < self.base || too_far {
            // Our state up to what we have committed, then the proposals after it.
            let from = self.log.partition_point(|e| e.zxid <= self.committed);
            msgs.push(Msg::Snap {
                zxid: self.committed,
            });
            msgs.extend(self.log[from..].iter().cloned().map(Msg::Proposal));
        } else if peer_last > last {
            msgs.push(Msg::Trunc { zxid: last });
        } else if known {
            msgs.push(Msg::Diff { zxid: last });
            self.proposals_with_commits(idx, &mut msgs);
        } else {
            // The learner's tail diverges: cut back to the last entry we share.
            let keep = self.log[..idx].last().map_or(self.base, |e| e.zxid);
            msgs.push(Msg::Trunc { zxid: keep });
            self.proposals_with_commits(idx, &mut msgs);
        }
        msgs.push(Msg::NewLeader {
            zxid: make_zxid(epoch, 0),
        });
        for m in msgs {
            self.send(s, m);
        }
        if let Some(st) = self.leading().learners.get_mut(&s) {
            st.phase = Some(LearnerPhase::Syncing);
        }
    }

    /// The log from `idx` for a learner's DIFF or TRUNC: each proposal, followed by its
    /// COMMIT when it is committed, as ZooKeeper's `LearnerHandler.queueCommittedProposals`
    /// sends them (its learner applies each committed one on that COMMIT during sync, and
    /// stops at a later COMMIT that matches no proposal it holds).
    fn proposals_with_commits(&self, idx: usize, msgs: &mut Vec<Msg>) {
        for e in &self.log[idx..] {
            let zxid = e.zxid;
            msgs.push(Msg::Proposal(e.clone()));
            if zxid <= self.committed {
                msgs.push(Msg::Commit { zxid });
            }
        }
    }

    /// A quorum of NEWLEADER acks (ours counts once our log is durable) starts broadcast.
    pub(super) fn check_newleader_quorum(&mut self) {
        let q = quorum_of(self.cfg.voters.len());
        let me = self.cfg.id;
        let durable = self.durable_zxid >= self.last_zxid();
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        if l.broadcasting || l.epoch.is_none() {
            return;
        }
        if durable {
            l.newleader_acks.insert(me);
        }
        let voters = &self.cfg.voters;
        if l.newleader_acks
            .iter()
            .filter(|s| voters.contains(s))
            .count()
            < q
        {
            return;
        }
        // A reconfig pending in the history needs its own voters' quorum too.
        if let Some(p) = &self.pending {
            let acks = l.newleader_acks.iter().filter(|s| p.voters.contains(s));
            if acks.count() < quorum_of(p.voters.len()) {
                return;
            }
        }
        let epoch = l.epoch.expect("checked");
        l.broadcasting = true;
        l.next_counter = 0;
        let uptodate: Vec<Sid> = l
            .newleader_acks
            .iter()
            .copied()
            .filter(|s| *s != me)
            .collect();
        for s in &uptodate {
            if let Some(st) = l.learners.get_mut(s) {
                st.phase = Some(LearnerPhase::UpToDate);
            }
        }
        self.current_epoch = epoch;
        self.out.push(PeerAction::SaveCurrentEpoch(epoch));
        // QuorumPeer.updateElectionVote: followers report the same leader and epoch, so a
        // newcomer sees a quorum agree on them (FastLeaderElection's rule).
        self.vote.peer_epoch = epoch;
        for s in uptodate {
            self.send(s, Msg::UpToDate);
        }
        // The whole history is committed by the new epoch.
        if self.last_zxid() > self.committed {
            self.committed = self.last_zxid();
            self.out.push(PeerAction::Commit {
                zxid: self.committed,
            });
        }
        self.out.push(PeerAction::Role {
            state: State::Leading,
            leader: Some(me),
            epoch,
        });
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.zxid <= self.committed)
        {
            let leader = self.designated_leader();
            self.activate();
            if leader != me {
                self.leader_hand_over_to(leader);
            }
        }
    }

    pub(super) fn leader_step(&mut self, from: Sid, msg: Msg) {
        // A sid outside the membership may still learn: a member about to be added syncs
        // as a non-voting follower (its ACKs count only toward a pending membership that
        // names it), as ZooKeeper's LearnerHandler takes one.
        let voter = self.is_voter(from);
        if let Some(st) = self.leading().learners.get_mut(&from) {
            st.heard = 0;
        }
        match msg {
            Msg::FollowerInfo {
                accepted_epoch,
                observer,
                batched,
            } => {
                let epoch = self.leading().epoch;
                let broadcasting = self.leading().broadcasting;
                // A learner that accepted an epoch at or past ours from a leadership that
                // never completed can never join ours (its epoch ack would not count): step
                // down so that the next election picks an epoch above everyone's (Apache
                // ZooKeeper would leave it out). Once this epoch is established, a learner
                // that accepted exactly it is one of ours coming back (dropped for silence,
                // or reconnecting): it rejoins, as in ZooKeeper.
                let rejoin = broadcasting && epoch == Some(accepted_epoch);
                if voter && epoch.is_some_and(|e| accepted_epoch >= e) && !rejoin {
                    self.look();
                    return;
                }
                let mut st =
                    LearnerState::new(observer, accepted_epoch, epoch.map(|_| LearnerPhase::Epoch));
                st.batched = batched && self.cfg.batched;
                let l = self.leading();
                l.next_generation += 1;
                st.generation = l.next_generation;
                l.learners.insert(from, st);
                if let Some(epoch) = epoch {
                    self.send(from, self.leader_info(epoch));
                }
                self.leader_progress();
            }
            Msg::AckEpoch {
                current_epoch,
                last_zxid,
                counts,
            } => {
                if voter
                    && (current_epoch, last_zxid) > (self.current_epoch, self.last_zxid())
                    && !self.leading().broadcasting
                {
                    // A learner knows more than we do: we should not lead.
                    self.look();
                    return;
                }
                if let Some(st) = self.leading().learners.get_mut(&from) {
                    if st.phase.is_none() {
                        st.phase = Some(LearnerPhase::Epoch);
                    }
                    st.ack_epoch = Some((current_epoch, last_zxid));
                    st.ack_counts = counts;
                }
                self.leader_progress();
            }
            Msg::Ack { zxid } => self.leader_ack(from, zxid),
            Msg::PingReply => {
                if let Some(st) = self.leading().learners.get_mut(&from) {
                    if st.phase == Some(LearnerPhase::UpToDate) {
                        st.pings_answered = (st.pings_answered + 1).min(st.pings_sent);
                    }
                }
                self.confirm_reads();
            }
            _ => {}
        }
    }

    pub(super) fn leader_ack(&mut self, from: Sid, zxid: Zxid) {
        let Some(epoch) = self.leading().epoch else {
            return;
        };
        if let Some(st) = self.leading().learners.get_mut(&from) {
            st.acked = st.acked.max(zxid);
        }
        if zxid == make_zxid(epoch, 0) {
            let l = self.leading();
            if let Some(st) = l.learners.get_mut(&from) {
                if l.broadcasting {
                    // Only a learner still syncing gets UPTODATE: ZooKeeper's learner ACKs the
                    // new epoch's zxid a second time once it has started.
                    if st.phase != Some(LearnerPhase::UpToDate) {
                        st.phase = Some(LearnerPhase::UpToDate);
                        self.send(from, Msg::UpToDate);
                        self.commit_for_returning_learner(from);
                    }
                } else {
                    l.newleader_acks.insert(from);
                }
            }
            self.check_newleader_quorum();
            return;
        }
        self.try_commit();
    }

    /// A learner that comes back within this epoch (it was dropped, or its connection
    /// broke) may hold proposals of this epoch it had logged before, which were committed
    /// meanwhile: the DIFF starts after its last zxid, so no COMMIT covers them, and a zabd
    /// learner applies only what a COMMIT covers. Once nothing is outstanding, a COMMIT of
    /// the committed zxid right after UPTODATE covers them (later COMMITs would otherwise,
    /// but only when the next write commits). Sent only then: an Apache ZooKeeper follower
    /// with proposals pending would take a COMMIT that is not the next one as fatal; with
    /// none pending it logs it and moves on.
    fn commit_for_returning_learner(&mut self, to: Sid) {
        let committed = self.committed;
        let Some(epoch) = self.leading().epoch else {
            return;
        };
        if committed == self.last_zxid() && epoch_of(committed) == epoch && committed > 0 {
            self.send(to, Msg::Commit { zxid: committed });
        }
    }

    /// The largest zxid a quorum of voters holds durably: the leader's own log sync, and
    /// each follower's largest ACK (it logs in zxid order, so it holds everything before).
    fn quorum_acked(&self) -> Zxid {
        self.joint_point(self.quorum_point(&self.cfg.voters))
    }

    /// The largest zxid a quorum of `voters` holds durably.
    pub(super) fn quorum_point(&self, voters: &[Sid]) -> Zxid {
        let Role::Leading(l) = &self.role else {
            return 0;
        };
        let me = self.cfg.id;
        let mut acked: Vec<Zxid> = voters
            .iter()
            .map(|v| match l.learners.get(v) {
                _ if *v == me => self.durable_zxid,
                Some(st) if !st.observer => st.acked,
                _ => 0,
            })
            .collect();
        acked.sort_unstable_by(|a, b| b.cmp(a));
        acked.get(quorum_of(voters.len()) - 1).copied().unwrap_or(0)
    }

    /// Commits, in zxid order, the outstanding proposals a quorum of voters has acked. A
    /// learner that takes batched COMMITs gets one, of the last of them; one that does not
    /// (Apache ZooKeeper) gets one per proposal; observers get each as INFORM.
    pub(super) fn try_commit(&mut self) {
        if !matches!(&self.role, Role::Leading(l) if l.broadcasting) {
            return;
        }
        let point = self.quorum_acked().min(self.last_zxid());
        if point <= self.committed {
            return;
        }
        let reconfig = self.reconfig_within(point);
        let from = self.log.partition_point(|e| e.zxid <= self.committed);
        let upto = self.log.partition_point(|e| e.zxid <= point);
        let entries: Vec<Entry> = self.log[from..upto].to_vec();
        let me = self.cfg.id;
        let targets: Vec<(Sid, bool, bool)> = self
            .leading()
            .learners
            .iter()
            .filter(|(s, st)| **s != me && st.phase >= Some(LearnerPhase::Syncing))
            .map(|(s, st)| (*s, st.observer, st.batched))
            .collect();
        // The zxid each batched follower's last COMMIT named.
        let mut batched_upto = self.committed;
        let mut handed_to = None;
        for e in entries {
            if Some(e.zxid) == reconfig {
                // Batched followers first hear of what comes before the reconfig.
                if self.committed > batched_upto {
                    self.send_batched_commits(&targets, self.committed);
                }
                let leader = self.designated_leader();
                self.committed = e.zxid;
                batched_upto = e.zxid;
                self.out.push(PeerAction::Commit { zxid: e.zxid });
                for &(s, observer, _) in &targets {
                    let msg = if observer {
                        Msg::InformAndActivate {
                            entry: e.clone(),
                            leader,
                        }
                    } else {
                        Msg::CommitAndActivate {
                            zxid: e.zxid,
                            leader,
                        }
                    };
                    self.send(s, msg);
                }
                self.activate();
                if leader != me {
                    // ZooKeeper's `allowedToCommit = false`: the rest is the next leader's.
                    handed_to = Some(leader);
                    break;
                }
                continue;
            }
            self.committed = e.zxid;
            self.out.push(PeerAction::Commit { zxid: e.zxid });
            for &(s, observer, batched) in &targets {
                if observer {
                    // INFORM: observers only ever see committed proposals.
                    self.send(s, Msg::Inform(e.clone()));
                } else if !batched {
                    self.send(s, Msg::Commit { zxid: e.zxid });
                }
            }
        }
        if self.committed > batched_upto {
            self.send_batched_commits(&targets, self.committed);
        }
        if let Some(leader) = handed_to {
            self.leader_hand_over_to(leader);
            return;
        }
        // (Trimming waits until the observers have been sent these entries.)
        self.trim();
    }

    /// One COMMIT of `zxid` to each batched follower (it covers every proposal before).
    fn send_batched_commits(&mut self, targets: &[(Sid, bool, bool)], zxid: Zxid) {
        for &(s, observer, batched) in targets {
            if batched && !observer {
                self.send(s, Msg::Commit { zxid });
            }
        }
    }

    /// A leader's learners: (connected, synced followers, synced observers, still syncing).
    pub fn learner_counts(&self) -> Option<(usize, usize, usize, usize)> {
        let Role::Leading(l) = &self.role else {
            return None;
        };
        let me = self.cfg.id;
        let others = || l.learners.iter().filter(move |(s, _)| **s != me);
        let synced = |obs: bool| {
            others()
                .filter(|(_, st)| st.observer == obs && st.phase == Some(LearnerPhase::UpToDate))
                .count()
        };
        let syncing = others()
            .filter(|(_, st)| st.phase == Some(LearnerPhase::Syncing))
            .count();
        Some((others().count(), synced(false), synced(true), syncing))
    }

    /// Proposes a transaction. Only a broadcasting leader can; None otherwise (or when the
    /// zxid counter would overflow, which starts a new election as ZooKeeper does).
    pub fn propose(&mut self, payload: bytes::Bytes) -> (Option<Zxid>, Vec<PeerAction>) {
        let me = self.cfg.id;
        let Role::Leading(l) = &mut self.role else {
            return (None, self.take());
        };
        if !l.broadcasting {
            return (None, self.take());
        }
        if l.next_counter == u32::MAX {
            self.look();
            return (None, self.take());
        }
        l.next_counter += 1;
        let zxid = make_zxid(self.current_epoch, l.next_counter);
        let e = Entry { zxid, payload };
        self.log.push(e.clone());
        self.out.push(PeerAction::Append(e.clone()));
        self.note_reconfig(&e);
        let Role::Leading(l) = &self.role else {
            unreachable!("leading, checked above")
        };
        // Straight from the learner map into the actions: no list of targets per write.
        let to = l
            .learners
            .iter()
            .filter(|(s, st)| **s != me && !st.observer && st.phase >= Some(LearnerPhase::Syncing));
        for (s, _) in to {
            self.out.push(PeerAction::Send {
                to: *s,
                msg: Msg::Proposal(e.clone()),
            });
        }
        (Some(zxid), self.take())
    }
}

/// Read rounds: `sync` as a quorum operation (ZOOKEEPER-1675 is still open upstream; this
/// is Raft's ReadIndex). A leader that was paused and deposed while paused must not answer
/// a `sync` from its stale state: it answers only once a quorum of voters has answered a
/// PING sent after the sync arrived, which no voter that had moved to a newer leader would
/// do (it closed this connection when it left, and could not join this leader's older
/// epoch again).
impl Peer {
    /// Leader: starts read round `round` (covering every earlier one): PINGs every synced
    /// learner now. [`PeerAction::ReadConfirmed`] follows once a quorum of voters has answered.
    /// Not leading: nothing (the host drops its waiting syncs on the role change).
    pub fn start_read_round(&mut self, round: u64) -> Vec<PeerAction> {
        let me = self.cfg.id;
        let Role::Leading(l) = &mut self.role else {
            return self.take();
        };
        if !l.broadcasting || l.reads.back().is_some_and(|r| r.round >= round) {
            return self.take();
        }
        let targets: Vec<Sid> = l
            .learners
            .iter()
            .filter(|(s, st)| **s != me && st.phase == Some(LearnerPhase::UpToDate))
            .map(|(s, _)| *s)
            .collect();
        for s in &targets {
            self.ping(*s);
        }
        let voters: Vec<Sid> = self
            .cfg
            .voters
            .iter()
            .copied()
            .filter(|s| *s != me)
            .collect();
        let l = self.leading();
        let needed = voters.into_iter().map(|s| (s, round_needs(l, s))).collect();
        l.reads.push_back(ReadRound { round, needed });
        self.confirm_reads();
        self.take()
    }

    /// Sends a PING, counting it once the learner is up to date.
    pub(super) fn ping(&mut self, to: Sid) {
        if let Role::Leading(l) = &mut self.role {
            if let Some(st) = l.learners.get_mut(&to) {
                if st.phase == Some(LearnerPhase::UpToDate) {
                    st.pings_sent += 1;
                }
            }
        }
        self.send(to, Msg::Ping);
    }

    /// Confirms, oldest first, the read rounds a quorum of voters has answered.
    fn confirm_reads(&mut self) {
        let q = quorum_of(self.cfg.voters.len());
        let me = self.cfg.id;
        let voters = self.cfg.voters.clone();
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        let mut confirmed = None;
        while let Some(r) = l.reads.front() {
            let answered = r
                .needed
                .iter()
                .filter(|(s, (generation, n))| {
                    voters.contains(s)
                        && l.learners.get(s).is_some_and(|st| {
                            // Up to date on this connection and past the round's PING, or
                            // up to date again on a connection made since the round began.
                            let answered = if st.generation == *generation {
                                st.pings_answered >= *n
                            } else {
                                st.generation > *generation
                            };
                            !st.observer && st.phase == Some(LearnerPhase::UpToDate) && answered
                        })
                })
                .count();
            let with_me = answered + usize::from(voters.contains(&me));
            if with_me < q {
                break;
            }
            confirmed = Some(r.round);
            l.reads.pop_front();
        }
        if let Some(round) = confirmed {
            self.out.push(PeerAction::ReadConfirmed { round });
        }
    }
}

/// What voter `s` must do to confirm a read round starting now, as (connection generation,
/// PING answers on that connection). Every voter is listed, not only those up to date: a
/// round started while too few were (they were syncing or reconnecting) must still be
/// confirmed once they are back, or it and every `sync` behind it would wait forever.
/// * Up to date: answer the PING the round sends now.
/// * Connected, still syncing: once up to date, answer a later PING (the tick sends one).
///   Its ACK of NEWLEADER alone proves nothing: it may have been sent before the round.
/// * Not connected: come back on a newer connection and reach up to date on it; the
///   NEWLEADER it then ACKs was sent after the round began.
pub(super) fn round_needs(l: &Leading, s: Sid) -> (u64, u64) {
    match l.learners.get(&s) {
        Some(st) if st.phase == Some(LearnerPhase::UpToDate) => (st.generation, st.pings_sent),
        Some(st) => (st.generation, st.pings_sent + 1),
        None => (l.next_generation, u64::MAX),
    }
}
