//! Handshake admission on encrypted servers: a connection is refused only when the
//! handshakes in progress (overall or from its source) are at their limit with none stalled
//! to evict, or the service is full; and a refusal says why (it never looks like a reset).

use laxnet::wire;

use crate::reasons::Cause;
use crate::state::State;

impl State {
    /// Handshake admission on an encrypted server: `stream` (accepted by host `h`) is being
    /// dropped. If the library never read from it, it refused the connection, which it may do
    /// only when `max_handshakes` handshakes are in progress (or `max_handshakes_per_source`
    /// from its source) or the service is full. The handshakes in progress are the other
    /// accepted streams of this incarnation that are open and have not completed theirs.
    pub fn check_admission(&mut self, stream: u64) {
        self.check_refusal(stream);
        let info = &self.streams[stream as usize];
        let h = info.host;
        let host = &self.hosts[h as usize];
        // A refusal reads what the client sent after writing why; before that the library
        // never read from the stream.
        let refused =
            info.head_out.starts_with(&wire::REFUSAL_MAGIC) && info.rops_at_first_write == Some(0);
        if !info.hpke
            || info.connected
            || (info.rops > 0 && !refused)
            || info.hs_done
            || host.down
            || host.draining
            || !self.sc.is_server(h)
            || info.refusable_at_accept
        {
            return;
        }
        if info.evictable {
            // Admitted, then evicted for a newcomer that found the places full while it
            // waited for its ClientHello (see `note_accepted`).
            return;
        }
        if let Some(what) = self.admission_violation(stream) {
            self.violation(Some(h), None, what);
        }
    }

    /// An encrypted server accepted `stream`: notes whether refusing it would be allowed now,
    /// when the library decides (see [`StreamInfo::refusable_at_accept`]), and which
    /// attempts in progress it may evict to take a place (see [`StreamInfo::evictable`]).
    ///
    /// [`StreamInfo::refusable_at_accept`]: crate::state::streams::StreamInfo::refusable_at_accept
    /// [`StreamInfo::evictable`]: crate::state::streams::StreamInfo::evictable
    pub fn note_accepted(&mut self, stream: u64) {
        let info = &self.streams[stream as usize];
        if info.hpke && !info.connected && self.sc.is_server(info.host) {
            let ok = self.admission_violation(stream).is_none();
            self.streams[stream as usize].refusable_at_accept = ok;
            let places = self.places(stream, true);
            // Where a limit is reached the library evicts its oldest stalled attempt there; of
            // those the oracle checks only the ones that read nothing (`check_admission`), so
            // each of them may be the one.
            let mut evictable: Vec<usize> = Vec::new();
            if places.source_full {
                evictable.extend(places.same.iter().copied());
            }
            if places.global_full {
                evictable.extend(places.busy.iter().copied());
            }
            for i in evictable {
                if self.streams[i].rops == 0 {
                    self.streams[i].evictable = true;
                }
            }
        }
    }

    /// The handshake places on `stream`'s server as `stream` finds them: the other accepted
    /// streams of its incarnation that are open and have not completed their handshake (in
    /// all, and from its source), and whether either limit is reached.
    fn places(&self, stream: u64, pending: bool) -> Places {
        let info = &self.streams[stream as usize];
        let h = info.host;
        let svc = &self.sc.side(h).service;
        let max_hs = svc.max_handshakes.unwrap_or(256);
        let per_source = svc.max_handshakes_per_source.unwrap_or(16);
        let (inc, ip) = (info.inc, info.remote.ip());
        let busy: Vec<usize> = self
            .streams
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                *i as u64 != stream
                    && s.host == h
                    && s.inc == inc
                    && s.hpke
                    && !s.connected
                    && s.open
                    && !s.hs_done
                    // A refused connection stays open while its refusal is written and the
                    // client's bytes drained, but holds no place.
                    && !s.head_out.starts_with(&wire::REFUSAL_MAGIC)
                    // One the library may have refused but has not written to yet: with
                    // `pending`, counted as holding a place.
                    && (pending || !(s.refusable_at_accept && s.rops == 0 && s.written == 0))
            })
            .map(|(i, _)| i)
            .collect();
        let same: Vec<usize> = busy
            .iter()
            .copied()
            .filter(|&i| self.streams[i].remote.ip() == ip)
            .collect();
        Places {
            source_full: same.len() >= per_source,
            global_full: busy.len() >= max_hs,
            max_hs,
            busy,
            same,
        }
    }

    /// What refusing `stream` now would violate, if anything (see [`State::check_admission`]).
    /// An attempt accepted just before may be refused or admitted (the oracle learns which
    /// only when it writes): refusing `stream` violates admission only if it does either way.
    fn admission_violation(&self, stream: u64) -> Option<String> {
        let with = self.refusal_violation(stream, &self.places(stream, true))?;
        self.refusal_violation(stream, &self.places(stream, false))
            .map(|_| with)
    }

    /// What refusing `stream` would violate with the handshake places `p`.
    fn refusal_violation(&self, stream: u64, p: &Places) -> Option<String> {
        let info = &self.streams[stream as usize];
        let h = info.host;
        let host = &self.hosts[h as usize];
        let svc = &self.sc.side(h).service;
        // A stalled attempt (no whole ClientHello yet) is evicted to make room rather than
        // the newcomer refused.
        let hello = wire::CLIENT_HELLO as u64
            + if self.sc.client_auth {
                wire::CLIENT_HELLO_KEY as u64
            } else {
                0
            };
        let stalled = |i: &usize| self.streams[*i].read_total < hello;
        let refusable = (p.source_full && !p.same.iter().any(stalled))
            || (p.global_full && !p.busy.iter().any(stalled));
        let full = host.open_now >= svc.max_sessions;
        let (from_source, busy) = (p.same.len(), p.busy.len());
        if (p.source_full || p.global_full) && !refusable && !full {
            Some(format!(
                "a connection was refused although a stalled handshake (no ClientHello yet) held a place it could have taken ({busy} in progress, {from_source} from its source)"
            ))
        } else if !p.global_full && !p.source_full && !full {
            Some(format!(
                "a connection was refused with only {busy} handshakes in progress (max_handshakes = {}) and {} of {} sessions open",
                p.max_hs, host.open_now, svc.max_sessions
            ))
        } else {
            None
        }
    }

    /// A server stream dropped without a session: the library refused the connection, and a
    /// refusal is typed: on "bits" the stream wrote a close frame (never an Open frame alone,
    /// never nothing), on "bits-hpke" a refusal in place of the ServerHello if it dropped the
    /// connection before reading from it. Injected resets, crashes and the end of the run
    /// excuse it.
    fn check_refusal(&mut self, stream: u64) {
        let info = &self.streams[stream as usize];
        let h = info.host;
        let host = &self.hosts[h as usize];
        if info.connected
            || info.sess.is_some()
            || info.hs_done
            || info.reset
            || info.crashed
            || info.rogue.is_some()
            || host.down
            || host.draining
            || !self.sc.is_server(h)
            || matches!(info.cause, Some((_, Cause::Io(_), _)))
        {
            return;
        }
        let silent = if info.hpke {
            info.rops == 0 && info.written == 0
        } else {
            info.written == 0
        };
        if silent {
            let what = format!(
                "the server dropped a connection from {} without a session and without saying why (a refusal that looks like a reset)",
                info.remote
            );
            self.violation(Some(h), None, what);
        } else {
            self.edge("refusal-typed");
        }
    }
}

/// The handshake places on a server as a new connection finds them ([`State::places`]).
struct Places {
    /// Streams holding a place, by index.
    busy: Vec<usize>,
    /// Those of them from the new connection's source.
    same: Vec<usize>,
    source_full: bool,
    global_full: bool,
    max_hs: usize,
}
