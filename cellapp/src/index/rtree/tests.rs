use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn found(index: &RTreeIndex, center: Vec2, radius: f32) -> Vec<EntityId> {
    let mut out = Vec::new();
    index.within(center, radius, &mut out);
    out.sort();
    out
}

/// Every box contains every finite position and every box below it, and
/// the levels have the packed shape for the entities there are.
fn assert_packed(index: &RTreeIndex) {
    // A fresh index has no boxes until its first entity.
    if index.items.is_empty() && index.levels.is_empty() {
        return;
    }
    let leaves = index.items.len().div_ceil(FANOUT).max(1);
    assert_eq!(index.levels[0].len(), leaves);
    for (place, (_, p)) in index.items.iter().enumerate() {
        if p.is_finite() {
            assert!(
                index.levels[0][place / FANOUT].contains(*p),
                "{p} at {place}"
            );
        }
    }
    for level in 1..index.levels.len() {
        let below = &index.levels[level - 1];
        assert_eq!(index.levels[level].len(), below.len().div_ceil(FANOUT));
        for (i, b) in below.iter().enumerate() {
            if b.lo.x <= b.hi.x {
                let parent = index.levels[level][i / FANOUT];
                assert!(parent.contains(b.lo) && parent.contains(b.hi));
            }
        }
    }
    assert_eq!(index.levels.last().map(Vec::len), Some(1), "one root");
}

/// `n` entities a metre apart along x, sorted.
fn in_a_row(n: u64) -> RTreeIndex {
    let mut index = RTreeIndex::new();
    for i in 0..n {
        index.insert(EntityId(i), Vec2::new(i as f32, 0.0));
    }
    index.rebuild();
    index
}

#[test]
fn a_move_out_of_the_leaf_grows_its_boxes_and_a_refit_tightens_them() {
    let mut index = in_a_row(40);
    assert_packed(&index);
    index.update(EntityId(3), Vec2::new(500.0, 500.0));
    assert_packed(&index);
    assert_eq!(
        found(&index, Vec2::new(500.0, 500.0), 0.0),
        vec![EntityId(3)]
    );
    let grown = index.levels[0].iter().filter(|b| b.hi.x >= 500.0).count();
    assert_eq!(grown, 1, "only the leaf holding it grew");
    index.update(EntityId(3), Vec2::new(3.0, 0.0));
    index.refit();
    assert!(index.levels[0].iter().all(|b| b.hi.x < 40.0), "tight again");
    assert_eq!(found(&index, Vec2::new(3.0, 0.0), 0.5), vec![EntityId(3)]);
}

#[test]
fn holes_are_reused_and_a_rebuild_squeezes_them_out() {
    let mut index = RTreeIndex::new();
    for i in 0..20 {
        index.insert(EntityId(i), Vec2::new(i as f32, i as f32));
    }
    index.remove(EntityId(4));
    index.remove(EntityId(9));
    assert_eq!(index.len(), 18);
    index.insert(EntityId(100), Vec2::new(1.5, 1.5));
    assert_eq!(index.items.len(), 20, "a hole was reused");
    assert_eq!(
        found(&index, Vec2::new(1.5, 1.5), 1.0),
        vec![EntityId(1), EntityId(2), EntityId(100)]
    );
    index.rebuild();
    assert_eq!(index.items.len(), 19);
    assert_packed(&index);
    assert!(found(&index, Vec2::new(4.0, 4.0), 0.1).is_empty());
    assert_eq!(found(&index, Vec2::ZERO, 1000.0).len(), 19);
}

#[test]
fn growing_one_by_one_adds_levels_and_finds_everyone() {
    let mut index = RTreeIndex::new();
    let n = FANOUT * FANOUT * FANOUT + 5;
    for i in 0..n {
        let (x, z) = ((i % 97) as f32 * 3.0, (i / 97) as f32 * 3.0);
        index.insert(EntityId(i as u64), Vec2::new(x, z));
    }
    assert_packed(&index);
    assert_eq!(index.levels.len(), 4);
    assert_eq!(found(&index, Vec2::ZERO, 1.0e6).len(), n);
    assert_eq!(found(&index, Vec2::new(6.0, 0.0), 3.0).len(), 4);
}

#[test]
fn enough_moves_sort_the_array_again() {
    let mut index = in_a_row(64);
    // Everyone walks to the mirror place and shuffles there: the order is
    // now reversed, and enough moves happen for a sort.
    for step in 0..=(64 * RESORT_MOVES).max(REFIT_MIN_MOVES) / 64 {
        for i in 0..64u64 {
            let x = 63.0 - i as f32 + 0.001 * (step % 2) as f32;
            index.update(EntityId(i), Vec2::new(x, 0.0));
        }
    }
    assert!(index.unsorted < 64 * RESORT_MOVES, "a sort happened");
    assert_packed(&index);
    let order: Vec<u64> = index.items.iter().map(|(id, _)| id.0).collect();
    assert_eq!(order, (0..64).rev().collect::<Vec<_>>());
}

/// One step of a random life of many entities.
#[derive(Clone, Debug)]
enum Op {
    Put(u64, f32, f32),
    Step(u64, f32, f32),
    Poison(u64),
    Remove(u64),
    Within(f32, f32, f32),
    Rebuild,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0u64..700;
    let at = -500.0f32..500.0;
    let step = -8.0f32..8.0;
    prop_oneof![
        4 => (id.clone(), at.clone(), at.clone()).prop_map(|(i, x, z)| Op::Put(i, x, z)),
        12 => (id.clone(), step.clone(), step).prop_map(|(i, x, z)| Op::Step(i, x, z)),
        1 => id.clone().prop_map(Op::Poison),
        2 => id.prop_map(Op::Remove),
        3 => (at.clone(), at, 0.0f32..300.0).prop_map(|(x, z, r)| Op::Within(x, z, r)),
        1 => Just(Op::Rebuild),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Hundreds of entities (several levels): every query equals brute
    /// force, and every box covers what is below it, after any mix of
    /// moves, holes, reuse, refits and sorts.
    #[test]
    fn many_entities_match_brute_force(ops in prop::collection::vec(op(), 1..3000)) {
        let mut index = RTreeIndex::new();
        let mut truth: BTreeMap<u64, Vec2> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(i, x, z) => {
                    truth.insert(i, Vec2::new(x, z));
                    index.insert(EntityId(i), Vec2::new(x, z));
                }
                Op::Step(i, x, z) => {
                    if let Some(p) = truth.get_mut(&i) {
                        *p += Vec2::new(x, z);
                        index.update(EntityId(i), *p);
                    }
                }
                Op::Poison(i) => {
                    if let Some(p) = truth.get_mut(&i) {
                        *p = Vec2::NAN;
                        index.update(EntityId(i), Vec2::NAN);
                    }
                }
                Op::Remove(i) => {
                    truth.remove(&i);
                    index.remove(EntityId(i));
                }
                Op::Rebuild => index.rebuild(),
                Op::Within(x, z, r) => {
                    let c = Vec2::new(x, z);
                    let expected: Vec<EntityId> = truth
                        .iter()
                        .filter(|(_, &p)| is_within(p, c, r))
                        .map(|(&i, _)| EntityId(i))
                        .collect();
                    prop_assert_eq!(found(&index, c, r), expected);
                }
            }
            prop_assert_eq!(index.len(), truth.len());
        }
        assert_packed(&index);
    }
}

/// An index nothing was ever put in answers nothing and has no boxes (the
/// case the random lives above once drew as a single move of nobody).
#[test]
fn a_fresh_index_is_empty_and_packed() {
    let index = RTreeIndex::new();
    assert_eq!(index.len(), 0);
    assert!(found(&index, Vec2::ZERO, 1.0e6).is_empty());
    assert_packed(&index);
}
