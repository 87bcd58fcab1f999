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
use tessera::layout::{CellId, CellView, Layout, LineId, LineView};

pub use tessera::balance::{Policies, Policy};

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

/// The cells on each side of a line.
pub(crate) fn sides<'a>(
    line: &LineView,
    cells: &'a [CellView],
) -> (Vec<&'a CellView>, Vec<&'a CellView>) {
    let pick = |ids: &[CellId]| cells.iter().filter(|c| ids.contains(&c.cell)).collect();
    (pick(&line.low), pick(&line.high))
}

pub(crate) fn mean(cells: &[&CellView], reports: &BTreeMap<CellId, CellReport>) -> f32 {
    if cells.is_empty() {
        return 0.0;
    }
    cells
        .iter()
        .map(|c| reports.get(&c.cell).map_or(0.0, |r| r.load))
        .sum::<f32>()
        / cells.len() as f32
}

#[cfg(test)]
mod tests;
