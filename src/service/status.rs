//! [`Status`]: a snapshot of a service's counters that prints as a table, and
//! [`SessionInfo`], the per-session listing.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::Service;
use crate::buffer::PoolStats;
use crate::error::CloseKind;
use crate::id::SessionId;
use crate::protocol::Protocol;
use crate::session::Direction;
use crate::session::shared::Phase;

/// A session's state as listed by [`Service::sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Accepting sends.
    Open,
    /// In its close sequence.
    Closing,
}

/// One line of [`Service::sessions`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Its id.
    pub id: SessionId,
    /// Its protocol.
    pub protocol: Protocol,
    /// Peer address.
    pub peer: SocketAddr,
    /// Who opened it.
    pub direction: Direction,
    /// Open or closing.
    pub state: SessionState,
    /// Time since it opened.
    pub age: Duration,
    /// Time since it last received anything.
    pub idle: Duration,
    /// Bytes received / sent.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Messages received.
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Bytes queued and not yet written.
    pub queued: usize,
}

/// Sessions of one protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtocolCount {
    /// The protocol.
    pub protocol: Protocol,
    /// Open sessions.
    pub open: usize,
    /// Sessions closing.
    pub closing: usize,
}

/// A snapshot of a service: `println!("{}", svc.status())` prints a table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The runtime backend's name.
    pub runtime: &'static str,
    /// Live sessions per protocol and state, every protocol in [`Protocol::ALL`] order.
    pub sessions: Vec<ProtocolCount>,
    /// Sessions accepted since start.
    pub accepted: u64,
    /// Sessions connected since start.
    pub connected: u64,
    /// Connections refused at `max_sessions`.
    pub refused: u64,
    /// `connect` calls that failed once they had started connecting: timeouts, I/O errors
    /// (refused by the peer's host), failed handshakes (also in `handshake_failures`), and
    /// connections this service dropped at once because it shut down or filled up meanwhile.
    /// Calls refused before any I/O (`NotConfigured`, `Shutdown`, `TooManySessions` up front)
    /// are not counted.
    pub connect_failures: u64,
    /// Failed accepts on a listening socket (out of file descriptors and the like; the accept
    /// loop backs off and goes on).
    pub accept_errors: u64,
    /// Bytes received, all sessions since start.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Messages received.
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Messages received that no subscriber wanted.
    pub unhandled: u64,
    /// Closed sessions by [`CloseReason::kind`](crate::CloseReason::kind), every kind in
    /// [`CloseKind::ALL`] order.
    pub closes: Vec<(CloseKind, u64)>,
    /// Sends refused because the queue was full.
    pub queue_full: u64,
    /// Sessions closed by the heartbeat check in `send`.
    pub heartbeat_expiries: u64,
    /// Close sequences cut short by the linger timer.
    pub linger_expired: u64,
    /// Panics caught in subscribers or service tasks.
    pub panics: u64,
    /// Encrypted handshakes completed.
    pub handshakes: u64,
    /// Encrypted handshakes that failed (bad key, garbage, timeout).
    pub handshake_failures: u64,
    /// Connections dropped at once because too many handshakes were in progress (in all or
    /// from their source) and none of them was stalled.
    pub handshakes_refused: u64,
    /// Encrypted connections in their handshake right now (not sessions yet).
    pub handshaking: usize,
    /// Stalled handshakes (no ClientHello yet, or a ClientFinished more than
    /// `Encryption::hello_timeout` late) dropped to make room for a new connection.
    pub handshakes_evicted: u64,
    /// The most sessions live at once (high-water mark); the id table's memory is
    /// proportional to it.
    pub slots: usize,
    /// The buffer pool.
    pub pool: PoolStats,
}

impl Status {
    /// Live sessions (open and closing), all protocols.
    pub fn live(&self) -> usize {
        self.sessions.iter().map(|p| p.open + p.closing).sum()
    }

    /// How many sessions closed with a reason of `kind`.
    pub fn closed(&self, kind: CloseKind) -> u64 {
        self.closes
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

impl Service {
    /// A snapshot of the counters.
    pub fn status(&self) -> Status {
        let inner = self.inner();
        let core = &inner.core;
        let c = &core.counters;
        let mut sessions: Vec<ProtocolCount> = Protocol::ALL
            .into_iter()
            .map(|protocol| ProtocolCount {
                protocol,
                open: 0,
                closing: 0,
            })
            .collect();
        let ([mut bi, mut bo, mut mi, mut mo], live, pool) = inner.snapshot_with_done();
        for s in live {
            let row = &mut sessions[s.protocol.index()];
            match s.phase() {
                Phase::Open => row.open += 1,
                _ => row.closing += 1,
            }
            bi += s.counters.bytes_in.load(Relaxed);
            bo += s.counters.bytes_out.load(Relaxed);
            mi += s.counters.msgs_in.load(Relaxed);
            mo += s.counters.msgs_out.load(Relaxed);
        }
        Status {
            runtime: core.runtime.name(),
            sessions,
            accepted: c.accepted.load(Relaxed),
            connected: c.connected.load(Relaxed),
            refused: c.refused.load(Relaxed),
            connect_failures: c.connect_failures.load(Relaxed),
            accept_errors: c.accept_errors.load(Relaxed),
            bytes_in: bi,
            bytes_out: bo,
            msgs_in: mi,
            msgs_out: mo,
            unhandled: c.unhandled.load(Relaxed),
            closes: CloseKind::ALL
                .into_iter()
                .zip(&c.closes)
                .map(|(k, n)| (k, n.load(Relaxed)))
                .collect(),
            queue_full: c.queue_full.load(Relaxed),
            heartbeat_expiries: c.heartbeat_expiries.load(Relaxed),
            linger_expired: c.linger_expired.load(Relaxed),
            panics: c.panics.load(Relaxed),
            handshakes: c.handshakes.load(Relaxed),
            handshake_failures: c.handshake_failures.load(Relaxed),
            handshakes_refused: c.handshakes_refused.load(Relaxed),
            handshaking: inner.handshaking(),
            handshakes_evicted: c.handshakes_evicted.load(Relaxed),
            slots: inner.peak_sessions(),
            pool,
        }
    }

    /// Every live session, oldest first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let now = self.now();
        self.inner()
            .snapshot()
            .into_iter()
            .map(|s| SessionInfo {
                id: s.id,
                protocol: s.protocol,
                peer: s.peer,
                direction: s.direction,
                state: if s.phase() == Phase::Open {
                    SessionState::Open
                } else {
                    SessionState::Closing
                },
                age: now.saturating_since(s.opened_at),
                idle: now.saturating_since(s.last_recv()),
                bytes_in: s.counters.bytes_in.load(Relaxed),
                bytes_out: s.counters.bytes_out.load(Relaxed),
                msgs_in: s.counters.msgs_in.load(Relaxed),
                msgs_out: s.counters.msgs_out.load(Relaxed),
                queued: s.wire_len(s.lock().queue.len()) + s.in_flight.load(Relaxed),
            })
            .collect()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "laxnet service on {}", self.runtime)?;
        writeln!(f, "{:<16} {:>8} {:>8}", "protocol", "open", "closing")?;
        for p in &self.sessions {
            writeln!(f, "{:<16} {:>8} {:>8}", p.protocol, p.open, p.closing)?;
        }
        writeln!(f, "{:<24} {:>14}", "counter", "value")?;
        let rows: [(&str, u64); 20] = [
            ("accepted", self.accepted),
            ("connected", self.connected),
            ("refused", self.refused),
            ("connect failures", self.connect_failures),
            ("accept errors", self.accept_errors),
            ("bytes in", self.bytes_in),
            ("bytes out", self.bytes_out),
            ("messages in", self.msgs_in),
            ("messages out", self.msgs_out),
            ("unhandled messages", self.unhandled),
            ("send queue full", self.queue_full),
            ("heartbeat expiries", self.heartbeat_expiries),
            ("linger expired", self.linger_expired),
            ("panics", self.panics),
            ("handshakes", self.handshakes),
            ("handshake failures", self.handshake_failures),
            ("handshakes refused", self.handshakes_refused),
            ("handshaking now", self.handshaking as u64),
            ("handshakes evicted", self.handshakes_evicted),
            ("peak sessions", self.slots as u64),
        ];
        for (k, v) in rows {
            writeln!(f, "{k:<24} {v:>14}")?;
        }
        for (k, v) in &self.closes {
            if *v > 0 {
                writeln!(f, "{:<24} {:>14}", format!("closed: {k}"), v)?;
            }
        }
        let p = &self.pool;
        writeln!(
            f,
            "{:<24} {:>14}\n{:<24} {:>14}\n{:<24} {:>14}",
            "pool in use (bytes)",
            p.in_use_bytes,
            "pool retained (bytes)",
            p.retained_bytes,
            "pool allocations",
            p.allocations
        )
    }
}
