//! The spatial index of one cell: which entities are near a point.
//!
//! The cell asks "who is within `r` metres of here" many times per tick (area
//! of interest, triggers, spell targets) while every entity moves a little each
//! tick. This module owns that question and its two answers: a packed R-tree
//! refit in place ([`RTreeIndex`]) and a uniform bucket grid over the cell's bounds
//! ([`GridIndex`]). Both work on the x/z plane (a `Vec2` is `(x, z)` in metres;
//! height is ignored) and answer with exact distances to the current positions.
//!
//! Shared rules: a non-finite position (NaN or infinite) is stored but never
//! found by a query; a query with a non-finite center or a negative or NaN
//! radius finds nothing. Nothing here panics on such input.

mod grid;
mod rtree;

pub use grid::{GridIndex, DEFAULT_CELL_SIZE, MAX_BUCKETS, MIN_CELL_SIZE};
pub use rtree::{RTreeIndex, FANOUT, RESORT_MOVES};

use glam::Vec2;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;
use tessera::EntityId;

/// The spatial index of one cell: entity positions on the x/z plane, queried by radius.
pub trait SpatialIndex: Send {
    /// Adds an entity at `pos`. An id already in the index is moved instead.
    fn insert(&mut self, id: EntityId, pos: Vec2);
    /// Moves an entity already in the index. Unknown ids are inserted.
    fn update(&mut self, id: EntityId, pos: Vec2);
    /// Removes an entity; unknown ids are ignored.
    fn remove(&mut self, id: EntityId);
    /// Appends to `out` every entity whose CURRENT position (the last given by insert/update) is within `radius` of `center` (distance <= radius), each exactly once, in no particular order. Does not clear `out`.
    fn within(&self, center: Vec2, radius: f32, out: &mut Vec<EntityId>);
    /// The number of entities in the index.
    fn len(&self) -> usize;
    /// Replaces everything with `entries` (each id once): what a cell does
    /// after renumbering its entities, in one go (the R-tree bulk-loads)
    /// rather than an entity at a time.
    fn replace_all(&mut self, entries: &mut dyn Iterator<Item = (EntityId, Vec2)>);
    /// Whether the index holds no entity.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which [`SpatialIndex`] implementation a cell uses; in settings files
/// `"rtree"` or `"grid"`, as [`fmt::Display`] writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// [`RTreeIndex`]: a packed R-tree refit in place; no bounds needed.
    RTree,
    /// [`GridIndex`]: a uniform grid over the cell's bounds.
    Grid,
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IndexKind::RTree => "rtree",
            IndexKind::Grid => "grid",
        })
    }
}

/// The error of parsing an [`IndexKind`] from anything but "rtree" or "grid".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseIndexKindError(pub String);

impl fmt::Display for ParseIndexKindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown index kind {:?} (expected \"rtree\" or \"grid\")",
            self.0
        )
    }
}

impl std::error::Error for ParseIndexKindError {}

impl FromStr for IndexKind {
    type Err = ParseIndexKindError;

    /// Parses "rtree" or "grid", ignoring ASCII case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("rtree") {
            Ok(IndexKind::RTree)
        } else if t.eq_ignore_ascii_case("grid") {
            Ok(IndexKind::Grid)
        } else {
            Err(ParseIndexKindError(s.to_owned()))
        }
    }
}

/// Builds an empty index of `kind` for a cell covering `bounds` (min, max).
///
/// `hint_radius` is the typical query radius: the grid uses it as its cell
/// size. The R-tree needs neither.
pub fn new_index(kind: IndexKind, bounds: (Vec2, Vec2), hint_radius: f32) -> Box<dyn SpatialIndex> {
    match kind {
        IndexKind::RTree => Box::new(RTreeIndex::new()),
        IndexKind::Grid => Box::new(GridIndex::new(bounds, hint_radius)),
    }
}

/// Interleaves the bits of two 16-bit coordinates (Z-order): the order
/// that keeps near places near in memory, for the cell's entries and the
/// R-tree's leaves.
pub(crate) fn morton(x: u32, z: u32) -> u32 {
    fn spread(mut v: u32) -> u32 {
        v &= 0xffff;
        v = (v | (v << 8)) & 0x00ff_00ff;
        v = (v | (v << 4)) & 0x0f0f_0f0f;
        v = (v | (v << 2)) & 0x3333_3333;
        (v | (v << 1)) & 0x5555_5555
    }
    spread(x) | (spread(z) << 1)
}

/// Whether a query with this center and radius can find anything at all.
fn query_is_valid(center: Vec2, radius: f32) -> bool {
    center.is_finite() && radius >= 0.0
}

/// The exact test every query applies: `pos` is finite and within `radius`
/// of `center`, computed in f64 so that it neither overflows nor depends on
/// f32 rounding of the squared distance.
fn is_within(pos: Vec2, center: Vec2, radius: f32) -> bool {
    if !pos.is_finite() {
        return false;
    }
    let dx = f64::from(pos.x) - f64::from(center.x);
    let dz = f64::from(pos.y) - f64::from(center.y);
    let r = f64::from(radius);
    dx * dx + dz * dz <= r * r
}

/// A box (min, max) that surely contains every point `is_within` accepts,
/// grown by a few ulps of the magnitudes involved so that f32 rounding of
/// `center ± radius` can never cut off an accepted point.
fn query_box(center: Vec2, radius: f32) -> (Vec2, Vec2) {
    let grow = |c: f32| radius + (c.abs() + radius) * (4.0 * f32::EPSILON) + f32::MIN_POSITIVE;
    let gx = grow(center.x);
    let gz = grow(center.y);
    (
        Vec2::new(center.x - gx, center.y - gz),
        Vec2::new(center.x + gx, center.y + gz),
    )
}

/// A fast, fixed (hence deterministic) hasher for entity ids: the
/// SplitMix64 finalizer of the id. Ids are handed out by the server, so
/// resistance to chosen keys is not needed.
#[derive(Clone, Copy, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(32) ^ n;
    }
}

/// A map keyed by entity id: a plain vector for small ids (a cell keys its
/// index by dense slot numbers, so lookups are one array access), a hash map
/// with [`IdHasher`] for the rest.
#[derive(Debug, Clone)]
struct IdMap<V> {
    dense: Vec<Option<V>>,
    sparse: HashMap<EntityId, V, BuildHasherDefault<IdHasher>>,
    len: usize,
}

/// Ids below this live in the vector.
const DENSE_IDS: u64 = 1 << 22;

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap {
            dense: Vec::new(),
            sparse: HashMap::default(),
            len: 0,
        }
    }
}

impl<V> IdMap<V> {
    fn get(&self, id: &EntityId) -> Option<&V> {
        if id.0 < DENSE_IDS {
            self.dense.get(id.0 as usize).and_then(Option::as_ref)
        } else {
            self.sparse.get(id)
        }
    }

    fn get_mut(&mut self, id: &EntityId) -> Option<&mut V> {
        if id.0 < DENSE_IDS {
            self.dense.get_mut(id.0 as usize).and_then(Option::as_mut)
        } else {
            self.sparse.get_mut(id)
        }
    }

    fn insert(&mut self, id: EntityId, value: V) -> Option<V> {
        let old = if id.0 < DENSE_IDS {
            let i = id.0 as usize;
            if i >= self.dense.len() {
                self.dense.resize_with(i + 1, || None);
            }
            self.dense[i].replace(value)
        } else {
            self.sparse.insert(id, value)
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    fn remove(&mut self, id: &EntityId) -> Option<V> {
        let old = if id.0 < DENSE_IDS {
            self.dense.get_mut(id.0 as usize).and_then(Option::take)
        } else {
            self.sparse.remove(id)
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Forgets every entry (keeping the vector's room).
    fn clear(&mut self) {
        self.dense.iter_mut().for_each(|v| *v = None);
        self.sparse.clear();
        self.len = 0;
    }

    /// Every entry, dense ids first.
    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = (EntityId, &V)> {
        self.dense
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (EntityId(i as u64), v)))
            .chain(self.sparse.iter().map(|(k, v)| (*k, v)))
    }
}

#[cfg(test)]
impl<V> std::ops::Index<&EntityId> for IdMap<V> {
    type Output = V;

    fn index(&self, id: &EntityId) -> &V {
        match self.get(id) {
            Some(v) => v,
            None => panic!("no entry for {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn kind_round_trips_through_strings() {
        for kind in [IndexKind::RTree, IndexKind::Grid] {
            assert_eq!(kind.to_string().parse::<IndexKind>(), Ok(kind));
        }
        assert_eq!(" Grid ".parse::<IndexKind>(), Ok(IndexKind::Grid));
        assert!("quadtree".parse::<IndexKind>().is_err());
    }

    #[test]
    fn within_predicate_is_inclusive_and_rejects_non_finite() {
        let c = Vec2::new(1.0, 1.0);
        assert!(is_within(Vec2::new(4.0, 5.0), c, 5.0));
        assert!(!is_within(Vec2::new(4.0, 5.1), c, 5.0));
        assert!(!is_within(Vec2::new(f32::NAN, 1.0), c, 5.0));
        assert!(!is_within(Vec2::new(f32::INFINITY, 1.0), c, f32::INFINITY));
        assert!(is_within(Vec2::new(f32::MAX, -f32::MAX), c, f32::INFINITY));
        assert!(!is_within(
            Vec2::new(f32::MAX, 0.0),
            Vec2::new(-f32::MAX, 0.0),
            f32::MAX
        ));
    }

    #[test]
    fn query_box_covers_far_boundary_points() {
        let center = Vec2::new(1.0e6 + 0.3, -7.7e5);
        let radius = 0.1;
        let (lo, hi) = query_box(center, radius);
        let on_edge = Vec2::new(center.x - radius, center.y + radius);
        assert!(lo.x <= on_edge.x && on_edge.y <= hi.y);
    }

    /// Every kind built through the factory, with a few configurations each.
    fn all_indexes() -> Vec<Box<dyn SpatialIndex>> {
        let bounds = (Vec2::splat(-100.0), Vec2::splat(100.0));
        vec![
            new_index(IndexKind::RTree, bounds, 30.0),
            new_index(IndexKind::Grid, bounds, 30.0),
            Box::new(GridIndex::new(bounds, 1.0)),
        ]
    }

    #[test]
    fn factory_indexes_share_the_contract() {
        for mut index in all_indexes() {
            assert!(index.is_empty());
            index.insert(EntityId(1), Vec2::new(0.0, 0.0));
            index.insert(EntityId(2), Vec2::new(10.0, 0.0));
            index.update(EntityId(3), Vec2::new(500.0, -500.0));
            assert_eq!(index.len(), 3);

            let mut out = vec![EntityId(99)];
            index.within(Vec2::ZERO, 10.0, &mut out);
            out.sort();
            assert_eq!(out, vec![EntityId(1), EntityId(2), EntityId(99)]);

            index.remove(EntityId(1));
            index.remove(EntityId(1));
            index.update(EntityId(2), Vec2::new(490.0, -500.0));
            let mut out = Vec::new();
            index.within(Vec2::new(500.0, -500.0), 10.0, &mut out);
            out.sort();
            assert_eq!(out, vec![EntityId(2), EntityId(3)]);
            assert_eq!(index.len(), 2);
        }
    }

    #[test]
    fn bad_input_does_not_panic_and_is_not_found() {
        for mut index in all_indexes() {
            index.insert(EntityId(1), Vec2::new(f32::NAN, 0.0));
            index.insert(EntityId(2), Vec2::new(f32::INFINITY, f32::NEG_INFINITY));
            index.insert(EntityId(3), Vec2::new(5.0, 5.0));
            let mut out = Vec::new();
            index.within(Vec2::ZERO, f32::INFINITY, &mut out);
            assert_eq!(out, vec![EntityId(3)]);
            out.clear();
            index.within(Vec2::new(f32::NAN, 0.0), 10.0, &mut out);
            index.within(Vec2::ZERO, f32::NAN, &mut out);
            index.within(Vec2::ZERO, -1.0, &mut out);
            assert!(out.is_empty());
            index.update(EntityId(1), Vec2::new(1.0, 1.0));
            index.update(EntityId(3), Vec2::splat(f32::NAN));
            index.within(Vec2::ZERO, 10.0, &mut out);
            assert_eq!(out, vec![EntityId(1)]);
            index.remove(EntityId(2));
            index.remove(EntityId(3));
            assert_eq!(index.len(), 1);
        }
    }

    /// One step of the random scenario.
    #[derive(Clone, Debug)]
    enum Op {
        /// Insert (or move) an id to an absolute position.
        Insert(u64, f32, f32),
        /// Update an id to an absolute position (a big jump, possibly outside the bounds).
        Jump(u64, f32, f32),
        /// Move an id (if present) by a small step from its current position.
        Nudge(u64, f32, f32),
        /// Update an id to a NaN position.
        Poison(u64),
        /// Remove an id.
        Remove(u64),
        /// Query around an absolute point.
        Within(f32, f32, f32),
        /// Query centered exactly on an id's current position (if present).
        WithinAt(u64, f32),
        /// Query centered on the first id with the radius reaching exactly
        /// (up to f32 rounding) to the second (if both are present).
        WithinReach(u64, u64),
        /// Bulk-rebuild the R-tree.
        Rebuild,
        /// Replace everything with what is there now (a cell renumbering).
        ReplaceAll,
    }

    fn coord() -> impl Strategy<Value = f32> {
        prop_oneof![
            4 => -120.0f32..120.0,
            2 => (-26i32..26).prop_map(|k| k as f32 * 5.0),
            1 => -1000.0f32..1000.0,
            1 => prop::sample::select(vec![-100.0f32, 0.0, 99.999, 100.0, 1.0e7, -3.0e9]),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let id = 0u64..24;
        let step = -6.0f32..6.0;
        let radius = prop_oneof![3 => 0.0f32..80.0, 1 => 0.0f32..2000.0, 1 => Just(0.0f32)];
        prop_oneof![
            3 => (id.clone(), coord(), coord()).prop_map(|(i, x, z)| Op::Insert(i, x, z)),
            2 => (id.clone(), coord(), coord()).prop_map(|(i, x, z)| Op::Jump(i, x, z)),
            6 => (id.clone(), step.clone(), step).prop_map(|(i, x, z)| Op::Nudge(i, x, z)),
            1 => id.clone().prop_map(Op::Poison),
            2 => id.clone().prop_map(Op::Remove),
            3 => (coord(), coord(), radius.clone()).prop_map(|(x, z, r)| Op::Within(x, z, r)),
            2 => (id.clone(), radius).prop_map(|(i, r)| Op::WithinAt(i, r)),
            2 => (id.clone(), id).prop_map(|(a, b)| Op::WithinReach(a, b)),
            1 => Just(Op::Rebuild),
            1 => Just(Op::ReplaceAll),
        ]
    }

    /// The brute-force answer over a plain map of current positions.
    fn reference_within(truth: &BTreeMap<u64, Vec2>, center: Vec2, radius: f32) -> Vec<EntityId> {
        if !query_is_valid(center, radius) {
            return Vec::new();
        }
        truth
            .iter()
            .filter(|(_, &p)| is_within(p, center, radius))
            .map(|(&i, _)| EntityId(i))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn implementations_match_brute_force(
            ops in prop::collection::vec(op(), 1..250),
            cell in prop::sample::select(vec![0.5f32, 7.0, 30.0, 250.0]),
        ) {
            let bounds = (Vec2::new(-100.0, -100.0), Vec2::new(100.0, 60.0));
            let mut rtree = RTreeIndex::new();
            let mut grid = GridIndex::new(bounds, cell);
            let mut truth: BTreeMap<u64, Vec2> = BTreeMap::new();
            for op in ops {
                let query = match op {
                    Op::Insert(i, x, z) | Op::Jump(i, x, z) | Op::Nudge(i, x, z) => {
                        let pos = match op {
                            Op::Nudge(..) => match truth.get(&i) {
                                Some(p) => *p + Vec2::new(x, z),
                                None => continue,
                            },
                            _ => Vec2::new(x, z),
                        };
                        truth.insert(i, pos);
                        for index in [&mut rtree as &mut dyn SpatialIndex, &mut grid] {
                            if matches!(op, Op::Insert(..)) {
                                index.insert(EntityId(i), pos);
                            } else {
                                index.update(EntityId(i), pos);
                            }
                        }
                        None
                    }
                    Op::Poison(i) => {
                        truth.insert(i, Vec2::NAN);
                        for index in [&mut rtree as &mut dyn SpatialIndex, &mut grid] {
                            index.update(EntityId(i), Vec2::NAN);
                        }
                        None
                    }
                    Op::Remove(i) => {
                        truth.remove(&i);
                        for index in [&mut rtree as &mut dyn SpatialIndex, &mut grid] {
                            index.remove(EntityId(i));
                        }
                        None
                    }
                    Op::Rebuild => {
                        rtree.rebuild();
                        None
                    }
                    Op::ReplaceAll => {
                        for index in [&mut rtree as &mut dyn SpatialIndex, &mut grid] {
                            index.replace_all(&mut truth.iter().map(|(&i, &p)| (EntityId(i), p)));
                        }
                        None
                    }
                    Op::Within(x, z, r) => Some((Vec2::new(x, z), r)),
                    Op::WithinAt(i, r) => truth.get(&i).map(|&p| (p, r)),
                    Op::WithinReach(a, b) => match (truth.get(&a), truth.get(&b)) {
                        (Some(&pa), Some(&pb)) => Some((pa, pa.distance(pb))),
                        _ => None,
                    },
                };
                prop_assert_eq!(rtree.len(), truth.len());
                prop_assert_eq!(grid.len(), truth.len());
                if let Some((center, radius)) = query {
                    let expected = reference_within(&truth, center, radius);
                    for index in [&rtree as &dyn SpatialIndex, &grid] {
                        let mut got = Vec::new();
                        index.within(center, radius, &mut got);
                        got.sort();
                        prop_assert_eq!(&got, &expected, "center {:?} radius {}", center, radius);
                    }
                }
            }
        }
    }
}
