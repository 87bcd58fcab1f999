//! How far a real may move before any answer the ghosting pass gives about
//! it can change: whether it stands inside this app's cells clear of every
//! edge, whether it has strayed outside them, and which other cellapps'
//! cells meet the squares around it. Every one of those answers compares
//! the real's x or z with a line of the layout moved by a fixed distance,
//! so the real's distance to the nearest such line (along x or z) bounds
//! how far it can go with all of them unchanged. The pass works a real out
//! in full only once that distance is used up, or the layout has changed;
//! in between it keeps the answers it had, which in a crowd walking a
//! metre a tick is most ticks.

use glam::Vec3;
use tessera::layout::Rect;
use tessera::AppId;

/// Metres kept back from the distance to the nearest line, for the
/// rounding of the comparisons (far less than this at world coordinates).
const MARGIN: f32 = 0.01;

/// The cells the ghosting pass reads, as it read them last: while they are
/// the same, the leeway it gave a real still holds.
#[derive(Debug, Default, PartialEq)]
pub(in crate::cell) struct Geometry {
    interior: Vec<Rect>,
    others: Vec<(Rect, AppId)>,
}

impl Geometry {
    /// The cells of this app and the live cells of the others.
    pub(in crate::cell) fn new(interior: Vec<Rect>, others: Vec<(Rect, AppId)>) -> Geometry {
        Geometry { interior, others }
    }

    /// This app's cells.
    pub(in crate::cell) fn interior(&self) -> &[Rect] {
        &self.interior
    }

    /// The other cellapps' live cells.
    pub(in crate::cell) fn others(&self) -> &[(Rect, AppId)] {
        &self.others
    }
}

/// Every line a ghosting answer compares a real's x or z with, sorted.
#[derive(Debug, Default)]
pub(in crate::cell) struct Lines {
    xs: Vec<f32>,
    zs: Vec<f32>,
}

impl Lines {
    /// The lines of the pass's comparisons: inside own cells by `reach`,
    /// within own cells grown by each of `own_grown`, and others' cells
    /// grown by each of `other_grown` (the ghost distance and the distance
    /// a ghost is kept to).
    pub(in crate::cell) fn new(
        geometry: &Geometry,
        reach: f32,
        own_grown: &[f32],
        other_grown: &[f32],
    ) -> Lines {
        let mut lines = Lines::default();
        for r in &geometry.interior {
            lines.add(r, -reach);
            for &g in own_grown {
                lines.add(r, g);
            }
        }
        for (r, _) in &geometry.others {
            for &g in other_grown {
                lines.add(r, g);
            }
        }
        lines.xs.sort_unstable_by(f32::total_cmp);
        lines.zs.sort_unstable_by(f32::total_cmp);
        lines
    }

    /// The edges of `r` grown by `by` (shrunk if negative).
    fn add(&mut self, r: &Rect, by: f32) {
        self.xs.extend([r.x0 - by, r.x1 + by]);
        self.zs.extend([r.z0 - by, r.z1 + by]);
    }

    /// How far a real at `pos` can move, along x or z, and cross none of
    /// the lines (infinite if there are none).
    pub(in crate::cell) fn leeway(&self, pos: Vec3) -> f32 {
        (nearest(&self.xs, pos.x).min(nearest(&self.zs, pos.z)) - MARGIN).max(0.0)
    }
}

/// The distance from `v` to the nearest of the sorted `lines`.
fn nearest(lines: &[f32], v: f32) -> f32 {
    let k = lines.partition_point(|&t| t < v);
    let above = lines.get(k).map_or(f32::INFINITY, |&t| t - v);
    let below = k
        .checked_sub(1)
        .and_then(|j| lines.get(j))
        .map_or(f32::INFINITY, |&t| v - t);
    above.min(below)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leeway_is_the_distance_to_the_nearest_line_less_the_margin() {
        let own = Rect::new(0.0, 0.0, 100.0, 100.0);
        let other = (Rect::new(100.0, 0.0, 200.0, 100.0), AppId(2));
        let g = Geometry::new(vec![own], vec![other]);
        // Lines along x: 10 and 90 (own inside by 10), -5 and 105 (own
        // grown by 5), 80 and 220 (other grown by 20).
        let lines = Lines::new(&g, 10.0, &[5.0], &[20.0]);
        let at = |x: f32, z: f32| lines.leeway(Vec3::new(x, 0.0, z));
        // x = 50 is 30 from 80 and 40 from 10 and 90; z = 50 is 40 from
        // 10 and 90 (z lines: 10, 90, -5, 105, -20, 120).
        assert!((at(50.0, 50.0) - (30.0 - MARGIN)).abs() < 1e-4);
        // Nearer a line along z than along x.
        assert!((at(50.0, 12.0) - (2.0 - MARGIN)).abs() < 1e-4);
        // On a line: none.
        assert_eq!(at(80.0, 50.0), 0.0);
        // Beyond every line along x (220 is 80 away): z's 40 counts.
        assert!((at(300.0, 50.0) - (40.0 - MARGIN)).abs() < 1e-4);
        assert!((at(300.0, 300.0) - (80.0 - MARGIN)).abs() < 1e-4);
        assert_eq!(Lines::default().leeway(Vec3::ZERO), f32::INFINITY);
    }
}
