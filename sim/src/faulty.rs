//! [`FaultyRuntime`]: a `laxnet::Runtime` that wraps turmoil's sockets in a fault-injecting
//! `AsyncRead`/`AsyncWrite` adapter.
//!
//! turmoil never splits a write and never fails a read on its own, so the library's partial
//! I/O paths would go untested. Driven by the run's [`Recorder`](crate::schedule::Recorder),
//! the adapter performs short reads and writes, stalls (returns `Pending` and wakes itself
//! later through a timer), and resets (fails with `ConnectionReset`, possibly in the middle of
//! a frame). It also reports every stream's traffic to the oracle: bytes written, frame
//! position, and the time of the last read that returned bytes (the heartbeat clock).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use laxnet::runtime::{BoxFuture, BoxStream, Listener, Runtime};
use laxnet::{Instant, TurmoilRuntime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::scenario::IoFaults;
use crate::schedule::{Dir, IoAct};
use crate::state::{Shared, lock};

/// The fault-injecting runtime of one host incarnation.
pub struct FaultyRuntime {
    inner: Arc<TurmoilRuntime>,
    ctl: Arc<Ctl>,
}

struct Ctl {
    shared: Shared,
    host: u16,
    io: IoFaults,
    /// Streams dropped while the host crashes, dropped later in stream order.
    graveyard: Mutex<Vec<(u64, turmoil::net::TcpStream)>>,
}

/// Makes a crash deterministic: tokio drops a crashed host's tasks in an order that depends
/// on process-global task ids, so the streams those tasks own would send their FINs (and
/// draw their latencies) in an order that differs between runs in one process. While the
/// host is down, dropped streams go to a graveyard instead; this guard, owned by the host's
/// main future (which turmoil drops after every other task of the host, still inside the
/// simulator), closes them in creation order.
pub struct Graveyard(Arc<Ctl>);

impl Drop for Graveyard {
    fn drop(&mut self) {
        let mut dead =
            std::mem::take(&mut *self.0.graveyard.lock().unwrap_or_else(|p| p.into_inner()));
        dead.sort_by_key(|(id, _)| *id);
        for (_, s) in dead {
            drop(s);
        }
    }
}

impl FaultyRuntime {
    /// A runtime for host `host` (inside its turmoil host future), injecting `io` faults.
    pub fn new(shared: Shared, host: u16, seed: u64, io: IoFaults) -> FaultyRuntime {
        FaultyRuntime {
            inner: Arc::new(TurmoilRuntime::new(seed)),
            ctl: Arc::new(Ctl {
                shared,
                host,
                io,
                graveyard: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The crash guard for this host incarnation (see [`Graveyard`]).
    pub fn graveyard(&self) -> Graveyard {
        Graveyard(self.ctl.clone())
    }

    fn wrap(&self, s: turmoil::net::TcpStream, connected: bool) -> io::Result<FaultyStream> {
        let local = s.local_addr()?;
        let peer = s.peer_addr()?;
        let now = nanos(self.inner.now());
        let id = lock(&self.ctl.shared).new_stream(self.ctl.host, connected, local, peer, now);
        Ok(FaultyStream {
            inner: Some(s),
            id,
            rt: self.inner.clone(),
            ctl: self.ctl.clone(),
            read_stall: None,
            write_stall: None,
            reset: false,
            passthrough: self.ctl.io.is_off(),
        })
    }
}

fn nanos(i: Instant) -> u64 {
    u64::try_from(i.since_origin().as_nanos()).unwrap_or(u64::MAX)
}

struct FaultyListener {
    inner: turmoil::net::TcpListener,
    rt: Arc<FaultyRuntime>,
}

impl Listener for FaultyListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, peer) = self.inner.accept().await?;
            let s = self.rt.wrap(s, false)?;
            Ok((Box::new(s) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Runtime for FaultyRuntime {
    fn name(&self) -> &'static str {
        "turmoil+faults"
    }

    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = turmoil::net::TcpListener::bind(addr.to_string()).await?;
            let rt = Arc::new(FaultyRuntime {
                inner: self.inner.clone(),
                ctl: self.ctl.clone(),
            });
            Ok(Box::new(FaultyListener { inner: l, rt }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr.to_string()).await?;
            let peer = s.peer_addr()?;
            let s = self.wrap(s, true)?;
            Ok((Box::new(s) as BoxStream, peer))
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
}

/// A turmoil stream with injected faults.
pub struct FaultyStream {
    /// Always `Some` until dropped.
    inner: Option<turmoil::net::TcpStream>,
    id: u64,
    rt: Arc<TurmoilRuntime>,
    ctl: Arc<Ctl>,
    read_stall: Option<BoxFuture<'static, ()>>,
    write_stall: Option<BoxFuture<'static, ()>>,
    reset: bool,
    /// No faults configured for this role: only account.
    passthrough: bool,
}

fn reset_err() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "injected reset")
}

impl FaultyStream {
    /// Polls a pending stall; true while it lasts.
    fn stalled(slot: &mut Option<BoxFuture<'static, ()>>, cx: &mut Context<'_>) -> bool {
        if let Some(t) = slot.as_mut() {
            if t.as_mut().poll(cx).is_pending() {
                return true;
            }
            *slot = None;
        }
        false
    }

    /// The fault decision for the next poll of `dir` (counts the poll).
    fn decide(&mut self, dir: Dir, room: usize) -> Option<IoAct> {
        let mut st = lock(&self.ctl.shared);
        let t_us = st.now_us;
        let info = &mut st.streams[self.id as usize];
        let op = match dir {
            Dir::Read => {
                info.rops += 1;
                info.rops
            }
            Dir::Write => {
                info.wops += 1;
                info.wops
            }
        };
        if self.passthrough {
            return None;
        }
        st.rec.decide_io(&self.ctl.io, self.id, dir, op, room, t_us)
    }

    fn start_stall(&self, us: u64) -> BoxFuture<'static, ()> {
        self.rt
            .sleep_until(self.rt.now() + Duration::from_micros(us))
    }
}

impl AsyncRead for FaultyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.reset {
            return Poll::Ready(Err(reset_err()));
        }
        if Self::stalled(&mut this.read_stall, cx) {
            return Poll::Pending;
        }
        let room = buf.remaining();
        let act = this.decide(Dir::Read, room);
        let limit = match act {
            Some(IoAct::Reset) => {
                this.reset = true;
                lock(&this.ctl.shared).io_fault(this.id, IoAct::Reset);
                return Poll::Ready(Err(reset_err()));
            }
            Some(IoAct::Stall { us }) => {
                lock(&this.ctl.shared).io_fault(this.id, IoAct::Stall { us });
                let mut t = this.start_stall(us);
                if t.as_mut().poll(cx).is_ready() {
                    // Zero-length stall: go on reading.
                    room
                } else {
                    this.read_stall = Some(t);
                    return Poll::Pending;
                }
            }
            Some(IoAct::Short { n }) => (n as usize).clamp(1, room.max(1)),
            None => room,
        };
        let before = buf.filled().len();
        let res = if limit < room {
            let mut sub = ReadBuf::new(&mut buf.initialize_unfilled()[..limit]);
            let r = this.inner().poll_read(cx, &mut sub);
            let n = sub.filled().len();
            buf.advance(n);
            r
        } else {
            this.inner().poll_read(cx, buf)
        };
        let mut st = lock(&this.ctl.shared);
        if let Some(IoAct::Short { n }) = act {
            if res.is_pending() {
                // No data: the limit had no effect; keep the schedule minimal.
                st.rec.unrecord_last();
            } else {
                st.edge("short-read");
                st.io_fault(this.id, IoAct::Short { n });
            }
        }
        if let Poll::Ready(Ok(())) = res {
            let got = &buf.filled()[before..];
            if !got.is_empty() {
                let now = nanos(this.rt.now());
                let info = &mut st.streams[this.id as usize];
                info.rf.feed(got);
                info.last_read_ns = now;
            }
        }
        res
    }
}

impl AsyncWrite for FaultyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.reset {
            return Poll::Ready(Err(reset_err()));
        }
        if Self::stalled(&mut this.write_stall, cx) {
            return Poll::Pending;
        }
        let act = this.decide(Dir::Write, buf.len());
        let limit = match act {
            Some(IoAct::Reset) => {
                this.reset = true;
                lock(&this.ctl.shared).io_fault(this.id, IoAct::Reset);
                return Poll::Ready(Err(reset_err()));
            }
            Some(IoAct::Stall { us }) => {
                lock(&this.ctl.shared).io_fault(this.id, IoAct::Stall { us });
                let mut t = this.start_stall(us);
                if t.as_mut().poll(cx).is_ready() {
                    buf.len()
                } else {
                    this.write_stall = Some(t);
                    return Poll::Pending;
                }
            }
            Some(IoAct::Short { n }) => (n as usize).clamp(1, buf.len().max(1)),
            None => buf.len(),
        };
        let res = this.inner().poll_write(cx, &buf[..limit.min(buf.len())]);
        let mut st = lock(&this.ctl.shared);
        if let Some(IoAct::Short { n }) = act {
            if res.is_pending() {
                st.rec.unrecord_last();
            } else {
                st.edge("short-write");
                st.io_fault(this.id, IoAct::Short { n });
            }
        }
        if let Poll::Ready(Ok(n)) = res {
            let info = &mut st.streams[this.id as usize];
            info.written += n as u64;
            info.wf.feed(&buf[..n]);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Like turmoil (and tokio's default): one write moves the first non-empty slice.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset {
            return Poll::Ready(Err(reset_err()));
        }
        self.inner().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset {
            return Poll::Ready(Err(reset_err()));
        }
        self.inner().poll_shutdown(cx)
    }
}

impl FaultyStream {
    fn inner(&mut self) -> Pin<&mut turmoil::net::TcpStream> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s),
            None => unreachable!("a FaultyStream's stream is only taken when it is dropped"),
        }
    }
}

impl Drop for FaultyStream {
    fn drop(&mut self) {
        let crashing = {
            let mut st = lock(&self.ctl.shared);
            st.streams[self.id as usize].open = false;
            st.hosts[self.ctl.host as usize].down
        };
        if let (true, Some(s)) = (crashing, self.inner.take()) {
            self.ctl
                .graveyard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((self.id, s));
        }
    }
}
