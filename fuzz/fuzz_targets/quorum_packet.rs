//! Fuzz target: a quorum packet from a peer, framing included. The frame measure
//! (`peers::packet_len`) must answer or refuse without trusting the lengths it reads; a
//! whole packet must decode, and then every reading of it the member makes (the ZAB
//! message on either side of the connection, LEARNERINFO's sid, REQUEST with its
//! authinfo, REVALIDATE both ways, a PING's session touches) must give a value or an
//! error, never panic.
//! Run: `cargo +nightly fuzz run quorum_packet -- -runs=10000000` (see docs/fuzzing.md).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zabd::quorum::codec;
use zabd::quorum::wire::QuorumPacket;

fuzz_target!(|data: &[u8]| {
    let whole = match zabd::server::peers::packet_len(data) {
        Ok(Some(n)) => {
            assert!(n <= data.len());
            &data[..n]
        }
        _ => data,
    };
    let Ok(p) = QuorumPacket::decode(Bytes::copy_from_slice(whole)) else {
        return;
    };
    for to_leader in [false, true] {
        let _ = codec::decode_packet(&p, to_leader);
        let _ = zabd::node::packet_events(1, &p, to_leader);
    }
    let _ = codec::learner_sid(&p);
    let _ = codec::decode_request(&p);
    let _ = codec::decode_revalidate(&p);
    let _ = codec::decode_revalidate_answer(&p);
    if let Some(d) = &p.data {
        let _ = codec::decode_touches(d.clone());
    }
});
