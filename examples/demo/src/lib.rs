//! The demo world that the stock `tessera` binary runs, written as a game
//! on the game API like any studio's: `Avatar` players who set a title and
//! an emote, ping the server and collect gold, among `Npc`s that wander and
//! change their mood now and then.

mod base;
mod bots;
mod cell;

use tessera::defs::Definitions;
use tessera_game::Game;

/// The demo world's definitions file.
pub const DEFINITIONS_TOML: &str = include_str!("../entities.toml");

/// The demo world's definitions. The embedded file is checked by a test,
/// so this cannot fail in a released build.
pub fn definitions() -> Definitions {
    match Definitions::parse(DEFINITIONS_TOML, std::path::Path::new("demo/entities.toml")) {
        Ok(d) => d,
        Err(e) => panic!("embedded demo definitions are invalid: {e}"),
    }
}

/// The demo world as a game.
pub fn game() -> Game {
    Game::with_definitions("demo", definitions())
        .players("Avatar")
        .npcs("Npc")
        .cell("Avatar", cell::Avatar)
        .cell("Npc", cell::Npc)
        .base("Avatar", base::Avatar)
        .bot("Avatar", |n| Box::new(bots::Emoter::new(n)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_game_fits_its_definitions() {
        let game = super::game();
        assert_eq!(game.check(), Ok(()));
        let avatar = game.definitions().by_name("Avatar").expect("Avatar");
        assert!(avatar.has_client);
        assert!(avatar.method("add_gold").is_some());
    }
}
