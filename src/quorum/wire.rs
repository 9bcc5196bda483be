//! Apache ZooKeeper 3.8's quorum wire formats (for the ensemble I/O layer).
//!
//! Owns: encodings only. Pure.
//!
//! **Election port** (QuorumCnxManager). The connecting side opens with
//! `long protocolVersion (-65535 = V2), long sid, int length, bytes "host:port|host:port"`;
//! of two peers only the one with the larger id keeps a connection (the smaller one closes
//! its own and waits to be called). Then each message is `int length` + body. A
//! FastLeaderElection notification body (version 2) is:
//!
//! ```text
//! int state (0 LOOKING, 1 FOLLOWING, 2 LEADING, 3 OBSERVING)   long leader
//! long zxid   long electionEpoch   long peerEpoch   int version (2)
//! int configLength   bytes config (the dynamic config text)
//! ```
//!
//! **Quorum port** (learner protocol). Every message is a jute `QuorumPacket`:
//! `int type, long zxid, buffer data, vector<Id> authinfo`, types as in [`packet`].

use crate::jute::{DecodeError, Reader, Writer};
use bytes::Bytes;

/// QuorumPacket types (ZooKeeper's Leader constants).
pub mod packet {
    pub const REQUEST: i32 = 1;
    pub const PROPOSAL: i32 = 2;
    pub const ACK: i32 = 3;
    pub const COMMIT: i32 = 4;
    pub const PING: i32 = 5;
    pub const REVALIDATE: i32 = 6;
    pub const SYNC: i32 = 7;
    pub const INFORM: i32 = 8;
    pub const COMMITANDACTIVATE: i32 = 9;
    pub const NEWLEADER: i32 = 10;
    pub const FOLLOWERINFO: i32 = 11;
    pub const UPTODATE: i32 = 12;
    pub const DIFF: i32 = 13;
    pub const TRUNC: i32 = 14;
    pub const SNAP: i32 = 15;
    pub const OBSERVERINFO: i32 = 16;
    pub const LEADERINFO: i32 = 17;
    pub const ACKEPOCH: i32 = 18;
    pub const INFORMANDACTIVATE: i32 = 19;
}

pub const PROTOCOL_VERSION_V2: i64 = -65535;
pub const NOTIFICATION_VERSION: i32 = 2;

/// A FastLeaderElection notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub state: i32,
    pub leader: i64,
    pub zxid: i64,
    pub election_epoch: i64,
    pub peer_epoch: i64,
    pub config: Bytes,
}

impl Notification {
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        w.i32(self.state)
            .i64(self.leader)
            .i64(self.zxid)
            .i64(self.election_epoch)
            .i64(self.peer_epoch)
            .i32(NOTIFICATION_VERSION)
            .i32(self.config.len() as i32)
            .raw(&self.config);
        w.into_bytes()
    }

    /// Reads versions 1 (40 bytes, no config) and 2.
    pub fn decode(b: Bytes) -> Result<Notification, DecodeError> {
        let mut r = Reader::new(b);
        let mut n = Notification {
            state: r.i32()?,
            leader: r.i64()?,
            zxid: r.i64()?,
            election_epoch: r.i64()?,
            peer_epoch: r.i64()?,
            config: Bytes::new(),
        };
        if r.remaining() >= 8 {
            let _version = r.i32()?;
            n.config = r.buffer()?.unwrap_or_default();
        }
        Ok(n)
    }
}

/// A learner-protocol packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumPacket {
    pub kind: i32,
    pub zxid: i64,
    pub data: Option<Bytes>,
    /// authinfo: the (scheme, id) identities of a forwarded request's client.
    pub auth: Vec<(String, String)>,
}

impl QuorumPacket {
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        w.i32(self.kind)
            .i64(self.zxid)
            .buffer(self.data.as_deref())
            .i32(self.auth.len() as i32);
        for (scheme, id) in &self.auth {
            w.string(scheme).string(id);
        }
        w.into_bytes()
    }

    pub fn decode(b: Bytes) -> Result<QuorumPacket, DecodeError> {
        let mut r = Reader::new(b);
        let (kind, zxid, data) = (r.i32()?, r.i64()?, r.buffer()?);
        let auth = r.vec(|r| Ok((r.string()?, r.string()?)))?;
        Ok(QuorumPacket {
            kind,
            zxid,
            data,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_is_44_bytes_plus_config() {
        let n = Notification {
            state: 0,
            leader: 3,
            zxid: 0x1_0000_0005,
            election_epoch: 7,
            peer_epoch: 1,
            config: Bytes::from_static(b"server.1=a:1:2"),
        };
        let b = n.encode();
        assert_eq!(b.len(), 44 + 14);
        assert_eq!(Notification::decode(b).unwrap(), n);
        let mut old = n.encode()[..40].to_vec();
        old.extend_from_slice(&[0, 0, 0, 1]);
        assert_eq!(
            Notification::decode(old[..40].to_vec().into())
                .unwrap()
                .leader,
            3
        );
    }

    #[test]
    fn quorum_packet_round_trips() {
        let p = QuorumPacket {
            kind: packet::PROPOSAL,
            zxid: 9,
            data: Some(Bytes::from_static(b"txn")),
            auth: vec![("digest".into(), "u:h".into())],
        };
        assert_eq!(QuorumPacket::decode(p.encode()).unwrap(), p);
    }
}
