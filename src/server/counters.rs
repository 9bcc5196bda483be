//! Process-wide counters kept by the I/O side (connections, the log and snapshot writers,
//! startup), read by the four-letter words, the AdminServer and the Prometheus endpoint.
//!
//! Owns: atomics and two small summaries behind a mutex that is held only to add a sample
//! or copy the figures (never across `.await`). One process is one server, as in
//! ZooKeeper, whose `ServerMetrics` is a singleton too.

use crate::admin::summary::Summary;
use crate::admin::IoFigures;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct Counters {
    bytes_received: AtomicU64,
    connection_rejected: AtomicU64,
    sessionless_expired: AtomicU64,
    unsuccessful_handshake: AtomicU64,
    fsync_threshold_exceeded: AtomicU64,
    looking: AtomicU64,
    election: Mutex<Summary>,
    unavailable: Mutex<(Summary, Summary)>,
    fsync: Mutex<Summary>,
    snapshot: Mutex<Summary>,
    startup: Mutex<(i64, u64, i64, i64)>,
    last_snapshot: Mutex<(i64, i64)>,
}

pub static COUNTERS: Counters = Counters {
    bytes_received: AtomicU64::new(0),
    connection_rejected: AtomicU64::new(0),
    sessionless_expired: AtomicU64::new(0),
    unsuccessful_handshake: AtomicU64::new(0),
    fsync_threshold_exceeded: AtomicU64::new(0),
    looking: AtomicU64::new(0),
    election: Mutex::new(Summary::new_const()),
    unavailable: Mutex::new((Summary::new_const(), Summary::new_const())),
    fsync: Mutex::new(Summary::new_const()),
    snapshot: Mutex::new(Summary::new_const()),
    startup: Mutex::new((0, 0, 0, 0)),
    last_snapshot: Mutex::new((-1, 0)),
};

impl Counters {
    pub fn bytes_received(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn connection_rejected(&self) {
        self.connection_rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sessionless_expired(&self) {
        self.sessionless_expired.fetch_add(1, Ordering::Relaxed);
    }

    /// A TLS handshake failed (`unsuccessful_handshake`).
    pub fn unsuccessful_handshake(&self) {
        self.unsuccessful_handshake.fetch_add(1, Ordering::Relaxed);
    }

    /// A member began looking for a leader (`looking_count`).
    pub fn looking(&self) {
        self.looking.fetch_add(1, Ordering::Relaxed);
    }

    /// A member found a leader (or became one) `ms` after it began looking
    /// (`election_time`).
    pub fn election(&self, ms: i64) {
        lock(&self.election).add(ms);
    }

    /// A member serves again `ms` after it stopped (or started); `leader`: as leader.
    pub fn available(&self, ms: i64, leader: bool) {
        let mut u = lock(&self.unavailable);
        u.0.add(ms);
        if leader {
            u.1.add(ms);
        }
    }

    /// One log sync took `ms`; past `threshold_ms` it counts as slow (ZooKeeper's
    /// `fsync.warningthresholdms`).
    pub fn fsync(&self, ms: i64, threshold_ms: i64) -> bool {
        lock(&self.fsync).add(ms);
        let slow = ms > threshold_ms;
        if slow {
            self.fsync_threshold_exceeded
                .fetch_add(1, Ordering::Relaxed);
        }
        slow
    }

    /// A snapshot serialized in `ms`, named `zxid`, finished at `wall_ms`.
    pub fn snapshot(&self, ms: i64, zxid: i64, wall_ms: i64) {
        lock(&self.snapshot).add(ms);
        *lock(&self.last_snapshot) = (zxid, wall_ms);
    }

    /// Startup recovery: `ms` to load the data directory, `txns` transactions read after
    /// the snapshot, and the snapshot's and the logs' shares of the time.
    pub fn startup(&self, ms: i64, txns: u64, snap_ms: i64, txns_ms: i64) {
        *lock(&self.startup) = (ms, txns, snap_ms, txns_ms);
    }

    /// A copy of every figure. Each lock is taken and let go in a statement of its own:
    /// a guard living to the end of one long expression while the same mutex is taken
    /// again would deadlock the task that asked.
    pub fn figures(&self) -> IoFigures {
        let (dbinit_ms, startup_txns, snap_load_ms, txns_load_ms) = *lock(&self.startup);
        let (unavailable, leader_unavailable) = lock(&self.unavailable).clone();
        let fsync = lock(&self.fsync).clone();
        let snapshot = lock(&self.snapshot).clone();
        let election = lock(&self.election).clone();
        let last_snapshot = *lock(&self.last_snapshot);
        IoFigures {
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            connection_rejected: self.connection_rejected.load(Ordering::Relaxed),
            sessionless_expired: self.sessionless_expired.load(Ordering::Relaxed),
            unsuccessful_handshake: self.unsuccessful_handshake.load(Ordering::Relaxed),
            fsync_threshold_exceeded: self.fsync_threshold_exceeded.load(Ordering::Relaxed),
            looking: self.looking.load(Ordering::Relaxed),
            election,
            unavailable,
            leader_unavailable,
            fsync,
            snapshot,
            dbinit_ms,
            startup_txns,
            snap_load_ms,
            txns_load_ms,
            last_snapshot,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_can_be_read_while_figures_are_kept() {
        COUNTERS.available(5, true);
        COUNTERS.election(3);
        COUNTERS.fsync(2, 1000);
        let f = COUNTERS.figures();
        assert!(f.unavailable.count >= 1 && f.leader_unavailable.count >= 1);
        assert!(f.election.count >= 1 && f.fsync.count >= 1);
        // Again: nothing stayed locked.
        assert!(COUNTERS.figures().election.count >= 1);
    }
}
