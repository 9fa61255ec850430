//! The event log a run keeps and its trace hash: every observation as an [`Entry`] (sim
//! time, host, incarnation, [`Ev`]), the formatting for people, and FNV-1a over the ordered
//! log ([`trace_hash`]), which two runs of one seed must agree on.

use std::hash::{Hash, Hasher};

use crate::schedule::{CtAct, IoAct};

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ev {
    /// A host's software started (incarnation `inc`).
    Start {
        /// Incarnation.
        inc: u16,
    },
    /// The driver crashed this host.
    Crash,
    /// A network fault started or ended (`what`), between this host and `peer`.
    Net {
        /// partition, repair, hold, release, spike, spike-end.
        what: &'static str,
        /// The other host, or the latency for spikes.
        arg: u64,
    },
    /// A socket-layer fault on a stream.
    Io {
        /// Stream number.
        stream: u64,
        /// What.
        act: IoAct,
    },
    /// `connect` failed.
    ConnectErr {
        /// Why.
        what: String,
    },
    /// Session opened.
    Opened {
        /// Id (raw).
        id: u32,
        /// True if this side connected.
        connected: bool,
        /// Its stream.
        stream: Option<u64>,
    },
    /// Session closed.
    Closed {
        /// Id.
        id: u32,
        /// Reason.
        reason: String,
    },
    /// A send succeeded.
    Send {
        /// Id.
        id: u32,
        /// Seq.
        seq: u64,
        /// Payload bytes.
        len: u32,
    },
    /// A send failed.
    SendErr {
        /// Id.
        id: u32,
        /// The error.
        err: String,
    },
    /// A `SessionRef::ready()` that the workload awaited after `QueueFull` returned.
    Ready {
        /// Id.
        id: u32,
        /// "room", or the error.
        res: String,
    },
    /// A message was delivered.
    Recv {
        /// Receiving session id.
        id: u32,
        /// Sender host.
        from: u16,
        /// Sender session id.
        from_id: u32,
        /// Seq.
        seq: u64,
    },
    /// The workload called `close()`.
    Close {
        /// Id.
        id: u32,
        /// Why (client, server, both, on-open, end).
        how: &'static str,
    },
    /// A stale-ref probe.
    Probe {
        /// Id.
        id: u32,
        /// The result.
        res: String,
    },
    /// The host drained: its final status.
    Quiesced {
        /// Live sessions.
        live: u64,
        /// Pool bytes in use.
        in_use: u64,
        /// Panics counted by the service.
        panics: u64,
    },
    /// An invariant failed.
    Violation {
        /// What.
        what: String,
    },
    /// A ciphertext fault on a record this host writes.
    Ct {
        /// Stream number.
        stream: u64,
        /// Record number (0 = the first after the handshake).
        record: u64,
        /// What.
        act: CtAct,
    },
    /// This host read the first record a ciphertext fault spoiled (or the end of stream
    /// after a dropped one).
    CtRead {
        /// The reading stream.
        stream: u64,
        /// The writing stream, which took the fault.
        from: u64,
    },
}

/// One log entry: sim time, host, incarnation, event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Sim time in microseconds.
    pub t_us: u64,
    /// Host index.
    pub host: u16,
    /// Host incarnation.
    pub inc: u16,
    /// What happened.
    pub ev: Ev,
}

/// The trace hash of a log: FNV-1a over its entries, in order.
pub fn trace_hash(log: &[Entry]) -> u64 {
    let mut h = Fnv::default();
    for e in log {
        e.hash(&mut h);
    }
    h.finish()
}

/// The session id an event is about, if any.
pub fn ev_id(ev: &Ev) -> Option<u32> {
    match ev {
        Ev::Opened { id, .. }
        | Ev::Closed { id, .. }
        | Ev::Send { id, .. }
        | Ev::SendErr { id, .. }
        | Ev::Ready { id, .. }
        | Ev::Recv { id, .. }
        | Ev::Close { id, .. }
        | Ev::Probe { id, .. } => Some(*id),
        _ => None,
    }
}

/// Formats a raw id as the library does (`#<value>`).
pub fn fmt_id(id: u32) -> String {
    match laxnet::SessionId::from_raw(id) {
        Some(i) => i.to_string(),
        None => format!("#raw{id}"),
    }
}

/// Formats an event for people.
pub fn fmt_ev(ev: &Ev) -> String {
    match ev {
        Ev::Start { inc } => format!("start (incarnation {inc})"),
        Ev::Crash => "CRASH".into(),
        Ev::Net { what, arg } => format!("net {what} {arg}"),
        Ev::Io { stream, act } => format!("io-fault stream {stream}: {act:?}"),
        Ev::Ct {
            stream,
            record,
            act,
        } => format!("ciphertext fault stream {stream} record {record}: {act:?}"),
        Ev::CtRead { stream, from } => {
            format!("stream {stream} read the record spoiled by stream {from}'s ciphertext fault")
        }
        Ev::ConnectErr { what } => format!("connect failed: {what}"),
        Ev::Opened {
            id,
            connected,
            stream,
        } => format!(
            "{} opened ({}, stream {})",
            fmt_id(*id),
            if *connected { "connected" } else { "accepted" },
            stream.map_or("?".into(), |s| s.to_string())
        ),
        Ev::Closed { id, reason } => format!("{} CLOSED: {reason}", fmt_id(*id)),
        Ev::Send { id, seq, len } => format!("{} send seq {seq} ({len} B)", fmt_id(*id)),
        Ev::SendErr { id, err } => format!("{} send failed: {err}", fmt_id(*id)),
        Ev::Ready { id, res } => format!("{} ready(): {res}", fmt_id(*id)),
        Ev::Recv {
            id,
            from,
            from_id,
            seq,
        } => format!(
            "{} recv seq {seq} from host {from} {}",
            fmt_id(*id),
            fmt_id(*from_id)
        ),
        Ev::Close { id, how } => format!("{} close() ({how})", fmt_id(*id)),
        Ev::Probe { id, res } => format!("{} stale-ref probe: {res}", fmt_id(*id)),
        Ev::Quiesced {
            live,
            in_use,
            panics,
        } => format!("quiesced: live {live}, pool in use {in_use} B, panics {panics}"),
        Ev::Violation { what } => format!("VIOLATION: {what}"),
    }
}

/// FNV-1a, 64 bit.
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
