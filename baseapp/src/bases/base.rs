//! One base: the location-free, persistent half of an entity, and the
//! state of its two connections — to its client, and to its cell half (the
//! real) through the entity channel.
//!
//! The cell half is in one of four phases ([`Half`]) and the client in one
//! of two ([`Client`]); each phase carries what it needs, so the legal
//! combinations are the types'.

use tessera::channel::BaseChannel;
use tessera::proto::app::EntityMsg;
use tessera::proto::{Pos, TokenHash};
use tessera::storage::DbId;
use tessera::{AppId, Time, Value};

use super::ClientId;

/// Where a base's cell half stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Half {
    /// There is none yet: the base waits for a cellapp to place it on (one
    /// is linked, or its real died and it is made anew).
    Unplaced,
    /// The real is on `cell`, as far as the base knows.
    Placed {
        /// The cellapp.
        cell: AppId,
    },
    /// Restored from a copy after its baseapp (`dead`) died: the base has
    /// claimed the real on `cell` and waits for it to accept.
    Claiming {
        /// Where the claim went.
        cell: AppId,
        /// The dead baseapp.
        dead: AppId,
    },
    /// Logging out: the real on `cell` was asked to go, and the base waits
    /// for its final state before it is saved and dropped.
    Leaving {
        /// Where the real is.
        cell: AppId,
    },
}

impl Half {
    /// Where channel messages go, if anywhere.
    pub(crate) fn cell(self) -> Option<AppId> {
        match self {
            Half::Unplaced => None,
            Half::Placed { cell } | Half::Claiming { cell, .. } | Half::Leaving { cell } => {
                Some(cell)
            }
        }
    }
}

/// A base's client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Client {
    /// Connected as this connection.
    Connected(ClientId),
    /// Gone (its connection lost, or the base restored elsewhere) since
    /// then: the entity waits for it to resume.
    Away {
        /// Since when.
        since: Time,
    },
    /// The session is over (logged out, broke the rules, or the baseapp
    /// stops): no client comes back.
    Gone,
}

impl Client {
    /// The connection, if the client is here.
    pub(crate) fn id(self) -> Option<ClientId> {
        match self {
            Client::Connected(c) => Some(c),
            Client::Away { .. } | Client::Gone => None,
        }
    }
}

/// The base half of an entity.
pub(crate) struct Base {
    pub db_id: Option<DbId>,
    pub account: Option<i64>,
    pub ty: usize,
    pub pos: Pos,
    pub yaw: f32,
    pub props: Vec<Value>,
    pub client: Client,
    pub half: Half,
    /// How many times the real has moved cell, as far as the base knows.
    pub version: u32,
    /// The entity channel's base end.
    pub channel: BaseChannel,
    pub dirty: bool,
    /// The hash of the secret its client resumes the session with, and of
    /// the one before it (good until the client speaks on the connection
    /// that brought it the new one).
    pub token: TokenHash,
    pub prev_token: Option<TokenHash>,
    /// The baseapp holding its copy.
    pub holder: Option<AppId>,
    /// Its saves' fence (see [`tessera::storage::StoredEntity::fence`]):
    /// the row's when loaded, one more than its copy's when restored from
    /// one.
    pub fence: u64,
    /// The last move its client made, relayed to the real (position and
    /// facing), and when: where a real restored after its
    /// cellapp died starts, if the move is one the real could have made
    /// since its last backup.
    pub last_move: Option<(Pos, f32, Time)>,
    /// When its cell half last backed up.
    pub backed_up: Option<Time>,
    /// Messages for the cell half that came while it was unplaced, sent
    /// once it is placed (at most [`MAX_HELD`]; a client's moves replace
    /// each other).
    pub held: Vec<EntityMsg>,
    /// A cellapp its channel may have passed through left the cluster:
    /// what the real has not confirmed goes again once the base hears
    /// where the real is.
    pub resend: bool,
}

/// Most messages a base holds for a cell half that is not placed yet.
pub(crate) const MAX_HELD: usize = 64;

impl Base {
    /// Holds a message for a cell half that is not placed yet; false if
    /// the base already holds all it may (the client is far ahead of its
    /// entity).
    pub(crate) fn hold(&mut self, msg: EntityMsg) -> bool {
        if let (EntityMsg::Move { .. }, Some(EntityMsg::Move { .. })) = (&msg, self.held.last()) {
            self.held.pop();
        }
        if self.held.len() >= MAX_HELD {
            return false;
        }
        self.held.push(msg);
        true
    }

    /// Whether it is logging out.
    pub(crate) fn leaving(&self) -> bool {
        matches!(self.half, Half::Leaving { .. })
    }

    /// Its real died and is made anew: it starts where the client last
    /// moved it, if that is a move the real could have allowed since its
    /// last backup (at most `max_speed` metres a second, and a second's
    /// allowance to spare), so the client is not pulled back to where the
    /// backup left it, and inside the space's `bounds`. Otherwise it starts
    /// at the backup.
    pub(crate) fn resume_where_the_client_is(&mut self, max_speed: f32, bounds: [f32; 4]) {
        let (Some((pos, yaw, at)), Some(backed)) = (self.last_move, self.backed_up) else {
            return;
        };
        let [x0, z0, x1, z1] = bounds;
        let inside = (x0..=x1).contains(&pos[0]) && (z0..=z1).contains(&pos[2]);
        if at <= backed || !inside {
            return;
        }
        let secs = at.since(backed).as_secs_f32() + 1.0;
        let [x, _, z] = self.pos;
        let d = ((pos[0] - x).powi(2) + (pos[2] - z).powi(2)).sqrt();
        if d <= max_speed * secs {
            self.pos = pos;
            self.yaw = yaw;
        }
    }

    /// Whether it is a restored base whose real has not accepted it yet.
    pub(crate) fn claiming(&self) -> bool {
        matches!(self.half, Half::Claiming { .. })
    }
}
