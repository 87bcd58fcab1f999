//! What cells tell the balancer about their load: BigWorld's "entity bound
//! levels". For each edge of a cell, walking inward from that edge and
//! adding up what each entity costs, the coordinates where the edge would
//! have to move to shed given shares of the cell's load. The manager can then
//! choose a line position in one step instead of creeping.

use crate::layout::{CellId, Rect};
use serde::{Deserialize, Serialize};

/// The shares of a cellapp's time at which bound levels are reported,
/// largest first (BigWorld's levels).
pub const LEVELS: [f32; 5] = [0.02, 0.01, 0.005, 0.0025, 0.00125];

/// The edges of a cell, in the order of [`CellReport::edges`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// The low-x edge.
    XLow = 0,
    /// The high-x edge.
    XHigh = 1,
    /// The low-z edge.
    ZLow = 2,
    /// The high-z edge.
    ZHigh = 3,
}

/// One cell's load report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    /// The cell.
    pub cell: CellId,
    /// Smoothed share of the tick period spent working, 0 to 1.
    pub load: f32,
    /// For each edge, for each of [`LEVELS`]: where the edge would have to
    /// move (inward) to shed that much load, if the cell has that much.
    pub edges: [[Option<f32>; 5]; 4],
}

/// The bound levels of a cell whose entities stand at `points` (x, z, cost)
/// inside `rect`, when the whole cell costs `load`. Costs are relative; they
/// are scaled so they add up to `load`.
pub fn bound_levels(rect: &Rect, points: &[(f32, f32, f32)], load: f32) -> [[Option<f32>; 5]; 4] {
    let total: f32 = points.iter().map(|p| p.2.max(0.0)).sum();
    let mut out = [[None; 5]; 4];
    if total <= 0.0 || load <= 0.0 {
        return out;
    }
    let scale = load / total;
    let mut walk = |edge: Edge, key: &dyn Fn(&(f32, f32, f32)) -> f32, descending: bool| {
        let mut sorted: Vec<(f32, f32)> = points
            .iter()
            .map(|p| (key(p), p.2.max(0.0) * scale))
            .collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        if descending {
            sorted.reverse();
        }
        let mut acc = 0.0;
        let mut level = LEVELS.len();
        // Walk inward, filling the smallest levels first.
        for (coord, cost) in sorted {
            acc += cost;
            while level > 0 && acc >= LEVELS[level - 1] {
                level -= 1;
                out[edge as usize][level] = Some(coord);
            }
            if level == 0 {
                break;
            }
        }
    };
    walk(Edge::XLow, &|p| p.0, false);
    walk(Edge::XHigh, &|p| p.0, true);
    walk(Edge::ZLow, &|p| p.1, false);
    walk(Edge::ZHigh, &|p| p.1, true);
    let _ = rect;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_walk_inward_from_each_edge() {
        let rect = Rect::new(0.0, 0.0, 100.0, 100.0);
        // 100 entities on a diagonal, equal cost; the cell's load is 0.5, so
        // each entity is worth 0.005.
        let points: Vec<(f32, f32, f32)> = (0..100)
            .map(|i| (i as f32 + 0.5, i as f32 + 0.5, 1.0))
            .collect();
        let levels = bound_levels(&rect, &points, 0.5);
        for (share, coord) in LEVELS.iter().zip(levels[Edge::XLow as usize]) {
            let coord = coord.expect("a level");
            // Moving the low edge up to `coord` sheds at least `share`, and
            // one entity less would not.
            let shed: f32 = points.iter().filter(|p| p.0 <= coord).map(|_| 0.005).sum();
            assert!(
                shed >= share - 1e-6 && shed - 0.005 < *share,
                "{share}: {coord}"
            );
        }
        let high = levels[Edge::XHigh as usize];
        assert!(high.iter().flatten().all(|c| *c > 90.0), "{high:?}");
        // Larger shares need the edge to move farther in.
        let low: Vec<f32> = levels[Edge::ZLow as usize]
            .iter()
            .flatten()
            .copied()
            .collect();
        assert!(low.windows(2).all(|w| w[0] >= w[1]), "{low:?}");
    }

    #[test]
    fn an_empty_or_idle_cell_reports_nothing() {
        let rect = Rect::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(bound_levels(&rect, &[], 0.5), [[None; 5]; 4]);
        assert_eq!(bound_levels(&rect, &[(1.0, 1.0, 1.0)], 0.0), [[None; 5]; 4]);
    }
}
