//! [`ReadBuffer`]: received bytes that have not been parsed yet (partial frames included).
//!
//! The session's read side uses it like this:
//!
//! 1. `spare(min)` gives a writable tail to pass to `poll_read`; `commit(n)` marks the `n` bytes
//!    the read filled as received.
//! 2. Frames are parsed from `data()` and `consume(k)` drops the parsed bytes.
//! 3. For a frame header announcing a body of `N` bytes (already checked against the maximum frame
//!    size by the caller), `reserve_total(4 + N)` grows the buffer through the pool's size classes
//!    so the whole frame fits.
//!
//! The buffer holds at most one [`Block`] from its [`BufferPool`]. It allocates nothing until
//! first used and only grows when asked: it never allocates for a frame's announced length on its
//! own (validating that length is the caller's job).
//!
//! # Memory policy
//!
//! * Consuming everything resets the offsets to the start of the block, which is kept.
//! * When more room is needed, live bytes are first moved to the front of the block (only the
//!   live bytes are copied); only if that is not enough is a bigger block taken from the pool, the
//!   live bytes copied over and the old block returned.
//! * [`ReadBuffer::shrink_if_idle`] returns a block that grew beyond the read size once the
//!   buffer is empty (a single large frame does not pin a large block for the session's life);
//!   an initial-size block is kept because the next read needs it anyway.
//! * [`ReadBuffer::release`] drops the block whatever its size (destroyed or idle sessions); the
//!   next `spare` takes a fresh block of the current read size.
//!
//! # Adaptive read size
//!
//! The block that reads go into starts at the initial class and adapts to the traffic, between
//! the initial size and the maximum given to [`ReadBuffer::new`]: a read that fills the whole
//! tail it was offered doubles the read size; two reads in a row that fill at most a quarter
//! of it halve it again. A bulk stream thus moves to few large reads (one 64 KiB read carries
//! ~1,800 small frames instead of ~110 with 4 KiB), while a request/response session keeps
//! small blocks. The read size picks the block taken when the buffer holds at most an
//! initial block's worth of bytes (copying those few bytes of a partial frame at most), and
//! [`ReadBuffer::release_idle`] gives a large block back when the session waits, so memory
//! follows what is buffered, not the read size.

use std::fmt;

use super::pool::{Block, BufferPool};

/// Received bytes not yet parsed, held in one pooled `Block` (see the module docs).
///
/// Live bytes are `block[start..end]`; `block[end..]` is the spare tail reads go into.
pub struct ReadBuffer {
    block: Option<Block>,
    start: usize,
    end: usize,
    pool: BufferPool,
    initial: usize,
    /// The current read size (see "Adaptive read size"): `initial..=max_read`.
    read_size: usize,
    max_read: usize,
    /// Consecutive reads that filled at most a quarter of the read size.
    small_reads: u8,
}

impl ReadBuffer {
    /// Creates an empty buffer whose first block will be `pool.class_size(initial_class)` bytes;
    /// the read size adapts up to `pool.class_size(max_read)` (not below the initial size).
    /// Allocates nothing until first used.
    pub fn new(pool: BufferPool, initial_class: usize, max_read: usize) -> Self {
        let initial = pool.class_size(initial_class);
        let max_read = pool.class_size(max_read).max(initial);
        Self {
            block: None,
            start: 0,
            end: 0,
            pool,
            initial,
            read_size: initial,
            max_read,
            small_reads: 0,
        }
    }

    /// The size of the block the next read into an empty buffer uses.
    #[cfg(test)]
    pub fn read_size(&self) -> usize {
        self.read_size
    }

    /// Adapts the read size to a socket read that got `n` bytes into a tail of `offered` bytes
    /// (see "Adaptive read size" in the module docs).
    pub fn note_read(&mut self, n: usize, offered: usize) {
        if n >= offered && self.read_size < self.max_read {
            self.read_size = (self.read_size * 2).min(self.max_read);
            self.small_reads = 0;
        } else if n <= self.read_size / 4 && self.read_size > self.initial {
            self.small_reads += 1;
            if self.small_reads >= 2 {
                self.read_size = (self.read_size / 2).max(self.initial);
                self.small_reads = 0;
            }
        } else {
            self.small_reads = 0;
        }
    }

    /// The size of the block taken on first use.
    #[cfg(test)]
    pub fn initial_capacity(&self) -> usize {
        self.initial
    }

    /// Number of received, unconsumed bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether there are no unconsumed bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Length of the current block (0 when the buffer holds none).
    pub fn capacity(&self) -> usize {
        self.block.as_ref().map_or(0, Block::len)
    }

    /// The received, unconsumed bytes.
    ///
    /// Mutable view of the same bytes (records are decrypted in place).
    pub fn data_mut(&mut self) -> &mut [u8] {
        match &mut self.block {
            Some(b) => &mut b[self.start..self.end],
            None => &mut [],
        }
    }

    /// The buffered bytes.
    pub fn data(&self) -> &[u8] {
        match &self.block {
            Some(b) => &b[self.start..self.end],
            None => &[],
        }
    }

    /// The writable tail after the live bytes, at least `min` bytes long — and never empty, even
    /// for `min == 0`, so a read into it that returns 0 always means end of stream.
    ///
    /// Takes a block of the current read size on first use (and, while the buffer holds at
    /// most an initial block's worth of bytes, trades a smaller block for one of that size,
    /// copying those bytes); if the tail is too short, first moves the
    /// live bytes to the front of the block, and if that is not enough either, moves them into a
    /// block of the next class that fits `len() + min`. Returns the whole tail, which may be
    /// longer than `min`.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        let min = min.max(1);
        if self.capacity() < self.read_size && self.len() <= self.initial {
            // Trade up to a block of the read size; at most an initial block's worth of live
            // bytes (a partial frame) is copied, and the old block goes back to the pool.
            self.move_to(self.read_size);
        }
        if self.capacity() - self.end < min {
            let live = self.len();
            let needed = live.saturating_add(min);
            self.make_room(needed);
        }
        let end = self.end;
        match &mut self.block {
            Some(b) => &mut b[end..],
            None => &mut [],
        }
    }

    /// Marks `n` bytes of the tail returned by [`spare`](Self::spare) as received.
    ///
    /// `n` beyond the tail is a caller bug (debug assertion; clamped in release builds).
    pub fn commit(&mut self, n: usize) {
        let room = self.capacity() - self.end;
        debug_assert!(n <= room, "commit({n}) beyond the spare tail ({room})");
        self.end += n.min(room);
    }

    /// Drops the first `n` received bytes (parsed frames). When the buffer becomes empty the
    /// offsets go back to the start of the block; the block itself is kept.
    ///
    /// `n > len()` is a caller bug (debug assertion; clamped in release builds).
    pub fn consume(&mut self, n: usize) {
        let len = self.len();
        debug_assert!(n <= len, "consume({n}) beyond the buffered bytes ({len})");
        self.start += n.min(len);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes sure `total` bytes counted from the first unconsumed byte fit in the block (for a
    /// frame of `total` bytes whose length the caller has already validated), compacting or
    /// moving to the next size class `>= total` as needed. Does nothing if they already fit.
    pub fn reserve_total(&mut self, total: usize) {
        if self.capacity() - self.start < total {
            self.make_room(total);
        }
    }

    /// Makes `block.len() - start >= needed` hold with `start == 0` (compacting or growing).
    /// `needed` must be at least `len()`.
    fn make_room(&mut self, needed: usize) {
        let live = self.len();
        debug_assert!(needed >= live);
        match &mut self.block {
            Some(b) if b.len() >= needed => {
                // Compaction is enough: move only the live bytes to the front.
                b.copy_within(self.start..self.end, 0);
            }
            old => {
                let mut new = self.pool.take(needed.max(self.read_size));
                if let Some(old) = old {
                    new[..live].copy_from_slice(&old[self.start..self.end]);
                }
                // The previous block (if any) goes back to the pool here.
                *old = Some(new);
            }
        }
        self.start = 0;
        self.end = live;
    }

    /// If the buffer is empty and its block grew beyond the read size (for a large frame, or
    /// the read size went down), returns the block to the pool (the next
    /// [`spare`](Self::spare) takes one of the read size). An empty block of the read size is
    /// kept, and a buffer holding a partial frame is left alone.
    ///
    /// Returns whether a block was released.
    pub fn shrink_if_idle(&mut self) -> bool {
        if self.is_empty() && self.capacity() > self.read_size {
            self.block = None;
            true
        } else {
            false
        }
    }

    /// For a session that has nothing more to read right now: an empty buffer gives its block
    /// back to the pool; one holding at most an initial block's worth of bytes (the start of a
    /// frame) in a larger block moves them into an initial-size block and gives the large one
    /// back. A waiting session thus holds memory in proportion to what it has buffered, not to
    /// the read size it reached. More bytes than that (a large frame arriving) keep their
    /// block: it is sized for the frame, which needs it to complete.
    pub fn release_idle(&mut self) {
        if self.is_empty() {
            self.release();
        } else if self.len() <= self.initial && self.capacity() > self.initial {
            self.move_to(self.initial);
        }
    }

    /// Moves the live bytes to the front of a fresh block of `class_size(size)` bytes (which
    /// must hold them); the old block goes back to the pool.
    fn move_to(&mut self, size: usize) {
        let live = self.len();
        debug_assert!(size >= live);
        let mut new = self.pool.take(size);
        if let Some(old) = &self.block {
            new[..live].copy_from_slice(&old[self.start..self.end]);
        }
        self.block = Some(new);
        self.start = 0;
        self.end = live;
    }

    /// Returns the block to the pool whatever its size, discarding any unconsumed bytes (for
    /// destroyed sessions and idle ones that should hold no memory). The buffer stays usable: the
    /// next [`spare`](Self::spare) takes a fresh block of the current read size.
    pub fn release(&mut self) {
        self.block = None;
        self.start = 0;
        self.end = 0;
    }
}

impl fmt::Debug for ReadBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBuffer")
            .field("len", &self.len())
            .field("start", &self.start)
            .field("capacity", &self.capacity())
            .field("initial", &self.initial)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
