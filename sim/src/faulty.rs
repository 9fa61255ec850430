//! [`FaultyRuntime`]: a `laxnet::Runtime` that wraps turmoil's sockets in a fault-injecting
//! `AsyncRead`/`AsyncWrite` adapter.
//!
//! turmoil never splits a write and never fails a read on its own, so the library's partial
//! I/O paths would go untested. Driven by the run's [`Recorder`](crate::schedule::Recorder),
//! the adapter performs short reads and writes, stalls (returns `Pending` and wakes itself
//! later through a timer), and resets (fails with `ConnectionReset`, possibly in the middle of
//! a frame). It also reports every stream's traffic to the oracle: bytes written, frame
//! position, and the time of the last read that returned bytes (the heartbeat clock).
//!
//! On encrypted ("bits-hpke") streams the write side also follows the records the library
//! writes after the fixed-size handshake (sizes from `laxnet::wire`) and, where the scenario asks for it,
//! spoils one of them: flips a bit inside it, sends it twice, swaps it with the next one,
//! inserts a record taken from another stream of the same host before it (each host keeps a
//! small pool of recent records), or leaves it out. Record headers stay intact, so the wire
//! is still a sequence of records, and the oracle knows which of them is the first bad one
//! (see [`crate::state::CtMark`]). Every such decision goes through the recorder, keyed by
//! stream and record number.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use laxnet::runtime::{BoxFuture, BoxStream, Listener, Runtime};
use laxnet::{Instant, TurmoilRuntime, wire};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::scenario::IoFaults;
use crate::schedule::{CtAct, Dir, IoAct};
use crate::state::{Shared, lock};

/// Records the splice pool of a host keeps.
const POOL_LEN: usize = 8;
/// Larger records are not kept in the pool.
const POOL_MAX_RECORD: usize = 2048;

/// The fault-injecting runtime of one host incarnation.
pub struct FaultyRuntime {
    inner: Arc<TurmoilRuntime>,
    ctl: Arc<Ctl>,
}

struct Ctl {
    shared: Shared,
    host: u16,
    io: IoFaults,
    /// Encrypted streams: follow their records.
    hpke: bool,
    /// Streams dropped while the host crashes, dropped later in stream order.
    graveyard: Mutex<Vec<(u64, turmoil::net::TcpStream)>>,
    /// Recent small records written by this host's streams, for splicing: (stream, record).
    pool: Mutex<VecDeque<(u64, Vec<u8>)>>,
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
    /// `hpke`: the host's sessions are encrypted.
    pub fn new(shared: Shared, host: u16, seed: u64, io: IoFaults, hpke: bool) -> FaultyRuntime {
        FaultyRuntime {
            inner: Arc::new(TurmoilRuntime::new(seed)),
            ctl: Arc::new(Ctl {
                shared,
                host,
                io,
                hpke,
                graveyard: Mutex::new(Vec::new()),
                pool: Mutex::new(VecDeque::new()),
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
        let (id, client_out) = {
            let mut st = lock(&self.ctl.shared);
            let id = st.new_stream(self.ctl.host, connected, local, peer, now);
            (id, st.client_out())
        };
        let ct = self.ctl.hpke.then(|| {
            let skip = if connected {
                client_out
            } else {
                wire::SERVER_HANDSHAKE as u64
            };
            Box::new(CtWriter {
                skip,
                hs_left: skip,
                hdr: Vec::new(),
                cur: None,
                rec: 0,
                plain: 0,
                inject: Vec::new(),
                held: None,
                wire: Wire::default(),
                faults: self.ctl.io.ciphertext(),
                bad_idx: None,
            })
        });
        Ok(FaultyStream {
            inner: Some(s),
            id,
            rt: self.inner.clone(),
            ctl: self.ctl.clone(),
            read_stall: None,
            write_stall: None,
            reset: false,
            passthrough: self.ctl.io.is_off(),
            ct,
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

    fn fill_secret(&self, out: &mut [u8]) -> io::Result<()> {
        // The host's seeded stream (deterministic: one host incarnation's draws happen in
        // its tasks' order, which the simulation fixes).
        self.inner.fill_secret(out)
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
    /// No socket faults configured for this role: only account.
    passthrough: bool,
    /// Encrypted streams: the record follower and ciphertext faults of the write side.
    ct: Option<Box<CtWriter>>,
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
            let r = ct.flush(this, cx);
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
                let r = ct.write(this, cx, chunk);
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
            let r = ct.flush(this, cx);
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
            let r = ct.shutdown(this, cx);
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

/// Record positions in the bytes a stream actually sent (after the ciphertext faults).
#[derive(Debug, Default)]
struct Wire {
    /// Bytes sent.
    off: u64,
    hdr: [u8; 4],
    have: usize,
    left: u64,
    /// Records started.
    started: u64,
    /// Where the current record started.
    start: u64,
}

impl Wire {
    /// Feeds bytes sent (`skip`: the handshake's length). Returns where wire record `watch`
    /// starts, and ends once its header went out, if these bytes tell.
    fn feed(&mut self, mut b: &[u8], skip: u64, watch: Option<u64>) -> Option<(u64, Option<u64>)> {
        let mut ev = None;
        while !b.is_empty() {
            if self.off < skip {
                let k = ((skip - self.off) as usize).min(b.len());
                self.off += k as u64;
                b = &b[k..];
            } else if self.left > 0 {
                let k = (self.left as usize).min(b.len());
                self.left -= k as u64;
                self.off += k as u64;
                b = &b[k..];
            } else {
                if self.have == 0 {
                    self.start = self.off;
                    if watch == Some(self.started) {
                        ev = Some((self.start, None));
                    }
                    self.started += 1;
                }
                self.hdr[self.have] = b[0];
                self.have += 1;
                self.off += 1;
                b = &b[1..];
                if self.have == wire::RECORD_HEADER {
                    self.have = 0;
                    self.left = u32::from_le_bytes(self.hdr) as u64;
                    if watch == Some(self.started - 1) {
                        let end = self.start + wire::RECORD_HEADER as u64 + self.left;
                        ev = Some((self.start, Some(end)));
                    }
                }
            }
        }
        ev
    }
}

/// The record the library is writing.
struct CurRec {
    /// Its length, header included.
    total: usize,
    /// Bytes of it processed (sent or swallowed).
    done: usize,
    /// Its fault.
    act: Option<CtAct>,
    /// Its original bytes, when something needs them (duplicate, reorder, the pool).
    cap: Option<Vec<u8>>,
}

/// The write side of an encrypted stream: follows the records the library writes, reports
/// them to the oracle and applies the ciphertext faults. It never sends a record header
/// the library did not write, so the wire stays a sequence of whole records.
struct CtWriter {
    /// Handshake bytes the library writes before its first record.
    skip: u64,
    /// Of those, still to come.
    hs_left: u64,
    /// Header bytes of the next record, taken from the library and not yet sent.
    hdr: Vec<u8>,
    /// The record being written, once its header is known.
    cur: Option<CurRec>,
    /// Records started (the library's sealing order).
    rec: u64,
    /// Plaintext bytes in the finished records.
    plain: u64,
    /// Bytes to send before anything more from the library: a duplicate, a held record, a
    /// spliced one.
    inject: Vec<u8>,
    /// A record held back by a reorder, sent after the next one.
    held: Option<Vec<u8>>,
    /// The records as sent.
    wire: Wire,
    /// Faults may be drawn for this stream.
    faults: bool,
    /// The wire index of the first bad record, once a fault is decided.
    bad_idx: Option<u64>,
}

impl CtWriter {
    /// Notes bytes that went on the wire.
    fn sent(&mut self, s: &FaultyStream, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        if let Some((from, end)) = self.wire.feed(b, self.skip, self.bad_idx) {
            lock(&s.ctl.shared).ct_sent(s.id, from, end);
        }
    }

    /// Sends the injected bytes.
    fn flush(&mut self, s: &mut FaultyStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.inject.is_empty() {
            match s.inner().poll_write(cx, &self.inject) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero)));
                }
                Poll::Ready(Ok(n)) => {
                    let all = std::mem::take(&mut self.inject);
                    self.sent(s, &all[..n]);
                    self.inject = all[n..].to_vec();
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Before the end of stream: a held record goes out in order after all (the fault came
    /// to nothing), and a dropped record with nothing after it makes the end of stream
    /// itself the fault.
    fn shutdown(&mut self, s: &mut FaultyStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(h) = self.held.take() {
            lock(&s.ctl.shared).ct_shutdown(s.id, false);
            self.bad_idx = None;
            self.inject.extend_from_slice(&h);
        }
        if !self.hdr.is_empty() {
            // The library stopped inside a record header; never expected.
            let h = std::mem::take(&mut self.hdr);
            self.inject.extend_from_slice(&h);
        }
        match self.flush(s, cx) {
            Poll::Ready(Ok(())) => {}
            r => return r,
        }
        if let Some(p) = self.bad_idx
            && self.wire.started <= p
        {
            lock(&s.ctl.shared).ct_shutdown(s.id, true);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes (at most the rest of the current record of) `buf` from the library. Returns
    /// how many of its bytes were taken.
    fn write(
        &mut self,
        s: &mut FaultyStream,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return s.inner().poll_write(cx, buf);
        }
        if self.hs_left > 0 {
            let m = (self.hs_left as usize).min(buf.len());
            let r = s.inner().poll_write(cx, &buf[..m]);
            if let Poll::Ready(Ok(n)) = r {
                self.hs_left -= n as u64;
                self.sent(s, &buf[..n]);
            }
            return r;
        }
        if self.cur.is_none() {
            let need = wire::RECORD_HEADER - self.hdr.len();
            if buf.len() < need {
                self.hdr.extend_from_slice(buf);
                return Poll::Ready(Ok(buf.len()));
            }
            let mut h = [0u8; 4];
            h[..self.hdr.len()].copy_from_slice(&self.hdr);
            h[self.hdr.len()..].copy_from_slice(&buf[..need]);
            let len = u32::from_le_bytes(h) as u64;
            let total = wire::RECORD_HEADER + len as usize;
            let act = if self.faults && self.bad_idx.is_none() {
                self.decide(s, len)
            } else {
                None
            };
            let pool = s.ctl.io.ct_splice > 0.0 && total <= POOL_MAX_RECORD;
            let keep = pool || matches!(act, Some(CtAct::Duplicate | CtAct::Reorder));
            self.cur = Some(CurRec {
                total,
                done: 0,
                act,
                cap: keep.then(|| Vec::with_capacity(total)),
            });
        }
        match self.flush(s, cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let Some(cur) = self.cur.as_mut() else {
            unreachable!("a record is in progress")
        };
        let pre = self.hdr.len();
        let mut take = buf.len().min(cur.total - cur.done - pre);
        let flip = match cur.act {
            Some(CtAct::Corrupt { bit }) => {
                let body_bits = (cur.total - wire::RECORD_HEADER).max(1) * 8;
                let b = bit as usize % body_bits;
                let at = wire::RECORD_HEADER + b / 8;
                (cur.done..cur.done + pre + take)
                    .contains(&at)
                    .then(|| (at - cur.done, 1u8 << (b % 8)))
            }
            _ => None,
        };
        let swallow = matches!(cur.act, Some(CtAct::Drop | CtAct::Reorder));
        if !swallow {
            let owned = (pre > 0 || flip.is_some()).then(|| {
                let mut v = self.hdr.clone();
                v.extend_from_slice(&buf[..take]);
                if let Some((at, mask)) = flip {
                    v[at] ^= mask;
                }
                v
            });
            let data = owned.as_deref().unwrap_or(&buf[..take]);
            match s.inner().poll_write(cx, data) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(n)) => {
                    if n < data.len() {
                        if owned.is_some() {
                            // turmoil never splits a write; if it did, the rest goes next.
                            self.inject.extend_from_slice(&data[n..]);
                        } else {
                            take = n;
                        }
                    }
                    self.sent(s, &data[..n]);
                }
            }
            let Some(c) = self.cur.as_mut() else {
                unreachable!("a record is in progress")
            };
            if let Some(cap) = c.cap.as_mut() {
                cap.extend_from_slice(&self.hdr);
                cap.extend_from_slice(&buf[..take]);
            }
        } else if let Some(cap) = cur.cap.as_mut() {
            cap.extend_from_slice(&self.hdr);
            cap.extend_from_slice(&buf[..take]);
        }
        self.hdr.clear();
        let Some(cur) = self.cur.as_mut() else {
            unreachable!("a record is in progress")
        };
        cur.done += pre + take;
        if cur.done == cur.total {
            self.finish_record(s, cx);
        }
        Poll::Ready(Ok(take))
    }

    /// Draws the fault for the record starting now, with length field `len`.
    fn decide(&mut self, s: &FaultyStream, len: u64) -> Option<CtAct> {
        let candidates = lock_pool(&s.ctl)
            .iter()
            .filter(|(st, _)| *st != s.id)
            .count();
        let act = lock(&s.ctl.shared)
            .decide_ct(&s.ctl.io, s.id, self.rec, len, self.plain, candidates)?;
        let next = self.wire.started;
        self.bad_idx = Some(match act {
            CtAct::Duplicate => next + 1,
            _ => next,
        });
        if let CtAct::Splice { pick } = act {
            let pool = lock_pool(&s.ctl);
            let others: Vec<&Vec<u8>> = pool
                .iter()
                .filter(|(st, _)| *st != s.id)
                .map(|(_, r)| r)
                .collect();
            let r = others[pick as usize % others.len()].clone();
            drop(pool);
            self.inject.extend_from_slice(&r);
        }
        Some(act)
    }

    /// The library's record is complete.
    fn finish_record(&mut self, s: &mut FaultyStream, cx: &mut Context<'_>) {
        let Some(cur) = self.cur.take() else { return };
        let len = (cur.total - wire::RECORD_HEADER) as u64;
        let payload = len.saturating_sub(wire::EMPTY_RECORD_LEN as u64);
        self.plain += payload;
        self.rec += 1;
        lock(&s.ctl.shared).record_written(s.id, payload, len == wire::EMPTY_RECORD_LEN as u64);
        // The record after a held one is out: now the held one.
        if let Some(h) = self.held.take() {
            self.inject.extend_from_slice(&h);
        }
        let cap = cur.cap.unwrap_or_default();
        match cur.act {
            Some(CtAct::Duplicate) => self.inject.extend_from_slice(&cap),
            Some(CtAct::Reorder) => self.held = Some(cap.clone()),
            // (Reorder never hits the Close record: there is nothing after it.)
            _ => {}
        }
        if s.ctl.io.ct_splice > 0.0 && !cap.is_empty() && cap.len() <= POOL_MAX_RECORD {
            let mut pool = lock_pool(&s.ctl);
            if pool.len() >= POOL_LEN {
                pool.pop_front();
            }
            pool.push_back((s.id, cap));
        }
        // Send what was added right away; if the socket is full it goes before the next
        // write (or the shutdown).
        let _ = self.flush(s, cx);
    }
}

fn lock_pool(ctl: &Ctl) -> std::sync::MutexGuard<'_, VecDeque<(u64, Vec<u8>)>> {
    ctl.pool.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::Wire;

    fn record(len: u32) -> Vec<u8> {
        let mut r = len.to_le_bytes().to_vec();
        r.resize(4 + len as usize, 0xAB);
        r
    }

    #[test]
    fn wire_finds_the_watched_record_across_split_writes() {
        let mut bytes = vec![7u8; 10]; // a 10-byte "handshake"
        for len in [17u32, 30, 20] {
            bytes.extend(record(len));
        }
        // Record 1 starts at 10 + 21 = 31 and ends at 31 + 34 = 65.
        for cut in 1..bytes.len() {
            let mut w = Wire::default();
            let (mut from, mut end) = (None, None);
            for part in [&bytes[..cut], &bytes[cut..]] {
                if let Some((f, e)) = w.feed(part, 10, Some(1)) {
                    from.get_or_insert(f);
                    end = e.or(end);
                }
            }
            assert_eq!((from, end), (Some(31), Some(65)), "cut at {cut}");
            assert_eq!(w.started, 3);
        }
    }
}
