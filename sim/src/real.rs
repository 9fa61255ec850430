//! `laxsim run --real`: the scenarios on real loopback sockets.
//!
//! For each scenario and seed, one round of [`crate::stress`] — the library on Tokio's
//! multi-thread runtime, clients bursting sequenced messages against a small send queue and
//! ending their sessions every way at once, checked by the stress run's lifecycle oracle — with
//! the scenario's protocol and its servers' and clients' socket faults made in the real streams
//! by [`crate::chaos`]: short reads and writes, stalls, resets mid-frame, corrupted ciphertext;
//! and its `max_record`.
//!
//! What loopback cannot make, or this mode does not yet, is skipped and listed per scenario
//! ([`skipped`]): network latency, holds and latency spikes, partitions, host crashes and
//! restarts, hostile hosts, and the ciphertext faults that need the simulator's record follower
//! (duplicated, reordered, spliced, dropped records). The workload is the stress run's, not the
//! scenario's (its rates, timings and service limits are the simulator's), and the oracle is
//! the stress run's (per-session lifecycle, FIFO, close reasons told, clean ends lossless, ids,
//! pool and shutdown) rather than the simulator's: no accounting against socket bytes, no
//! `ready()` deadlines, no edges. Thread timing is not seeded, so a failing seed need not fail
//! again.

use std::sync::Arc;
use std::time::Duration;

use crate::chaos::FaultCounts;
use crate::scenario::Scenario;
use crate::stress::{StressOpts, stress};

/// The result of one scenario and seed on real sockets.
#[derive(Debug, Clone)]
pub struct RealResult {
    /// Scenario.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Sessions opened (both ends).
    pub sessions: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Socket faults made.
    pub faults: FaultCounts,
    /// Connects that failed under a fault.
    pub failed_connects: u64,
    /// Violations.
    pub violations: Vec<String>,
    /// Wall time.
    pub wall: Duration,
}

/// What of `sc` this mode cannot make on loopback (or does not yet).
pub fn skipped(sc: &Scenario) -> Vec<&'static str> {
    let mut out = Vec::new();
    let f = &sc.faults;
    if sc.net.latency_ms != [0, 0] {
        out.push("latency");
    }
    if f.holds.count[1] > 0 {
        out.push("holds");
    }
    if f.spikes.count[1] > 0 {
        out.push("latency spikes");
    }
    if f.partitions.count[1] > 0 {
        out.push("partitions");
    }
    if f.crashes.count[1] > 0 {
        out.push("crashes/restarts");
    }
    if sc.hosts.rogues > 0 {
        out.push("hostile hosts");
    }
    let ct = |io: &crate::scenario::IoFaults| {
        io.ct_duplicate + io.ct_reorder + io.ct_splice + io.ct_drop > 0.0
    };
    if ct(&sc.server.io) || ct(&sc.client.io) {
        out.push("record duplicate/reorder/splice/drop");
    }
    out
}

/// Runs `sc` for `seed` on real sockets.
pub fn run_real(
    sc: &Arc<Scenario>,
    seed: u64,
    threads: usize,
    plant: Option<String>,
) -> RealResult {
    #[allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall time of the report
    let start = std::time::Instant::now();
    let opts = StressOpts {
        rounds: 1,
        seed,
        threads,
        encrypted: sc.protocol.encrypted(),
        plant,
        faults: Some((sc.server.io.clone(), sc.client.io.clone())),
        max_record: sc.max_record,
        ..StressOpts::default()
    };
    let r = stress(&opts);
    RealResult {
        scenario: sc.name.clone(),
        seed,
        sessions: r.sessions,
        messages: r.messages,
        faults: r.faults,
        failed_connects: r.failed_connects,
        violations: r.violations,
        wall: start.elapsed(),
    }
}
