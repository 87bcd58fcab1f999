//! Login: a client opens a connection with ALPN [`super::ALPN_LOGIN`] to the
//! manager, sends one [`LoginRequest`] frame on a bidirectional stream and
//! reads one [`LoginReply`] frame. A client that lost its connection does
//! the same with ALPN [`super::ALPN_RESUME`] and a [`ResumeRequest`].

use super::Ticket;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The longest account name.
pub const MAX_NAME_BYTES: usize = 32;
/// The longest password.
pub const MAX_PASSWORD_BYTES: usize = 128;

/// A client asks to log in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The client's protocol major version.
    pub protocol: u16,
    /// SHA-256 digest of the client's entity definitions.
    pub defs_digest: [u8; 32],
    /// Account name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Create the account if the name is free.
    pub create: bool,
}

/// Why a login was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// The client speaks another protocol version.
    ProtocolVersion,
    /// The client's definitions differ from the server's.
    DefinitionsMismatch,
    /// Unknown name or wrong password.
    BadCredentials,
    /// The name or password is not acceptable.
    InvalidRequest,
    /// No baseapp can take the client now.
    Unavailable,
    /// Something failed on the server.
    Internal,
    /// Too many logins from this address or to this account: wait, then
    /// try again. No password was checked.
    RateLimited,
}

/// A client whose connection was lost asks to get back into its entity,
/// on a connection with ALPN [`super::ALPN_RESUME`] to the login port; the
/// answer is a [`LoginReply`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResumeRequest {
    /// The client's protocol major version.
    pub protocol: u16,
    /// SHA-256 digest of the client's entity definitions.
    pub defs_digest: [u8; 32],
    /// The entity it played.
    pub entity: crate::ids::EntityId,
    /// The session token from `ServerMsg::Session`.
    pub token: super::Ticket,
}

/// The manager's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LoginReply {
    /// Connect to `baseapp` and present `ticket`.
    Granted {
        /// The baseapp's client address.
        baseapp: SocketAddr,
        /// The one-time ticket.
        ticket: Ticket,
    },
    /// Refused, with a reason and a message for people.
    Refused {
        /// Machine-readable reason.
        reason: RefuseReason,
        /// What went wrong, for the player or the log.
        message: String,
    },
}
