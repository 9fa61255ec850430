//! Record faults on an encrypted stream's write side: [`CtWriter`] follows the records the
//! library writes after the handshake, reports each to the oracle and, where the scenario
//! asks for it, spoils one (flips a bit, duplicates, reorders, splices in a record of another
//! stream from the host's [`SplicePool`], or drops it), keeping the record headers intact.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use laxnet::wire;
use tokio::io::AsyncWrite;

use crate::scenario::IoFaults;
use crate::schedule::CtAct;
use crate::state::{Shared, lock};

/// Records the splice pool of a host keeps.
const POOL_LEN: usize = 8;
/// Larger records are not kept in the pool.
const POOL_MAX_RECORD: usize = 2048;

/// Recent small records written by a host's streams, for splicing: (stream, record).
pub(super) type SplicePool = Mutex<VecDeque<(u64, Vec<u8>)>>;

/// What the record writer of one stream works on: the socket under it and the stream's
/// place in the run.
pub(super) struct Sink<'a> {
    /// The socket.
    pub(super) sock: &'a mut turmoil::net::TcpStream,
    /// The stream's number.
    pub(super) id: u64,
    /// The run's state.
    pub(super) shared: &'a Shared,
    /// The host's socket faults (the ciphertext fault rates among them).
    pub(super) io: &'a IoFaults,
    /// The host's splice pool.
    pub(super) pool: &'a SplicePool,
}

impl Sink<'_> {
    fn inner(&mut self) -> Pin<&mut turmoil::net::TcpStream> {
        Pin::new(&mut *self.sock)
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
pub(super) struct CtWriter {
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
    /// The writer of a stream whose side of the handshake is `skip` bytes; `faults`: ciphertext
    /// faults may be drawn for it.
    pub(super) fn new(skip: u64, faults: bool) -> CtWriter {
        CtWriter {
            skip,
            hs_left: skip,
            hdr: Vec::new(),
            cur: None,
            rec: 0,
            plain: 0,
            inject: Vec::new(),
            held: None,
            wire: Wire::default(),
            faults,
            bad_idx: None,
        }
    }

    /// Notes bytes that went on the wire.
    fn sent(&mut self, s: &Sink<'_>, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        if let Some((from, end)) = self.wire.feed(b, self.skip, self.bad_idx) {
            lock(s.shared).ct_sent(s.id, from, end);
        }
    }

    /// Sends the injected bytes.
    pub(super) fn flush(&mut self, s: &mut Sink<'_>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
    pub(super) fn shutdown(
        &mut self,
        s: &mut Sink<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(h) = self.held.take() {
            lock(s.shared).ct_shutdown(s.id, false);
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
            lock(s.shared).ct_shutdown(s.id, true);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes (at most the rest of the current record of) `buf` from the library. Returns
    /// how many of its bytes were taken.
    pub(super) fn write(
        &mut self,
        s: &mut Sink<'_>,
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
            if self.hdr.is_empty() {
                lock(s.shared).record_started(s.id);
            }
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
            let pool = s.io.ct_splice > 0.0 && total <= POOL_MAX_RECORD;
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
    fn decide(&mut self, s: &Sink<'_>, len: u64) -> Option<CtAct> {
        let candidates = lock_pool(s.pool)
            .iter()
            .filter(|(st, _)| *st != s.id)
            .count();
        let act = lock(s.shared).decide_ct(s.io, s.id, self.rec, len, self.plain, candidates)?;
        let next = self.wire.started;
        self.bad_idx = Some(match act {
            CtAct::Duplicate => next + 1,
            _ => next,
        });
        if let CtAct::Splice { pick } = act {
            let pool = lock_pool(s.pool);
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
    fn finish_record(&mut self, s: &mut Sink<'_>, cx: &mut Context<'_>) {
        let Some(cur) = self.cur.take() else { return };
        let len = (cur.total - wire::RECORD_HEADER) as u64;
        let payload = len.saturating_sub(wire::EMPTY_RECORD_LEN as u64);
        self.plain += payload;
        self.rec += 1;
        lock(s.shared).record_written(s.id, payload, len == wire::EMPTY_RECORD_LEN as u64);
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
        if s.io.ct_splice > 0.0 && !cap.is_empty() && cap.len() <= POOL_MAX_RECORD {
            let mut pool = lock_pool(s.pool);
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

fn lock_pool(pool: &SplicePool) -> std::sync::MutexGuard<'_, VecDeque<(u64, Vec<u8>)>> {
    pool.lock().unwrap_or_else(|p| p.into_inner())
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
