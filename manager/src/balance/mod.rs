//! Load balancing: policies that read the cells' load reports and decide
//! where cut lines go. The manager (and the simulator) run a policy once a
//! second and apply its moves to the layout.
//!
//! - [`Static`]: equal areas, never moves: the yardstick.
//! - [`BigWorld`]: BigWorld's baseline (design §9), creeping by bound levels.
//! - [`Tessera`]: ours, placing lines in one step from the load profiles.
//!
//! The [`Policy`] trait and the [`Policies`] registry live in
//! `tessera::balance`, so that a game or lab crate can write its own and
//! register it beside these. `docs/balancing.md` explains them and how the
//! simulator scores them.

use std::collections::BTreeMap;
use tessera::balance::CellReport;
use tessera::layout::{CellId, Layout, LineId};

pub use tessera::balance::{mean_load as mean, sides, Policies, Policy};

mod bigworld;
mod tessera_policy;

pub use bigworld::BigWorld;
pub use tessera_policy::Tessera;

/// The built-in policies' names, as `--policy` spells them.
pub const POLICIES: [&str; 3] = ["static", "bigworld", "tessera"];

/// The built-in policies: [`Static`], [`BigWorld`] and [`Tessera`].
pub fn built_in() -> Policies {
    let mut p = Policies::new();
    // Their names are plain: registering them cannot fail.
    let _ = p.register(|| Box::new(Static));
    let _ = p.register(|| Box::new(BigWorld::default()));
    let _ = p.register(|| Box::new(Tessera::default()));
    p
}

/// The built-in policies and a game's own (a game's policy of a built-in's
/// name replaces it).
pub fn with(game: &Policies) -> Policies {
    let mut p = built_in();
    p.extend(game);
    p
}

/// Never moves a line.
#[derive(Debug, Default)]
pub struct Static;

impl Policy for Static {
    fn name(&self) -> &'static str {
        "static"
    }
    fn plan(&mut self, _: &Layout, _: &BTreeMap<CellId, CellReport>) -> Vec<(LineId, f32)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
