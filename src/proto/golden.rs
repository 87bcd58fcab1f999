//! Golden bytes: the encoding of representative messages, written out by hand
//! from postcard's rules (varint integers and lengths, variant index first,
//! little-endian floats). A change that breaks one of these breaks every
//! client in the field.

use super::app::{AppMsg, Load};
use super::client::{ClientDatagram, ClientMsg, Frame, ServerDatagram, ServerMsg};
use super::login::{LoginReply, LoginRequest, RefuseReason};
use super::Ticket;
use crate::defs::TypeId;
use crate::frame::{decode, encode, encode_body};
use crate::ids::{AppId, EntityId};
use crate::value::Value;

fn roundtrip<T>(msg: &T, bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(encode_body(msg), bytes, "encoding of {msg:?}");
    assert_eq!(&decode::<T>(bytes).expect("decodes"), msg);
}

#[test]
fn client_move_datagram() {
    roundtrip(
        &ClientDatagram::Move {
            seq: 300,
            pos: [1.0, 0.0, -2.0],
            yaw: 0.5,
        },
        &[
            0x00, // variant Move
            0xac, 0x02, // seq 300 as varint
            0x00, 0x00, 0x80, 0x3f, // 1.0
            0x00, 0x00, 0x00, 0x00, // 0.0
            0x00, 0x00, 0x00, 0xc0, // -2.0
            0x00, 0x00, 0x00, 0x3f, // 0.5
        ],
    );
}

#[test]
fn client_call_frame() {
    let msg = ClientMsg::Call {
        method: 2,
        args: vec![Value::Int(-1), Value::String("hi".into())],
    };
    roundtrip(
        &msg,
        &[
            0x01, // variant Call
            0x02, // method 2
            0x02, // two args
            0x01, 0x01, // Value::Int, zigzag(-1) = 1
            0x03, 0x02, b'h', b'i', // Value::String, length 2
        ],
    );
    // On a stream the same bytes follow a 4-byte little-endian length.
    assert_eq!(&encode(&msg)[..4], &[9, 0, 0, 0]);
}

#[test]
fn hello_frame() {
    let mut bytes = vec![0x00, 0x01]; // variant Hello, protocol 1
    bytes.extend([7u8; 32]); // digest: 32 raw bytes, no length
    bytes.extend([9u8; 16]); // ticket: 16 raw bytes
    roundtrip(
        &ClientMsg::Hello {
            protocol: 1,
            defs_digest: [7; 32],
            ticket: Ticket([9; 16]),
        },
        &bytes,
    );
}

#[test]
fn enter_and_positions() {
    roundtrip(
        &ServerMsg::Enter {
            entity: EntityId(5),
            index: 3,
            type_id: TypeId(1),
            pos: [0.0, 0.0, 0.0],
            yaw: 0.0,
            props: vec![(0, Value::Bool(true))],
            sent_us: 1,
        },
        &[
            0x02, // variant Enter
            0x05, // entity 5
            0x03, // index 3
            0x01, // type 1
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // pos
            0, 0, 0, 0, // yaw
            0x01, 0x00, 0x00, 0x01, // one prop: index 0, Value::Bool(true)
            0x01, // sent_us
        ],
    );
    // An entity a metre east, half a metre south and a centimetre below
    // the watcher at (10, 0, -2), facing a quarter turn.
    let frame = Frame::around([10.0, 0.0, -2.0], 100.0);
    let update = frame
        .encode(1, [11.0, -0.01, -2.5], std::f32::consts::FRAC_PI_2)
        .expect("within reach");
    let msg = ServerDatagram::Positions {
        sent_us: 128,
        origin: frame.origin,
        scale: frame.scale,
        updates: vec![update],
    };
    let header = [
        0x00, // variant Positions
        0x80, 0x01, // sent_us 128
        0x00, 0x00, 0x20, 0x41, // origin x 10.0
        0x00, 0x00, 0x00, 0x00, // origin y 0.0
        0x00, 0x00, 0x00, 0xc0, // origin z -2.0
        0x0a, 0xd7, 0x23, 0x3c, // scale 0.01
        0x01, // one update
    ];
    let one = [
        0x01, // index 1
        0x64, 0x00, // x: 100 steps
        0xce, 0xff, // z: -50 steps
        0x01, // y: -1 step, zigzag
        0x00, 0x40, // yaw: 16384 / 65536 of a turn
    ];
    roundtrip(&msg, &[&header[..], &one[..]].concat());
    let (pos, yaw) = frame.decode(&update);
    assert_eq!(pos, [11.0, -0.01, -2.5]);
    assert!((yaw - std::f32::consts::FRAC_PI_2).abs() < 1e-6);
    // The same update, reliably, in a `Rests` on the stream.
    let rests = ServerMsg::Rests {
        sent_us: 128,
        origin: frame.origin,
        scale: frame.scale,
        updates: vec![update],
    };
    let mut bytes = header.to_vec();
    bytes[0] = 0x0a; // variant 10: Rests
    roundtrip(&rests, &[&bytes[..], &one[..]].concat());
    // Beyond the frame's reach there is no update to send.
    assert_eq!(frame.encode(1, [10.0, 400.0, -2.0], 0.0), None);
}

#[test]
fn login_messages() {
    let mut bytes = vec![0x01]; // protocol 1
    bytes.extend([0u8; 32]);
    bytes.extend([0x01, b'a', 0x02, b'p', b'w', 0x01]); // name, password, create
    roundtrip(
        &LoginRequest {
            protocol: 1,
            defs_digest: [0; 32],
            name: "a".into(),
            password: "pw".into(),
            create: true,
        },
        &bytes,
    );
    roundtrip(
        &LoginReply::Refused {
            reason: RefuseReason::BadCredentials,
            message: "x".into(),
        },
        &[0x01, 0x02, 0x01, b'x'],
    );
}

#[test]
fn app_heartbeat() {
    roundtrip(
        &AppMsg::Heartbeat(Load {
            busy: 0.5,
            entities: 3,
            clients: 1,
        }),
        &[0x03, 0x00, 0x00, 0x00, 0x3f, 0x03, 0x01],
    );
}

#[test]
fn app_link_ack() {
    roundtrip(
        &AppMsg::LinkAck { next: 300 },
        &[
            0x28, // variant 40, LinkAck
            0xac, 0x02, // next 300 as varint
        ],
    );
}

#[test]
fn app_ghost_moves() {
    roundtrip(
        &AppMsg::GhostMoves(vec![crate::proto::app::GhostMove {
            entity: EntityId(0x0102),
            stamp: (3, 4),
            pos: [1.0, 0.0, -2.0],
            yaw: 0.5,
        }]),
        &[
            0x19, // variant 25, GhostMoves
            0x20, // 32 bytes: one move
            0x02, 0x01, 0, 0, 0, 0, 0, 0, // entity 0x0102
            0x03, 0, 0, 0, 0x04, 0, 0, 0, // stamp (3, 4)
            0, 0, 0x80, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0, // pos 1, 0, -2
            0, 0, 0, 0x3f, // yaw 0.5
        ],
    );
    // Not a whole number of moves, and one move too many.
    for len in [31usize, 32 * 1025] {
        let mut bytes = vec![0x19];
        let mut n = len;
        while n >= 0x80 {
            bytes.push((n as u8) | 0x80);
            n >>= 7;
        }
        bytes.push(n as u8);
        bytes.resize(bytes.len() + len, 0);
        assert!(
            crate::frame::decode::<AppMsg>(&bytes).is_err(),
            "{len} bytes"
        );
    }
}

#[test]
fn app_ghost_creates() {
    roundtrip(
        &AppMsg::GhostCreates(vec![crate::proto::app::GhostState {
            entity: EntityId(7),
            stamp: (1, 2),
            type_id: TypeId(3),
            real: AppId(4),
            pos: [1.0, 0.0, -2.0],
            yaw: 0.5,
            props: vec![(0, Value::Int(5))],
        }]),
        &[
            0x35, // variant 53, GhostCreates
            0x01, // one state
            0x07, // entity 7
            0x01, 0x02, // stamp (1, 2)
            0x03, // type 3
            0x04, // real: app 4
            0, 0, 0x80, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0, // pos 1, 0, -2
            0, 0, 0, 0x3f, // yaw 0.5
            0x01, 0x00, 0x01, 0x0a, // one prop: index 0, Value::Int, zigzag(5) = 10
        ],
    );
}

#[test]
fn app_ghost_checks_and_stale() {
    roundtrip(
        &AppMsg::GhostChecks(vec![crate::proto::app::GhostCheck {
            entity: EntityId(7),
            stamp: (1, 2),
            pos: [1.0, 0.0, -2.0],
            yaw: 0.5,
            digest: 0x0102,
        }]),
        &[
            0x36, // variant 54, GhostChecks
            0x01, // one check
            0x07, // entity 7
            0x01, 0x02, // stamp (1, 2)
            0, 0, 0x80, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0xc0, // pos 1, 0, -2
            0, 0, 0, 0x3f, // yaw 0.5
            0x82, 0x02, // digest 0x0102 as varint
        ],
    );
    roundtrip(
        &AppMsg::GhostsStale(vec![EntityId(7), EntityId(300)]),
        &[
            0x37, // variant 55, GhostsStale
            0x02, // two entities
            0x07, 0xac, 0x02, // 7, 300
        ],
    );
    // The digest: the first 8 bytes of the SHA-256 of the values' encoding.
    use sha2::{Digest, Sha256};
    let values = [&Value::Int(5), &Value::String("x".into())];
    let hash = Sha256::digest(encode_body(&values.to_vec()));
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    assert_eq!(
        crate::proto::app::GhostCheck::digest(&values),
        u64::from_le_bytes(first)
    );
    assert_ne!(
        crate::proto::app::GhostCheck::digest(&values),
        crate::proto::app::GhostCheck::digest(&[&Value::Int(5)])
    );
}

#[test]
fn app_mail() {
    roundtrip(
        &AppMsg::Mail(Box::new(crate::proto::app::Mail {
            to: EntityId(5),
            from: EntityId(9),
            seq: 1,
            method: 2,
            args: vec![Value::Int(-3)],
            hops: 0,
        })),
        &[
            0x2a, // variant 42, Mail
            0x05, // to 5
            0x09, // from 9
            0x01, // seq 1
            0x02, // method 2
            0x01, 0x01, 0x05, // one argument: Int, -3 zigzagged
            0x00, // hops 0
        ],
    );
}

#[test]
fn values_of_every_kind() {
    use crate::value::{MapType, ValueType};
    let item = ValueType::Map(MapType {
        name: "Item".into(),
        keys: vec![
            ("count".into(), ValueType::Int),
            ("kind".into(), ValueType::String),
        ],
    });
    let cases: [(Value, ValueType, &[u8]); 4] = [
        (
            Value::Bytes(vec![0xab, 0xcd]),
            ValueType::Bytes,
            &[0x05, 0x02, 0xab, 0xcd],
        ),
        (
            Value::Entity(EntityId(300)),
            ValueType::Entity,
            &[0x06, 0xac, 0x02],
        ),
        (
            Value::List(vec![Value::Int(1), Value::Int(2)]),
            ValueType::List(Box::new(ValueType::Int)),
            &[0x07, 0x02, 0x01, 0x02, 0x01, 0x04],
        ),
        (
            Value::Map(vec![Value::Int(2), Value::String("axe".into())]),
            item,
            &[0x08, 0x02, 0x01, 0x04, 0x03, 0x03, b'a', b'x', b'e'],
        ),
    ];
    for (value, ty, bytes) in cases {
        assert_eq!(value.check(&ty), Ok(()));
        roundtrip(&value, bytes);
    }
}
