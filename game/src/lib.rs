//! # tessera-game
//!
//! The game API: what a game built on Tessera is, as one value. A game is
//! its own crate; its `main` builds a [`Game`] — its definitions and, per
//! entity type, a cell behaviour, a base behaviour and a bot behaviour —
//! and hands it to Tessera's command line (`tessera_tools::run`), which
//! gives it `up`, `manager`, `cellapp`, `baseapp`, `bots`, `sim` and `viz`
//! with the game's logic inside:
//!
//! ```
//! use tessera_game::cell::CellBehavior;
//! use tessera_game::Game;
//!
//! struct Rock;
//! impl CellBehavior for Rock {}
//!
//! let game = Game::new("quarry", r#"
//!     [types.Miner]
//!     has_client = true
//!     aoi_radius = 50.0
//!     max_speed = 5.0
//!     [types.Rock]
//!     max_speed = 1.0
//! "#)
//! .expect("definitions")
//! .players("Miner")
//! .npcs("Rock")
//! .cell("Rock", Rock);
//! assert!(game.check().is_ok());
//! ```
//!
//! Everything a behaviour may do is deterministic and runs in the
//! simulator as it runs in a live world. The API itself lives with the
//! cores that run it and is re-exported here: [`cell`] (the cellapp's
//! behaviours), [`base`] (the baseapp's) and [`bot`] (the bots').

pub mod bot;

#[doc = include_str!("../../docs/game-guide.md")]
pub mod guide {}

use std::path::Path;
use std::sync::Arc;
use tessera::defs::DefError;

/// The cell API: behaviours of entity types on the cell.
pub mod cell {
    pub use tessera_cellapp::behavior::motion;
    pub use tessera_cellapp::behavior::{
        Audience, Behaviors, Called, Caller, CellBehavior, Ctx, GameError, Neighbor, Presence,
        TimerId, TrapId,
    };
}

/// The base API: behaviours of entity types on the base.
pub mod base {
    pub use tessera::timers::TimerId;
    pub use tessera_baseapp::behavior::{
        BaseBehavior, BaseBehaviors, BaseCalled, BaseCaller, BaseCtx, BaseError,
    };
}

pub use tessera::balance::{Policies, Policy};
pub use tessera::defs::{Definitions, MethodDef, PropDef, TypeDef};
pub use tessera::{EntityId, Time, Value};

use base::{BaseBehavior, BaseBehaviors};
use bot::{BotBehavior, BotBehaviors};
use cell::{Behaviors, CellBehavior};

/// A registration that does not fit the game's definitions.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegisterError {
    /// A behaviour or role names a type the definitions do not have.
    #[error("{what} names type {name}, which the definitions do not define")]
    NoSuchType {
        /// What named it (`"cell behaviour"`, `"player type"`, ...).
        what: &'static str,
        /// The name.
        name: String,
    },
    /// No player type was chosen.
    #[error("the game has no player type (Game::players)")]
    NoPlayerType,
    /// The player type has no client.
    #[error("player type {0} has no client (has_client = true in the definitions)")]
    PlayerWithoutClient(String),
    /// The NPC type has a client.
    #[error("NPC type {0} has a client; NPCs are server-driven")]
    NpcWithClient(String),
    /// A balancing policy's name is not plain.
    #[error(transparent)]
    PolicyName(#[from] tessera::balance::BadPolicyName),
}

/// A game: its definitions, its behaviours, and which types are its players
/// and its NPCs.
#[derive(Clone, Debug)]
pub struct Game {
    name: String,
    defs: Arc<Definitions>,
    cell: Behaviors,
    base: BaseBehaviors,
    bots: BotBehaviors,
    player_type: Option<String>,
    npc_type: Option<String>,
    fixtures: Vec<(String, usize)>,
    policies: Policies,
    bad_policy: Option<tessera::balance::BadPolicyName>,
}

impl Game {
    /// A game named `name` with the definitions in `definitions` (the TOML
    /// of a definitions file, usually `include_str!`-ed so the binary needs
    /// nothing beside it).
    pub fn new(name: &str, definitions: &str) -> Result<Game, DefError> {
        let file = format!("{name}/entities.toml");
        let defs = Definitions::parse(definitions, Path::new(&file))?;
        Ok(Game::with_definitions(name, defs))
    }

    /// A game with definitions already loaded.
    pub fn with_definitions(name: &str, defs: Definitions) -> Game {
        Game {
            name: name.to_string(),
            defs: Arc::new(defs),
            cell: Behaviors::default(),
            base: BaseBehaviors::default(),
            bots: BotBehaviors::default(),
            player_type: None,
            npc_type: None,
            fixtures: Vec::new(),
            policies: Policies::new(),
            bad_policy: None,
        }
    }

    /// Registers a balancing policy of the game's own: `make` makes a fresh
    /// one (each switch to it and each simulated run starts afresh). The
    /// live manager can start with it (`--policy NAME`) or be switched to
    /// it (`POST /api/balance`), and `tessera sim --compare` scores it
    /// beside the built-in ones. A policy of a built-in's name replaces it.
    pub fn policy(mut self, make: impl Fn() -> Box<dyn Policy> + Send + Sync + 'static) -> Game {
        if let Err(e) = self.policies.register(make) {
            self.bad_policy.get_or_insert(e);
        }
        self
    }

    /// The game's own balancing policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The same game with other definitions (a `--defs` file): the
    /// behaviours stay; [`Game::check`] says whether they still fit.
    pub fn replace_definitions(mut self, defs: Definitions) -> Game {
        self.defs = Arc::new(defs);
        self
    }

    /// Registers the cell behaviour of a type.
    pub fn cell(mut self, type_name: &str, behavior: impl CellBehavior) -> Game {
        self.cell.register(type_name, behavior);
        self
    }

    /// Registers the base behaviour of a type.
    pub fn base(mut self, type_name: &str, behavior: impl BaseBehavior) -> Game {
        self.base.register(type_name, behavior);
        self
    }

    /// Registers what a bot playing a type does: `make` gives each bot its
    /// own behaviour, from the bot's number.
    pub fn bot(
        mut self,
        type_name: &str,
        make: impl Fn(u64) -> Box<dyn BotBehavior> + Send + Sync + 'static,
    ) -> Game {
        self.bots.register(type_name, make);
        self
    }

    /// The type every account's player entity has.
    pub fn players(mut self, type_name: &str) -> Game {
        self.player_type = Some(type_name.to_string());
        self
    }

    /// The type of the server-driven entities `--npcs N` creates.
    pub fn npcs(mut self, type_name: &str) -> Game {
        self.npc_type = Some(type_name.to_string());
        self
    }

    /// Entities of `type_name` every cellapp makes in its own area when it
    /// joins, `per_cellapp` of them, whatever `--npcs` says (a healing
    /// spring, a vendor).
    pub fn fixtures(mut self, type_name: &str, per_cellapp: usize) -> Game {
        self.fixtures.push((type_name.to_string(), per_cellapp));
        self
    }

    /// What a cellapp makes when it joins, with `npcs` of the NPC type:
    /// (type, how many).
    pub fn spawns(&self, npcs: usize) -> Vec<(String, usize)> {
        let npcs = self.npc_type.iter().map(|t| (t.clone(), npcs));
        npcs.chain(self.fixtures.iter().cloned())
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Checks that every registration names a type of the definitions, that
    /// the player type has a client and the NPC type has none, and that
    /// every policy's name is plain.
    pub fn check(&self) -> Result<(), RegisterError> {
        if let Some(e) = &self.bad_policy {
            return Err(e.clone().into());
        }
        let has = |name: &str| self.defs.by_name(name).is_some();
        let named = [
            ("cell behaviour", self.cell.type_names().collect::<Vec<_>>()),
            ("base behaviour", self.base.type_names().collect()),
            ("bot behaviour", self.bots.type_names().collect()),
            (
                "fixture",
                self.fixtures.iter().map(|(t, _)| t.as_str()).collect(),
            ),
        ];
        for (what, names) in named {
            if let Some(name) = names.into_iter().find(|n| !has(n)) {
                return Err(RegisterError::NoSuchType {
                    what,
                    name: name.to_string(),
                });
            }
        }
        let player = self
            .player_type
            .as_deref()
            .ok_or(RegisterError::NoPlayerType)?;
        match self.defs.by_name(player) {
            None => {
                return Err(RegisterError::NoSuchType {
                    what: "player type",
                    name: player.into(),
                })
            }
            Some(t) if !t.has_client => {
                return Err(RegisterError::PlayerWithoutClient(player.into()))
            }
            Some(_) => {}
        }
        if let Some(npc) = self.npc_type.as_deref() {
            match self.defs.by_name(npc) {
                None => {
                    return Err(RegisterError::NoSuchType {
                        what: "NPC type",
                        name: npc.into(),
                    })
                }
                Some(t) if t.has_client => return Err(RegisterError::NpcWithClient(npc.into())),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The game's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its definitions.
    pub fn definitions(&self) -> &Arc<Definitions> {
        &self.defs
    }

    /// Its cell behaviours.
    pub fn cell_behaviors(&self) -> &Behaviors {
        &self.cell
    }

    /// Its base behaviours.
    pub fn base_behaviors(&self) -> &BaseBehaviors {
        &self.base
    }

    /// Its bot behaviours.
    pub fn bot_behaviors(&self) -> &BotBehaviors {
        &self.bots
    }

    /// The player type (empty before [`Game::players`]).
    pub fn player_type(&self) -> &str {
        self.player_type.as_deref().unwrap_or_default()
    }

    /// The NPC type, if the game has one.
    pub fn npc_type(&self) -> Option<&str> {
        self.npc_type.as_deref()
    }
}
