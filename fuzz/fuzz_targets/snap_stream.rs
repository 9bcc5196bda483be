//! Fuzz target: the SNAP state a leader streams after the SNAP packet (a snapshot in
//! ZooKeeper's stream form). Measuring it on the wire and decoding it must give a value
//! or an error, never panic; measured as it arrives (in pieces, the scan resuming where it
//! stopped) it must give exactly what measuring it whole gives.
//! Run: `cargo +nightly fuzz run snap_stream -- -runs=10000000` (see docs/fuzzing.md).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zabd::persist::snapshot;

fuzz_target!(|data: &[u8]| {
    let whole = snapshot::stream_len(data);
    if let Ok(Some(n)) = whole {
        assert!(n <= data.len());
    }
    // The same bytes arriving in pieces whose sizes the input's first byte sets.
    let step = 1 + data.first().map_or(0, |b| *b as usize % 17);
    let mut scan = snapshot::StreamScan::default();
    let mut upto = 0;
    let pieces = loop {
        upto = (upto + step).min(data.len());
        match scan.advance(&data[..upto]) {
            Ok(None) if upto < data.len() => continue,
            r => break r,
        }
    };
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "whole and in pieces disagree"),
        (Err(_), Err(_)) => {}
        // An error found whole can be met in pieces only once its bytes arrive, and the
        // state may end before it: then both must agree on where the state ends.
        (Err(_), Ok(Some(_))) | (Ok(Some(_)), Err(_)) => panic!("{whole:?} vs {pieces:?}"),
        _ => {}
    }
    let _ = snapshot::decode_stream(Bytes::copy_from_slice(data), false);
    let _ = snapshot::decode_stream(Bytes::copy_from_slice(data), true);
});
