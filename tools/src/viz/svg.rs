//! A [`Scene`] as an SVG document, in world metres (the viewBox), so each
//! cell's `<rect>` carries its rectangle's own numbers.

use std::fmt::Write;

use super::scene::{Rgb, Scene, Shape};

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The scene as SVG, `px` pixels on its longer side.
pub fn write(s: &Scene, px: f32) -> String {
    let scale = px / s.width.max(s.height);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" viewBox="{} 0 {} {}" font-family="sans-serif">"#,
        s.width * scale,
        s.height * scale,
        s.x0,
        s.width,
        s.height
    );
    let _ = write!(
        out,
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="4" markerHeight="4" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs><rect x="{}" y="0" width="{}" height="{}" fill="white"/>"#,
        s.x0, s.width, s.height
    );
    for shape in &s.shapes {
        match shape {
            Shape::Cell {
                cell,
                app,
                rect: [x, y, w, h],
                fill,
            } => {
                let _ = write!(
                    out,
                    r#"<rect class="cell" data-cell="{cell}" data-app="{app}" x="{x}" y="{y}" width="{w}" height="{h}" fill="{}" stroke="{}" stroke-width="{}"/>"#,
                    hex(*fill),
                    hex([40, 40, 40]),
                    s.width.max(s.height) * 0.002
                );
            }
            Shape::Heat {
                rect: [x, y, w, h],
                alpha,
            } => {
                let _ = write!(
                    out,
                    r##"<rect class="heat" x="{x}" y="{y}" width="{w}" height="{h}" fill="#102040" fill-opacity="{alpha:.3}"/>"##
                );
            }
            Shape::Line {
                from,
                to,
                width,
                colour,
                arrow,
            } => {
                let _ = write!(
                    out,
                    r#"<line class="{}" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{width}"{}/>"#,
                    if *arrow { "flow" } else { "cut-line" },
                    from[0],
                    from[1],
                    to[0],
                    to[1],
                    hex(*colour),
                    if *arrow {
                        r#" marker-end="url(#arrow)""#
                    } else {
                        ""
                    }
                );
            }
            Shape::Text {
                at,
                size,
                text,
                colour,
            } => {
                let _ = write!(
                    out,
                    r#"<text x="{}" y="{}" font-size="{}" text-anchor="middle" fill="{}">{}</text>"#,
                    at[0],
                    at[1],
                    size * 1.4,
                    hex(*colour),
                    escape(text)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}
