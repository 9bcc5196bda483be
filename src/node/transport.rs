//! What passes between a member's node and its peer transport (`server::peers`): the
//! events the transport reports, the commands it performs, and how a quorum packet that
//! arrived on a learner connection turns into those events (decoding only; the framing is
//! the transport's). Pure.

use crate::persist::snapshot;
use crate::quorum::wire::{packet, QuorumPacket};
use crate::quorum::{codec, Msg, Sid};
use bytes::Bytes;

/// What the transport reports to the node.
#[derive(Debug)]
pub enum PeerEvent {
    Msg {
        from: Sid,
        msg: Msg,
    },
    Disconnected {
        peer: Sid,
    },
    /// Leader side: a client request a learner forwarded (REQUEST).
    Request {
        from: Sid,
        session: i64,
        cxid: i32,
        op: i32,
        body: Bytes,
        auth: Vec<(String, String)>,
    },
    /// Leader side: the sessions a learner's clients touched (its PING's data).
    Touches {
        from: Sid,
        sessions: Vec<(i64, i32)>,
    },
    /// Leader side: a learner asks whether a session a client brought to it is still live
    /// (REVALIDATE: `long sessionId, int timeout`).
    Revalidate {
        from: Sid,
        session: i64,
        timeout: i32,
    },
    /// Learner side: the leader's answer to REVALIDATE (`long sessionId, boolean valid`).
    Revalidated {
        from: Sid,
        session: i64,
        valid: bool,
    },
    /// Learner side: the leader answered a forwarded sync (SYNC), carrying the zxid it
    /// had applied then (0 from Apache ZooKeeper, whose SYNC carries none).
    Synced {
        from: Sid,
        zxid: i64,
    },
    /// Learner side: SNAP and the state that followed it on the stream, decoded by the
    /// transport off the member task ([`ReceivedSnap::decode`]).
    Snap {
        from: Sid,
        zxid: i64,
        snap: Box<ReceivedSnap>,
    },
}

/// A SNAP's state as it arrived, and what decoding it gave.
pub struct ReceivedSnap {
    /// The bytes as sent (the snapshot file's body: see `persist::snapshot`).
    pub state: Bytes,
    pub loaded: Result<snapshot::Loaded, String>,
}

impl ReceivedSnap {
    /// Decodes `state` (slow for a large tree: a transport does it on a blocking thread).
    pub fn decode(state: Bytes, extended_types: bool) -> ReceivedSnap {
        let loaded =
            snapshot::decode_stream(state.clone(), extended_types).map_err(|e| e.to_string());
        ReceivedSnap { state, loaded }
    }
}

impl std::fmt::Debug for ReceivedSnap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedSnap")
            .field("bytes", &self.state.len())
            .field("ok", &self.loaded.is_ok())
            .finish()
    }
}

/// What the node asks of the transport.
#[derive(Debug)]
pub enum PeerCmd {
    Send {
        to: Sid,
        msg: Msg,
    },
    /// Open (or keep) the learner connection to this leader.
    ConnectLeader {
        leader: Sid,
    },
    /// Close the quorum connection to this peer.
    Disconnect {
        peer: Sid,
    },
    /// A quorum packet ZAB does not make (REQUEST, SYNC, a PING with touches).
    Raw {
        to: Sid,
        packet: QuorumPacket,
    },
    /// The membership changed: reach these members from now on, and send `config` (the
    /// membership's text) in notifications and NEWLEADER.
    Members {
        servers: Vec<crate::config::ServerSpec>,
        config: Bytes,
    },
    /// SNAP followed by the state: the transport serializes the frozen view on another
    /// thread and streams it (`persist::snapshot::View::write_stream`), ahead of anything
    /// queued for that peer after this command.
    SendSnap {
        to: Sid,
        zxid: i64,
        state: Box<snapshot::View>,
    },
}

/// What a quorum packet from `from` means to the node; `to_leader` when it arrived on this
/// member's connection to its leader. The session side (forwarded requests, sync answers,
/// revalidation, a PING's touches) comes first, then the ZAB message, if any (a PING is
/// both). Packets neither takes are logged and dropped.
pub fn packet_events(from: Sid, p: &QuorumPacket, to_leader: bool) -> Vec<PeerEvent> {
    let mut out = Vec::with_capacity(1);
    if let Some(e) = session_event(from, p, to_leader) {
        out.push(e);
        if p.kind != packet::PING {
            return out;
        }
    }
    match codec::decode_packet(p, to_leader) {
        Ok(msg) => out.push(PeerEvent::Msg { from, msg }),
        Err(e) => tracing::debug!(from, error = %e, "quorum packet ZAB does not take"),
    }
    out
}

/// The session side's share of a quorum packet.
fn session_event(from: Sid, p: &QuorumPacket, to_leader: bool) -> Option<PeerEvent> {
    match p.kind {
        packet::REQUEST if !to_leader => match codec::decode_request(p) {
            Ok((session, cxid, op, body)) => Some(PeerEvent::Request {
                from,
                session,
                cxid,
                op,
                body,
                auth: p.auth.clone(),
            }),
            Err(e) => {
                tracing::warn!(from, error = %e, "undecodable REQUEST");
                None
            }
        },
        packet::SYNC if to_leader => Some(PeerEvent::Synced { from, zxid: p.zxid }),
        packet::REVALIDATE if to_leader => {
            let (session, valid) = codec::decode_revalidate_answer(p).ok()?;
            Some(PeerEvent::Revalidated {
                from,
                session,
                valid,
            })
        }
        packet::REVALIDATE if !to_leader => {
            let (session, timeout) = codec::decode_revalidate(p).ok()?;
            Some(PeerEvent::Revalidate {
                from,
                session,
                timeout,
            })
        }
        packet::PING if !to_leader => {
            let sessions = codec::decode_touches(p.data.clone().unwrap_or_default()).ok()?;
            (!sessions.is_empty()).then_some(PeerEvent::Touches { from, sessions })
        }
        _ => None,
    }
}
