//! An entry of a cell: an entity as the cell holds it, either its *real*
//! (the authoritative cell half, with its base, witness, channel and the
//! movement allowance that validates a client's moves) or a *ghost* (a
//! read-only copy of an entity real on another cellapp, kept current by its
//! real). [`Kind`] says which. Both share one layout, so a witness reads
//! reals and ghosts alike from one table.

use glam::Vec3;
use tessera::defs::TypeId;
use tessera::{AppId, EntityId, Time, Value};

use crate::behavior::{Mailbox, Timers, Traps};
use crate::pace::{Limit, MoveError, Pace, Verdict};
use crate::witness::Witness;
use tessera::channel::RealChannel;
use tessera::proto::app::Stamp;

/// The cellapps holding ghosts of a real: rarely more than three.
pub type Haunts = smallvec::SmallVec<[AppId; 4]>;

/// Whether an entry is an entity's real or a ghost of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The authoritative cell half.
    Real,
    /// A read-only copy of an entity real elsewhere.
    Ghost {
        /// The cellapp its real is on, as far as this cellapp knows.
        real: AppId,
        /// The stamp of the newest ghost message applied.
        stamp: Stamp,
    },
}

/// One entity as a cell holds it: its real or a ghost of it.
///
/// The fields every tick reads for every entry (identity, place, ghost
/// state, witness pointer, whether anything changed, haunts, goal, the
/// stamp's numbers, when a ghost last heard from its real, its base) come
/// first and fill the first two cache lines; the timers and traps, which
/// the behaviours' pass looks at for every armed real, fill the third;
/// `repr(C)` keeps that order, and the alignment starts every entry on a
/// line of its own. The tick's passes and the ghost moves then touch two
/// lines per entity of its five, which is most of what a tick of a crowded
/// cell costs. Five, an odd number: the first lines of consecutive entries
/// then fall in every set of the cache, where with four or six they share
/// a quarter or a half of them (in a build without whole-program
/// optimisation the simulator's crowd ran 3-5 % slower at four or six
/// lines; with it, the difference was within the noise). To keep it at
/// five, the channel from the base and the mailboxes are boxed (a small
/// allocation each per entry), and the witness, which only client
/// entities have, is an optional box.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Entry {
    /// Its id.
    pub id: EntityId,
    /// Position.
    pub pos: Vec3,
    /// Facing.
    pub yaw: f32,
    /// The tick it last moved.
    pub moved_tick: u64,
    /// Its real, or a ghost of it.
    pub kind: Kind,
    /// Its type.
    pub type_id: TypeId,
    /// It has a timer or a trap: the behaviours' pass looks at them only
    /// then (kept by the methods that change them).
    armed: bool,
    /// A property changed this tick: the passes that only ask whether
    /// look here, in the first line, not at `dirty`.
    changed: bool,
    /// For a real: how much farther it may move (along x or z) before the
    /// ghosting pass must work out again which cellapps need its ghost
    /// (see `cell::ghosts::leeway`); each move spends it.
    leeway: f32,
    /// Its AoI, if a client controls it.
    pub witness: Option<Box<Witness>>,
    /// Cellapps holding a ghost of this real (kept inline: the ghosting
    /// pass reads it for every real near an edge, every tick).
    pub haunts: Haunts,
    /// Where a server-driven entity is heading.
    pub goal: Option<Vec3>,
    /// How many times the real has moved cell.
    pub version: u32,
    /// Counter of ghost messages sent at this version.
    pub ghost_n: u32,
    /// For a ghost: when it last heard newer news from its real (a create,
    /// a refresh, a move), or the real left from here.
    pub refreshed: Time,
    /// The baseapp holding its base, if it has one.
    pub base: Option<AppId>,
    /// The timers its behaviour set (they move with it).
    timers: Timers,
    /// Its proximity traps and who is inside them (they move with it).
    traps: Traps,
    /// The digest of its properties as its ghosts hold them
    /// ([`tessera::proto::app::GhostCheck::digest`]), if none has changed
    /// since it was taken: a real's refresh sends it, and a ghost compares
    /// it, without reading a property.
    props_digest: Option<u64>,
    /// Every property by index (base-side ones hold their defaults, unused).
    pub props: Vec<Value>,
    /// Properties changed this tick.
    dirty: Vec<u16>,
    /// Its client's moves so far: the newest applied and the metres it
    /// may still move.
    pub pace: Pace,
    /// The real's end of the entity channel: its base's messages in order,
    /// and the numbering of its client's stream frames.
    pub channel: Box<RealChannel>,
    /// Messages for its own client, flushed at the end of the tick.
    pub to_own_client: Vec<Vec<u8>>,
    /// Its mailboxes' numbering (it moves with it).
    pub mail: Box<Mailbox>,
}

// The hot fields end within the first two cache lines, the timers and
// traps within the third; the properties' digest and the properties share
// the fourth; five lines in all.
const _: () = assert!(std::mem::offset_of!(Entry, leeway) < 64);
const _: () = assert!(std::mem::offset_of!(Entry, timers) == 128);
const _: () = assert!(std::mem::offset_of!(Entry, props_digest) == 192);
const _: () = assert!(std::mem::offset_of!(Entry, props) < 256);
const _: () = assert!(std::mem::size_of::<Entry>() == 320);

impl Entry {
    /// A real with nothing but its identity, place and properties.
    pub fn new(
        id: EntityId,
        type_id: TypeId,
        pos: Vec3,
        yaw: f32,
        props: Vec<Value>,
        tick: u64,
    ) -> Entry {
        Entry {
            id,
            type_id,
            pos,
            yaw,
            props,
            props_digest: None,
            dirty: Vec::new(),
            base: None,
            witness: None,
            moved_tick: tick,
            pace: Pace::default(),
            goal: None,
            to_own_client: Vec::new(),
            kind: Kind::Real,
            haunts: Haunts::new(),
            version: 0,
            ghost_n: 0,
            refreshed: Time(0),
            channel: Box::default(),
            timers: Timers::default(),
            mail: Box::default(),
            traps: Traps::default(),
            armed: false,
            changed: false,
            leeway: 0.0,
        }
    }

    /// The properties changed this tick.
    pub fn dirty(&self) -> &[u16] {
        &self.dirty
    }

    /// Whether a property changed this tick.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The digest of its properties as its ghosts hold them, unless one
    /// has changed since it was taken.
    pub fn props_digest(&self) -> Option<u64> {
        self.props_digest
    }

    /// Its properties, as its ghosts hold them, have the digest `digest`.
    pub fn set_props_digest(&mut self, digest: u64) {
        self.props_digest = Some(digest);
    }

    /// Marks property `index` changed this tick.
    pub fn mark(&mut self, index: u16) {
        self.props_digest = None;
        if !self.dirty.contains(&index) {
            self.dirty.push(index);
        }
        self.changed = true;
    }

    /// Marks these properties changed this tick, instead of any before.
    pub fn set_dirty(&mut self, dirty: Vec<u16>) {
        self.changed = !dirty.is_empty();
        self.dirty = dirty;
    }

    /// Takes the changed properties (the tick is over, or the entry goes).
    pub fn take_dirty(&mut self) -> Vec<u16> {
        self.changed = false;
        std::mem::take(&mut self.dirty)
    }

    /// The tick is over: nothing has changed in the next one yet.
    pub fn clear_dirty(&mut self) {
        if self.changed {
            self.dirty.clear();
            self.changed = false;
        }
    }

    /// Its timers.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Its traps.
    pub fn traps(&self) -> &Traps {
        &self.traps
    }

    /// Whether it has a timer or a trap.
    pub fn armed(&self) -> bool {
        self.armed
    }

    /// Changes its timers and traps with `f`.
    pub fn hooks_mut<T>(&mut self, f: impl FnOnce(&mut Timers, &mut Traps) -> T) -> T {
        let out = f(&mut self.timers, &mut self.traps);
        self.armed = !self.timers.is_empty() || !self.traps.is_empty();
        out
    }

    /// True if this entry is a ghost, not the real.
    pub fn is_ghost(&self) -> bool {
        matches!(self.kind, Kind::Ghost { .. })
    }

    /// For a ghost: where its real is and the newest stamp applied.
    pub fn ghost(&self) -> Option<(AppId, Stamp)> {
        match self.kind {
            Kind::Real => None,
            Kind::Ghost { real, stamp } => Some((real, stamp)),
        }
    }

    /// The next stamp for a ghost message about this real.
    pub fn next_stamp(&mut self) -> Stamp {
        self.ghost_n += 1;
        (self.version, self.ghost_n)
    }

    /// Sets a property and marks it changed this tick.
    pub fn set_prop(&mut self, index: u16, value: Value) {
        if let Some(slot) = self.props.get_mut(index as usize) {
            if *slot != value {
                *slot = value;
                self.mark(index);
            }
        }
    }

    /// How much farther it may move before the ghosting pass looks at
    /// where it stands again.
    pub(crate) fn leeway(&self) -> f32 {
        self.leeway
    }

    /// The ghosting pass has looked at where it stands: it may move this
    /// far before the pass must look again.
    pub(crate) fn set_leeway(&mut self, leeway: f32) {
        self.leeway = leeway;
    }

    /// Moves the entity (server-side moves are trusted).
    pub fn move_to(&mut self, pos: Vec3, yaw: f32, tick: u64) {
        if pos != self.pos || yaw != self.yaw {
            self.leeway -= (pos.x - self.pos.x).abs().max((pos.z - self.pos.z).abs());
            self.pos = pos;
            self.yaw = yaw;
            self.moved_tick = tick;
        }
    }

    /// Judges a client's move arriving at `now` (see [`crate::pace`]) and
    /// applies it if it is allowed; one older than the last applied is
    /// dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn client_move(
        &mut self,
        now: Time,
        limit: Limit,
        seq: u32,
        pos: Vec3,
        yaw: f32,
        bounds: [f32; 4],
        tick: u64,
    ) -> Result<(), MoveError> {
        if self
            .pace
            .judge(now, limit, seq, self.pos, pos, yaw, bounds)?
            == Verdict::Apply
        {
            self.move_to(pos, yaw, tick);
        }
        Ok(())
    }
}
