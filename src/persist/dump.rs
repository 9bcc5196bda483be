//! `zabd txnlog dump` and `zabd snapshot dump`: a transaction log or a snapshot, zabd's or
//! Apache ZooKeeper's (the same format), as text, after ZooKeeper's TxnLogToolkit and
//! SnapshotFormatter: a header line, one line per transaction (time, session, cxid, zxid,
//! operation, the record), and for snapshots every node's Stat, the sessions and the digest.
//! Pure: takes the file's bytes.

use super::{snapshot, txnlog, Error};
use crate::admin::words::java_date;
use bytes::Bytes;
use std::fmt::Write;

/// ZooKeeper's name of a transaction type (`Request.op2String`).
pub fn op_name(op: i32) -> &'static str {
    use crate::proto::op;
    match op {
        op::CREATE => "create",
        op::CREATE2 => "create2",
        op::CREATE_TTL => "createTtl",
        op::CREATE_CONTAINER => "createContainer",
        op::DELETE => "delete",
        op::DELETE_CONTAINER => "deleteContainer",
        op::SET_DATA => "setData",
        op::SET_ACL => "setACL",
        op::CHECK => "check",
        op::MULTI => "multi",
        op::RECONFIG => "reconfig",
        op::CREATE_SESSION => "createSession",
        op::CLOSE_SESSION => "closeSession",
        op::ERROR => "error",
        _ => "unknown",
    }
}

/// A log file as text; `Err` when it is not a log file at all.
pub fn txnlog(file: &[u8]) -> Result<String, Error> {
    let parsed = txnlog::parse(file)?;
    let mut s =
        String::from("ZooKeeper Transactional Log File with dbid 0 txnlog format version 2\n");
    for (offset, e) in &parsed.entries {
        let h = &e.hdr;
        let _ = write!(
            s,
            "{} session 0x{:x} cxid 0x{:x} zxid 0x{:x} {} {:?}",
            java_date(h.time),
            h.client_id,
            h.cxid,
            h.zxid,
            op_name(h.op),
            e.txn
        );
        if let Some(d) = e.digest {
            let _ = write!(s, " digest {d}");
        }
        let _ = writeln!(s, " (offset {offset})");
    }
    match &parsed.tail {
        txnlog::Tail::Clean(_) => {
            let _ = writeln!(s, "EOF reached after {} txns.", parsed.entries.len());
        }
        txnlog::Tail::Torn { offset, why } => {
            let _ = writeln!(
                s,
                "{} txns, then a torn entry at offset {offset}: {why}",
                parsed.entries.len()
            );
        }
        txnlog::Tail::Corrupt { offset, why } => {
            let _ = writeln!(
                s,
                "{} txns, then a CORRUPT entry at offset {offset}: {why}",
                parsed.entries.len()
            );
        }
    }
    Ok(s)
}

/// A snapshot file as text, as ZooKeeper's SnapshotFormatter prints it.
pub fn snapshot(file: Vec<u8>, with_data: bool) -> Result<String, Error> {
    let loaded = snapshot::decode(Bytes::from(file), true)?;
    let tree = &loaded.tree;
    let mut s = String::new();
    let _ = writeln!(s, "ZNode Details (count={}):", tree.node_count());
    let mut stack = vec!["/".to_string()];
    while let Some(path) = stack.pop() {
        let Some(node) = tree.get(&path) else {
            continue;
        };
        let st = tree.stat(node);
        let _ = writeln!(s, "----\n{path}");
        let _ = writeln!(s, "  cZxid = 0x{:014x}", st.czxid);
        let _ = writeln!(s, "  ctime = {}", java_date(st.ctime));
        let _ = writeln!(s, "  mZxid = 0x{:014x}", st.mzxid);
        let _ = writeln!(s, "  mtime = {}", java_date(st.mtime));
        let _ = writeln!(s, "  pZxid = 0x{:014x}", st.pzxid);
        let _ = writeln!(s, "  cversion = {}", st.cversion);
        let _ = writeln!(s, "  dataVersion = {}", st.version);
        let _ = writeln!(s, "  aclVersion = {}", st.aversion);
        let _ = writeln!(s, "  ephemeralOwner = 0x{:014x}", st.ephemeral_owner);
        let _ = writeln!(s, "  dataLength = {}", st.data_length);
        if with_data {
            let data = node.data.as_deref().unwrap_or(&[]);
            let _ = writeln!(s, "  data = {}", base64_of(data));
        }
        let mut kids = tree.children_sorted(&path);
        kids.reverse();
        for k in kids {
            stack.push(if path == "/" {
                format!("/{k}")
            } else {
                format!("{path}/{k}")
            });
        }
    }
    let _ = writeln!(s, "----\nSession Details (sid, timeout, ephemeralCount):");
    for (id, timeout) in &loaded.sessions {
        let _ = writeln!(s, "0x{id:x}, {timeout}, {}", tree.ephemerals_of(*id).len());
    }
    let _ = writeln!(s, "----");
    if let Some((zxid, digest)) = loaded.digest {
        let _ = writeln!(s, "Last zxid: 0x{zxid:x}\nDigest: {digest}");
    }
    Ok(s)
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
