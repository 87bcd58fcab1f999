//! A recording of a live world's load, for `tessera sim --replay`: once a
//! second, every real entity's position (and whether a client plays it),
//! the cut lines' positions and how many reals each cell held. The manager
//! writes it while the world runs; the simulator reads it back and replays
//! the entities' tracks under any policy.
//!
//! The file is a header and then one frame per sample, each a little-endian
//! `u32` length and a postcard-encoded [`Sample`]. Positions are quantized
//! to 16 bits per axis across the space (3 cm in a 2 km space) and entity
//! ids delta-coded, so a sample costs about 6 bytes per entity: about 21 KB
//! per entity-hour at one sample a second. Reading checks every length
//! against a limit before it allocates.

use serde::{Deserialize, Serialize};

use crate::layout::Rect;

/// The first bytes of a recording file.
pub const MAGIC: [u8; 8] = *b"TSREC\0\0\x01";
/// The largest sample a reader takes, in bytes.
pub const MAX_SAMPLE_BYTES: usize = 64 << 20;
/// The most entities one sample may hold.
pub const MAX_ENTITIES: usize = 2_000_000;
/// The most cells (and lines) one sample may hold.
pub const MAX_CELLS: usize = 1_024;

/// Why a recording cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// Not a recording, or one of another version.
    #[error("not a Tessera recording (its first bytes are not the recording header)")]
    NotARecording,
    /// The header is cut short or out of bounds.
    #[error("bad header: {0}")]
    Header(String),
    /// A sample is cut short, too large or undecodable.
    #[error("sample {index} (at byte {offset}): {why}")]
    Sample {
        /// Which sample, counting from 0.
        index: usize,
        /// Where it starts in the file.
        offset: usize,
        /// What is wrong.
        why: String,
    },
    /// No sample at all.
    #[error("the recording holds no sample")]
    Empty,
}

/// What a recording says about its world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The space's bounds.
    pub bounds: Rect,
    /// The world's tick rate.
    pub tick_hz: u32,
}

/// One entity in a sample: its id, its position quantized across the
/// space, and whether a client plays it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spot {
    /// The entity.
    pub id: u64,
    /// x, 0 to 65535 across the space.
    pub x: u16,
    /// z, 0 to 65535 across the space.
    pub z: u16,
    /// Whether a client plays it (it has a witness).
    pub client: bool,
}

/// A cell at the moment of a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellCount {
    /// Its rectangle.
    pub rect: Rect,
    /// The reals it reported.
    pub reals: u32,
}

/// The world at one moment.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Sample {
    /// Milliseconds since the recording started.
    pub t_ms: u32,
    /// The cut lines' positions, in the layout's line order.
    pub lines: Vec<f32>,
    /// The cells, in the layout's cell order.
    pub cells: Vec<CellCount>,
    /// Every real, by id.
    pub spots: Vec<Spot>,
}

/// How a sample travels: spots delta-coded by id, the client flag in the
/// delta's lowest bit.
#[derive(Serialize, Deserialize)]
struct Wire {
    t_ms: u32,
    lines: Vec<f32>,
    cells: Vec<CellCount>,
    spots: Vec<(u64, [u8; 4])>,
}

/// A recording read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// The world.
    pub header: Header,
    /// The samples, in time order.
    pub samples: Vec<Sample>,
    /// Where a last sample cut short begins (its writer stopped in the
    /// middle of appending it: the process died or the disk filled); the
    /// whole samples before it are kept. `None` if the file ends cleanly.
    pub torn: Option<usize>,
}

/// Quantizes `v` within `[lo, hi]` to 16 bits.
pub fn quantize(v: f32, lo: f32, hi: f32) -> u16 {
    if hi <= lo || !v.is_finite() {
        return 0;
    }
    (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 65535.0).round() as u16
}

/// The value a quantized `q` stands for within `[lo, hi]`.
pub fn unquantize(q: u16, lo: f32, hi: f32) -> f32 {
    lo + f32::from(q) / 65535.0 * (hi - lo)
}

/// The header's bytes: [`MAGIC`] and the postcard-encoded [`Header`],
/// length-prefixed.
pub fn header_bytes(header: &Header) -> Vec<u8> {
    let body = postcard::to_stdvec(header).unwrap_or_default();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// One sample's bytes, length-prefixed. `spots` need not be sorted.
pub fn sample_bytes(sample: &Sample) -> Vec<u8> {
    let mut spots = sample.spots.clone();
    spots.sort_unstable_by_key(|s| s.id);
    spots.dedup_by_key(|s| s.id);
    let mut last = 0u64;
    let wire = Wire {
        t_ms: sample.t_ms,
        lines: sample.lines.clone(),
        cells: sample.cells.clone(),
        spots: spots
            .iter()
            .map(|s| {
                let delta = s.id - last;
                last = s.id;
                let [x0, x1] = s.x.to_le_bytes();
                let [z0, z1] = s.z.to_le_bytes();
                ((delta << 1) | u64::from(s.client), [x0, x1, z0, z1])
            })
            .collect(),
    };
    let body = postcard::to_stdvec(&wire).unwrap_or_default();
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// The length-prefixed frame at `at`, if the bytes hold one of at most
/// `max` bytes.
fn frame(bytes: &[u8], at: usize, max: usize) -> Result<&[u8], String> {
    let len = bytes.get(at..at + 4).ok_or("cut short in its length")?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > max {
        return Err(format!("{len} bytes, more than the limit of {max}"));
    }
    bytes
        .get(at + 4..at + 4 + len)
        .ok_or_else(|| format!("cut short: {len} bytes announced"))
}

/// Whether the frame at `at` runs past the end of `bytes` without
/// announcing more than `max`: the tail a writer that stopped mid-append
/// leaves.
fn torn_at(bytes: &[u8], at: usize, max: usize) -> bool {
    match bytes.get(at..at + 4) {
        None => true,
        Some(len) => {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            len <= max && at + 4 + len > bytes.len()
        }
    }
}

/// Reads a whole recording. A last sample cut short (the writer stopped
/// mid-append) is left out and noted in [`Recording::torn`]; any other
/// fault refuses the file, naming the sample and its offset.
pub fn read(bytes: &[u8]) -> Result<Recording, RecordingError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(RecordingError::NotARecording);
    }
    let body = frame(bytes, MAGIC.len(), 4_096).map_err(RecordingError::Header)?;
    let header: Header =
        postcard::from_bytes(body).map_err(|e| RecordingError::Header(e.to_string()))?;
    let b = header.bounds;
    if !(b.x0.is_finite()
        && b.z0.is_finite()
        && b.x1 > b.x0
        && b.z1 > b.z0
        && b.x1.is_finite()
        && b.z1.is_finite())
    {
        return Err(RecordingError::Header(format!(
            "bounds {b:?} are not a space"
        )));
    }
    let mut at = MAGIC.len() + 4 + body.len();
    let mut samples: Vec<Sample> = Vec::new();
    let mut torn = None;
    while at < bytes.len() {
        if torn_at(bytes, at, MAX_SAMPLE_BYTES) {
            torn = Some(at);
            break;
        }
        let index = samples.len();
        let bad = |why: String| RecordingError::Sample {
            index,
            offset: at,
            why,
        };
        let body = frame(bytes, at, MAX_SAMPLE_BYTES).map_err(bad)?;
        let wire: Wire = postcard::from_bytes(body).map_err(|e| bad(e.to_string()))?;
        if wire.spots.len() > MAX_ENTITIES
            || wire.cells.len() > MAX_CELLS
            || wire.lines.len() > MAX_CELLS
        {
            return Err(bad(
                "more entities or cells than a recording may hold".into()
            ));
        }
        if samples.last().is_some_and(|s| s.t_ms > wire.t_ms) {
            return Err(bad(format!("its time {} ms goes backwards", wire.t_ms)));
        }
        let mut id = 0u64;
        let mut spots = Vec::with_capacity(wire.spots.len());
        for (delta, [x0, x1, z0, z1]) in wire.spots {
            id = id
                .checked_add(delta >> 1)
                .ok_or_else(|| bad("an entity id overflows".into()))?;
            spots.push(Spot {
                id,
                x: u16::from_le_bytes([x0, x1]),
                z: u16::from_le_bytes([z0, z1]),
                client: delta & 1 == 1,
            });
        }
        samples.push(Sample {
            t_ms: wire.t_ms,
            lines: wire.lines,
            cells: wire.cells,
            spots,
        });
        at += 4 + body.len();
    }
    if samples.is_empty() {
        return Err(RecordingError::Empty);
    }
    Ok(Recording {
        header,
        samples,
        torn,
    })
}

#[cfg(test)]
mod tests;
