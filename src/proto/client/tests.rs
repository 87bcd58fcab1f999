use super::*;
use crate::frame::encode_body;
use proptest::prelude::*;

fn update() -> impl Strategy<Value = PosUpdate> {
    (
        any::<u32>(),
        any::<i16>(),
        any::<i16>(),
        any::<i16>(),
        any::<u16>(),
    )
        .prop_map(|(index, x, z, y, yaw)| PosUpdate {
            index,
            x: Fixed16::from_i16(x),
            z: Fixed16::from_i16(z),
            y,
            yaw: Fixed16::from_u16(yaw),
        })
}

proptest! {
    /// The hand-written encoding is postcard's, byte for byte.
    #[test]
    fn written_positions_are_postcards(
        sent_us in any::<u64>(),
        origin in any::<[f32; 3]>(),
        scale in any::<f32>(),
        updates in prop::collection::vec(update(), 0..200),
    ) {
        let frame = Frame { origin, scale };
        let mut written = Vec::new();
        write_positions(&mut written, false, sent_us, &frame, &updates);
        let msg = ServerDatagram::Positions { sent_us, origin, scale, updates: updates.clone() };
        prop_assert_eq!(&written, &encode_body(&msg));
        let mut written = Vec::new();
        write_positions(&mut written, true, sent_us, &frame, &updates);
        let msg = ServerMsg::Rests { sent_us, origin, scale, updates: updates.clone() };
        prop_assert_eq!(&written, &encode_body(&msg));
        for u in &updates {
            prop_assert_eq!(u.encoded_len(), encode_body(u).len());
        }
    }
}

#[test]
fn positions_round_halves_away_from_zero_as_f32_round_does() {
    let mut cases = vec![0.0f32, 0.5, 1.5, 2.5, 0.49999997, 32767.4, -32768.4];
    cases.extend((0..20_000).map(|i| (i as f32 - 10_000.0) * 0.2501));
    for v in cases {
        for v in [v, -v] {
            assert_eq!(super::round_half_away(v), v.round() as i32, "{v}");
        }
    }
}
