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
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; HEADER_LEN]);
    let mut out = postcard::to_extend(msg, out).unwrap_or_else(|_| vec![0; HEADER_LEN]);
    let len = (out.len() - HEADER_LEN) as u32;
    out[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    out
}

/// The most a frame read asks of its stream at once: the buffer grows by
/// at most this much beyond what has arrived.
#[cfg(feature = "transport")]
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
pub async fn read_frame(
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
}
