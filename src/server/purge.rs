//! Purging old snapshots and the logs only they need (ZooKeeper's PurgeTxnLog).
//!
//! Keeps the newest `retain` snapshots, and every log that holds transactions after the
//! oldest kept snapshot: the newest log starting at or before it, and all later ones.

use crate::persist;
use std::path::Path;

/// Returns the number of files removed.
pub fn purge(snap_dir: &Path, log_dir: &Path, retain: u32) -> std::io::Result<usize> {
    let snaps = persist::list(snap_dir, "snapshot")?;
    if snaps.len() <= retain as usize {
        return Ok(0);
    }
    let keep_from = snaps[snaps.len() - retain as usize].0;
    let logs = persist::list(log_dir, "log")?;
    // The newest log that starts at or before the oldest kept snapshot is still needed.
    let needed_log = logs
        .iter()
        .rev()
        .find(|(z, _)| *z <= keep_from)
        .map(|(z, _)| *z);
    let mut removed = 0;
    for (z, p) in &snaps {
        if *z < keep_from {
            std::fs::remove_file(p)?;
            removed += 1;
        }
    }
    for (z, p) in &logs {
        if needed_log.is_some_and(|n| *z < n) {
            std::fs::remove_file(p)?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "purged old snapshots and logs");
    }
    Ok(removed)
}
