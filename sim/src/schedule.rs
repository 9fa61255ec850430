//! The fault recorder: every RNG-driven fault decision of a run goes through it.
//!
//! In *random* mode it draws decisions from the fault RNG (seeded from the run's seed) and
//! records each one that took effect: its kind, sim time and parameters. In *scripted* mode
//! it draws nothing and replays a [`Schedule`] instead. Recording a random run and scripting
//! the recording gives the same run, which is what lets `shrink` drop and weaken faults and
//! `replay --schedule` reproduce the result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::scenario::{IoFaults, Scenario, Span};

/// Read or write side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dir {
    /// `poll_read`.
    Read,
    /// `poll_write`.
    Write,
}

/// What the faulty socket layer does to one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "act", rename_all = "kebab-case")]
pub enum IoAct {
    /// Transfer at most `n` bytes.
    Short {
        /// The limit.
        n: u32,
    },
    /// Return `Pending` and wake after `us` microseconds.
    Stall {
        /// The stall length.
        us: u64,
    },
    /// Fail with `ConnectionReset` (and keep failing).
    Reset,
}

/// What the faulty socket layer does to one record of an encrypted stream (after the
/// handshake; see [`crate::faulty`]). At most one per stream: the first one already ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "act", rename_all = "kebab-case")]
pub enum CtAct {
    /// Flip bit `bit % (8 * len)` of the record's body (never its length header).
    Corrupt {
        /// The bit, modulo the body's bits.
        bit: u32,
    },
    /// Send the record twice.
    Duplicate,
    /// Send the next record first (never chosen for the final `Close` record).
    Reorder,
    /// Insert a record taken from another stream of the same host before this one: entry
    /// `pick` modulo the number of candidates in the host's pool of recent records.
    Splice {
        /// Which candidate.
        pick: u32,
    },
    /// Leave the record out.
    Drop,
}

impl CtAct {
    /// The edge counted when a receiver reads a record this fault spoiled.
    pub fn edge(self) -> &'static str {
        match self {
            CtAct::Corrupt { .. } => "ciphertext-corrupt",
            CtAct::Duplicate => "ciphertext-duplicate",
            CtAct::Reorder => "ciphertext-reorder",
            CtAct::Splice { .. } => "ciphertext-splice",
            CtAct::Drop => "ciphertext-drop",
        }
    }
}

/// One fault decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// The network's base latency range (applied when the sim is built).
    Latency {
        /// Minimum.
        min_ms: u64,
        /// Maximum.
        max_ms: u64,
    },
    /// Partition hosts `a` and `b` at `at_ms` for `dur_ms`, then repair.
    Partition {
        /// Start.
        at_ms: u64,
        /// Length.
        dur_ms: u64,
        /// One side.
        a: String,
        /// The other side.
        b: String,
    },
    /// Hold messages between `a` and `b` at `at_ms` for `dur_ms`, then release.
    Hold {
        /// Start.
        at_ms: u64,
        /// Length.
        dur_ms: u64,
        /// One side.
        a: String,
        /// The other side.
        b: String,
    },
    /// Raise the maximum latency to `max_ms` at `at_ms` for `dur_ms`.
    Spike {
        /// Start.
        at_ms: u64,
        /// Length.
        dur_ms: u64,
        /// The raised maximum.
        max_ms: u64,
    },
    /// Crash `host` at `at_ms`; restart it `down_ms` later.
    Crash {
        /// When.
        at_ms: u64,
        /// Down time.
        down_ms: u64,
        /// Which host.
        host: String,
    },
    /// A socket-layer fault on stream `stream` (creation order in the run), the `op`-th poll
    /// of its `dir` side, at sim time `t_us`.
    Io {
        /// Sim time (informational; the key is stream/dir/op).
        t_us: u64,
        /// Stream number.
        stream: u64,
        /// Side.
        dir: Dir,
        /// Poll number on that side.
        op: u64,
        /// What happened.
        #[serde(flatten)]
        act: IoAct,
    },
    /// A ciphertext fault on record `record` (0 = the first after the handshake, in the order
    /// the library sealed them) that stream `stream` writes, at sim time `t_us`.
    Ct {
        /// Sim time (informational; the key is stream/record).
        t_us: u64,
        /// Stream number.
        stream: u64,
        /// Record number.
        record: u64,
        /// What happened.
        #[serde(flatten)]
        act: CtAct,
    },
}

impl Fault {
    /// A short name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Latency { .. } => "latency",
            Fault::Partition { .. } => "partition",
            Fault::Hold { .. } => "hold",
            Fault::Spike { .. } => "spike",
            Fault::Crash { .. } => "crash",
            Fault::Io { act, .. } => match act {
                IoAct::Short { .. } => "io-short",
                IoAct::Stall { .. } => "io-stall",
                IoAct::Reset => "io-reset",
            },
            Fault::Ct { act, .. } => match act {
                CtAct::Corrupt { .. } => "ct-corrupt",
                CtAct::Duplicate => "ct-duplicate",
                CtAct::Reorder => "ct-reorder",
                CtAct::Splice { .. } => "ct-splice",
                CtAct::Drop => "ct-drop",
            },
        }
    }

    /// A weaker variant (shorter, smaller, less latency), if there is one.
    pub fn weaken(&self) -> Option<Fault> {
        let half = |x: u64| x / 2;
        let mut f = self.clone();
        match &mut f {
            Fault::Latency { min_ms, max_ms } => {
                if *max_ms <= *min_ms.max(&mut 1) {
                    return None;
                }
                *max_ms = (*min_ms).max(half(*max_ms));
            }
            Fault::Partition { dur_ms, .. }
            | Fault::Hold { dur_ms, .. }
            | Fault::Spike { dur_ms, .. }
            | Fault::Crash {
                down_ms: dur_ms, ..
            } => {
                if *dur_ms <= 2 {
                    return None;
                }
                *dur_ms = half(*dur_ms);
            }
            Fault::Io { act, .. } => match act {
                IoAct::Stall { us } if *us > 1000 => *us = half(*us),
                IoAct::Short { n } if *n < 1 << 20 => *n = (*n * 2).max(1),
                _ => return None,
            },
            Fault::Ct { .. } => return None,
        }
        Some(f)
    }
}

/// A complete fault schedule: what `shrink` writes and `replay --schedule` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Schedule {
    /// The scenario it belongs to.
    pub scenario: String,
    /// The seed (still drives latencies, the workload and the library's RNGs).
    pub seed: u64,
    /// The planted bug, if any.
    #[serde(default)]
    pub plant: Option<String>,
    /// Every fault decision, in order.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// Parses a schedule file (JSON, as `shrink` writes it).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

enum Mode {
    Random(Rng),
    Scripted {
        io: BTreeMap<(u64, Dir, u64), IoAct>,
        ct: BTreeMap<(u64, u64), CtAct>,
    },
}

/// The one place fault decisions come from (see the module docs).
pub struct Recorder {
    mode: Mode,
    /// Every decision taken, in order.
    pub records: Vec<Fault>,
}

fn pick(rng: &mut Rng, s: Span) -> u64 {
    rng.range(s[0], s[1])
}

impl Recorder {
    /// Random mode for `seed`.
    pub fn random(seed: u64) -> Recorder {
        Recorder {
            mode: Mode::Random(Rng::new(seed, 0xFA17)),
            records: Vec::new(),
        }
    }

    /// Scripted mode: socket faults come from `faults`, nothing is drawn.
    pub fn scripted(faults: &[Fault]) -> Recorder {
        let mut io = BTreeMap::new();
        let mut ct = BTreeMap::new();
        for f in faults {
            match f {
                Fault::Io {
                    stream,
                    dir,
                    op,
                    act,
                    ..
                } => {
                    io.insert((*stream, *dir, *op), *act);
                }
                Fault::Ct {
                    stream,
                    record,
                    act,
                    ..
                } => {
                    ct.insert((*stream, *record), *act);
                }
                _ => {}
            }
        }
        Recorder {
            mode: Mode::Scripted { io, ct },
            records: Vec::new(),
        }
    }

    /// The network-level plan: in random mode drawn from the scenario, in scripted mode the
    /// schedule's own. Recorded either way.
    pub fn plan(&mut self, sc: &Scenario, script: Option<&[Fault]>) -> Vec<Fault> {
        let plan = match (&mut self.mode, script) {
            (Mode::Scripted { .. }, Some(s)) => s
                .iter()
                .filter(|f| !matches!(f, Fault::Io { .. } | Fault::Ct { .. }))
                .cloned()
                .collect(),
            (Mode::Random(rng), _) => draw_plan(rng, sc),
            (Mode::Scripted { .. }, None) => Vec::new(),
        };
        self.records.extend(plan.iter().cloned());
        plan
    }

    /// The decision for the `op`-th poll of `stream`'s `dir` side. `room` is the number of
    /// bytes the operation could move (for short transfers). A returned decision is recorded
    /// (call [`Recorder::unrecord_last`] if it turns out to have had no effect).
    pub fn decide_io(
        &mut self,
        cfg: &IoFaults,
        stream: u64,
        dir: Dir,
        op: u64,
        room: usize,
        t_us: u64,
    ) -> Option<IoAct> {
        let act = match &mut self.mode {
            Mode::Scripted { io, .. } => *io.get(&(stream, dir, op))?,
            Mode::Random(rng) => {
                let (short, stall, reset) = match dir {
                    Dir::Read => (cfg.short_read, cfg.stall_read, cfg.reset_read),
                    Dir::Write => (cfg.short_write, cfg.stall_write, cfg.reset_write),
                };
                // One draw per poll, split into bands, so the sequence does not depend on
                // which probabilities are zero.
                let x = rng.unit();
                if x < reset {
                    IoAct::Reset
                } else if x < reset + stall {
                    IoAct::Stall {
                        us: pick(rng, cfg.stall_ms).max(1) * 1000,
                    }
                } else if x < reset + stall + short && room > 1 {
                    IoAct::Short {
                        n: rng.range(1, (room as u64 - 1).min(u32::MAX as u64)) as u32,
                    }
                } else {
                    return None;
                }
            }
        };
        self.records.push(Fault::Io {
            t_us,
            stream,
            dir,
            op,
            act,
        });
        Some(act)
    }

    /// The ciphertext fault for record `record` of `stream` (see [`CtAct`]); `close` says the
    /// record is the final `Close` record. A returned decision is recorded (call
    /// [`Recorder::unrecord_last`] if it turns out to have had no effect).
    pub fn decide_ct(
        &mut self,
        cfg: &IoFaults,
        stream: u64,
        record: u64,
        close: bool,
        t_us: u64,
    ) -> Option<CtAct> {
        let act = match &mut self.mode {
            Mode::Scripted { ct, .. } => *ct.get(&(stream, record))?,
            Mode::Random(rng) => {
                // One draw per record, split into bands (as for socket faults).
                let x = rng.unit();
                let mut edge = 0.0;
                let mut band = |p: f64| {
                    edge += p;
                    x < edge
                };
                if band(cfg.ct_corrupt) {
                    CtAct::Corrupt {
                        bit: rng.next_u64() as u32,
                    }
                } else if band(cfg.ct_duplicate) {
                    CtAct::Duplicate
                } else if band(cfg.ct_reorder) {
                    if close {
                        return None;
                    }
                    CtAct::Reorder
                } else if band(cfg.ct_splice) {
                    CtAct::Splice {
                        pick: rng.next_u64() as u32,
                    }
                } else if band(cfg.ct_drop) {
                    CtAct::Drop
                } else {
                    return None;
                }
            }
        };
        self.records.push(Fault::Ct {
            t_us,
            stream,
            record,
            act,
        });
        Some(act)
    }

    /// Drops the recorded socket fault of the `op`-th poll of `stream`'s `dir` side (a
    /// decision that had no effect).
    pub fn unrecord_io(&mut self, stream: u64, dir: Dir, op: u64) {
        let key = (stream, dir, op);
        if let Some(i) = self.records.iter().rposition(
            |f| matches!(f, Fault::Io { stream, dir, op, .. } if (*stream, *dir, *op) == key),
        ) {
            self.records.remove(i);
        }
    }

    /// Drops the last record (a decision that had no effect).
    pub fn unrecord_last(&mut self) {
        self.records.pop();
    }
}

/// Draws the network-level plan of a run. Every fault ends before the workload phase does,
/// so the drain phase runs on a healed network.
fn draw_plan(rng: &mut Rng, sc: &Scenario) -> Vec<Fault> {
    let mut plan = vec![Fault::Latency {
        min_ms: sc.net.latency_ms[0],
        max_ms: sc.net.latency_ms[1].max(sc.net.latency_ms[0]),
    }];
    let end = sc.duration_ms;
    let window = |rng: &mut Rng, dur: u64| -> Option<u64> {
        let lo = 50.min(end);
        let hi = end.checked_sub(dur.checked_add(50)?)?;
        (hi >= lo).then(|| rng.range(lo, hi))
    };
    let servers = sc.hosts.servers;
    let clients = sc.hosts.clients;
    let pair = |rng: &mut Rng| -> (String, String) {
        let s = rng.range(0, servers as u64 - 1);
        let c = rng.range(0, clients as u64 - 1);
        (format!("server{s}"), format!("client{c}"))
    };
    let f = &sc.faults;
    for _ in 0..pick(rng, f.partitions.count) {
        let dur = pick(rng, f.partitions.dur_ms);
        let (a, b) = pair(rng);
        if let Some(at) = window(rng, dur) {
            plan.push(Fault::Partition {
                at_ms: at,
                dur_ms: dur,
                a,
                b,
            });
        }
    }
    for _ in 0..pick(rng, f.holds.count) {
        let dur = pick(rng, f.holds.dur_ms);
        let (a, b) = pair(rng);
        if let Some(at) = window(rng, dur) {
            plan.push(Fault::Hold {
                at_ms: at,
                dur_ms: dur,
                a,
                b,
            });
        }
    }
    for _ in 0..pick(rng, f.spikes.count) {
        let dur = pick(rng, f.spikes.dur_ms);
        let max = pick(rng, f.spikes.max_ms);
        if let Some(at) = window(rng, dur) {
            plan.push(Fault::Spike {
                at_ms: at,
                dur_ms: dur,
                max_ms: max,
            });
        }
    }
    for _ in 0..pick(rng, f.crashes.count) {
        let dur = pick(rng, f.crashes.dur_ms);
        let host = format!("server{}", rng.range(0, servers as u64 - 1));
        if let Some(at) = window(rng, dur) {
            plan.push(Fault::Crash {
                at_ms: at,
                down_ms: dur,
                host,
            });
        }
    }
    plan
}
