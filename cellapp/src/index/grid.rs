//! [`GridIndex`]: a uniform grid of square buckets over a cell's bounds.
//!
//! A cell knows its bounds and its typical query radius, so a fixed grid with
//! buckets about one radius wide answers a query by scanning a handful of
//! buckets, and a move costs O(1): rewrite the position in place, or, when
//! the bucket changes, swap-remove from the old bucket and push onto the new
//! one. Each bucket stores positions next to ids, so a query reads no map.
//!
//! Positions outside the bounds (entities about to be handed to a neighbour
//! cell, or not yet handed in) are clamped into the border buckets; the
//! exact distance test keeps queries correct for them. Non-finite positions
//! land in a border bucket too and are never found.

use super::{is_within, query_box, query_is_valid, IdMap, SpatialIndex};
use glam::Vec2;
use tessera::EntityId;

/// The bucket size used when the hint radius is not a positive finite number.
pub const DEFAULT_CELL_SIZE: f32 = 64.0;
/// The smallest bucket size, in metres.
pub const MIN_CELL_SIZE: f32 = 1.0;
/// The most buckets a grid allocates; larger layouts get wider buckets.
pub const MAX_BUCKETS: usize = 1 << 18;

/// Where an entity sits: its bucket and its index inside that bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    bucket: usize,
    slot: usize,
}

/// A [`SpatialIndex`] over a uniform grid of buckets covering fixed bounds.
#[derive(Debug)]
pub struct GridIndex {
    /// The min corner of the bounds.
    origin: Vec2,
    /// The max corner of the bounds.
    end: Vec2,
    /// The side of a bucket, in metres.
    cell: f32,
    /// `1 / cell`.
    inv_cell: f32,
    /// Buckets along x.
    nx: usize,
    /// Buckets along z.
    nz: usize,
    /// Row-major (z rows of x) buckets of (entity, current position).
    buckets: Vec<Vec<(EntityId, Vec2)>>,
    /// Where each entity is.
    by_id: IdMap<Loc>,
}

impl GridIndex {
    /// An empty grid over `bounds` (min, max) with buckets `cell_size` metres
    /// wide. The cell size is clamped to at least [`MIN_CELL_SIZE`] (and
    /// [`DEFAULT_CELL_SIZE`] replaces a non-positive or non-finite one), then
    /// doubled until the grid has at most [`MAX_BUCKETS`] buckets. Swapped
    /// corners are reordered; non-finite bounds give a single bucket at the
    /// origin, which stays correct, only slow.
    pub fn new(bounds: (Vec2, Vec2), cell_size: f32) -> Self {
        let (mut lo, mut hi) = (bounds.0.min(bounds.1), bounds.0.max(bounds.1));
        if !(lo.is_finite() && hi.is_finite() && (hi - lo).is_finite()) {
            lo = Vec2::ZERO;
            hi = Vec2::ZERO;
        }
        let cell = if cell_size.is_finite() && cell_size > 0.0 {
            cell_size.max(MIN_CELL_SIZE)
        } else {
            DEFAULT_CELL_SIZE
        };
        let (cell, nx, nz) = layout(hi - lo, cell);
        GridIndex {
            origin: lo,
            end: hi,
            cell,
            inv_cell: 1.0 / cell,
            nx,
            nz,
            buckets: vec![Vec::new(); nx * nz],
            by_id: IdMap::default(),
        }
    }

    /// The bounds (min, max) the buckets cover.
    pub fn bounds(&self) -> (Vec2, Vec2) {
        (self.origin, self.end)
    }

    /// The side of a bucket, in metres.
    pub fn cell_size(&self) -> f32 {
        self.cell
    }

    /// The number of buckets along x and along z.
    pub fn dims(&self) -> (usize, usize) {
        (self.nx, self.nz)
    }

    /// The bucket column or row of offset `d` from the origin on an axis of
    /// `n` buckets, clamped into the grid (NaN gives 0).
    fn axis(&self, d: f32, n: usize) -> usize {
        let i = (d * self.inv_cell).floor();
        if i >= 1.0 {
            (i as usize).min(n - 1)
        } else {
            0
        }
    }

    /// The bucket holding `pos`, clamped into the grid.
    fn bucket_of(&self, pos: Vec2) -> usize {
        let ix = self.axis(pos.x - self.origin.x, self.nx);
        let iz = self.axis(pos.y - self.origin.y, self.nz);
        iz * self.nx + ix
    }

    /// Appends an entity to a bucket and returns where it went.
    fn attach(&mut self, id: EntityId, pos: Vec2, bucket: usize) -> Loc {
        let b = self.buckets.get_mut(bucket);
        let slot = b.map_or(0, |b| {
            b.push((id, pos));
            b.len() - 1
        });
        Loc { bucket, slot }
    }

    /// Takes the entry at `loc` out of its bucket, moving the bucket's last
    /// entry into the hole and fixing that entity's slot.
    fn detach(&mut self, loc: Loc) {
        let Some(b) = self.buckets.get_mut(loc.bucket) else {
            return;
        };
        if loc.slot >= b.len() {
            return;
        }
        b.swap_remove(loc.slot);
        if let Some(&(moved, _)) = b.get(loc.slot) {
            if let Some(m) = self.by_id.get_mut(&moved) {
                m.slot = loc.slot;
            }
        }
    }
}

/// Widens `cell` until a grid over `extent` has at most [`MAX_BUCKETS`]
/// buckets; returns the cell size and the bucket counts along x and z.
fn layout(extent: Vec2, mut cell: f32) -> (f32, usize, usize) {
    for _ in 0..256 {
        let nx = (extent.x / cell).ceil().max(1.0);
        let nz = (extent.y / cell).ceil().max(1.0);
        if nx * nz <= MAX_BUCKETS as f32 {
            return (cell, nx as usize, nz as usize);
        }
        cell *= 2.0;
    }
    (f32::MAX, 1, 1)
}

impl SpatialIndex for GridIndex {
    fn insert(&mut self, id: EntityId, pos: Vec2) {
        self.update(id, pos);
    }

    fn update(&mut self, id: EntityId, pos: Vec2) {
        let bucket = self.bucket_of(pos);
        match self.by_id.get(&id).copied() {
            Some(loc) if loc.bucket == bucket => {
                let entry = self
                    .buckets
                    .get_mut(bucket)
                    .and_then(|b| b.get_mut(loc.slot));
                if let Some(entry) = entry {
                    entry.1 = pos;
                }
            }
            Some(loc) => {
                self.detach(loc);
                let loc = self.attach(id, pos, bucket);
                self.by_id.insert(id, loc);
            }
            None => {
                let loc = self.attach(id, pos, bucket);
                self.by_id.insert(id, loc);
            }
        }
    }

    fn replace_all(&mut self, entries: &mut dyn Iterator<Item = (EntityId, Vec2)>) {
        for b in &mut self.buckets {
            b.clear();
        }
        self.by_id.clear();
        for (id, pos) in entries {
            self.update(id, pos);
        }
    }

    fn remove(&mut self, id: EntityId) {
        if let Some(loc) = self.by_id.remove(&id) {
            self.detach(loc);
        }
    }

    fn within(&self, center: Vec2, radius: f32, out: &mut Vec<EntityId>) {
        if !query_is_valid(center, radius) {
            return;
        }
        let (lo, hi) = query_box(center, radius);
        let (x0, x1) = (
            self.axis(lo.x - self.origin.x, self.nx),
            self.axis(hi.x - self.origin.x, self.nx),
        );
        let (z0, z1) = (
            self.axis(lo.y - self.origin.y, self.nz),
            self.axis(hi.y - self.origin.y, self.nz),
        );
        for iz in z0..=z1 {
            let row = iz * self.nx;
            let Some(buckets) = self.buckets.get(row + x0..=row + x1) else {
                continue;
            };
            for &(id, pos) in buckets.iter().flatten() {
                if is_within(pos, center, radius) {
                    out.push(id);
                }
            }
        }
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(index: &GridIndex, center: Vec2, radius: f32) -> Vec<EntityId> {
        let mut out = Vec::new();
        index.within(center, radius, &mut out);
        out.sort();
        out
    }

    fn grid() -> GridIndex {
        GridIndex::new((Vec2::new(0.0, 0.0), Vec2::new(100.0, 50.0)), 10.0)
    }

    #[test]
    fn layout_follows_bounds_and_cell_size() {
        let g = grid();
        assert_eq!(g.dims(), (10, 5));
        assert_eq!(g.cell_size(), 10.0);
        let g = GridIndex::new((Vec2::new(100.0, 50.0), Vec2::ZERO), 0.01);
        assert_eq!(g.bounds(), (Vec2::ZERO, Vec2::new(100.0, 50.0)));
        assert_eq!(g.cell_size(), MIN_CELL_SIZE);
        let g = GridIndex::new((Vec2::ZERO, Vec2::splat(1.0e6)), 1.0);
        let (nx, nz) = g.dims();
        assert!(nx * nz <= MAX_BUCKETS && nx > 1);
        let g = GridIndex::new((Vec2::ZERO, Vec2::splat(f32::NAN)), f32::NAN);
        assert_eq!(g.dims(), (1, 1));
        assert_eq!(g.cell_size(), DEFAULT_CELL_SIZE);
        let g = GridIndex::new((Vec2::splat(-f32::MAX), Vec2::splat(f32::MAX)), 1.0);
        assert_eq!(g.dims(), (1, 1));
    }

    #[test]
    fn moves_within_a_bucket_rewrite_in_place() {
        let mut g = grid();
        g.insert(EntityId(1), Vec2::new(11.0, 11.0));
        g.update(EntityId(1), Vec2::new(19.0, 19.0));
        assert_eq!(
            g.by_id[&EntityId(1)],
            Loc {
                bucket: 11,
                slot: 0
            }
        );
        assert_eq!(found(&g, Vec2::new(19.0, 19.0), 0.0), vec![EntityId(1)]);
        assert!(found(&g, Vec2::new(11.0, 11.0), 1.0).is_empty());
    }

    #[test]
    fn bucket_changes_keep_slots_consistent() {
        let mut g = grid();
        for i in 0..4 {
            g.insert(EntityId(i), Vec2::new(5.0, 5.0));
        }
        g.update(EntityId(0), Vec2::new(55.0, 5.0));
        assert_eq!(g.by_id[&EntityId(3)], Loc { bucket: 0, slot: 0 });
        g.remove(EntityId(1));
        assert_eq!(g.by_id[&EntityId(2)], Loc { bucket: 0, slot: 1 });
        for (id, loc) in g.by_id.iter() {
            assert_eq!(g.buckets[loc.bucket][loc.slot].0, id);
        }
        assert_eq!(
            found(&g, Vec2::new(5.0, 5.0), 1.0),
            vec![EntityId(2), EntityId(3)]
        );
        assert_eq!(found(&g, Vec2::new(50.0, 5.0), 5.0), vec![EntityId(0)]);
    }

    #[test]
    fn outside_positions_clamp_to_the_border() {
        let mut g = grid();
        g.insert(EntityId(1), Vec2::new(-30.0, 25.0));
        g.insert(EntityId(2), Vec2::new(1.0e9, 1.0e9));
        assert_eq!(g.by_id[&EntityId(1)].bucket, 20);
        assert_eq!(g.by_id[&EntityId(2)].bucket, 49);
        assert_eq!(found(&g, Vec2::new(-35.0, 25.0), 5.0), vec![EntityId(1)]);
        assert!(found(&g, Vec2::new(5.0, 25.0), 30.0).is_empty());
        assert_eq!(
            found(&g, Vec2::new(1.0e9, 1.0e9 + 3.0), 3.0),
            vec![EntityId(2)]
        );
    }

    #[test]
    fn nan_positions_are_kept_but_never_found() {
        let mut g = grid();
        g.insert(EntityId(1), Vec2::NAN);
        assert_eq!(g.len(), 1);
        assert!(found(&g, Vec2::ZERO, f32::INFINITY).is_empty());
        g.update(EntityId(1), Vec2::new(99.0, 49.0));
        assert_eq!(found(&g, Vec2::new(100.0, 50.0), 2.0), vec![EntityId(1)]);
        g.remove(EntityId(1));
        assert!(g.is_empty());
        assert!(g.buckets.iter().all(Vec::is_empty));
    }
}
