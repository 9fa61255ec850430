//! Messages and the "bits" wire format.
//!
//! A message is a plain Rust struct that derives `BorshSerialize`, `BorshDeserialize` and
//! `Debug` and carries a stable id ([`Message::ID`]). On the wire every message is one frame:
//!
//! ```text
//! +----------------+----------------+---------------------+
//! | len: u32 LE    | id: u32 LE     | borsh(message)      |
//! +----------------+----------------+---------------------+
//!                  |<------------- len bytes ------------>|
//! ```
//!
//! `len` counts the id and the body; it is checked against the configured maximum before
//! anything of that size is allocated ([`parse_frame`] is the cheap first phase; borsh the
//! second).

// The frame functions are public only through `bench_api` (feature `bench-internals`).
#![cfg_attr(not(feature = "bench-internals"), allow(unreachable_pub))]

use borsh::{BorshDeserialize, BorshSerialize};

use crate::buffer::SegmentQueue;
use crate::error::{ProtocolViolation, SendError};

/// A typed message: a plain struct with a stable id.
///
/// ```
/// use borsh::{BorshDeserialize, BorshSerialize};
///
/// #[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
/// struct Chat { from: String, text: String }
///
/// impl laxnet::Message for Chat { const ID: u32 = 1; }
/// // or, for several at once: laxnet::message!(Chat = 1);
/// ```
///
/// Ids are the contract between peers: never reuse an id for a different shape. Message types
/// must not be recursive (`Box<Self>`): borsh has no depth limit.
pub trait Message:
    BorshSerialize + BorshDeserialize + std::fmt::Debug + Send + Sync + 'static
{
    /// The stable wire id of this message type.
    const ID: u32;

    /// A readable name for errors and logs (the type name by default).
    fn name() -> &'static str {
        std::any::type_name::<Self>()
    }
}

/// Implements [`Message`] for several types at once: `laxnet::message!(Chat = 1, Join = 2);`
#[macro_export]
macro_rules! message {
    ($($ty:ty = $id:expr),+ $(,)?) => {
        $(impl $crate::Message for $ty { const ID: u32 = $id; })+
    };
}

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Bytes of the frame header: length prefix and message id.
pub const HEADER_BYTES: usize = 8;

/// Serializes `msg` as one frame at the end of `queue`, straight into its segments.
/// On error nothing is left in the queue. Returns the frame's size on the wire.
pub fn encode_frame<T: Message>(
    queue: &mut SegmentQueue,
    msg: &T,
    max_frame: usize,
) -> Result<usize, SendError> {
    // Fast path: the whole frame fits in the room left in the last segment. Serialize straight
    // into that slice (borsh's writes become inlined copies into `&mut [u8]`), then write the
    // header in front of it: no per-field segment bookkeeping, no patching.
    let room = queue.room();
    if let Some((header, body)) = room.split_at_mut_checked(HEADER_BYTES) {
        let mut w = SliceWriter { buf: body, pos: 0 };
        if msg.serialize(&mut w).is_ok() {
            let len = w.pos + (HEADER_BYTES - LEN_BYTES);
            if len <= max_frame {
                header[..LEN_BYTES].copy_from_slice(&(len as u32).to_le_bytes());
                header[LEN_BYTES..].copy_from_slice(&T::ID.to_le_bytes());
                let total = LEN_BYTES + len;
                queue.commit_room(total);
                return Ok(total);
            }
        }
        // Did not fit (or failed, or too large): the general path below redoes it and reports
        // errors; it also truncates away a segment that `room` may have taken.
    }
    let start = queue.reserve(HEADER_BYTES);
    if let Err(e) = msg.serialize(queue) {
        queue.truncate(start);
        return Err(SendError::Encode(e.to_string()));
    }
    let total = queue.len_since(start);
    let len = total - LEN_BYTES;
    if len > max_frame {
        queue.truncate(start);
        return Err(SendError::TooLarge {
            len,
            max: max_frame,
        });
    }
    let mut header = [0u8; HEADER_BYTES];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4..].copy_from_slice(&T::ID.to_le_bytes());
    queue.patch(start, &header);
    Ok(total)
}

/// A `Write` into a fixed slice whose `write_all` inlines to a fixed-size copy when borsh
/// writes a fixed-size field (`&mut [u8]`'s own impl clamps the length, which turns every
/// field into a `memcpy` call). Fails with `WriteZero` when the slice is too short.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl std::io::Write for SliceWriter<'_> {
    #[inline]
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.write_all(data).map(|()| data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        let end = self.pos + data.len();
        match self.buf.get_mut(self.pos..end) {
            Some(dst) => {
                dst.copy_from_slice(data);
                self.pos = end;
                Ok(())
            }
            None => Err(std::io::ErrorKind::WriteZero.into()),
        }
    }

    #[inline]
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The result of looking at the front of the receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// More bytes are needed; the whole frame will be `total` bytes once its header is known.
    Incomplete {
        /// The frame's total size if the header has arrived.
        total: Option<usize>,
    },
    /// A complete frame.
    Frame {
        /// The message id.
        id: u32,
        /// The borsh body.
        body: &'a [u8],
        /// Bytes to consume from the buffer.
        total: usize,
    },
}

/// Phase one of decoding: finds the first frame in `data` without allocating.
/// A length over `max_frame` is a protocol violation, detected from the 4-byte prefix alone.
pub fn parse_frame(data: &[u8], max_frame: usize) -> Result<Parsed<'_>, ProtocolViolation> {
    let Some(prefix) = data.first_chunk::<LEN_BYTES>() else {
        return Ok(Parsed::Incomplete { total: None });
    };
    let len = u32::from_le_bytes(*prefix);
    if len as usize > max_frame {
        return Err(ProtocolViolation::FrameTooLarge {
            len,
            max: u32::try_from(max_frame).unwrap_or(u32::MAX),
        });
    }
    if (len as usize) < HEADER_BYTES - LEN_BYTES {
        return Err(ProtocolViolation::FrameTooShort { len });
    }
    let total = LEN_BYTES + len as usize;
    if data.len() < total {
        return Ok(Parsed::Incomplete { total: Some(total) });
    }
    let id = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    Ok(Parsed::Frame {
        id,
        body: &data[HEADER_BYTES..total],
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::{BufferPool, PoolConfig};
    use std::io::IoSlice;

    #[derive(BorshSerialize, BorshDeserialize, Debug, PartialEq, Clone)]
    struct Ping {
        seq: u64,
        note: String,
    }
    crate::message!(Ping = 7);

    fn drain(q: &SegmentQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 64];
        let n = q.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let pool = BufferPool::new(PoolConfig::default());
        let mut q = SegmentQueue::new(pool, 512);
        let msg = Ping {
            seq: 9,
            note: "hello".into(),
        };
        let n = encode_frame(&mut q, &msg, 1024).unwrap();
        let bytes = drain(&q);
        assert_eq!(bytes.len(), n);
        match parse_frame(&bytes, 1024).unwrap() {
            Parsed::Frame { id, body, total } => {
                assert_eq!(id, 7);
                assert_eq!(total, n);
                assert_eq!(borsh::from_slice::<Ping>(body).unwrap(), msg);
            }
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn frame_spanning_segments_encodes_contiguously() {
        let pool = BufferPool::new(PoolConfig::default());
        let mut q = SegmentQueue::new(pool, 512);
        let msg = Ping {
            seq: 1,
            note: "x".repeat(1500),
        };
        encode_frame(&mut q, &msg, 1 << 20).unwrap();
        let bytes = drain(&q);
        let Parsed::Frame { body, .. } = parse_frame(&bytes, 1 << 20).unwrap() else {
            panic!()
        };
        assert_eq!(borsh::from_slice::<Ping>(body).unwrap(), msg);
    }

    #[test]
    fn too_large_send_leaves_queue_untouched() {
        let pool = BufferPool::new(PoolConfig::default());
        let mut q = SegmentQueue::new(pool, 512);
        encode_frame(
            &mut q,
            &Ping {
                seq: 1,
                note: String::new(),
            },
            64,
        )
        .unwrap();
        let before = drain(&q);
        let err = encode_frame(
            &mut q,
            &Ping {
                seq: 2,
                note: "y".repeat(100),
            },
            64,
        )
        .unwrap_err();
        assert!(
            matches!(err, SendError::TooLarge { max: 64, .. }),
            "{err:?}"
        );
        assert_eq!(drain(&q), before);
    }

    #[test]
    fn oversize_header_rejected_without_body() {
        let data = (u32::MAX).to_le_bytes();
        let err = parse_frame(&data, 1 << 20).unwrap_err();
        assert_eq!(
            err,
            ProtocolViolation::FrameTooLarge {
                len: u32::MAX,
                max: 1 << 20
            }
        );
    }

    #[test]
    fn short_and_partial_frames() {
        assert_eq!(
            parse_frame(&[], 100).unwrap(),
            Parsed::Incomplete { total: None }
        );
        assert_eq!(
            parse_frame(&[1, 0], 100).unwrap(),
            Parsed::Incomplete { total: None }
        );
        assert_eq!(
            parse_frame(&[2, 0, 0, 0, 1], 100).unwrap_err(),
            ProtocolViolation::FrameTooShort { len: 2 }
        );
        assert_eq!(
            parse_frame(&[10, 0, 0, 0, 1, 0], 100).unwrap(),
            Parsed::Incomplete { total: Some(14) }
        );
    }
}
