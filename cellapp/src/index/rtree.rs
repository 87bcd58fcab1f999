//! [`RTreeIndex`]: an R-tree (rstar) of loose boxes around entity positions.
//!
//! rstar cannot move an entry, only remove and reinsert it, which is costly
//! when every entity moves every tick. So each entity is indexed by a loose
//! box: its position when last (re)inserted, grown by a slack on each side.
//! Moving within that box only records the new exact position; leaving it
//! reinserts a fresh box. A query collects the boxes that meet the query's
//! bounding square and keeps the entities whose exact current position is
//! within the radius. Each entity remembers its indexed box, because rstar's
//! `remove` matches entries exactly.
//!
//! One-by-one reinsertion slowly degrades the tree, so once as many entries
//! have been reinserted as there are entities, the tree is rebuilt with
//! rstar's bulk load (also available as [`RTreeIndex::rebuild`]).
//!
//! Exact positions live in a slab of stable slots (the tree's entries carry
//! the slot number), so a query reads positions by index, without hashing.

use super::{is_within, query_box, query_is_valid, IdMap, SpatialIndex};
use glam::Vec2;
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RStarInsertionStrategy, RTree, RTreeParams, AABB};
use std::ops::ControlFlow;
use tessera::EntityId;

/// The slack, in metres, that [`RTreeIndex::new`] grows loose boxes by.
pub const DEFAULT_SLACK: f32 = 4.0;

/// The fewest one-by-one reinsertions that trigger an automatic
/// [`RTreeIndex::rebuild`], so small indexes are not rebuilt all the time.
const REBUILD_MIN_CHURN: usize = 1024;

/// One tree entry: an entity's loose box, its slot in the slab and its id
/// (so a query that finds the whole box inside its circle need not read
/// the slab).
type Entry = GeomWithData<Rectangle<[f32; 2]>, (usize, EntityId)>;

/// Wider nodes than rstar's default (3 to 6 children): a query of a
/// crowded cell visits fewer, fuller nodes, and each node's children sit
/// together in memory.
struct Wide;

impl RTreeParams for Wide {
    const MIN_SIZE: usize = 8;
    const MAX_SIZE: usize = 24;
    const REINSERTION_COUNT: usize = 4;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// A [`SpatialIndex`] over an rstar R-tree of loose boxes.
#[derive(Debug)]
pub struct RTreeIndex {
    /// The loose boxes of all entities with a finite position.
    tree: RTree<Entry, Wide>,
    /// The entity and its current exact position, by slot (what queries
    /// read, kept compact); a freed slot holds a NaN position until reused.
    slots: Vec<(EntityId, Vec2)>,
    /// The box each slot is indexed with in the tree; `None` while the
    /// position is not finite (such entities are never found, so not in the
    /// tree) and for free slots.
    boxes: Vec<Option<AABB<[f32; 2]>>>,
    /// Slots free for reuse.
    free: Vec<usize>,
    /// The slot of each entity.
    by_id: IdMap<usize>,
    /// How far a loose box extends beyond the indexed position on each side.
    slack: f32,
    /// Entries reinserted one by one since the tree was last bulk-loaded.
    churn: usize,
}

impl Default for RTreeIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl RTreeIndex {
    /// An empty index with the [`DEFAULT_SLACK`].
    pub fn new() -> Self {
        Self::with_slack(DEFAULT_SLACK)
    }

    /// An empty index whose loose boxes extend `slack` metres beyond the
    /// indexed position on each side. A larger slack means fewer reinsertions
    /// but more candidates per query; 0 reinserts on every move. A negative
    /// or non-finite slack is replaced by [`DEFAULT_SLACK`].
    pub fn with_slack(slack: f32) -> Self {
        let slack = if slack.is_finite() && slack >= 0.0 {
            slack
        } else {
            DEFAULT_SLACK
        };
        RTreeIndex {
            tree: RTree::new_with_params(),
            slots: Vec::new(),
            boxes: Vec::new(),
            free: Vec::new(),
            by_id: IdMap::default(),
            slack,
            churn: 0,
        }
    }

    /// The slack this index grows loose boxes by, in metres.
    pub fn slack(&self) -> f32 {
        self.slack
    }

    /// The loose box around `pos`, or `None` if `pos` is not finite.
    fn loose_box(&self, pos: Vec2) -> Option<AABB<[f32; 2]>> {
        if !pos.is_finite() {
            return None;
        }
        let s = self.slack;
        Some(AABB::from_corners(
            [pos.x - s, pos.y - s],
            [pos.x + s, pos.y + s],
        ))
    }

    /// Takes the entry of `slot` (holding `id`) out of the tree, if it is
    /// in it.
    fn unindex(&mut self, slot: usize, id: EntityId, indexed: Option<AABB<[f32; 2]>>) {
        if let Some(aabb) = indexed {
            self.tree
                .remove(&Entry::new(Rectangle::from_aabb(aabb), (slot, id)));
        }
    }

    /// Puts `slot` (holding `id`) into the tree with a loose box around
    /// `pos`, if finite, and returns the box used.
    fn index(&mut self, slot: usize, id: EntityId, pos: Vec2) -> Option<AABB<[f32; 2]>> {
        let aabb = self.loose_box(pos)?;
        self.tree
            .insert(Entry::new(Rectangle::from_aabb(aabb), (slot, id)));
        Some(aabb)
    }

    /// Adds an entity that is not in the index yet.
    fn add(&mut self, id: EntityId, pos: Vec2) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push((id, pos));
                self.boxes.push(None);
                self.slots.len() - 1
            }
        };
        let indexed = self.index(slot, id, pos);
        if let (Some(s), Some(b)) = (self.slots.get_mut(slot), self.boxes.get_mut(slot)) {
            *s = (id, pos);
            *b = indexed;
        }
        self.by_id.insert(id, slot);
    }

    /// Moves the entity in `slot` to `pos`, reinserting it only when `pos`
    /// leaves its loose box.
    fn relocate(&mut self, slot: usize, pos: Vec2) {
        let (Some(current), Some(&indexed)) = (self.slots.get_mut(slot), self.boxes.get(slot))
        else {
            return;
        };
        current.1 = pos;
        let id = current.0;
        let still_inside = pos.is_finite()
            && indexed.is_some_and(|b| {
                let (lo, hi) = (b.lower(), b.upper());
                lo[0] <= pos.x && pos.x <= hi[0] && lo[1] <= pos.y && pos.y <= hi[1]
            });
        if still_inside {
            return;
        }
        self.unindex(slot, id, indexed);
        let indexed = self.index(slot, id, pos);
        if let Some(b) = self.boxes.get_mut(slot) {
            *b = indexed;
        }
        self.churn += 1;
        if self.churn > self.by_id.len().max(REBUILD_MIN_CHURN) {
            self.rebuild();
        }
    }

    /// Re-centers every loose box on its entity's current position and
    /// rebuilds the tree in one bulk load.
    ///
    /// One-by-one reinsertion slowly degrades the tree (overlapping nodes make
    /// queries visit more of it); the index does this by itself once as many
    /// entries have been reinserted as there are entities. Calling it after
    /// adding many entities at once (a cell filling up) gives a well-packed
    /// tree straight away.
    pub fn rebuild(&mut self) {
        let mut entries = Vec::with_capacity(self.by_id.len());
        for (slot, &(id, pos)) in self.slots.iter().enumerate() {
            let aabb = self.loose_box(pos);
            if let Some(b) = self.boxes.get_mut(slot) {
                *b = aabb;
            }
            if let Some(aabb) = aabb {
                entries.push(Entry::new(Rectangle::from_aabb(aabb), (slot, id)));
            }
        }
        self.tree = RTree::bulk_load_with_params(entries);
        self.churn = 0;
    }
}

impl SpatialIndex for RTreeIndex {
    fn insert(&mut self, id: EntityId, pos: Vec2) {
        self.update(id, pos);
    }

    fn update(&mut self, id: EntityId, pos: Vec2) {
        match self.by_id.get(&id) {
            Some(&slot) => self.relocate(slot, pos),
            None => self.add(id, pos),
        }
    }

    fn replace_all(&mut self, entries: &mut dyn Iterator<Item = (EntityId, Vec2)>) {
        self.slots.clear();
        self.boxes.clear();
        self.free.clear();
        self.by_id.clear();
        for (id, pos) in entries {
            if self.by_id.get(&id).is_some() {
                continue;
            }
            self.by_id.insert(id, self.slots.len());
            self.slots.push((id, pos));
            self.boxes.push(None);
        }
        self.rebuild();
    }

    fn remove(&mut self, id: EntityId) {
        let Some(slot) = self.by_id.remove(&id) else {
            return;
        };
        if let (Some(s), Some(b)) = (self.slots.get_mut(slot), self.boxes.get_mut(slot)) {
            s.1 = Vec2::NAN;
            let indexed = b.take();
            self.unindex(slot, id, indexed);
        }
        self.free.push(slot);
    }

    fn within(&self, center: Vec2, radius: f32, out: &mut Vec<EntityId>) {
        if !query_is_valid(center, radius) {
            return;
        }
        let (lo, hi) = query_box(center, radius);
        let envelope = AABB::from_corners([lo.x, lo.y], [hi.x, hi.y]);
        let _: ControlFlow<()> = self
            .tree
            .locate_in_envelope_intersecting_int(envelope, |entry| {
                let (slot, id) = entry.data;
                // The exact position is inside the box: a box wholly
                // within the circle needs no look at it.
                let b = entry.geom();
                let (lo, hi) = (b.lower(), b.upper());
                // In f64, as `is_within` measures: no rounding can put the
                // farthest corner inside and the position outside.
                let far = |lo: f32, hi: f32, c: f32| {
                    let (lo, hi, c) = (f64::from(lo), f64::from(hi), f64::from(c));
                    (lo - c).abs().max((hi - c).abs())
                };
                let (dx, dz) = (far(lo[0], hi[0], center.x), far(lo[1], hi[1], center.y));
                let r = f64::from(radius);
                if dx * dx + dz * dz <= r * r
                    || self
                        .slots
                        .get(slot)
                        .is_some_and(|&(_, pos)| is_within(pos, center, radius))
                {
                    out.push(id);
                }
                ControlFlow::Continue(())
            });
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(index: &RTreeIndex, center: Vec2, radius: f32) -> Vec<EntityId> {
        let mut out = Vec::new();
        index.within(center, radius, &mut out);
        out.sort();
        out
    }

    #[test]
    fn small_moves_stay_in_the_loose_box() {
        let mut index = RTreeIndex::with_slack(4.0);
        index.insert(EntityId(7), Vec2::new(10.0, 10.0));
        let boxed = index.boxes[0];
        index.update(EntityId(7), Vec2::new(13.5, 6.5));
        assert_eq!(index.boxes[0], boxed, "no reinsertion inside the box");
        assert_eq!(index.tree.size(), 1);
        // The query uses the exact position, not the indexed one.
        assert_eq!(found(&index, Vec2::new(13.5, 6.5), 0.0), vec![EntityId(7)]);
        assert!(found(&index, Vec2::new(10.0, 10.0), 4.0).is_empty());
    }

    #[test]
    fn leaving_the_box_reinserts() {
        let mut index = RTreeIndex::with_slack(4.0);
        index.insert(EntityId(7), Vec2::new(10.0, 10.0));
        index.update(EntityId(7), Vec2::new(14.5, 10.0));
        let expected = AABB::from_corners([10.5, 6.0], [18.5, 14.0]);
        assert_eq!(index.boxes[0], Some(expected));
        assert_eq!(index.tree.size(), 1);
        assert_eq!(found(&index, Vec2::new(20.0, 10.0), 5.5), vec![EntityId(7)]);
    }

    #[test]
    fn remove_finds_the_stale_box_and_slots_are_reused() {
        let mut index = RTreeIndex::new();
        index.insert(EntityId(1), Vec2::new(0.0, 0.0));
        index.insert(EntityId(2), Vec2::new(1.0, 0.0));
        index.update(EntityId(1), Vec2::new(3.0, -3.0));
        index.remove(EntityId(1));
        assert_eq!(index.tree.size(), 1);
        assert_eq!(index.len(), 1);
        index.insert(EntityId(3), Vec2::new(2.0, 2.0));
        assert_eq!(index.slots.len(), 2, "the freed slot is reused");
        assert_eq!(
            found(&index, Vec2::ZERO, 10.0),
            vec![EntityId(2), EntityId(3)]
        );
    }

    #[test]
    fn non_finite_positions_leave_the_tree() {
        let mut index = RTreeIndex::new();
        index.insert(EntityId(1), Vec2::new(0.0, 0.0));
        index.update(EntityId(1), Vec2::new(f32::NAN, 0.0));
        assert_eq!(index.tree.size(), 0);
        assert_eq!(index.len(), 1);
        index.update(EntityId(1), Vec2::new(1.0, 0.0));
        assert_eq!(index.tree.size(), 1);
        assert_eq!(found(&index, Vec2::ZERO, 1.0), vec![EntityId(1)]);
        index.update(EntityId(1), Vec2::splat(f32::INFINITY));
        index.remove(EntityId(1));
        assert!(index.is_empty());
        assert_eq!(index.tree.size(), 0);
    }

    #[test]
    fn churn_triggers_a_rebuild_that_keeps_answers() {
        let mut index = RTreeIndex::with_slack(1.0);
        for i in 0..10 {
            index.insert(EntityId(i), Vec2::new(i as f32 * 10.0, 0.0));
        }
        index.update(EntityId(9), Vec2::NAN);
        index.remove(EntityId(8));
        let spot =
            |step: usize| Vec2::new((step % 8) as f32 * 10.0 + (step / 8) as f32 * 0.001, 5.0);
        let steps = REBUILD_MIN_CHURN + REBUILD_MIN_CHURN / 2;
        for step in 1..=steps {
            index.update(EntityId(0), spot(step));
        }
        assert!(index.churn < REBUILD_MIN_CHURN, "a rebuild happened");
        assert_eq!(index.tree.size(), 8);
        assert_eq!(index.len(), 9);
        assert_eq!(found(&index, spot(steps), 0.0), vec![EntityId(0)]);
        let mut all = found(&index, Vec2::ZERO, 1000.0);
        all.retain(|&id| id != EntityId(0));
        assert_eq!(all, (1..8).map(EntityId).collect::<Vec<_>>());
        for i in 0..10 {
            index.remove(EntityId(i));
        }
        assert_eq!(index.tree.size(), 0);
    }

    #[test]
    fn bad_slack_falls_back_to_default() {
        assert_eq!(RTreeIndex::with_slack(f32::NAN).slack(), DEFAULT_SLACK);
        assert_eq!(RTreeIndex::with_slack(-1.0).slack(), DEFAULT_SLACK);
        assert_eq!(RTreeIndex::with_slack(0.0).slack(), 0.0);
    }
}
