//! Random bytes never crash a decoder: every message type a peer can send
//! decodes to a value or to an error, whatever the input (the frame reader
//! bounds the length before this), and a value that decodes encodes again
//! without trouble.

use super::app::AppMsg;
use super::client::{ClientDatagram, ClientMsg, ServerDatagram, ServerMsg};
use super::login::{LoginReply, LoginRequest};
use crate::frame::{decode, encode_body};
use proptest::prelude::*;

fn survives<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    if let Ok(msg) = decode::<T>(bytes) {
        let again = encode_body(&msg);
        // A decoded value re-encodes to something that decodes again.
        prop_assert!(decode::<T>(&again).is_ok());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        survives::<ClientMsg>(&bytes)?;
        survives::<ClientDatagram>(&bytes)?;
        survives::<ServerMsg>(&bytes)?;
        survives::<ServerDatagram>(&bytes)?;
        survives::<LoginRequest>(&bytes)?;
        survives::<LoginReply>(&bytes)?;
        survives::<AppMsg>(&bytes)?;
    }

    /// Huge announced lengths inside a message (a string or list claiming
    /// gigabytes) fail cleanly instead of allocating.
    #[test]
    fn huge_inner_lengths_fail_cleanly(variant in 0u8..4, tail in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut bytes = vec![variant, 0xff, 0xff, 0xff, 0xff, 0x0f];
        bytes.extend(tail);
        survives::<ClientMsg>(&bytes)?;
        survives::<AppMsg>(&bytes)?;
    }
}
