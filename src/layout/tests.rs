//! Property tests of the layout: after any sequence of splits, line moves,
//! retirements and reassignments, every point of the space is in exactly one
//! cell, `locate` agrees with the rectangles, areas add up to the space, a
//! retired cell's area goes to its neighbours and nothing else moves, and a
//! split cell starts with zero area.

use super::*;
use proptest::prelude::*;

const B: Rect = Rect {
    x0: 0.0,
    z0: 0.0,
    x1: 1000.0,
    z1: 600.0,
};

#[derive(Clone, Debug)]
enum Op {
    Split { pick: usize, axis_x: bool, app: u32 },
    Move { pick: usize, frac: f32 },
    Retire { pick: usize },
    Reassign { pick: usize, app: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), any::<bool>(), 1u32..9).prop_map(|(pick, axis_x, app)| Op::Split {
            pick,
            axis_x,
            app
        }),
        (any::<usize>(), 0.0f32..=1.0).prop_map(|(pick, frac)| Op::Move { pick, frac }),
        (any::<usize>(), -0.1f32..1.1).prop_map(|(pick, frac)| Op::Move { pick, frac }),
        any::<usize>().prop_map(|pick| Op::Retire { pick }),
        (any::<usize>(), 1u32..9).prop_map(|(pick, app)| Op::Reassign { pick, app }),
    ]
}

/// Half-open containment: the space's own max edges count as inside.
fn contains(r: &Rect, x: f32, z: f32) -> bool {
    let in_x = r.x0 <= x && (x < r.x1 || (x == r.x1 && r.x1 == B.x1 && r.x0 < r.x1));
    let in_z = r.z0 <= z && (z < r.z1 || (z == r.z1 && r.z1 == B.z1 && r.z0 < r.z1));
    in_x && in_z
}

fn sample_points(layout: &Layout, seed: &[(f32, f32)]) -> Vec<(f32, f32)> {
    let mut pts: Vec<(f32, f32)> = seed
        .iter()
        .map(|(u, v)| (B.x0 + u * (B.x1 - B.x0), B.z0 + v * (B.z1 - B.z0)))
        .collect();
    for c in layout.cells() {
        let r = c.rect;
        pts.extend([(r.x0, r.z0), (r.x1, r.z1), (r.x0, r.z1), (r.x1, r.z0)]);
        pts.push(((r.x0 + r.x1) / 2.0, (r.z0 + r.z1) / 2.0));
    }
    pts.retain(|(x, z)| B.holds(*x, *z));
    pts
}

fn check(layout: &Layout, seed: &[(f32, f32)]) -> Result<(), TestCaseError> {
    prop_assert_eq!(layout.validate(), Ok(()));
    let cells = layout.cells();
    let area: f64 = cells.iter().map(|c| c.rect.area()).sum();
    prop_assert!(
        (area - B.area()).abs() <= B.area() * 1e-6,
        "areas sum to {area}"
    );
    for c in &cells {
        prop_assert!(
            c.rect.x0 <= c.rect.x1 && c.rect.z0 <= c.rect.z1,
            "negative cell {:?}",
            c
        );
        prop_assert!(
            B.holds(c.rect.x0, c.rect.z0) && B.holds(c.rect.x1, c.rect.z1),
            "cell outside the space {:?}",
            c
        );
    }
    for (x, z) in sample_points(layout, seed) {
        let holders: Vec<CellId> = cells
            .iter()
            .filter(|c| contains(&c.rect, x, z))
            .map(|c| c.cell)
            .collect();
        prop_assert_eq!(holders.len(), 1, "({}, {}) is in {:?}", x, z, holders);
        prop_assert_eq!(
            layout.locate(x, z),
            holders[0],
            "locate disagrees at ({}, {})",
            x,
            z
        );
    }
    Ok(())
}

fn apply(layout: &mut Layout, op: &Op, seed: &[(f32, f32)]) -> Result<(), TestCaseError> {
    let cells = layout.cells();
    let lines = layout.lines();
    let before = layout.epoch;
    match op {
        Op::Split { pick, axis_x, app } => {
            let c = &cells[pick % cells.len()];
            let axis = if *axis_x { Axis::X } else { Axis::Z };
            let owners: Vec<(f32, f32, CellId)> = sample_points(layout, seed)
                .into_iter()
                .map(|(x, z)| (x, z, layout.locate(x, z)))
                .collect();
            let (new, _) = layout
                .split(c.cell, axis, AppId(*app))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let r = layout
                .rect(new)
                .ok_or_else(|| TestCaseError::fail("new cell has no rect"))?;
            prop_assert_eq!(r.area(), 0.0, "a new cell starts with zero area");
            prop_assert_eq!(layout.app_of(new), Some(AppId(*app)));
            for (x, z, owner) in owners {
                prop_assert_eq!(layout.locate(x, z), owner, "a split moved ({}, {})", x, z);
            }
            prop_assert!(layout.epoch > before);
        }
        Op::Move { pick, frac } => {
            if lines.is_empty() {
                return Ok(());
            }
            let l = &lines[pick % lines.len()];
            let (a, b) = l.range;
            let to = a + (b - a) * frac;
            let got = layout
                .move_line(l.line, to)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(got >= a && got <= b, "line left its range");
            if got != l.pos {
                prop_assert!(layout.epoch > before);
            }
        }
        Op::Retire { pick } => {
            let c = &cells[pick % cells.len()];
            if cells.len() == 1 {
                prop_assert_eq!(layout.retire(c.cell), Err(LayoutError::LastCell));
                return Ok(());
            }
            let owners: Vec<(f32, f32, CellId)> = sample_points(layout, seed)
                .into_iter()
                .map(|(x, z)| (x, z, layout.locate(x, z)))
                .collect();
            layout
                .retire(c.cell)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(layout.rect(c.cell).is_none(), "retired cell still there");
            for (x, z, owner) in owners {
                let now = layout.locate(x, z);
                if owner == c.cell {
                    // Its area went to a neighbour that existed before.
                    prop_assert!(cells.iter().any(|o| o.cell == now && o.cell != c.cell));
                    let r = layout
                        .rect(now)
                        .ok_or_else(|| TestCaseError::fail("no rect"))?;
                    prop_assert!(
                        r.meets(&c.rect),
                        "area went to a cell that does not touch it"
                    );
                } else {
                    prop_assert_eq!(now, owner, "retiring moved an unrelated point");
                }
            }
            prop_assert!(layout.epoch > before);
        }
        Op::Reassign { pick, app } => {
            let c = &cells[pick % cells.len()];
            layout
                .reassign(c.cell, AppId(*app))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(layout.app_of(c.cell), Some(AppId(*app)));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_point_in_exactly_one_cell_after_any_changes(
        apps in 1usize..9,
        ops in prop::collection::vec(op(), 0..40),
        seed in prop::collection::vec((0.0f32..=1.0, 0.0f32..=1.0), 64),
    ) {
        let ids: Vec<AppId> = (1..=apps as u32).map(AppId).collect();
        let mut layout = Layout::equal(B, &ids).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(layout.cells().len(), apps);
        check(&layout, &seed)?;
        for op in &ops {
            apply(&mut layout, op, &seed)?;
            check(&layout, &seed)?;
            let bytes = postcard::to_stdvec(&layout).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Layout = postcard::from_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, &layout);
        }
    }
}

#[test]
fn equal_layout_gives_equal_areas_to_each_app() {
    let apps: Vec<AppId> = (1..=4).map(AppId).collect();
    let layout = Layout::equal(B, &apps).expect("layout");
    let cells = layout.cells();
    assert_eq!(cells.len(), 4);
    for c in &cells {
        assert!((c.rect.area() - B.area() / 4.0).abs() < 1.0, "{c:?}");
    }
    let owners: std::collections::BTreeSet<AppId> = cells.iter().map(|c| c.app).collect();
    assert_eq!(owners.len(), 4);
}

#[test]
fn cells_meeting_finds_neighbours_within_a_distance() {
    let layout = Layout::equal(B, &[AppId(1), AppId(2)]).expect("layout");
    // One cut at x = 500.
    let near_line = Rect::new(490.0, 100.0, 490.0, 100.0).grow(20.0);
    assert_eq!(layout.cells_meeting(&near_line).len(), 2);
    let far = Rect::new(100.0, 100.0, 100.0, 100.0).grow(20.0);
    assert_eq!(
        layout.cells_meeting(&far),
        vec![layout.locate(100.0, 100.0)]
    );
}

#[test]
fn bad_changes_are_refused() {
    let mut layout = Layout::single(B, AppId(1));
    assert_eq!(layout.retire(CellId(1)), Err(LayoutError::LastCell));
    assert_eq!(
        layout.retire(CellId(9)),
        Err(LayoutError::NoCell(CellId(9)))
    );
    assert_eq!(
        layout.move_line(LineId(1), 3.0),
        Err(LayoutError::NoLine(LineId(1)))
    );
    let (_, line) = layout.split(CellId(1), Axis::X, AppId(2)).expect("split");
    assert!(matches!(
        layout.move_line(line, f32::NAN),
        Err(LayoutError::NotFinite(_))
    ));
    assert_eq!(Layout::equal(B, &[]), Err(LayoutError::NoApps));
}

#[test]
fn a_malformed_layout_from_the_wire_is_named_not_walked() {
    let good = Layout::equal(B, &[AppId(1), AppId(2), AppId(3)]).expect("layout");
    assert_eq!(good.validate(), Ok(()));
    type Fault = Box<dyn Fn(&mut Layout)>;
    let faults: Vec<(&str, Fault)> = vec![
        ("root outside", Box::new(|l| l.root = 99)),
        (
            "child outside",
            Box::new(|l| {
                if let Node::Cut { high, .. } = &mut l.nodes[0] {
                    *high = 42;
                }
            }),
        ),
        (
            "a cycle",
            Box::new(|l| {
                if let Node::Cut { low, .. } = &mut l.nodes[0] {
                    *low = 0;
                }
            }),
        ),
        (
            "an orphan",
            Box::new(|l| {
                l.nodes.push(Node::Leaf {
                    cell: CellId(9),
                    app: AppId(1),
                })
            }),
        ),
        ("a cell id past the counter", Box::new(|l| l.next_cell = 2)),
        (
            "a line outside its rectangle",
            Box::new(|l| {
                if let Node::Cut { pos, .. } = &mut l.nodes[0] {
                    *pos = 1e9;
                }
            }),
        ),
        (
            "bounds not a rectangle",
            Box::new(|l| l.bounds.x1 = f32::NAN),
        ),
    ];
    for (what, fault) in faults {
        let mut bad = good.clone();
        fault(&mut bad);
        assert!(
            matches!(bad.validate(), Err(LayoutError::Malformed(_))),
            "{what}: {:?}",
            bad.validate()
        );
        // Nothing unsound survives decoding, in a message or alone.
        let bytes = crate::frame::encode_body(&bad);
        assert!(
            crate::frame::decode::<Layout>(&bytes).is_err(),
            "{what} decoded"
        );
        let msg = crate::proto::app::AppMsg::Layout {
            layout: bad,
            cells: Vec::new(),
        };
        let bytes = crate::frame::encode_body(&msg);
        assert!(
            crate::frame::decode::<crate::proto::app::AppMsg>(&bytes).is_err(),
            "{what} decoded inside a Layout message"
        );
    }
    let bytes = crate::frame::encode_body(&good);
    assert_eq!(crate::frame::decode::<Layout>(&bytes).ok(), Some(good));
}
