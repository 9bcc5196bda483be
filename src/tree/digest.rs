//! The tree digest of ZooKeeper 3.6+ (DigestCalculator, version 2).
//!
//! Owns: one node's digest. A node's digest is the CRC32 of, in order: its path bytes (the
//! root as the empty string), its data bytes, and 60 bytes of stat — czxid, mzxid, pzxid,
//! ctime, mtime (8 bytes each), version, cversion, aversion (4 each), ephemeralOwner (8),
//! big-endian. The tree digest is the wrapping sum of every node's digest; nodes under
//! `/zookeeper/` count as 0 (quota bookkeeping is local to each server). Pure.

use crate::jute::records::StatPersisted;

pub const DIGEST_VERSION: i32 = 2;

pub fn node_digest(path: &str, data: Option<&[u8]>, stat: &StatPersisted) -> u64 {
    if path.starts_with("/zookeeper/") {
        return 0;
    }
    let path = if path == "/" { "" } else { path };
    let mut b = [0u8; 60];
    let longs = [stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.mtime];
    for (i, v) in longs.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
    }
    b[40..44].copy_from_slice(&stat.version.to_be_bytes());
    b[44..48].copy_from_slice(&stat.cversion.to_be_bytes());
    b[48..52].copy_from_slice(&stat.aversion.to_be_bytes());
    b[52..60].copy_from_slice(&stat.ephemeral_owner.to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(path.as_bytes());
    if let Some(d) = data {
        h.update(d);
    }
    h.update(&b);
    h.finalize() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_subtree_is_excluded_and_root_is_empty_path() {
        let s = StatPersisted::default();
        assert_eq!(node_digest("/zookeeper/quota", None, &s), 0);
        assert_ne!(node_digest("/zookeeper", None, &s), 0);
        let mut h = crc32fast::Hasher::new();
        h.update(&[0u8; 60]);
        assert_eq!(node_digest("/", Some(b""), &s), h.finalize() as u64);
    }
}
