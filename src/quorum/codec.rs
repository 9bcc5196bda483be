//! Core messages ↔ Apache ZooKeeper 3.8's packets, so that the server can put the pure core
//! on ZooKeeper's election and quorum ports.
//!
//! | [`Msg`]                         | packet                                                        |
//! |---------------------------------|---------------------------------------------------------------|
//! | `Notify(vote)`                  | election notification (state, leader, zxid, round, peer epoch) |
//! | `Config(membership)`            | the notification's config text, when its version is above 0; decoded ahead of its vote |
//! | `FollowerInfo{e, observer, batched}` | FOLLOWERINFO / OBSERVERINFO, zxid (e, 0), data LearnerInfo{long sid, int 0x10000, long configVersion}, then zabd's trailer |
//! | `LeaderInfo{e, batched}`        | LEADERINFO, zxid (e, 0), data int 0x10000, then zabd's trailer |
//! | `AckEpoch{current, last, counts}` | ACKEPOCH, zxid last, data int current (-1: does not count) |
//! | `Diff{z}` / `Trunc{z}`          | DIFF / TRUNC, zxid z                                           |
//! | `Snap{..}`                      | SNAP, zxid of the state; the state follows on the stream       |
//! | `Proposal(entry)`               | PROPOSAL, zxid, data = the log entry body (TxnHeader, txn, TxnDigest) |
//! | `NewLeader{z}`                  | NEWLEADER, zxid z, data = the ensemble config text             |
//! | `Ack{z}` / `Commit{z}`          | ACK / COMMIT, zxid z                                           |
//! | `Inform(entry)`                 | INFORM (to observers: a committed proposal), data as PROPOSAL's |
//! | `CommitAndActivate{z, leader}`  | COMMITANDACTIVATE, zxid z, data long leader                    |
//! | `InformAndActivate{entry, leader}` | INFORMANDACTIVATE, zxid, data long leader then PROPOSAL's data |
//! | `UpToDate`                      | UPTODATE, zxid -1                                              |
//! | `Ping` (leader) / `PingReply` (learner) | PING; the learner's carries its sessions' touches       |
//!
//! **zabd's trailer**: 8 bytes after the data ZooKeeper defines, `int 0x7a616264` ("zabd"),
//! `int flags`; bit 0 (`BATCHED`) is set by a member that takes (leader) or sends (learner)
//! one ACK and one COMMIT for every proposal up to its zxid. Apache ZooKeeper reads only the
//! fields it knows from both packets (Learner.registerWithLeader, LearnerHandler.run) and
//! never sends a trailer, so it gets and gives one ACK and one COMMIT per proposal, as ever.
//!
//! Session traffic (REQUEST, REVALIDATE, SYNC, ping session lists) belongs to the server and
//! has its own helpers here.

use super::wire::{packet, Notification, QuorumPacket};
use super::{epoch_of, make_zxid, Entry, Msg, Sid, State, Vote};
use crate::jute::{DecodeError, Reader, Writer};
use bytes::Bytes;

/// ZooKeeper's learner protocol version (0x10000).
pub const LEARNER_PROTOCOL: i32 = 0x10000;

/// The trailer's first int, "zabd" in ASCII.
const TRAILER_MAGIC: i32 = 0x7a61_6264;
/// Trailer flag: one ACK and one COMMIT for every proposal up to its zxid.
const BATCHED: i32 = 1;

fn put_trailer(w: &mut Writer, batched: bool) {
    w.i32(TRAILER_MAGIC).i32(if batched { BATCHED } else { 0 });
}

/// The trailer's flags after the first `known` bytes of `data`; 0 without a trailer.
fn trailer_flags(data: &[u8], known: usize) -> i32 {
    let Some(t) = data.get(known..known + 8) else {
        return 0;
    };
    let int = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if int(&t[..4]) == TRAILER_MAGIC {
        int(&t[4..])
    } else {
        0
    }
}

fn state_code(s: State) -> i32 {
    match s {
        State::Looking => 0,
        State::Following => 1,
        State::Leading => 2,
        State::Observing => 3,
    }
}

pub fn encode_notification(v: &Vote, config: Bytes) -> Bytes {
    Notification {
        state: state_code(v.state),
        leader: v.leader as i64,
        zxid: v.zxid,
        election_epoch: v.election_epoch as i64,
        peer_epoch: v.peer_epoch as i64,
        config,
    }
    .encode()
}

/// A notification's vote, and the membership it carries when that is a reconfig's (a
/// version above 0; one that does not parse is left out).
pub fn decode_notification(b: Bytes) -> Result<(Msg, Option<Msg>), DecodeError> {
    let n = Notification::decode(b)?;
    let config = std::str::from_utf8(&n.config)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .and_then(|t| super::membership::Membership::parse(t).ok())
        .filter(|m| m.version > 0 && !m.servers.is_empty())
        .map(|m| Msg::Config(std::sync::Arc::new(m)));
    let state = match n.state {
        0 => State::Looking,
        1 => State::Following,
        2 => State::Leading,
        3 => State::Observing,
        s => return Err(DecodeError::Invalid(format!("unknown peer state {s}"))),
    };
    let vote = Msg::Notify(Vote {
        leader: n.leader as Sid,
        zxid: n.zxid,
        election_epoch: n.election_epoch as u64,
        peer_epoch: n.peer_epoch as u32,
        state,
    });
    Ok((vote, config))
}

fn int_data(v: i32) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(&v.to_be_bytes()))
}

/// The quorum packet for a learner-protocol message. `me` and `config_version` fill in
/// FOLLOWERINFO's LearnerInfo; `config` is NEWLEADER's data.
pub fn encode_packet(
    msg: &Msg,
    me: Sid,
    config_version: i64,
    config: &Bytes,
) -> Option<QuorumPacket> {
    let p = |kind, zxid, data| {
        Some(QuorumPacket {
            kind,
            zxid,
            data,
            auth: Vec::new(),
        })
    };
    match msg {
        // Election port only (the transport puts its membership in every notification).
        Msg::Notify(_) | Msg::Config(_) => None,
        Msg::FollowerInfo {
            accepted_epoch,
            observer,
            batched,
        } => {
            let mut w = Writer::new();
            w.i64(me as i64).i32(LEARNER_PROTOCOL).i64(config_version);
            put_trailer(&mut w, *batched);
            let kind = if *observer {
                packet::OBSERVERINFO
            } else {
                packet::FOLLOWERINFO
            };
            p(kind, make_zxid(*accepted_epoch, 0), Some(w.into_bytes()))
        }
        Msg::LeaderInfo { epoch, batched } => {
            let mut w = Writer::new();
            w.i32(LEARNER_PROTOCOL);
            put_trailer(&mut w, *batched);
            p(
                packet::LEADERINFO,
                make_zxid(*epoch, 0),
                Some(w.into_bytes()),
            )
        }
        Msg::AckEpoch {
            current_epoch,
            last_zxid,
            counts,
        } => {
            let e = if *counts { *current_epoch as i32 } else { -1 };
            p(packet::ACKEPOCH, *last_zxid, int_data(e))
        }
        Msg::Diff { zxid } => p(packet::DIFF, *zxid, None),
        Msg::Trunc { zxid } => p(packet::TRUNC, *zxid, None),
        Msg::Snap { zxid } => p(packet::SNAP, *zxid, None),
        Msg::Proposal(e) => p(packet::PROPOSAL, e.zxid, Some(e.payload.clone())),
        Msg::Inform(e) => p(packet::INFORM, e.zxid, Some(e.payload.clone())),
        Msg::NewLeader { zxid } => p(packet::NEWLEADER, *zxid, Some(config.clone())),
        Msg::Ack { zxid } => p(packet::ACK, *zxid, None),
        Msg::UpToDate => p(packet::UPTODATE, -1, None),
        Msg::Commit { zxid } => p(packet::COMMIT, *zxid, None),
        Msg::CommitAndActivate { zxid, leader } => p(
            packet::COMMITANDACTIVATE,
            *zxid,
            Some(Bytes::copy_from_slice(&(*leader as i64).to_be_bytes())),
        ),
        Msg::InformAndActivate { entry, leader } => {
            let mut data = Vec::with_capacity(8 + entry.payload.len());
            data.extend_from_slice(&(*leader as i64).to_be_bytes());
            data.extend_from_slice(&entry.payload);
            p(packet::INFORMANDACTIVATE, entry.zxid, Some(data.into()))
        }
        Msg::Ping => p(packet::PING, 0, None),
        // ZooKeeper's LearnerHandler reads the session touches from the reply's data without
        // a null check: always send a buffer, empty when there is nothing to report.
        Msg::PingReply => p(packet::PING, 0, Some(Bytes::new())),
    }
}

/// The core message in a quorum packet. `from_leader` tells a leader's PING from a
/// learner's reply. SNAP decodes with no entries: the server reads the state that follows.
pub fn decode_packet(p: &QuorumPacket, from_leader: bool) -> Result<Msg, DecodeError> {
    let data = || p.data.clone().unwrap_or_default();
    let int = || -> Result<i32, DecodeError> { Reader::new(data()).i32() };
    Ok(match p.kind {
        packet::FOLLOWERINFO | packet::OBSERVERINFO => Msg::FollowerInfo {
            accepted_epoch: epoch_of(p.zxid),
            observer: p.kind == packet::OBSERVERINFO,
            batched: trailer_flags(&data(), 20) & BATCHED != 0,
        },
        packet::LEADERINFO => Msg::LeaderInfo {
            epoch: epoch_of(p.zxid),
            batched: trailer_flags(&data(), 4) & BATCHED != 0,
        },
        packet::ACKEPOCH => {
            let e = int()?;
            Msg::AckEpoch {
                current_epoch: e.max(0) as u32,
                last_zxid: p.zxid,
                counts: e != -1,
            }
        }
        packet::DIFF => Msg::Diff { zxid: p.zxid },
        packet::TRUNC => Msg::Trunc { zxid: p.zxid },
        packet::SNAP => Msg::Snap { zxid: p.zxid },
        packet::PROPOSAL => Msg::Proposal(Entry {
            zxid: p.zxid,
            payload: data(),
        }),
        packet::INFORM => Msg::Inform(Entry {
            zxid: p.zxid,
            payload: data(),
        }),
        packet::NEWLEADER => Msg::NewLeader { zxid: p.zxid },
        packet::ACK => Msg::Ack { zxid: p.zxid },
        packet::UPTODATE => Msg::UpToDate,
        packet::COMMIT => Msg::Commit { zxid: p.zxid },
        packet::COMMITANDACTIVATE => Msg::CommitAndActivate {
            zxid: p.zxid,
            leader: Reader::new(data()).i64()? as Sid,
        },
        packet::INFORMANDACTIVATE => {
            let d = data();
            if d.len() < 8 {
                return Err(DecodeError::Invalid(
                    "INFORMANDACTIVATE without its designated leader".into(),
                ));
            }
            Msg::InformAndActivate {
                leader: Reader::new(d.clone()).i64()? as Sid,
                entry: Entry {
                    zxid: p.zxid,
                    payload: d.slice(8..),
                },
            }
        }
        packet::PING if from_leader => Msg::Ping,
        packet::PING => Msg::PingReply,
        other => {
            return Err(DecodeError::Invalid(format!(
                "quorum packet type {other} is not a core message"
            )))
        }
    })
}

/// The server id in a FOLLOWERINFO/OBSERVERINFO packet's LearnerInfo.
pub fn learner_sid(p: &QuorumPacket) -> Result<Sid, DecodeError> {
    Ok(Reader::new(p.data.clone().unwrap_or_default()).i64()? as Sid)
}

/// A client write a follower forwards to its leader (REQUEST): `long sessionId, int cxid,
/// int type`, then the request record.
/// `auth` is the client's identities (the packet's authinfo).
pub fn encode_request(
    session: i64,
    cxid: i32,
    op: i32,
    body: &[u8],
    auth: Vec<(String, String)>,
) -> QuorumPacket {
    let mut w = Writer::new();
    w.i64(session).i32(cxid).i32(op).raw(body);
    QuorumPacket {
        kind: packet::REQUEST,
        zxid: -1,
        data: Some(w.into_bytes()),
        auth,
    }
}

/// (session, cxid, type, request record) of a REQUEST packet.
pub fn decode_request(p: &QuorumPacket) -> Result<(i64, i32, i32, Bytes), DecodeError> {
    let b = p.data.clone().unwrap_or_default();
    let mut r = Reader::new(b.clone());
    let (s, c, t) = (r.i64()?, r.i32()?, r.i32()?);
    Ok((s, c, t, b.slice(r.position()..)))
}

fn session_packet(kind: i32, zxid: i64, data: Bytes) -> QuorumPacket {
    QuorumPacket {
        kind,
        zxid,
        data: Some(data),
        auth: Vec::new(),
    }
}

/// A learner asks whether a session a client brought it lives: REVALIDATE with
/// `long sessionId, int timeout`.
pub fn encode_revalidate(session: i64, timeout: i32) -> QuorumPacket {
    let mut w = Writer::new();
    w.i64(session).i32(timeout);
    session_packet(packet::REVALIDATE, -1, w.into_bytes())
}

pub fn decode_revalidate(p: &QuorumPacket) -> Result<(i64, i32), DecodeError> {
    let mut r = Reader::new(p.data.clone().unwrap_or_default());
    Ok((r.i64()?, r.i32()?))
}

/// The leader's answer: REVALIDATE with `long sessionId, boolean valid`.
pub fn encode_revalidate_answer(session: i64, valid: bool) -> QuorumPacket {
    let mut w = Writer::new();
    w.i64(session).bool(valid);
    session_packet(packet::REVALIDATE, -1, w.into_bytes())
}

pub fn decode_revalidate_answer(p: &QuorumPacket) -> Result<(i64, bool), DecodeError> {
    let mut r = Reader::new(p.data.clone().unwrap_or_default());
    Ok((r.i64()?, r.bool()?))
}

/// The leader's answer to a learner's forwarded sync (SYNC carries no data).
pub fn sync_answer(zxid: i64) -> QuorumPacket {
    QuorumPacket {
        kind: packet::SYNC,
        zxid,
        data: None,
        auth: Vec::new(),
    }
}

/// A learner's PING reply with the sessions its clients touched.
pub fn ping_reply(last_zxid: i64, touches: &[(i64, i32)]) -> QuorumPacket {
    session_packet(packet::PING, last_zxid, encode_touches(touches))
}

/// A learner's PING data: `long sessionId, int timeout` for each session touched since the
/// last ping, until the end of the data (no count), as ZooKeeper's Learner writes it.
pub fn encode_touches(touches: &[(i64, i32)]) -> Bytes {
    let mut w = Writer::new();
    for (s, t) in touches {
        w.i64(*s).i32(*t);
    }
    w.into_bytes()
}

pub fn decode_touches(b: Bytes) -> Result<Vec<(i64, i32)>, DecodeError> {
    let mut r = Reader::new(b);
    let mut v = Vec::new();
    while r.remaining() >= 12 {
        v.push((r.i64()?, r.i32()?));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_message_round_trips_through_its_packet() {
        let cfg = Bytes::from_static(b"server.1=127.0.0.1:2888:3888;2181");
        let msgs = vec![
            Msg::FollowerInfo {
                accepted_epoch: 3,
                observer: false,
                batched: true,
            },
            Msg::FollowerInfo {
                accepted_epoch: 3,
                observer: true,
                batched: false,
            },
            Msg::LeaderInfo {
                epoch: 4,
                batched: true,
            },
            Msg::LeaderInfo {
                epoch: 4,
                batched: false,
            },
            Msg::AckEpoch {
                current_epoch: 3,
                last_zxid: make_zxid(3, 9),
                counts: true,
            },
            Msg::AckEpoch {
                current_epoch: 0,
                last_zxid: 4,
                counts: false,
            },
            Msg::Diff { zxid: 5 },
            Msg::Trunc { zxid: 6 },
            Msg::Snap { zxid: 9 },
            Msg::Proposal(Entry {
                zxid: make_zxid(4, 1),
                payload: Bytes::from_static(b"txn"),
            }),
            Msg::NewLeader {
                zxid: make_zxid(4, 0),
            },
            Msg::Ack { zxid: 7 },
            Msg::UpToDate,
            Msg::Commit { zxid: 8 },
            Msg::CommitAndActivate { zxid: 9, leader: 3 },
            Msg::InformAndActivate {
                entry: Entry {
                    zxid: 10,
                    payload: Bytes::from_static(b"txn"),
                },
                leader: 2,
            },
        ];
        for m in msgs {
            let p = encode_packet(&m, 2, 0x100000000, &cfg).unwrap();
            let back = QuorumPacket::decode(p.encode()).unwrap();
            assert_eq!(decode_packet(&back, false).unwrap(), m);
            if matches!(m, Msg::FollowerInfo { .. }) {
                assert_eq!(learner_sid(&back).unwrap(), 2);
            }
        }
        let ping = encode_packet(&Msg::Ping, 1, 0, &cfg).unwrap();
        assert_eq!(decode_packet(&ping, true).unwrap(), Msg::Ping);
        assert_eq!(decode_packet(&ping, false).unwrap(), Msg::PingReply);
    }

    #[test]
    fn zookeepers_learner_info_and_leader_info_are_not_batched() {
        // As Apache ZooKeeper 3.8 writes them: no trailer.
        let mut w = Writer::new();
        w.i64(2).i32(LEARNER_PROTOCOL).i64(0);
        let info = QuorumPacket {
            kind: packet::FOLLOWERINFO,
            zxid: make_zxid(3, 0),
            data: Some(w.into_bytes()),
            auth: Vec::new(),
        };
        let leader = QuorumPacket {
            kind: packet::LEADERINFO,
            zxid: make_zxid(4, 0),
            data: int_data(LEARNER_PROTOCOL),
            auth: Vec::new(),
        };
        assert!(matches!(
            decode_packet(&info, false).unwrap(),
            Msg::FollowerInfo { batched: false, .. }
        ));
        assert!(matches!(
            decode_packet(&leader, true).unwrap(),
            Msg::LeaderInfo { batched: false, .. }
        ));
        // What ZooKeeper reads of zabd's: the fields it knows, at their places.
        let ours = encode_packet(
            &Msg::LeaderInfo {
                epoch: 4,
                batched: true,
            },
            1,
            0,
            &Bytes::new(),
        )
        .unwrap();
        assert_eq!(
            ours.data.as_ref().unwrap()[..4],
            LEARNER_PROTOCOL.to_be_bytes()
        );
    }

    #[test]
    fn notifications_and_requests() {
        let v = Vote {
            leader: 3,
            zxid: 9,
            election_epoch: 2,
            peer_epoch: 1,
            state: State::Following,
        };
        let b = encode_notification(&v, Bytes::new());
        assert_eq!(decode_notification(b).unwrap(), (Msg::Notify(v), None));
        let q = encode_revalidate(0x77, 4000);
        assert_eq!(
            decode_revalidate(&QuorumPacket::decode(q.encode()).unwrap()),
            Ok((0x77, 4000))
        );
        let a = encode_revalidate_answer(0x77, true);
        assert_eq!(a.data.as_ref().unwrap().len(), 9);
        assert_eq!(decode_revalidate_answer(&a), Ok((0x77, true)));
        let ping = ping_reply(5, &[(1, 2000), (2, 3000)]);
        assert_eq!(
            decode_touches(ping.data.clone().unwrap()),
            Ok(vec![(1, 2000), (2, 3000)])
        );
        let r = encode_request(0x55, 7, 1, b"body", Vec::new());
        let back = QuorumPacket::decode(r.encode()).unwrap();
        assert_eq!(
            decode_request(&back).unwrap(),
            (0x55, 7, 1, Bytes::from_static(b"body"))
        );
        let t = vec![(1, 4000), (2, 6000)];
        assert_eq!(decode_touches(encode_touches(&t)).unwrap(), t);
    }
}
