//! `tessera viz`: a layout snapshot drawn for reports. The snapshot is a
//! [`SpaceView`] as JSON, read from a file (a `frame-NNNN.json` that
//! `tessera sim` wrote, or a saved `/api/spaces/1/layout`) or fetched from a
//! live manager's admin URL; the drawing is SVG, from one
//! [`scene::Scene`], or that SVG rendered to PNG.

pub mod png;
pub mod scene;
pub mod svg;

use std::io::Read;
use tessera::layout::{SpaceView, ViewError, MAX_VIEW_BYTES};

/// Pixels on the longer side of a drawing.
pub const PX: u32 = 960;

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The URL is not `http://host:port/path`.
    #[error("{0:?} is not an http:// URL (https is not supported)")]
    Url(String),
    /// The server could not be reached or answered badly.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The snapshot itself is bad.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The drawing could not be rendered to PNG.
    #[error("cannot render the PNG: {0}")]
    Render(String),
    /// The output is neither `.svg` nor `.png`.
    #[error("--out must end in .svg or .png, not {0}")]
    Format(String),
    /// The drawing could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads a snapshot from `from`: an `http://` URL or a file path.
pub fn load(from: &str) -> Result<SpaceView, VizError> {
    let text = if from.starts_with("http://") || from.starts_with("https://") {
        fetch(from)?
    } else {
        let mut text = String::new();
        std::fs::File::open(from)
            .and_then(|f| f.take(MAX_VIEW_BYTES as u64 + 1).read_to_string(&mut text))
            .map_err(|source| VizError::File {
                path: from.to_string(),
                source,
            })?;
        text
    };
    Ok(SpaceView::parse(&text)?)
}

/// GETs `url` (plain `http://`, through [`crate::http::request`]) and
/// returns the body of a 200 answer; any other status is an error.
pub fn fetch(url: &str) -> Result<String, VizError> {
    if !url.starts_with("http://") {
        return Err(VizError::Url(url.to_string()));
    }
    let fail = |reason: String| VizError::Fetch {
        url: url.to_string(),
        reason,
    };
    let answer = crate::http::request("GET", url, "").map_err(|e| fail(e.to_string()))?;
    if answer.status != 200 {
        return Err(fail(format!("the server answered {}", answer.status)));
    }
    Ok(answer.body)
}

/// The snapshot as an SVG document.
pub fn svg(v: &SpaceView, title: &str) -> String {
    svg::write(&scene::scene(v, title), PX as f32)
}

/// The snapshot as PNG bytes: its SVG, rendered.
pub fn png(v: &SpaceView, title: &str) -> Result<Vec<u8>, VizError> {
    png::write(&scene::scene(v, title), PX).map_err(VizError::Render)
}

/// Draws the snapshot at `from` into `out`; the format follows `out`'s
/// extension (`.svg` or `.png`).
pub fn render(from: &str, out: &std::path::Path, title: &str) -> Result<(), VizError> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("svg" | "png")) {
        return Err(VizError::Format(out.display().to_string()));
    }
    let view = load(from)?;
    let bytes = if ext.as_deref() == Some("svg") {
        svg(&view, title).into_bytes()
    } else {
        png(&view, title)?
    };
    std::fs::write(out, bytes).map_err(|source| VizError::Write {
        path: out.display().to_string(),
        source,
    })
}
