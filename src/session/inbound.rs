//! The receive side as a sans-IO state machine: the driver hands it the bytes it read and
//! gets back frames, or a typed reason to close. No socket, no clock, no allocation per frame.
//!
//! Call order: [`Inbound::spare`] → (socket read) → [`Inbound::commit`] → [`Inbound::poll_frame`]
//! until it returns `Ok(None)`, consuming each frame with [`Inbound::consume`] → at end of
//! stream [`Inbound::finish`].

use crate::buffer::{BufferPool, ReadBuffer};
use crate::error::ProtocolViolation;
use crate::message::{Parsed, parse_frame};

/// Smallest spare room offered to a socket read.
const MIN_READ: usize = 512;

/// A complete frame at the front of the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameRef {
    /// Message id.
    pub(crate) id: u32,
    /// Offset and length of the body within [`Inbound::data`].
    pub(crate) body: (usize, usize),
    /// Bytes to consume after handling it.
    pub(crate) total: usize,
}

/// Receive buffer plus frame parser.
pub(crate) struct Inbound {
    buf: ReadBuffer,
    max_frame: usize,
}

impl Inbound {
    /// Reads start at `initial` bytes and adapt up to `max_read` (see [`ReadBuffer`]).
    pub(crate) fn new(
        pool: BufferPool,
        initial: usize,
        max_read: usize,
        max_frame: usize,
    ) -> Inbound {
        Inbound {
            buf: ReadBuffer::new(pool, initial, max_read),
            max_frame,
        }
    }

    /// Room for the next socket read.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        self.buf.spare(MIN_READ)
    }

    /// Room for at least `n` bytes (decrypted payload copied in by the record layer).
    pub(crate) fn spare_for(&mut self, n: usize) -> &mut [u8] {
        self.buf.spare(n.max(MIN_READ))
    }

    /// Records `n` bytes read into [`Inbound::spare`].
    pub(crate) fn commit(&mut self, n: usize) {
        self.buf.commit(n);
    }

    /// Adapts the read size to a socket read of `n` bytes into `offered` bytes of room.
    pub(crate) fn note_read(&mut self, n: usize, offered: usize) {
        self.buf.note_read(n, offered);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the violation that
    /// must close the session. A frame announced larger than the current buffer makes the
    /// buffer grow (through the pool's size classes) only after its length passed the check.
    pub(crate) fn poll_frame(&mut self) -> Result<Option<FrameRef>, ProtocolViolation> {
        match parse_frame(self.buf.data(), self.max_frame)? {
            Parsed::Frame { id, body, total } => {
                let start = total - body.len();
                Ok(Some(FrameRef {
                    id,
                    body: (start, body.len()),
                    total,
                }))
            }
            Parsed::Incomplete { total: Some(total) } => {
                self.buf.reserve_total(total);
                Ok(None)
            }
            Parsed::Incomplete { total: None } => Ok(None),
        }
    }

    /// The body of `frame`.
    pub(crate) fn body(&self, frame: &FrameRef) -> &[u8] {
        &self.buf.data()[frame.body.0..frame.body.0 + frame.body.1]
    }

    /// Drops a handled frame from the buffer; gives a grown buffer back when it empties.
    pub(crate) fn consume(&mut self, frame: &FrameRef) {
        self.buf.consume(frame.total);
        if self.buf.is_empty() {
            self.buf.shrink_if_idle();
        }
    }

    /// End of stream: clean only at a frame boundary.
    pub(crate) fn finish(&self) -> Result<(), ProtocolViolation> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolViolation::TruncatedFrame)
        }
    }

    /// Returns all memory to the pool.
    pub(crate) fn release(&mut self) {
        self.buf.release();
    }

    /// For a session with nothing more to read right now: gives the buffer back to the pool
    /// if it holds nothing, or keeps a partial frame in a block sized for it (see
    /// [`ReadBuffer::release_idle`]). An idle session keeps no read buffer.
    pub(crate) fn release_idle(&mut self) {
        self.buf.release_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::PoolConfig;

    fn frame(id: u32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 4) as u32).to_le_bytes().to_vec();
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    fn feed(
        inb: &mut Inbound,
        mut bytes: &[u8],
        chunk: usize,
    ) -> Result<Vec<(u32, Vec<u8>)>, ProtocolViolation> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let spare = inb.spare();
            let n = chunk.min(spare.len()).min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            inb.commit(n);
            bytes = &bytes[n..];
            while let Some(f) = inb.poll_frame()? {
                out.push((f.id, inb.body(&f).to_vec()));
                inb.consume(&f);
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_split_at_every_byte_boundary() {
        let pool = BufferPool::new(PoolConfig::default());
        let mut stream = frame(1, b"abc");
        stream.extend(frame(2, &[7u8; 3000]));
        stream.extend(frame(3, b""));
        for chunk in [1, 2, 3, 5, 64, 4096] {
            let mut inb = Inbound::new(pool.clone(), 512, 512, 1 << 16);
            let got = feed(&mut inb, &stream, chunk).unwrap();
            assert_eq!(got.len(), 3, "chunk {chunk}");
            assert_eq!(got[1], (2, vec![7u8; 3000]));
            assert!(inb.finish().is_ok());
        }
    }

    #[test]
    fn oversize_length_closes_without_growing() {
        let pool = BufferPool::new(PoolConfig::default());
        let mut inb = Inbound::new(pool.clone(), 512, 512, 1024);
        let err = feed(&mut inb, &frame(1, &[0u8; 2000]), 4096).unwrap_err();
        assert!(matches!(
            err,
            ProtocolViolation::FrameTooLarge {
                len: 2004,
                max: 1024
            }
        ));
        assert!(pool.stats().in_use_bytes <= 4096, "{:?}", pool.stats());
    }

    #[test]
    fn truncated_stream_is_not_clean() {
        let pool = BufferPool::new(PoolConfig::default());
        let mut inb = Inbound::new(pool, 512, 512, 1024);
        let f = frame(1, b"hello");
        feed(&mut inb, &f[..f.len() - 1], 4096).unwrap();
        assert_eq!(inb.finish(), Err(ProtocolViolation::TruncatedFrame));
    }

    #[test]
    fn garbage_never_panics() {
        // A seeded xorshift stream of random bytes: every outcome is a frame or a violation.
        let pool = BufferPool::new(PoolConfig::default());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..257)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut inb = Inbound::new(pool.clone(), 512, 512, 4096);
            let _ = feed(&mut inb, &bytes, 31);
        }
    }
}
