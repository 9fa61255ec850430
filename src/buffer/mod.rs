//! Pooled byte buffers for sessions.
//!
//! * [`BufferPool`] (in `pool`) hands out [`Block`]s: fixed-length byte blocks in power-of-two
//!   size classes ([`PoolConfig`]), shared by all sessions of a service and usable from several
//!   threads. It retains returned blocks for reuse within byte budgets and counts everything in
//!   [`PoolStats`].
//! * [`ReadBuffer`] (in `read`) holds one session's received but unparsed bytes, partial frames
//!   included, in a single block that is compacted or moved to a bigger size class on demand.
//! * [`SegmentQueue`] (in `segment`) holds one session's outgoing bytes in equal-size segments:
//!   messages are serialized straight into it ([`std::io::Write`]), their length prefix is patched
//!   afterwards through a [`Mark`], and it is flushed with vectored writes.
//!
//! # Ownership rule
//!
//! Every [`Block`] returns to the pool it came from when it is dropped (it holds a handle to that
//! pool), whether it is dropped by a buffer that shrinks, a segment that has been sent, a session
//! that is destroyed, or a panic unwinding. There is no other way to give memory back, and no way
//! to leak it short of leaking the owner: once every buffer is dropped,
//! `PoolStats::in_use_blocks` and `in_use_bytes` are 0.
//!
//! All of this is safe Rust without `unsafe`.

// Public only through `bench_api` (feature `bench-internals`); crate-internal otherwise.
#![cfg_attr(not(feature = "bench-internals"), allow(unreachable_pub))]

mod pool;
mod read;
mod segment;

pub use pool::{BufferPool, PoolConfig, PoolStats};
pub use read::ReadBuffer;
pub use segment::SegmentQueue;
