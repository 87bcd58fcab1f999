//! The context a cell behaviour runs in: a read-only view of its own real
//! and of the cell's other entries, and a list of what it asks for
//! ([`Effect`]) that the cell applies once the behaviour returns.

use glam::{Vec2, Vec3};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;
use std::time::Duration;
use tessera::defs::{CallError, PropError, Side, TypeDef, TypeId};
use tessera::proto::app::{TimerState, TrapState};
use tessera::{EntityId, IdPool, Time, Value};

use super::{TimerId, TrapId, MAX_TIMERS, MAX_TRAPS};
use crate::cell::{IndexSync, TypeInfo};
use crate::entry::Entry;
use crate::index::SpatialIndex;
use tessera::timers::new_timer;

/// Who a client method call goes to (BigWorld's `ownClient`,
/// `allClients`, `otherClients`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// The entity's own client.
    Own,
    /// Its own client and every client whose AoI holds it.
    All,
    /// Every client whose AoI holds it, but not its own.
    Others,
}

/// A request of game code that cannot be carried out. The request is not
/// made; nothing else changes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GameError {
    /// A property that does not exist, lives on the base, or does not
    /// take the value.
    #[error(transparent)]
    Prop(#[from] PropError),
    /// This cell holds no real or ghost of the entity.
    #[error("entity {0} is not known to this cell")]
    NoSuchEntity(EntityId),
    /// No type of that name.
    #[error("no entity type {0}")]
    NoSuchType(String),
    /// A method that does not exist, runs elsewhere, or does not take the
    /// arguments.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The entity has no client to call.
    #[error("entity {0} has no client")]
    NoClient(EntityId),
    /// Entities with a client are made by logging in, not spawned.
    #[error("type {0} has a client; it cannot be spawned")]
    SpawnedClient(String),
    /// The cellapp has no entity ids left until the manager sends more.
    #[error("no entity ids left")]
    NoIds,
    /// The entity has no base to call.
    #[error("entity {0} has no base")]
    NoBase(EntityId),
    /// The entity has a base: it is destroyed through its base.
    #[error("entity {0} has a base; its base destroys it")]
    HasBase(EntityId),
    /// A timer needs a positive period.
    #[error("a repeating timer needs a period above zero")]
    ZeroPeriod,
    /// The entity has as many traps as it may.
    #[error("entity {0} already has {MAX_TRAPS} traps")]
    TooManyTraps(EntityId),
    /// A trap wider than the cell can see around its owner.
    #[error("a trap of {radius} m is wider than the {max} m a cell sees around an entity")]
    TrapTooWide {
        /// The radius asked for.
        radius: f32,
        /// The widest trap.
        max: f32,
    },
    /// The entity has as many timers as it may.
    #[error("entity {0} already has {MAX_TIMERS} timers")]
    TooManyTimers(EntityId),
}

/// An effect, who asked for it, and that entity's slot in the entry table
/// when the round began (a hint, trusted only while it still holds the id:
/// applying one effect without a map lookup).
pub(crate) type Asked = (EntityId, usize, Effect);

/// What a behaviour asked for, applied by the cell after it returns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// Set one of its own properties (checked).
    Set { prop: u16, value: Value },
    /// Move (server-side moves are trusted; the cell clamps to the space).
    /// Only put in the list ahead of a client call, whose audience depends
    /// on where the entity stands; the round's last move of each entity is
    /// applied from the [`Overlay`] after the list.
    Move { pos: Vec3, yaw: f32 },
    /// Set a timer.
    AddTimer(TimerState),
    /// Cancel a timer.
    CancelTimer(TimerId),
    /// Set a proximity trap.
    AddTrap(TrapState),
    /// Cancel a trap.
    CancelTrap(TrapId),
    /// Who is inside a trap now.
    TrapSeen { id: TrapId, inside: Vec<EntityId> },
    /// A timer's firing that was due at that time happened.
    Fired { id: TimerId, due: Time },
    /// Call a cell method of another entity (checked).
    Call {
        to: EntityId,
        method: u16,
        args: Vec<Value>,
    },
    /// Call a base method of this entity (checked).
    BaseCall { method: u16, args: Vec<Value> },
    /// Call a client method of this entity (checked).
    Client {
        audience: Audience,
        method: u16,
        args: Vec<Value>,
    },
    /// Make a new cell-only entity (its id already taken).
    Spawn {
        id: EntityId,
        type_id: TypeId,
        pos: Vec3,
        yaw: f32,
        props: Vec<Value>,
    },
    /// Destroy this (cell-only) entity.
    Destroy,
}

/// The time as behaviours see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    /// The cell's tick number.
    pub tick: u64,
    /// The time of the tick (or of the message being applied).
    pub now: Time,
    /// Seconds per tick.
    pub dt: f32,
    /// The space's bounds: min x, min z, max x, max z.
    pub bounds: [f32; 4],
    /// The widest proximity trap: how far around an entity its cell is
    /// sure to hold every other entity.
    pub trap_reach: f32,
}

/// What the entities of a round have asked to change in themselves so far,
/// so that each reads its own writes (and numbers its timers and traps on)
/// while the others still read it as it stood when the round began. Its
/// moves and goals are also what the cell applies of them, after the
/// round's list of other effects: each entity's last.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    props: FxHashMap<(EntityId, u16), Value>,
    /// Moves asked for (every entity of a crowd may move each tick).
    moved: BySlot<(Vec3, f32)>,
    /// Goals set or cleared (a wandering crowd picks new ones all the time).
    goals: BySlot<Option<Vec3>>,
    /// Timers and traps added, per entity.
    added: FxHashMap<EntityId, (u32, u32)>,
}

/// Values asked for in a round, by the asker's slot in the entry table: an
/// array, not a map, for what most entities of a crowd ask every tick; the
/// slots set are listed so that forgetting the round costs only those.
#[derive(Debug)]
struct BySlot<T> {
    values: Vec<Option<T>>,
    set: Vec<usize>,
}

impl<T> Default for BySlot<T> {
    fn default() -> Self {
        BySlot {
            values: Vec::new(),
            set: Vec::new(),
        }
    }
}

impl<T: Copy> BySlot<T> {
    /// What slot `i` asked for this round, if anything.
    fn get(&self, i: usize) -> Option<T> {
        self.values.get(i).copied().flatten()
    }

    /// Slot `i` asks for `value`, instead of anything before.
    fn set(&mut self, i: usize, value: T) {
        if self.values.len() <= i {
            self.values.resize(i + 1, None);
        }
        if self.values[i].replace(value).is_none() {
            self.set.push(i);
        }
    }

    /// Every slot's value, in the order the slots were first set.
    fn iter(&self) -> impl Iterator<Item = (usize, T)> + '_ {
        self.set
            .iter()
            .filter_map(|&i| Some((i, self.values.get(i).copied().flatten()?)))
    }

    /// Slot `i` holds `value` again (`None`: as if never set).
    fn restore(&mut self, i: usize, value: Option<T>) {
        match value {
            Some(v) => self.set(i, v),
            None => {
                if let Some(v) = self.values.get_mut(i) {
                    *v = None;
                }
            }
        }
    }

    /// Forgets the round.
    fn clear(&mut self) {
        for i in self.set.drain(..) {
            if let Some(v) = self.values.get_mut(i) {
                *v = None;
            }
        }
    }
}

/// What one entity had asked to move to and head for, before a hook ran.
pub(crate) type Mark = (Option<(Vec3, f32)>, Option<Option<Vec3>>);

impl Overlay {
    /// Each entity's last move of the round, by slot.
    pub(crate) fn moves(&self) -> impl Iterator<Item = (usize, (Vec3, f32))> + '_ {
        self.moved.iter()
    }

    /// Each entity's last goal of the round, by slot.
    pub(crate) fn goals(&self) -> impl Iterator<Item = (usize, Option<Vec3>)> + '_ {
        self.goals.iter()
    }

    /// What slot `i` has asked to move to and head for so far.
    pub(crate) fn mark(&self, i: usize) -> Mark {
        (self.moved.get(i), self.goals.get(i))
    }

    /// Puts slot `i`'s move and goal back as they were at `mark` (its
    /// hook panicked: what it asked for is dropped).
    pub(crate) fn restore(&mut self, i: usize, (moved, goal): Mark) {
        self.moved.restore(i, moved);
        self.goals.restore(i, goal);
    }

    /// Forgets the round.
    pub(crate) fn clear(&mut self) {
        // Clearing a map costs its capacity: rounds between ticks (a
        // client's call) mostly find these empty.
        if !self.props.is_empty() {
            self.props.clear();
        }
        self.moved.clear();
        self.goals.clear();
        if !self.added.is_empty() {
            self.added.clear();
        }
    }
}

/// One round of behaviours on a cell: what every [`Ctx`] of the round
/// shares.
pub(crate) struct Stage<'a> {
    pub entries: &'a [Entry],
    pub slot: &'a FxHashMap<EntityId, usize>,
    pub types: &'a [TypeInfo],
    pub index: &'a mut Box<dyn SpatialIndex>,
    pub index_sync: &'a mut IndexSync,
    /// The index was brought up to date in this round.
    pub synced: bool,
    pub ids: &'a mut IdPool,
    pub rng: &'a mut ChaCha8Rng,
    pub fx: &'a mut Vec<Asked>,
    pub overlay: &'a mut Overlay,
    pub clock: Clock,
    /// Hooks that panicked in this round.
    pub panics: u64,
}

impl Stage<'_> {
    /// The context of the real in slot `i`, if there is a real there.
    pub(crate) fn ctx(&mut self, i: usize) -> Option<Ctx<'_>> {
        let me = self.entries.get(i)?;
        let def = &self.types.get(me.type_id.0 as usize)?.def;
        Some(Ctx {
            me,
            me_slot: i,
            def,
            entries: self.entries,
            slot: self.slot,
            types: self.types,
            index: &mut *self.index,
            index_sync: &mut *self.index_sync,
            synced: &mut self.synced,
            ids: &mut *self.ids,
            rng: &mut *self.rng,
            fx: &mut *self.fx,
            overlay: &mut *self.overlay,
            clock: self.clock,
        })
    }
}

/// What a behaviour sees and may ask for.
///
/// Reads of its neighbours show the cell as it stood when the round of
/// hooks began; reads of its own entity show that with its own requests of
/// the round applied; what it asks for (a property set, a move, a timer, a
/// call, a spawn) is applied by the cell after it returns, in the order
/// asked. A request that cannot be carried out returns a [`GameError`] at
/// once and changes nothing.
pub struct Ctx<'a> {
    me: &'a Entry,
    /// Its slot in `entries`.
    me_slot: usize,
    def: &'a TypeDef,
    entries: &'a [Entry],
    slot: &'a FxHashMap<EntityId, usize>,
    types: &'a [TypeInfo],
    index: &'a mut Box<dyn SpatialIndex>,
    index_sync: &'a mut IndexSync,
    synced: &'a mut bool,
    ids: &'a mut IdPool,
    rng: &'a mut ChaCha8Rng,
    fx: &'a mut Vec<Asked>,
    overlay: &'a mut Overlay,
    clock: Clock,
}

/// Another entity as a behaviour sees it: a real on this cell or a ghost
/// of one real elsewhere. Either way only the properties that ghosts carry
/// (`CELL_PUBLIC`, `OTHER_CLIENTS`, `ALL_CLIENTS`, `CELL_PUBLIC_AND_OWN`)
/// can be read, so game code never depends on where the other entity's
/// real happens to be.
#[derive(Clone, Copy, Debug)]
pub struct Neighbor<'a> {
    /// Its id.
    pub id: EntityId,
    /// Its type.
    pub def: &'a TypeDef,
    /// Where it is.
    pub pos: Vec3,
    /// Which way it faces, radians.
    pub yaw: f32,
    /// How far from the point asked about, in metres on the ground plane.
    pub distance: f32,
    props: &'a [Value],
    visible: &'a [u16],
}

impl<'a> Neighbor<'a> {
    /// Its type's name.
    pub fn type_name(&self) -> &'a str {
        &self.def.name
    }

    /// A property that ghosts carry, by name; `None` for any other.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        let p = self.def.prop(name)?;
        if !self.visible.contains(&p.index) {
            return None;
        }
        self.props.get(p.index as usize)
    }
}

fn ground(p: Vec3) -> Vec2 {
    Vec2::new(p.x, p.z)
}

impl Ctx<'_> {
    /// The entity's id.
    pub fn id(&self) -> EntityId {
        self.me.id
    }

    /// The entity's type.
    pub fn def(&self) -> &TypeDef {
        self.def
    }

    /// Where it is (where it asked to move, if it did this round).
    pub fn pos(&self) -> Vec3 {
        self.moved().map_or(self.me.pos, |m| m.0)
    }

    /// Which way it faces, radians.
    pub fn yaw(&self) -> f32 {
        self.moved().map_or(self.me.yaw, |m| m.1)
    }

    /// The move it asked for this round, if any.
    fn moved(&self) -> Option<(Vec3, f32)> {
        self.overlay.moved.get(self.me_slot)
    }

    /// Where it is heading, if it has been given a goal.
    pub fn goal(&self) -> Option<Vec3> {
        self.overlay.goals.get(self.me_slot).unwrap_or(self.me.goal)
    }

    /// It has a base (it is persistent, or a player).
    pub fn has_base(&self) -> bool {
        self.me.base.is_some()
    }

    /// A client controls it.
    pub fn has_client(&self) -> bool {
        self.me.witness.is_some()
    }

    /// The cell's tick number.
    pub fn tick(&self) -> u64 {
        self.clock.tick
    }

    /// The time of this tick.
    pub fn now(&self) -> Time {
        self.clock.now
    }

    /// Seconds per tick.
    pub fn dt(&self) -> f32 {
        self.clock.dt
    }

    /// The space's bounds: min x, min z, max x, max z.
    pub fn bounds(&self) -> [f32; 4] {
        self.clock.bounds
    }

    /// The cell's seeded random source: the same inputs give the same game.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.rng
    }

    /// One of its own properties, by name (any cell-side property), with
    /// what it set this round.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let p = self.def.prop(name)?;
        self.overlay
            .props
            .get(&(self.me.id, p.index))
            .or_else(|| self.me.props.get(p.index as usize))
    }

    /// One of its own integer properties, or 0 if it is not an integer.
    pub fn get_int(&self, name: &str) -> i64 {
        self.get(name).and_then(Value::as_int).unwrap_or(0)
    }

    fn push(&mut self, effect: Effect) {
        self.fx.push((self.me.id, self.me_slot, effect));
    }

    /// Sets one of its own cell-side properties.
    pub fn set(&mut self, name: &str, value: Value) -> Result<(), GameError> {
        let prop = self.def.settable(name, &value, Side::Cell)?.index;
        self.overlay.props.insert((self.me.id, prop), value.clone());
        self.push(Effect::Set { prop, value });
        Ok(())
    }

    /// Moves it (the cell keeps it inside the space).
    pub fn move_to(&mut self, pos: Vec3, yaw: f32) {
        if pos.is_finite() && yaw.is_finite() {
            self.overlay.moved.set(self.me_slot, (pos, yaw));
        }
    }

    /// Sets or clears where it is heading.
    pub fn set_goal(&mut self, goal: Option<Vec3>) {
        if goal.is_none_or(|g| g.is_finite()) {
            self.overlay.goals.set(self.me_slot, goal);
        }
    }

    /// Every entity the cell holds within `radius` metres of `center` on the
    /// ground plane, reals and ghosts alike, nearest first; this entity
    /// itself is left out.
    pub fn within(&mut self, center: Vec3, radius: f32) -> Vec<Neighbor<'_>> {
        if !*self.synced && self.index_sync.behind(self.clock.tick) {
            self.index_sync
                .sync(self.index.as_mut(), self.entries, self.clock.tick);
        }
        *self.synced = true;
        let mut slots = Vec::new();
        self.index.within(ground(center), radius, &mut slots);
        let c = ground(center);
        let mut out: Vec<Neighbor<'_>> = slots
            .into_iter()
            .filter_map(|k| self.entries.get(k.0 as usize))
            .filter(|e| e.id != self.me.id)
            .filter_map(|e| self.neighbor(e, c))
            .collect();
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        out
    }

    /// Every entity within `radius` of this one (see [`Ctx::within`]).
    pub fn around(&mut self, radius: f32) -> Vec<Neighbor<'_>> {
        self.within(self.pos(), radius)
    }

    /// Another entity this cell holds (its real or a ghost of it).
    pub fn entity(&self, id: EntityId) -> Option<Neighbor<'_>> {
        let e = self.entries.get(*self.slot.get(&id)?)?;
        self.neighbor(e, ground(self.pos()))
    }

    fn neighbor<'s>(&'s self, e: &'s Entry, from: Vec2) -> Option<Neighbor<'s>> {
        let info = self.types.get(e.type_id.0 as usize)?;
        Some(Neighbor {
            id: e.id,
            def: &info.def,
            pos: e.pos,
            yaw: e.yaw,
            distance: ground(e.pos).distance(from),
            props: &e.props,
            visible: &info.ghosted,
        })
    }

    /// Sets a timer that fires `after` from now, then every `every` if
    /// given. `tag` comes back with each firing. The timer belongs to the
    /// entity: it moves with it from cell to cell.
    pub fn add_timer(
        &mut self,
        after: Duration,
        every: Option<Duration>,
        tag: u32,
    ) -> Result<TimerId, GameError> {
        let added = self.overlay.added.entry(self.me.id).or_default();
        if self.me.timers().len() + added.0 as usize >= MAX_TIMERS {
            return Err(GameError::TooManyTimers(self.me.id));
        }
        let id = self.me.timers().id_after(added.0);
        let timer =
            new_timer(id, self.clock.now, after, every, tag).ok_or(GameError::ZeroPeriod)?;
        added.0 += 1;
        self.push(Effect::AddTimer(timer));
        Ok(id)
    }

    /// Cancels a timer; an id that is not set is ignored.
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.push(Effect::CancelTimer(id));
    }

    /// Sets a proximity trap: from the next tick, the behaviour's `trap`
    /// hook hears of every entity that comes within `radius` metres of this
    /// one and of every one that goes out, with `tag`. The trap moves with
    /// the entity, from cell to cell.
    pub fn add_trap(&mut self, radius: f32, tag: u32) -> Result<TrapId, GameError> {
        let max = self.clock.trap_reach;
        if !(radius.is_finite() && radius > 0.0 && radius <= max) {
            return Err(GameError::TrapTooWide { radius, max });
        }
        let added = self.overlay.added.entry(self.me.id).or_default();
        if self.me.traps().len() + added.1 as usize >= MAX_TRAPS {
            return Err(GameError::TooManyTraps(self.me.id));
        }
        let id = self.me.traps().id_after(added.1);
        added.1 += 1;
        self.push(Effect::AddTrap(TrapState {
            id: id.0,
            radius,
            tag,
            inside: Vec::new(),
        }));
        Ok(id)
    }

    /// Cancels a trap (no leave is heard for those inside); an id that is
    /// not set is ignored.
    pub fn cancel_trap(&mut self, id: TrapId) {
        self.push(Effect::CancelTrap(id));
    }

    /// Calls a cell method of another entity this cell holds (any entity
    /// [`Ctx::within`] returns): the call goes to its real wherever that is,
    /// and runs there exactly once, after this entity's earlier calls to it.
    pub fn call(&mut self, to: EntityId, method: &str, args: Vec<Value>) -> Result<(), GameError> {
        let e = self
            .slot
            .get(&to)
            .and_then(|&i| self.entries.get(i))
            .ok_or(GameError::NoSuchEntity(to))?;
        let def = &self
            .types
            .get(e.type_id.0 as usize)
            .ok_or(GameError::NoSuchEntity(to))?
            .def;
        let method = def.callable(method, Side::Cell, &args)?.index;
        self.push(Effect::Call { to, method, args });
        Ok(())
    }

    /// Calls a base method of this entity on its base, wherever the base
    /// lives.
    pub fn call_base(&mut self, method: &str, args: Vec<Value>) -> Result<(), GameError> {
        if self.me.base.is_none() {
            return Err(GameError::NoBase(self.me.id));
        }
        let method = self.def.callable(method, Side::Base, &args)?.index;
        self.push(Effect::BaseCall { method, args });
        Ok(())
    }

    /// Calls a client method of this entity: on its own client, on every
    /// client that sees it, or on the others.
    pub fn call_client(
        &mut self,
        audience: Audience,
        method: &str,
        args: Vec<Value>,
    ) -> Result<(), GameError> {
        let method = self.def.callable(method, Side::Client, &args)?.index;
        if audience == Audience::Own && self.me.witness.is_none() {
            return Err(GameError::NoClient(self.me.id));
        }
        // The audience is found where the entity stands when the call is
        // applied: where it asked to be by now.
        if let Some((pos, yaw)) = self.moved() {
            self.push(Effect::Move { pos, yaw });
        }
        self.push(Effect::Client {
            audience,
            method,
            args,
        });
        Ok(())
    }

    /// Makes a new entity with no base (a monster, a projectile) at `pos`,
    /// its properties the type's defaults but for `props`. It takes part
    /// from the next tick; its `created` hook runs once it is made.
    pub fn spawn(
        &mut self,
        type_name: &str,
        pos: Vec3,
        yaw: f32,
        props: &[(&str, Value)],
    ) -> Result<EntityId, GameError> {
        let info = self
            .types
            .iter()
            .find(|t| t.def.name == type_name)
            .ok_or_else(|| GameError::NoSuchType(type_name.into()))?;
        let def = &info.def;
        if def.has_client {
            return Err(GameError::SpawnedClient(type_name.into()));
        }
        let mut values = def.defaults();
        for (name, v) in props {
            let p = def.settable(name, v, Side::Cell)?;
            if let Some(slot) = values.get_mut(p.index as usize) {
                *slot = v.clone();
            }
        }
        let type_id = def.id;
        let id = self.ids.take().ok_or(GameError::NoIds)?;
        let (pos, yaw) = if pos.is_finite() && yaw.is_finite() {
            (pos, yaw)
        } else {
            (self.pos(), 0.0)
        };
        self.push(Effect::Spawn {
            id,
            type_id,
            pos,
            yaw,
            props: values,
        });
        Ok(id)
    }

    /// Destroys this entity at the end of the round. Only an entity with no
    /// base is destroyed from its cell.
    pub fn destroy(&mut self) -> Result<(), GameError> {
        if self.me.base.is_some() {
            return Err(GameError::HasBase(self.me.id));
        }
        self.push(Effect::Destroy);
        Ok(())
    }
}
