//! Membership changes inside ZAB, as Apache ZooKeeper 3.5+ makes them: a reconfig is an
//! ordinary proposal whose payload carries the new membership (`quorum::reconfig::
//! membership_in`). Owns the peer's pending (last seen) membership and its activation;
//! does no I/O and reads no clock.
//!
//! * **Seen.** The leader's proposal, a learner's received PROPOSAL (or a reconfig still in
//!   the log at startup) past the active version becomes the pending membership.
//! * **Joint quorums.** While it is pending, a proposal at or after its zxid commits only
//!   once a quorum of the old voters *and* a quorum of the new voters hold it (ZooKeeper's
//!   `Proposal.addQuorumVerifier` with the last seen verifier); the new voters' ACKs count
//!   even from members the old membership does not know (non-voting followers).
//! * **Activation.** When the reconfig commits, the leader names the leader of the new
//!   membership (itself if it stays a voter, else a new voter that acknowledged the
//!   reconfig), sends COMMITANDACTIVATE to followers and INFORMANDACTIVATE to observers in
//!   its place of COMMIT/INFORM, and, if it is not that leader, commits nothing more and
//!   follows the designated one (ZooKeeper's `allowedToCommit = false`). A learner
//!   activates when its commit passes the reconfig (from any of COMMIT, the ACTIVATE
//!   packets, or a sync), and moves to the designated leader, or to its new role, at once,
//!   as ZooKeeper's `updateServerState` does after a reconfig, without an election. A
//!   member the change removes follows on without a vote (and a leader removed follows
//!   the designated one), as ZooKeeper's do; the operator stops it.
//! * **Truncation.** A pending reconfig cut off by TRUNC (or passed over by a SNAP that
//!   does not hold it) is forgotten.

use super::*;
use crate::quorum::membership::Membership;
use crate::quorum::reconfig::membership_in;

/// A reconfig seen and not yet committed.
#[derive(Debug, Clone)]
pub(super) struct PendingConfig {
    pub zxid: Zxid,
    pub membership: Membership,
    pub voters: Vec<Sid>,
}

fn sids(ids: Vec<i64>) -> Vec<Sid> {
    ids.into_iter().map(|i| i as Sid).collect()
}

impl Peer {
    /// Notes a reconfig in a proposal this peer logs (leader or learner).
    pub(super) fn note_reconfig(&mut self, e: &Entry) {
        if e.zxid <= self.cfg.config_version {
            return;
        }
        // Only a proposal of type reconfig (bytes 28..32 of its TxnHeader) is looked at.
        if e.payload.get(28..32) != Some(&crate::proto::op::RECONFIG.to_be_bytes()[..]) {
            return;
        }
        if let Some(mut membership) = membership_in(&e.payload) {
            membership.version = e.zxid;
            let voters = sids(membership.voters());
            self.out.push(PeerAction::Seen {
                membership: membership.clone(),
            });
            self.pending = Some(PendingConfig {
                zxid: e.zxid,
                membership,
                voters,
            });
        }
    }

    /// The version of the active membership (the zxid of the reconfig that made it).
    pub fn config_version(&self) -> i64 {
        self.cfg.config_version
    }

    /// The active membership's voters and observers.
    pub fn members(&self) -> (&[Sid], &[Sid]) {
        (&self.cfg.voters, &self.cfg.observers)
    }

    /// The version of the last membership seen: a pending reconfig's, else the active one.
    pub fn last_seen_version(&self) -> i64 {
        self.pending
            .as_ref()
            .map_or(self.cfg.config_version, |p| p.zxid)
    }

    /// The pending membership, if a reconfig is proposed and not yet committed.
    pub fn pending_membership(&self) -> Option<&Membership> {
        self.pending.as_ref().map(|p| &p.membership)
    }

    /// Leader: the followers (voting or not) synced with it, itself included: who a new
    /// membership's quorum may be made of (ZooKeeper's `Leader.isQuorumSynced`).
    pub fn synced_followers(&self) -> Vec<Sid> {
        let Role::Leading(l) = &self.role else {
            return Vec::new();
        };
        l.learners
            .iter()
            .filter(|(s, st)| {
                **s == self.cfg.id
                    || (!st.observer && !st.stale && st.phase == Some(LearnerPhase::UpToDate))
            })
            .map(|(s, _)| *s)
            .collect()
    }

    /// After a TRUNC to `after` or a SNAP at `after`: a pending reconfig past it is gone;
    /// one at or before a SNAP's zxid is committed in the state that came.
    pub(super) fn pending_after_cut(&mut self, after: Zxid, snap: bool) {
        match &self.pending {
            Some(p) if p.zxid > after => self.pending = None,
            Some(_) if snap => {
                self.activate();
            }
            _ => {}
        }
    }

    /// The joint commit point: `old` (the active voters' quorum point), held back before a
    /// pending reconfig's zxid until a quorum of its voters has acknowledged too.
    pub(super) fn joint_point(&self, old: Zxid) -> Zxid {
        match &self.pending {
            Some(p) => old.min(self.quorum_point(&p.voters).max(p.zxid - 1)),
            None => old,
        }
    }

    /// The pending reconfig's zxid, if a commit to `upto` reaches it.
    pub(super) fn reconfig_within(&self, upto: Zxid) -> Option<Zxid> {
        self.pending
            .as_ref()
            .map(|p| p.zxid)
            .filter(|z| *z <= upto && *z > self.committed)
    }

    /// Leader: who leads the pending membership: this peer if it stays a voter, else the
    /// voter of the new membership with the largest acknowledgement (ties: the largest
    /// id), as ZooKeeper's `Leader.getDesignatedLeader`.
    pub(super) fn designated_leader(&self) -> Sid {
        let me = self.cfg.id;
        let Some(p) = &self.pending else { return me };
        if p.voters.contains(&me) {
            return me;
        }
        let Role::Leading(l) = &self.role else {
            return me;
        };
        l.learners
            .iter()
            .filter(|(s, st)| p.voters.contains(s) && !st.observer && st.acked >= p.zxid)
            .max_by_key(|(s, st)| (st.acked, **s))
            .map_or(me, |(s, _)| *s)
    }

    /// Makes the pending membership the active one; the host hears [`PeerAction::Activate`].
    pub(super) fn activate(&mut self) -> bool {
        let Some(p) = self.pending.take() else {
            return false;
        };
        tracing::info!(
            version = format_args!("0x{:x}", p.zxid),
            voters = ?p.membership.voters(),
            observers = ?p.membership.observers(),
            "a new membership is active"
        );
        let observers = sids(p.membership.observers());
        self.mark_changed_learners(&observers);
        self.cfg.voters = p.voters;
        self.cfg.observers = observers;
        self.cfg.config_version = p.zxid;
        self.reads_count_new_voters();
        self.membership = Some(std::sync::Arc::new(p.membership.clone()));
        self.out.push(PeerAction::Activate {
            membership: p.membership,
        });
        true
    }

    /// Leader: learners connected in a role the new membership changes (an observer that
    /// becomes a voter, a follower that becomes an observer) connect again in the new one,
    /// and are stale until then (see `LearnerState::stale`). A follower that gains or
    /// loses its vote stays connected as it is, as ZooKeeper's non-voting followers do.
    fn mark_changed_learners(&mut self, observers: &[Sid]) {
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        for (s, st) in l.learners.iter_mut() {
            if st.observer != observers.contains(s) {
                st.stale = true;
            }
        }
    }

    /// Leader: read rounds in flight are confirmed by a quorum of the voters of now; a
    /// voter new to them confirms one by answering a PING sent from now on (after the
    /// round began), as `round_needs` asks of a voter at a round's start.
    fn reads_count_new_voters(&mut self) {
        let me = self.cfg.id;
        let voters = self.cfg.voters.clone();
        let Role::Leading(l) = &mut self.role else {
            return;
        };
        let needs: Vec<(Sid, (u64, u64))> = voters
            .iter()
            .filter(|s| **s != me)
            .map(|s| (*s, super::leader::round_needs(l, *s)))
            .collect();
        for r in l.reads.iter_mut() {
            for (s, need) in &needs {
                r.needed.entry(*s).or_insert(*need);
            }
        }
    }

    /// Another peer's notification carried its membership: remembered (a joiner counts
    /// that membership's quorum behind an established leader, see `on_notify`), and a
    /// LOOKING peer whose own is older takes it (it was committed: only an active membership is sent) and starts its
    /// election again under it, as ZooKeeper's FastLeaderElection does; in any other role
    /// the sync with its leader brings it.
    pub(super) fn on_config(&mut self, from: Sid, m: std::sync::Arc<Membership>) {
        if self.peer_configs.len() < 256 || self.peer_configs.contains_key(&from) {
            self.peer_configs.insert(from, sids(m.voters()));
        }
        if !matches!(self.role, Role::Looking(_)) || m.version <= self.cfg.config_version {
            return;
        }
        tracing::info!(
            version = format_args!("0x{:x}", m.version),
            "a newer membership from another member's notification"
        );
        let membership = (*m).clone();
        let voters = sids(membership.voters());
        self.pending = Some(PendingConfig {
            zxid: m.version,
            membership,
            voters,
        });
        self.activate();
        self.look();
    }

    /// Whether `id` belongs to the active membership, in either role.
    pub(super) fn is_member(&self, id: Sid) -> bool {
        self.cfg.voters.contains(&id) || self.cfg.observers.contains(&id)
    }

    /// A learner whose commit has passed a pending reconfig activates it. `designated`
    /// (from COMMITANDACTIVATE or INFORMANDACTIVATE) names the new membership's leader.
    /// Afterwards the learner goes where the new membership puts it: nowhere (it looks,
    /// removed), to the designated leader, or back to its leader in its new role.
    pub(super) fn learner_activation(&mut self, designated: Option<Sid>) {
        let Some(p) = &self.pending else { return };
        if p.zxid > self.committed {
            return;
        }
        self.activate();
        let me = self.cfg.id;
        let Role::Learning(l) = &self.role else {
            return;
        };
        let (old_leader, was_observer) = (l.leader, l.observer);
        let leader = designated.unwrap_or(old_leader);
        let now_observer = self.cfg.observers.contains(&me);
        if !self.is_member(me) {
            tracing::info!("this member is not in the new membership; it follows without a vote");
        }
        if leader == old_leader && now_observer == was_observer {
            return;
        }
        tracing::info!(
            leader,
            observer = now_observer,
            "following the new membership's leader"
        );
        self.out.push(PeerAction::Disconnect { peer: old_leader });
        self.vote.leader = leader;
        if leader == me {
            self.become_leader();
        } else {
            self.become_learner(leader);
        }
    }

    /// A leader that committed a reconfig naming another leader: it leaves its learners
    /// and follows that one (or looks, when it is no member any more).
    /// Its learners' connections are left for them to close (each leaves on the same
    /// COMMITANDACTIVATE): closing them here could drop that very packet unsent.
    pub(super) fn leader_hand_over_to(&mut self, designated: Sid) {
        let me = self.cfg.id;
        if designated == me {
            tracing::info!("no voter of the new membership can lead yet; looking");
            self.look();
            return;
        }
        tracing::info!(
            designated,
            member = self.is_member(me),
            "this leader is no voter in the new membership; following its leader"
        );
        self.vote.leader = designated;
        self.become_learner(designated);
    }
}
