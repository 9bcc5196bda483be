//! Fuzz target: an election message body from a peer (ZooKeeper's notification) must
//! decode to a vote or an error, never panic or allocate past its length.
//! Run: `cargo +nightly fuzz run election -- -runs=10000000` (see docs/fuzzing.md).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zabd::quorum::codec::decode_notification(Bytes::copy_from_slice(data));
    let _ = zabd::quorum::wire::Notification::decode(Bytes::copy_from_slice(data));
});
