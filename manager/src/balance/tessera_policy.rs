//! Tessera's balancer. Instead of creeping a line by small bound-level steps,
//! it places every line in one step: each cell reports its load profile
//! along both axes (the load in 32 slices of its rectangle, scaled by the
//! cell's measured cost per entity), so for any line the manager knows how
//! the load on its two sides would change as the line moves, and puts it
//! where each cellapp of either side gets an equal share.
//!
//! - Every line is planned each round from the same reports; a line whose
//!   parent moves has its new range clamped by the layout, and the next
//!   round corrects what the parent's move changed.
//! - A line acts only on reports made after its last move (reports carry
//!   the layout epoch), so it never reacts twice to the same load.
//! - A dead band (relative, with an absolute floor) keeps it still when the
//!   sides are nearly even, and moves shorter than a metre are skipped: both
//!   would only cost migrations.
//! - A line that reverses direction moves only half way, and each reversal
//!   in a row widens its dead band (up to five times), so noise in measured
//!   loads, or entities that cannot be split finer, cannot make it swing;
//!   a move in the same direction resets it.

use std::collections::BTreeMap;
use tessera::balance::CellReport;
use tessera::layout::{Axis, CellId, Layout, LineId};

use super::{sides, Policy};

/// Sides whose per-cellapp loads differ by less than this share of the
/// heavier one are left alone.
pub const DEAD_SHARE: f32 = 0.03;
/// Loads below this share of a tick are noise, not a reason to move.
pub const FLOOR: f32 = 0.001;
/// The most a line's dead band widens: after this many reversals in a row
/// it is `1 + MAX_SWINGS` times [`DEAD_SHARE`].
pub const MAX_SWINGS: u8 = 4;
/// Moves shorter than this (metres) are not worth their migrations.
pub const MIN_STEP: f32 = 1.0;

/// What the policy remembers of a line.
#[derive(Clone, Copy, Debug)]
struct Moved {
    /// The layout epoch right after its last move.
    epoch: u64,
    /// The direction of that move (-1 or +1, 0 before any).
    dir: i8,
    /// Reversals in a row (each widens the line's dead band).
    swings: u8,
}

/// Tessera's one-step balancer.
#[derive(Debug, Default)]
pub struct Tessera {
    lines: BTreeMap<LineId, Moved>,
}

/// A stretch of a cell's profile along one axis: from, to, load.
type Slice = (f32, f32, f32);

/// The load below `p` of slices spread evenly over their stretch.
fn below(slices: &[Slice], p: f32) -> f32 {
    slices
        .iter()
        .map(|&(a, b, v)| {
            if b > a {
                v * ((p - a) / (b - a)).clamp(0.0, 1.0)
            } else if p > a {
                v
            } else {
                0.0
            }
        })
        .sum()
}

/// The position in `[lo, hi]` with `target` load below it (cumulative load
/// only grows with the position, so bisection finds it).
fn position_for(slices: &[Slice], target: f32, lo: f32, hi: f32) -> f32 {
    let (mut a, mut b) = (lo, hi);
    if below(slices, a) >= target {
        return a;
    }
    if below(slices, b) <= target {
        return b;
    }
    for _ in 0..40 {
        let m = 0.5 * (a + b);
        if below(slices, m) < target {
            a = m;
        } else {
            b = m;
        }
    }
    0.5 * (a + b)
}

impl Policy for Tessera {
    fn name(&self) -> &'static str {
        "tessera"
    }

    fn plan(
        &mut self,
        layout: &Layout,
        reports: &BTreeMap<CellId, CellReport>,
    ) -> Vec<(LineId, f32)> {
        let cells = layout.cells();
        // A planned move that was not applied (clamped, or refused) never
        // bumped the epoch: today's reports are fresh for that line.
        for m in self.lines.values_mut() {
            m.epoch = m.epoch.min(layout.epoch);
        }
        let mut moves = Vec::new();
        for line in layout.lines() {
            let (low, high) = sides(&line, &cells);
            if low.is_empty() || high.is_empty() {
                continue;
            }
            let since = self.lines.get(&line.line).map_or(0, |m| m.epoch);
            let axis = match line.axis {
                Axis::X => 0,
                Axis::Z => 1,
            };
            let mut slices: Vec<Slice> = Vec::new();
            let (mut l, mut h) = (0.0f32, 0.0f32);
            let mut fresh = true;
            for (c, is_low) in low
                .iter()
                .map(|c| (c, true))
                .chain(high.iter().map(|c| (c, false)))
            {
                let Some(r) = reports.get(&c.cell).filter(|r| r.epoch >= since) else {
                    fresh = false;
                    break;
                };
                let (a, b) = c.rect.span(line.axis);
                let profile = &r.profile[axis];
                let n = profile.len().max(1) as f32;
                for (i, v) in profile.iter().enumerate() {
                    let (s0, s1) = (a + (b - a) * i as f32 / n, a + (b - a) * (i + 1) as f32 / n);
                    slices.push((s0, s1, *v));
                }
                let sum: f32 = profile.iter().sum();
                if is_low {
                    l += sum;
                } else {
                    h += sum;
                }
            }
            if !fresh {
                continue;
            }
            let (nl, nh) = (low.len() as f32, high.len() as f32);
            let (ml, mh) = (l / nl, h / nh);
            let heavier = ml.max(mh);
            let swings = self.lines.get(&line.line).map_or(0, |m| m.swings);
            let band = DEAD_SHARE * (1.0 + f32::from(swings));
            if heavier < FLOOR || (ml - mh).abs() <= band * heavier {
                continue;
            }
            let target = (l + h) * nl / (nl + nh);
            let (lo, hi) = line.range;
            let mut to = position_for(&slices, target, lo, hi);
            let state = self.lines.entry(line.line).or_insert(Moved {
                epoch: 0,
                dir: 0,
                swings: 0,
            });
            let dir: i8 = if to < line.pos { -1 } else { 1 };
            let reverses = state.dir != 0 && state.dir != dir;
            if reverses {
                to = line.pos + 0.5 * (to - line.pos);
            }
            if (to - line.pos).abs() < MIN_STEP {
                continue;
            }
            state.swings = if reverses {
                (state.swings + 1).min(MAX_SWINGS)
            } else {
                0
            };
            state.dir = dir;
            moves.push((line.line, to));
        }
        // Each applied move bumps the epoch by one: reports made under the
        // last of them show the new shape.
        let after = layout.epoch + moves.len() as u64;
        for (line, _) in &moves {
            if let Some(m) = self.lines.get_mut(line) {
                m.epoch = after;
            }
        }
        moves
    }
}
