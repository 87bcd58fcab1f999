//! Messages between the processes of a cluster, over links with ALPN
//! [`super::ALPN_APP`]: one bidirectional stream per link, [`AppMsg`] frames
//! both ways. Cellapps and baseapps dial the manager; baseapps dial cellapps.

use super::client::PropValue;
use super::{Pos, Ticket, TokenHash};
use crate::defs::TypeId;
use crate::ids::{AppId, EntityId, IdBlock};
use crate::layout::Layout;
use crate::value::Value;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// What a process does in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Simulates cells.
    Cellapp,
    /// Holds bases and client proxies.
    Baseapp,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Cellapp => "cellapp",
            Role::Baseapp => "baseapp",
        })
    }
}

/// The space's geometry and settings, as the manager hands it out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpaceInfo {
    /// Min x, min z, max x, max z.
    pub bounds: [f32; 4],
    /// Cell ticks per second.
    pub tick_hz: u16,
}

/// The SHA-256 of the certificate a process presents on its internal
/// links: who a link is, as the manager recorded it when the process
/// registered (design §10).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CertId(pub [u8; 32]);

impl std::fmt::Debug for CertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertId({self})")
    }
}

impl std::fmt::Display for CertId {
    /// The first eight bytes in hex: enough to tell certificates apart in
    /// a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

/// One app as others reach it: a cellapp in a layout, or a member in the
/// manager's lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellInfo {
    /// The app.
    pub app: AppId,
    /// Its internal address.
    pub addr: SocketAddr,
    /// The certificate it registered with; a link claiming to be `app`
    /// must present it.
    pub cert: CertId,
}

/// The cell half of an entity as the base keeps it: position and cell-side
/// properties (those the type persists).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellState {
    /// Position.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
    /// Cell-side properties.
    pub props: Vec<PropValue>,
}

/// How the proxy sends a client packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// As a frame on the client's stream.
    Reliable,
    /// As a datagram.
    Datagram,
}

/// Bytes for one client, encoded by the cell; the proxy forwards them as they are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientPacket {
    /// The client's entity.
    pub entity: EntityId,
    /// Stream frame or datagram.
    pub delivery: Delivery,
    /// For stream frames: the entity's output sequence, which keeps order
    /// when the entity moves cell (the base reorders); 0 for datagrams.
    pub seq: u64,
    /// An encoded `ServerMsg` or `ServerDatagram`. (Same bytes on the wire as
    /// a plain `Vec<u8>`, encoded in one copy instead of byte by byte.)
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// A load report from an app.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// Share of the tick period spent working, smoothed (cellapps).
    pub busy: f32,
    /// Entities held (reals on a cellapp, bases on a baseapp).
    pub entities: u32,
    /// Clients connected (baseapps).
    pub clients: u32,
}

/// A message on an app link. Append variants; never reorder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AppMsg {
    /// App → manager, first message: join the cluster.
    Register(Registration),
    /// Manager → app: welcome.
    Registered {
        /// The app's id.
        app: AppId,
        /// Entity ids it may hand out.
        ids: IdBlock,
        /// The space.
        space: SpaceInfo,
    },
    /// Manager → app: not welcome; the link closes.
    RegisterRefused {
        /// Why.
        reason: String,
    },
    /// App → manager, once a second.
    Heartbeat(Load),
    /// App → manager: its id block is running low.
    NeedIds,
    /// Manager → app: more ids.
    Ids(IdBlock),
    /// Manager → baseapps: where the cells are.
    Cells(Vec<CellInfo>),
    /// Manager → baseapp: make a login ticket.
    IssueTicket {
        /// Request id, echoed back.
        req: u64,
        /// Database id of the account.
        account: i64,
        /// Account name.
        name: String,
    },
    /// Baseapp → manager: the ticket.
    TicketIssued {
        /// The request.
        req: u64,
        /// The ticket.
        ticket: Ticket,
    },
    /// Base → cell: create the cell half of an entity.
    CreateEntity {
        /// The entity.
        entity: EntityId,
        /// Its type.
        type_id: TypeId,
        /// Its state.
        state: CellState,
        /// The real's version to start from: 0 for a new cell half; above
        /// any version a lost real may have reached when the base restores
        /// one, so its ghost messages are newer than anything before.
        version: u32,
    },
    /// Cell → base: the cell half is gone; this is its final state.
    EntityDestroyed {
        /// The entity.
        entity: EntityId,
        /// Final cell state.
        state: CellState,
    },
    /// Cell → base: periodic copy of the cell half.
    Backup {
        /// The entity.
        entity: EntityId,
        /// Its cell state now.
        state: CellState,
        /// The next channel sequence number the real expects: every message
        /// before it is applied, so the base may forget them.
        applied: u64,
    },
    /// Cell → base: packets for clients of this baseapp.
    ToClients(Vec<ClientPacket>),
    /// App → manager: the app is leaving on purpose.
    Goodbye,
    /// Manager → every app: the space layout, with where each cellapp is.
    /// Sent whenever it changes; apps act on the highest epoch they have.
    Layout {
        /// The layout.
        layout: Layout,
        /// Every cellapp's address.
        cells: Vec<CellInfo>,
    },
    /// Base → the entity's real (forwarded by cells that no longer hold it):
    /// one message in the entity's ordered channel. `seq` counts from 0 per
    /// cell half; the real applies each exactly once, in order.
    ToEntity {
        /// The entity.
        entity: EntityId,
        /// Its place in the channel.
        seq: u64,
        /// What to do.
        msg: EntityMsg,
    },
    /// Real's cell → another cell: hold a ghost (or refresh it whole).
    GhostCreate(Box<GhostState>),
    /// Real's cell → a ghost's cell: it moved or its ghosted properties changed.
    GhostUpdate {
        /// The entity.
        entity: EntityId,
        /// Orders ghost messages across real moves.
        stamp: Stamp,
        /// Position.
        pos: Pos,
        /// Facing.
        yaw: f32,
        /// Changed ghosted properties.
        props: Vec<PropValue>,
    },
    /// Real's cell → a ghost's cell: drop the ghost.
    GhostDelete {
        /// The entity.
        entity: EntityId,
        /// Orders ghost messages across real moves.
        stamp: Stamp,
    },
    /// Old cell → new cell: the whole real, which becomes real there.
    Onload(Box<Onload>),
    /// New real's cell → base: route the entity's channel here from now on.
    RealMoved {
        /// The entity.
        entity: EntityId,
        /// Where its real is.
        cell: AppId,
        /// How many times it has moved; older news is ignored.
        version: u32,
    },
    /// A destroyed entity's cell → every other cellapp: forget it.
    Forget {
        /// The entity.
        entity: EntityId,
    },
    /// Cellapp → manager, once a second: its cell's load.
    CellLoad(Box<crate::balance::CellReport>),
    /// Cellapp → manager: take my cell away and let me go (an operator
    /// asked, or the process got SIGTERM).
    Retire,
    /// Manager → retiring cellapp: your cell is gone from the layout; exit
    /// once every real has left.
    Retired,
    /// Real's cell → a ghost's cell: the tick's moves of many ghosts at
    /// once (at most [`MAX_GHOST_MOVES`]), each as a `GhostUpdate` without
    /// property changes; packed, 32 bytes a move (`super::ghost_moves`).
    GhostMoves(#[serde(with = "super::ghost_moves")] Vec<GhostMove>),
    /// Manager → every app: this app is dead (it stopped answering). Also
    /// baseapp → each cellapp: "stop hearing from it, then tell me what you
    /// know" — answered with [`AppMsg::DownSeen`].
    AppDown {
        /// The dead app.
        app: AppId,
    },
    /// Cellapp → baseapp: it has stopped taking messages from the dead app;
    /// everything it sent the baseapp before this came first. `lost` are
    /// this baseapp's entities whose real this cellapp handed to the dead
    /// app, with the version it handed over.
    DownSeen {
        /// The dead app.
        app: AppId,
        /// Entities whose real went to the dead app from here.
        lost: Vec<(EntityId, u32)>,
    },
    /// Baseapp → the baseapp chosen to hold its copy (rendezvous hashing of
    /// the entity id over the live baseapps): a whole base, every few
    /// seconds. The holder restores it if the owner dies.
    BaseBackup(Box<BaseCopy>),
    /// Baseapp → the holder of a base's copy: the base is gone (saved and
    /// logged out, or its copy now lives elsewhere); forget the copy.
    BaseGone {
        /// The entity.
        entity: EntityId,
    },
    /// Baseapp that restored a base → the entity's real (forwarded, as
    /// [`AppMsg::ToEntity`] is, by cells that no longer hold it): your base
    /// was on `dead` and is here now. Taken only if the real's base is
    /// still `dead`, so one restorer wins; answered with
    /// [`AppMsg::Rebased`] or [`AppMsg::NotRebased`].
    Rebase {
        /// The entity.
        entity: EntityId,
        /// The baseapp that restored the base.
        base: AppId,
        /// The dead baseapp.
        dead: AppId,
        /// The channel from the new base numbers from here on; the real
        /// drops anything the dead base sent and it has not yet applied.
        seq: u64,
    },
    /// Cellapp → the restoring baseapp: the real is yours; its state now.
    Rebased {
        /// The entity.
        entity: EntityId,
        /// The real's version.
        version: u32,
        /// Its cell state.
        state: CellState,
    },
    /// Cellapp → the restoring baseapp: no real of this entity is left
    /// here whose base is the dead one (it was destroyed, or another
    /// baseapp took it first).
    NotRebased {
        /// The entity.
        entity: EntityId,
    },
    /// Manager → every baseapp: a client presents a session token for
    /// this entity. The baseapp holding the entity's base, detached from its
    /// client, with that token, answers with [`AppMsg::TicketIssued`];
    /// every other answers [`AppMsg::NoSession`].
    FindSession {
        /// The manager's request id.
        req: u64,
        /// The client's entity.
        entity: EntityId,
        /// The hash of the token presented (the token itself stays with
        /// the manager).
        token: TokenHash,
    },
    /// Baseapp → manager: it holds no such session.
    NoSession {
        /// The manager's request id.
        req: u64,
    },
    /// Manager → every app: the live baseapps and their internal
    /// addresses (base copies go among them). Sent whenever they change.
    Baseapps(Vec<CellInfo>),
    /// Manager → every baseapp: an account passed its password check. The
    /// baseapp where its entity is (waiting for its client, or played on
    /// another connection, which gives way) answers with
    /// [`AppMsg::TicketIssued`]; every other answers [`AppMsg::NoSession`],
    /// and if all do, the manager asks one for a fresh ticket.
    FindPlayer {
        /// The manager's request id.
        req: u64,
        /// Database id of the account.
        account: i64,
    },
    /// App → manager, first message of a new link after the manager link
    /// dropped: the app was a member and is still running. A manager that
    /// restarted takes it back with [`AppMsg::Registered`] (same id, no
    /// ids) and rebuilds the cluster from what the apps report; a manager
    /// that declared the app dead answers [`AppMsg::RegisterRefused`].
    Rejoin(Box<Rejoin>),
    /// First message on a link between two apps, from the one that
    /// dialled: who it is, and how far it has received on the session
    /// between them (the peer sends again from there). Answered with
    /// [`AppMsg::LinkAccept`], or the connection is closed (code 2 for
    /// other definitions).
    LinkOpen {
        /// The app dialling.
        app: AppId,
        /// Its definitions digest.
        defs_digest: [u8; 32],
        /// The number of the next session message it expects.
        recv_next: u64,
    },
    /// The answer to [`AppMsg::LinkOpen`]: the link is up; messages on it
    /// are numbered from `recv_next` in this direction.
    LinkAccept {
        /// The app answering.
        app: AppId,
        /// The number of the next session message it expects.
        recv_next: u64,
    },
    /// Every session message before `next` has arrived; the sender may
    /// forget them. Not itself numbered.
    LinkAck {
        /// The number of the next session message expected.
        next: u64,
    },
    /// Cell → base: datagrams (positions) for clients of this baseapp. Not
    /// part of the link's session: not numbered, sent only while the
    /// connection is up, never kept or sent again — the next tick's
    /// positions supersede a lost one, as on the client's own connection.
    ClientDatagrams(Vec<ClientPacket>),
    /// Cell → cell: a call from one entity to a cell method of another,
    /// passed on toward the callee's real.
    Mail(Box<Mail>),
    /// Real → the cells holding its ghost: call a client method of the
    /// entity on every client that sees it there.
    Broadcast {
        /// The entity.
        entity: EntityId,
        /// The client method, by index in the entity's type.
        method: u16,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Real → its base: call a base method of the entity.
    ToBase {
        /// The entity.
        entity: EntityId,
        /// The base method, by index in the entity's type.
        method: u16,
        /// The arguments.
        args: Vec<Value>,
    },
    /// Real → its base: the entity's client called a cell method naming
    /// an entity it has not been shown; the base drops the client.
    UnseenEntity {
        /// The entity whose client called.
        entity: EntityId,
        /// The method called, by index in the entity's type.
        method: u16,
        /// The entity it named.
        named: EntityId,
    },
    /// Baseapp → manager: which baseapp holds the entity of this type and
    /// unique name? If none does, the asker will.
    Summon {
        /// The entity's type.
        type_id: TypeId,
        /// Its unique name within the type (at most [`MAX_ENTITY_NAME`] bytes).
        name: String,
    },
    /// Manager → baseapp: the answer to a [`AppMsg::Summon`].
    Summoned {
        /// The entity's type.
        type_id: TypeId,
        /// Its name.
        name: String,
        /// The baseapp that holds it (perhaps the asker, which loads it).
        app: AppId,
    },
    /// Baseapp → baseapp: call a base method of a named entity held there.
    NamedCall {
        /// The entity's type.
        type_id: TypeId,
        /// Its name.
        name: String,
        /// The base method, by index in the type.
        method: u16,
        /// The arguments.
        args: Vec<Value>,
        /// The calling entity.
        from: EntityId,
    },
    /// Retiring baseapp → every other baseapp, after the final copy of each
    /// of its bases (on the same link, so after them): bring back the bases
    /// you hold copies of from me, as if I had died; my clients are coming
    /// to you. Answered with [`AppMsg::HandOverSeen`].
    HandOver,
    /// Baseapp → the retiring baseapp: your bases whose copies were here
    /// are mine now.
    HandOverSeen,
    /// Manager → cellapp: send (or stop sending) every real's position
    /// with each load report, for a recording of the world.
    Record(bool),
    /// Cellapp → manager, after its load report while recording: each
    /// real's id, position (x, z) and whether a client plays it.
    Positions(Vec<(EntityId, [f32; 2], bool)>),
    /// Real's cell → a ghost's cell, once a tick per neighbour that needs
    /// any: the tick's new ghosts, and the whole state of those asked for
    /// in [`AppMsg::GhostsStale`], each taken as a [`AppMsg::GhostCreate`]
    /// of it, in order. At most
    /// [`MAX_GHOST_STATES`] states, and a frame of them past
    /// [`GHOST_STATES_BYTES`] is not added to (one large state goes alone).
    GhostCreates(Vec<GhostState>),
    /// Real's cell → a ghost's cell, once a tick per neighbour that needs
    /// any: the tick's refreshes. Each brings the real's position and a
    /// digest of its ghosted properties; a ghost that holds other
    /// properties, or no ghost at all, is asked for in [`AppMsg::GhostsStale`].
    GhostChecks(Vec<GhostCheck>),
    /// A ghost's cell → the real's cell, answering [`AppMsg::GhostChecks`]:
    /// send these entities' whole state (their ghosts here are missing or
    /// hold other properties).
    GhostsStale(Vec<EntityId>),
}

/// Most ghost states in one [`AppMsg::GhostCreates`].
pub const MAX_GHOST_STATES: usize = 256;

/// Once the states of an [`AppMsg::GhostCreates`] reach this many encoded
/// bytes, the next go in another message.
pub const GHOST_STATES_BYTES: usize = 256 << 10;

/// The longest unique name of a named entity, in bytes.
pub const MAX_ENTITY_NAME: usize = 64;

impl AppMsg {
    /// Room to start its frame with: the whole frame of a tick's ghost
    /// moves (the bulk of what cellapps send each other; known from their
    /// count), a small buffer for anything else.
    pub fn frame_size_hint(&self) -> usize {
        match self {
            AppMsg::GhostMoves(moves) => {
                // Length prefix, variant and the byte string's varint length.
                16 + moves.len() * super::ghost_moves::MOVE_BYTES
            }
            _ => 64,
        }
    }

    /// The message's kind, for logs (`"ToEntity"`). Formats the whole
    /// message to find it: for the rare log line, not per message.
    pub fn kind_name(&self) -> String {
        let debug = format!("{self:?}");
        debug
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether the link's session numbers this message (and keeps it until
    /// it is acknowledged). The handshake, acknowledgements and client
    /// datagrams travel outside the session.
    pub fn is_numbered(&self) -> bool {
        !matches!(
            self,
            AppMsg::LinkOpen { .. }
                | AppMsg::LinkAccept { .. }
                | AppMsg::LinkAck { .. }
                | AppMsg::ClientDatagrams(_)
        )
    }

    /// Whether an app of `role` may send this on a link between apps.
    /// What only the manager says, and what only the manager is told,
    /// travel on the manager link alone; on an app link they are refused.
    pub fn may_come_from(&self, role: Role) -> bool {
        use AppMsg::*;
        let (base, cell) = (role == Role::Baseapp, role == Role::Cellapp);
        match self {
            LinkOpen { .. } | LinkAccept { .. } | LinkAck { .. } => true,
            // Bases send them; cells forward them toward the real.
            ToEntity { .. } | Rebase { .. } => true,
            CreateEntity { .. }
            | AppDown { .. }
            | BaseBackup(_)
            | BaseGone { .. }
            | NamedCall { .. }
            | HandOver
            | HandOverSeen => base,
            EntityDestroyed { .. }
            | Backup { .. }
            | ToClients(_)
            | ClientDatagrams(_)
            | GhostCreate(_)
            | GhostCreates(_)
            | GhostChecks(_)
            | GhostsStale(_)
            | GhostUpdate { .. }
            | GhostDelete { .. }
            | GhostMoves(_)
            | Onload(_)
            | Mail(_)
            | ToBase { .. }
            | UnseenEntity { .. }
            | Broadcast { .. }
            | RealMoved { .. }
            | Forget { .. }
            | DownSeen { .. }
            | Rebased { .. }
            | NotRebased { .. } => cell,
            Register(_)
            | Registered { .. }
            | RegisterRefused { .. }
            | Heartbeat(_)
            | NeedIds
            | Ids(_)
            | Cells(_)
            | IssueTicket { .. }
            | TicketIssued { .. }
            | Goodbye
            | Layout { .. }
            | CellLoad(_)
            | Record(_)
            | Positions(_)
            | Retire
            | Retired
            | FindSession { .. }
            | NoSession { .. }
            | Baseapps(_)
            | FindPlayer { .. }
            | Summon { .. }
            | Summoned { .. }
            | Rejoin(_) => false,
        }
    }
}

/// What an app says about itself when it joins ([`AppMsg::Register`]) or
/// comes back ([`Rejoin`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// What the app is.
    pub role: Role,
    /// Protocol major version.
    pub protocol: u16,
    /// Digest of its definitions.
    pub defs_digest: [u8; 32],
    /// Where other apps reach it.
    pub internal_addr: SocketAddr,
    /// Where clients reach it (baseapps).
    pub public_addr: Option<SocketAddr>,
    /// Where its admin HTTP listens, if anywhere.
    pub admin_addr: Option<SocketAddr>,
}

/// A running app's report to a manager it lost ([`AppMsg::Rejoin`]): enough
/// for a restarted manager to rebuild membership, the layout and the
/// entity-id high-water mark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejoin {
    /// The id it was given.
    pub app: AppId,
    /// Who it is.
    pub registration: Registration,
    /// The newest layout it holds.
    pub layout: Option<Layout>,
    /// One past the highest entity id it holds or may hand out.
    pub ids_end: u64,
    /// Every other app it knows as a member.
    pub members: Vec<AppId>,
    /// Every app it knows was declared dead.
    pub dead: Vec<AppId>,
    /// It had asked to retire and is still waiting for its cell to go.
    pub retiring: bool,
}

/// A base copied to another baseapp ([`AppMsg::BaseBackup`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaseCopy {
    /// The entity.
    pub entity: EntityId,
    /// Its database row, if it is persistent.
    pub db_id: Option<i64>,
    /// The account it belongs to, if a player's.
    pub account: Option<i64>,
    /// Its type.
    pub type_id: TypeId,
    /// Position as of the base's last cell backup.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
    /// Every property, by index.
    pub props: Vec<Value>,
    /// The cellapp its real was on, as far as the base knew.
    pub cell: AppId,
    /// The real's version, as far as the base knew.
    pub version: u32,
    /// The next channel sequence number the base would have sent.
    pub next_seq: u64,
    /// The next client stream frame number the base expected from the real.
    pub next_out: u64,
    /// The hash of the session token its client may resume with.
    pub token: TokenHash,
    /// The hash of the token before it, good until the client speaks on
    /// the connection that brought it the new one (the welcome that carried
    /// it may have been lost).
    pub prev_token: Option<TokenHash>,
    /// The fence its saves carry; the base restored from this copy saves
    /// with one more, so the baseapp it came from cannot write over it.
    pub fence: u64,
}

/// Most ghost moves in one [`AppMsg::GhostMoves`].
pub const MAX_GHOST_MOVES: usize = 1024;

/// A real's refresh of one of its ghosts: its position, and a digest of
/// its ghosted properties for the ghost to compare with its own.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GhostCheck {
    /// The entity.
    pub entity: EntityId,
    /// Orders ghost messages across real moves.
    pub stamp: Stamp,
    /// Position.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
    /// Digest of every property of the entity's type as its ghost holds
    /// them: the ghosted ones, and the defaults of the rest.
    pub digest: u64,
}

impl GhostCheck {
    /// The digest of a type's property values in index order (each
    /// ghosted property's value and the default of the rest): the first
    /// 8 bytes, little-endian, of the SHA-256 of their encoding as a
    /// `Vec<Value>`.
    pub fn digest(values: &[&Value]) -> u64 {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(crate::frame::encode_body(&values));
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        u64::from_le_bytes(first)
    }
}

/// A ghost's new position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GhostMove {
    /// The entity.
    pub entity: EntityId,
    /// Orders ghost messages across real moves.
    pub stamp: Stamp,
    /// Position.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
}

/// What a base asks of its entity's real.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EntityMsg {
    /// The client moved it.
    Move {
        /// The client's sequence number.
        seq: u32,
        /// Where.
        pos: Pos,
        /// Facing.
        yaw: f32,
    },
    /// Call a cell method (already checked by the base).
    Call {
        /// Method index.
        method: u16,
        /// Arguments.
        args: Vec<Value>,
    },
    /// Destroy the cell half and send back its final state.
    Destroy,
    /// A client (re)connected to the entity: its witness starts over (every
    /// entity in range is sent again), its client's stream frames number
    /// from `out_seq`, and the first of them is a `ServerMsg::Restored`
    /// with where the entity stands.
    Attach {
        /// The first output sequence for the new client's frames.
        out_seq: u64,
    },
    /// Call a cell method for the entity's base (game code on the base):
    /// checked against the definitions, but any method, exposed or not.
    BaseCall {
        /// Method index.
        method: u16,
        /// Arguments.
        args: Vec<Value>,
    },
}

/// Orders ghost messages: the real's version (how many times it has moved
/// cell), then a counter the real's cell increments per message.
pub type Stamp = (u32, u32);

/// A ghost's whole state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GhostState {
    /// The entity.
    pub entity: EntityId,
    /// Orders ghost messages across real moves.
    pub stamp: Stamp,
    /// Its type.
    pub type_id: TypeId,
    /// Where its real is.
    pub real: AppId,
    /// Position.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
    /// Ghosted properties.
    pub props: Vec<PropValue>,
}

/// What a client's known entity looks like in a witness that moves cell.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KnownState {
    /// The entity known.
    pub entity: EntityId,
    /// Its index in the client's position updates.
    pub index: u32,
    /// Position last sent to the client.
    pub sent: Pos,
    /// Facing last sent.
    pub sent_yaw: f32,
    /// Ticks since the client was last current on it.
    pub age: u32,
    /// Whether the last position went only by datagram.
    pub unconfirmed: bool,
    /// Which of the entity's public properties the client holds current
    /// values of: a bit per place in the type's list of properties other
    /// clients see.
    pub has: u64,
    /// A digest of those properties as the client has them; the new cell
    /// resends them only if its own digest differs.
    pub props: u64,
}

/// A client's witness moving cell with its entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WitnessState {
    /// AoI radius.
    pub radius: f32,
    /// What the client knows.
    pub known: Vec<KnownState>,
    /// Indices freed lately and the ticks since: not given to another
    /// entity until their quarantine is over.
    pub retired: Vec<(u32, u32)>,
    /// Bytes the client was sent beyond its budget, still to be paid.
    pub deficit: u32,
}

/// A real entity in transit from one cell to another: everything it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Onload {
    /// The entity.
    pub entity: EntityId,
    /// Its type.
    pub type_id: TypeId,
    /// Position.
    pub pos: Pos,
    /// Facing.
    pub yaw: f32,
    /// Every property, by index.
    pub props: Vec<Value>,
    /// Its base.
    pub base: Option<AppId>,
    /// Its witness.
    pub witness: Option<WitnessState>,
    /// Last client move sequence applied.
    pub move_seq: u32,
    /// Movement allowance left, metres.
    pub allowance: f32,
    /// Where a server-driven entity was heading.
    pub goal: Option<Pos>,
    /// Ticks since it last moved.
    pub moved_ago: u32,
    /// Cells that hold its ghost (the old cell included).
    pub haunts: Vec<AppId>,
    /// How many times it has moved cell (this move included).
    pub version: u32,
    /// The next channel sequence number it expects from its base.
    pub next_seq: u64,
    /// Channel messages that arrived early, by sequence number.
    pub pending: Vec<(u64, EntityMsg)>,
    /// The next output sequence for its client's stream frames.
    pub out_seq: u64,
    /// When the source sent it (microseconds since the Unix epoch), for the
    /// handoff latency the destination measures.
    pub sent_us: u64,
    /// Its timers, with when each next fires.
    pub timers: Vec<TimerState>,
    /// The id its next timer gets.
    pub next_timer: u32,
    /// What its mailboxes remember: calls sent and calls received.
    pub mail: MailState,
    /// Its proximity traps, with who is inside each.
    pub traps: Vec<TrapState>,
    /// The id its next trap gets.
    pub next_trap: u32,
}

/// A proximity trap of a real: a radius around it and the entities inside,
/// which travel with the real so that its hooks see each entity enter and
/// leave once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrapState {
    /// Its id, unique within its entity.
    pub id: u32,
    /// Its radius in metres, on the ground plane.
    pub radius: f32,
    /// The game's tag, handed back with each enter and leave.
    pub tag: u32,
    /// Who was inside at the last look, sorted.
    pub inside: Vec<EntityId>,
}

/// A timer of a real. It travels with the real when the real moves cell,
/// with the time it next fires, so it fires once per period whichever
/// cell it is on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimerState {
    /// Its id, unique within its entity.
    pub id: u32,
    /// When it next fires.
    pub due: crate::Time,
    /// Its period in microseconds; 0 fires once.
    pub period_us: u64,
    /// The game's tag, handed back when it fires.
    pub tag: u32,
}

/// A call of a cell method from one entity to another, on its way to the
/// cell that holds the callee's real ([`AppMsg::Mail`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mail {
    /// The callee.
    pub to: EntityId,
    /// The caller.
    pub from: EntityId,
    /// The caller's number for this call to this callee, from 1: the
    /// callee applies each number once, in order.
    pub seq: u64,
    /// The callee's method, by index in its type.
    pub method: u16,
    /// The arguments, checked against the method by the caller's cell and
    /// again by the callee's.
    pub args: Vec<Value>,
    /// How many cellapps have passed it on (a message that keeps missing
    /// its callee is dropped after [`MAX_MAIL_HOPS`]).
    pub hops: u8,
}

/// The most times a [`Mail`] is passed on before it is dropped.
pub const MAX_MAIL_HOPS: u8 = 8;

/// What a real's mailboxes remember, as it travels between cells: the last
/// number sent to each callee, and from each caller the next number
/// expected and the calls that came ahead of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MailState {
    /// Per callee: the last number sent.
    pub sent: Vec<(EntityId, u64)>,
    /// Per caller: the next number expected, and calls held until then.
    pub received: Vec<(EntityId, u64, Vec<Mail>)>,
}
