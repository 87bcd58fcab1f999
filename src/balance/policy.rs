//! The balancing policy trait and the registry of policies a manager (or
//! the simulator) can run. A policy reads the cells' load reports once a
//! second and says where cut lines should go; the manager applies the moves
//! (each line kept within its range) and the simulator scores policies side
//! by side. The built-in policies live in the manager crate; a game or a
//! lab crate registers its own through `tessera_game::Game::policy`, and gets
//! `tessera sim --compare` and the live manager's policy switch with them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::CellReport;
use crate::layout::{CellId, CellView, Layout, LineId, LineView};

/// A balancing policy. The manager calls [`Policy::plan`] once a second
/// with the layout and every cell's latest report; the moves it returns are
/// applied at once (a position outside the line's range is clamped to it).
/// A policy may keep state between calls (per-line damping, history): a
/// switch to it, and every simulated run, starts from a fresh one.
pub trait Policy: Send {
    /// Its name, as `--policy`, the admin API and `tessera sim` spell it:
    /// lowercase letters, digits and `-`.
    fn name(&self) -> &'static str;
    /// Where lines should go now, given the latest reports: `(line, new
    /// position in metres)` for each line to move.
    fn plan(
        &mut self,
        layout: &Layout,
        reports: &BTreeMap<CellId, CellReport>,
    ) -> Vec<(LineId, f32)>;
    /// Sets one of its tuning parameters (`tessera sim --sweep
    /// NAME.KEY=...` varies them); a policy without parameters, or without
    /// this one, says so.
    fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        let _ = value;
        Err(format!("policy {} has no parameter {key:?}", self.name()))
    }
}

/// The cells on each side of a line: (low side, high side).
pub fn sides<'a>(line: &LineView, cells: &'a [CellView]) -> (Vec<&'a CellView>, Vec<&'a CellView>) {
    let pick = |ids: &[CellId]| cells.iter().filter(|c| ids.contains(&c.cell)).collect();
    (pick(&line.low), pick(&line.high))
}

/// The mean load of `cells` by their latest reports (a cell without a
/// report counts as idle; no cells, 0).
pub fn mean_load(cells: &[&CellView], reports: &BTreeMap<CellId, CellReport>) -> f32 {
    if cells.is_empty() {
        return 0.0;
    }
    cells
        .iter()
        .map(|c| reports.get(&c.cell).map_or(0.0, |r| r.load))
        .sum::<f32>()
        / cells.len() as f32
}

/// Makes a fresh policy.
pub type PolicyFactory = Arc<dyn Fn() -> Box<dyn Policy> + Send + Sync>;

/// Policies by name, in the order they were registered.
#[derive(Clone, Default)]
pub struct Policies {
    list: Vec<(&'static str, PolicyFactory)>,
}

/// A policy that cannot be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy name {0:?} is not lowercase letters, digits and '-'")]
pub struct BadPolicyName(pub &'static str);

impl Policies {
    /// No policy.
    pub fn new() -> Policies {
        Policies::default()
    }

    /// Registers the policy `make` makes, under its [`Policy::name`]; one
    /// registered before under the same name is replaced.
    pub fn register(
        &mut self,
        make: impl Fn() -> Box<dyn Policy> + Send + Sync + 'static,
    ) -> Result<(), BadPolicyName> {
        let name = make().name();
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !plain {
            return Err(BadPolicyName(name));
        }
        let make: PolicyFactory = Arc::new(make);
        match self.list.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = make,
            None => self.list.push((name, make)),
        }
        Ok(())
    }

    /// Adds every policy of `other` (replacing those of the same names).
    pub fn extend(&mut self, other: &Policies) {
        for (name, make) in &other.list {
            match self.list.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = make.clone(),
                None => self.list.push((name, make.clone())),
            }
        }
    }

    /// A fresh policy called `name`, if there is one.
    pub fn make(&self, name: &str) -> Option<Box<dyn Policy>> {
        self.list
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, make)| make())
    }

    /// The names, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.list.iter().map(|(n, _)| *n).collect()
    }

    /// Whether there is a policy called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.list.iter().any(|(n, _)| *n == name)
    }
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Still(&'static str);

    impl Policy for Still {
        fn name(&self) -> &'static str {
            self.0
        }
        fn plan(&mut self, _: &Layout, _: &BTreeMap<CellId, CellReport>) -> Vec<(LineId, f32)> {
            Vec::new()
        }
    }

    #[test]
    fn policies_register_by_name_and_replace_their_namesakes() {
        let mut p = Policies::new();
        p.register(|| Box::new(Still("a"))).expect("a");
        p.register(|| Box::new(Still("b-2"))).expect("b-2");
        assert_eq!(p.names(), ["a", "b-2"]);
        let mut q = Policies::new();
        q.register(|| Box::new(Still("a"))).expect("a again");
        q.register(|| Box::new(Still("c"))).expect("c");
        p.extend(&q);
        assert_eq!(p.names(), ["a", "b-2", "c"]);
        assert_eq!(p.make("c").map(|x| x.name()), Some("c"));
        assert!(p.make("d").is_none() && !p.contains("d"));
        assert_eq!(
            p.register(|| Box::new(Still("Not Plain"))),
            Err(BadPolicyName("Not Plain"))
        );
    }
}
