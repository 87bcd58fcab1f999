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

/// One entity's position in a [`ServerDatagram::Positions`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PosUpdate {
    /// Which entity.
    pub entity: EntityId,
    /// Where.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
}

/// Server → client datagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerDatagram {
    /// Positions of visible entities, nearest first.
    Positions {
        /// Server time of these positions, microseconds since the Unix epoch.
        sent_us: u64,
        /// The updates.
        updates: Vec<PosUpdate>,
    },
}
