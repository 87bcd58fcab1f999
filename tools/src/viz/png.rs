//! A [`Scene`] rasterised into a PNG: rectangles, lines with arrowheads and
//! 5 × 7 bitmap text, on an RGB canvas, compressed with zlib.

use super::font;
use super::scene::{Rgb, Scene, Shape};

/// An RGB canvas.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }

    fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.w || y as usize >= self.h {
            return;
        }
        let i = (y as usize * self.w + x as usize) * 3;
        for (px, &new) in self.px[i..i + 3].iter_mut().zip(&c) {
            let old = f32::from(*px);
            *px = (old + (f32::from(new) - old) * alpha).round() as u8;
        }
    }

    fn fill(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, c: Rgb, alpha: f32) {
        // `as` saturates, and the loops are clipped to the canvas.
        let (xa, xb) = (x0.round() as i64, x1.round() as i64);
        let (ya, yb) = (y0.round() as i64, y1.round() as i64);
        for y in ya.max(0)..yb.min(self.h as i64) {
            for x in xa.max(0)..xb.min(self.w as i64) {
                self.blend(x, y, c, alpha);
            }
        }
    }

    fn line(&mut self, a: [f32; 2], b: [f32; 2], width: f32, c: Rgb) {
        let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
        // Bounded by the canvas: a line longer than it (or not finite) is
        // still drawn in finitely many steps.
        let most = 2 * (self.w + self.h);
        let steps = if len.is_finite() {
            ((len * 2.0).ceil().max(1.0) as usize).min(most)
        } else {
            most
        };
        let half = if width.is_finite() {
            (width / 2.0).clamp(0.5, (self.w + self.h) as f32)
        } else {
            0.5
        };
        for i in 0..=steps {
            let t = i as f32 / steps as f32;
            let (x, y) = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t);
            self.fill(x - half, y - half, x + half, y + half, c, 1.0);
        }
    }

    fn triangle(&mut self, p: [[f32; 2]; 3], c: Rgb) {
        // The bounding box, clipped to the canvas.
        let lim = [self.w as i64, self.h as i64];
        let min = |k: usize| {
            (p.iter().map(|q| q[k]).fold(f32::MAX, f32::min).floor() as i64).clamp(0, lim[k])
        };
        let max = |k: usize| {
            (p.iter().map(|q| q[k]).fold(f32::MIN, f32::max).ceil() as i64).clamp(0, lim[k])
        };
        let edge = |a: [f32; 2], b: [f32; 2], x: f32, y: f32| {
            (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])
        };
        for y in min(1)..=max(1) {
            for x in min(0)..=max(0) {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                let e = [
                    edge(p[0], p[1], fx, fy),
                    edge(p[1], p[2], fx, fy),
                    edge(p[2], p[0], fx, fy),
                ];
                if e.iter().all(|v| *v >= 0.0) || e.iter().all(|v| *v <= 0.0) {
                    self.blend(x, y, c, 1.0);
                }
            }
        }
    }

    fn text(&mut self, centre: [f32; 2], size: f32, text: &str, c: Rgb) {
        let k = (size / font::H as f32).round().clamp(1.0, 64.0) as i64;
        let n = text.chars().count() as i64;
        let advance = (font::W as i64 + 1) * k;
        let left = centre[0].round() as i64 - n * advance / 2;
        let top = centre[1].round() as i64 - font::H as i64 * k;
        for (i, ch) in text.chars().enumerate() {
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for (col, b) in bits.chars().enumerate() {
                    if b != '#' {
                        continue;
                    }
                    let x = left + i as i64 * advance + col as i64 * k;
                    let y = top + row as i64 * k;
                    for dy in 0..k {
                        for dx in 0..k {
                            self.blend(x + dx, y + dy, c, 1.0);
                        }
                    }
                }
            }
        }
    }
}

/// The scene as PNG bytes, `px` pixels on its longer side.
pub fn write(s: &Scene, px: u32) -> Vec<u8> {
    let scale = px as f32 / s.width.max(s.height).max(1e-3);
    let (w, h) = (
        ((s.width * scale).round() as usize).max(1),
        ((s.height * scale).round() as usize).max(1),
    );
    let mut c = Canvas::new(w, h);
    let p = |v: [f32; 2]| [(v[0] - s.x0) * scale, v[1] * scale];
    for shape in &s.shapes {
        match shape {
            Shape::Cell { rect, fill, .. } => {
                let [x, y] = p([rect[0], rect[1]]);
                let (rw, rh) = (rect[2] * scale, rect[3] * scale);
                c.fill(x, y, x + rw, y + rh, *fill, 1.0);
                let dark = [40, 40, 40];
                c.line([x, y], [x + rw, y], 1.0, dark);
                c.line([x, y + rh], [x + rw, y + rh], 1.0, dark);
                c.line([x, y], [x, y + rh], 1.0, dark);
                c.line([x + rw, y], [x + rw, y + rh], 1.0, dark);
            }
            Shape::Heat { rect, alpha } => {
                let [x, y] = p([rect[0], rect[1]]);
                c.fill(
                    x,
                    y,
                    x + rect[2] * scale,
                    y + rect[3] * scale,
                    [16, 32, 64],
                    *alpha,
                );
            }
            Shape::Line {
                from,
                to,
                width,
                colour,
                arrow,
            } => {
                let (a, b) = (p(*from), p(*to));
                let wpx = (width * scale).max(1.0);
                c.line(a, b, wpx, *colour);
                if *arrow {
                    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
                    let len = (dx * dx + dy * dy).sqrt().max(1e-3);
                    let (ux, uy) = (dx / len, dy / len);
                    let head = (wpx * 3.0).max(6.0);
                    c.triangle(
                        [
                            [b[0] + ux * head, b[1] + uy * head],
                            [b[0] - uy * head * 0.6, b[1] + ux * head * 0.6],
                            [b[0] + uy * head * 0.6, b[1] - ux * head * 0.6],
                        ],
                        *colour,
                    );
                }
            }
            Shape::Text {
                at,
                size,
                text,
                colour,
            } => c.text(p(*at), size * scale, text, *colour),
        }
    }
    encode(&c)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn encode(c: &Canvas) -> Vec<u8> {
    let mut raw = Vec::with_capacity((c.w * 3 + 1) * c.h);
    for row in c.px.chunks(c.w * 3) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(c.w as u32).to_be_bytes());
    ihdr.extend_from_slice(&(c.h as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6),
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_png_reference() {
        // The CRC of an IEND chunk's type, as in every PNG file.
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }
}
