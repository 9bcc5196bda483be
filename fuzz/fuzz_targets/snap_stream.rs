//! Fuzz target: the SNAP state a leader streams after the SNAP packet (a snapshot in
//! ZooKeeper's stream form). Measuring it on the wire and decoding it must give a value
//! or an error, never panic.
//! Run: `cargo +nightly fuzz run snap_stream -- -runs=10000000` (see docs/fuzzing.md).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zabd::persist::snapshot;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = snapshot::stream_len(data) {
        assert!(n <= data.len());
    }
    let _ = snapshot::decode_stream(Bytes::copy_from_slice(data), false);
    let _ = snapshot::decode_stream(Bytes::copy_from_slice(data), true);
});
