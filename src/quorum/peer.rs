//! One ensemble member's ZAB state machine (see the module doc of `quorum`).
//! Roles are types: [`Role::Looking`], `Following`/`Observing` ([`Learning`]), `Leading`.

use super::election::{Election, Outcome};
use super::{epoch_of, make_zxid, quorum_of, Action, Entry, Msg, Sid, State, Vote, Zxid};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
pub struct Config {
    pub id: Sid,
    pub voters: Vec<Sid>,
    pub observers: Vec<Sid>,
    /// Ticks a new leader and its learners have to finish discovery and sync (initLimit).
    pub init_limit: u32,
    /// Ticks of silence after which leader or follower gives up (syncLimit).
    pub sync_limit: u32,
    /// Ticks to wait for a better vote once a quorum agrees.
    pub finalize_ticks: u32,
    /// A learner this many entries behind gets SNAP rather than DIFF.
    pub snap_threshold: usize,
    /// Committed entries kept in memory for DIFF; older ones are forgotten (their effect is
    /// in the host's state), and a learner that needs them gets SNAP.
    pub log_window: usize,
}

/// What survives a crash: the epoch files, the zxid of the host's snapshot state, and the
/// synced log after it.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    pub accepted_epoch: u32,
    pub current_epoch: u32,
    /// The zxid the host's state (snapshot) is at; `log` holds only entries after it.
    pub base: Zxid,
    pub log: Vec<Entry>,
}

/// A follower's or observer's progress with its leader.
struct Learning {
    leader: Sid,
    observer: bool,
    synced: bool,
    silent: u32,
    /// NEWLEADER's zxid and the last entry received before it, once it has come.
    newleader: Option<(Zxid, Zxid)>,
    newleader_acked: bool,
    up_to_date: bool,
    /// Proposals to ACK once durable.
    to_ack: BTreeSet<Zxid>,
    commit_target: Zxid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LearnerPhase {
    /// LEADERINFO sent, waiting for ACKEPOCH.
    Epoch,
    /// Sync and NEWLEADER sent: receives every new proposal from now on.
    Syncing,
    /// NEWLEADER acked and UPTODATE sent.
    UpToDate,
}

struct LearnerState {
    observer: bool,
    accepted_epoch: u32,
    ack_epoch: Option<(u32, Zxid)>,
    /// Whether its ACKEPOCH counts toward the epoch quorum.
    ack_counts: bool,
    phase: Option<LearnerPhase>,
    heard: u32,
}

struct Leading {
    /// The new epoch, once discovery has found a quorum.
    epoch: Option<u32>,
    learners: BTreeMap<Sid, LearnerState>,
    newleader_acks: BTreeSet<Sid>,
    broadcasting: bool,
    /// Outstanding proposals of this epoch and the voters that have acked them.
    acks: BTreeMap<Zxid, BTreeSet<Sid>>,
    next_counter: u32,
    ticks: u32,
}

enum Role {
    Looking(Election),
    Learning(Learning),
    Leading(Leading),
}

pub struct Peer {
    cfg: Config,
    accepted_epoch: u32,
    current_epoch: u32,
    /// Everything up to `base` is folded into the host's state; `log` holds what follows.
    base: Zxid,
    log: Vec<Entry>,
    durable_zxid: Zxid,
    committed: Zxid,
    clock: u64,
    role: Role,
    /// The last vote this peer acted on (answered to LOOKING peers).
    vote: Vote,
    /// FOLLOWERINFOs that arrived while still looking (a learner can decide first); handled
    /// if this peer becomes the leader.
    early_learners: Vec<(Sid, Msg)>,
    out: Vec<Action>,
}

impl Peer {
    /// A peer starting (or restarting) from its durable state, LOOKING.
    pub fn new(cfg: Config, d: Durable) -> Peer {
        let last = d.log.last().map_or(d.base, |e| e.zxid);
        let mut p = Peer {
            accepted_epoch: d.accepted_epoch,
            current_epoch: d.current_epoch,
            base: d.base,
            durable_zxid: last,
            committed: d.base,
            clock: 0,
            log: d.log,
            vote: Vote {
                leader: cfg.id,
                zxid: last,
                election_epoch: 0,
                peer_epoch: d.current_epoch,
                state: State::Looking,
            },
            early_learners: Vec::new(),
            role: Role::Looking(Election::start(
                cfg.id,
                last,
                d.current_epoch,
                0,
                cfg.finalize_ticks,
            )),
            cfg,
            out: Vec::new(),
        };
        p.look();
        p
    }

    pub fn id(&self) -> Sid {
        self.cfg.id
    }

    pub fn state(&self) -> State {
        match &self.role {
            Role::Looking(_) => State::Looking,
            Role::Learning(l) if l.observer => State::Observing,
            Role::Learning(_) => State::Following,
            Role::Leading(_) => State::Leading,
        }
    }

    /// Leading with a committed epoch: can take proposals.
    pub fn is_serving_leader(&self) -> bool {
        matches!(&self.role, Role::Leading(l) if l.broadcasting)
    }

    pub fn leader(&self) -> Option<Sid> {
        match &self.role {
            Role::Learning(l) if l.up_to_date => Some(l.leader),
            Role::Leading(l) if l.broadcasting => Some(self.cfg.id),
            _ => None,
        }
    }

    pub fn last_zxid(&self) -> Zxid {
        self.log.last().map_or(self.base, |e| e.zxid)
    }

    /// Forgets committed entries beyond the window (they are in the host's state).
    fn trim(&mut self) {
        let excess = self.log.len().saturating_sub(self.cfg.log_window.max(1));
        let committed = self.committed;
        let n = self.log[..excess]
            .iter()
            .take_while(|e| e.zxid <= committed)
            .count();
        if n > 0 {
            self.base = self.log[n - 1].zxid;
            self.log.drain(..n);
        }
    }

    pub fn committed(&self) -> Zxid {
        self.committed
    }

    pub fn current_epoch(&self) -> u32 {
        self.current_epoch
    }

    fn is_voter(&self, s: Sid) -> bool {
        self.cfg.voters.contains(&s)
    }

    fn send(&mut self, to: Sid, msg: Msg) {
        self.out.push(Action::Send { to, msg });
    }

    fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.out)
    }

    // ---- LOOKING ------------------------------------------------------------------------

    fn look(&mut self) {
        // Leaving a role closes its connections, as ZooKeeper's LearnerHandlers and Learner do.
        let peers: Vec<Sid> = match &self.role {
            Role::Leading(l) => l
                .learners
                .keys()
                .copied()
                .filter(|s| *s != self.cfg.id)
                .collect(),
            Role::Learning(l) => vec![l.leader],
            Role::Looking(_) => Vec::new(),
        };
        for peer in peers {
            self.out.push(Action::Disconnect { peer });
        }
        let e = Election::start(
            self.cfg.id,
            self.last_zxid(),
            self.current_epoch,
            self.clock,
            self.cfg.finalize_ticks,
        );
        self.clock = e.clock;
        self.role = Role::Looking(e);
        self.out.push(Action::Role {
            state: State::Looking,
            leader: None,
            epoch: self.current_epoch,
        });
        self.notify_all();
    }

    fn my_vote(&self) -> Vote {
        match &self.role {
            Role::Looking(e) => e.proposal.clone(),
            _ => Vote {
                state: self.state(),
                ..self.vote.clone()
            },
        }
    }

    fn notify_all(&mut self) {
        let v = self.my_vote();
        let peers: Vec<Sid> = self
            .cfg
            .voters
            .iter()
            .chain(self.cfg.observers.iter())
            .copied()
            .filter(|s| *s != self.cfg.id)
            .collect();
        for s in peers {
            self.send(s, Msg::Notify(v.clone()));
        }
    }

    fn election_outcomes(&mut self, outcomes: Vec<Outcome>) {
        for o in outcomes {
            match o {
                Outcome::Notify(None) => self.notify_all(),
                Outcome::Notify(Some(to)) => {
                    let v = self.my_vote();
                    self.send(to, Msg::Notify(v));
                }
                Outcome::Decided(v) => {
                    self.decide(v);
                    return;
                }
            }
        }
    }

    fn decide(&mut self, v: Vote) {
        if let Role::Looking(e) = &self.role {
            self.clock = e.clock.max(v.election_epoch);
        }
        self.vote = Vote {
            election_epoch: self.clock,
            ..v.clone()
        };
        if v.leader == self.cfg.id && self.is_voter(self.cfg.id) {
            self.become_leader();
        } else if v.leader != self.cfg.id {
            self.become_learner(v.leader);
        } else {
            self.look();
        }
    }

    // ---- FOLLOWING / OBSERVING ----------------------------------------------------------

    fn become_learner(&mut self, leader: Sid) {
        self.early_learners.clear();
        let observer = !self.is_voter(self.cfg.id);
        self.role = Role::Learning(Learning {
            leader,
            observer,
            synced: false,
            silent: 0,
            newleader: None,
            newleader_acked: false,
            up_to_date: false,
            to_ack: BTreeSet::new(),
            commit_target: self.committed,
        });
        self.out.push(Action::Role {
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
            },
        );
    }

    fn learner_step(&mut self, from: Sid, msg: Msg) {
        let Role::Learning(l) = &mut self.role else {
            return;
        };
        if from != l.leader {
            return;
        }
        l.silent = 0;
        match msg {
            Msg::LeaderInfo { epoch } => {
                if epoch < self.accepted_epoch {
                    self.look();
                    return;
                }
                let counts = epoch > self.accepted_epoch;
                if counts {
                    self.accepted_epoch = epoch;
                    self.out.push(Action::SaveAcceptedEpoch(epoch));
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
                self.out.push(Action::Truncate { after: zxid });
            }
            Msg::Snap { zxid } => {
                // The host has loaded (and persisted) the leader's state at `zxid`.
                self.log.clear();
                self.base = zxid;
                self.durable_zxid = zxid;
                self.committed = zxid;
                l.commit_target = l.commit_target.max(zxid);
            }
            Msg::Proposal(e) => self.learner_proposal(e),
            Msg::NewLeader { zxid } => {
                // The new epoch is adopted (and persisted) only once everything received
                // before NEWLEADER is durable, in `ack_durable`: persisting it first and then
                // crashing would claim a history this peer does not have (the bug
                // ZOOKEEPER-4643 fixed in Apache ZooKeeper).
                let before = self.last_zxid();
                if let Role::Learning(l) = &mut self.role {
                    l.newleader = Some((zxid, before));
                }
                self.ack_durable();
            }
            Msg::UpToDate => {
                let Role::Learning(l) = &mut self.role else {
                    return;
                };
                l.up_to_date = true;
                l.synced = true;
                if let Some((_, before)) = l.newleader {
                    l.commit_target = l.commit_target.max(before);
                }
                let leader = l.leader;
                let state = if l.observer {
                    State::Observing
                } else {
                    State::Following
                };
                self.out.push(Action::Role {
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
            Msg::Ping => self.send(from, Msg::PingReply),
            _ => {}
        }
    }

    fn learner_proposal(&mut self, e: Entry) {
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
            l.to_ack.insert(e.zxid);
        }
        self.log.push(e.clone());
        self.out.push(Action::Append(e));
    }

    /// Sends what durability now allows: NEWLEADER's ACK, proposal ACKs.
    fn ack_durable(&mut self) {
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
            self.out.push(Action::SaveCurrentEpoch(epoch));
            // QuorumPeer.updateElectionVote: report the established epoch from now on.
            self.vote.peer_epoch = epoch;
        }
        let Role::Learning(l) = &mut self.role else {
            return;
        };
        if l.newleader_acked {
            while let Some(&z) = l.to_ack.first() {
                if z > durable {
                    break;
                }
                l.to_ack.remove(&z);
                if epoch_of(z) == self.current_epoch {
                    sends.push(Msg::Ack { zxid: z });
                }
            }
        }
        for m in sends {
            self.send(leader, m);
        }
    }

    /// Commits, in order, what the leader has committed and this peer has durably logged.
    fn deliver(&mut self) {
        let target = match &self.role {
            Role::Learning(l) if l.up_to_date => l.commit_target,
            Role::Leading(_) => self.committed,
            _ => return,
        };
        let upto = target.min(self.durable_zxid).min(self.last_zxid());
        if upto > self.committed {
            self.committed = upto;
            self.out.push(Action::Commit { zxid: upto });
            self.trim();
        }
    }

    // ---- LEADING ------------------------------------------------------------------------

    fn become_leader(&mut self) {
        let mut learners = BTreeMap::new();
        learners.insert(
            self.cfg.id,
            LearnerState {
                observer: false,
                accepted_epoch: self.accepted_epoch,
                ack_epoch: Some((self.current_epoch, self.last_zxid())),
                ack_counts: true,
                phase: None,
                heard: 0,
            },
        );
        self.role = Role::Leading(Leading {
            epoch: None,
            learners,
            newleader_acks: BTreeSet::new(),
            broadcasting: false,
            acks: BTreeMap::new(),
            next_counter: 0,
            ticks: 0,
        });
        self.out.push(Action::Role {
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

    fn leading(&mut self) -> &mut Leading {
        match &mut self.role {
            Role::Leading(l) => l,
            _ => unreachable!("only called while leading"),
        }
    }

    fn voter_count(&self, pred: impl Fn(Sid, &LearnerState) -> bool) -> usize {
        let Role::Leading(l) = &self.role else {
            return 0;
        };
        l.learners
            .iter()
            .filter(|(s, st)| self.cfg.voters.contains(s) && !st.observer && pred(**s, st))
            .count()
    }

    /// Moves discovery and sync forward as far as what has arrived allows.
    fn leader_progress(&mut self) {
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
            self.out.push(Action::SaveAcceptedEpoch(epoch));
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
                self.send(s, Msg::LeaderInfo { epoch });
            }
        }
        // Sync every learner whose epoch ack is in, once a quorum of voters has acked.
        if self.voter_count(|_, st| st.ack_epoch.is_some() && st.ack_counts) < q {
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
    fn sync_learner(&mut self, s: Sid) {
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
            msgs.extend(self.log[idx..].iter().cloned().map(Msg::Proposal));
        } else {
            // The learner's tail diverges: cut back to the last entry we share.
            let keep = self.log[..idx].last().map_or(self.base, |e| e.zxid);
            msgs.push(Msg::Trunc { zxid: keep });
            msgs.extend(self.log[idx..].iter().cloned().map(Msg::Proposal));
        }
        if self.committed > 0 && !matches!(msgs[0], Msg::Snap { .. }) {
            msgs.push(Msg::Commit {
                zxid: self.committed.min(last),
            });
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

    /// A quorum of NEWLEADER acks (ours counts once our log is durable) starts broadcast.
    fn check_newleader_quorum(&mut self) {
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
        self.out.push(Action::SaveCurrentEpoch(epoch));
        // QuorumPeer.updateElectionVote: followers report the same leader and epoch, so a
        // newcomer sees a quorum agree on them (FastLeaderElection's rule).
        self.vote.peer_epoch = epoch;
        for s in uptodate {
            self.send(s, Msg::UpToDate);
        }
        // The whole history is committed by the new epoch.
        if self.last_zxid() > self.committed {
            self.committed = self.last_zxid();
            self.out.push(Action::Commit {
                zxid: self.committed,
            });
        }
        self.out.push(Action::Role {
            state: State::Leading,
            leader: Some(me),
            epoch,
        });
    }

    fn leader_step(&mut self, from: Sid, msg: Msg) {
        let known = self.cfg.voters.contains(&from) || self.cfg.observers.contains(&from);
        if !known {
            return;
        }
        if let Some(st) = self.leading().learners.get_mut(&from) {
            st.heard = 0;
        }
        match msg {
            Msg::FollowerInfo {
                accepted_epoch,
                observer,
            } => {
                let epoch = self.leading().epoch;
                if epoch.is_some_and(|e| accepted_epoch >= e) {
                    // The learner accepted a later epoch from a leadership that never
                    // completed; it can never join ours. Step down so that the next election
                    // picks an epoch above everyone's (Apache ZooKeeper would leave it out).
                    self.look();
                    return;
                }
                self.leading().learners.insert(
                    from,
                    LearnerState {
                        observer,
                        accepted_epoch,
                        ack_epoch: None,
                        ack_counts: false,
                        phase: epoch.map(|_| LearnerPhase::Epoch),
                        heard: 0,
                    },
                );
                if let Some(epoch) = epoch {
                    self.send(from, Msg::LeaderInfo { epoch });
                }
                self.leader_progress();
            }
            Msg::AckEpoch {
                current_epoch,
                last_zxid,
                counts,
            } => {
                if (current_epoch, last_zxid) > (self.current_epoch, self.last_zxid())
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
            Msg::PingReply => {}
            _ => {}
        }
    }

    fn leader_ack(&mut self, from: Sid, zxid: Zxid) {
        let Some(epoch) = self.leading().epoch else {
            return;
        };
        if zxid == make_zxid(epoch, 0) {
            let l = self.leading();
            if let Some(st) = l.learners.get_mut(&from) {
                if l.broadcasting {
                    // Only a learner still syncing gets UPTODATE: ZooKeeper's learner ACKs the
                    // new epoch's zxid a second time once it has started.
                    if st.phase != Some(LearnerPhase::UpToDate) {
                        st.phase = Some(LearnerPhase::UpToDate);
                        self.send(from, Msg::UpToDate);
                    }
                } else {
                    l.newleader_acks.insert(from);
                }
            }
            self.check_newleader_quorum();
            return;
        }
        if self.is_voter(from) {
            if let Some(set) = self.leading().acks.get_mut(&zxid) {
                set.insert(from);
            }
        }
        self.try_commit();
    }

    /// Commits the oldest outstanding proposals that a quorum has acked, in zxid order.
    fn try_commit(&mut self) {
        let q = quorum_of(self.cfg.voters.len());
        let me = self.cfg.id;
        let durable = self.durable_zxid;
        loop {
            let Role::Leading(l) = &mut self.role else {
                return;
            };
            let Some((&zxid, acks)) = l.acks.iter_mut().next() else {
                break;
            };
            if zxid <= durable {
                acks.insert(me);
            }
            if acks.len() < q {
                break;
            }
            l.acks.remove(&zxid);
            self.committed = zxid;
            self.out.push(Action::Commit { zxid });
            let targets: Vec<(Sid, bool)> = l
                .learners
                .iter()
                .filter(|(s, st)| **s != me && st.phase >= Some(LearnerPhase::Syncing))
                .map(|(s, st)| (*s, st.observer))
                .collect();
            let entry = self.log.iter().rev().find(|e| e.zxid == zxid).cloned();
            // (Trimming waits until the observers have been sent this entry.)
            for (s, observer) in targets {
                if observer {
                    // INFORM: observers only ever see committed proposals.
                    if let Some(e) = entry.clone() {
                        self.send(s, Msg::Proposal(e));
                    }
                }
                self.send(s, Msg::Commit { zxid });
            }
        }
        self.trim();
    }

    /// Proposes a transaction. Only a broadcasting leader can; None otherwise (or when the
    /// zxid counter would overflow, which starts a new election as ZooKeeper does).
    pub fn propose(&mut self, payload: bytes::Bytes) -> (Option<Zxid>, Vec<Action>) {
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
        l.acks.insert(zxid, BTreeSet::new());
        let targets: Vec<Sid> = l
            .learners
            .iter()
            .filter(|(s, st)| **s != me && !st.observer && st.phase >= Some(LearnerPhase::Syncing))
            .map(|(s, _)| *s)
            .collect();
        let e = Entry { zxid, payload };
        self.log.push(e.clone());
        self.out.push(Action::Append(e.clone()));
        for s in targets {
            self.send(s, Msg::Proposal(e.clone()));
        }
        (Some(zxid), self.take())
    }

    // ---- events ---------------------------------------------------------------------------

    /// A message from another peer.
    pub fn step(&mut self, from: Sid, msg: Msg) -> Vec<Action> {
        match msg {
            Msg::Notify(v) => self.on_notify(from, v),
            other => match self.role {
                Role::Learning(_) => self.learner_step(from, other),
                Role::Leading(_) => self.leader_step(from, other),
                Role::Looking(_) => {
                    if matches!(other, Msg::FollowerInfo { .. }) {
                        self.early_learners.retain(|(s, _)| *s != from);
                        self.early_learners.push((from, other));
                    }
                }
            },
        }
        self.take()
    }

    fn on_notify(&mut self, from: Sid, v: Vote) {
        if let Role::Looking(e) = &mut self.role {
            let mut outcomes = Vec::new();
            let voters = self.cfg.voters.clone();
            e.on_notification(self.cfg.id, &voters, from, &v, &mut outcomes);
            self.election_outcomes(outcomes);
        } else if v.state == State::Looking {
            let mine = self.my_vote();
            self.send(from, Msg::Notify(mine));
        }
    }

    /// The connection to `peer` broke (TCP closed or reset): a learner that loses its
    /// leader starts looking; a leader forgets the learner until it reconnects and syncs.
    pub fn disconnected(&mut self, peer: Sid) -> Vec<Action> {
        // An early FOLLOWERINFO belongs to its connection.
        self.early_learners.retain(|(s, _)| *s != peer);
        match &mut self.role {
            Role::Learning(l) if l.leader == peer => self.look(),
            Role::Leading(l) => {
                l.learners.remove(&peer);
                l.newleader_acks.remove(&peer);
                for acks in l.acks.values_mut() {
                    acks.remove(&peer);
                }
            }
            _ => {}
        }
        self.take()
    }

    /// The log is synced up to `zxid`.
    pub fn durable(&mut self, zxid: Zxid) -> Vec<Action> {
        if zxid > self.durable_zxid {
            self.durable_zxid = zxid.min(self.last_zxid());
        }
        match self.role {
            Role::Learning(_) => {
                self.ack_durable();
                self.deliver();
            }
            Role::Leading(_) => {
                self.check_newleader_quorum();
                self.try_commit();
            }
            Role::Looking(_) => {}
        }
        self.take()
    }

    /// One tick of time.
    pub fn tick(&mut self) -> Vec<Action> {
        match &mut self.role {
            Role::Looking(e) => {
                let mut outcomes = Vec::new();
                e.tick(&mut outcomes);
                self.election_outcomes(outcomes);
            }
            Role::Learning(l) => {
                l.silent += 1;
                let limit = if l.up_to_date {
                    self.cfg.sync_limit
                } else {
                    self.cfg.init_limit
                };
                if l.silent > limit {
                    self.look();
                }
            }
            Role::Leading(_) => self.leader_tick(),
        }
        self.take()
    }

    fn leader_tick(&mut self) {
        let (sync_limit, init_limit, me) = (self.cfg.sync_limit, self.cfg.init_limit, self.cfg.id);
        let l = self.leading();
        l.ticks += 1;
        for (s, st) in l.learners.iter_mut() {
            if *s != me {
                st.heard += 1;
            }
        }
        let broadcasting = l.broadcasting;
        let started = l.ticks;
        let targets: Vec<Sid> = l.learners.keys().copied().filter(|s| *s != me).collect();
        for s in targets {
            self.send(s, Msg::Ping);
        }
        let q = quorum_of(self.cfg.voters.len());
        if !broadcasting {
            if started > init_limit {
                self.look();
            }
            return;
        }
        let alive = self.voter_count(|s, st| {
            s == me || (st.heard <= sync_limit && st.phase == Some(LearnerPhase::UpToDate))
        });
        if alive < q {
            self.look();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn cfg(id: Sid) -> Config {
        Config {
            id,
            voters: vec![1, 2, 3],
            observers: vec![],
            init_limit: 10,
            sync_limit: 5,
            finalize_ticks: 0,
            snap_threshold: 100,
            log_window: 100,
        }
    }

    /// Runs three peers with instant, lossless delivery until `done` holds.
    fn settle(peers: &mut [Peer], mut actions: Vec<(Sid, Action)>, done: impl Fn(&[Peer]) -> bool) {
        for _ in 0..200 {
            while let Some((from, a)) = actions.pop() {
                let idx = |s: Sid| (s - 1) as usize;
                match a {
                    Action::Send { to, msg } => {
                        let out = peers[idx(to)].step(from, msg);
                        actions.extend(out.into_iter().map(|a| (to, a)));
                    }
                    Action::Append(e) => {
                        let out = peers[idx(from)].durable(e.zxid);
                        actions.extend(out.into_iter().map(|a| (from, a)));
                    }
                    _ => {}
                }
            }
            if done(peers) {
                return;
            }
            for p in peers.iter_mut() {
                let id = p.id();
                actions.extend(p.tick().into_iter().map(|a| (id, a)));
            }
        }
        panic!("did not settle");
    }

    #[test]
    fn an_overflowing_zxid_counter_forces_a_new_election() {
        let mut peers: Vec<Peer> = (1..=3)
            .map(|i| Peer::new(cfg(i), Durable::default()))
            .collect();
        let start: Vec<(Sid, Action)> = Vec::new();
        settle(&mut peers, start, |p| {
            p.iter().any(|x| x.is_serving_leader())
        });
        let leader = peers
            .iter()
            .position(|p| p.is_serving_leader())
            .expect("a leader");
        let (zxid, _) = peers[leader].propose(Bytes::from_static(b"x"));
        assert!(zxid.is_some());
        if let Role::Leading(l) = &mut peers[leader].role {
            l.next_counter = u32::MAX;
        }
        let (zxid, actions) = peers[leader].propose(Bytes::from_static(b"y"));
        assert_eq!(zxid, None, "no proposal past the 32-bit counter");
        assert_eq!(peers[leader].state(), State::Looking);
        let epoch = peers[leader].current_epoch();
        let id = peers[leader].id();
        let acts = actions.into_iter().map(|a| (id, a)).collect();
        settle(&mut peers, acts, |p| {
            p.iter()
                .any(|x| x.is_serving_leader() && x.current_epoch() > epoch)
        });
    }
}
