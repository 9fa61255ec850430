//! The state one simulated run shares between its hosts, the fault layer and the driver loop:
//! the ordered event log (hashed into the trace hash), the oracle's view of every session and
//! stream, the edge counters and the violations.
//!
//! Everything sits behind one mutex. The simulation is single-threaded, so it is never
//! contended; the rule is only that nobody holds it across an `.await` or while calling into
//! the simulator (a crash runs library drop code that publishes `Closed` events, which lock it).
//! Library calls made under the lock (`send`, `close`, `acquire`, `status`, `sessions`) never
//! call back into subscribers synchronously; `ready()` is only awaited outside it, in a task of
//! its own (`workload::events::wait_room`).
//!
//! The state is split by job: [`crate::log`] holds the event log's entries and the trace hash;
//! [`streams`] follows every stream's bytes; [`hosts`] holds each host's workload state;
//! [`oracle`] checks the library against what the run observed (sessions, ciphertext, sends,
//! accounting, handshake admission, the end of the run). This file holds the [`State`]
//! itself and the bookkeeping every part shares: the log, the edge counters, the violations
//! and the observation order.

pub mod hosts;
pub mod oracle;
pub mod streams;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use laxnet::{CloseReason, PublicKey, wire};

use crate::edges::EDGES;
use crate::log::{Entry, Ev, ev_id, fmt_ev};
use crate::scenario::Scenario;
use crate::schedule::{Fault, Recorder};
use hosts::HostState;
use oracle::session::Sess;
use streams::StreamInfo;

/// Violations kept per run (the rest are only counted).
pub const MAX_VIOLATIONS: usize = 50;

/// The shared state handle.
pub type Shared = Arc<Mutex<State>>;

/// Locks the shared state (a poisoned lock means a panic, which is reported anyway).
pub fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A failed invariant.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Sim time (µs).
    pub t_us: u64,
    /// Host.
    pub host: Option<u16>,
    /// Session index.
    pub sess: Option<usize>,
    /// What failed.
    pub what: String,
}

/// The shared state of one run.
pub struct State {
    /// The scenario.
    pub sc: Arc<Scenario>,
    /// Sim time of the current step (µs), set by the driver loop.
    pub now_us: u64,
    /// The event log.
    pub log: Vec<Entry>,
    /// Every session ever opened.
    pub sessions: Vec<Sess>,
    /// Every stream ever created.
    pub streams: Vec<StreamInfo>,
    /// Streams waiting for their other end: (client addr, server addr) → stream.
    pub unpaired: BTreeMap<(SocketAddr, SocketAddr), u64>,
    /// The hosts.
    pub hosts: Vec<HostState>,
    /// Failed invariants (the first [`MAX_VIOLATIONS`]).
    pub violations: Vec<Violation>,
    /// All failed invariants, counted.
    pub violation_count: u64,
    /// Coverage counters, by name: laxsim's lifecycle edges ([`crate::edges::EDGES`]) and
    /// the coverage goals of a simulation test ([`crate::app::Ctx::sometimes`]), counted by
    /// one mechanism and checked as goals by the engine ([`crate::engine`]).
    pub edges: BTreeMap<Cow<'static, str>, u64>,
    /// Fault decisions.
    pub rec: Recorder,
    /// Messages delivered.
    pub delivered: u64,
    /// `Closed` events held while a host crashes.
    pub crash_closed: Vec<(u16, u32, CloseReason)>,
    /// The run is over: the log takes no more entries.
    pub frozen: bool,
    /// Print events as they happen (replay --trace).
    pub echo: bool,
    /// A counter that orders observations (not time: many happen in one sim step).
    pub ord: u64,
    /// The key every connected session must report as its peer's (encrypted runs).
    server_key: Option<PublicKey>,
    /// The key every accepted session must report (encrypted runs with `client_auth`).
    client_key: Option<PublicKey>,
}

impl State {
    /// Bytes a connecting side writes before its records (ClientHello and ClientFinished).
    pub fn client_out(&self) -> u64 {
        wire::client_handshake(self.sc.client_auth) as u64
    }

    /// A fresh state.
    pub fn new(sc: Arc<Scenario>, seed: u64, rec: Recorder) -> State {
        let hosts = (0..sc.host_count())
            .map(|i| HostState::new(&sc, seed, i))
            .collect();
        let server_key = sc
            .protocol
            .encrypted()
            .then(|| crate::keys::server_key(seed).public());
        let client_key = (sc.protocol.encrypted() && sc.client_auth)
            .then(|| crate::keys::client_key(seed).public());
        State {
            server_key,
            client_key,
            sc,
            now_us: 0,
            log: Vec::new(),
            sessions: Vec::new(),
            streams: Vec::new(),
            unpaired: BTreeMap::new(),
            hosts,
            violations: Vec::new(),
            violation_count: 0,
            edges: BTreeMap::new(),
            rec,
            delivered: 0,
            crash_closed: Vec::new(),
            frozen: false,
            echo: false,
            ord: 0,
        }
    }

    /// The next observation number.
    pub fn next_ord(&mut self) -> u64 {
        self.ord += 1;
        self.ord
    }

    /// Session `idx` has a visible reason to close from now on (first call wins).
    pub fn cause(&mut self, idx: usize) {
        if self.sessions[idx].cause_ord.is_none() {
            let o = self.next_ord();
            self.sessions[idx].cause_ord = Some(o);
        }
    }

    /// Appends an event.
    pub fn log(&mut self, host: u16, ev: Ev) {
        if self.frozen {
            return;
        }
        let inc = self.hosts.get(host as usize).map_or(0, |h| h.inc);
        let e = Entry {
            t_us: self.now_us,
            host,
            inc,
            ev,
        };
        if self.echo {
            println!("{}", self.fmt_entry(&e));
        }
        self.log.push(e);
    }

    /// Counts an edge.
    pub fn edge(&mut self, name: &'static str) {
        debug_assert!(EDGES.contains(&name), "unknown edge {name}");
        match self.edges.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.edges.insert(Cow::Borrowed(name), 1);
            }
        }
    }

    /// A coverage goal named by a test: counted when `hit`, and known (at zero) either way.
    pub fn goal(&mut self, name: &str, hit: bool) {
        let n = match self.edges.get_mut(name) {
            Some(n) => n,
            None => self.edges.entry(Cow::Owned(name.to_string())).or_default(),
        };
        *n += u64::from(hit);
    }

    /// How many times the edge or goal `name` was reached in this run.
    pub fn reached(&self, name: &str) -> u64 {
        self.edges.get(name).copied().unwrap_or(0)
    }

    /// Records a violation.
    pub fn violation(&mut self, host: Option<u16>, sess: Option<usize>, what: String) {
        let t = self.now_us;
        self.violation_at(t, host, sess, what);
    }

    /// Records a violation that happened at sim time `t_us`.
    pub fn violation_at(
        &mut self,
        t_us: u64,
        host: Option<u16>,
        sess: Option<usize>,
        what: String,
    ) {
        self.violation_count += 1;
        if self.violations.len() >= MAX_VIOLATIONS {
            return;
        }
        if let Some(h) = host {
            self.log(h, Ev::Violation { what: what.clone() });
        }
        self.violations.push(Violation {
            t_us,
            host,
            sess,
            what,
        });
    }

    /// Formats a log entry for people.
    pub fn fmt_entry(&self, e: &Entry) -> String {
        let host = self
            .hosts
            .get(e.host as usize)
            .map_or("?", |h| h.name.as_str());
        format!(
            "{:>10.3}ms {host}/{} {}",
            e.t_us as f64 / 1000.0,
            e.inc,
            fmt_ev(&e.ev)
        )
    }

    /// The trace hash: FNV-1a over the ordered event log.
    pub fn trace_hash(&self) -> u64 {
        crate::log::trace_hash(&self.log)
    }

    /// The last `n` log lines about session `idx`.
    pub fn session_tail(&self, idx: usize, n: usize) -> Vec<String> {
        let s = &self.sessions[idx];
        let mine: Vec<&Entry> = self
            .log
            .iter()
            .filter(|e| e.host == s.host && e.inc == s.inc && ev_id(&e.ev) == Some(s.id))
            .filter(|e| !matches!(e.ev, Ev::Probe { .. }))
            .filter(|e| e.t_us >= s.opened_us && s.closed_us.is_none_or(|c| e.t_us <= c))
            .collect();
        mine[mine.len().saturating_sub(n)..]
            .iter()
            .map(|e| self.fmt_entry(e))
            .collect()
    }

    /// Number of fault decisions taken (network and socket).
    pub fn faults_injected(&self) -> u64 {
        self.rec
            .records
            .iter()
            .filter(|f| !matches!(f, Fault::Latency { .. }))
            .count() as u64
    }
}
