//! The transaction log file (ZooKeeper's FileTxnLog).
//!
//! Layout:
//!
//! ```text
//! FileHeader   int magic "ZKLG", int version 2, long dbid 0                     16 bytes
//! entry*       long   checksum   Adler-32 of the body bytes
//!              int    length     of the body
//!              body:  TxnHeader {long clientId, int cxid, long zxid, long time, int type}
//!                     the txn record for that type (see `crate::txn`)
//!                     TxnDigest {int version 2, long treeDigest}   (tree after this txn)
//!              byte   0x42 ('B', end of record)
//! zero fill    the file is preallocated in 64 MiB steps; an entry of checksum 0 and
//!              length 0 marks the end
//! ```
//!
//! Reading stops at the zero fill. A bad entry (short, no 0x42, checksum mismatch) is a
//! *torn tail* when nothing but zeros follows the extent it claims, and its length is sane:
//! what a crash in the middle of a write leaves. Anything else is corruption.

use super::adler32;
use crate::jute::{DecodeError, Reader, Record, Writer};
use crate::txn::{Txn, TxnHeader};
use bytes::Bytes;

/// Preallocation step (ZooKeeper's preAllocSize default).
pub const PREALLOC: u64 = 64 << 20;
/// An entry body longer than this cannot be real (jute.maxbuffer is far below).
const MAX_BODY: usize = 64 << 20;
pub const END_OF_RECORD: u8 = 0x42;

/// Appends one entry to `out`.
pub fn encode_entry(hdr: &TxnHeader, txn: &Txn, digest: Option<u64>, out: &mut Vec<u8>) {
    encode_entry_of_body(&encode_body(hdr, txn, digest), out);
}

/// A log entry around a body already encoded (a PROPOSAL's data is one): checksum, length,
/// the body, end of record.
pub fn encode_entry_of_body(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(adler32(body) as i64).to_be_bytes());
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(body);
    out.push(END_OF_RECORD);
}

/// An entry's body: header, record, digest. A quorum PROPOSAL carries exactly this.
pub fn encode_body(hdr: &TxnHeader, txn: &Txn, digest: Option<u64>) -> Bytes {
    let mut w = Writer::new();
    hdr.write(&mut w);
    txn.write(&mut w);
    if let Some(d) = digest {
        w.i32(crate::tree::digest::DIGEST_VERSION).i64(d as i64);
    }
    w.into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub hdr: TxnHeader,
    pub txn: Txn,
    pub digest: Option<u64>,
}

/// Decodes an entry body: header, record, optional digest.
pub fn decode_body(body: Bytes) -> Result<Entry, DecodeError> {
    let mut r = Reader::new(body);
    let hdr = TxnHeader::read(&mut r)?;
    let txn = Txn::read(hdr.op, &mut r)?;
    let digest = if r.remaining() >= 12 {
        r.i32()?;
        Some(r.i64()? as u64)
    } else {
        None
    };
    Ok(Entry { hdr, txn, digest })
}

/// How a log file's entries end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Zero fill or the end of the file at this offset.
    Clean(u64),
    /// A partly written entry starts at this offset; everything from here is garbage.
    Torn { offset: u64, why: String },
    /// A bad entry with real data after it.
    Corrupt { offset: u64, why: String },
}

pub struct Parsed {
    pub entries: Vec<(u64, Entry)>,
    pub tail: Tail,
}

/// Parses a whole log file.
pub fn parse(file: &[u8]) -> Result<Parsed, super::Error> {
    if file.len() < 16 {
        return Err(super::Error::TooShort {
            len: file.len(),
            what: "log file",
        });
    }
    let magic = i32::from_be_bytes(file[..4].try_into().expect("4 bytes"));
    if magic != super::LOG_MAGIC {
        return Err(super::Error::BadMagic {
            magic,
            what: "transaction log",
        });
    }
    let last_nonzero = file
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |p| p as u64 + 1);
    let mut entries = Vec::new();
    let mut off = 16usize;
    loop {
        let bad = |why: String, claimed_end: u64| {
            if claimed_end >= last_nonzero {
                Tail::Torn {
                    offset: off as u64,
                    why,
                }
            } else {
                Tail::Corrupt {
                    offset: off as u64,
                    why,
                }
            }
        };
        if off + 12 > file.len() {
            let tail = if off as u64 >= last_nonzero {
                Tail::Clean(off as u64)
            } else {
                bad("entry header cut short".into(), file.len() as u64)
            };
            return Ok(Parsed { entries, tail });
        }
        let crc = i64::from_be_bytes(file[off..off + 8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(file[off + 8..off + 12].try_into().expect("4 bytes"));
        if crc == 0 && len == 0 {
            let tail = if off as u64 >= last_nonzero {
                Tail::Clean(off as u64)
            } else {
                Tail::Corrupt {
                    offset: off as u64,
                    why: "zero entry followed by data".into(),
                }
            };
            return Ok(Parsed { entries, tail });
        }
        if len <= 0 || len as usize > MAX_BODY {
            let why = format!("impossible entry length {len}");
            let tail = bad(why, off as u64 + 12);
            return Ok(Parsed { entries, tail });
        }
        let len = len as usize;
        let end = off + 12 + len + 1;
        if end > file.len() {
            let tail = bad("entry cut short by the end of the file".into(), end as u64);
            return Ok(Parsed { entries, tail });
        }
        let body = &file[off + 12..off + 12 + len];
        if file[end - 1] != END_OF_RECORD {
            return Ok(Parsed {
                entries,
                tail: bad("missing end-of-record byte".into(), end as u64),
            });
        }
        if adler32(body) as i64 != crc {
            return Ok(Parsed {
                entries,
                tail: bad("checksum mismatch".into(), end as u64),
            });
        }
        match decode_body(Bytes::copy_from_slice(body)) {
            Ok(e) => entries.push((off as u64, e)),
            Err(why) => {
                let tail = Tail::Corrupt {
                    offset: off as u64,
                    why: format!("entry does not decode: {why}"),
                };
                return Ok(Parsed { entries, tail });
            }
        }
        off = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::op;

    fn entry(zxid: i64) -> (TxnHeader, Txn) {
        (
            TxnHeader {
                client_id: 1,
                cxid: 2,
                zxid,
                time: 3,
                op: op::SET_DATA,
            },
            Txn::SetData {
                path: "/a".into(),
                data: Some(Bytes::from_static(b"xyz")),
                version: 1,
            },
        )
    }

    fn file(n: i64, pad: usize) -> Vec<u8> {
        let mut f = super::super::file_header(super::super::LOG_MAGIC, 0).to_vec();
        for z in 1..=n {
            let (h, t) = entry(z);
            encode_entry(&h, &t, Some(77), &mut f);
        }
        f.extend(std::iter::repeat_n(0u8, pad));
        f
    }

    #[test]
    fn round_trip_with_zero_fill() {
        let f = file(3, 4096);
        let p = parse(&f).unwrap();
        assert_eq!(p.entries.len(), 3);
        assert_eq!(p.entries[2].1.hdr.zxid, 3);
        assert_eq!(p.entries[0].1.digest, Some(77));
        assert!(matches!(p.tail, Tail::Clean(_)));
    }

    #[test]
    fn a_cut_last_entry_is_a_torn_tail() {
        let full = file(3, 0);
        let two = file(2, 0).len();
        for cut in [two + 5, two + 20, full.len() - 1] {
            let mut f = full[..cut].to_vec();
            f.extend(std::iter::repeat_n(0u8, 100));
            let p = parse(&f).unwrap();
            assert_eq!(p.entries.len(), 2, "cut at {cut}");
            assert!(
                matches!(p.tail, Tail::Torn { offset, .. } if offset == two as u64),
                "{:?}",
                p.tail
            );
        }
    }

    #[test]
    fn a_flipped_byte_before_the_tail_is_corruption() {
        let mut f = file(3, 100);
        f[16 + 30] ^= 0x40;
        let p = parse(&f).unwrap();
        assert!(p.entries.is_empty());
        assert!(
            matches!(p.tail, Tail::Corrupt { offset: 16, .. }),
            "{:?}",
            p.tail
        );
    }
}
