//! Fuzz target: every decoder a client's bytes reach — framing, the ConnectRequest, and a
//! request frame — must return an error or a value, never panic or hang.
//! Run: `cargo fuzz run decode -- -max_total_time=60` (see README).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zabd::jute::records::ConnectRequest;
use zabd::jute::Record;

fuzz_target!(|data: &[u8]| {
    let _ = zabd::proto::frame::check(data, 1 << 20);
    let _ = ConnectRequest::from_bytes(Bytes::copy_from_slice(data));
    let _ = zabd::proto::request::decode(Bytes::copy_from_slice(data));
    if let Some((&op, rest)) = data.split_first() {
        let _ = zabd::txn::Txn::read(op as i8 as i32, &mut zabd::jute::Reader::new(Bytes::copy_from_slice(rest)));
    }
});
