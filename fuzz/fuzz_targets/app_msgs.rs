//! What another process of the cluster sends on an app link or the
//! manager link: decoding fails cleanly or gives a message, and a message
//! that decodes encodes to bytes that decode to the same encoding (floats
//! may be NaN, so messages are compared by their bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::frame;
use tessera::proto::app::AppMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = frame::decode::<AppMsg>(data) {
        let once = frame::encode_body(&msg);
        let again = frame::decode::<AppMsg>(&once).map(|m| frame::encode_body(&m));
        assert_eq!(again.ok(), Some(once));
    }
});
