//! The game's base logic: what an entity type does on its base, written in
//! Rust by the game and registered by type name in [`BaseBehaviors`].
//!
//! A base behaviour runs on the baseapp that holds the entity's base: when
//! its client logs in and out, and when one of its base methods is called.
//! It reads and sets the base's properties through a [`BaseCtx`]; what it
//! sets is saved with the entity, and properties its own client sees are
//! sent to it. A hook that panics fails alone: the base's properties are
//! left as they were before the hook, and the panic is logged.
//!
//! Nothing here names a game's types: the baseapp runs whatever the game
//! registered.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;
use tessera::defs::{CallError, Definitions, MethodDef, PropError, Side, TypeDef, TypeId};
use tessera::proto::app::{TimerState, MAX_ENTITY_NAME};
use tessera::timers::{new_timer, TimerId, MAX_TIMERS};
use tessera::{EntityId, Time, Value};

/// Who called a base method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseCaller {
    /// The entity's own client (the method is exposed).
    Client,
    /// Game code on the entity's cell.
    Cell,
    /// Game code on another entity's base (a call of a named entity).
    Entity(EntityId),
}

/// A call of a base method, as a behaviour receives it. The arguments have
/// been checked against the method's definition.
#[derive(Clone, Copy, Debug)]
pub struct BaseCalled<'a> {
    /// The method.
    pub method: &'a MethodDef,
    /// Its arguments, one per declared argument, of the declared types.
    pub args: &'a [Value],
    /// Who called.
    pub caller: BaseCaller,
}

impl BaseCalled<'_> {
    /// The method's name.
    pub fn name(&self) -> &str {
        &self.method.name
    }

    /// The argument at `i`, if the method has one there.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i)
    }
}

/// The base-side logic of one entity type. Every hook has a default that
/// does nothing.
pub trait BaseBehavior: Send + Sync + 'static {
    /// The entity's client logged in (its base was loaded or created).
    fn login(&self, _ctx: &mut BaseCtx<'_>) {}
    /// The entity's client logged out; the base is saved after this.
    fn logout(&self, _ctx: &mut BaseCtx<'_>) {}
    /// One of the type's base methods was called (by the entity's client,
    /// its cell, or another entity's base).
    fn call(&self, _ctx: &mut BaseCtx<'_>, _call: &BaseCalled<'_>) {}
    /// A timer the base set fired: its id and the tag it was set with.
    /// Base timers live as long as the base is held by this baseapp; they
    /// are not saved.
    fn timer(&self, _ctx: &mut BaseCtx<'_>, _timer: TimerId, _tag: u32) {}
}

/// A request of base game code that cannot be carried out; nothing changes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BaseError {
    /// A property that does not exist, lives on the cell, or does not take
    /// the value.
    #[error(transparent)]
    Prop(#[from] PropError),
    /// A method that does not exist, runs elsewhere, or does not take the
    /// arguments.
    #[error(transparent)]
    Call(#[from] CallError),
    /// No type of that name.
    #[error("no entity type {0}")]
    NoSuchType(String),
    /// A type with a client is a player's, not a named entity.
    #[error("type {0} has a client; it cannot be a named entity")]
    NotNamed(String),
    /// A name that is empty or too long.
    #[error("a name of {0} bytes: names are 1 to {MAX_ENTITY_NAME} bytes")]
    BadName(usize),
    /// A repeating timer needs a period above zero.
    #[error("a repeating timer needs a period above zero")]
    ZeroPeriod,
    /// The base has as many timers as it may.
    #[error("the base already has {MAX_TIMERS} timers")]
    TooManyTimers,
}

/// What a base hook asked for besides its own properties, carried out by
/// the baseapp after the hook returns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum BaseAsk {
    /// Call a cell method of the entity on its real.
    Cell { method: u16, args: Vec<Value> },
    /// Set a timer on the base.
    AddTimer(TimerState),
    /// Cancel one.
    CancelTimer(TimerId),
    /// Call a base method of a named entity.
    Named {
        type_id: TypeId,
        name: String,
        method: u16,
        args: Vec<Value>,
    },
}

/// Whose hook runs, and when.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At {
    /// The entity.
    pub entity: EntityId,
    /// Its account, if it is a player's.
    pub account: Option<i64>,
    /// The baseapp's time.
    pub now: Time,
    /// The id the base's next timer gets, and how many it has.
    pub timers: (TimerId, usize),
}

/// What a base behaviour sees and may change: the base's own properties.
pub struct BaseCtx<'a> {
    at: At,
    defs: &'a Definitions,
    def: &'a TypeDef,
    props: &'a mut [Value],
    changed: Vec<u16>,
    asks: Vec<BaseAsk>,
    timers_added: u32,
}

impl<'a> BaseCtx<'a> {
    pub(crate) fn new(
        at: At,
        defs: &'a Definitions,
        def: &'a TypeDef,
        props: &'a mut [Value],
    ) -> Self {
        BaseCtx {
            at,
            defs,
            def,
            props,
            changed: Vec::new(),
            asks: Vec::new(),
            timers_added: 0,
        }
    }

    /// The entity's id.
    pub fn id(&self) -> EntityId {
        self.at.entity
    }

    /// The player's account, if the entity is a player's.
    pub fn account(&self) -> Option<i64> {
        self.at.account
    }

    /// The entity's type.
    pub fn def(&self) -> &TypeDef {
        self.def
    }

    /// The baseapp's time.
    pub fn now(&self) -> Time {
        self.at.now
    }

    /// One of its base-side properties, by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        let p = self.def.prop(name)?;
        self.props.get(p.index as usize)
    }

    /// One of its integer properties, or 0 if it is not an integer.
    pub fn get_int(&self, name: &str) -> i64 {
        self.get(name).and_then(Value::as_int).unwrap_or(0)
    }

    /// Sets one of its base-side properties.
    pub fn set(&mut self, name: &str, value: Value) -> Result<(), BaseError> {
        let i = self.def.settable(name, &value, Side::Base)?.index;
        if let Some(slot) = self.props.get_mut(i as usize) {
            if *slot != value {
                *slot = value;
                if !self.changed.contains(&i) {
                    self.changed.push(i);
                }
            }
        }
        Ok(())
    }
}

impl BaseCtx<'_> {
    /// Calls a cell method of the entity on its real, after the hook
    /// returns, in order with the entity's other channel messages.
    pub fn call_cell(&mut self, method: &str, args: Vec<Value>) -> Result<(), BaseError> {
        let method = self.def.callable(method, Side::Cell, &args)?.index;
        self.asks.push(BaseAsk::Cell { method, args });
        Ok(())
    }

    /// Sets a timer that fires `after` from now, then every `every` if
    /// given; `tag` comes back with each firing.
    pub fn add_timer(
        &mut self,
        after: Duration,
        every: Option<Duration>,
        tag: u32,
    ) -> Result<TimerId, BaseError> {
        let (first, count) = self.at.timers;
        if count + self.timers_added as usize >= MAX_TIMERS {
            return Err(BaseError::TooManyTimers);
        }
        let id = TimerId(first.0.wrapping_add(self.timers_added));
        let timer = new_timer(id, self.at.now, after, every, tag).ok_or(BaseError::ZeroPeriod)?;
        self.timers_added += 1;
        self.asks.push(BaseAsk::AddTimer(timer));
        Ok(id)
    }

    /// Cancels a timer; an id that is not set is ignored.
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.asks.push(BaseAsk::CancelTimer(id));
    }

    /// Calls a base method of the named entity of type `type_name` and
    /// unique `name` (a guild), on whichever baseapp holds it; it is loaded
    /// (or made, the first time) wherever it is first called. Calls from
    /// one entity to one named entity run in order.
    pub fn call_named(
        &mut self,
        type_name: &str,
        name: &str,
        method: &str,
        args: Vec<Value>,
    ) -> Result<(), BaseError> {
        let ty = self
            .defs
            .by_name(type_name)
            .ok_or_else(|| BaseError::NoSuchType(type_name.into()))?;
        if ty.has_client {
            return Err(BaseError::NotNamed(type_name.into()));
        }
        if name.is_empty() || name.len() > MAX_ENTITY_NAME {
            return Err(BaseError::BadName(name.len()));
        }
        let method = ty.callable(method, Side::Base, &args)?.index;
        self.asks.push(BaseAsk::Named {
            type_id: ty.id,
            name: name.to_string(),
            method,
            args,
        });
        Ok(())
    }
}

/// The base behaviours of a game, by type name. Cheap to clone.
#[derive(Clone, Default)]
pub struct BaseBehaviors {
    by_name: BTreeMap<String, Arc<dyn BaseBehavior>>,
}

impl fmt::Debug for BaseBehaviors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl BaseBehaviors {
    /// Registers the behaviour of a type, replacing any before it.
    pub fn register(&mut self, type_name: &str, behavior: impl BaseBehavior) {
        self.by_name
            .insert(type_name.to_string(), Arc::new(behavior));
    }

    /// The behaviour of a type, if the game registered one.
    pub fn get(&self, type_name: &str) -> Option<&Arc<dyn BaseBehavior>> {
        self.by_name.get(type_name)
    }

    /// The names of the types with a behaviour.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// What a hook changed and asked for.
pub(crate) struct Outcome {
    /// The properties it changed.
    pub changed: Vec<u16>,
    /// What it asked for.
    pub asks: Vec<BaseAsk>,
}

/// Runs one hook on a base's properties. If the hook panicked, the
/// properties are put back as they were and `None` is returned.
pub(crate) fn run(
    behavior: &dyn BaseBehavior,
    defs: &Definitions,
    def: &TypeDef,
    props: &mut Vec<Value>,
    at: At,
    hook: &'static str,
    f: impl FnOnce(&dyn BaseBehavior, &mut BaseCtx<'_>),
) -> Option<Outcome> {
    let before = props.clone();
    let id = at.entity;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut ctx = BaseCtx::new(at, defs, def, props);
        f(behavior, &mut ctx);
        Outcome {
            changed: ctx.changed,
            asks: ctx.asks,
        }
    }));
    match outcome {
        Ok(o) => Some(o),
        Err(_) => {
            *props = before;
            tracing::error!(entity = %id, ty = %def.name, hook, "game code panicked on the base; its changes are dropped");
            None
        }
    }
}
