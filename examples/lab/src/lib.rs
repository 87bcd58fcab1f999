//! # tessera-lab
//!
//! A balancing lab as a studio would keep one: a policy of its own, written
//! against the public [`Policy`] trait with nothing but what a policy is
//! given (the layout and the cells' load reports), registered on a game with
//! [`Game::policy`]. Its binary, `lab`, is Tessera's whole command line with
//! that game inside, so `lab sim --compare` scores [`Nudge`] beside the
//! built-in policies and a live `lab up` world can be switched to it with
//! `POST /api/balance {"policy": "nudge"}`.

use std::collections::BTreeMap;
use tessera::balance::{mean_load, sides, CellReport};
use tessera::layout::{CellId, Layout, LineId};
use tessera_game::{Game, Policy};

/// Moves each line a damped step toward its heavier side: the difference
/// between the two sides' mean loads, as a share of their sum, times `gain`
/// times half the room the heavier side has along the line's axis. Lines
/// whose sides differ by less than `dead_band` of their sum stay. Simpler
/// than `tessera` (which reads the load profiles and places a line in one
/// step) and than `bigworld` (which creeps by bound levels with per-line
/// aggression): a proportional controller, to compare against them.
#[derive(Clone, Copy, Debug)]
pub struct Nudge {
    /// How much of the indicated step to take each second (0 to 1).
    pub gain: f32,
    /// Relative difference below which a line stays.
    pub dead_band: f32,
}

impl Default for Nudge {
    fn default() -> Self {
        Nudge {
            gain: 0.5,
            dead_band: 0.05,
        }
    }
}

impl Policy for Nudge {
    fn name(&self) -> &'static str {
        "nudge"
    }

    fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        let slot = match key {
            "gain" => &mut self.gain,
            "dead_band" => &mut self.dead_band,
            _ => {
                return Err(format!(
                    "policy nudge has no parameter {key:?} (it has gain, dead_band)"
                ))
            }
        };
        if !(0.0..=1.0).contains(&value) {
            return Err(format!("nudge.{key} {value} is not between 0 and 1"));
        }
        *slot = value as f32;
        Ok(())
    }

    fn plan(
        &mut self,
        layout: &Layout,
        reports: &BTreeMap<CellId, CellReport>,
    ) -> Vec<(LineId, f32)> {
        let cells = layout.cells();
        let mut moves = Vec::new();
        for line in layout.lines() {
            let (low, high) = sides(&line, &cells);
            if low.is_empty() || high.is_empty() {
                continue;
            }
            let (l, h) = (mean_load(&low, reports), mean_load(&high, reports));
            if l + h <= 0.0 {
                continue;
            }
            // Above zero the low side is heavier and the line moves down,
            // shrinking it.
            let diff = (l - h) / (l + h);
            if diff.abs() < self.dead_band {
                continue;
            }
            let (a, b) = line.range;
            let room = if diff > 0.0 {
                line.pos - a
            } else {
                b - line.pos
            };
            let to = (line.pos - diff * self.gain * room * 0.5).clamp(a, b);
            if (to - line.pos).abs() > 1e-3 {
                moves.push((line.line, to));
            }
        }
        moves
    }
}

/// The demo game with [`Nudge`] registered beside the built-in policies.
pub fn game() -> Game {
    tessera_demo::game().policy(|| Box::new(Nudge::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera::layout::Rect;
    use tessera::AppId;

    fn report(cell: CellId, rect: Rect, load: f32) -> CellReport {
        CellReport {
            cell,
            epoch: 0,
            rect,
            load,
            reals: 0,
            ghosts: 0,
            witnesses: 0,
            edges: [[None; 5]; 4],
            profile: [Vec::new(), Vec::new()],
            migrations_in: 0,
            migrations_out: 0,
            flows: Vec::new(),
            density: Vec::new(),
        }
    }

    #[test]
    fn a_line_moves_into_its_heavier_side_and_stays_when_even() {
        let space = Rect::new(0.0, 0.0, 1_000.0, 1_000.0);
        let layout = Layout::equal(space, &[AppId(1), AppId(2)]).expect("layout");
        let cells = layout.cells();
        let line = layout.lines()[0].clone();
        let load = |low: f32, high: f32| -> BTreeMap<CellId, CellReport> {
            cells
                .iter()
                .map(|c| {
                    let l = if line.low.contains(&c.cell) {
                        low
                    } else {
                        high
                    };
                    (c.cell, report(c.cell, c.rect, l))
                })
                .collect()
        };
        let mut nudge = Nudge::default();
        // The low side three times as busy: the line moves down by
        // 0.5 × 0.5 × half the low side's 500 m.
        let moves = nudge.plan(&layout, &load(0.6, 0.2));
        assert_eq!(moves.len(), 1);
        assert!((moves[0].1 - (500.0 - 62.5)).abs() < 1e-3, "{moves:?}");
        // The other way round, up.
        let moves = nudge.plan(&layout, &load(0.2, 0.6));
        assert!(moves[0].1 > 500.0, "{moves:?}");
        // Within the dead band: no move.
        assert!(nudge.plan(&layout, &load(0.41, 0.40)).is_empty());
    }

    #[test]
    fn the_game_has_the_policy() {
        let game = game();
        game.check().expect("the game fits its definitions");
        assert_eq!(game.policies().names(), ["nudge"]);
    }
}
