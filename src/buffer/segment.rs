//! [`SegmentQueue`]: outgoing bytes in a queue of equal-size pooled segments.
//!
//! The session's write side serializes messages straight into the queue (it implements
//! [`std::io::Write`], which borsh writes into), patches each message's 4-byte length prefix
//! afterwards, and flushes with vectored writes:
//!
//! ```ignore
//! let at = queue.reserve(4);                     // placeholder for the length prefix
//! if let Err(e) = msg.serialize(&mut queue) {
//!     queue.truncate(at);                        // roll back the half-written message
//!     return Err(e);
//! }
//! let body = queue.len_since(at) - 4;            // checked against the maximum frame size
//! queue.patch(at, &(body as u32).to_le_bytes());
//! // ... later, when the socket is writable:
//! let mut slices = [IoSlice::new(&[]); 64];
//! let n = queue.io_slices(&mut slices);
//! let written = /* poll_write_vectored(&slices[..n]) */;
//! queue.advance(written);
//! ```
//!
//! Segments are taken from the [`BufferPool`] as the queue grows and go back to it as soon as
//! they are fully sent (or rolled back); a drained queue holds no segment at all. Because the
//! pool retains returned blocks, steady-state traffic does not allocate.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};

use super::pool::{Block, BufferPool};

/// A position in a [`SegmentQueue`]'s byte stream, from [`SegmentQueue::mark`] or
/// [`SegmentQueue::reserve`], for [`SegmentQueue::patch`], [`SegmentQueue::len_since`] and
/// [`SegmentQueue::truncate`].
///
/// It is an absolute byte offset in the stream of bytes ever queued (minus rolled-back bytes), so
/// it is not disturbed by segments being added or removed. Contract: a mark is valid until the
/// next [`advance`](SegmentQueue::advance), [`clear`](SegmentQueue::clear), or
/// [`truncate`](SegmentQueue::truncate) to an earlier mark. (It actually keeps working across an
/// `advance` that has not reached it, but the write side must not flush a message before its
/// prefix is patched, so relying on that is pointless.) Using a mark whose bytes are already
/// sent, or that lies beyond the end, is a caller bug: debug builds panic, release builds clamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark(u64);

/// Outgoing bytes in equal-size segments taken from a [`BufferPool`] (see the module docs).
///
/// Invariants: `segs` is empty exactly when `len == 0` (then `head == tail == 0`); otherwise the
/// queued bytes are `segs[0][head..]`, the middle segments in full, and `segs[last][..tail]` (just
/// `segs[0][head..tail]` for a single segment), with `head < seg_size` and `0 < tail <= seg_size`.
pub struct SegmentQueue {
    segs: VecDeque<Block>,
    /// Read offset in the first segment.
    head: usize,
    /// Write offset in the last segment.
    tail: usize,
    /// Queued (unsent) bytes.
    len: usize,
    /// Length of every segment (a pool class size).
    seg_size: usize,
    /// Stream position just past the last queued byte (the front is `end_pos - len`).
    end_pos: u64,
    pool: BufferPool,
}

impl SegmentQueue {
    /// Creates an empty queue of segments of `pool.class_size(seg_size)` bytes. Allocates
    /// nothing until the first byte is queued.
    pub fn new(pool: BufferPool, seg_size: usize) -> Self {
        let seg_size = pool.class_size(seg_size);
        Self {
            segs: VecDeque::new(),
            head: 0,
            tail: 0,
            len: 0,
            seg_size,
            end_pos: 0,
            pool,
        }
    }

    /// Number of queued (unsent) bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of segments currently held.
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.segs.len()
    }

    /// Length of each segment in bytes.
    #[cfg(test)]
    pub fn segment_size(&self) -> usize {
        self.seg_size
    }

    /// Stream position of the first queued byte.
    fn front_pos(&self) -> u64 {
        self.end_pos - self.len as u64
    }

    /// The writable rest of the last segment, taking a new segment if there is none or the last
    /// one is full. Never empty.
    #[inline]
    fn writable_tail(&mut self) -> &mut [u8] {
        if self.segs.is_empty() || self.tail == self.seg_size {
            let seg = self.pool.take(self.seg_size);
            debug_assert_eq!(seg.len(), self.seg_size);
            if self.segs.is_empty() {
                self.head = 0;
            }
            self.segs.push_back(seg);
            self.tail = 0;
        }
        let tail = self.tail;
        let last = self.segs.back_mut().expect("a segment was just ensured");
        &mut last[tail..]
    }

    /// The writable rest of the last segment (taking a fresh segment if there is none or the
    /// last one is full), for a caller that writes a whole frame in place and then calls
    /// [`commit_room`](Self::commit_room). Never empty. If the caller commits nothing, a segment
    /// taken here stays behind empty until the next write or `truncate`/`clear`; callers must
    /// follow up with a write or a `truncate` (as `encode_frame`'s fallback does).
    #[inline]
    pub(crate) fn room(&mut self) -> &mut [u8] {
        self.writable_tail()
    }

    /// Records `n` bytes written into [`room`](Self::room).
    #[inline]
    pub(crate) fn commit_room(&mut self, n: usize) {
        debug_assert!(self.tail + n <= self.seg_size);
        self.commit_tail(n);
    }

    /// Records `n` bytes written into [`writable_tail`](Self::writable_tail).
    #[inline]
    fn commit_tail(&mut self, n: usize) {
        self.tail += n;
        self.len += n;
        self.end_pos += n as u64;
    }

    /// Appends `bytes`, spanning into new segments as needed.
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let dst = self.writable_tail();
            let n = dst.len().min(bytes.len());
            dst[..n].copy_from_slice(&bytes[..n]);
            self.commit_tail(n);
            bytes = &bytes[n..];
        }
    }

    /// The current end of the queue: the position the next pushed byte will have.
    pub fn mark(&self) -> Mark {
        Mark(self.end_pos)
    }

    /// Appends `n` zero bytes (for a length prefix to [`patch`](Self::patch) later) and returns
    /// their position. They may span two or more segments.
    pub fn reserve(&mut self, mut n: usize) -> Mark {
        let at = self.mark();
        while n > 0 {
            let dst = self.writable_tail();
            let k = dst.len().min(n);
            // Pooled segments may hold stale bytes: really write the zeros.
            dst[..k].fill(0);
            self.commit_tail(k);
            n -= k;
        }
        at
    }

    /// Number of bytes queued from `m` to the end (e.g. a message's length including its
    /// reserved prefix).
    pub fn len_since(&self, m: Mark) -> usize {
        debug_assert!(m.0 <= self.end_pos, "mark {m:?} beyond the end");
        usize::try_from(self.end_pos.saturating_sub(m.0)).unwrap_or(usize::MAX)
    }

    /// Segment index and offset in it of queued byte number `off` (counted from the front).
    fn locate(&self, off: usize) -> (usize, usize) {
        let phys = self.head + off;
        (phys / self.seg_size, phys % self.seg_size)
    }

    /// Overwrites the queued bytes starting at `at` with `bytes` (which may cross segment
    /// boundaries). The range must lie within the queued bytes; outside it is a caller bug (debug
    /// assertion; in release builds only the part inside the queue is written).
    pub fn patch(&mut self, at: Mark, bytes: &[u8]) {
        let front = self.front_pos();
        debug_assert!(
            at.0 >= front && at.0.saturating_add(bytes.len() as u64) <= self.end_pos,
            "patch of {} bytes at {at:?} outside the queued range {front}..{}",
            bytes.len(),
            self.end_pos
        );
        let (mut bytes, mut off) = if at.0 < front {
            let skip = usize::try_from(front - at.0).unwrap_or(usize::MAX);
            (bytes.get(skip..).unwrap_or(&[]), 0)
        } else {
            (bytes, usize::try_from(at.0 - front).unwrap_or(usize::MAX))
        };
        let room = self.len.saturating_sub(off);
        bytes = &bytes[..bytes.len().min(room)];
        while !bytes.is_empty() {
            let (idx, seg_off) = self.locate(off);
            let seg = &mut self.segs[idx];
            let n = (seg.len() - seg_off).min(bytes.len());
            seg[seg_off..seg_off + n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            off += n;
        }
    }

    /// Rolls back everything queued after `m` (e.g. a message whose serialization failed half
    /// way), returning segments that become unused to the pool. Marks after `m` become invalid.
    ///
    /// A mark beyond the end is a caller bug (debug assertion; ignored in release builds); a mark
    /// before the front (bytes already sent) likewise (rolls back all queued bytes in release).
    pub fn truncate(&mut self, m: Mark) {
        let front = self.front_pos();
        debug_assert!(
            (front..=self.end_pos).contains(&m.0),
            "truncate to {m:?} outside the queued range {front}..={}",
            self.end_pos
        );
        if m.0 >= self.end_pos {
            return;
        }
        let new_len = usize::try_from(m.0.saturating_sub(front)).unwrap_or(usize::MAX);
        let removed = self.len - new_len;
        self.end_pos -= removed as u64;
        self.len = new_len;
        if new_len == 0 {
            self.segs.clear();
            self.head = 0;
            self.tail = 0;
            return;
        }
        // Keep the segments holding bytes up to `head + new_len`; the last one ends mid-way or
        // exactly at its end (tail == seg_size).
        let phys_end = self.head + new_len;
        let keep = phys_end.div_ceil(self.seg_size);
        self.segs.truncate(keep);
        self.tail = phys_end - (keep - 1) * self.seg_size;
    }

    /// Fills `out` with up to `out.len()` slices covering the queued bytes in order and returns
    /// how many it filled (0 only if the queue is empty or `out` is).
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slot, chunk) in out.iter_mut().zip(self.chunks()) {
            *slot = IoSlice::new(chunk);
            filled += 1;
        }
        filled
    }

    /// The queued bytes as one non-empty slice per segment, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let last = self.segs.len().saturating_sub(1);
        self.segs.iter().enumerate().map(move |(i, seg)| {
            let start = if i == 0 { self.head } else { 0 };
            let end = if i == last { self.tail } else { seg.len() };
            &seg[start..end]
        })
    }

    /// Drops the first `n` queued bytes after a (possibly partial) write of `n` bytes, returning
    /// fully sent segments to the pool. A drained queue returns all its segments (it holds no
    /// memory while idle; the pool retains them, so refilling it does not allocate).
    ///
    /// `n > len()` is a caller bug (debug assertion; clamped in release builds).
    pub fn advance(&mut self, n: usize) {
        debug_assert!(
            n <= self.len,
            "advance({n}) beyond the queued bytes ({})",
            self.len
        );
        if n >= self.len {
            self.clear();
            return;
        }
        self.len -= n;
        self.head += n;
        while self.head >= self.seg_size {
            self.segs.pop_front();
            self.head -= self.seg_size;
        }
    }

    /// Discards all queued bytes and returns every segment to the pool. Outstanding marks become
    /// invalid.
    pub fn clear(&mut self) {
        self.segs.clear();
        self.head = 0;
        self.tail = 0;
        self.len = 0;
    }
}

impl io::Write for SegmentQueue {
    /// Queues all of `buf` (never fails, never short).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.push(buf);
        Ok(())
    }

    /// Does nothing: bytes are sent by the session's flush via [`SegmentQueue::io_slices`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for SegmentQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentQueue")
            .field("len", &self.len)
            .field("segments", &self.segs.len())
            .field("seg_size", &self.seg_size)
            .field("head", &self.head)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
