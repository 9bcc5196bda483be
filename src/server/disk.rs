//! The disk threads: the transaction-log writer and the snapshot writer.
//!
//! The log writer is one OS thread that owns the current log file. It takes every append
//! waiting in its channel, writes them in one go, fdatasyncs once (group commit: one sync
//! covers everything that arrived while the previous one ran), then reports the last zxid
//! committed to the core task. Files grow in preallocated, zero-filled steps. A `Roll` makes
//! the next append start a new `log.<zxid>` file. Reads never wait for it: the core task
//! only sends it messages.
//!
//! A failed write or sync stops the process (exit code 3) after logging why: continuing could
//! acknowledge a write that is not on disk. Clients see their connection drop and reconnect
//! elsewhere; on restart, recovery keeps exactly what was synced.

use super::core_task::CoreMsg;
use crate::persist::{self, txnlog};
use crate::txn::{Txn, TxnHeader};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::mpsc::UnboundedSender;

pub enum LogCmd {
    Append {
        hdr: TxnHeader,
        txn: Txn,
        digest: Option<u64>,
    },
    /// Append an entry whose body is already encoded (an ensemble member's: the
    /// PROPOSAL's data, `txnlog::encode_body`'s layout), as it is.
    AppendBody { zxid: i64, body: bytes::Bytes },
    /// Start a new log file with the next append.
    Roll,
    /// Ensemble learner (TRUNC, SNAP): remove every logged entry after `after`, then
    /// answer on `done`. The next append starts a new file.
    Truncate { after: i64, done: mpsc::Sender<()> },
    /// Answer on `done` once everything appended before is written and synced (a graceful
    /// stop).
    Flush { done: mpsc::Sender<()> },
}

pub struct LogConfig {
    pub dir: PathBuf,
    pub force_sync: bool,
    pub prealloc: u64,
    /// Testing only: a pause before every sync, to play a slow disk.
    pub sync_delay: std::time::Duration,
    /// A sync slower than this is logged and counted (`fsync.warningthresholdms`).
    pub fsync_warning_ms: i64,
}

impl LogConfig {
    pub fn from_settings(dir: PathBuf, s: &crate::config::Settings) -> LogConfig {
        LogConfig {
            dir,
            force_sync: s.force_sync,
            prealloc: s.pre_alloc_size_kb * 1024,
            sync_delay: std::time::Duration::from_millis(s.test_log_sync_delay_ms),
            fsync_warning_ms: s.fsync_warning_threshold_ms as i64,
        }
    }
}

/// Exits the process after a failed disk operation (see the module doc).
fn fatal(what: &str, path: &Path, e: std::io::Error) -> ! {
    tracing::error!(file = %path.display(), error = %e, "{what} failed; stopping so that nothing unsynced is acknowledged");
    eprintln!("zabd: {what} failed on {}: {e}", path.display());
    std::process::exit(3);
}

struct CurrentLog {
    file: File,
    path: PathBuf,
    pos: u64,
    size: u64,
}

/// Starts the log writer thread; returns its command channel.
pub fn start_log_writer(cfg: LogConfig, core: UnboundedSender<CoreMsg>) -> mpsc::Sender<LogCmd> {
    let (tx, rx) = mpsc::channel::<LogCmd>();
    std::thread::Builder::new()
        .name("zabd-log".into())
        .spawn(move || log_loop(cfg, rx, core))
        .expect("spawn log writer");
    tx
}

fn log_loop(cfg: LogConfig, rx: mpsc::Receiver<LogCmd>, core: UnboundedSender<CoreMsg>) {
    let mut current: Option<CurrentLog> = None;
    let mut buf = Vec::with_capacity(1 << 20);
    // Truncations done so far: each durability report carries it, so that a report sent
    // before a cut is never taken for the entries logged after it.
    let mut truncations = 0u64;
    while let Ok(first) = rx.recv() {
        let mut last_zxid = None;
        let mut flushed = Vec::new();
        let mut cmd = Some(first);
        while let Some(c) = cmd {
            match c {
                LogCmd::Append { hdr, txn, digest } => {
                    if current.is_none() {
                        current = Some(open_log(&cfg, hdr.zxid));
                    }
                    txnlog::encode_entry(&hdr, &txn, digest, &mut buf);
                    last_zxid = Some(hdr.zxid);
                }
                LogCmd::AppendBody { zxid, body } => {
                    if current.is_none() {
                        current = Some(open_log(&cfg, zxid));
                    }
                    txnlog::encode_entry_of_body(&body, &mut buf);
                    last_zxid = Some(zxid);
                }
                LogCmd::Roll => {
                    if let Some(cur) = current.as_mut() {
                        flush(&cfg, cur, &mut buf);
                    }
                    current = None;
                }
                LogCmd::Truncate { after, done } => {
                    if let Some(cur) = current.as_mut() {
                        flush(&cfg, cur, &mut buf);
                    }
                    current = None;
                    truncate_logs(&cfg.dir, after);
                    truncations += 1;
                    // What this batch appended past `after` is gone, and everything up to
                    // `after` is on disk: say so under the new count, even when this batch
                    // appended nothing (the reports from before the cut are ignored, and a
                    // learner waits for this one to acknowledge NEWLEADER).
                    last_zxid = Some(after);
                    let _ = done.send(());
                }
                LogCmd::Flush { done } => flushed.push(done),
            }
            // Group commit: take whatever else is already waiting, up to a bound.
            cmd = if buf.len() < (8 << 20) {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if let Some(cur) = current.as_mut() {
            flush(&cfg, cur, &mut buf);
        }
        if !flushed.is_empty() && !cfg.force_sync {
            // A graceful stop syncs even when every write did not.
            if let Some(cur) = current.as_mut() {
                let _ = cur.file.sync_data();
            }
        }
        for done in flushed {
            let _ = done.send(());
        }
        if let Some(zxid) = last_zxid {
            if core.send(CoreMsg::Durable { zxid, truncations }).is_err() {
                return;
            }
        }
    }
}

fn open_log(cfg: &LogConfig, zxid: i64) -> CurrentLog {
    let path = cfg.dir.join(persist::log_name(zxid));
    tracing::info!(file = %path.display(), "creating new log file");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap_or_else(|e| fatal("creating the log file", &path, e));
    let header = persist::file_header(persist::LOG_MAGIC, persist::LOG_DBID);
    file.write_all(&header)
        .unwrap_or_else(|e| fatal("writing the log header", &path, e));
    sync_dir(&cfg.dir);
    CurrentLog {
        file,
        path,
        pos: header.len() as u64,
        size: header.len() as u64,
    }
}

/// Writes the buffered entries, growing the file first if needed, then syncs.
fn flush(cfg: &LogConfig, cur: &mut CurrentLog, buf: &mut Vec<u8>) {
    if buf.is_empty() {
        return;
    }
    let end = cur.pos + buf.len() as u64;
    if cfg.prealloc > 0 && end + 4096 >= cur.size {
        let new_size = (end / cfg.prealloc + 1) * cfg.prealloc;
        cur.file
            .set_len(new_size)
            .unwrap_or_else(|e| fatal("preallocating the log", &cur.path, e));
        cur.size = new_size;
    }
    cur.file
        .write_all(buf)
        .unwrap_or_else(|e| fatal("writing the log", &cur.path, e));
    cur.pos = end;
    buf.clear();
    if cfg.force_sync {
        let started = std::time::Instant::now();
        if !cfg.sync_delay.is_zero() {
            std::thread::sleep(cfg.sync_delay);
        }
        cur.file
            .sync_data()
            .unwrap_or_else(|e| fatal("syncing the log", &cur.path, e));
        let ms = started.elapsed().as_millis() as i64;
        if super::counters::COUNTERS.fsync(ms, cfg.fsync_warning_ms) {
            tracing::warn!(
                ms,
                threshold_ms = cfg.fsync_warning_ms,
                "syncing the transaction log took {ms} ms, which adversely affects latency"
            );
        }
    }
}

/// Renames every snapshot newer than `zxid` to `snapshot.<zxid>.<why>`, which recovery
/// and ZooKeeper ignore (kept for the operator, not used): they hold transactions this
/// member's history no longer has. Failing here would leave them in use: fatal.
pub fn set_aside_snapshots(dir: &Path, newer_than: i64, why: &str) {
    let snaps =
        persist::list(dir, "snapshot").unwrap_or_else(|e| fatal("listing the snapshots", dir, e));
    for (zxid, path) in snaps.into_iter().filter(|(z, _)| *z > newer_than) {
        let mut aside = path.clone().into_os_string();
        aside.push(format!(".{why}"));
        std::fs::rename(&path, &aside)
            .unwrap_or_else(|e| fatal("setting a snapshot aside", &path, e));
        tracing::warn!(
            file = %path.display(),
            zxid = format_args!("0x{zxid:x}"),
            "snapshot set aside ({why}): this member's history no longer matches it"
        );
    }
    sync_dir(dir);
}

/// Removes every logged entry after `after`: later files go, the file holding `after` is
/// cut after it. Failing here would leave a divergent history on disk: fatal.
pub fn truncate_logs(dir: &Path, after: i64) {
    let logs = persist::list(dir, "log").unwrap_or_else(|e| fatal("listing the logs", dir, e));
    for (start, path) in logs.iter().rev() {
        if *start > after {
            std::fs::remove_file(path).unwrap_or_else(|e| fatal("removing a log", path, e));
            tracing::info!(file = %path.display(), "removed a log file past the truncation point");
            continue;
        }
        let bytes = std::fs::read(path).unwrap_or_else(|e| fatal("reading a log", path, e));
        let parsed = txnlog::parse(&bytes)
            .unwrap_or_else(|m| fatal("parsing a log", path, std::io::Error::other(m)));
        if let Some((off, e)) = parsed.entries.iter().find(|(_, e)| e.hdr.zxid > after) {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .unwrap_or_else(|e| fatal("opening a log", path, e));
            f.set_len(*off)
                .and_then(|_| f.sync_all())
                .unwrap_or_else(|e| fatal("truncating a log", path, e));
            tracing::info!(file = %path.display(), from = format_args!("0x{:x}", e.hdr.zxid), "truncated the log");
        }
        break;
    }
    sync_dir(dir);
}

/// Makes a directory entry (a new file, a rename) durable. Failing here is a disk failure
/// like any other: the member stops (exit code 3) rather than acknowledge on an entry that
/// may vanish.
pub fn sync_dir(dir: &Path) {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .unwrap_or_else(|e| fatal("syncing the directory", dir, e));
}

/// Writes a snapshot atomically: a temporary file, fsync, rename, directory fsync.
pub fn write_snapshot(
    dir: &Path,
    parts: &crate::persist::snapshot::Parts,
) -> std::io::Result<(PathBuf, u64)> {
    let mut s = Streaming::begin(dir, parts.zxid, parts.head())?;
    s.nodes(parts.nodes())?;
    s.end(dir, &parts.tail())
}

/// What the snapshot writer thread is sent.
pub enum SnapMsg {
    /// The engine's state, frozen (`persist::snapshot::View`): serialize it here, off the
    /// task that owns the engine, then write, sync and rename it as `snapshot.<zxid>`.
    /// `Busy` clears when this message is done with, written or dropped unwritten.
    Frozen(Box<crate::persist::snapshot::View>, Busy),
    /// Answered once everything sent before it is done (nothing is being written then).
    Barrier(mpsc::Sender<()>),
    /// Rename the snapshots past `newer_than` out of the way ([`set_aside_snapshots`]),
    /// after whatever was being written before.
    SetAside { newer_than: i64, why: &'static str },
    /// A SNAP's state from the leader, written as the snapshot `snapshot.<zxid>`: `body` is
    /// the file's body as it came (`snapshot::stream_body`), `digest` the tree digest for
    /// its tail. `done` hears the outcome.
    Received {
        zxid: i64,
        body: bytes::Bytes,
        digest: u64,
        done: Box<dyn FnOnce(std::io::Result<()>) + Send>,
    },
}

/// When the next snapshot may start, shared by the engine's owner and the snapshot thread.
///
/// - `writing`: a frozen snapshot is on its way to disk (held for the log, queued or being
///   written), so no other is frozen meanwhile (see [`Busy`]).
/// - `rest_until`: after writing one that took D (at least `SNAPSHOT_REST_FROM`), the thread rests for
///   `SNAPSHOT_REST_FACTOR` × D: snapshots then use at most a quarter of a core however
///   large the tree grows. snapCount stays the least number of transactions between two
///   snapshots (ZooKeeper's wording: a snapshot *can* be taken then); on a large tree under
///   heavy writes they come further apart, and a restart replays a longer log.
#[derive(Default)]
pub struct SnapGate {
    writing: std::sync::atomic::AtomicBool,
    rest_until: std::sync::Mutex<Option<std::time::Instant>>,
}

/// See [`SnapGate`]: 3 gives the snapshot thread at most a quarter of the time.
pub const SNAPSHOT_REST_FACTOR: u32 = 3;

/// A snapshot quicker than this leaves no rest: its cost is negligible, and snapCount
/// alone spaces small trees' snapshots, as in ZooKeeper.
pub const SNAPSHOT_REST_FROM: std::time::Duration = std::time::Duration::from_millis(100);

impl SnapGate {
    /// Whether a snapshot may be frozen now.
    pub fn open(&self) -> bool {
        if self.writing.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let rest = *self.rest_until.lock().unwrap_or_else(|e| e.into_inner());
        rest.is_none_or(|t| std::time::Instant::now() >= t)
    }

    fn rest(&self, took: std::time::Duration) {
        if took < SNAPSHOT_REST_FROM {
            return;
        }
        let until = std::time::Instant::now() + took * SNAPSHOT_REST_FACTOR;
        *self.rest_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    #[cfg(test)]
    pub fn writing(&self) -> bool {
        self.writing.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Holds a [`SnapGate`] shut while a frozen snapshot is on its way to disk; opens it
/// (writing-wise) on drop.
pub struct Busy(std::sync::Arc<SnapGate>);

impl Busy {
    /// Marks `gate` writing until the returned guard is dropped.
    pub fn take(gate: &std::sync::Arc<SnapGate>) -> Busy {
        gate.writing
            .store(true, std::sync::atomic::Ordering::Release);
        Busy(gate.clone())
    }

    /// The snapshot took `took` to write: the next waits in proportion.
    fn rest(&self, took: std::time::Duration) {
        self.0.rest(took);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .writing
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Writes a frozen state as the snapshot `snapshot.<zxid>`, 1 MiB at a time.
fn write_view(
    dir: &Path,
    view: &crate::persist::snapshot::View,
) -> std::io::Result<(PathBuf, u64)> {
    let head = persist::file_header(persist::SNAP_MAGIC, persist::SNAP_DBID);
    let mut s = Streaming::begin(dir, view.zxid, &head)?;
    let mut failed = None;
    view.write_body(1 << 20, &mut |chunk| match s.nodes(&[chunk]) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    });
    if let Some(e) = failed {
        let _ = std::fs::remove_file(&s.tmp);
        return Err(e);
    }
    s.end(dir, &view.tail())
}

/// A snapshot being written: its temporary file and running checksum.
struct Streaming {
    zxid: i64,
    tmp: PathBuf,
    out: std::io::BufWriter<File>,
    sealer: crate::persist::snapshot::Sealer,
}

impl Streaming {
    fn begin(dir: &Path, zxid: i64, head: &[u8]) -> std::io::Result<Streaming> {
        let tmp = dir.join(persist::snapshot_name(zxid) + persist::TMP_SUFFIX);
        let mut s = Streaming {
            zxid,
            out: std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?),
            tmp,
            sealer: Default::default(),
        };
        s.sealer.put(&mut s.out, head)?;
        Ok(s)
    }

    fn nodes(&mut self, chunks: &[bytes::Bytes]) -> std::io::Result<()> {
        for c in chunks {
            self.sealer.put(&mut self.out, c)?;
        }
        Ok(())
    }

    /// Seals, syncs and renames the file into place; returns its path and length. On an
    /// error the temporary file is removed.
    fn end(
        mut self,
        dir: &Path,
        tail: &crate::persist::snapshot::Tail,
    ) -> std::io::Result<(PathBuf, u64)> {
        let path = dir.join(persist::snapshot_name(self.zxid));
        let placed = (|| {
            self.sealer.finish(&mut self.out, tail)?;
            self.out.flush()?;
            self.out.get_ref().sync_all()?;
            std::fs::rename(&self.tmp, &path)
        })();
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(e);
        }
        sync_dir(dir);
        Ok((path, self.sealer.written))
    }
}

/// Starts the snapshot writer thread: it writes each snapshot it is sent, whole or as a
/// stream of pieces, through a temporary file, fsync and rename. Old files are left alone;
/// autopurge or `zabd purge` removes them, as in ZooKeeper.
pub fn start_snapshot_writer(snap_dir: PathBuf) -> mpsc::Sender<SnapMsg> {
    let (tx, rx) = mpsc::channel::<SnapMsg>();
    std::thread::Builder::new()
        .name("zabd-snapshot".into())
        .spawn(move || snapshot_writer(&snap_dir, rx))
        .expect("spawn snapshot writer");
    tx
}

/// The snapshot thread's nice value: writing a snapshot is background work, and on a
/// loaded machine it takes only what the request path (connections, the engine's owner,
/// the log writer) leaves. A snapshot of a tree of millions of nodes is seconds of CPU.
const SNAPSHOT_NICE: i32 = 10;

/// Lowers this thread's CPU priority to [`SNAPSHOT_NICE`] (Linux: nice is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on this thread's own id; no memory is passed.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, SNAPSHOT_NICE) } != 0 {
            let e = std::io::Error::last_os_error();
            tracing::debug!(error = %e, "could not lower the snapshot thread's priority");
        }
    }
}

fn snapshot_writer(dir: &Path, rx: mpsc::Receiver<SnapMsg>) {
    lower_priority();
    let done = |r: std::io::Result<(PathBuf, u64)>, started: std::time::Instant| match r {
        Ok((p, bytes)) => tracing::info!(
            file = %p.display(),
            bytes,
            ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        ),
        Err(e) => {
            tracing::error!(error = %e, "writing a snapshot failed; the log still holds everything")
        }
    };
    while let Ok(msg) = rx.recv() {
        match msg {
            SnapMsg::Frozen(view, busy) => {
                let started = std::time::Instant::now();
                let written = write_view(dir, &view);
                if written.is_ok() {
                    let ms = started.elapsed().as_millis() as i64;
                    super::counters::COUNTERS.snapshot(ms, view.zxid, super::wall_ms());
                }
                busy.rest(started.elapsed());
                done(written, started);
                // The view first: while it lives, the next freeze would have to copy every
                // table it shares (see tree::nodes).
                drop(view);
                drop(busy);
            }
            SnapMsg::Barrier(done) => {
                let _ = done.send(());
            }
            SnapMsg::SetAside { newer_than, why } => set_aside_snapshots(dir, newer_than, why),
            SnapMsg::Received {
                zxid,
                body,
                digest,
                done: report,
            } => {
                let started = std::time::Instant::now();
                let head = persist::file_header(persist::SNAP_MAGIC, persist::SNAP_DBID);
                let written = Streaming::begin(dir, zxid, &head).and_then(|mut s| {
                    s.nodes(std::slice::from_ref(&body))?;
                    s.end(dir, &crate::persist::snapshot::Tail::new(zxid, digest))
                });
                let outcome = written
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::new(e.kind(), e.to_string()));
                done(written, started);
                report(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::snapshot::{self, View};
    use crate::proto::op;
    use crate::tree::{acl_cache, DataTree};
    use crate::txn::{CreateKind, Txn, TxnHeader};

    use std::sync::Arc;

    /// Applies a persistent create at `zxid`.
    fn create(
        t: &mut DataTree,
        zxid: i64,
        path: String,
        data: Vec<u8>,
        acl: Vec<crate::jute::records::Acl>,
    ) {
        let hdr = TxnHeader {
            client_id: 5,
            cxid: 0,
            zxid,
            time: 100,
            op: op::CREATE,
        };
        let txn = Txn::Create {
            op: op::CREATE,
            path,
            data: Some(bytes::Bytes::from(data)),
            acl,
            kind: CreateKind::Persistent,
            parent_cversion: -1,
        };
        t.apply(&hdr, &txn, &mut Vec::new());
    }

    fn tree() -> DataTree {
        let mut t = DataTree::new(false);
        for (zxid, p) in [(1, "/a"), (2, "/a/b"), (3, "/c"), (4, "/a/b/d")] {
            create(
                &mut t,
                zxid,
                p.into(),
                p.as_bytes().to_vec(),
                acl_cache::read_acl(),
            );
        }
        t
    }

    #[test]
    fn a_frozen_view_is_written_as_the_snapshot_of_its_zxid_and_clears_busy() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = tree();
        let sessions = vec![(5, 4000)];
        let expected = snapshot::encode(&t, &sessions, 4);
        let busy = Arc::new(SnapGate::default());
        let (tx, rx) = mpsc::channel();
        let last = t.last_zxid;
        let view = View::of(&mut t, sessions.clone(), last);
        tx.send(SnapMsg::Frozen(Box::new(view), Busy::take(&busy)))
            .unwrap();
        assert!(busy.writing() && !busy.open());
        // The tree moves on; the file holds the state at 4.
        let hdr = TxnHeader {
            client_id: 5,
            cxid: 1,
            zxid: 5,
            time: 100,
            op: op::DELETE,
        };
        let delete = Txn::Delete {
            op: op::DELETE,
            path: "/c".into(),
        };
        t.apply(&hdr, &delete, &mut Vec::new());
        assert!(t.get("/c").is_none());
        let unsent = View::of(&mut t, Vec::new(), 9);
        drop(SnapMsg::Frozen(Box::new(unsent), Busy::take(&busy)));
        drop(tx);
        snapshot_writer(dir.path(), rx);
        assert!(!busy.writing());
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![persist::snapshot_name(4)]);
        // The same state as the in-memory walk writes (siblings may come in another order).
        let file = std::fs::read(dir.path().join(persist::snapshot_name(4))).unwrap();
        assert_eq!(file.len(), expected.len());
        let read = |b: Vec<u8>| snapshot::decode(bytes::Bytes::from(b), false).unwrap();
        let (got, want) = (read(file), read(expected));
        assert_eq!(got.digest, want.digest);
        assert_eq!(got.digest, Some((4, got.tree.digest)));
        assert_eq!(got.sessions, want.sessions);
        assert_eq!(got.tree.node_count(), want.tree.node_count());
        assert_eq!(got.tree.children_sorted("/a/b"), ["d"]);
        assert!(got.tree.get("/c").is_some());
    }
    /// By hand, for docs/performance.md: what writing a large snapshot costs the snapshot
    /// thread (`cargo test --release --lib snapshot_write_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn snapshot_write_cost() {
        let mut t = DataTree::new(false);
        let n: i64 = std::env::var("NODES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000_000);
        let value = || vec![b'v'; 100];
        create(
            &mut t,
            1,
            "/zabd-bench".into(),
            value(),
            acl_cache::open_acl(),
        );
        create(
            &mut t,
            2,
            "/zabd-bench/n".into(),
            value(),
            acl_cache::open_acl(),
        );
        for i in 0..n {
            let path = format!("/zabd-bench/n/{:x}-{i:x}", i % 32);
            create(&mut t, 3 + i, path, value(), acl_cache::open_acl());
        }
        let dir = tempfile::tempdir().unwrap();
        let last = t.last_zxid;
        let view = View::of(&mut t, Vec::new(), last);
        let started = std::time::Instant::now();
        let cpu = || {
            let mut u: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
            (
                u.ru_utime.tv_sec as f64 + u.ru_utime.tv_usec as f64 / 1e6,
                u.ru_stime.tv_sec as f64 + u.ru_stime.tv_usec as f64 / 1e6,
            )
        };
        let rounds = 3;
        let before = cpu();
        let mut bytes = 0;
        for _ in 0..rounds {
            bytes = write_view(dir.path(), &view).unwrap().1;
        }
        let after = cpu();
        eprintln!(
            "{n} nodes, {bytes} bytes, per write: {:?} wall, user {:.2} s, system {:.2} s",
            started.elapsed() / rounds,
            (after.0 - before.0) / rounds as f64,
            (after.1 - before.1) / rounds as f64
        );
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;
    use crate::txn::{Txn, TxnHeader};

    fn append(zxid: i64) -> LogCmd {
        LogCmd::Append {
            hdr: TxnHeader {
                client_id: 1,
                cxid: 0,
                zxid,
                time: 0,
                op: crate::proto::op::CREATE_SESSION,
            },
            txn: Txn::CreateSession { timeout: 4000 },
            digest: None,
        }
    }

    /// A log writer in a fresh directory, sent entries 1, 2 and 3; and its reports.
    fn writer_with_three_entries() -> (
        tempfile::TempDir,
        mpsc::Sender<LogCmd>,
        tokio::sync::mpsc::UnboundedReceiver<CoreMsg>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (core, reports) = tokio::sync::mpsc::unbounded_channel();
        let cfg = LogConfig {
            dir: dir.path().to_path_buf(),
            force_sync: true,
            prealloc: 0,
            sync_delay: std::time::Duration::ZERO,
            fsync_warning_ms: 1000,
        };
        let log = start_log_writer(cfg, core);
        for z in 1..=3 {
            log.send(append(z)).unwrap();
        }
        (dir, log, reports)
    }

    /// An entry whose body came encoded (an ensemble member's PROPOSAL) is logged exactly
    /// as one encoded by the writer: the same entries read back.
    #[test]
    fn an_encoded_body_is_logged_as_the_entry_it_encodes() {
        let (dir, log, mut reports) = writer_with_three_entries();
        let LogCmd::Append { hdr, txn, digest } = append(4) else {
            unreachable!()
        };
        let body = txnlog::encode_body(&hdr, &txn, Some(7));
        log.send(LogCmd::AppendBody { zxid: 4, body }).unwrap();
        while !matches!(
            reports.blocking_recv(),
            Some(CoreMsg::Durable { zxid: 4, .. })
        ) {}
        let entries: Vec<txnlog::Entry> = persist::list(dir.path(), "log")
            .unwrap()
            .iter()
            .flat_map(|(_, p)| txnlog::parse(&std::fs::read(p).unwrap()).unwrap().entries)
            .map(|(_, e)| e)
            .collect();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[3].hdr, hdr);
        assert_eq!(entries[3].txn, txn);
        assert_eq!((digest, entries[3].digest), (None, Some(7)));
        assert_eq!(entries[2].hdr.zxid, 3);
    }

    /// A durability report made after a cut never names what the cut removed: reports
    /// carry the truncation count, and those counting the cut name nothing past it.
    #[test]
    fn durability_reports_after_a_truncation_never_name_cut_entries() {
        let (dir, log, mut reports) = writer_with_three_entries();
        let (done, wait) = mpsc::channel();
        log.send(LogCmd::Truncate { after: 1, done }).unwrap();
        wait.recv().unwrap();
        log.send(append(2)).unwrap();
        let mut after_cut = Vec::new();
        while after_cut.last() != Some(&2) {
            match reports.blocking_recv().expect("the log writer reports") {
                CoreMsg::Durable {
                    zxid,
                    truncations: 1,
                } => after_cut.push(zxid),
                CoreMsg::Durable { truncations: 0, .. } => {}
                _ => panic!("unexpected message"),
            }
        }
        assert!(
            after_cut[..after_cut.len() - 1].iter().all(|z| *z <= 1),
            "{after_cut:?}"
        );
        let logs = persist::list(dir.path(), "log").unwrap();
        let zxids: Vec<i64> = logs
            .iter()
            .flat_map(|(_, p)| txnlog::parse(&std::fs::read(p).unwrap()).unwrap().entries)
            .map(|(_, e)| e.hdr.zxid)
            .collect();
        assert_eq!(zxids, vec![1, 2]);
    }

    /// A cut with nothing appended after it is still reported, under the new count: a
    /// learner TRUNCated right before NEWLEADER waits for exactly this to acknowledge it.
    #[test]
    fn a_truncation_alone_reports_what_is_durable_after_it() {
        let (_dir, log, mut reports) = writer_with_three_entries();
        // The appends are synced and reported first, so the cut comes alone.
        while !matches!(
            reports.blocking_recv(),
            Some(CoreMsg::Durable { zxid: 3, .. })
        ) {}
        let (done, wait) = mpsc::channel();
        log.send(LogCmd::Truncate { after: 2, done }).unwrap();
        wait.recv().unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match reports.try_recv() {
                Ok(CoreMsg::Durable {
                    zxid,
                    truncations: 1,
                }) => {
                    assert_eq!(zxid, 2);
                    break;
                }
                Ok(CoreMsg::Durable { truncations: 0, .. }) => {}
                Ok(_) => panic!("unexpected message"),
                Err(_) => {
                    assert!(std::time::Instant::now() < end, "no report after the cut");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
        }
    }
}
