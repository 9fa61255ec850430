#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests may use Tokio directly

//! Steady state allocates nothing per message: send (`SessionRef::send`), receive, and dispatch
//! to a subscription callback, in both directions, over real loopback sockets.
//!
//! A counting global allocator counts every allocation in the process (all threads). After a
//! warm-up (the buffer pool fills its size classes, the runtime sizes its queues), the client
//! sends windows of messages that the server echoes back from its callback; the allocations
//! made while 100,000 messages go each way (200,000 sends, receives and dispatches) must be
//! zero. This is a behaviour test: it times nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{Config, Protocol, Received, Service, SessionRef, Topic};
use tokio::sync::Notify;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates every call to `System`; counting has no effect on the allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The 28-byte borsh message of the performance figures.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
struct Msg {
    id: u32,
    seq: u64,
    payload: [u8; 16],
}
laxnet::message!(Msg = 7);

/// Messages in flight per window (the sender waits for the echoes of a window).
const WINDOW: u64 = 1_000;
const WARMUP: u64 = 20_000;
const MEASURED: u64 = 100_000;

/// Sends `WINDOW` messages numbered from `from`, then waits until their echoes arrived.
async fn window(s: &SessionRef, from: u64, echoed: &AtomicU64, done: &Notify) {
    for seq in from..from + WINDOW {
        s.send(&Msg {
            id: 1,
            seq,
            payload: [0xAB; 16],
        })
        .expect("send");
    }
    while echoed.load(Relaxed) < from + WINDOW {
        done.notified().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_send_receive_dispatch_allocates_nothing() {
    let server = Service::new(Config::default());
    server
        .sub(
            Topic::message::<Msg>(Protocol::Bits),
            |m: &Received<Msg>| {
                m.session.send(&m.msg).expect("echo");
            },
        )
        .expect("sub");
    let acceptor = server
        .accept("127.0.0.1:0", Protocol::Bits)
        .await
        .expect("accept");

    let client = Service::new(Config::default());
    let echoed = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let (e, d) = (echoed.clone(), done.clone());
    client
        .sub(
            Topic::message::<Msg>(Protocol::Bits),
            move |m: &Received<Msg>| {
                // In order, one at a time: the echo of message `seq` is the `seq + 1`-th.
                let n = e.fetch_add(1, Relaxed) + 1;
                assert_eq!(m.msg.seq + 1, n);
                if n % WINDOW == 0 {
                    d.notify_one();
                }
            },
        )
        .expect("sub");
    let session = client
        .connect(&acceptor.local_addr().to_string(), Protocol::Bits)
        .await
        .expect("connect");

    let mut seq = 0;
    while seq < WARMUP {
        window(&session, seq, &echoed, &done).await;
        seq += WINDOW;
    }
    // (status() allocates its snapshot: read it outside the counted window.)
    let pool_before = server.status().pool.allocations + client.status().pool.allocations;
    let before = ALLOCS.load(Relaxed);
    assert!(before > 0, "the counting allocator is not installed");
    while seq < WARMUP + MEASURED {
        window(&session, seq, &echoed, &done).await;
        seq += WINDOW;
    }
    let allocs = ALLOCS.load(Relaxed) - before;
    // The buffer pool's high-water mark may still rise by a block now and then (a sender's
    // queue and the session task's in-flight queue briefly holding one more segment at once
    // than ever before); such a block is retained and reused, so it is not a per-message
    // cost. Everything else must be zero.
    let pool_growth =
        server.status().pool.allocations + client.status().pool.allocations - pool_before;
    let msgs = 2 * MEASURED; // each message is sent, received and dispatched twice (echo)
    println!(
        "{allocs} allocations for {msgs} message deliveries ({:.6} per message), \
         of which {pool_growth} pool growth",
        allocs as f64 / msgs as f64
    );
    assert_eq!(
        allocs - pool_growth,
        0,
        "steady-state send/receive/dispatch allocated {allocs} times for {msgs} messages \
         ({pool_growth} of them pool growth)"
    );
    assert!(
        pool_growth <= 4,
        "the pool kept growing: {pool_growth} new blocks"
    );

    session.close();
    client.shutdown().await;
    server.shutdown().await;
}
