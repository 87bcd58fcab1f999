//! What a client sends a baseapp: stream frames and datagrams. Decoding
//! either must fail cleanly or give a message, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::frame;
use tessera::proto::client::{ClientDatagram, ClientMsg};

fuzz_target!(|data: &[u8]| {
    let _ = frame::decode::<ClientMsg>(data);
    let _ = frame::decode::<ClientDatagram>(data);
});
