//! BigWorld's line-by-line balancer, the baseline of design §9: for each
//! line, compare the average load of its two sides; move the line into the
//! heavier side as far as the heavier side's bound levels say sheds the
//! difference times an aggression factor; a dead band; aggression halves when
//! a line reverses and grows slowly otherwise; never grow a side already near
//! the safety limit.

use std::collections::BTreeMap;
use tessera::balance::{CellReport, Edge, LEVELS};
use tessera::layout::{Axis, CellId, Layout, LineId};

use super::{mean, sides, Policy};

/// Below this difference in load a line does not move.
pub const DEAD_BAND: f32 = 0.00125;
const MIN_AGGRESSION: f32 = 0.0625;
const GROWTH: f32 = 1.072;

/// BigWorld's line-by-line balancer.
#[derive(Debug)]
pub struct BigWorld {
    /// Per line: aggression and the last direction moved (-1, 0, +1).
    state: BTreeMap<LineId, (f32, i8)>,
    /// Below this difference in load a line does not move
    /// (`dead_band`, [`DEAD_BAND`] by default).
    dead_band: f32,
}

impl Default for BigWorld {
    fn default() -> Self {
        BigWorld {
            state: BTreeMap::new(),
            dead_band: DEAD_BAND,
        }
    }
}

impl Policy for BigWorld {
    fn name(&self) -> &'static str {
        "bigworld"
    }

    fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        match key {
            "dead_band" if (0.0..=1.0).contains(&value) => self.dead_band = value as f32,
            "dead_band" => {
                return Err(format!("bigworld.dead_band {value} is not between 0 and 1"))
            }
            _ => {
                return Err(format!(
                    "policy bigworld has no parameter {key:?} (it has dead_band)"
                ))
            }
        }
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
            let (l, h) = (mean(&low, reports), mean(&high, reports));
            let all =
                (l * low.len() as f32 + h * high.len() as f32) / (low.len() + high.len()) as f32;
            let low_heavier = l > h;
            let diff = l.max(h) - all;
            if diff < self.dead_band {
                continue;
            }
            // Never grow a side whose busiest cell is near the limit.
            let safety = (1.1 * all).max(0.85);
            let growing = if low_heavier { &high } else { &low };
            let busiest = growing
                .iter()
                .map(|c| reports.get(&c.cell).map_or(0.0, |r| r.load))
                .fold(0.0, f32::max);
            if busiest >= safety {
                continue;
            }
            let dir: i8 = if low_heavier { -1 } else { 1 };
            let (aggression, last) = self.state.entry(line.line).or_insert((1.0, 0));
            *aggression = if *last != 0 && *last != dir {
                *aggression * 0.5
            } else {
                *aggression * GROWTH
            }
            .clamp(MIN_AGGRESSION, 1.0);
            let target = diff * *aggression;
            // The heavier side's cells along the line say how far to go.
            let (heavy, edge) = match (low_heavier, line.axis) {
                (true, Axis::X) => (&low, Edge::XHigh),
                (true, Axis::Z) => (&low, Edge::ZHigh),
                (false, Axis::X) => (&high, Edge::XLow),
                (false, Axis::Z) => (&high, Edge::ZLow),
            };
            let touching = heavy.iter().filter(|c| {
                let (a, b) = c.rect.span(line.axis);
                if low_heavier {
                    (b - line.pos).abs() < 1e-3
                } else {
                    (a - line.pos).abs() < 1e-3
                }
            });
            let mut best: Option<f32> = None;
            for c in touching {
                let Some(r) = reports.get(&c.cell) else {
                    continue;
                };
                let levels = &r.edges[edge as usize];
                let pick = LEVELS
                    .iter()
                    .zip(levels)
                    .find(|(share, coord)| **share <= target && coord.is_some())
                    .and_then(|(_, coord)| *coord);
                if let Some(p) = pick {
                    // The most cautious of the cells along the line.
                    if best.is_none_or(|b| (p - line.pos).abs() < (b - line.pos).abs()) {
                        best = Some(p);
                    }
                }
            }
            let Some(to) = best else { continue };
            let (a, b) = line.range;
            let to = to.clamp(a, b);
            if to != line.pos {
                *last = dir;
                moves.push((line.line, to));
            }
        }
        moves
    }
}
