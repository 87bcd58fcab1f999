//! The bot API: what a bot client playing a game does. A bot behaviour is
//! sans-IO like the cores: each step it reads the bot's view of the world
//! and says where to walk and what to call; `tessera bots` carries that
//! out over a real connection and counts what comes back.

use rand::rngs::StdRng;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use tessera::defs::{Definitions, TypeDef};
use tessera::view::{Seen, View};
use tessera::{EntityId, Value};

/// What one bot does, step by step (ten steps a second).
pub trait BotBehavior: Send {
    /// One step: read the view, walk somewhere, call methods.
    fn step(&mut self, bot: &mut Bot<'_>);
    /// The server called a client method on the bot's own entity or on one
    /// it sees.
    fn called(&mut self, _bot: &mut Bot<'_>, _entity: EntityId, _method: &str, _args: &[Value]) {}
}

/// A bot's step: what it knows, and what it asks for.
pub struct Bot<'a> {
    view: &'a View,
    defs: &'a Definitions,
    rng: &'a mut StdRng,
    step: u64,
    walk: Option<[f32; 2]>,
    calls: Vec<BotCall>,
}

/// A call a bot asked for: a method of its own entity.
#[derive(Clone, Debug, PartialEq)]
pub struct BotCall {
    /// The method's name.
    pub method: String,
    /// Its arguments.
    pub args: Vec<Value>,
}

/// What a bot's step asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Asked {
    /// Where to walk this step, if not by the movement pattern.
    pub walk: Option<[f32; 2]>,
    /// Calls to make, in order.
    pub calls: Vec<BotCall>,
}

impl<'a> Bot<'a> {
    /// A step of a bot with this view.
    pub fn new(view: &'a View, defs: &'a Definitions, rng: &'a mut StdRng, step: u64) -> Self {
        Bot {
            view,
            defs,
            rng,
            step,
            walk: None,
            calls: Vec::new(),
        }
    }

    /// The bot's view of the world.
    pub fn view(&self) -> &View {
        self.view
    }

    /// The step number, from 1.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The bot's own random source (seeded from its number).
    pub fn rng(&mut self) -> &mut StdRng {
        self.rng
    }

    /// Where the bot stands, on the ground plane.
    pub fn pos(&self) -> [f32; 2] {
        [self.view.my_pos[0], self.view.my_pos[2]]
    }

    /// One of its own properties that its client sees, by name.
    pub fn prop(&self, name: &str) -> Option<&Value> {
        let p = self.defs.get(self.view.my_type)?.prop(name)?;
        self.view.my_props.get(&p.index)
    }

    /// Everything in its AoI, with each entity's type.
    pub fn seen(&self) -> impl Iterator<Item = (EntityId, &Seen, &TypeDef)> + '_ {
        self.view
            .others
            .iter()
            .filter_map(|(id, s)| Some((*id, s, self.defs.get(s.type_id)?)))
    }

    /// A property of an entity it sees, by name.
    pub fn prop_of(&self, entity: EntityId, name: &str) -> Option<&Value> {
        let s = self.view.others.get(&entity)?;
        let p = self.defs.get(s.type_id)?.prop(name)?;
        s.props.get(&p.index)
    }

    /// Walk toward a point this step, instead of the bots' movement pattern.
    pub fn walk_to(&mut self, x: f32, z: f32) {
        if x.is_finite() && z.is_finite() {
            self.walk = Some([x, z]);
        }
    }

    /// Call a method of its own entity (an exposed cell or base method).
    pub fn call(&mut self, method: &str, args: Vec<Value>) {
        self.calls.push(BotCall {
            method: method.to_string(),
            args,
        });
    }

    /// What the step asked for.
    pub fn finish(self) -> Asked {
        Asked {
            walk: self.walk,
            calls: self.calls,
        }
    }
}

type MakeBot = Arc<dyn Fn(u64) -> Box<dyn BotBehavior> + Send + Sync>;

/// The bot behaviours of a game, by the player type they play.
#[derive(Clone, Default)]
pub struct BotBehaviors {
    by_name: BTreeMap<String, MakeBot>,
}

impl fmt::Debug for BotBehaviors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl BotBehaviors {
    /// Registers what bots playing a type do.
    pub fn register(
        &mut self,
        type_name: &str,
        make: impl Fn(u64) -> Box<dyn BotBehavior> + Send + Sync + 'static,
    ) {
        self.by_name.insert(type_name.to_string(), Arc::new(make));
    }

    /// A behaviour for bot number `n` playing `type_name`, if the game
    /// registered one.
    pub fn make(&self, type_name: &str, n: u64) -> Option<Box<dyn BotBehavior>> {
        self.by_name.get(type_name).map(|make| make(n))
    }

    /// The names of the types with a bot behaviour.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
