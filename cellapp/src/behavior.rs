//! The game's cell logic: what an entity type does on the cell, written in
//! Rust by the game and registered by type name in [`Behaviors`].
//!
//! A behaviour sees the world through a [`Ctx`]: its own entity, every
//! entity the cell holds within a radius (reals and ghosts alike, as they
//! stood before this round of behaviours ran), its timers, and mailboxes to
//! other entities and to clients. It changes only its own entity, and even
//! that through the context: changes are collected while behaviours run and
//! applied after, so what one behaviour reads never depends on which ran
//! first. Another entity is changed only by calling one of its methods,
//! which runs on that entity's real wherever it lives.
//!
//! Nothing here names a game's types: the cellapp runs whatever the game
//! registered.

mod ctx;
mod mailbox;
pub mod motion;
mod traps;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use tessera::defs::MethodDef;
use tessera::{EntityId, Value};

pub(crate) use ctx::{Asked, Clock, Effect, Overlay, Stage};
pub use ctx::{Audience, Ctx, GameError, Neighbor};
pub use mailbox::{Mailbox, Offered};
pub use tessera::timers::{TimerId, Timers, MAX_TIMERS};
pub(crate) use traps::diff;
pub use traps::{TrapId, Traps, MAX_TRAPS};

/// Who called a cell method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The entity's own client (the method is exposed; its arguments were
    /// checked against the definitions).
    Client,
    /// Game code on the entity's base.
    Base,
    /// Another entity, through its mailbox.
    Entity(EntityId),
}

/// Another entity came into a range or went out of it: a client's AoI
/// ([`CellBehavior::aoi`]) or a proximity trap ([`CellBehavior::trap`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// It came in.
    Entered(EntityId),
    /// It went out (or was destroyed).
    Left(EntityId),
}

/// A call of a cell method, as a behaviour receives it. The arguments have
/// been checked against the method's definition.
#[derive(Clone, Copy, Debug)]
pub struct Called<'a> {
    /// The method.
    pub method: &'a MethodDef,
    /// Its arguments, one per declared argument, of the declared types.
    pub args: &'a [Value],
    /// Who called.
    pub caller: Caller,
}

impl Called<'_> {
    /// The method's name.
    pub fn name(&self) -> &str {
        &self.method.name
    }

    /// The argument at `i`, if the method has one there.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i)
    }
}

/// The cell-side logic of one entity type. Every hook has a default that
/// does nothing, so a type implements only what it uses.
///
/// Hooks run inside the cell's tick or while it applies a message. A hook
/// that panics fails that one hook: the panic is caught, logged with the
/// entity and the hook, what the hook had asked for is dropped, and the
/// cell goes on.
pub trait CellBehavior: Send + Sync + 'static {
    /// The entity was created: spawned on this cell, or created from its
    /// base. Not called when a real moves in from another cell.
    fn created(&self, _ctx: &mut Ctx<'_>) {}
    /// Every tick, for every real of the type.
    fn tick(&self, _ctx: &mut Ctx<'_>) {}
    /// One of the type's cell methods was called.
    fn call(&self, _ctx: &mut Ctx<'_>, _call: &Called<'_>) {}
    /// A timer the entity set fired: its id and the tag it was set with.
    fn timer(&self, _ctx: &mut Ctx<'_>, _timer: TimerId, _tag: u32) {}
    /// For an entity with a client: another entity entered or left what
    /// the client sees (after this tick's updates were made).
    fn aoi(&self, _ctx: &mut Ctx<'_>, _change: Presence) {}
    /// An entity came within one of the entity's proximity traps, or went
    /// out of it: the trap and the tag it was set with. Each entity that
    /// enters leaves once, whichever cells the two are on.
    fn trap(&self, _ctx: &mut Ctx<'_>, _trap: TrapId, _tag: u32, _change: Presence) {}
}

/// The cell behaviours of a game, by type name. Cheap to clone: every cell
/// of a process (and of the simulator) shares the same behaviours.
#[derive(Clone, Default)]
pub struct Behaviors {
    by_name: BTreeMap<String, Arc<dyn CellBehavior>>,
}

impl fmt::Debug for Behaviors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Behaviors {
    /// Registers the behaviour of a type, replacing any before it.
    pub fn register(&mut self, type_name: &str, behavior: impl CellBehavior) {
        self.by_name
            .insert(type_name.to_string(), Arc::new(behavior));
    }

    /// The behaviour of a type, if the game registered one.
    pub fn get(&self, type_name: &str) -> Option<&Arc<dyn CellBehavior>> {
        self.by_name.get(type_name)
    }

    /// The names of the types with a behaviour.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
