//! Leader election, as ZooKeeper's FastLeaderElection, without I/O or clocks.
//!
//! Votes are ordered by (peer epoch, zxid, server id). A LOOKING peer bumps its logical
//! clock, votes for itself and tells every voter; it adopts any better vote it hears in the
//! same round (and jumps to a later round's clock, re-voting). Once a quorum holds its
//! proposal it waits `finalize_ticks` for anything better, then decides. Notifications from
//! peers already FOLLOWING or LEADING let a newcomer join an established leader: a quorum of
//! them must name the same leader, and that leader must itself say LEADING (checkLeader).

use super::{quorum_of, Sid, State, Vote, Zxid};
use std::collections::BTreeMap;

/// The total order of votes: true if (epoch, zxid, id) of `a` beats `b`.
pub fn better(a: &Vote, b: &Vote) -> bool {
    (a.peer_epoch, a.zxid, a.leader) > (b.peer_epoch, b.zxid, b.leader)
}

pub struct Election {
    pub clock: u64,
    pub proposal: Vote,
    /// The vote this peer would make for itself.
    own: Vote,
    recv: BTreeMap<Sid, Vote>,
    out_of_election: BTreeMap<Sid, Vote>,
    /// Ticks left before deciding on a quorum-backed proposal.
    finalizing: Option<u32>,
    finalize_ticks: u32,
    /// Ticks until notifications are sent again, and the current back-off.
    resend_in: u32,
    backoff: u32,
}

/// What the election asks of its peer.
pub enum Outcome {
    /// Tell these peers (or every voter, when None) about `Election::proposal`.
    Notify(Option<Sid>),
    /// The election is over: follow (or lead, if it is us) this leader.
    Decided(Vote),
}

/// The leader a member outside the voters proposes: nobody (ZooKeeper's Long.MIN_VALUE),
/// so that peers whose membership is older than its own never elect it.
pub const NO_LEADER: Sid = i64::MIN as Sid;

impl Election {
    /// A new round. `voter`: this peer is a voter of its membership; one that is not votes
    /// for nobody with the lowest zxid (ZooKeeper's `getInitId`, `getInitLastLoggedZxid`),
    /// and adopts the first valid vote it hears.
    pub fn start(
        me: Sid,
        voter: bool,
        last_zxid: Zxid,
        current_epoch: u32,
        clock: u64,
        finalize_ticks: u32,
    ) -> Election {
        let own = match voter {
            true => Vote {
                leader: me,
                zxid: last_zxid,
                election_epoch: clock + 1,
                peer_epoch: current_epoch,
                state: State::Looking,
            },
            false => Vote {
                leader: NO_LEADER,
                zxid: Zxid::MIN,
                election_epoch: clock + 1,
                peer_epoch: 0,
                state: State::Looking,
            },
        };
        let mut recv = BTreeMap::new();
        recv.insert(me, own.clone());
        Election {
            clock: clock + 1,
            proposal: own.clone(),
            own,
            recv,
            out_of_election: BTreeMap::new(),
            finalizing: None,
            finalize_ticks,
            resend_in: 2,
            backoff: 2,
        }
    }

    /// Votes equal to `v`, by ZooKeeper's Vote.equals: all fields while either side is
    /// LOOKING; only leader and peer epoch between peers out of the election, whose zxid and
    /// election round legitimately differ (ZOOKEEPER-1805).
    fn agreeing(votes: &BTreeMap<Sid, Vote>, v: &Vote, voters: &[Sid]) -> usize {
        votes
            .iter()
            .filter(|(s, x)| {
                let looking = x.state == State::Looking || v.state == State::Looking;
                voters.contains(s)
                    && x.leader == v.leader
                    && x.peer_epoch == v.peer_epoch
                    && (!looking || (x.zxid == v.zxid && x.election_epoch == v.election_epoch))
            })
            .count()
    }

    fn set_proposal(&mut self, me: Sid, v: Vote) {
        self.proposal = Vote {
            election_epoch: self.clock,
            state: State::Looking,
            ..v
        };
        self.recv.insert(me, self.proposal.clone());
    }

    /// A notification from `from`. `me` and `voters` describe the ensemble.
    pub fn on_notification(
        &mut self,
        me: Sid,
        voters: &[Sid],
        from: Sid,
        n: &Vote,
        out: &mut Vec<Outcome>,
    ) {
        if !voters.contains(&from) || !voters.contains(&n.leader) {
            return;
        }
        match n.state {
            State::Looking => self.on_looking(me, voters, from, n, out),
            State::Following | State::Leading => self.on_established(me, voters, from, n, out),
            State::Observing => {}
        }
    }

    fn on_looking(&mut self, me: Sid, voters: &[Sid], from: Sid, n: &Vote, out: &mut Vec<Outcome>) {
        if n.election_epoch > self.clock {
            self.clock = n.election_epoch;
            self.recv.clear();
            let pick = if better(n, &self.own) {
                n.clone()
            } else {
                self.own.clone()
            };
            self.set_proposal(me, pick);
            self.finalizing = None;
            out.push(Outcome::Notify(None));
        } else if n.election_epoch < self.clock {
            // Tell the laggard where we are.
            out.push(Outcome::Notify(Some(from)));
            return;
        } else if better(n, &self.proposal) {
            self.set_proposal(me, n.clone());
            self.finalizing = None;
            out.push(Outcome::Notify(None));
        }
        self.recv.insert(from, n.clone());
        let q = quorum_of(voters.len());
        if self.finalizing.is_none() && Election::agreeing(&self.recv, &self.proposal, voters) >= q
        {
            self.finalizing = Some(self.finalize_ticks);
        }
    }

    /// checkLeader: the leader named must itself report LEADING (or be us, in this round).
    fn check_leader(
        &self,
        me: Sid,
        votes: &BTreeMap<Sid, Vote>,
        leader: Sid,
        election_epoch: u64,
    ) -> bool {
        if leader != me {
            votes
                .get(&leader)
                .is_some_and(|v| v.state == State::Leading)
        } else {
            self.clock == election_epoch
        }
    }

    fn on_established(
        &mut self,
        me: Sid,
        voters: &[Sid],
        from: Sid,
        n: &Vote,
        out: &mut Vec<Outcome>,
    ) {
        let q = quorum_of(voters.len());
        if n.election_epoch == self.clock {
            self.recv.insert(from, n.clone());
            if Election::agreeing(&self.recv, n, voters) >= q
                && self.check_leader(me, &self.recv, n.leader, n.election_epoch)
            {
                out.push(Outcome::Decided(n.clone()));
                return;
            }
        }
        self.out_of_election.insert(from, n.clone());
        if Election::agreeing(&self.out_of_election, n, voters) >= q
            && self.check_leader(me, &self.out_of_election, n.leader, n.election_epoch)
        {
            self.clock = n.election_epoch;
            out.push(Outcome::Decided(n.clone()));
        }
    }

    /// One tick of time: finish the finalize wait, or resend with back-off.
    pub fn tick(&mut self, out: &mut Vec<Outcome>) {
        if let Some(t) = self.finalizing.as_mut() {
            if *t == 0 {
                self.finalizing = None;
                out.push(Outcome::Decided(self.proposal.clone()));
                return;
            }
            *t -= 1;
        }
        self.resend_in = self.resend_in.saturating_sub(1);
        if self.resend_in == 0 {
            self.backoff = (self.backoff * 2).min(16);
            self.resend_in = self.backoff;
            out.push(Outcome::Notify(None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(leader: Sid, zxid: Zxid, ee: u64, pe: u32, state: State) -> Vote {
        Vote {
            leader,
            zxid,
            election_epoch: ee,
            peer_epoch: pe,
            state,
        }
    }

    #[test]
    fn order_is_epoch_then_zxid_then_id() {
        assert!(better(
            &vote(1, 5, 1, 2, State::Looking),
            &vote(3, 9, 1, 1, State::Looking)
        ));
        assert!(better(
            &vote(1, 9, 1, 1, State::Looking),
            &vote(3, 5, 1, 1, State::Looking)
        ));
        assert!(better(
            &vote(3, 5, 1, 1, State::Looking),
            &vote(1, 5, 1, 1, State::Looking)
        ));
    }

    #[test]
    fn three_peers_agree_on_the_most_up_to_date() {
        let voters = [1, 2, 3];
        let mut e = Election::start(1, true, 10, 1, 0, 1);
        let mut out = Vec::new();
        e.on_notification(1, &voters, 2, &vote(2, 12, 1, 1, State::Looking), &mut out);
        assert_eq!(e.proposal.leader, 2);
        e.on_notification(1, &voters, 3, &vote(2, 12, 1, 1, State::Looking), &mut out);
        let mut decided = None;
        for _ in 0..3 {
            let mut o = Vec::new();
            e.tick(&mut o);
            for x in o {
                if let Outcome::Decided(v) = x {
                    decided = Some(v.leader);
                }
            }
        }
        assert_eq!(decided, Some(2));
    }

    #[test]
    fn a_newcomer_joins_an_established_leader() {
        let voters = [1, 2, 3];
        let mut e = Election::start(3, true, 0, 0, 0, 1);
        let mut out = Vec::new();
        e.on_notification(3, &voters, 1, &vote(2, 7, 4, 1, State::Following), &mut out);
        assert!(out.iter().all(|o| !matches!(o, Outcome::Decided(_))));
        e.on_notification(3, &voters, 2, &vote(2, 7, 4, 1, State::Leading), &mut out);
        assert!(out
            .iter()
            .any(|o| matches!(o, Outcome::Decided(v) if v.leader == 2)));
    }
}
