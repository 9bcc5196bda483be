//! One ensemble member's ZAB state machine (see the module doc of `quorum`): state, the
//! LOOKING role and the events; the learner side is in `learner.rs`, the leader side in
//! `leader.rs`.

//! Roles are types: [`Role::Looking`], `Following`/`Observing` ([`Learning`]), `Leading`.

mod leader;
mod learner;
mod reconfig;

use reconfig::PendingConfig;

use super::election::{Election, Outcome};
use super::{epoch_of, make_zxid, quorum_of, Entry, Msg, PeerAction, Sid, State, Vote, Zxid};
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
    /// Offer batched ACKs and COMMITs to peers that offer them too (zabd members do; Apache
    /// ZooKeeper's do not, and get one per proposal). Off only to test the per-proposal path.
    pub batched: bool,
    /// The version of the membership `voters` and `observers` come from: the zxid of the
    /// reconfig that made it, 0 for a static one. A reconfig in the log past it is pending.
    pub config_version: i64,
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
    /// Proposals to ACK once durable, in zxid order.
    to_ack: std::collections::VecDeque<Zxid>,
    commit_target: Zxid,
    /// The leader counts an ACK for every proposal up to it: one ACK per log sync.
    batched: bool,
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
    /// PINGs sent since UPTODATE, and the learner's replies to them: a reply answers one
    /// PING, in order (the learner answers none before UPTODATE), so `answered >= n` means
    /// it answered the n-th PING sent since then.
    pings_sent: u64,
    pings_answered: u64,
    /// Which connection of this learner this is (the leader numbers them in order): a read
    /// round started before the learner reconnected is answered by its coming back up to
    /// date on the new connection, which it did after the round began.
    generation: u64,
    /// The largest zxid it has acknowledged (NEWLEADER's counts: it then holds the history).
    /// A learner logs in zxid order, so it holds every proposal up to this one.
    acked: Zxid,
    /// It takes one COMMIT for every proposal up to its zxid.
    batched: bool,
    /// A reconfig changed its role (voter, observer, none) since it connected: it will
    /// connect again in its new role, and is not counted as synced until then.
    stale: bool,
}

impl LearnerState {
    fn new(observer: bool, accepted_epoch: u32, phase: Option<LearnerPhase>) -> LearnerState {
        LearnerState {
            observer,
            accepted_epoch,
            ack_epoch: None,
            ack_counts: false,
            phase,
            heard: 0,
            pings_sent: 0,
            pings_answered: 0,
            generation: 0,
            acked: 0,
            batched: false,
            stale: false,
        }
    }
}

/// A read round in flight: per voter, its connection's generation and the PING count it
/// must answer on that connection to confirm the round.
struct ReadRound {
    round: u64,
    needed: BTreeMap<Sid, (u64, u64)>,
}

struct Leading {
    /// The new epoch, once discovery has found a quorum.
    epoch: Option<u32>,
    learners: BTreeMap<Sid, LearnerState>,
    newleader_acks: BTreeSet<Sid>,
    broadcasting: bool,
    next_counter: u32,
    ticks: u32,
    /// Read rounds not yet confirmed by a quorum, oldest first.
    reads: std::collections::VecDeque<ReadRound>,
    /// The generation of the newest learner connection (the next one gets one more).
    next_generation: u64,
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
    out: Vec<PeerAction>,
    /// An emptied action list the host gave back ([`Peer::recycle`]): the next `take`
    /// hands it out, so a write's PROPOSAL allocates no list of actions.
    spare: Vec<PeerAction>,
    /// A reconfig seen and not yet committed (see `reconfig.rs`).
    pending: Option<PendingConfig>,
    /// The active membership, once a reconfig (or another peer's notification) made it;
    /// sent with this peer's notifications.
    membership: Option<std::sync::Arc<crate::quorum::membership::Membership>>,
    /// The voters of the membership each peer's notifications last carried.
    peer_configs: BTreeMap<Sid, Vec<Sid>>,
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
                cfg.voters.contains(&cfg.id),
                last,
                d.current_epoch,
                0,
                cfg.finalize_ticks,
            )),
            cfg,
            out: Vec::new(),
            spare: Vec::new(),
            pending: None,
            membership: None,
            peer_configs: BTreeMap::new(),
        };
        for i in 0..p.log.len() {
            let e = p.log[i].clone();
            p.note_reconfig(&e);
        }
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

    /// Leading with nothing outstanding, and a voter with a larger id holds everything
    /// proposed: this leader steps down (looks) so that the election, which prefers the
    /// larger id among equally recent histories, makes that voter leader. The host asks it
    /// when `leaderServes` is off and clients are still on this member (they stay
    /// connected through the change). None, doing nothing, otherwise.
    pub fn hand_over(&mut self) -> Option<Vec<PeerAction>> {
        let me = self.cfg.id;
        let last = self.last_zxid();
        let Role::Leading(l) = &self.role else {
            return None;
        };
        if !l.broadcasting || self.committed < last {
            return None;
        }
        let successor = l.learners.iter().find(|(s, st)| {
            **s > me
                && self.cfg.voters.contains(s)
                && st.phase == Some(LearnerPhase::UpToDate)
                && st.acked >= last
        });
        let to = *successor?.0;
        tracing::info!(
            from = me,
            to,
            "handing leadership to a member with a larger id"
        );
        self.look();
        Some(self.take())
    }

    /// Leading, and `learner` is up to date on its current connection: the only time its
    /// forwarded requests may be taken (one left over from an earlier connection or epoch
    /// must not be, as the learner sends those again once it is up to date).
    pub fn serves_learner(&self, learner: Sid) -> bool {
        matches!(&self.role, Role::Leading(l) if l.broadcasting
            && l.learners.get(&learner).is_some_and(|st| st.phase == Some(LearnerPhase::UpToDate)))
    }

    pub fn leader(&self) -> Option<Sid> {
        match &self.role {
            Role::Learning(l) if l.up_to_date => Some(l.leader),
            Role::Leading(l) if l.broadcasting => Some(self.cfg.id),
            _ => None,
        }
    }

    /// A learner syncing with `from` as its leader, before NEWLEADER: the one time the
    /// leader's SNAP state may replace this peer's (a late SNAP from a leader it has left
    /// must not).
    pub fn expects_snap_from(&self, from: Sid) -> bool {
        matches!(&self.role, Role::Learning(l) if l.leader == from && !l.up_to_date && l.newleader.is_none())
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

    /// The last zxid this peer's log holds durably.
    pub fn durable_zxid(&self) -> Zxid {
        self.durable_zxid
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
        self.out.push(PeerAction::Send { to, msg });
    }

    fn take(&mut self) -> Vec<PeerAction> {
        std::mem::replace(&mut self.out, std::mem::take(&mut self.spare))
    }

    /// Gives back a list of actions the host has carried out, for reuse.
    pub fn recycle(&mut self, mut done: Vec<PeerAction>) {
        done.clear();
        if self.spare.capacity() < done.capacity() {
            self.spare = done;
        }
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
            self.out.push(PeerAction::Disconnect { peer });
        }
        let e = Election::start(
            self.cfg.id,
            self.is_voter(self.cfg.id),
            self.last_zxid(),
            self.current_epoch,
            self.clock,
            self.cfg.finalize_ticks,
        );
        self.clock = e.clock;
        self.role = Role::Looking(e);
        self.out.push(PeerAction::Role {
            state: State::Looking,
            leader: None,
            epoch: self.current_epoch,
        });
        self.notify_all();
        // A membership of one voter, this peer (`standaloneEnabled=false`): its own vote
        // is a quorum (ZooKeeper's election hears its own notification).
        if self.cfg.voters == [self.cfg.id] {
            let own = self.my_vote();
            self.decide(own);
        }
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
        let config = self.membership.clone();
        let peers: Vec<Sid> = self
            .cfg
            .voters
            .iter()
            .chain(self.cfg.observers.iter())
            .copied()
            .filter(|s| *s != self.cfg.id)
            .collect();
        for s in peers {
            if let Some(m) = &config {
                self.send(s, Msg::Config(m.clone()));
            }
            self.send(s, Msg::Notify(v.clone()));
        }
    }

    /// A vote to one peer, after the membership this peer's notifications carry.
    fn notify(&mut self, to: Sid) {
        if let Some(m) = self.membership.clone() {
            self.send(to, Msg::Config(m));
        }
        let v = self.my_vote();
        self.send(to, Msg::Notify(v));
    }

    fn election_outcomes(&mut self, outcomes: Vec<Outcome>) {
        for o in outcomes {
            match o {
                Outcome::Notify(None) => self.notify_all(),
                Outcome::Notify(Some(to)) => self.notify(to),
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

    // ---- events ---------------------------------------------------------------------------

    /// A message from another peer.
    pub fn step(&mut self, from: Sid, msg: Msg) -> Vec<PeerAction> {
        match msg {
            Msg::Notify(v) => self.on_notify(from, v),
            Msg::Config(m) => self.on_config(from, m),
            // A FOLLOWERINFO before this peer leads is kept for when it does: learners
            // can decide first, and after a reconfig they turn to the designated leader
            // while it still follows the old one, until its COMMITANDACTIVATE arrives.
            other @ Msg::FollowerInfo { .. } if !matches!(self.role, Role::Leading(_)) => {
                self.early_learners.retain(|(s, _)| *s != from);
                self.early_learners.push((from, other));
            }
            other => match self.role {
                Role::Learning(_) => self.learner_step(from, other),
                Role::Leading(_) => self.leader_step(from, other),
                Role::Looking(_) => {}
            },
        }
        self.take()
    }

    fn on_notify(&mut self, from: Sid, v: Vote) {
        if let Role::Looking(e) = &mut self.role {
            let mut outcomes = Vec::new();
            let voters = match self.peer_configs.get(&from) {
                // A member that is no voter of the sender's membership (one joining it)
                // looks for that membership's quorum behind an established leader: its own
                // voters may be the sender's plus itself, a quorum it cannot make alone.
                Some(theirs) if v.state != State::Looking && !theirs.contains(&self.cfg.id) => {
                    theirs.clone()
                }
                _ => self.cfg.voters.clone(),
            };
            e.on_notification(self.cfg.id, &voters, from, &v, &mut outcomes);
            self.election_outcomes(outcomes);
        } else if v.state == State::Looking {
            self.notify(from);
        }
        // A member outside this membership (one about to join) is told our vote, as
        // ZooKeeper's election answers any sender that is not a voter.
        if matches!(self.role, Role::Looking(_)) && !self.is_voter(from) {
            self.notify(from);
        }
    }

    /// The connection to `peer` broke (TCP closed or reset): a learner that loses its
    /// leader starts looking; a leader forgets the learner until it reconnects and syncs.
    pub fn disconnected(&mut self, peer: Sid) -> Vec<PeerAction> {
        // An early FOLLOWERINFO belongs to its connection.
        self.early_learners.retain(|(s, _)| *s != peer);
        match &mut self.role {
            Role::Learning(l) if l.leader == peer => self.look(),
            Role::Leading(_) => self.forget_learner(peer),
            _ => {}
        }
        self.take()
    }

    /// Leader: what is known of a learner whose connection is gone. Its ACKs of proposals
    /// still count (as in ZooKeeper, whose proposals keep their ack sets): it acknowledged
    /// only what was durable, which it keeps, and coming back to this leader it is not sent
    /// again what it already has, so it would never acknowledge those again.
    fn forget_learner(&mut self, peer: Sid) {
        let l = self.leading();
        l.learners.remove(&peer);
        l.newleader_acks.remove(&peer);
    }

    /// The log is synced up to `zxid`.
    pub fn durable(&mut self, zxid: Zxid) -> Vec<PeerAction> {
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
    pub fn tick(&mut self) -> Vec<PeerAction> {
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
        // A learner silent past its limit is dropped, as ZooKeeper's LearnerHandler's read
        // times out: initLimit ticks while it syncs, syncLimit once it is up to date. It
        // hears the close, looks, finds this leader again and syncs anew.
        let silent: Vec<Sid> = l
            .learners
            .iter()
            .filter(|(s, st)| {
                let limit = if st.phase == Some(LearnerPhase::UpToDate) {
                    sync_limit
                } else {
                    init_limit
                };
                **s != me && st.heard > limit
            })
            .map(|(s, _)| *s)
            .collect();
        for s in silent {
            self.out.push(PeerAction::Disconnect { peer: s });
            self.forget_learner(s);
        }
        // Pings go only to learners already syncing: ZooKeeper's learner takes nothing but
        // LEADERINFO, then DIFF/TRUNC/SNAP, before that (it exits on a PING there), and its
        // LearnerHandler pings only once the sync is queued.
        let l = self.leading();
        let targets: Vec<Sid> = l
            .learners
            .iter()
            .filter(|(s, st)| **s != me && st.phase >= Some(LearnerPhase::Syncing))
            .map(|(s, _)| *s)
            .collect();
        for s in targets {
            self.ping(s);
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
mod reconfig_tests;
#[cfg(test)]
mod tests;
