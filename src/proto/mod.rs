//! The wire protocol: every message that crosses a process boundary.
//!
//! Messages are postcard-encoded. On a QUIC stream each message is a frame:
//! a 4-byte little-endian length, then that many bytes (see [`crate::frame`]).
//! Datagrams carry one message each, unframed. postcard has no field tags, so
//! messages change only by appending enum variants; golden tests in this
//! module pin the bytes. `docs/protocol.md` describes the encoding for
//! implementers in other languages.
//!
//! - [`login`]: client ↔ manager login endpoint.
//! - [`client`]: client ↔ proxy on a baseapp.
//! - [`app`]: between the processes of a cluster.

pub mod app;
pub mod client;
pub mod ghost_moves;
pub mod login;

/// Close codes an application uses when it closes a connection on purpose.
pub mod close {
    /// Normal end (logout, shutdown).
    pub const DONE: u32 = 0;
    /// The peer broke the protocol (bad frame, bad value, forbidden call).
    pub const PROTOCOL: u32 = 1;
    /// The peer was refused (ticket, definitions, version).
    pub const REFUSED: u32 = 2;
    /// The peer could not keep up.
    pub const SLOW: u32 = 3;
    /// The server is going away.
    pub const SHUTDOWN: u32 = 4;
    /// The player's entity moved to another baseapp (this one is
    /// retiring): resume the session, and the manager says where.
    pub const MOVED: u32 = 5;
}

use serde::{Deserialize, Serialize};

/// The protocol's major version. ALPN names carry it; a peer speaking another
/// major version cannot connect.
pub const PROTOCOL_MAJOR: u16 = 2;

/// ALPN of a game client's connection to a baseapp.
pub const ALPN_CLIENT: &[u8] = b"tessera-client/2";
/// ALPN of a login connection to the manager.
pub const ALPN_LOGIN: &[u8] = b"tessera-login/2";
/// ALPN of a resume connection to the manager (same port as login).
pub const ALPN_RESUME: &[u8] = b"tessera-resume/2";
/// ALPN of a link between two processes of a cluster.
pub const ALPN_APP: &[u8] = b"tessera-app/6";

/// A one-time login ticket: the manager gets it from a baseapp and gives it to
/// the client, which presents it to that baseapp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ticket(pub [u8; 16]);

/// The SHA-256 of a session token: what the apps of a cluster keep and
/// pass among themselves, so that no copy of a base and no message between
/// apps carries a token a client could resume with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &Ticket) -> TokenHash {
        use sha2::{Digest, Sha256};
        TokenHash(Sha256::digest(token.0).into())
    }
}

/// A position on the wire: x, y (height), z in metres.
pub type Pos = [f32; 3];

/// True if every coordinate is a finite number.
pub fn finite(pos: &Pos) -> bool {
    pos.iter().all(|c| c.is_finite())
}

#[cfg(test)]
mod garbage;
#[cfg(test)]
mod golden;
