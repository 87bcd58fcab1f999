//! What cells tell the balancer about their load: BigWorld's "entity bound
//! levels". For each edge of a cell, walking inward from that edge and
//! adding up what each entity costs, the coordinates where the edge would
//! have to move to shed given shares of the cell's load. The manager can then
//! choose a line position in one step instead of creeping.

use crate::layout::{CellId, Rect};
use crate::AppId;
use serde::{Deserialize, Serialize};

mod policy;

pub use policy::{mean_load, sides, BadPolicyName, Policies, Policy, PolicyFactory};

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

/// Slices of a cell along each axis in a [`CellReport::profile`].
pub const PROFILE_BINS: usize = 32;

/// Bins per axis of a [`CellReport::density`] grid.
pub const DENSITY_BINS: usize = 8;

/// The most destinations a report's [`CellReport::flows`] may list.
pub const MAX_FLOWS: usize = 64;

/// One cell's load report, sent by its cellapp once a second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    /// The cell.
    pub cell: CellId,
    /// The layout epoch the cell was acting on when it measured.
    pub epoch: u64,
    /// The cell's rectangle when it measured: the profile's slices cut
    /// this, so a policy can place the load even after lines have moved.
    pub rect: Rect,
    /// Smoothed share of the tick period spent working (above 1 the cell
    /// runs late).
    pub load: f32,
    /// Real entities.
    pub reals: u32,
    /// Ghosts of entities real elsewhere.
    pub ghosts: u32,
    /// Reals with a witness.
    pub witnesses: u32,
    /// For each edge, for each of [`LEVELS`]: where the edge would have to
    /// move (inward) to shed that much load, if the cell has that much.
    pub edges: [[Option<f32>; 5]; 4],
    /// The load along x and along z: the cell's rectangle cut into
    /// [`PROFILE_BINS`] equal slices per axis, the load in each slice
    /// (adding up to `load`). Lets a policy place a line in one step.
    pub profile: [Vec<f32>; 2],
    /// Reals that arrived from other cells since the last report.
    pub migrations_in: u32,
    /// Reals that left for other cells since the last report.
    pub migrations_out: u32,
    /// Of those that left, how many went to each cellapp.
    pub flows: Vec<(AppId, u32)>,
    /// Reals counted on a [`DENSITY_BINS`] × [`DENSITY_BINS`] grid over the
    /// cell's rectangle, row by row from low z (x varies fastest). Empty if
    /// the cell has no rectangle yet.
    pub density: Vec<u32>,
}

impl CellReport {
    /// The report of a cell `rect` whose entities stand at `points` (x, z,
    /// relative cost) when the whole cell costs `load`: bound levels and
    /// profile from the points, entity counts left at zero for the caller.
    pub fn from_points(
        cell: CellId,
        epoch: u64,
        rect: &Rect,
        points: &[(f32, f32, f32)],
        load: f32,
    ) -> CellReport {
        CellReport {
            cell,
            epoch,
            rect: *rect,
            load,
            reals: 0,
            ghosts: 0,
            witnesses: 0,
            edges: bound_levels(points, load),
            profile: profile(rect, points, load),
            migrations_in: 0,
            migrations_out: 0,
            flows: Vec::new(),
            density: density(rect, points),
        }
    }

    /// Whether a report from a peer is well formed: finite numbers, an
    /// ordered rectangle, a non-negative load, at most [`PROFILE_BINS`] slices per axis,
    /// a density grid of [`DENSITY_BINS`]² bins or none, at most [`MAX_FLOWS`] flows.
    pub fn is_valid(&self) -> bool {
        let finite = |v: &f32| v.is_finite() && *v >= 0.0;
        let r = &self.rect;
        [r.x0, r.z0, r.x1, r.z1].iter().all(|v| v.is_finite())
            && r.x0 <= r.x1
            && r.z0 <= r.z1
            && self.load.is_finite()
            && self.load >= 0.0
            && self.edges.iter().flatten().flatten().all(|v| v.is_finite())
            && self
                .profile
                .iter()
                .all(|p| p.len() <= PROFILE_BINS && p.iter().all(finite))
            && (self.density.is_empty() || self.density.len() == DENSITY_BINS * DENSITY_BINS)
            && self.flows.len() <= MAX_FLOWS
    }
}

/// The bin of `v` among `n` equal slices of `[a, b]`, clamped into range
/// (a point beyond an edge counts in the edge's slice).
fn bin(v: f32, a: f32, b: f32, n: usize) -> usize {
    let w = b - a;
    let i = if w > 0.0 {
        (((v - a) / w) * n as f32).floor() as i64
    } else {
        0
    };
    i.clamp(0, n as i64 - 1) as usize
}

/// How many of `points` (x, z, _) stand in each bin of a [`DENSITY_BINS`]²
/// grid over `rect`; points outside count in the nearest edge bin.
pub fn density(rect: &Rect, points: &[(f32, f32, f32)]) -> Vec<u32> {
    let mut out = vec![0; DENSITY_BINS * DENSITY_BINS];
    for p in points {
        let ix = bin(p.0, rect.x0, rect.x1, DENSITY_BINS);
        let iz = bin(p.1, rect.z0, rect.z1, DENSITY_BINS);
        out[iz * DENSITY_BINS + ix] += 1;
    }
    out
}

/// The load profile of entities at `points` (x, z, cost) inside `rect` when
/// the whole cell costs `load`: per axis, [`PROFILE_BINS`] slices of the
/// rectangle and the load in each. Entities outside the rectangle (about to
/// leave) count in the slice at the edge they are beyond.
pub fn profile(rect: &Rect, points: &[(f32, f32, f32)], load: f32) -> [Vec<f32>; 2] {
    let mut out = [vec![0.0; PROFILE_BINS], vec![0.0; PROFILE_BINS]];
    let total: f32 = points.iter().map(|p| p.2.max(0.0)).sum();
    if total <= 0.0 || load <= 0.0 {
        return out;
    }
    let scale = load / total;
    let spans = [(rect.x0, rect.x1), (rect.z0, rect.z1)];
    for p in points {
        for (axis, (a, b)) in spans.iter().enumerate() {
            let v = if axis == 0 { p.0 } else { p.1 };
            out[axis][bin(v, *a, *b, PROFILE_BINS)] += p.2.max(0.0) * scale;
        }
    }
    out
}

/// The bound levels of a cell whose entities stand at `points` (x, z, cost),
/// when the whole cell costs `load`. Costs are relative; they
/// are scaled so they add up to `load`.
pub fn bound_levels(points: &[(f32, f32, f32)], load: f32) -> [[Option<f32>; 5]; 4] {
    let total: f32 = points.iter().map(|p| p.2.max(0.0)).sum();
    let mut out = [[None; 5]; 4];
    if total <= 0.0 || load <= 0.0 {
        return out;
    }
    let scale = load / total;
    // Walks inward from one edge, filling the smallest levels first.
    let mut walk = |edge: Edge, sorted: &mut dyn Iterator<Item = &(f32, f32)>| {
        let mut acc = 0.0;
        let mut level = LEVELS.len();
        for &(coord, cost) in sorted {
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
    // An edge's walk reads only the entities nearest it, up to the largest
    // level: the nearest eighth are picked out and sorted, and the rest
    // only if those fall short. Equal places keep their order in `points`
    // (reversed for a high edge), as one stable sort of all would: each
    // entity is a key of its place's bits in `f32::total_cmp` order over
    // its index, and a high edge's keys are these inverted.
    let nearest = |keys: &mut [u64], high: bool| -> Vec<(f32, f32)> {
        let some = keys.len() / 8;
        let take = |keys: &[u64]| -> Vec<(f32, f32)> {
            keys.iter()
                .map(|&k| {
                    let k = if high { !k } else { k };
                    let p = points[(k & u64::from(u32::MAX)) as usize];
                    (f32::from_bits(unordered(k >> 32)), p.2.max(0.0) * scale)
                })
                .collect()
        };
        if some > 0 {
            keys.select_nth_unstable(some);
            let head = &mut keys[..some];
            head.sort_unstable();
            let picked = take(head);
            if picked.iter().map(|p| p.1).sum::<f32>() >= LEVELS[0] {
                return picked;
            }
        }
        keys.sort_unstable();
        take(keys)
    };
    for (axis, edges) in [
        (0, [Edge::XLow, Edge::XHigh]),
        (1, [Edge::ZLow, Edge::ZHigh]),
    ] {
        let mut keys: Vec<u64> = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let v = if axis == 0 { p.0 } else { p.1 };
                (u64::from(ordered(v)) << 32) | i as u64
            })
            .collect();
        walk(edges[0], &mut nearest(&mut keys, false).iter());
        for k in keys.iter_mut() {
            *k = !*k;
        }
        walk(edges[1], &mut nearest(&mut keys, true).iter());
    }
    out
}

/// The bits of `v` as an unsigned number in the order of
/// [`f32::total_cmp`].
fn ordered(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 1 << 31
    }
}

/// The `f32` bits [`ordered`] made `o` from (the low 32 bits of `o`).
fn unordered(o: u64) -> u32 {
    let o = o as u32;
    if o >> 31 == 1 {
        o & !(1 << 31)
    } else {
        !o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_walk_inward_from_each_edge() {
        // 100 entities on a diagonal, equal cost; the cell's load is 0.5, so
        // each entity is worth 0.005.
        let points: Vec<(f32, f32, f32)> = (0..100)
            .map(|i| (i as f32 + 0.5, i as f32 + 0.5, 1.0))
            .collect();
        let levels = bound_levels(&points, 0.5);
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

    /// The levels as one stable sort of every entity per axis gives them.
    fn levels_by_full_sort(points: &[(f32, f32, f32)], load: f32) -> [[Option<f32>; 5]; 4] {
        let total: f32 = points.iter().map(|p| p.2.max(0.0)).sum();
        let mut out = [[None; 5]; 4];
        if total <= 0.0 || load <= 0.0 {
            return out;
        }
        let scale = load / total;
        for (axis, key) in [|p: &(f32, f32, f32)| p.0, |p: &(f32, f32, f32)| p.1]
            .into_iter()
            .enumerate()
        {
            let mut sorted: Vec<(f32, f32)> = points
                .iter()
                .map(|p| (key(p), p.2.max(0.0) * scale))
                .collect();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            let walks: [Vec<(f32, f32)>; 2] =
                [sorted.clone(), sorted.iter().rev().copied().collect()];
            for (side, walk) in walks.iter().enumerate() {
                let (mut acc, mut level) = (0.0, LEVELS.len());
                for &(coord, cost) in walk {
                    acc += cost;
                    while level > 0 && acc >= LEVELS[level - 1] {
                        level -= 1;
                        out[axis * 2 + side][level] = Some(coord);
                    }
                    if level == 0 {
                        break;
                    }
                }
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn levels_are_those_of_a_full_sort(
            // Coarse places, so many entities share one; mixed costs.
            cells in proptest::collection::vec((0u8..20, 0u8..20, 0u8..4), 0..400),
            // Light loads need nearly every entity; heavy ones a few.
            load in proptest::sample::select(vec![0.001f32, 0.01, 0.05, 0.3, 1.0]),
        ) {
            let points: Vec<(f32, f32, f32)> = cells
                .iter()
                .map(|&(x, z, c)| (f32::from(x), f32::from(z), f32::from(c)))
                .collect();
            proptest::prop_assert_eq!(
                bound_levels(&points, load),
                levels_by_full_sort(&points, load)
            );
        }
    }

    #[test]
    fn ordered_bits_sort_as_total_cmp_and_come_back() {
        let mut vs = [
            3.5f32,
            -0.0,
            0.0,
            -7.25,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-30,
            -1e-30,
            f32::MAX,
            f32::MIN,
        ];
        for v in vs {
            assert_eq!(unordered(u64::from(ordered(v))), v.to_bits(), "{v}");
        }
        let mut by_bits = vs;
        by_bits.sort_by_key(|v| ordered(*v));
        vs.sort_by(|a, b| a.total_cmp(b));
        assert_eq!(by_bits.map(f32::to_bits), vs.map(f32::to_bits));
    }

    #[test]
    fn an_empty_or_idle_cell_reports_nothing() {
        assert_eq!(bound_levels(&[], 0.5), [[None; 5]; 4]);
        assert_eq!(bound_levels(&[(1.0, 1.0, 1.0)], 0.0), [[None; 5]; 4]);
    }

    #[test]
    fn a_profile_adds_up_to_the_load_and_puts_each_entity_in_its_slice() {
        let rect = Rect::new(0.0, 100.0, 320.0, 420.0);
        // Three entities: two in the first x slice, one beyond the high edge.
        let points = [(1.0, 150.0, 1.0), (9.0, 419.0, 1.0), (400.0, 100.0, 2.0)];
        let [x, z] = profile(&rect, &points, 0.8);
        assert_eq!(x.len(), PROFILE_BINS);
        assert!((x.iter().sum::<f32>() - 0.8).abs() < 1e-6);
        assert!((z.iter().sum::<f32>() - 0.8).abs() < 1e-6);
        assert!((x[0] - 0.4).abs() < 1e-6, "{x:?}");
        assert!((x[PROFILE_BINS - 1] - 0.4).abs() < 1e-6, "{x:?}");
        assert!(
            (z[0] - 0.4).abs() < 1e-6 && (z[5] - 0.2).abs() < 1e-6,
            "{z:?}"
        );
        assert!((z[PROFILE_BINS - 1] - 0.2).abs() < 1e-6, "{z:?}");
        // A zero-width cell puts everything in its first slice.
        let flat = Rect::new(5.0, 0.0, 5.0, 10.0);
        assert!((profile(&flat, &points, 1.0)[0][0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn density_counts_each_real_in_its_bin() {
        let rect = Rect::new(0.0, 0.0, 80.0, 160.0);
        // Bins are 10 m along x and 20 m along z.
        let points = [
            (5.0, 5.0, 1.0),
            (15.0, 45.0, 9.0),
            (15.0, 59.0, 1.0),
            (-3.0, 500.0, 1.0),
        ];
        let d = density(&rect, &points);
        assert_eq!(d.len(), DENSITY_BINS * DENSITY_BINS);
        assert_eq!(d[0], 1);
        assert_eq!(d[2 * DENSITY_BINS + 1], 2);
        assert_eq!(d[(DENSITY_BINS - 1) * DENSITY_BINS], 1);
        assert_eq!(d.iter().sum::<u32>(), 4);
    }

    #[test]
    fn malformed_reports_are_refused() {
        let rect = Rect::new(0.0, 0.0, 100.0, 100.0);
        let good = CellReport::from_points(CellId(1), 3, &rect, &[(10.0, 10.0, 1.0)], 0.2);
        assert!(good.is_valid());
        let mut bad = Vec::new();
        let mut r = good.clone();
        r.load = f32::NAN;
        bad.push(r);
        let mut r = good.clone();
        r.load = -0.1;
        bad.push(r);
        let mut r = good.clone();
        r.rect.x1 = f32::INFINITY;
        bad.push(r);
        let mut r = good.clone();
        r.rect = Rect {
            x0: 50.0,
            z0: 0.0,
            x1: 10.0,
            z1: 100.0,
        };
        bad.push(r);
        let mut r = good.clone();
        r.profile[0] = vec![0.0; PROFILE_BINS + 1];
        bad.push(r);
        let mut r = good.clone();
        r.profile[1][0] = -1.0;
        bad.push(r);
        let mut r = good.clone();
        r.density = vec![1; 3];
        bad.push(r);
        let mut r = good.clone();
        r.flows = vec![(AppId(2), 1); MAX_FLOWS + 1];
        bad.push(r);
        let mut r = good;
        r.edges[0][0] = Some(f32::NAN);
        bad.push(r);
        for r in bad {
            assert!(!r.is_valid(), "{r:?}");
        }
    }
}
