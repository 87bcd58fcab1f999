//! The demo world that `tessera up` runs: its definitions file, embedded so
//! the binary needs nothing beside it.

use crate::defs::Definitions;
use std::path::Path;

/// The demo world's definitions file.
pub const DEFINITIONS_TOML: &str = include_str!("entities.toml");

/// The demo world's definitions. The embedded file is checked by a test, so
/// this cannot fail in a released build.
pub fn definitions() -> Definitions {
    match Definitions::parse(DEFINITIONS_TOML, Path::new("demo/entities.toml")) {
        Ok(d) => d,
        Err(e) => panic!("embedded demo definitions are invalid: {e}"),
    }
}
