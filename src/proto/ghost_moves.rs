//! The packed encoding of [`AppMsg::GhostMoves`](super::app::AppMsg): a
//! tick's plain ghost moves from one cell to another, the most frequent
//! message between cellapps in a crowd. Each move is 32 fixed bytes in one
//! byte string (postcard: a varint length, then the bytes), so encoding is
//! a copy and decoding reads fixed offsets, where a list of structs costs a
//! varint or a float read per field through serde.
//!
//! A move: `entity` u64, `stamp` (u32, u32), `pos` 3 × f32, `yaw` f32, all
//! little-endian.

use serde::de::{Error, Visitor};
use serde::{Deserializer, Serializer};

use super::app::{GhostMove, MAX_GHOST_MOVES};
use crate::EntityId;

/// Bytes of one packed move.
pub const MOVE_BYTES: usize = 32;

/// Packs `moves` into one byte string.
pub fn serialize<S: Serializer>(moves: &[GhostMove], s: S) -> Result<S::Ok, S::Error> {
    let mut buf = Vec::with_capacity(moves.len() * MOVE_BYTES);
    for m in moves {
        buf.extend_from_slice(&pack(m));
    }
    s.serialize_bytes(&buf)
}

/// The 32 bytes of one move.
fn pack(m: &GhostMove) -> [u8; MOVE_BYTES] {
    let mut out = [0; MOVE_BYTES];
    out[..8].copy_from_slice(&m.entity.0.to_le_bytes());
    out[8..12].copy_from_slice(&m.stamp.0.to_le_bytes());
    out[12..16].copy_from_slice(&m.stamp.1.to_le_bytes());
    for (v, at) in m.pos.iter().zip([16, 20, 24]) {
        out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    out[28..].copy_from_slice(&m.yaw.to_le_bytes());
    out
}

/// Unpacks a byte string of whole moves, at most [`MAX_GHOST_MOVES`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<GhostMove>, D::Error> {
    d.deserialize_bytes(Packed)
}

struct Packed;

impl Visitor<'_> for Packed {
    type Value = Vec<GhostMove>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at most {MAX_GHOST_MOVES} ghost moves of {MOVE_BYTES} bytes each"
        )
    }

    fn visit_bytes<E: Error>(self, bytes: &[u8]) -> Result<Vec<GhostMove>, E> {
        if !bytes.len().is_multiple_of(MOVE_BYTES) || bytes.len() / MOVE_BYTES > MAX_GHOST_MOVES {
            return Err(E::invalid_length(bytes.len(), &self));
        }
        let (moves, _) = bytes.as_chunks::<MOVE_BYTES>();
        Ok(moves.iter().map(unpack).collect())
    }
}

/// One move from its 32 bytes (a fixed-size array: the reads need no
/// bounds checks).
fn unpack(b: &[u8; MOVE_BYTES]) -> GhostMove {
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let f32_at = |i: usize| f32::from_bits(u32_at(i));
    let mut id = [0; 8];
    id.copy_from_slice(&b[..8]);
    GhostMove {
        entity: EntityId(u64::from_le_bytes(id)),
        stamp: (u32_at(8), u32_at(12)),
        pos: [f32_at(16), f32_at(20), f32_at(24)],
        yaw: f32_at(28),
    }
}
