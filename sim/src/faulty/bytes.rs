//! Byte-level socket faults: [`FaultyStream`] wraps one turmoil stream and, driven by the
//! run's recorder, performs short reads and writes, stalls and resets, reports every stream's
//! traffic to the oracle, and on a crash hands the socket to the host's graveyard. An
//! encrypted stream's writes go through its record writer ([`super::records`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use laxnet::runtime::{BoxFuture, Runtime};
use laxnet::{Instant, TurmoilRuntime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::faulty::records::{CtWriter, Sink, SplicePool};
use crate::scenario::IoFaults;
use crate::schedule::{Dir, IoAct};
use crate::state::{Shared, lock};

/// What the streams of one host incarnation share.
pub(super) struct Ctl {
    pub(super) shared: Shared,
    pub(super) host: u16,
    pub(super) io: IoFaults,
    /// Encrypted streams: follow their records.
    pub(super) hpke: bool,
    /// Streams dropped while the host crashes, dropped later in stream order.
    pub(super) graveyard: Mutex<Vec<(u64, turmoil::net::TcpStream)>>,
    /// Recent small records written by this host's streams, for splicing: (stream, record).
    pub(super) pool: SplicePool,
}

pub(super) fn nanos(i: Instant) -> u64 {
    u64::try_from(i.since_origin().as_nanos()).unwrap_or(u64::MAX)
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
    /// No socket faults configured for this role: only account.
    passthrough: bool,
    /// Encrypted streams: the record follower and ciphertext faults of the write side.
    ct: Option<Box<CtWriter>>,
}

impl FaultyStream {
    /// Stream `id` of the host `ctl` belongs to, over `s`; `ct`: the record writer of an
    /// encrypted stream.
    pub(super) fn new(
        s: turmoil::net::TcpStream,
        id: u64,
        rt: Arc<TurmoilRuntime>,
        ctl: Arc<Ctl>,
        ct: Option<Box<CtWriter>>,
    ) -> FaultyStream {
        let passthrough = ctl.io.is_off();
        FaultyStream {
            inner: Some(s),
            id,
            rt,
            ctl,
            read_stall: None,
            write_stall: None,
            reset: false,
            passthrough,
            ct,
        }
    }
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
        match &res {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                // Nothing read into room for something: the end of stream.
                if !got.is_empty() || room > 0 {
                    let now = nanos(this.rt.now());
                    st.read_bytes(this.id, got, now);
                }
            }
            Poll::Ready(Err(e)) => st.stream_error(this.id, e.kind()),
            Poll::Pending => {}
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
        // Bytes the ciphertext faults added go first.
        if let Some(mut ct) = this.ct.take() {
            let r = ct.flush(&mut this.sink(), cx);
            this.ct = Some(ct);
            match r {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    lock(&this.ctl.shared).stream_error(this.id, e.kind());
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
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
        let chunk = &buf[..limit.min(buf.len())];
        let res = match this.ct.take() {
            None => this.inner().poll_write(cx, chunk),
            Some(mut ct) => {
                let r = ct.write(&mut this.sink(), cx, chunk);
                this.ct = Some(ct);
                r
            }
        };
        let mut st = lock(&this.ctl.shared);
        if let Some(IoAct::Short { n }) = act {
            if res.is_pending() {
                let op = st.streams[this.id as usize].wops;
                st.rec.unrecord_io(this.id, Dir::Write, op);
            } else {
                st.edge("short-write");
                st.io_fault(this.id, IoAct::Short { n });
            }
        }
        match &res {
            Poll::Ready(Ok(n)) => st.wrote_bytes(this.id, &buf[..*n]),
            Poll::Ready(Err(e)) => st.stream_error(this.id, e.kind()),
            Poll::Pending => {}
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
        let this = &mut *self;
        if this.reset {
            return Poll::Ready(Err(reset_err()));
        }
        if let Some(mut ct) = this.ct.take() {
            let r = ct.flush(&mut this.sink(), cx);
            this.ct = Some(ct);
            if !matches!(r, Poll::Ready(Ok(()))) {
                return r;
            }
        }
        this.inner().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.reset {
            return Poll::Ready(Err(reset_err()));
        }
        if let Some(mut ct) = this.ct.take() {
            let r = ct.shutdown(&mut this.sink(), cx);
            this.ct = Some(ct);
            if !matches!(r, Poll::Ready(Ok(()))) {
                return r;
            }
        }
        let r = this.inner().poll_shutdown(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            lock(&this.ctl.shared).shut_down(this.id);
        }
        r
    }
}

impl FaultyStream {
    fn inner(&mut self) -> Pin<&mut turmoil::net::TcpStream> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s),
            None => unreachable!("a FaultyStream's stream is only taken when it is dropped"),
        }
    }
    /// What the record writer works on: the socket and this stream's place in the run.
    fn sink(&mut self) -> Sink<'_> {
        match self.inner.as_mut() {
            Some(sock) => Sink {
                sock,
                id: self.id,
                shared: &self.ctl.shared,
                io: &self.ctl.io,
                pool: &self.ctl.pool,
            },
            None => unreachable!("a FaultyStream's stream is only taken when it is dropped"),
        }
    }
}

impl Drop for FaultyStream {
    fn drop(&mut self) {
        let crashing = {
            let mut st = lock(&self.ctl.shared);
            st.check_admission(self.id);
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
