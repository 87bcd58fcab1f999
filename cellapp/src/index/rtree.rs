//! [`RTreeIndex`]: a packed R-tree, refit in place as entities move.
//!
//! Entities sit in one flat array in an order that keeps neighbours
//! together (Z-order of their positions, sorted when the index is filled
//! or rebuilt). Every [`FANOUT`] consecutive entities form a leaf, every
//! `FANOUT` consecutive leaves a node, and so on up to one root: the shape
//! of a packed (bulk-loaded) R-tree, stored as one array of boxes per
//! level, so a query walks contiguous memory and no move ever reshapes it.
//!
//! A move writes the exact position and, if it leaves its leaf's box,
//! grows that box and its ancestors: every box always contains everything
//! below it, so queries are exact at once. Once as many moves have happened
//! as there are entities (a cell where everyone walks: once a tick), the
//! boxes are refit to their contents in one pass over the array. The order
//! itself drifts as entities wander, so after [`RESORT_MOVES`] moves per
//! entity the array is sorted again. A query descends into the boxes that
//! meet its square; a leaf wholly inside the circle gives its entities
//! without a distance test.
//!
//! Inserts take a freed place or extend the array (growing the levels);
//! removals leave a hole holding a NaN position, filled by the next insert
//! and squeezed out by the next sort.

use super::{is_within, morton, query_box, query_is_valid, IdMap, SpatialIndex};
use glam::Vec2;
use tessera::EntityId;

/// Children per node, and entities per leaf.
pub const FANOUT: usize = 16;

/// Moves per entity after which the array is sorted again.
pub const RESORT_MOVES: usize = 64;

/// The fewest moves that trigger a refit, so a small index is not refit
/// on every move.
const REFIT_MIN_MOVES: usize = 1024;

/// An axis-aligned box on the x/z plane; the empty box meets nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Aabb {
    lo: Vec2,
    hi: Vec2,
}

impl Aabb {
    const EMPTY: Aabb = Aabb {
        lo: Vec2::splat(f32::INFINITY),
        hi: Vec2::splat(f32::NEG_INFINITY),
    };

    fn contains(&self, p: Vec2) -> bool {
        self.lo.x <= p.x && p.x <= self.hi.x && self.lo.y <= p.y && p.y <= self.hi.y
    }

    fn meets(&self, lo: Vec2, hi: Vec2) -> bool {
        self.lo.x <= hi.x && lo.x <= self.hi.x && self.lo.y <= hi.y && lo.y <= self.hi.y
    }

    fn grow(&mut self, p: Vec2) {
        self.lo = self.lo.min(p);
        self.hi = self.hi.max(p);
    }

    fn join(&mut self, b: &Aabb) {
        self.lo = self.lo.min(b.lo);
        self.hi = self.hi.max(b.hi);
    }

    /// Whether every point of the box is within `radius` of `center`, in
    /// f64 as [`is_within`] measures: no rounding can put the farthest
    /// corner inside and a point of the box outside.
    fn inside_circle(&self, center: Vec2, radius: f32) -> bool {
        let far = |lo: f32, hi: f32, c: f32| {
            let (lo, hi, c) = (f64::from(lo), f64::from(hi), f64::from(c));
            (lo - c).abs().max((hi - c).abs())
        };
        let dx = far(self.lo.x, self.hi.x, center.x);
        let dz = far(self.lo.y, self.hi.y, center.y);
        let r = f64::from(radius);
        dx * dx + dz * dz <= r * r
    }
}

/// A [`SpatialIndex`] over a packed R-tree refit in place.
#[derive(Debug, Default)]
pub struct RTreeIndex {
    /// Every entity and its exact current position, in leaf order; a hole
    /// holds a NaN position.
    items: Vec<(EntityId, Vec2)>,
    /// Holes in `items`, for reuse.
    free: Vec<usize>,
    /// Each entity's place in `items`.
    by_id: IdMap<usize>,
    /// The boxes of each level: leaves first, the root (one box) last.
    /// Each box contains every finite position below it.
    levels: Vec<Vec<Aabb>>,
    /// Moves (and removals) since the boxes were last refit.
    moves: usize,
    /// Moves, inserts and removals since the array was last sorted.
    unsorted: usize,
}

impl RTreeIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sorts the entities into Z-order of their current positions, drops
    /// the holes and refits every box. The index does this by itself after
    /// [`RESORT_MOVES`] moves per entity; calling it after adding many
    /// entities one by one gives a well-packed tree straight away.
    pub fn rebuild(&mut self) {
        let mut items = std::mem::take(&mut self.items);
        let by_id = &self.by_id;
        let mut place = 0;
        // Holes are dropped (a hole keeps the id of who left it).
        items.retain(|(id, _)| {
            place += 1;
            by_id.get(id) == Some(&(place - 1))
        });
        self.fill(items.into_iter());
    }

    /// Replaces the contents with `entries` (the first of any repeated id
    /// wins), sorted into Z-order.
    fn fill(&mut self, entries: impl Iterator<Item = (EntityId, Vec2)>) {
        self.by_id.clear();
        self.free.clear();
        let mut items: Vec<(EntityId, Vec2)> = Vec::with_capacity(entries.size_hint().0);
        for (id, pos) in entries {
            if self.by_id.get(&id).is_none() {
                self.by_id.insert(id, items.len());
                items.push((id, pos));
            }
        }
        let mut bounds = Aabb::EMPTY;
        for (_, p) in &items {
            if p.is_finite() {
                bounds.grow(*p);
            }
        }
        let scale = (bounds.hi - bounds.lo).max(Vec2::splat(f32::MIN_POSITIVE));
        items.sort_by_cached_key(|(id, p)| {
            let key = if p.is_finite() {
                let q =
                    ((*p - bounds.lo) / scale * 65535.0).clamp(Vec2::ZERO, Vec2::splat(65535.0));
                morton(q.x as u32, q.y as u32)
            } else {
                u32::MAX
            };
            (key, *id)
        });
        self.by_id.clear();
        for (i, (id, _)) in items.iter().enumerate() {
            self.by_id.insert(*id, i);
        }
        self.items = items;
        self.shape();
        self.refit();
        self.unsorted = 0;
    }

    /// Sizes the levels for the entities there are, keeping every box
    /// there is (new ones start empty), then makes sure the root covers
    /// the level below it.
    fn shape(&mut self) {
        let mut n = self.items.len().div_ceil(FANOUT).max(1);
        let mut level = 0;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            self.levels[level].resize(n, Aabb::EMPTY);
            if self.levels[level].len() == 1 {
                break;
            }
            n = self.levels[level].len().div_ceil(FANOUT);
            level += 1;
        }
        // A level above the root is left over from a larger index: drop it.
        self.levels.truncate(level + 1);
        if level > 0 {
            let mut root = Aabb::EMPTY;
            for b in &self.levels[level - 1] {
                root.join(b);
            }
            self.levels[level][0] = root;
        }
    }

    /// Recomputes every box from the positions below it.
    fn refit(&mut self) {
        if let Some(leaves) = self.levels.first_mut() {
            for (leaf, chunk) in leaves.iter_mut().zip(self.items.chunks(FANOUT)) {
                let mut b = Aabb::EMPTY;
                for (_, p) in chunk {
                    if p.is_finite() {
                        b.grow(*p);
                    }
                }
                *leaf = b;
            }
        }
        for level in 1..self.levels.len() {
            let (below, above) = self.levels.split_at_mut(level);
            let (Some(below), Some(above)) = (below.last(), above.first_mut()) else {
                continue;
            };
            for (node, chunk) in above.iter_mut().zip(below.chunks(FANOUT)) {
                let mut b = Aabb::EMPTY;
                for c in chunk {
                    b.join(c);
                }
                *node = b;
            }
        }
        self.moves = 0;
    }

    /// Grows the boxes above `place` to contain `pos`.
    fn cover(&mut self, place: usize, pos: Vec2) {
        if !pos.is_finite() {
            return;
        }
        let mut node = place / FANOUT;
        for level in self.levels.iter_mut() {
            let Some(b) = level.get_mut(node) else { return };
            if b.contains(pos) {
                return;
            }
            b.grow(pos);
            node /= FANOUT;
        }
    }

    /// Counts a move, refitting or re-sorting when enough have happened.
    fn moved(&mut self) {
        self.moves += 1;
        self.unsorted += 1;
        let n = self.by_id.len();
        if self.unsorted > (n * RESORT_MOVES).max(REFIT_MIN_MOVES) {
            self.rebuild();
        } else if self.moves > n.max(REFIT_MIN_MOVES) {
            self.refit();
        }
    }

    fn visit(&self, level: usize, node: usize, q: &Query, out: &mut Vec<EntityId>) {
        if level == 0 {
            let Some(leaf) = self.levels.first().and_then(|l| l.get(node)) else {
                return;
            };
            let start = node * FANOUT;
            let Some(chunk) = self
                .items
                .get(start..(start + FANOUT).min(self.items.len()))
            else {
                return;
            };
            if leaf.inside_circle(q.center, q.radius) {
                // Every finite position is inside the leaf's box.
                out.extend(
                    chunk
                        .iter()
                        .filter(|(_, p)| p.is_finite())
                        .map(|(id, _)| *id),
                );
            } else {
                out.extend(
                    chunk
                        .iter()
                        .filter(|(_, p)| is_within(*p, q.center, q.radius))
                        .map(|(id, _)| *id),
                );
            }
            return;
        }
        let Some(below) = self.levels.get(level - 1) else {
            return;
        };
        let first = node * FANOUT;
        let last = (first + FANOUT).min(below.len());
        let Some(children) = below.get(first..last) else {
            return;
        };
        for (i, b) in children.iter().enumerate() {
            if b.meets(q.lo, q.hi) {
                self.visit(level - 1, first + i, q, out);
            }
        }
    }
}

/// A query: its circle and the square around it.
struct Query {
    center: Vec2,
    radius: f32,
    lo: Vec2,
    hi: Vec2,
}

impl SpatialIndex for RTreeIndex {
    fn insert(&mut self, id: EntityId, pos: Vec2) {
        self.update(id, pos);
    }

    fn update(&mut self, id: EntityId, pos: Vec2) {
        let place = match self.by_id.get(&id) {
            Some(&place) => place,
            None => {
                let place = match self.free.pop() {
                    Some(place) => place,
                    None => {
                        self.items.push((id, Vec2::NAN));
                        self.shape();
                        self.items.len() - 1
                    }
                };
                self.by_id.insert(id, place);
                place
            }
        };
        if let Some(item) = self.items.get_mut(place) {
            *item = (id, pos);
        }
        self.cover(place, pos);
        self.moved();
    }

    fn replace_all(&mut self, entries: &mut dyn Iterator<Item = (EntityId, Vec2)>) {
        self.fill(entries);
    }

    fn remove(&mut self, id: EntityId) {
        let Some(place) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(item) = self.items.get_mut(place) {
            item.1 = Vec2::NAN;
        }
        self.free.push(place);
        self.moved();
    }

    fn within(&self, center: Vec2, radius: f32, out: &mut Vec<EntityId>) {
        if !query_is_valid(center, radius) || self.items.is_empty() {
            return;
        }
        let (lo, hi) = query_box(center, radius);
        let q = Query {
            center,
            radius,
            lo,
            hi,
        };
        let top = self.levels.len().saturating_sub(1);
        let root = self.levels.get(top).and_then(|l| l.first());
        if root.is_some_and(|root| root.meets(lo, hi)) {
            self.visit(top, 0, &q, out);
        }
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests;
