//! The picture of a [`SpaceView`] as a list of shapes, in world metres with
//! z flipped so north is up, below a title band. The SVG writer draws this
//! scene, and the PNG is that SVG rendered, so they show the same thing.

use tessera::layout::{Axis, SpaceView};

/// An sRGB colour.
pub type Rgb = [u8; 3];

/// The fill of a cell at `load` (share of the tick): green when idle,
/// through yellow at half to red at the budget and beyond, the same three
/// stops as the cell view page's scale.
pub fn load_colour(load: f32) -> Rgb {
    let t = if load.is_finite() {
        load.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let mix = |a: f32, b: f32, k: f32| (a + (b - a) * k).round() as u8;
    let (green, yellow, red) = (
        [76.0, 175.0, 80.0],
        [255.0, 214.0, 0.0],
        [220.0, 40.0, 40.0],
    );
    let (from, to, k) = if t < 0.5 {
        (green, yellow, t * 2.0)
    } else {
        (yellow, red, (t - 0.5) * 2.0)
    };
    [
        mix(from[0], to[0], k),
        mix(from[1], to[1], k),
        mix(from[2], to[2], k),
    ]
}

/// One thing to draw.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// A cell's rectangle, filled by its load.
    Cell {
        /// Its id.
        cell: u32,
        /// Its cellapp.
        app: u32,
        /// Left, top, width, height.
        rect: [f32; 4],
        /// Fill.
        fill: Rgb,
    },
    /// One bin of a cell's density grid: a dark veil, `alpha` of full.
    Heat {
        /// Left, top, width, height.
        rect: [f32; 4],
        /// Opacity, 0 to 1.
        alpha: f32,
    },
    /// A cut line or a migration arrow.
    Line {
        /// Start and end.
        from: [f32; 2],
        /// End.
        to: [f32; 2],
        /// Width in metres.
        width: f32,
        /// Colour.
        colour: Rgb,
        /// Draw an arrowhead at `to`.
        arrow: bool,
    },
    /// A label, centred on `at` (its baseline at the bottom of the glyphs).
    Text {
        /// Centre of the text's baseline.
        at: [f32; 2],
        /// Height of a capital, in metres.
        size: f32,
        /// What it says.
        text: String,
        /// Colour.
        colour: Rgb,
    },
}

/// A drawing of one space.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// Left edge (the space's min x).
    pub x0: f32,
    /// Width in metres.
    pub width: f32,
    /// Height in metres, the title band included.
    pub height: f32,
    /// What to draw, back to front.
    pub shapes: Vec<Shape>,
}

const INK: Rgb = [20, 20, 30];
const LINE: Rgb = [30, 30, 60];
const FLOW: Rgb = [25, 70, 160];

/// The scene of `v`, titled `title`.
pub fn scene(v: &SpaceView, title: &str) -> Scene {
    let b = v.bounds;
    let (w, h) = ((b.x1 - b.x0).max(1e-3), (b.z1 - b.z0).max(1e-3));
    let band = w.max(h) * 0.06;
    let y = |z: f32| band + (b.z1 - z);
    let mut shapes = Vec::new();
    let heat_max = v
        .cells
        .iter()
        .flat_map(|c| c.density.counts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f32;
    for c in &v.cells {
        let r = c.view.rect;
        shapes.push(Shape::Cell {
            cell: c.view.cell.0,
            app: c.view.app.0,
            rect: [r.x0, y(r.z1), r.x1 - r.x0, r.z1 - r.z0],
            fill: load_colour(c.load),
        });
        let d = &c.density;
        if d.nx > 0 && d.nz > 0 && d.counts.len() as u64 == u64::from(d.nx) * u64::from(d.nz) {
            let (bw, bh) = ((r.x1 - r.x0) / d.nx as f32, (r.z1 - r.z0) / d.nz as f32);
            for (i, &n) in d.counts.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let (ix, iz) = ((i as u32 % d.nx) as f32, (i as u32 / d.nx) as f32);
                shapes.push(Shape::Heat {
                    rect: [r.x0 + ix * bw, y(r.z0 + (iz + 1.0) * bh), bw, bh],
                    alpha: 0.08 + 0.55 * n as f32 / heat_max,
                });
            }
        }
    }
    let unit = w.max(h);
    for l in &v.lines {
        let (from, to) = match l.axis {
            Axis::X => ([l.pos, y(l.rect.z0)], [l.pos, y(l.rect.z1)]),
            Axis::Z => ([l.rect.x0, y(l.pos)], [l.rect.x1, y(l.pos)]),
        };
        shapes.push(Shape::Line {
            from,
            to,
            width: unit * 0.004,
            colour: LINE,
            arrow: false,
        });
    }
    let centre = |r: &tessera::layout::Rect| [(r.x0 + r.x1) / 2.0, y((r.z0 + r.z1) / 2.0)];
    for c in &v.cells {
        for f in &c.flows {
            let Some(dest) = v.cells.iter().find(|d| d.view.cell == f.to) else {
                continue;
            };
            if f.per_s <= 0.0 {
                continue;
            }
            let (a, b2) = (centre(&c.view.rect), centre(&dest.view.rect));
            // Stop short of the destination's centre, where its label is.
            let to = [a[0] + (b2[0] - a[0]) * 0.7, a[1] + (b2[1] - a[1]) * 0.7];
            shapes.push(Shape::Line {
                from: [a[0] + (b2[0] - a[0]) * 0.3, a[1] + (b2[1] - a[1]) * 0.3],
                to,
                width: unit * 0.002 * (1.0 + (1.0 + f.per_s).log2()),
                colour: FLOW,
                arrow: true,
            });
        }
    }
    for c in &v.cells {
        let r = c.view.rect;
        let (cw, ch) = (r.x1 - r.x0, r.z1 - r.z0);
        if cw <= 0.0 || ch <= 0.0 {
            continue;
        }
        let lines = [
            format!("cellapp {}", c.view.app.0),
            format!("{:.0}% · {} reals", c.load * 100.0, c.reals),
        ];
        // As large as fits: a glyph plus its gap is about 1.2 heights wide.
        let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f32;
        let size = (cw.min(ch) * 0.09)
            .min(unit * 0.035)
            .min(cw * 0.9 / (longest * 1.2));
        let [cx, cy] = centre(&r);
        for (k, text) in lines.into_iter().enumerate() {
            shapes.push(Shape::Text {
                at: [cx, cy - size * 0.3 + k as f32 * size * 1.7],
                size,
                text,
                colour: INK,
            });
        }
    }
    shapes.push(Shape::Text {
        at: [b.x0 + w / 2.0, band * 0.7],
        size: band * 0.4,
        text: format!("{title} · space {} · epoch {}", v.space, v.epoch),
        colour: INK,
    });
    Scene {
        x0: b.x0,
        width: w,
        height: h + band,
        shapes,
    }
}
