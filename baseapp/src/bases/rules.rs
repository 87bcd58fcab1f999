//! Why a client's connection ends: refused at the door ([`Refusal`]), for
//! breaking the protocol ([`Violation`]), or for an ordinary reason. Each is
//! a typed value with the numbers that matter; the driver turns it into the
//! close code and the reason the client reads.

use tessera::proto::close;
use tessera::EntityId;

/// Why a client was not let in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It speaks another protocol version.
    #[error("protocol {theirs} is not supported; this server speaks {ours}")]
    ProtocolVersion {
        /// The client's.
        theirs: u16,
        /// The server's.
        ours: u16,
    },
    /// It has other entity definitions.
    #[error("entity definitions digest mismatch: client has {theirs}, server has {ours}")]
    DefinitionsMismatch {
        /// The client's digest, in hex.
        theirs: String,
        /// The server's digest, in hex.
        ours: String,
    },
    /// Its ticket was never issued here, was used already, or expired.
    #[error("unknown or expired ticket")]
    BadTicket,
    /// The account's entity is already in the world and cannot be taken over.
    #[error("this account is already in the world")]
    AlreadyInWorld,
    /// The definitions have no player type.
    #[error("the server has no player type")]
    NoPlayerType,
    /// The session it resumes has ended.
    #[error("the session has ended; log in again")]
    SessionEnded,
    /// The entity it resumes is of a type the definitions lack.
    #[error("entity type is unknown")]
    UnknownType,
    /// The entity it resumes belongs to no account.
    #[error("the entity has no player")]
    NoPlayer,
    /// The baseapp is stopping.
    #[error("server shutting down")]
    ShuttingDown,
    /// The baseapp has not registered with its manager yet.
    #[error("the server is not up yet")]
    NotUp,
    /// Storage could not load its player.
    #[error("cannot load the player: {0}")]
    LoadFailed(String),
    /// Its stored player is of a type the definitions lack.
    #[error("stored player type {0} is not defined")]
    StoredTypeUnknown(String),
    /// Its stored player does not read back.
    #[error("cannot read the stored player: {0}")]
    Unreadable(String),
    /// The baseapp has no entity ids left until the manager sends more.
    #[error("the server is out of entity ids; try again")]
    OutOfIds,
}

/// How a client broke the protocol; it loses its connection, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A second `Hello` on the same connection.
    #[error("a second hello")]
    SecondHello,
    /// A call before the welcome.
    #[error("a call before the welcome")]
    CallBeforeWelcome,
    /// A move to a position that is not a number.
    #[error("a move to a non-finite position")]
    NonFiniteMove,
    /// A call for an entity that is gone.
    #[error("entity is gone")]
    EntityGone,
    /// A method index the type does not have.
    #[error("{ty} has no method #{method}")]
    NoSuchMethod {
        /// The entity's type.
        ty: String,
        /// The index called.
        method: u16,
    },
    /// A method clients may not call.
    #[error("method {ty}.{method} may not be called by clients")]
    NotExposed {
        /// The entity's type.
        ty: String,
        /// The method.
        method: String,
    },
    /// A client-side method, which the server calls on clients.
    #[error("client method {ty}.{method} cannot be called by clients")]
    ClientMethod {
        /// The entity's type.
        ty: String,
        /// The method.
        method: String,
    },
    /// The wrong number of arguments.
    #[error("method {ty}.{method} takes {wanted} arguments, got {got}")]
    ArgumentCount {
        /// The entity's type.
        ty: String,
        /// The method.
        method: String,
        /// How many it takes.
        wanted: usize,
        /// How many came.
        got: usize,
    },
    /// An argument of the wrong type or out of range.
    #[error("method {ty}.{method} argument {index}: {problem}")]
    BadArgument {
        /// The entity's type.
        ty: String,
        /// The method.
        method: String,
        /// Which argument.
        index: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// A frame or datagram that does not decode (the driver found it).
    #[error("{0}")]
    Malformed(String),
    /// More calls than a base holds while its entity is being placed.
    #[error("too many calls before the entity is in the world")]
    AheadOfEntity,
    /// A call naming an entity the client has not been shown (its cell
    /// found it).
    #[error("method {ty}.{method} names entity {entity}, which this client has not seen")]
    UnseenEntity {
        /// The entity's type.
        ty: String,
        /// The method.
        method: String,
        /// The entity named.
        entity: EntityId,
    },
}

/// Why the baseapp closes a client's connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Closing {
    /// The player logged out.
    #[error("logged out")]
    LoggedOut,
    /// The client came back on a newer connection, which takes over.
    #[error("resumed elsewhere")]
    ResumedElsewhere,
    /// The baseapp is stopping.
    #[error("server shutting down")]
    Shutdown,
    /// The baseapp is retiring and another took the entity: resume there.
    #[error("moved to another baseapp")]
    Moved,
    /// It was not let in.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// It broke the protocol.
    #[error(transparent)]
    Violation(#[from] Violation),
}

impl Closing {
    /// The QUIC application close code the client gets.
    pub fn code(&self) -> u32 {
        match self {
            Closing::LoggedOut | Closing::ResumedElsewhere => close::DONE,
            Closing::Shutdown => close::SHUTDOWN,
            Closing::Moved => close::MOVED,
            Closing::Refused(_) => close::REFUSED,
            Closing::Violation(_) => close::PROTOCOL,
        }
    }
}
