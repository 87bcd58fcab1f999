//! Client ↔ proxy messages. The client opens one bidirectional stream for
//! [`ClientMsg`] / [`ServerMsg`] frames; movement goes up as
//! [`ClientDatagram`]s and other entities' positions come down as
//! [`ServerDatagram`]s.
//!
//! Everything a cell sends a client is encoded once, on the cell, and the
//! proxy forwards the bytes.

use super::{Pos, Ticket};
use crate::defs::TypeId;
use crate::ids::EntityId;
use crate::value::Value;
use serde::{Deserialize, Serialize};

/// A property index and its value.
pub type PropValue = (u16, Value);

/// Client → server, on the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// First message: who the client is and what it speaks.
    Hello {
        /// Protocol major version.
        protocol: u16,
        /// Digest of the client's definitions.
        defs_digest: [u8; 32],
        /// The ticket from login.
        ticket: Ticket,
    },
    /// Call an exposed method of the client's own entity.
    Call {
        /// Method index within the entity's type.
        method: u16,
        /// Arguments, checked against the method's declaration.
        args: Vec<Value>,
    },
    /// Leave the world; the entity is saved.
    Logout,
}

/// Server → client, on the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The client is in: its entity and what it may see of it.
    Welcome {
        /// The client's own entity.
        entity: EntityId,
        /// Its type.
        type_id: TypeId,
        /// Where it is.
        pos: Pos,
        /// Which way it faces (radians about y).
        yaw: f32,
        /// Properties the own client sees.
        props: Vec<PropValue>,
        /// Ticks per second on the cell.
        tick_hz: u16,
        /// The space's bounds on x/z: min x, min z, max x, max z.
        bounds: [f32; 4],
    },
    /// The connection is refused; the connection closes after this.
    Refused {
        /// Why.
        reason: String,
    },
    /// An entity entered the client's AoI.
    Enter {
        /// Which.
        entity: EntityId,
        /// Its index for this client: [`PosUpdate`]s name it by this until
        /// it leaves. Small (the lowest free), and not given to another
        /// entity for [`INDEX_QUARANTINE_S`] seconds after it leaves.
        index: u32,
        /// Its type.
        type_id: TypeId,
        /// Where.
        pos: Pos,
        /// Facing.
        yaw: f32,
        /// Properties other clients see.
        props: Vec<PropValue>,
        /// Server time of this state, microseconds since the Unix epoch.
        sent_us: u64,
    },
    /// An entity left the client's AoI.
    Leave {
        /// Which.
        entity: EntityId,
    },
    /// Properties of a visible entity (or the client's own) changed.
    Props {
        /// Which entity.
        entity: EntityId,
        /// New values.
        props: Vec<PropValue>,
    },
    /// The server calls a client method.
    Call {
        /// On which entity.
        entity: EntityId,
        /// Method index.
        method: u16,
        /// Arguments.
        args: Vec<Value>,
    },
    /// The server did not accept the client's movement; this is where it is.
    Corrected {
        /// The authoritative position.
        pos: Pos,
        /// Facing.
        yaw: f32,
        /// Why the move was refused.
        reason: String,
    },
    /// A visible entity came to rest here; sent reliably so a lost datagram
    /// never leaves a stale position behind.
    Rest {
        /// Which.
        entity: EntityId,
        /// Where.
        pos: Pos,
        /// Facing.
        yaw: f32,
        /// Server time of this state.
        sent_us: u64,
    },
    /// The entity stands here now, and what the client saw around it is
    /// void (it is sent again as it comes into view). Sent when the cellapp
    /// simulating the entity died and it was brought back, when the client
    /// resumed its session on a new connection (after `Welcome` and
    /// `Session`), and when the client's stream was started over because
    /// frames for it were lost with a cellapp that died.
    Restored {
        /// Where the entity is.
        pos: Pos,
        /// Facing.
        yaw: f32,
    },
    /// Sent after the welcome: a secret the client presents on the resume
    /// endpoint (ALPN [`super::ALPN_RESUME`]) to get back into its entity,
    /// without the password, if its connection is lost or its baseapp
    /// dies. Good until the session ends; each welcome brings a new one.
    Session {
        /// The token.
        token: Ticket,
    },
    /// Visible entities came to rest here: like [`ServerMsg::Rest`], for
    /// many entities at once, each named by its index and placed as in a
    /// [`ServerDatagram::Positions`] (to a step of `scale`).
    Rests {
        /// Server time of these positions.
        sent_us: u64,
        /// The point the updates are measured from (the watching entity).
        origin: Pos,
        /// Metres per step of the updates.
        scale: f32,
        /// The updates.
        updates: Vec<PosUpdate>,
    },
}

/// Client → server datagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientDatagram {
    /// The client's entity moved. Latest sequence wins; older ones are dropped.
    Move {
        /// Increasing per client.
        seq: u32,
        /// New position.
        pos: Pos,
        /// Facing.
        yaw: f32,
    },
}

/// Seconds after an entity leaves before its index names another: a
/// datagram of positions sent before the leave cannot move the next holder
/// of the index unless it arrives that much later than the stream.
pub const INDEX_QUARANTINE_S: u32 = 5;

/// One entity's position in a [`ServerDatagram::Positions`]: the entity by
/// its index, its place as steps of the packet's `scale` from the packet's
/// `origin`, its facing in 65,536ths of a turn. Eight bytes for an index
/// under 128 and a height within 63 steps of the origin's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PosUpdate {
    /// The entity's index (from its [`ServerMsg::Enter`]), a varint.
    pub index: u32,
    /// Steps from the origin along x: two bytes, little-endian.
    pub x: Fixed16,
    /// Steps from the origin along z: two bytes, little-endian.
    pub z: Fixed16,
    /// Steps from the origin along y: a zigzag varint (one byte within 63
    /// steps).
    pub y: i16,
    /// Facing: `yaw / 2π × 65536`, two bytes, little-endian.
    pub yaw: Fixed16,
}

impl PosUpdate {
    /// Its encoded length in bytes.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        varint_len(u64::from(self.index)) + 2 + 2 + varint_len(u64::from(zigzag(self.y))) + 2
    }

    /// Appends its encoding, byte for byte what postcard writes.
    #[inline]
    pub fn write(&self, out: &mut Vec<u8>) {
        put_varint(out, u64::from(self.index));
        out.extend_from_slice(&self.x.0);
        out.extend_from_slice(&self.z.0);
        put_varint(out, u64::from(zigzag(self.y)));
        out.extend_from_slice(&self.yaw.0);
    }
}

/// The variant of [`ServerDatagram::Positions`].
const POSITIONS_VARIANT: u64 = 0;
/// The variant of [`ServerMsg::Rests`].
const RESTS_VARIANT: u64 = 10;

/// Appends the encoding of a [`ServerDatagram::Positions`] of `updates`
/// in `frame` (with `rests`, of a [`ServerMsg::Rests`], which has the same
/// fields), byte for byte what postcard writes for the message, without
/// building it: what a cell does for every client every tick.
pub fn write_positions(
    out: &mut Vec<u8>,
    rests: bool,
    sent_us: u64,
    frame: &Frame,
    updates: &[PosUpdate],
) {
    put_varint(
        out,
        if rests {
            RESTS_VARIANT
        } else {
            POSITIONS_VARIANT
        },
    );
    put_varint(out, sent_us);
    for v in frame.origin {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&frame.scale.to_le_bytes());
    put_varint(out, updates.len() as u64);
    for u in updates {
        u.write(out);
    }
}

#[inline]
fn zigzag(v: i16) -> u16 {
    ((v << 1) ^ (v >> 15)) as u16
}

/// Bytes of a varint of `v`.
#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Sixteen bits that travel as two little-endian bytes (postcard would
/// otherwise write a varint of up to three).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fixed16(pub [u8; 2]);

impl Fixed16 {
    /// From a signed value.
    #[inline]
    pub fn from_i16(v: i16) -> Fixed16 {
        Fixed16(v.to_le_bytes())
    }
    /// As a signed value.
    pub fn i16(self) -> i16 {
        i16::from_le_bytes(self.0)
    }
    /// From an unsigned value.
    #[inline]
    pub fn from_u16(v: u16) -> Fixed16 {
        Fixed16(v.to_le_bytes())
    }
    /// As an unsigned value.
    pub fn u16(self) -> u16 {
        u16::from_le_bytes(self.0)
    }
}

/// The finest step of a position: one centimetre.
pub const FINEST_STEP: f32 = 0.01;

/// How a packet's positions are measured: from `origin`, in steps of
/// `scale` metres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    /// The point positions are measured from.
    pub origin: Pos,
    /// Metres per step.
    pub scale: f32,
}

impl Frame {
    /// A frame centred on `origin` whose steps reach `reach` metres either
    /// way: one centimetre, or coarser if that does not reach.
    pub fn around(origin: Pos, reach: f32) -> Frame {
        Frame {
            origin,
            scale: (reach / f32::from(i16::MAX)).max(FINEST_STEP),
        }
    }

    /// An entity's place and facing as an update, if it is within reach.
    #[inline]
    pub fn encode(&self, index: u32, pos: Pos, yaw: f32) -> Option<PosUpdate> {
        // Rounded half away from zero by casts (`f32::round` is a call
        // into libm on x86-64, four of them per update).
        let step = |v: f32, o: f32| -> Option<i16> {
            let s = (v - o) / self.scale;
            (s.is_finite() && s > f32::from(i16::MIN) - 0.5 && s < f32::from(i16::MAX) + 0.5)
                .then(|| round_half_away(s) as i16)
        };
        let turn = yaw.rem_euclid(std::f32::consts::TAU) / std::f32::consts::TAU;
        Some(PosUpdate {
            index,
            x: Fixed16::from_i16(step(pos[0], self.origin[0])?),
            y: step(pos[1], self.origin[1])?,
            z: Fixed16::from_i16(step(pos[2], self.origin[2])?),
            yaw: Fixed16::from_u16((round_half_away(turn * 65536.0) as u32 & 0xffff) as u16),
        })
    }

    /// The place and facing an update gives.
    pub fn decode(&self, u: &PosUpdate) -> (Pos, f32) {
        let at = |s: i16, o: f32| o + f32::from(s) * self.scale;
        let yaw = f32::from(u.yaw.u16()) / 65536.0 * std::f32::consts::TAU;
        let yaw = if yaw > std::f32::consts::PI {
            yaw - std::f32::consts::TAU
        } else {
            yaw
        };
        (
            [
                at(u.x.i16(), self.origin[0]),
                at(u.y, self.origin[1]),
                at(u.z.i16(), self.origin[2]),
            ],
            yaw,
        )
    }
}

/// Server → client datagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerDatagram {
    /// Positions of visible entities, most urgent first.
    Positions {
        /// Server time of these positions, microseconds since the Unix epoch.
        sent_us: u64,
        /// The point the updates are measured from (the watching entity).
        origin: Pos,
        /// Metres per step of the updates.
        scale: f32,
        /// The updates.
        updates: Vec<PosUpdate>,
    },
}

impl ServerDatagram {
    /// The frame a `Positions` datagram's updates are measured in.
    pub fn frame(&self) -> Frame {
        match self {
            ServerDatagram::Positions { origin, scale, .. } => Frame {
                origin: *origin,
                scale: *scale,
            },
        }
    }
}

/// `v` rounded to the nearest integer, halves away from zero, as
/// `f32::round` does, for `v` within `i32`'s range: the cast truncates and
/// the fraction it left (exact in `f32`) decides.
#[inline]
fn round_half_away(v: f32) -> i32 {
    let t = v as i32;
    let f = v - t as f32;
    t + i32::from(f >= 0.5) - i32::from(f <= -0.5)
}

#[cfg(test)]
mod tests;
