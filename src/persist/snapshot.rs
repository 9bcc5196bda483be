//! The snapshot file (ZooKeeper's FileSnap + SerializeUtils + DataTree.serialize).
//!
//! Layout:
//!
//! ```text
//! FileHeader    int magic "ZKSN", int version 2, long dbid -1                   16 bytes
//! sessions      int count; then per session: long id, int timeout
//! ACL cache     int count; then per entry: long id, vector<ACL>
//! nodes         per node, parents before children (depth-first pre-order, root first):
//!                 ustring path   (the root is "", its children "/a", ...)
//!                 buffer  data
//!                 long    acl    (ACL cache id; -1 is world:anyone with every permission)
//!                 StatPersisted  (60 bytes, see `crate::jute::records`)
//!               then ustring "/" as the end marker
//! seal          long Adler-32 of every byte before it, then ustring "/"
//! zxid digest   long zxid, int digest version 2, long tree digest
//! seal          long Adler-32 of every byte before it, then ustring "/"
//! ```
//!
//! A reader that finds the first seal and nothing after it (ZooKeeper before 3.6) has no
//! digest. A file whose last five bytes are not `00 00 00 01 '/'` is not a complete snapshot.

use super::{adler32, file_header, SNAP_DBID, SNAP_MAGIC};
use crate::jute::records::{read_acls, write_acls, StatPersisted};
use crate::jute::{Reader, Record, Writer};
use crate::tree::DataTree;
use bytes::Bytes;

/// The session table as snapshots hold it: (id, timeout).
pub type SessionList = Vec<(i64, i32)>;

/// Serializes the tree and sessions, as the snapshot named `snapshot.<zxid>`.
pub fn encode(tree: &DataTree, sessions: &SessionList, zxid: i64) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(&file_header(SNAP_MAGIC, SNAP_DBID));
    w.i32(sessions.len() as i32);
    for (id, timeout) in sessions {
        w.i64(*id).i32(*timeout);
    }
    let acls = tree.acls.entries();
    w.i32(acls.len() as i32);
    for (id, list) in &acls {
        w.i64(*id);
        write_acls(&mut w, list);
    }
    tree.walk(|p, n| {
        w.string(if p == "/" { "" } else { p });
        w.buffer(n.data.as_deref()).i64(n.acl);
        n.stat.write(&mut w);
    });
    w.string("/");
    let mut out = w.into_bytes().to_vec();
    seal(&mut out);
    out.extend_from_slice(&zxid.to_be_bytes());
    out.extend_from_slice(&crate::tree::digest::DIGEST_VERSION.to_be_bytes());
    out.extend_from_slice(&(tree.digest as i64).to_be_bytes());
    seal(&mut out);
    out
}

fn seal(out: &mut Vec<u8>) {
    let sum = adler32(out) as i64;
    out.extend_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.push(b'/');
}

/// Does the file end as a complete snapshot does?
pub fn looks_complete(file: &[u8]) -> bool {
    file.len() >= 10 && file[file.len() - 5..] == [0, 0, 0, 1, b'/']
}

pub struct Loaded {
    pub tree: DataTree,
    pub sessions: SessionList,
    /// (zxid, tree digest) recorded at the end of the snapshot, when present.
    pub digest: Option<(i64, u64)>,
}

/// Reads a snapshot file; any inconsistency is an error naming what is wrong.
pub fn decode(file: &[u8], extended_types: bool) -> Result<Loaded, String> {
    if !looks_complete(file) {
        return Err("incomplete snapshot (no end seal)".into());
    }
    let mut r = Reader::new(Bytes::copy_from_slice(file));
    let e = |x: crate::jute::DecodeError| x.to_string();
    let magic = r.i32().map_err(e)?;
    if magic != SNAP_MAGIC {
        return Err(format!("bad magic 0x{magic:08x}, not a ZooKeeper snapshot"));
    }
    r.i32().map_err(e)?;
    r.i64().map_err(e)?;
    let count = r.i32().map_err(e)?;
    if count < 0 {
        return Err(format!("negative session count {count}"));
    }
    let mut sessions = Vec::new();
    for _ in 0..count {
        sessions.push((r.i64().map_err(e)?, r.i32().map_err(e)?));
    }
    let mut tree = DataTree::empty(extended_types);
    let acl_count = r.i32().map_err(e)?;
    for _ in 0..acl_count.max(0) {
        let id = r.i64().map_err(e)?;
        let list = read_acls(&mut r).map_err(e)?;
        tree.acls.load(id, list);
    }
    loop {
        let p = r.string().map_err(e)?;
        if p == "/" {
            break;
        }
        let data = r.buffer().map_err(e)?;
        let acl = r.i64().map_err(e)?;
        let stat = StatPersisted::read(&mut r).map_err(e)?;
        let p = if p.is_empty() { "/".to_string() } else { p };
        tree.load_node(p, data, acl, stat)?;
    }
    check_seal(file, &mut r)?;
    let digest = if r.remaining() > 0 {
        let zxid = r.i64().map_err(e)?;
        r.i32().map_err(e)?;
        let d = r.i64().map_err(e)? as u64;
        check_seal(file, &mut r)?;
        (zxid > 0).then_some((zxid, d))
    } else {
        None
    };
    tree.finish_load();
    Ok(Loaded {
        tree,
        sessions,
        digest,
    })
}

fn check_seal(file: &[u8], r: &mut Reader) -> Result<(), String> {
    let at = r.position();
    let stored = r.i64().map_err(|x| x.to_string())?;
    let slash = r.string().map_err(|x| x.to_string())?;
    if stored != adler32(&file[..at]) as i64 || slash != "/" {
        return Err(format!("checksum mismatch at offset {at}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::op;
    use crate::tree::acl_cache;
    use crate::txn::{CreateKind, Txn, TxnHeader};

    #[test]
    fn round_trip_keeps_every_node_stat_acl_and_digest() {
        let mut t = DataTree::new(false);
        let mut ev = Vec::new();
        let hdr = |z| TxnHeader {
            client_id: 9,
            cxid: 0,
            zxid: z,
            time: z * 100,
            op: 1,
        };
        for (z, p, kind) in [
            (1, "/a", CreateKind::Persistent),
            (2, "/a/b", CreateKind::Ephemeral),
            (3, "/c", CreateKind::Container),
        ] {
            let txn = Txn::Create {
                op: op::CREATE,
                path: p.into(),
                data: Some(Bytes::from(p.to_string())),
                acl: if z == 1 {
                    acl_cache::read_acl()
                } else {
                    acl_cache::open_acl()
                },
                kind,
                parent_cversion: -1,
            };
            t.apply(&hdr(z), &txn, &mut ev);
        }
        let bytes = encode(&t, &vec![(9, 30000)], 3);
        let l = decode(&bytes, false).unwrap();
        assert_eq!(l.sessions, vec![(9, 30000)]);
        assert_eq!(l.digest, Some((3, t.digest)));
        assert_eq!(l.tree.digest, t.digest);
        assert_eq!(l.tree.node_count(), t.node_count());
        for p in ["/", "/a", "/a/b", "/c", "/zookeeper/config"] {
            let (x, y) = (t.get(p).unwrap(), l.tree.get(p).unwrap());
            assert_eq!(
                (x.stat, &x.data, &x.children),
                (y.stat, &y.data, &y.children),
                "{p}"
            );
            assert_eq!(t.acl_of(x), l.tree.acl_of(y), "{p}");
        }
        assert_eq!(l.tree.ephemerals_of(9), vec!["/a/b".to_string()]);
        let mut broken = bytes.clone();
        broken[40] ^= 1;
        assert!(decode(&broken, false).is_err());
        assert!(decode(&bytes[..bytes.len() - 3], false).is_err());
    }
}
