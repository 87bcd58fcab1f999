//! The arena: an example game on Tessera that uses its game API. Players'
//! fighters strike monsters with a client-exposed `attack` that reaches
//! the target's real on whichever cell it lives; monsters chase the
//! nearest fighter in sight and strike back on a cooldown; the dead rise;
//! a kill's gold is looted onto the killer's base and saved; healing
//! springs are proximity traps; players join guilds by name. Its bots play
//! it. `cargo run --release -p tessera-arena -- up --bots 100` starts it.

pub mod base;
pub mod bots;
pub mod cell;

use tessera::defs::Definitions;
use tessera_game::Game;

/// The arena's definitions file.
pub const DEFINITIONS_TOML: &str = include_str!("../entities.toml");

/// Springs every cellapp makes in its area.
pub const SPRINGS_PER_CELLAPP: usize = 3;

/// The arena's definitions (checked by a test, so this cannot fail in a
/// released build).
pub fn definitions() -> Definitions {
    match Definitions::parse(
        DEFINITIONS_TOML,
        std::path::Path::new("arena/entities.toml"),
    ) {
        Ok(d) => d,
        Err(e) => panic!("embedded arena definitions are invalid: {e}"),
    }
}

/// The arena as a game.
pub fn game() -> Game {
    Game::with_definitions("arena", definitions())
        .players("Fighter")
        .npcs("Monster")
        .fixtures("Healer", SPRINGS_PER_CELLAPP)
        .cell("Fighter", cell::Fighter)
        .cell("Monster", cell::Monster)
        .cell("Healer", cell::Spring)
        .base("Fighter", base::FighterBase)
        .base("Guild", base::Guild)
        .bot("Fighter", |n| Box::new(bots::Brawler::new(n)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_arena_fits_its_definitions() {
        assert_eq!(super::game().check(), Ok(()));
    }
}
