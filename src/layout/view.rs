//! [`SpaceView`]: a space's layout with each cell's latest numbers, as the
//! manager's `/api/spaces/{id}/layout` serves it, the cell view page draws
//! it, `tessera sim` writes it per frame and `tessera viz` renders it.

use super::{CellId, CellView, Layout, LineView, Rect};
use crate::balance::{CellReport, DENSITY_BINS};
use crate::AppId;
use serde::{Deserialize, Serialize};

/// The largest snapshot [`SpaceView::parse`] accepts.
pub const MAX_VIEW_BYTES: usize = 16 << 20;

/// The most density bins per axis a snapshot may have.
pub const MAX_DENSITY_BINS: u32 = 256;

/// Migrations from one cell to another, per second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// The destination cell.
    pub to: CellId,
    /// Reals per second.
    pub per_s: f32,
}

/// Reals counted on a grid over a cell's rectangle, row by row from low z.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Density {
    /// Bins along x.
    pub nx: u32,
    /// Bins along z.
    pub nz: u32,
    /// `nx × nz` counts, x varying fastest; empty if unknown.
    pub counts: Vec<u32>,
}

/// One cell and its latest report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellDetail {
    /// Its id, cellapp and rectangle.
    #[serde(flatten)]
    pub view: CellView,
    /// Share of the tick period its cellapp spends working.
    pub load: f32,
    /// Real entities.
    pub reals: u32,
    /// Ghosts of entities real elsewhere.
    pub ghosts: u32,
    /// Reals with a witness (clients).
    pub witnesses: u32,
    /// Reals arriving per second.
    pub migrations_in: f32,
    /// Reals leaving per second.
    pub migrations_out: f32,
    /// Where the leaving reals go.
    pub flows: Vec<Flow>,
    /// Where its reals stand.
    pub density: Density,
}

/// A space's layout with every cell's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpaceView {
    /// The space.
    pub space: u32,
    /// Bumped by every layout change.
    pub epoch: u64,
    /// The space's bounds.
    pub bounds: Rect,
    /// Every cell.
    pub cells: Vec<CellDetail>,
    /// Every cut line.
    pub lines: Vec<LineView>,
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// Larger than [`MAX_VIEW_BYTES`].
    #[error("layout snapshot is {0} bytes; the limit is {MAX_VIEW_BYTES}")]
    TooLarge(usize),
    /// Not the JSON of a [`SpaceView`].
    #[error("not a layout snapshot: {0}")]
    Json(#[from] serde_json::Error),
    /// Numbers that cannot be drawn.
    #[error("layout snapshot has {0}")]
    Invalid(String),
}

impl SpaceView {
    /// The view of `layout`, each cell's numbers from `report` (its latest
    /// load report, if any) measured over `period_s` seconds.
    pub fn of<'a>(
        space: u32,
        layout: &Layout,
        report: impl Fn(CellId) -> Option<&'a CellReport>,
        period_s: f32,
    ) -> SpaceView {
        let cells = layout.cells();
        let cell_of = |app: AppId| cells.iter().find(|c| c.app == app).map(|c| c.cell);
        let per_s = |n: u32| n as f32 / period_s.max(f32::MIN_POSITIVE);
        let details = cells
            .iter()
            .map(|c| {
                let r = report(c.cell);
                CellDetail {
                    view: c.clone(),
                    load: r.map_or(0.0, |r| r.load),
                    reals: r.map_or(0, |r| r.reals),
                    ghosts: r.map_or(0, |r| r.ghosts),
                    witnesses: r.map_or(0, |r| r.witnesses),
                    migrations_in: r.map_or(0.0, |r| per_s(r.migrations_in)),
                    migrations_out: r.map_or(0.0, |r| per_s(r.migrations_out)),
                    flows: r
                        .map(|r| {
                            r.flows
                                .iter()
                                .filter_map(|&(app, n)| {
                                    cell_of(app).map(|to| Flow {
                                        to,
                                        per_s: per_s(n),
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    // A grid counted over another rectangle (the line has
                    // moved since) would be drawn in the wrong place.
                    density: r
                        .filter(|r| !r.density.is_empty() && r.rect == c.rect)
                        .map(|r| Density {
                            nx: DENSITY_BINS as u32,
                            nz: DENSITY_BINS as u32,
                            counts: r.density.clone(),
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        SpaceView {
            space,
            epoch: layout.epoch,
            bounds: layout.bounds,
            cells: details,
            lines: layout.lines(),
        }
    }

    /// Reads a snapshot (the JSON this type serialises to), refusing one
    /// too large, and one whose rectangles or numbers cannot be drawn.
    pub fn parse(text: &str) -> Result<SpaceView, ViewError> {
        if text.len() > MAX_VIEW_BYTES {
            return Err(ViewError::TooLarge(text.len()));
        }
        let v: SpaceView = serde_json::from_str(text)?;
        let ordered = |r: &Rect| {
            [r.x0, r.z0, r.x1, r.z1].iter().all(|v| v.is_finite()) && r.x0 <= r.x1 && r.z0 <= r.z1
        };
        if !ordered(&v.bounds) || v.bounds.x1 <= v.bounds.x0 || v.bounds.z1 <= v.bounds.z0 {
            return Err(ViewError::Invalid("empty or non-finite bounds".into()));
        }
        let b = v.bounds;
        let inside = |r: &Rect| {
            let slack = (b.x1 - b.x0).max(b.z1 - b.z0) * 1e-3;
            r.x0 >= b.x0 - slack
                && r.z0 >= b.z0 - slack
                && r.x1 <= b.x1 + slack
                && r.z1 <= b.z1 + slack
        };
        for l in &v.lines {
            if !(l.pos.is_finite() && ordered(&l.rect) && inside(&l.rect)) {
                return Err(ViewError::Invalid(format!("a bad line {}", l.line.0)));
            }
        }
        for c in &v.cells {
            if !(ordered(&c.view.rect) && inside(&c.view.rect)) {
                return Err(ViewError::Invalid(format!(
                    "a bad rectangle for cell {}",
                    c.view.cell.0
                )));
            }
            if !c.load.is_finite() || c.load < 0.0 {
                return Err(ViewError::Invalid(format!(
                    "a bad load for cell {}",
                    c.view.cell.0
                )));
            }
            if c.flows
                .iter()
                .any(|f| !(f.per_s.is_finite() && f.per_s >= 0.0))
                || !(c.migrations_in.is_finite() && c.migrations_out.is_finite())
            {
                return Err(ViewError::Invalid(format!(
                    "bad migration rates for cell {}",
                    c.view.cell.0
                )));
            }
            let d = &c.density;
            if d.nx > MAX_DENSITY_BINS
                || d.nz > MAX_DENSITY_BINS
                || (!d.counts.is_empty()
                    && d.counts.len() as u64 != u64::from(d.nx) * u64::from(d.nz))
            {
                return Err(ViewError::Invalid(format!(
                    "a density grid of the wrong size for cell {}",
                    c.view.cell.0
                )));
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_carries_each_cells_report_per_second_and_round_trips() {
        let layout = match Layout::equal(Rect::new(0.0, 0.0, 100.0, 100.0), &[AppId(2), AppId(3)]) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let cells = layout.cells();
        let mut r =
            CellReport::from_points(cells[0].cell, 1, &cells[0].rect, &[(1.0, 1.0, 1.0)], 0.4);
        r.reals = 1;
        r.migrations_out = 4;
        r.flows = vec![(AppId(3), 4), (AppId(99), 1)];
        let v = SpaceView::of(1, &layout, |c| (c == cells[0].cell).then_some(&r), 2.0);
        assert_eq!(v.cells.len(), 2);
        let a = &v.cells[0];
        assert_eq!((a.load, a.reals, a.migrations_out), (0.4, 1, 2.0));
        assert_eq!(
            a.flows,
            vec![Flow {
                to: cells[1].cell,
                per_s: 2.0
            }]
        );
        assert_eq!(a.density.counts.iter().sum::<u32>(), 1);
        assert_eq!(v.cells[1].reals, 0);
        let text = serde_json::to_string(&v).unwrap_or_default();
        assert!(text.contains("\"app\":2") && text.contains("\"rect\""));
        assert_eq!(SpaceView::parse(&text).ok(), Some(v));
    }

    #[test]
    fn bad_snapshots_are_refused_with_the_reason() {
        let bad = [
            ("{", "not a layout snapshot"),
            (
                r#"{"space":1,"epoch":1,"bounds":{"x0":0,"z0":0,"x1":0,"z1":10},"cells":[],"lines":[]}"#,
                "bounds",
            ),
            (
                r#"{"space":1,"epoch":1,"bounds":{"x0":0,"z0":0,"x1":10,"z1":10},"cells":[{"cell":1,"app":2,"rect":{"x0":5,"z0":0,"x1":1,"z1":10},"load":0,"reals":0,"ghosts":0,"witnesses":0,"migrations_in":0,"migrations_out":0,"flows":[],"density":{"nx":0,"nz":0,"counts":[]}}],"lines":[]}"#,
                "rectangle for cell 1",
            ),
            (
                r#"{"space":1,"epoch":1,"bounds":{"x0":0,"z0":0,"x1":10,"z1":10},"cells":[{"cell":1,"app":2,"rect":{"x0":0,"z0":0,"x1":10,"z1":1e30},"load":0,"reals":0,"ghosts":0,"witnesses":0,"migrations_in":0,"migrations_out":0,"flows":[],"density":{"nx":0,"nz":0,"counts":[]}}],"lines":[]}"#,
                "rectangle for cell 1",
            ),
            (
                r#"{"space":1,"epoch":1,"bounds":{"x0":0,"z0":0,"x1":10,"z1":10},"cells":[{"cell":1,"app":2,"rect":{"x0":0,"z0":0,"x1":10,"z1":10},"load":0,"reals":0,"ghosts":0,"witnesses":0,"migrations_in":0,"migrations_out":0,"flows":[{"to":1,"per_s":1e39}],"density":{"nx":0,"nz":0,"counts":[]}}],"lines":[]}"#,
                "migration rates",
            ),
            (
                r#"{"space":1,"epoch":1,"bounds":{"x0":0,"z0":0,"x1":10,"z1":10},"cells":[{"cell":1,"app":2,"rect":{"x0":0,"z0":0,"x1":10,"z1":10},"load":0,"reals":0,"ghosts":0,"witnesses":0,"migrations_in":0,"migrations_out":0,"flows":[],"density":{"nx":65536,"nz":65536,"counts":[]}}],"lines":[]}"#,
                "density grid",
            ),
        ];
        for (text, why) in bad {
            match SpaceView::parse(text) {
                Err(e) => assert!(e.to_string().contains(why), "{e}"),
                Ok(_) => panic!("accepted {text}"),
            }
        }
        let huge = " ".repeat(MAX_VIEW_BYTES + 1);
        assert!(matches!(
            SpaceView::parse(&huge),
            Err(ViewError::TooLarge(_))
        ));
    }
}
