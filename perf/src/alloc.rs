//! The counting global allocator behind `--idle-sessions`' live heap bytes. It counts only while
//! [`COUNTING`] is on, so a timed run pays one relaxed load per allocation.
//!
//! A global allocator is process-wide by nature: these counters are the one piece of global
//! state in `perf` (everything else travels in [`crate::cli::Opts`] and
//! [`crate::services::Lax`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

struct Counting;

/// While true, every allocation is counted.
pub(crate) static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated and not yet freed while counting.
pub(crate) static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Allocations (and reallocations) made while counting.
pub(crate) static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to `System`; the counters have no effect on the allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_add(l.size(), Relaxed);
            ALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_sub(l.size(), Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LIVE_BYTES.fetch_add(new, Relaxed);
            LIVE_BYTES.fetch_sub(l.size(), Relaxed);
            ALLOCS.fetch_add(1, Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
