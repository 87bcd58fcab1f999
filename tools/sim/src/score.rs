//! How well a policy did: sampled once a virtual second from the cells'
//! own load meters (the simulator's ground truth, not the reports the
//! manager saw), and summed up into the numbers `summary.json` carries.
//!
//! - `imbalance`: max ÷ mean of the running cellapps' smoothed loads, each
//!   second; its p50, p95 and max.
//! - `recovery_s`: for each shift (see [`super::scenario::Spec::shifts`]),
//!   the seconds from the shift until the imbalance went below 1.2 for good
//!   (until the next shift or the end); `null` if it never did.
//! - `mean_load`: the cellapps' mean load, averaged over the seconds.
//! - `migrations_per_s`, `ghosts_per_real` (mean over the samples),
//!   `line_reversals` (a line moving the other way than its last move),
//!   `ticks_over_budget` (ticks whose modelled cost exceeded the period),
//!   `entities_lost` (NPCs made minus NPCs real at the end, after every
//!   migration has landed) and `entities_duplicated` (reals counted twice).
//! - `clients` (with simulated clients only): AoI updates per client per
//!   second, the share of sightings the views were behind on (sampled each
//!   second, see [`crate::truth::behind`]), corrected moves, and how many
//!   views did not equal the truth at the end, once everything had stopped.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use tessera::balance::{density, DENSITY_BINS};
use tessera::layout::{Density, LineId, SpaceView};

use super::scenario::Spec;
use super::truth::{behind, check_view};
use super::world::SimWorld;
use tessera_cellapp::cell::EntitySnapshot;

/// Imbalance above this is "uneven" for `recovery_s`.
pub const EVEN: f64 = 1.2;

/// Quantiles of the per-second imbalance.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Worst second.
    pub max: f64,
}

/// One policy's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    /// Max ÷ mean cellapp load.
    pub imbalance: Quantiles,
    /// Seconds to get under 1.2 for good after each shift.
    pub recovery_s: Vec<Option<u32>>,
    /// The mean cellapp load (share of the tick), averaged over the run.
    pub mean_load: f64,
    /// Entities that changed cell, per second.
    pub migrations_per_s: f64,
    /// Ghosts per real entity, on average.
    pub ghosts_per_real: f64,
    /// Times a line moved back the way it came.
    pub line_reversals: u64,
    /// Ticks whose cost was over the tick period.
    pub ticks_over_budget: u64,
    /// NPCs made but not real anywhere at the end.
    pub entities_lost: u64,
    /// Reals that exist twice at the end.
    pub entities_duplicated: u64,
    /// The first invariant the world broke, if any.
    pub broken: Option<String>,
    /// The clients' side, if the world had clients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<ClientScore>,
    /// The imbalance of every second.
    #[serde(rename = "imbalance_series")]
    pub series: Vec<f64>,
    /// The layout every few seconds (for figures, not the summary).
    #[serde(skip)]
    pub frames: Vec<Frame>,
}

/// What the simulated clients saw.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClientScore {
    /// Clients in the world at the end.
    pub playing: usize,
    /// Updates of what a client sees (positions of others, enters, leaves,
    /// property changes) per client per second, over the run.
    pub aoi_updates_per_client_s: f64,
    /// Share of sightings (an entity within a client's AoI radius) that its
    /// view missed or showed more than 5 m off, over the samples.
    pub views_behind: f64,
    /// Moves the server corrected.
    pub corrected: u64,
    /// Clients whose view did not equal the truth at the end, once walking,
    /// line moves and migrations had stopped.
    pub views_wrong_at_end: usize,
    /// The first wrong view at the end, if any.
    pub first_wrong: Option<String>,
}

/// The layout at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Virtual second.
    pub second: u32,
    /// The layout with each cell's load, counts and density, as the live
    /// manager's `/api/spaces/1/layout` shows it (migration numbers are not
    /// sampled here and stay zero).
    pub view: SpaceView,
    /// The imbalance then.
    pub imbalance: f64,
}

/// Collects samples during a run.
pub struct Sampler {
    frame_every: u32,
    imbalance: Vec<f64>,
    mean_load: Vec<f64>,
    ghosts_per_real: Vec<f64>,
    lines: BTreeMap<LineId, (f32, i8)>,
    reversals: u64,
    frames: Vec<Frame>,
    /// Sightings and those behind, over every sample.
    sightings: (u64, u64),
}

/// Rounds for a stable, readable summary.
fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Sampler {
    /// A sampler keeping a layout frame every `frame_every` seconds (0: none).
    pub fn new(frame_every: u32) -> Sampler {
        Sampler {
            frame_every,
            imbalance: Vec::new(),
            mean_load: Vec::new(),
            ghosts_per_real: Vec::new(),
            lines: BTreeMap::new(),
            reversals: 0,
            frames: Vec::new(),
            sightings: (0, 0),
        }
    }

    /// Takes the sample of one second; returns its imbalance.
    pub fn sample(&mut self, world: &SimWorld, second: u32) -> f64 {
        let loads: Vec<f64> = world
            .cells()
            .values()
            .map(|c| f64::from(c.load()))
            .collect();
        let mean = loads.iter().sum::<f64>() / loads.len().max(1) as f64;
        let max = loads.iter().fold(0.0f64, |m, l| m.max(*l));
        let imbalance = if mean > 1e-9 { max / mean } else { 1.0 };
        self.imbalance.push(imbalance);
        self.mean_load.push(mean);
        let (mut reals, mut ghosts) = (0usize, 0usize);
        for c in world.cells().values() {
            let s = c.stats();
            reals += s.reals;
            ghosts += s.ghosts;
        }
        self.ghosts_per_real
            .push(ghosts as f64 / reals.max(1) as f64);
        if !world.clients.is_empty() {
            let reals = world.reals();
            let by_id: BTreeMap<_, _> = reals.iter().map(|r| (r.id, r)).collect();
            let (seen, behind) = behind(world.clients.values().filter_map(|c| c.view()), &by_id);
            self.sightings.0 += seen;
            self.sightings.1 += behind;
        }
        if let Some(layout) = world.manager().layout() {
            for line in layout.lines() {
                let seen = self.lines.entry(line.line).or_insert((line.pos, 0));
                let delta = line.pos - seen.0;
                if delta.abs() > 0.01 {
                    let dir: i8 = if delta > 0.0 { 1 } else { -1 };
                    if seen.1 != 0 && seen.1 != dir {
                        self.reversals += 1;
                    }
                    *seen = (line.pos, dir);
                }
            }
            if self.frame_every > 0 && second.is_multiple_of(self.frame_every) {
                self.frames.push(frame(world, layout, second, imbalance));
            }
        }
        imbalance
    }

    /// The score of the run, counted once the world has settled.
    pub fn finish(self, world: &SimWorld, spec: &Spec) -> Score {
        let mut sorted = self.imbalance.clone();
        sorted.sort_by(f64::total_cmp);
        let shifts = spec.shifts();
        let recovery_s = shifts
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let end = shifts.get(k + 1).copied().unwrap_or(spec.duration());
                // Seconds are 1-based: sample i is second i + 1.
                let window: Vec<(u32, f64)> = (s.max(1)..=end)
                    .filter_map(|t| self.imbalance.get(t as usize - 1).map(|v| (t, *v)))
                    .collect();
                match window.iter().rev().find(|(_, v)| *v >= EVEN) {
                    None => Some(0),
                    Some((t, _)) if *t < end => Some(t + 1 - s),
                    Some(_) => None,
                }
            })
            .collect();
        let reals = world.reals();
        let unique: BTreeSet<_> = reals.iter().map(|r| r.id).collect();
        let clients = (!world.clients.is_empty()).then(|| self.clients(world, spec, &reals));
        let entities = spec.expected_entities();
        Score {
            imbalance: Quantiles {
                p50: round(quantile(&sorted, 0.5)),
                p95: round(quantile(&sorted, 0.95)),
                max: round(sorted.last().copied().unwrap_or(0.0)),
            },
            recovery_s,
            mean_load: round(
                self.mean_load.iter().sum::<f64>() / self.mean_load.len().max(1) as f64,
            ),
            migrations_per_s: round(world.offloads() as f64 / f64::from(spec.duration().max(1))),
            ghosts_per_real: round(
                self.ghosts_per_real.iter().sum::<f64>() / self.ghosts_per_real.len().max(1) as f64,
            ),
            line_reversals: self.reversals,
            ticks_over_budget: world.ticks_over_budget(),
            entities_lost: (entities as u64).saturating_sub(unique.len() as u64),
            entities_duplicated: (reals.len() - unique.len()) as u64,
            broken: world.broken.clone(),
            clients,
            series: self.imbalance.iter().map(|v| round(*v)).collect(),
            frames: self.frames,
        }
    }
}

impl Sampler {
    /// The clients' side of a run, read once the world has settled.
    fn clients(&self, world: &SimWorld, spec: &Spec, reals: &[EntitySnapshot]) -> ClientScore {
        let by_id: BTreeMap<_, _> = reals.iter().map(|r| (r.id, r)).collect();
        let defs = world.defs();
        let mut wrong = world.clients.values().filter_map(|c| match c.view() {
            Some(v) => check_view(v, &by_id, defs, VIEW_HYSTERESIS)
                .err()
                .map(|e| format!("client {}: {e}", c.id)),
            None => Some(format!("client {} is not playing: {:?}", c.id, c.phase)),
        });
        let first_wrong = wrong.next();
        let views_wrong_at_end = usize::from(first_wrong.is_some()) + wrong.count();
        let n = world.clients.len().max(1) as f64;
        let updates: u64 = world.clients.values().map(|c| c.updates).sum();
        ClientScore {
            playing: world
                .clients
                .values()
                .filter(|c| c.view().is_some())
                .count(),
            aoi_updates_per_client_s: round(updates as f64 / n / f64::from(spec.duration().max(1))),
            views_behind: round(self.sightings.1 as f64 / self.sightings.0.max(1) as f64),
            corrected: world.clients.values().map(|c| u64::from(c.corrected)).sum(),
            views_wrong_at_end,
            first_wrong,
        }
    }
}

/// How far beyond its AoI radius a client may still see an entity (the
/// cellapp's default hysteresis).
const VIEW_HYSTERESIS: f32 = 5.0;

fn frame(world: &SimWorld, layout: &tessera::layout::Layout, second: u32, imbalance: f64) -> Frame {
    let mut view = SpaceView::of(1, layout, |_| None, 1.0);
    let cells = world.cells();
    for c in &mut view.cells {
        let Some(cell) = cells.get(&c.view.app) else {
            continue;
        };
        let points: Vec<(f32, f32, f32)> = cell.spots().map(|(_, [x, z], _)| (x, z, 1.0)).collect();
        c.load = cell.load();
        c.reals = points.len() as u32;
        c.ghosts = cell.stats().ghosts as u32;
        c.density = Density {
            nx: DENSITY_BINS as u32,
            nz: DENSITY_BINS as u32,
            counts: density(&c.view.rect, &points),
        };
    }
    Frame {
        second,
        view,
        imbalance,
    }
}
