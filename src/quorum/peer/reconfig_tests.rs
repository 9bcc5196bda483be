//! Membership changes through ZAB with instant, lossless delivery: a non-voting joiner
//! added, joint quorums holding a change back, and a leader removing itself.

use super::tests::{cfg, established, settle};
use super::*;
use crate::proto::op;
use crate::txn::{Txn, TxnHeader};
use bytes::Bytes;

/// A reconfig proposal's payload naming `voters` as the whole membership.
fn reconfig(voters: &[Sid]) -> Bytes {
    let text: Vec<String> = voters
        .iter()
        .map(|v| {
            format!(
                "server.{v}=127.0.0.1:{}:{}:participant;127.0.0.1:{}",
                1000 + v,
                2000 + v,
                3000 + v
            )
        })
        .collect();
    let hdr = TxnHeader {
        client_id: 1,
        cxid: 1,
        zxid: 0,
        time: 0,
        op: op::RECONFIG,
    };
    let txn = Txn::Reconfig {
        path: "/zookeeper/config".into(),
        data: Some(text.join("\n").into()),
        version: -1,
    };
    crate::persist::txnlog::encode_body(&hdr, &txn, None)
}

fn with_voters(id: Sid, voters: &[Sid]) -> Config {
    Config {
        voters: voters.to_vec(),
        ..cfg(id)
    }
}

fn leader_index(peers: &[Peer]) -> usize {
    peers
        .iter()
        .position(|p| p.is_serving_leader())
        .expect("a leader")
}

fn propose(peers: &mut [Peer], li: usize, payload: Bytes) -> (Zxid, Vec<(Sid, PeerAction)>) {
    let id = peers[li].id();
    let (zxid, actions) = peers[li].propose(payload);
    let zxid = zxid.expect("the leader proposes");
    (zxid, actions.into_iter().map(|a| (id, a)).collect())
}

#[test]
fn a_joiner_syncs_without_a_vote_and_votes_once_added() {
    // Member 4's own configuration names the three and itself.
    let mut cfgs: Vec<Config> = (1..=3).map(cfg).collect();
    cfgs.push(with_voters(4, &[1, 2, 3, 4]));
    let mut peers = established(cfgs);
    let li = leader_index(&peers);
    let leader = peers[li].id();
    assert_ne!(leader, 4, "a member outside the membership is not elected");
    assert!(
        !peers[li].cfg.voters.contains(&4),
        "the leader does not count it yet"
    );
    let (rz, acts) = propose(&mut peers, li, reconfig(&[1, 2, 3, 4]));
    settle(&mut peers, acts, |p| {
        p.iter().all(|x| x.config_version() == rz)
    });
    for p in &peers {
        assert_eq!(p.cfg.voters, [1, 2, 3, 4], "peer {}", p.id());
        assert_eq!(p.leader(), Some(leader), "the leader stays: it is a voter");
        assert!(p.committed() >= rz);
    }
    // Member 4 now counts toward the quorum of every write.
    let (z, acts) = propose(&mut peers, li, Bytes::from_static(b"w"));
    settle(&mut peers, acts, |p| p.iter().all(|x| x.committed() >= z));
}

#[test]
fn a_change_commits_only_with_a_quorum_of_the_new_voters_too() {
    let mut peers = established((1..=3).map(cfg).collect());
    let li = leader_index(&peers);
    let leader = peers[li].id();
    let before = peers[li].committed();
    // The new voters: the leader and two members that never come.
    let (rz, mut acts) = propose(&mut peers, li, reconfig(&[leader, 7, 8]));
    let (z, more) = propose(&mut peers, li, Bytes::from_static(b"after"));
    acts.extend(more);
    let sends = acts
        .iter()
        .filter(|(_, a)| {
            matches!(
                a,
                PeerAction::Send {
                    msg: Msg::Proposal(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(sends, 4, "both proposals go to both followers");
    settle(&mut peers, acts, |p| {
        p.iter().all(|x| x.durable_zxid() >= z)
    });
    assert_eq!(peers[li].last_seen_version(), rz, "the change is pending");
    assert!(
        peers[li].committed() < rz && peers[li].committed() >= before,
        "the old voters alone commit nothing from the reconfig on: 0x{:x}",
        peers[li].committed()
    );
    assert_eq!(peers[li].config_version(), 0);
}

#[test]
fn a_leader_that_removes_itself_hands_over_to_a_new_voter() {
    let four = [1, 2, 3, 4];
    let mut peers = established((1..=4).map(|i| with_voters(i, &four)).collect());
    let li = leader_index(&peers);
    let old = peers[li].id();
    let epoch = peers[li].current_epoch();
    let rest: Vec<Sid> = four.iter().copied().filter(|s| *s != old).collect();
    let (rz, acts) = propose(&mut peers, li, reconfig(&rest));
    settle(&mut peers, acts, |p| {
        p.iter().any(|x| x.is_serving_leader() && x.id() != old)
            && p.iter().filter(|x| x.leader().is_some()).count() == 4
    });
    assert_eq!(
        peers[li].state(),
        State::Following,
        "the old leader follows the new one without a vote"
    );
    assert!(!peers[li].members().0.contains(&old));
    let ni = leader_index(&peers);
    assert!(peers[ni].current_epoch() > epoch, "a new epoch");
    for s in &rest {
        let p = &peers[(*s - 1) as usize];
        assert_eq!(p.config_version(), rz);
        assert_eq!(p.cfg.voters, rest);
        assert!(p.committed() >= rz);
    }
    // The three serve on.
    let (z, acts) = propose(&mut peers, ni, Bytes::from_static(b"w"));
    settle(&mut peers, acts, |p| {
        rest.iter().all(|s| p[(*s - 1) as usize].committed() >= z)
    });
}
