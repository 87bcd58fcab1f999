//! Framing for QUIC streams: a 4-byte little-endian length, then a postcard
//! message of that many bytes. Every read is bounded by a maximum frame size
//! that the caller configures, so a peer cannot make us buffer without
//! limit, and a frame's buffer grows only as its bytes arrive, so announcing
//! a large frame reserves nothing.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The default largest frame, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame larger than allowed.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The stream failed.
    #[cfg(feature = "transport")]
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The bytes are not a valid message.
    #[error("undecodable message: {0}")]
    Decode(#[from] postcard::Error),
    /// A message decoded without using all of its frame.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

/// Encodes a message as a frame (length prefix and body), in one buffer:
/// the body is written after a placeholder for its length.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    encode_sized(msg, 64)
}

/// [`encode`] into a buffer that starts with room for `capacity` bytes: a
/// large message whose size is known ahead is written without the buffer
/// growing (and copying itself) on the way.
pub fn encode_sized<T: Serialize>(msg: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity.max(HEADER_LEN));
    out.extend_from_slice(&[0; HEADER_LEN]);
    let mut out = postcard::to_extend(msg, out).unwrap_or_else(|_| vec![0; HEADER_LEN]);
    let len = (out.len() - HEADER_LEN) as u32;
    out[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    out
}

/// The most a frame read asks of its stream at once: the buffer grows by
/// at most this much beyond what has arrived.
const READ_CHUNK: usize = 16 * 1024;

/// Bytes of the length prefix in front of every frame.
pub const HEADER_LEN: usize = 4;

/// Frames bytes that are already an encoded message.
pub fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes a message without a frame (for datagrams and pre-encoded packets).
pub fn encode_body<T: Serialize>(msg: &T) -> Vec<u8> {
    postcard::to_stdvec(msg).unwrap_or_default()
}

/// Decodes one whole message; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(msg)
    } else {
        Err(FrameError::Trailing(rest.len()))
    }
}

/// Reads one frame body into `buf`. Returns `Ok(false)` when the stream ended
/// cleanly between frames.
#[cfg(feature = "transport")]
async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<bool, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match recv.read(&mut len[got..]).await? {
            Some(n) => got += n,
            None if got == 0 => return Ok(false),
            None => return Err(FrameError::Truncated),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // The buffer grows as bytes arrive, never to the announced length
    // ahead of them: announcing a large frame costs the peer the bytes.
    buf.clear();
    while buf.len() < len {
        let start = buf.len();
        let want = (len - start).min(READ_CHUNK);
        buf.resize(start + want, 0);
        match recv.read(&mut buf[start..]).await? {
            Some(n) => buf.truncate(start + n),
            None => return Err(FrameError::Truncated),
        }
    }
    Ok(true)
}

/// Reads and decodes one message; `Ok(None)` on a clean end of stream.
#[cfg(feature = "transport")]
pub async fn read_msg<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
    buf: &mut Vec<u8>,
) -> Result<Option<T>, FrameError> {
    if read_frame(recv, max, buf).await? {
        decode(buf).map(Some)
    } else {
        Ok(None)
    }
}

/// The least room a [`Reader`] reads into at once.
const MIN_ROOM: usize = 4 * 1024;

/// Reads a stream of frames in as few reads as the bytes allow: each read
/// takes whatever the stream holds, and hands back every whole frame it
/// completed at once. A stream of many small frames (a client's enters and
/// leaves, a link's messages) costs a read per batch, not two per frame.
/// Like [`read_frame`], its buffer grows only as bytes arrive: by at most
/// [`READ_CHUNK`] beyond them, never to an announced length ahead of them.
#[derive(Debug)]
pub struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl Reader {
    /// A reader of frames of at most `max` bytes each.
    pub fn new(max: usize) -> Reader {
        Reader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max,
        }
    }

    /// Takes out the whole frames buffered, if any: their range in the
    /// buffer. A header announcing more than the maximum is an error once
    /// the whole frames before it are taken.
    fn take_whole(&mut self) -> Result<Option<std::ops::Range<usize>>, FrameError> {
        let mut at = self.start;
        while self.end - at >= HEADER_LEN {
            let len = announced(&self.buf[at..]);
            if len > self.max {
                if at == self.start {
                    return Err(FrameError::TooLarge { len, max: self.max });
                }
                break;
            }
            if self.end - at - HEADER_LEN < len {
                break;
            }
            at += HEADER_LEN + len;
        }
        if at == self.start {
            return Ok(None);
        }
        let whole = self.start..at;
        self.start = at;
        Ok(Some(whole))
    }

    /// Where the next read goes: the partial frame moved to the front,
    /// and room for the rest of it, up to [`READ_CHUNK`] beyond what has
    /// arrived.
    fn room(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let need = if self.end >= HEADER_LEN {
            HEADER_LEN + announced(&self.buf)
        } else {
            HEADER_LEN
        };
        let want = need.min(self.end + READ_CHUNK).max(MIN_ROOM);
        if want > self.buf.len() {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Feeds bytes as reads would, then takes out the whole frames they
    /// completed.
    #[cfg(test)]
    fn feed(&mut self, mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        loop {
            match self.take_whole() {
                Ok(Some(whole)) => {
                    out.extend(bodies(&self.buf[whole]).map(<[u8]>::to_vec));
                    continue;
                }
                Ok(None) => {}
                // As a stream read: the frames before the fault first.
                Err(_) if !out.is_empty() => return Ok(out),
                Err(e) => return Err(e),
            }
            if bytes.is_empty() {
                return Ok(out);
            }
            let room = self.room();
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            self.end += n;
            bytes = &bytes[n..];
        }
    }

    /// The next whole frames, each with its length prefix (walk them with
    /// [`bodies`]); `Ok(None)` when the stream ended cleanly between frames.
    #[cfg(feature = "transport")]
    pub async fn next_batch(
        &mut self,
        recv: &mut quinn::RecvStream,
    ) -> Result<Option<&[u8]>, FrameError> {
        loop {
            if let Some(whole) = self.take_whole()? {
                return Ok(Some(&self.buf[whole]));
            }
            match recv.read(self.room()).await? {
                Some(n) => self.end += n,
                None if self.start == self.end => return Ok(None),
                None => return Err(FrameError::Truncated),
            }
        }
    }
}

/// The length a frame's header announces (`at` holds at least a header).
fn announced(at: &[u8]) -> usize {
    let mut len = [0u8; HEADER_LEN];
    len.copy_from_slice(&at[..HEADER_LEN]);
    u32::from_le_bytes(len) as usize
}

/// The bodies of the whole frames in `bytes` (as [`Reader::next_batch`]
/// hands them back), in order; a partial frame at the end is left out.
pub fn bodies(mut bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if bytes.len() < HEADER_LEN {
            return None;
        }
        let len = announced(bytes);
        let body = bytes.get(HEADER_LEN..HEADER_LEN.checked_add(len)?)?;
        bytes = &bytes[HEADER_LEN + len..];
        Some(body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_has_le_length_prefix() {
        let f = encode(&(7u8, 300u16));
        assert_eq!(f, vec![3, 0, 0, 0, 7, 0xac, 0x02]);
        assert_eq!(frame_bytes(&[1, 2]), vec![2, 0, 0, 0, 1, 2]);
        // A body longer than the first buffer: the same bytes as framing
        // the body afterwards.
        let long: Vec<u32> = (0..1000).collect();
        assert_eq!(encode(&long), frame_bytes(&encode_body(&long)));
    }

    #[test]
    fn decode_rejects_trailing_and_garbage() {
        let body = encode_body(&5u32);
        assert_eq!(decode::<u32>(&body).ok(), Some(5));
        let mut long = body.clone();
        long.push(0);
        assert!(matches!(decode::<u32>(&long), Err(FrameError::Trailing(1))));
        assert!(matches!(
            decode::<crate::proto::client::ClientMsg>(&[0xff, 0xff, 0xff]),
            Err(FrameError::Decode(_))
        ));
    }

    fn stream_of(bodies: &[Vec<u8>]) -> Vec<u8> {
        bodies.iter().flat_map(|b| frame_bytes(b)).collect()
    }

    proptest::proptest! {
        /// However the stream is cut into reads, the reader hands back
        /// exactly the frames sent, in order.
        #[test]
        fn reader_finds_every_frame_at_any_cut(
            sent in proptest::collection::vec(proptest::collection::vec(0u8.., 0..9000), 0..12),
            cuts in proptest::collection::vec(1usize..7000, 0..40),
        ) {
            let bytes = stream_of(&sent);
            let mut r = Reader::new(DEFAULT_MAX_FRAME);
            let mut got = Vec::new();
            let mut at = 0usize;
            for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
                let to = at.saturating_add(*cut).min(bytes.len());
                got.extend(r.feed(&bytes[at..to]).expect("frames within the limit"));
                at = to;
            }
            proptest::prop_assert_eq!(got, sent);
            proptest::prop_assert_eq!(r.start, r.end);
        }
    }

    #[test]
    fn reader_refuses_a_large_frame_after_the_whole_ones_before_it() {
        let mut r = Reader::new(100);
        let mut bytes = stream_of(&[vec![1, 2], vec![3]]);
        bytes.extend_from_slice(&101u32.to_le_bytes());
        assert_eq!(r.feed(&bytes).ok(), Some(vec![vec![1, 2], vec![3]]));
        assert!(matches!(
            r.feed(&[]),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        ));
    }

    #[test]
    fn reader_grows_only_as_bytes_arrive() {
        let mut r = Reader::new(DEFAULT_MAX_FRAME);
        let mut bytes = (DEFAULT_MAX_FRAME as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[7; 10]);
        assert_eq!(r.feed(&bytes).ok(), Some(vec![]));
        assert!(r.buf.len() <= bytes.len() + READ_CHUNK);
        // The rest arrives: the frame comes out whole.
        let rest = vec![7; DEFAULT_MAX_FRAME - 10];
        assert_eq!(r.feed(&rest).ok(), Some(vec![vec![7; DEFAULT_MAX_FRAME]]));
    }

    #[test]
    fn bodies_leave_out_a_partial_frame() {
        let mut bytes = stream_of(&[vec![1], vec![]]);
        bytes.extend_from_slice(&[5, 0, 0, 0, 9]);
        let got: Vec<&[u8]> = bodies(&bytes).collect();
        assert_eq!(got, vec![&[1u8][..], &[][..]]);
    }
}
