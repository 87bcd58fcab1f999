//! A cell's load: how busy it is, measured or modelled, smoothed tick by
//! tick, and the report the cellapp sends the manager once a second
//! (design §6 step 8).
//!
//! Live, the driver measures the time the cell spends working and hands it
//! to [`Cell::note_work`](crate::cell::Cell::note_work). In the simulator the
//! load comes from a [`CostModel`] instead, so that a run depends on its seed
//! alone. Either way the report spreads the load over the entities by the
//! model's relative costs to give the bound levels and the profile.

use tessera::balance::CellReport;
use tessera::layout::{CellId, Rect};

/// What one tick costs, per thing the cell holds, in microseconds. These
/// are modelling assumptions, not measurements: their ratios follow what the
/// `tick` and `migration` benchmarks show (a witness costs several reals; a
/// ghost a fraction of a real; a migration a few reals, on both sides), and
/// their scale puts 2,500 NPCs at a quarter of a 10 Hz tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CostModel {
    /// Per real entity (behaviour, index, ghosting and offload checks).
    pub real_us: f32,
    /// Per witness (the AoI query and the client's updates), on top of its real.
    pub witness_us: f32,
    /// Per ghost held.
    pub ghost_us: f32,
    /// Per migration, paid by both cells, in the tick it happens.
    pub migration_us: f32,
}

impl Default for CostModel {
    fn default() -> Self {
        CostModel {
            real_us: 10.0,
            witness_us: 40.0,
            ghost_us: 2.5,
            migration_us: 30.0,
        }
    }
}

/// Where a cell's load comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadSource {
    /// Measured by the driver (a live cellapp).
    Measured,
    /// Computed from entity counts (the simulator).
    Model(CostModel),
}

/// How much of each tick's load carries into the smoothed value: about a
/// second's memory at 10 Hz.
const SMOOTHING: f32 = 0.2;

/// The smoothed load of a cell.
#[derive(Clone, Debug, Default)]
pub struct Meter {
    /// Work measured since the last tick, microseconds.
    measured_us: f64,
    /// Smoothed load, share of the tick period.
    load: f32,
    /// Smoothed cost units (model costs of what the cell holds), the
    /// scale that turns the model's relative costs into measured load.
    units: f32,
    /// Ticks whose load was above one.
    over: u64,
}

impl Meter {
    /// Adds measured work.
    pub fn add_work(&mut self, us: f64) {
        self.measured_us += us;
    }

    /// Closes a tick: `units` is the model cost of what the cell holds this
    /// tick (microseconds), `period_us` the tick period. A modelled cell's
    /// load is its units; a measured one's is the work noted since the last
    /// tick.
    pub fn tick(&mut self, source: LoadSource, units: f32, period_us: f32) {
        let raw = match source {
            LoadSource::Model(_) => units / period_us,
            LoadSource::Measured => (std::mem::take(&mut self.measured_us) as f32) / period_us,
        };
        if raw > 1.0 {
            self.over += 1;
        }
        self.load += SMOOTHING * (raw - self.load);
        self.units += SMOOTHING * (units - self.units);
    }

    /// The smoothed load.
    pub fn load(&self) -> f32 {
        self.load
    }

    /// Ticks over budget so far.
    pub fn over_budget(&self) -> u64 {
        self.over
    }

    /// The report of a cell `rect` whose reals stand at `points` (x, z,
    /// model cost in µs) while everything it holds costs `units` (reals,
    /// witnesses and ghosts). The load of now (`units` at the measured cost
    /// per unit) is spread over the reals by their cost: ghosts do not move
    /// with a line, so the profile and the bound levels say where the reals
    /// are, carrying the overhead they cause.
    pub fn report(
        &self,
        cell: CellId,
        epoch: u64,
        rect: &Rect,
        points: &[(f32, f32, f32)],
        units: f32,
    ) -> CellReport {
        let per_unit = if self.units > 0.0 {
            self.load / self.units
        } else {
            0.0
        };
        let mut r = CellReport::from_points(cell, epoch, rect, points, units * per_unit);
        r.load = self.load;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modelled_load_is_its_units_over_the_period_and_settles_there() {
        let mut m = Meter::default();
        for _ in 0..100 {
            m.tick(LoadSource::Model(CostModel::default()), 50_000.0, 100_000.0);
        }
        assert!((m.load() - 0.5).abs() < 1e-3, "{}", m.load());
        assert_eq!(m.over_budget(), 0);
        m.tick(
            LoadSource::Model(CostModel::default()),
            150_000.0,
            100_000.0,
        );
        assert_eq!(m.over_budget(), 1);
    }

    #[test]
    fn a_measured_load_is_the_work_noted_since_the_last_tick() {
        let mut m = Meter::default();
        for _ in 0..100 {
            m.add_work(20_000.0);
            m.add_work(5_000.0);
            m.tick(LoadSource::Measured, 1_000.0, 100_000.0);
        }
        assert!((m.load() - 0.25).abs() < 1e-3, "{}", m.load());
        // The profile is scaled by the measured cost per unit: twice the
        // entities now is twice the load in the profile.
        let rect = Rect::new(0.0, 0.0, 10.0, 10.0);
        let points = vec![(1.0, 1.0, 1_000.0), (9.0, 9.0, 1_000.0)];
        let r = m.report(CellId(3), 7, &rect, &points, 2_000.0);
        assert_eq!((r.cell, r.epoch), (CellId(3), 7));
        let sum: f32 = r.profile[0].iter().sum();
        assert!((sum - 0.5).abs() < 1e-3, "{sum}");
        assert!((r.load - 0.25).abs() < 1e-3);
    }
}
