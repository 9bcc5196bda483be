//! ZAB: leader election and atomic broadcast for a replicated ensemble, as a pure state
//! machine (sans-I/O, like raft-rs): `Peer::step(from, msg)`, `tick()`, `durable(zxid)` and
//! `propose(payload)` in; [`PeerAction`]s out. No sockets, files or clocks: the server wires the
//! actions to ZooKeeper's election and quorum ports (formats in [`wire`]) and to the log,
//! and `tests/zab_sim.rs` drives whole ensembles through loss, reordering, partitions and
//! crashes from a seed.
//!
//! Protocol, following Apache ZooKeeper 3.8 (FastLeaderElection, Leader, LearnerHandler,
//! Learner):
//! 1. **Election** ([`election`]): a quorum of votes for the best (epoch, zxid, id).
//! 2. **Discovery**: each learner sends FOLLOWERINFO(acceptedEpoch); once a quorum (leader
//!    included) has, the leader picks `newEpoch = max + 1`, persists it as its acceptedEpoch
//!    and sends LEADERINFO(newEpoch). A learner persists it too and answers
//!    ACKEPOCH(currentEpoch, lastZxid). A learner whose acceptedEpoch is already higher
//!    goes back to LOOKING.
//! 3. **Sync**: from the learner's last zxid the leader sends DIFF (the missing proposals,
//!    with COMMITs for the committed ones), TRUNC (drop a divergent tail first) or SNAP
//!    (the leader's committed state, sent by the host, then the proposals after it), then
//!    NEWLEADER. The learner persists currentEpoch = newEpoch and ACKs once
//!    everything is durable. A quorum of those ACKs commits the leader's whole history; the
//!    leader answers UPTODATE and the learner starts serving.
//! 4. **Broadcast**: PROPOSAL to every synced learner, ACK once durable, COMMIT in zxid
//!    order once a quorum of voters (the leader's own durable write included) has acked.
//!    Observers receive proposals and commits but never count.
//! 5. **Liveness**: a leader that meets a learner whose acceptedEpoch is at or above its own
//!    epoch steps down, so the next election picks an epoch above everyone's (that learner
//!    could never join otherwise; Apache ZooKeeper leaves it out). The leader PINGs every tick; a follower that hears nothing for
//!    `sync_limit` ticks, or a leader that has not heard from a quorum for that long, goes
//!    back to LOOKING. A zxid counter about to overflow 32 bits forces a new election.

pub mod codec;
pub mod election;
pub mod membership;
mod peer;
pub mod reconfig;
pub mod wire;

pub use peer::{Config, Durable, Peer};

use bytes::Bytes;

pub type Sid = u64;
pub type Zxid = i64;

pub fn make_zxid(epoch: u32, counter: u32) -> Zxid {
    ((epoch as i64) << 32) | counter as i64
}

pub fn epoch_of(z: Zxid) -> u32 {
    (z >> 32) as u32
}

pub fn counter_of(z: Zxid) -> u32 {
    z as u32
}

/// Votes needed among `n` voters.
pub fn quorum_of(n: usize) -> usize {
    n / 2 + 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Looking,
    Following,
    Leading,
    Observing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub leader: Sid,
    pub zxid: Zxid,
    pub election_epoch: u64,
    pub peer_epoch: u32,
    pub state: State,
}

/// One logged transaction: its zxid and opaque bytes (the txn log entry body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub zxid: Zxid,
    pub payload: Bytes,
}

/// Messages between peers; each maps onto a ZooKeeper packet (see [`wire`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Election port: the sender's vote and state.
    Notify(Vote),
    /// Election port: the sender's active membership, carried in its notifications (a
    /// reconfig's; a static one is not sent). A LOOKING peer whose own is older adopts it
    /// and starts its election again, as ZooKeeper's FastLeaderElection does.
    Config(std::sync::Arc<membership::Membership>),
    /// `batched`: the learner takes one COMMIT for every proposal up to its zxid (a zabd
    /// learner; see [`codec`] for how it is told on the wire).
    FollowerInfo {
        accepted_epoch: u32,
        observer: bool,
        batched: bool,
    },
    /// `batched`: the leader counts an ACK as acknowledging every earlier proposal, so the
    /// learner may send one ACK per log sync.
    LeaderInfo {
        epoch: u32,
        batched: bool,
    },
    /// `counts` is false when the learner had already accepted this epoch before (ZooKeeper
    /// sends -1 then): it is synced, but not counted toward the epoch quorum.
    AckEpoch {
        current_epoch: u32,
        last_zxid: Zxid,
        counts: bool,
    },
    Diff {
        zxid: Zxid,
    },
    Trunc {
        zxid: Zxid,
    },
    /// The learner's state is replaced by the leader's committed state at `zxid` (the host
    /// sends and loads the state itself: a snapshot of its tree).
    Snap {
        zxid: Zxid,
    },
    Proposal(Entry),
    /// To an observer: a committed proposal, in one message (ZooKeeper's INFORM).
    Inform(Entry),
    NewLeader {
        zxid: Zxid,
    },
    Ack {
        zxid: Zxid,
    },
    UpToDate,
    Commit {
        zxid: Zxid,
    },
    /// To a follower: commit everything up to `zxid`, which is a reconfig, and activate the
    /// membership it proposed; `leader` leads in it (ZooKeeper's COMMITANDACTIVATE).
    CommitAndActivate {
        zxid: Zxid,
        leader: Sid,
    },
    /// To an observer: a committed reconfig, logged, committed and activated at once
    /// (ZooKeeper's INFORMANDACTIVATE).
    InformAndActivate {
        entry: Entry,
        leader: Sid,
    },
    Ping,
    PingReply,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAction {
    Send {
        to: Sid,
        msg: Msg,
    },
    /// Append to the log; answer with `Peer::durable(zxid)` once it is synced.
    Append(Entry),
    /// Drop every logged entry after this zxid (never committed).
    Truncate {
        after: Zxid,
    },

    /// Persist (synchronously) the acceptedEpoch / currentEpoch files.
    SaveAcceptedEpoch(u32),
    SaveCurrentEpoch(u32),
    /// Every entry up to this zxid is committed: apply them in order.
    Commit {
        zxid: Zxid,
    },
    /// Leader: a quorum of voters answered a PING sent after read round `round` (and
    /// every earlier one) started, so no other leader had committed anything when it
    /// started: the `sync`s waiting for it may be answered (see `Peer::start_read_round`).
    ReadConfirmed {
        round: u64,
    },
    /// The peer's role changed.
    Role {
        state: State,
        leader: Option<Sid>,
        epoch: u32,
    },
    /// Close the quorum connection to this peer (a leader stepping down closes them all, a
    /// learner leaving its leader closes that one); the other end gets `disconnected`.
    Disconnect {
        peer: Sid,
    },
    /// A committed reconfig's membership is now the ensemble's (its version is the
    /// reconfig's zxid): the host connects to new members, writes the dynamic
    /// configuration file and `/zookeeper/config` follows. Comes after the reconfig's
    /// `Commit` and before any role change it causes.
    Activate {
        membership: membership::Membership,
    },
    /// A reconfig was proposed (or received): its membership is pending; the host keeps it
    /// as the `.next` dynamic file until it activates.
    Seen {
        membership: membership::Membership,
    },
}
