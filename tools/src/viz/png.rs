//! A [`Scene`] as a PNG: its SVG ([`super::svg`]) rendered by `resvg`. The
//! labels are set in Ubuntu Light, a typeface embedded in the binary (from
//! the `epaint_default_fonts` crate) and the only font the renderer knows,
//! so the picture is the same whatever fonts the machine has.

use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

use super::scene::Scene;

/// The fonts the renderer knows: the embedded typeface alone, answering
/// for every generic family (the SVG asks for `sans-serif`).
fn fonts() -> Arc<usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            db.load_font_source(usvg::fontdb::Source::Binary(Arc::new(
                epaint_default_fonts::UBUNTU_LIGHT,
            )));
            let family = db
                .faces()
                .next()
                .and_then(|f| f.families.first())
                .map(|(name, _)| name.clone())
                .unwrap_or_else(|| "Ubuntu".into());
            db.set_sans_serif_family(family.clone());
            db.set_serif_family(family.clone());
            db.set_monospace_family(family.clone());
            db.set_cursive_family(family.clone());
            db.set_fantasy_family(family);
            Arc::new(db)
        })
        .clone()
}

/// The scene as PNG bytes (8-bit RGBA), `px` pixels on its longer side.
pub fn write(s: &Scene, px: u32) -> Result<Vec<u8>, String> {
    let svg = super::svg::write(s, px as f32);
    let fonts = fonts();
    let opt = usvg::Options {
        font_family: fonts.family_name(&usvg::fontdb::Family::SansSerif).into(),
        fontdb: fonts.clone(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(&svg, &opt).map_err(|e| format!("cannot read the SVG: {e}"))?;
    let size = tree.size();
    // The SVG's own size in whole pixels, rounded (it is `px` on the longer
    // side already); the drawing is scaled to fill exactly that.
    let (w, h) = (
        (size.width().round() as u32).max(1),
        (size.height().round() as u32).max(1),
    );
    let mut pixmap =
        tiny_skia::Pixmap::new(w, h).ok_or_else(|| format!("cannot draw {w} × {h} pixels"))?;
    let transform =
        tiny_skia::Transform::from_scale(w as f32 / size.width(), h as f32 / size.height());
    resvg::render(&tree, transform, &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| format!("cannot encode the PNG: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::viz::scene::Shape;

    /// Decodes PNG bytes: width, height and RGBA pixels.
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgba);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
        let i = ((y * img.0 + x) * 4) as usize;
        [img.2[i], img.2[i + 1], img.2[i + 2]]
    }

    /// Pixels in `[x0, x1) × [y0, y1)` darker than 100 on every channel.
    fn ink(img: &(u32, u32, Vec<u8>), x0: u32, y0: u32, x1: u32, y1: u32) -> usize {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| pixel(img, x, y).iter().all(|&c| c < 100))
            .count()
    }

    #[test]
    fn draws_the_scene_at_its_size_with_legible_text() {
        // 200 × 100 metres: a red cell on the left half, a label on the right.
        let scene = Scene {
            x0: 0.0,
            width: 200.0,
            height: 100.0,
            shapes: vec![
                Shape::Cell {
                    cell: 1,
                    app: 2,
                    rect: [0.0, 0.0, 100.0, 100.0],
                    fill: [220, 40, 40],
                },
                Shape::Text {
                    at: [150.0, 60.0],
                    size: 10.0,
                    text: "cellapp 7 · 42%".into(),
                    colour: [20, 20, 30],
                },
            ],
        };
        let img = decode(&write(&scene, 400).unwrap());
        assert_eq!((img.0, img.1), (400, 200));
        // The cell's fill inside it, the white background outside.
        assert_eq!(pixel(&img, 100, 100), [220, 40, 40]);
        assert_eq!(pixel(&img, 390, 10), [255, 255, 255]);
        // The label is drawn with the embedded font: dark pixels where it
        // stands (capitals 20 px high, above the baseline at y = 120), none
        // above or below it.
        let on = ink(&img, 210, 95, 390, 125);
        assert!(on > 200, "{on} dark pixels in the label");
        assert_eq!(ink(&img, 210, 10, 390, 80), 0);
        assert_eq!(ink(&img, 210, 135, 390, 200), 0);
    }
}
