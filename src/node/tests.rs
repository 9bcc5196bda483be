//! Node tests: single inputs whose handling the simulation (`tests/node_sim.rs`) reaches
//! only by chance.

use super::*;
use crate::persist::snapshot;

fn clock(ms: i64) -> Clock {
    Clock {
        mono_ms: ms,
        mono_us: ms * 1000,
        wall_ms: 1_700_000_000_000 + ms,
    }
}

fn node(id: Sid) -> Node {
    let cfg = NodeConfig {
        engine: EngineConfig::default(),
        extended_types: false,
        read_only_mode: false,
        read_only_after_ms: 2000,
        membership: Default::default(),
    };
    let zab = Config {
        id,
        voters: vec![1, 2, 3],
        observers: vec![],
        init_limit: 10,
        sync_limit: 5,
        finalize_ticks: 1,
        snap_threshold: 100,
        log_window: 100,
        batched: true,
        config_version: 0,
    };
    let tree = DataTree::new(false);
    Node::new(cfg, zab, Durable::default(), tree, Vec::new(), clock(0)).expect("a node")
}

fn leaders_state() -> Box<ReceivedSnap> {
    let mut tree = DataTree::new(false);
    tree.last_zxid = 0x5_0000_0007;
    let last = tree.last_zxid;
    let view = snapshot::View::of(&mut tree, vec![(77, 30_000)], last);
    Box::new(ReceivedSnap::decode(Bytes::from(view.to_stream()), false))
}

#[test]
fn a_snap_from_a_peer_the_member_is_not_syncing_with_leaves_its_state_alone() {
    let mut n = node(1);
    n.start();
    let snap = PeerEvent::Snap {
        from: 2,
        zxid: 0x5_0000_0007,
        snap: leaders_state(),
    };
    let io = n
        .handle(Input::Peer(snap), clock(10))
        .expect("no divergence");
    assert!(
        !io.iter()
            .any(|c| matches!(c, Io::WriteSnap { .. } | Io::CutLog { .. })),
        "a stray SNAP touched the disk"
    );
    assert_eq!(n.engine().last_zxid(), 0);
    assert!(n.engine().session_list().is_empty());
}

#[test]
fn durability_reported_from_before_a_log_cut_is_ignored() {
    let mut n = node(1);
    n.start();
    // No cut yet: a report under count 1 names a log this node never asked for.
    let stale = Input::Durable {
        zxid: 0x1_0000_0005,
        truncations: 1,
    };
    n.handle(stale, clock(10)).expect("no divergence");
    assert_eq!(n.peer().durable_zxid(), 0);
}
