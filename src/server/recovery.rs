//! Startup recovery: the newest valid snapshot, then every logged transaction after it.
//!
//! - Snapshots are tried newest first; one that fails its checksum or does not parse is
//!   skipped with a warning (the logs still hold what it held, if they are kept).
//! - Logs are read from the newest one starting at or before the snapshot's zxid. Zxids must
//!   follow each other (+1, or the start of a new epoch); a gap is a missing segment.
//! - A torn tail on the last log (a crash in the middle of a write) is cut off with a
//!   warning; any other bad entry stops startup with an error naming the file and offset.
//! - A fresh directory gets `snapshot.0` of the empty tree, as ZooKeeper writes, so that
//!   Apache ZooKeeper can start on it too.

use crate::persist::{self, snapshot, txnlog};
use crate::tree::DataTree;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{file}: {msg}")]
    Corrupt { file: String, msg: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct Recovered {
    pub tree: DataTree,
    /// Live sessions: id → timeout.
    pub sessions: BTreeMap<i64, i32>,
    pub snapshot_zxid: i64,
    pub replayed: usize,
    pub digest_mismatches: usize,
    /// [`recover_unapplied`]: the entries logged after the snapshot, not applied to `tree`.
    pub entries: Vec<txnlog::Entry>,
    /// Milliseconds to load the snapshot, and to read (and replay) the logs after it
    /// (ZooKeeper's `startup_snap_load_time`, `startup_txns_load_time`).
    pub snap_load_ms: i64,
    pub txns_load_ms: i64,
}

fn corrupt(file: &Path, msg: impl ToString) -> RecoveryError {
    RecoveryError::Corrupt {
        file: file.display().to_string(),
        msg: msg.to_string(),
    }
}

/// Loads the newest snapshot that reads back whole.
fn load_snapshot(
    snap_dir: &Path,
    extended: bool,
) -> Result<Option<(i64, snapshot::Loaded)>, RecoveryError> {
    let snaps = persist::list(snap_dir, "snapshot")?;
    for (zxid, path) in snaps.iter().rev() {
        let bytes = bytes::Bytes::from(std::fs::read(path)?);
        // The checksum of everything before the first seal is summed on another thread
        // while this one decodes the nodes.
        let decoded = std::thread::scope(|scope| {
            let prefix = scope.spawn(|| {
                snapshot::Checksum::of_prefix(&bytes, snapshot::first_seal_offset(bytes.len()))
            });
            snapshot::decode_with(bytes.clone(), extended, || {
                prefix.join().expect("summing a snapshot")
            })
        });
        match decoded {
            Ok(l) => return Ok(Some((*zxid, l))),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping an invalid snapshot")
            }
        }
    }
    if !snaps.is_empty() {
        tracing::warn!("no valid snapshot; replaying the logs from the beginning");
    }
    Ok(None)
}

/// Deletes snapshot files a stopped process was still writing (`snapshot.<zxid>.tmp`): they
/// are never read, and a streamed one can be as large as the tree.
fn remove_unfinished_snapshots(snap_dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(snap_dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot.") && name.ends_with(persist::TMP_SUFFIX) {
            tracing::info!(file = %e.path().display(), "removing an unfinished snapshot");
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Is `next` the zxid that may follow `prev`?
fn follows(prev: i64, next: i64) -> bool {
    next == prev + 1
        || (crate::txn::epoch_of(next) > crate::txn::epoch_of(prev) && next & 0xffff_ffff <= 1)
}

pub fn recover(
    snap_dir: &Path,
    log_dir: &Path,
    extended: bool,
) -> Result<Recovered, RecoveryError> {
    recover_with(snap_dir, log_dir, extended, false)
}

/// An ensemble member's recovery: the newest snapshot's state, and every entry logged after
/// it in `entries`, checked but not applied. Their fate is ZAB's to decide (the next leader
/// may commit them or cut them off), so the member applies them only once committed.
pub fn recover_unapplied(
    snap_dir: &Path,
    log_dir: &Path,
    extended: bool,
) -> Result<Recovered, RecoveryError> {
    recover_with(snap_dir, log_dir, extended, true)
}

fn recover_with(
    snap_dir: &Path,
    log_dir: &Path,
    extended: bool,
    unapplied: bool,
) -> Result<Recovered, RecoveryError> {
    std::fs::create_dir_all(snap_dir)?;
    std::fs::create_dir_all(log_dir)?;
    remove_unfinished_snapshots(snap_dir)?;
    let logs = persist::list(log_dir, "log")?;
    let snap_started = std::time::Instant::now();
    let (snap_zxid, mut tree, sessions, mut expect) = match load_snapshot(snap_dir, extended)? {
        Some((z, l)) => {
            let mut t = l.tree;
            t.last_zxid = z;
            let sessions = l.sessions.into_iter().collect::<BTreeMap<_, _>>();
            (z, t, sessions, l.digest)
        }
        None => (0, DataTree::new(extended), BTreeMap::new(), None),
    };
    let mut r = Recovered {
        tree: DataTree::empty(extended),
        sessions,
        snapshot_zxid: snap_zxid,
        replayed: 0,
        digest_mismatches: 0,
        entries: Vec::new(),
        snap_load_ms: snap_started.elapsed().as_millis() as i64,
        txns_load_ms: 0,
    };
    let txns_started = std::time::Instant::now();
    let start = logs
        .iter()
        .rposition(|(z, _)| *z <= snap_zxid.max(1))
        .unwrap_or(0);
    let wanted: Vec<&(i64, PathBuf)> = logs.iter().skip(start).collect();
    if let Some((first, path)) = wanted.first() {
        if *first > snap_zxid + 1 && !follows(snap_zxid, *first) {
            return Err(corrupt(
                path,
                format!("missing log segment: the logs start at 0x{first:x}, the snapshot ends at 0x{snap_zxid:x}"),
            ));
        }
    }
    let mut prev = snap_zxid;
    check_snapshot_digest(&tree, &mut expect, &mut r);
    for (i, (_, path)) in wanted.iter().enumerate() {
        let last_file = i + 1 == wanted.len();
        let bytes = std::fs::read(path)?;
        let parsed = txnlog::parse(&bytes).map_err(|m| corrupt(path, m))?;
        for (off, e) in parsed.entries {
            if e.hdr.zxid <= prev {
                continue;
            }
            if !follows(prev, e.hdr.zxid) {
                return Err(corrupt(
                    path,
                    format!(
                        "missing log segment: 0x{:x} follows 0x{prev:x} at offset {off}",
                        e.hdr.zxid
                    ),
                ));
            }
            prev = e.hdr.zxid;
            if unapplied {
                r.entries.push(e);
                continue;
            }
            replay(&mut tree, &mut r, &e);
            check_snapshot_digest(&tree, &mut expect, &mut r);
        }
        match parsed.tail {
            txnlog::Tail::Clean(_) => {}
            txnlog::Tail::Torn { offset, why } if last_file => {
                tracing::warn!(file = %path.display(), offset, why, "cutting off a torn tail (a crash during a write)");
                let f = std::fs::OpenOptions::new().write(true).open(path)?;
                f.set_len(offset)?;
                f.sync_all()?;
            }
            txnlog::Tail::Torn { offset, why } | txnlog::Tail::Corrupt { offset, why } => {
                return Err(corrupt(
                    path,
                    format!("bad entry at offset {offset}: {why}"),
                ));
            }
        }
    }
    r.txns_load_ms = txns_started.elapsed().as_millis() as i64;
    if unapplied {
        // The entries after a fuzzy snapshot are applied later, by the engine, once ZAB
        // commits them: it must know where the snapshot's window ends.
        tree.fuzzy_until = expect;
    }
    if persist::list(snap_dir, "snapshot")?.is_empty() && logs.is_empty() {
        let mut b = snapshot::Builder::new(&Vec::new(), 0);
        b.step(&tree, usize::MAX);
        super::disk::write_snapshot(snap_dir, &b.finish(&tree))?;
    }
    r.tree = tree;
    Ok(r)
}

/// The digest a (fuzzy) snapshot recorded at its end holds once replay reaches that zxid.
fn check_snapshot_digest(tree: &DataTree, expect: &mut Option<(i64, u64)>, r: &mut Recovered) {
    if let Some((zxid, digest)) = *expect {
        if tree.last_zxid >= zxid {
            if tree.last_zxid == zxid && tree.digest != digest {
                r.digest_mismatches += 1;
                tracing::warn!(
                    zxid = format_args!("0x{zxid:x}"),
                    "tree digest differs from the snapshot's"
                );
            }
            *expect = None;
        }
    }
}

fn replay(tree: &mut DataTree, r: &mut Recovered, e: &txnlog::Entry) {
    r.replayed += 1;
    if !persist::replay(tree, &mut r.sessions, e) {
        r.digest_mismatches += 1;
        tracing::warn!(
            zxid = format_args!("0x{:x}", e.hdr.zxid),
            "tree digest differs from the logged one"
        );
    }
}
