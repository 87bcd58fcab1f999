//! `tessera viz`: a layout snapshot drawn for reports. The snapshot is a
//! [`SpaceView`] as JSON, read from a file (a `frame-NNNN.json` that
//! `tessera sim` wrote, or a saved `/api/spaces/1/layout`) or fetched from a
//! live manager's admin URL; the drawing is SVG or PNG, both from one
//! [`scene::Scene`].

mod font;
pub mod png;
pub mod scene;
pub mod svg;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
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

/// GETs `url` (plain `http://`) and returns the body of a 200 answer, at
/// most [`MAX_VIEW_BYTES`]. The body ends at its `Content-Length` when the
/// server gives one (some servers keep the connection open after it), or
/// where the server closes.
pub fn fetch(url: &str) -> Result<String, VizError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| VizError::Url(url.to_string()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fail = |reason: String| VizError::Fetch {
        url: url.to_string(),
        reason,
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail(format!("{host} has no address")))?;
    let timeout = Duration::from_secs(10);
    let mut conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(e.to_string()))?;
    let _ = conn.set_read_timeout(Some(timeout));
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| fail(e.to_string()))?;
    let limit = MAX_VIEW_BYTES + 64 * 1024;
    let (mut raw, mut chunk) = (Vec::new(), [0u8; 16 * 1024]);
    let mut head_end = None;
    loop {
        let n = conn.read(&mut chunk).map_err(|e| fail(e.to_string()))?;
        raw.extend_from_slice(&chunk[..n]);
        if head_end.is_none() {
            head_end = raw.windows(4).position(|w| w == b"\r\n\r\n");
        }
        let length = head_end.and_then(|at| content_length(&raw[..at]));
        let done = match (head_end, length) {
            (Some(at), Some(len)) => raw.len() >= at + 4 + len,
            _ => false,
        };
        if n == 0 || done {
            break;
        }
        if raw.len() > limit {
            return Err(fail(format!("the answer is larger than {limit} bytes")));
        }
    }
    let at = head_end.ok_or_else(|| fail("no HTTP header in the answer".into()))?;
    let head = String::from_utf8_lossy(&raw[..at]);
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(fail(format!("the server answered {status:?}")));
    }
    let mut body = raw.split_off(at + 4);
    if let Some(len) = content_length(&raw[..at]) {
        body.truncate(len);
    }
    String::from_utf8(body).map_err(|_| fail("the answer is not UTF-8".into()))
}

/// The `Content-Length` of an HTTP header block, if it has one.
fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

/// The snapshot as an SVG document.
pub fn svg(v: &SpaceView, title: &str) -> String {
    svg::write(&scene::scene(v, title), PX as f32)
}

/// The snapshot as PNG bytes.
pub fn png(v: &SpaceView, title: &str) -> Vec<u8> {
    png::write(&scene::scene(v, title), PX)
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
        png(&view, title)
    };
    std::fs::write(out, bytes).map_err(|source| VizError::Write {
        path: out.display().to_string(),
        source,
    })
}
