//! What a client sends the manager's login port: a login or a resume.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::frame;
use tessera::proto::login::{LoginRequest, ResumeRequest};

fuzz_target!(|data: &[u8]| {
    let _ = frame::decode::<LoginRequest>(data);
    let _ = frame::decode::<ResumeRequest>(data);
});
