//! [`ChaosRuntime`]: [`laxnet::TokioRuntime`] with a scenario's socket-layer faults injected
//! into its real streams, for `laxsim run --real` (the scenarios on loopback, [`crate::real`]).
//!
//! Every stream draws, per read or write and with the rates of the scenario's [`IoFaults`] for
//! its side, the faults the simulator's [`crate::faulty`] layer makes on turmoil's streams:
//! short reads and writes, stalls (real time, on the runtime's timers), resets (a write reset
//! first writes a prefix of what it was given, so the peer sees the connection end mid-frame).
//! Of the ciphertext faults only corruption is made here (`ct_corrupt`: one bit flipped in a
//! written byte, drawn per write, at most once per stream, after the first 128 bytes so most
//! hit records rather than the handshake); duplicating, reordering, splicing and dropping records need the
//! simulator's record follower and are skipped (see [`crate::real`]). Thread timing is not
//! seeded, so a run is not reproducible: the seed only fixes which faults each stream draws.

#![allow(clippy::disallowed_types)] // tokio::net::TcpStream: this is a runtime backend

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use laxnet::runtime::{BoxFuture, BoxStream, Listener, Runtime};
use laxnet::{Instant, TokioRuntime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::rng::Rng;
use crate::scenario::IoFaults;

/// What the chaos runtime did, summed over its streams.
#[derive(Debug, Default)]
pub struct ChaosCounts {
    /// Streams wrapped.
    pub streams: AtomicU64,
    /// Short reads and writes.
    pub short: AtomicU64,
    /// Stalls.
    pub stalls: AtomicU64,
    /// Resets.
    pub resets: AtomicU64,
    /// Corrupted bytes.
    pub corrupted: AtomicU64,
    /// The client ports of the connections that took a reset or a corrupted byte: faults that
    /// may lose data or cut a graceful end short, so the oracle does not ask for one there.
    pub harmed: Mutex<BTreeSet<u16>>,
}

/// Faults made, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounts {
    /// Short reads and writes.
    pub short: u64,
    /// Stalls.
    pub stalls: u64,
    /// Resets.
    pub resets: u64,
    /// Corrupted bytes.
    pub corrupted: u64,
}

impl FaultCounts {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.short + self.stalls + self.resets + self.corrupted
    }

    /// Adds `o`.
    pub fn add(&mut self, o: &FaultCounts) {
        self.short += o.short;
        self.stalls += o.stalls;
        self.resets += o.resets;
        self.corrupted += o.corrupted;
    }
}

impl ChaosCounts {
    /// The faults made so far.
    pub fn snapshot(&self) -> FaultCounts {
        FaultCounts {
            short: self.short.load(Ordering::Relaxed),
            stalls: self.stalls.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            corrupted: self.corrupted.load(Ordering::Relaxed),
        }
    }
}

/// Tokio sockets with faults (a handle: clones share the stream counter).
#[derive(Clone)]
pub struct ChaosRuntime {
    inner: Arc<TokioRuntime>,
    io: IoFaults,
    seed: u64,
    next: Arc<AtomicU64>,
    counts: Arc<ChaosCounts>,
}

impl ChaosRuntime {
    /// A runtime whose streams make `io`'s faults, drawn from `seed` (and `counts` counts).
    pub fn new(io: IoFaults, seed: u64, counts: Arc<ChaosCounts>) -> ChaosRuntime {
        ChaosRuntime {
            inner: Arc::new(TokioRuntime::new()),
            io,
            seed,
            next: Arc::new(AtomicU64::new(0)),
            counts,
        }
    }

    /// Wraps the stream of the connection whose client end has port `client_port`.
    fn wrap(&self, s: BoxStream, client_port: u16) -> BoxStream {
        if self.io.is_off() && self.io.ct_corrupt == 0.0 {
            return s;
        }
        self.counts.streams.fetch_add(1, Ordering::Relaxed);
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Box::new(ChaosStream {
            inner: s,
            rng: Rng::new(self.seed, 0xC4A0_5000 + n),
            io: self.io.clone(),
            rt: self.inner.clone(),
            counts: self.counts.clone(),
            read_stall: None,
            write_stall: None,
            reset: false,
            reset_next_write: false,
            written: 0,
            corrupted: false,
            port: client_port,
        })
    }
}

struct ChaosListener {
    inner: Box<dyn Listener>,
    rt: ChaosRuntime,
}

impl Listener for ChaosListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, a) = self.inner.accept().await?;
            Ok((self.rt.wrap(s, a.port()), a))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Runtime for ChaosRuntime {
    fn name(&self) -> &'static str {
        "tokio+faults"
    }

    fn bind<'a>(
        &'a self,
        addr: &'a str,
        backlog: u32,
    ) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = self.inner.bind(addr, backlog).await?;
            Ok(Box::new(ChaosListener {
                inner: l,
                rt: self.clone(),
            }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            // As TokioRuntime connects, and the local port, which names the connection.
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let (peer, port) = (s.peer_addr()?, s.local_addr()?.port());
            Ok((self.wrap(Box::new(s), port), peer))
        })
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.inner.sleep_until(deadline)
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.inner.spawn(task)
    }

    fn entropy(&self) -> [u8; 32] {
        self.inner.entropy()
    }

    fn fill_secret(&self, out: &mut [u8]) -> io::Result<()> {
        self.inner.fill_secret(out)
    }
}

struct ChaosStream {
    inner: BoxStream,
    rng: Rng,
    io: IoFaults,
    rt: Arc<TokioRuntime>,
    counts: Arc<ChaosCounts>,
    read_stall: Option<BoxFuture<'static, ()>>,
    write_stall: Option<BoxFuture<'static, ()>>,
    reset: bool,
    /// A write reset wrote its prefix: the next write fails.
    reset_next_write: bool,
    written: u64,
    corrupted: bool,
    /// The client end's port.
    port: u16,
}

/// Bytes a stream writes before its first corruption may be drawn: past the first flight of a
/// handshake, so most corruptions hit records (one in the handshake fails the connect).
const CORRUPT_AFTER: u64 = 128;

fn reset_err() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "injected reset")
}

impl ChaosStream {
    fn stall(&mut self) -> BoxFuture<'static, ()> {
        self.counts.stalls.fetch_add(1, Ordering::Relaxed);
        let [lo, hi] = self.io.stall_ms;
        let ms = self.rng.range(lo, hi.max(lo + 1));
        self.rt
            .sleep_until(self.rt.now() + Duration::from_millis(ms))
    }

    fn harm(&self) {
        self.counts
            .harmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.port);
    }

    fn do_reset(&mut self) -> io::Error {
        self.reset = true;
        self.counts.resets.fetch_add(1, Ordering::Relaxed);
        self.harm();
        reset_err()
    }
}

impl AsyncRead for ChaosStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.reset {
            return Poll::Ready(Err(reset_err()));
        }
        if let Some(st) = me.read_stall.as_mut() {
            if st.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            me.read_stall = None;
        } else if me.rng.chance(me.io.stall_read) {
            let mut st = me.stall();
            if st.as_mut().poll(cx).is_pending() {
                me.read_stall = Some(st);
                return Poll::Pending;
            }
        }
        if me.rng.chance(me.io.reset_read) {
            return Poll::Ready(Err(me.do_reset()));
        }
        if buf.remaining() > 1 && me.rng.chance(me.io.short_read) {
            let want = me.rng.range(1, buf.remaining() as u64) as usize;
            let mut small = ReadBuf::new(&mut buf.initialize_unfilled()[..want]);
            let r = Pin::new(&mut me.inner).poll_read(cx, &mut small);
            let n = small.filled().len();
            buf.advance(n);
            if n > 0 {
                me.counts.short.fetch_add(1, Ordering::Relaxed);
            }
            return r;
        }
        Pin::new(&mut me.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ChaosStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.reset {
            return Poll::Ready(Err(reset_err()));
        }
        if me.reset_next_write {
            return Poll::Ready(Err(me.do_reset()));
        }
        if let Some(st) = me.write_stall.as_mut() {
            if st.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            me.write_stall = None;
        } else if me.rng.chance(me.io.stall_write) {
            let mut st = me.stall();
            if st.as_mut().poll(cx).is_pending() {
                me.write_stall = Some(st);
                return Poll::Pending;
            }
        }
        let mut len = buf.len();
        if me.rng.chance(me.io.reset_write) {
            me.harm();
            if len > 1 {
                // Mid-frame: a prefix goes out, then the connection breaks.
                me.reset_next_write = true;
                len = me.rng.range(1, len as u64) as usize;
            } else {
                return Poll::Ready(Err(me.do_reset()));
            }
        } else if len > 1 && me.rng.chance(me.io.short_write) {
            len = me.rng.range(1, len as u64) as usize;
            me.counts.short.fetch_add(1, Ordering::Relaxed);
        }
        let chunk = &buf[..len];
        if !me.corrupted
            && me.written >= CORRUPT_AFTER
            && !chunk.is_empty()
            && me.rng.chance(me.io.ct_corrupt)
        {
            me.harm();
            let mut copy = chunk.to_vec();
            let at = me.rng.below(copy.len());
            copy[at] ^= 1 << me.rng.below(8);
            let r = Pin::new(&mut me.inner).poll_write(cx, &copy);
            if let Poll::Ready(Ok(n)) = &r
                && *n > at
            {
                me.corrupted = true;
                me.counts.corrupted.fetch_add(1, Ordering::Relaxed);
            }
            // Bytes past `n` were not taken: the next write offers them again, uncorrupted.
            if let Poll::Ready(Ok(n)) = &r {
                me.written += *n as u64;
            }
            return r;
        }
        let r = Pin::new(&mut me.inner).poll_write(cx, chunk);
        if let Poll::Ready(Ok(n)) = &r {
            me.written += *n as u64;
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.reset {
            return Poll::Ready(Err(reset_err()));
        }
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.reset {
            return Poll::Ready(Err(reset_err()));
        }
        Pin::new(&mut me.inner).poll_shutdown(cx)
    }
}
