//! Apache ZooKeeper's data directory, byte for byte: transaction logs and snapshots under
//! `<dir>/version-2/`. Pure encoders and decoders; reading and writing the files is
//! `crate::server`'s job.
//!
//! Both files start with a 16-byte FileHeader: int magic (`ZKLG` for logs, `ZKSN` for
//! snapshots), int version (2), long dbid (0 for logs, -1 for snapshots). Names carry the
//! zxid in lower-case hex without padding: `log.<first zxid in the file>`,
//! `snapshot.<last zxid applied when the snapshot started>`. Checksums are Adler-32, stored
//! as a jute `long`. The layouts are in [`txnlog`] and [`snapshot`].

pub mod dump;
pub mod snapshot;
pub mod txnlog;

use crate::jute::DecodeError;
use crate::tree::DataTree;
use crate::txn::Txn;
use std::collections::BTreeMap;
use std::path::Path;

/// Replays one logged transaction over `tree` and the session table (id → timeout), as
/// recovery does; false when the entry carries a digest the tree does not reach.
pub fn replay(tree: &mut DataTree, sessions: &mut BTreeMap<i64, i32>, e: &txnlog::Entry) -> bool {
    tree.apply(&e.hdr, &e.txn, &mut Vec::new());
    match &e.txn {
        Txn::CreateSession { timeout } => {
            sessions.insert(e.hdr.client_id, *timeout);
        }
        Txn::CloseSession { .. } => {
            sessions.remove(&e.hdr.client_id);
        }
        _ => {}
    }
    e.digest.is_none_or(|d| d == tree.digest)
}

/// Why a log entry, log file or snapshot cannot be read. Recovery names the file with it and
/// refuses to start; a bad SNAP stream closes that learner connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("{len} bytes is too short for a {what} header")]
    TooShort { len: usize, what: &'static str },
    #[error("bad magic 0x{magic:08x}, not a ZooKeeper {what}")]
    BadMagic { magic: i32, what: &'static str },
    #[error("checksum mismatch at offset {at}")]
    Checksum { at: usize },
    #[error("incomplete snapshot (no end seal)")]
    Unsealed,
    #[error("{0}")]
    Invalid(String),
}

/// "ZKLG"
pub const LOG_MAGIC: i32 = 0x5a4b_4c47;
/// "ZKSN"
pub const SNAP_MAGIC: i32 = 0x5a4b_534e;
pub const VERSION: i32 = 2;
pub const LOG_DBID: i64 = 0;
pub const SNAP_DBID: i64 = -1;
/// The sub-directory ZooKeeper keeps its files in.
pub const VERSION_DIR: &str = "version-2";

pub fn file_header(magic: i32, dbid: i64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&magic.to_be_bytes());
    h[4..8].copy_from_slice(&VERSION.to_be_bytes());
    h[8..].copy_from_slice(&dbid.to_be_bytes());
    h
}

pub fn log_name(zxid: i64) -> String {
    format!("log.{zxid:x}")
}

pub fn snapshot_name(zxid: i64) -> String {
    format!("snapshot.{zxid:x}")
}

/// The zxid in a `prefix.<hex>` file name, or `prefix.<hex>.snappy` / `.gz` (ZooKeeper's
/// compressed snapshots). Any other name has none: a file still being written
/// (`<name>.tmp`, renamed into place once synced) or one set aside (`<name>.truncated`,
/// `<name>.superseded`) is never loaded, listed or purged.
pub fn zxid_from_name(name: &str, prefix: &str) -> Option<i64> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('.')?;
    let rest = [".snappy", ".gz"]
        .iter()
        .find_map(|ext| rest.strip_suffix(ext))
        .unwrap_or(rest);
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(rest, 16).ok().map(|v| v as i64)
}

/// Marks a snapshot file still being written (see `server::disk`).
pub const TMP_SUFFIX: &str = ".tmp";

/// The files of one kind in a directory, by zxid ascending.
pub fn list(dir: &Path, prefix: &str) -> std::io::Result<Vec<(i64, std::path::PathBuf)>> {
    let mut v = Vec::new();
    if !dir.exists() {
        return Ok(v);
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(z) = e
            .file_name()
            .to_str()
            .and_then(|n| zxid_from_name(n, prefix))
        {
            v.push((z, e.path()));
        }
    }
    v.sort();
    Ok(v)
}

pub fn adler32(bytes: &[u8]) -> u32 {
    let mut a = adler2::Adler32::new();
    a.write_slice(bytes);
    a.checksum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers() {
        assert_eq!(log_name(0x1_0000_0001), "log.100000001");
        assert_eq!(zxid_from_name("snapshot.1a", "snapshot"), Some(0x1a));
        assert_eq!(zxid_from_name("snapshot.1a.snappy", "snapshot"), Some(0x1a));
        assert_eq!(zxid_from_name("log.zz", "log"), None);
        assert_eq!(zxid_from_name("snapshot.1a.tmp", "snapshot"), None);
        assert_eq!(zxid_from_name("snapshot.1a.truncated", "snapshot"), None);
        assert_eq!(zxid_from_name("snapshot.0.superseded", "snapshot"), None);
        assert_eq!(&file_header(LOG_MAGIC, 0)[..4], b"ZKLG");
        assert_eq!(&file_header(SNAP_MAGIC, -1)[..4], b"ZKSN");
        // java.util.zip.Adler32 of "abc"
        assert_eq!(adler32(b"abc"), 0x024d0127);
    }
}
