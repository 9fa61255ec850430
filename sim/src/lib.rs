//! `laxnet-sim`: seeded deterministic simulation of `laxnet` on turmoil.
//!
//! From the bottom up (each module uses only modules listed before it; `tests/layers.rs`
//! checks this):
//!
//! - [`rng`], [`msg`], [`reasons`], [`edges`]: the seeded RNG, the messages the workload
//!   sends, which close reason each observed cause implies, the lifecycle edges a run counts;
//!   [`fingerprint`]: what a build must share with another for a seed to replay there.
//! - [`keys`]: the fleets' key pairs; [`attack`]: what a hostile connection sends.
//! - [`scenario`]: scenarios as data (`scenarios/*.toml`).
//! - [`schedule`]: the fault recorder; every RNG-driven fault decision goes through it.
//! - [`log`]: the event log and the trace hash.
//! - [`state`]: the state one run shares: stream byte tracking, the hosts' workload state,
//!   and the oracle (sessions, ciphertext, sends, accounting, admission, the end of a run).
//! - [`faulty`]: [`FaultyRuntime`](faulty::FaultyRuntime), a `laxnet::Runtime` injecting
//!   short reads/writes, stalls and resets into turmoil's sockets, and ciphertext faults
//!   (corrupted, duplicated, reordered, spliced, dropped records) into encrypted streams;
//!   [`chaos`]: the same socket faults in real Tokio streams.
//! - [`engine`]: the one driver: a seed of a test (hosts as async functions of a
//!   [`Ctx`], network faults, coverage goals), start to verdict, with the lifecycle oracle
//!   over users' sessions; users' tests and laxsim's scenarios both run on it.
//! - [`workload`]: what the simulated servers and clients of laxsim's scenarios do (engine
//!   host functions that feed the oracle in [`state`]).
//! - [`rogue`]: hostile hosts that send what no honest peer sends.
//! - [`runner`]: a scenario as an engine test, one seed of it; [`timeline`]: the per-session timeline, as
//!   text and as HTML/SVG; [`stress`]: the lifecycle oracle on real sockets and a
//!   multi-thread runtime, for the races between threads that the simulator cannot show.
//! - [`suite`]: many seeds on several threads, the summary table; [`shrink`]: minimising a
//!   failing fault schedule; [`fuzz`]: one fuzz input (`arbitrary`) as a scenario and a fault
//!   schedule, run with the full oracle (the `sim` fuzz target, `laxsim fuzz-input`).
//! - [`sweep`]: sweeps split over machines: shards, seed blocks, the JUnit report, merging
//!   shards' JSON summaries; [`real`]: the scenarios on loopback (`laxsim run --real`);
//!   [`soak`]: thousands of sessions on loopback for a long time, with churn and hostile
//!   peers (`laxsim soak`).
//! - [`app`]: simulation tests of users' own services ([`Sim`], [`Ctx`], [`Faults`]): the
//!   public face of the engine, with their invariants and coverage goals, a replay command
//!   per failing seed and the determinism guard.
//!
//! Determinism: a run's trace hash is FNV-1a over its ordered event log (sim time, host,
//! event); collections are `BTreeMap`/`Vec` only; every RNG is seeded from the run's seed. Two
//! sources of nondeterminism outside our code are neutralised: tokio drops a crashed host's
//! tasks in an order that depends on process-global task ids (so `Closed` events of a crash
//! are processed in id order and the crashed host's streams are closed in creation order, see
//! [`faulty::Graveyard`]), and whatever the simulator's final teardown does is kept out of
//! the log.
//!
//! Debugging aids (environment variables): `LAXSIM_DUMP=PREFIX` writes every run's event log
//! to `PREFIX.SEED.N`; `LAXSIM_PANIC_TRACE=1` also prints panics caught inside a run;
//! `LAXSIM_SCENARIOS=DIR` changes the scenario directory; `RUST_LOG` filters `replay --trace`
//! (default `laxnet=trace`).

pub mod app;
pub mod attack;
pub mod chaos;
pub mod edges;
pub mod engine;
pub mod faulty;
pub mod fingerprint;
pub mod fuzz;
pub mod keys;
pub mod log;
pub mod msg;
pub mod real;
pub mod reasons;
pub mod rng;
pub mod rogue;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod shrink;
pub mod soak;
pub mod state;
pub mod stress;
pub mod suite;
pub mod sweep;
pub mod timeline;
pub mod workload;

pub use app::{Broken, Ctx, Faults, Report, Sim};

/// Names of the planted bugs this build can plant (empty without `planted-bugs`).
pub fn plantable() -> Vec<&'static str> {
    #[cfg(feature = "planted-bugs")]
    {
        laxnet::planted::Bug::ALL.iter().map(|(_, n)| *n).collect()
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        Vec::new()
    }
}
