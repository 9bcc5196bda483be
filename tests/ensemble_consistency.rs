//! ZooKeeper's consistency promises on a real 3-member ensemble, under load and faults:
//! * `sync` + read on one member sees every write acknowledged on another before the
//!   `sync`, even while the reader's member has a slow disk (its log sync lags the
//!   quorum's) and writes keep coming;
//! * `sync` + read on a leader that was paused and deposed while paused never returns the
//!   state from before the new leader's writes (sync is a quorum operation in zabd);
//! * auth and requests pipelined behind the ConnectRequest, on followers.
//!
//! `ZABD_SYNC_ROUNDS` (default 1500) and `ZABD_PAUSE_TRIALS` (default 3) set the sizes.

mod common;

use common::ensemble::Ensemble;
use common::{signal_pause, DEADLINE};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zookeeper_client::{Acls, Client, CreateMode};

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

/// Writes through `c` until `stop`, bounded in count and time; returns how many it made.
async fn background_writes(c: Client, key: String, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let _ = c.create(&key, b"", &persistent()).await;
    let end = Instant::now() + DEADLINE * 5;
    for i in 0..200_000u64 {
        if stop.load(Ordering::Relaxed) || Instant::now() > end {
            break;
        }
        if c.set_data(&key, &i.to_be_bytes(), None).await.is_ok() {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Background writes through member `at`: four sessions, one key each, until the returned
/// flag is set; the counter counts the acknowledged ones.
async fn start_load(
    e: &Ensemble,
    at: usize,
    prefix: &str,
) -> (
    Arc<AtomicBool>,
    Arc<AtomicU64>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for k in 0..4 {
        let c = e.client(at).await;
        let key = format!("/{prefix}{k}");
        let task = background_writes(c, key, stop.clone(), done.clone());
        load.push(tokio::spawn(task));
    }
    (stop, done, load)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_then_read_on_another_member_sees_every_acknowledged_write() {
    // Member 1 plays a slow disk: every log sync there waits 15 ms more.
    let e = Ensemble::start_each(3, |i| {
        if i == 0 {
            "test_log_sync_delay_ms = 15".into()
        } else {
            String::new()
        }
    });
    let leader = e.wait_settled();
    let reader = 0;
    let writer = (1..3).find(|i| *i != leader).expect("a second follower");
    let load_at = (0..3).find(|i| *i != reader && *i != writer).unwrap();
    let (w, r) = (e.client(writer).await, e.client(reader).await);
    let (stop, done, load) = start_load(&e, load_at, "load").await;
    w.create("/reg", b"v0", &persistent()).await.unwrap();
    let rounds = common::env_u64("ZABD_SYNC_ROUNDS", 1500) as usize;
    for i in 1..=rounds {
        let v = format!("v{i}");
        let child = format!("/reg/c{i}");
        w.set_data("/reg", v.as_bytes(), None).await.unwrap();
        w.create(&child, b"", &persistent()).await.unwrap();
        r.sync("/reg").await.unwrap();
        let (data, _) = r.get_data("/reg").await.unwrap_or_else(|e| {
            panic!(
                "round {i}: sync + getData on member {} failed: {e}",
                reader + 1
            )
        });
        assert_eq!(
            String::from_utf8_lossy(&data),
            v,
            "round {i}: sync + getData on member {} missed a write acknowledged on member {}",
            reader + 1,
            writer + 1
        );
        assert!(
            r.check_stat(&child).await.unwrap().is_some(),
            "round {i}: sync + exists on member {} missed {child}, acknowledged on member {}",
            reader + 1,
            writer + 1
        );
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    // The reader's member reports how far it trails; idle, nothing committed is unapplied.
    if reader != leader {
        common::wait_until("the reader's member applied every commit", || {
            let m = e.four(reader, "mntr");
            m.contains("zabd_learner_apply_lag_ms\t")
                && m.contains("zabd_learner_unapplied_commits\t0")
        });
    }
    eprintln!(
        "{rounds} sync+read rounds held, beside {} background writes",
        done.load(Ordering::Relaxed)
    );
}

/// The roles of the members other than `paused`, without asking the paused one.
fn others_settled(e: &Ensemble, paused: usize) -> Option<usize> {
    let others: Vec<usize> = (0..3).filter(|i| *i != paused).collect();
    let modes: Vec<String> = others
        .iter()
        .map(|i| e.role(*i).map(|(m, _)| m).unwrap_or_default())
        .collect();
    let leader = others.iter().zip(&modes).find(|(_, m)| *m == "leader")?;
    modes.iter().any(|m| m == "follower").then_some(*leader.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_on_a_paused_and_deposed_leader_never_reads_stale_data() {
    let e = Ensemble::start(3, "");
    let trials = common::env_u64("ZABD_PAUSE_TRIALS", 3) as usize;
    let (mut answered, mut refused) = (0, 0);
    for t in 0..trials {
        let old = e.wait_settled();
        let c = e.client(old).await;
        let before = format!("before-{t}");
        let after = format!("after-{t}");
        if t == 0 {
            c.create("/reg", before.as_bytes(), &persistent())
                .await
                .unwrap();
        } else {
            c.set_data("/reg", before.as_bytes(), None).await.unwrap();
        }
        let pid = e.pid(old).expect("running");
        signal_pause(pid, true);
        let end = Instant::now() + DEADLINE;
        let new = loop {
            if let Some(l) = others_settled(&e, old) {
                break l;
            }
            assert!(
                Instant::now() < end,
                "no new leader while {} is paused",
                old + 1
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let n = e.client(new).await;
        n.set_data("/reg", after.as_bytes(), None).await.unwrap();
        signal_pause(pid, false);
        // At once, on the old leader: sync, then read.
        let outcome = tokio::time::timeout(DEADLINE, async {
            c.sync("/reg").await?;
            c.get_data("/reg").await
        })
        .await;
        match outcome {
            Ok(Ok((data, _))) => {
                answered += 1;
                assert_eq!(
                    String::from_utf8_lossy(&data),
                    after,
                    "trial {t}: sync + read on the deposed leader (member {}) returned stale data",
                    old + 1
                );
            }
            // Refusing (connection loss while it steps down) keeps the promise.
            Ok(Err(_)) | Err(_) => refused += 1,
        }
        drop(c);
        e.wait_settled();
    }
    eprintln!("{trials} trials: {answered} sync+reads answered (all fresh), {refused} refused");
}

#[test]
fn auth_pipelined_behind_the_handshake_works_on_followers() {
    let e = Ensemble::start(3, "");
    let leader = e.wait_settled();
    let f: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let addr = |i: usize| e.members[i].addr.clone();
    common::raw::check_pipelined_auth(&addr(f[0]), &addr(f[1]), "/creator-only");
    common::raw::check_pipelined_auth(&addr(leader), &addr(f[0]), "/creator-only-2");
}

/// The snapshot files in member `i`'s data directory.
fn snapshots(e: &Ensemble, i: usize) -> usize {
    let dir = e.dir.path().join(format!("m{}", i + 1)).join("version-2");
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|f| {
                    let n = f.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("snapshot.") && !n.contains(".tmp")
                })
                .count()
        })
        .unwrap_or(0)
}

/// A learner applies commits before its own slow log sync of them, and snapshots often:
/// killed with -9 right after a snapshot, it must recover and converge with the others
/// (a snapshot holding transactions its log had not synced would not replay cleanly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_killed_after_snapshotting_unsynced_commits_recovers_and_converges() {
    let mut e = Ensemble::start_each(3, |i| {
        if i == 0 {
            "test_log_sync_delay_ms = 100\nsnap_count = 2000".into()
        } else {
            "snap_count = 2000".into()
        }
    });
    let leader = e.wait_settled();
    let load_at = (1..3).find(|i| *i != leader).unwrap_or(leader);
    // A tree large enough that a snapshot's walk spans many passes, so transactions
    // apply while it runs (a fuzzy snapshot).
    let bulk = e.client(load_at).await;
    bulk.create("/bulk", b"", &persistent()).await.unwrap();
    let mut creates = Vec::new();
    for t in 0..16 {
        let c = bulk.clone();
        creates.push(tokio::spawn(async move {
            for n in 0..1250 {
                c.create(&format!("/bulk/{t}-{n}"), b"x", &persistent())
                    .await
                    .unwrap();
            }
        }));
    }
    for c in creates {
        c.await.unwrap();
    }
    let (stop, done, load) = start_load(&e, load_at, "snap-load").await;
    for round in 0..3 {
        let before = snapshots(&e, 0);
        common::wait_until("member 1 writes another snapshot", || {
            snapshots(&e, 0) > before
        });
        e.kill9(0);
        e.restart(0);
        common::wait_until("member 1 serves again", || {
            e.role(0)
                .is_some_and(|(m, _)| m == "follower" || m == "leader")
        });
        eprintln!(
            "round {round}: member 1 killed after its snapshot {}",
            before + 1
        );
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    e.wait_settled();
    let (zxid, digest) = e.converged().expect("members converge");
    let m = e.four(0, "mntr");
    assert!(m.contains("zk_digest_mismatches_count\t0"), "{m}");
    eprintln!(
        "converged at 0x{zxid:x} (digest {digest}) after {} writes",
        done.load(Ordering::Relaxed)
    );
}
