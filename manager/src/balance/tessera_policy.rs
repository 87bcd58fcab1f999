//! Tessera's balancer. Instead of creeping a line by small bound-level steps,
//! it places every line in one step: each cell reports its load profile
//! along both axes (the load in 32 slices of its rectangle, scaled by the
//! cell's measured cost per entity), so for any line the manager knows how
//! the load on its two sides would change as the line moves, and puts it
//! where each cellapp of either side gets an equal share.
//!
//! - Each profile is placed on the rectangle the cell had when it measured
//!   (reports carry it), so the load is known in space, not relative to a
//!   line that may have moved since: acting again on the same reports puts
//!   a line where it already is. A line is planned from reports that every
//!   cell on both sides made under one layout (the policy keeps each cell's
//!   last two); mixing layouts would count a strip that just changed hands
//!   twice or not at all.
//! - Every line is planned each round, so a line that follows a walking
//!   crowd moves a few metres a round, less than the offload hysteresis:
//!   the crowd's members do not change cells twice for each step.
//! - A dead band (relative, with an absolute floor) keeps it still when the
//!   sides are nearly even, and moves shorter than a metre are skipped: both
//!   would only cost migrations.
//! - Each line keeps a bracket: the last place it wanted to move up and the
//!   last place it wanted to move down. A target outside the bracket gives
//!   its middle instead, so a line that overshoots (profiles are coarse,
//!   and a column of entities cannot be split) closes in like a bisection
//!   and stops; the bracket is forgotten when the sides drift further apart
//!   than at its ends, which is what a shifting load does.
//! - Each reversal in a row widens the line's dead band (up to nine times),
//!   so noise in measured loads cannot make it swing; a move in the same
//!   direction resets it.

use std::collections::BTreeMap;
use tessera::balance::CellReport;
use tessera::layout::{Axis, CellId, Layout, LineId};

use super::{sides, Policy};

/// Sides whose per-cellapp loads differ by less than this share of the
/// heavier one are left alone.
pub const DEAD_SHARE: f32 = 0.015;
/// Loads below this share of a tick are noise, not a reason to move.
pub const FLOOR: f32 = 0.001;
/// The most a line's dead band widens: after this many recent reversals it
/// is `1 + MAX_SWINGS` times [`DEAD_SHARE`].
pub const MAX_SWINGS: u8 = 8;
/// Rounds a bracket end is trusted while the line still moves (a settled
/// line keeps its bracket).
pub const BRACKET_ROUNDS: u64 = 5;
/// Moves shorter than this (metres) are not worth their migrations.
pub const MIN_STEP: f32 = 1.0;

/// What the policy remembers of a line.
#[derive(Clone, Copy, Debug, Default)]
struct Moved {
    /// The direction of its last move (-1 or +1, 0 before any).
    dir: i8,
    /// Reversals in a row (each widens the line's dead band).
    swings: u8,
    /// The last place where the line wanted to move up, the imbalance of
    /// its sides there, and the round it was seen (or last confirmed).
    up: Option<(f32, f32, u64)>,
    /// The same for the last place where it wanted to move down.
    down: Option<(f32, f32, u64)>,
}

impl Moved {
    /// Notes that at `pos`, with sides `gap` apart (relative), the line
    /// wants to move `dir`; forgets the other end of the bracket if it no
    /// longer brackets, or if the sides are now further apart than at either
    /// end (the load has shifted, so what the ends said is stale).
    fn note(&mut self, pos: f32, gap: f32, dir: i8, round: u64) {
        let fresh = |e: &Option<(f32, f32, u64)>| e.filter(|e| round <= e.2 + BRACKET_ROUNDS);
        self.up = fresh(&self.up);
        self.down = fresh(&self.down);
        let worst = self
            .up
            .iter()
            .chain(&self.down)
            .map(|e| e.1)
            .fold(0.0, f32::max);
        if gap > worst + DEAD_SHARE {
            self.up = None;
            self.down = None;
        }
        if dir > 0 {
            self.up = Some((pos, gap, round));
            if self.down.is_some_and(|d| d.0 <= pos) {
                self.down = None;
            }
        } else {
            self.down = Some((pos, gap, round));
            if self.up.is_some_and(|u| u.0 >= pos) {
                self.up = None;
            }
        }
    }

    /// `to`, kept inside the bracket: where the line last wanted to go up
    /// and where it last wanted to go down. A target outside it (the
    /// profiles are coarse, or entities stand in a column that cannot be
    /// split) gives the bracket's middle instead, so the line closes in
    /// like a bisection and stops once the bracket is under two metres.
    fn within(&self, to: f32) -> f32 {
        match (self.up, self.down) {
            (Some((a, ..)), Some((b, ..))) if !(a < to && to < b) => 0.5 * (a + b),
            _ => to,
        }
    }

    /// The line has settled inside its bracket: both ends still hold.
    fn settled(&mut self, round: u64) {
        for e in [&mut self.up, &mut self.down].into_iter().flatten() {
            e.2 = round;
        }
    }
}

/// Tessera's one-step balancer.
#[derive(Debug)]
pub struct Tessera {
    /// The dead band's share (`dead_share`, [`DEAD_SHARE`] by default).
    dead_share: f32,
    /// The shortest move worth making, metres (`min_step`, [`MIN_STEP`]
    /// by default).
    min_step: f32,
    lines: BTreeMap<LineId, Moved>,
    /// Rounds planned so far.
    round: u64,
    /// Each cell's two latest reports under different layouts, oldest
    /// first: cellapps report at their own moments, so when the policy runs
    /// some have measured the last layout and some the one before.
    seen: BTreeMap<CellId, Vec<CellReport>>,
}

impl Default for Tessera {
    fn default() -> Self {
        Tessera {
            dead_share: DEAD_SHARE,
            min_step: MIN_STEP,
            lines: BTreeMap::new(),
            round: 0,
            seen: BTreeMap::new(),
        }
    }
}

impl Tessera {
    /// Adds this round's reports to those seen, forgetting cells that are
    /// gone.
    fn remember(&mut self, layout: &Layout, reports: &BTreeMap<CellId, CellReport>) {
        self.seen.retain(|c, _| layout.app_of(*c).is_some());
        for (cell, r) in reports {
            let kept = self.seen.entry(*cell).or_default();
            if kept.last().is_some_and(|k| k.epoch == r.epoch) {
                kept.pop();
            }
            kept.push(r.clone());
            if kept.len() > 2 {
                kept.remove(0);
            }
        }
    }

    /// The profiles of `cells` along `axis`, each placed on the rectangle
    /// its cell had when it measured, all measured under one layout (the
    /// newest they share); `None` if there is no such layout.
    fn slices(&self, axis: Axis, cells: &[CellId]) -> Option<Vec<Slice>> {
        let first = self.seen.get(cells.first()?)?;
        let at = |cell: &CellId, epoch: u64| {
            self.seen
                .get(cell)
                .and_then(|kept| kept.iter().find(|r| r.epoch == epoch))
        };
        let epoch = first
            .iter()
            .rev()
            .map(|r| r.epoch)
            .find(|e| cells.iter().all(|c| at(c, *e).is_some()))?;
        let i = match axis {
            Axis::X => 0,
            Axis::Z => 1,
        };
        let mut out = Vec::new();
        for r in cells.iter().filter_map(|c| at(c, epoch)) {
            let (a, b) = r.rect.span(axis);
            let profile = &r.profile[i];
            let n = profile.len().max(1) as f32;
            for (k, v) in profile.iter().enumerate() {
                let (s0, s1) = (a + (b - a) * k as f32 / n, a + (b - a) * (k + 1) as f32 / n);
                out.push((s0, s1, *v));
            }
        }
        Some(out)
    }
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

    fn set(&mut self, key: &str, value: f64) -> Result<(), String> {
        match key {
            "dead_share" if (0.0..=1.0).contains(&value) => self.dead_share = value as f32,
            "min_step" if (0.0..=1_000.0).contains(&value) => self.min_step = value as f32,
            "dead_share" | "min_step" => {
                return Err(format!(
                "tessera.{key} {value} is out of bounds (dead_share 0 to 1, min_step 0 to 1000 m)"
            ))
            }
            _ => {
                return Err(format!(
                    "policy tessera has no parameter {key:?} (it has dead_share, min_step)"
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
        self.remember(layout, reports);
        self.round += 1;
        let round = self.round;
        let cells = layout.cells();
        let lines = layout.lines();
        self.lines
            .retain(|id, _| lines.iter().any(|l| l.line == *id));
        let mut moves = Vec::new();
        for line in lines {
            let (low, high) = sides(&line, &cells);
            if low.is_empty() || high.is_empty() {
                continue;
            }
            let ids: Vec<CellId> = low.iter().chain(&high).map(|c| c.cell).collect();
            let Some(slices) = self.slices(line.axis, &ids) else {
                continue;
            };
            let total: f32 = slices.iter().map(|s| s.2).sum();
            let l = below(&slices, line.pos);
            let h = total - l;
            let (nl, nh) = (low.len() as f32, high.len() as f32);
            let (ml, mh) = (l / nl, h / nh);
            let heavier = ml.max(mh);
            let swings = self.lines.get(&line.line).map_or(0, |m| m.swings);
            let band = self.dead_share * (1.0 + f32::from(swings));
            if heavier < FLOOR || (ml - mh).abs() <= band * heavier {
                continue;
            }
            let target = total * nl / (nl + nh);
            let (lo, hi) = line.range;
            let state = self.lines.entry(line.line).or_default();
            // The low side is the lighter one: the line goes up.
            let dir: i8 = if ml < mh { 1 } else { -1 };
            state.note(line.pos, (ml - mh).abs() / heavier, dir, round);
            let to = state.within(position_for(&slices, target, lo, hi));
            if (to - line.pos).abs() < self.min_step {
                state.settled(round);
                continue;
            }
            let reverses = state.dir != 0 && state.dir != dir;
            state.swings = if reverses {
                (state.swings + 1).min(MAX_SWINGS)
            } else {
                0
            };
            state.dir = dir;
            moves.push((line.line, to));
        }
        moves
    }
}
