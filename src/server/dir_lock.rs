//! The lock that keeps a second process off a data directory (and off a separate log
//! directory): two servers writing one transaction log would corrupt it.
//!
//! Owns: the lock files and their open handles, held for the life of the process. Must not
//! be taken by tools that may run beside a server (`zabd purge`, as ZooKeeper's
//! PurgeTxnLog).
//!
//! Layout: `<dir>/zabd.lock`, an exclusive advisory lock (`flock`) on the open file, which
//! holds the holder's pid in decimal and a newline. The kernel drops the lock when the
//! process ends, however it ends, so a stale file never blocks a start.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

pub const LOCK_FILE: &str = "zabd.lock";

/// A held lock; released when dropped (or when the process ends).
pub struct DirLock {
    _file: File,
}

/// Locks `dir`, or says which process holds it.
pub fn lock(dir: &Path) -> std::io::Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(named)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(held_by(&mut file, &path, dir)),
        Err(TryLockError::Error(e)) => return Err(named(e)),
    }
    file.set_len(0).map_err(named)?;
    file.rewind().map_err(named)?;
    writeln!(file, "{}", std::process::id()).map_err(named)?;
    file.sync_all().map_err(named)?;
    Ok(DirLock { _file: file })
}

fn held_by(file: &mut File, path: &Path, dir: &Path) -> std::io::Error {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let holder = match text.trim() {
        "" => "another process".to_string(),
        pid => format!("the process with pid {pid}"),
    };
    std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!(
            "{} is in use by {holder} (lock file {}); one server per data directory",
            dir.display(),
            path.display()
        ),
    )
}

/// Locks the data directory and, when it is elsewhere, the log directory.
pub fn lock_dirs(data_dir: &Path, log_dir: &Path) -> std::io::Result<Vec<DirLock>> {
    let mut held = vec![lock(data_dir)?];
    if log_dir != data_dir {
        std::fs::create_dir_all(log_dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", log_dir.display())))?;
        held.push(lock(log_dir)?);
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        let e = lock(dir.path()).err().expect("the directory is held");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(LOCK_FILE), "{msg}");
        drop(held);
        lock(dir.path()).expect("free again once dropped");
    }
}
