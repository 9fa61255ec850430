//! The whole stack under `arbitrary`: one fuzz input becomes a simulated run, checked by the
//! full oracle (the libFuzzer target `sim` of `fuzz/`, and `laxsim fuzz-input`).
//!
//! [`Input`] (decoded with `arbitrary`) says which hosts there are (one or two servers, one to
//! three clients, maybe a hostile host and its attacks), the protocol, cipher and client
//! authentication, each role's service configuration, what the workload does (connects,
//! aborted connects, bursts, sizes, replies, pushes, who closes when and how, closes on open,
//! while waiting and again, listener pauses, stale-ref probes), the network's latency, and a
//! fault schedule: partitions, holds, latency spikes, server crashes, socket faults (short
//! transfers, stalls, resets at a given poll of a given stream) and record faults (corrupt,
//! duplicate, reorder, splice, drop). [`Case::new`] turns it into the same two things
//! `laxsim replay` takes: a [`Scenario`] (written as TOML and parsed back, so the run uses
//! exactly what the file says) and a scripted [`Schedule`]. [`Case::run`] runs them through
//! [`run_seed`], as `laxsim replay --schedule` does, so a failing input is debugged with the
//! usual tools (trace, timeline) after [`Case::write`].
//!
//! The simulated workload phase is at most [`MAX_DURATION_MS`] and there are at most six
//! hosts, so one input takes milliseconds to a few tens of milliseconds of CPU, not seconds.
//! Every timed fault ends before the workload phase does (as when laxsim draws them), so the
//! drain phase runs on a healed network: a host that cannot drain then is a finding.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};

use crate::attack::Attack;
use crate::runner::{Outcome, RunOpts, run_seed};
use crate::scenario::{CipherName, IoFaults, Protocol, Scenario, ServiceCfg, Side};
use crate::schedule::{CtAct, Dir, Fault, IoAct, Schedule};

/// The longest workload phase an input asks for (sim time).
pub const MAX_DURATION_MS: u64 = 1000;

/// A fuzz input, as `arbitrary` decodes it (every field is mapped into a valid, bounded
/// scenario by [`Case::new`]; no value is refused).
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Input {
    /// The run's seed (turmoil's RNG, the workload's and the library's).
    pub seed: u64,
    /// Hosts, protocol, network.
    pub shape: Shape,
    /// What the hosts do.
    pub work: Work,
    /// The servers' configuration.
    pub server: SideIn,
    /// The clients' configuration.
    pub client: SideIn,
    /// The fault schedule (takes the rest of the input).
    pub faults: Vec<FaultIn>,
}

/// Hosts, protocol and network.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Shape {
    /// Two servers instead of one.
    pub two_servers: bool,
    /// Clients: 1 + this % 3.
    pub clients: u8,
    /// A hostile host.
    pub rogue: bool,
    /// Which attacks it draws from (bit i: the protocol's attack i; none set: all).
    pub attacks: u8,
    /// Its connections at once: 1 + this % 3.
    pub rogue_parallel: u8,
    /// How long it holds a connection the server leaves open: 10 + 4 × this ms, and up to
    /// twice that.
    pub rogue_hold: u8,
    /// The encrypted protocol ("bits-hpke").
    pub encrypted: bool,
    /// Encrypted: 0 the library's cipher, 1 ChaCha20-Poly1305, 2 AES-128-GCM.
    pub cipher: u8,
    /// Encrypted: clients authenticate with a static key.
    pub client_auth: bool,
    /// Workload phase: 150 + this × 850 / 255 ms.
    pub duration: u8,
    /// Least latency: this % 6 ms.
    pub latency_min: u8,
    /// Latency spread: this % 20 ms.
    pub latency_spread: u8,
    /// turmoil's tcp_capacity: one of 16, 32, 64, 256 (256 with a hold).
    pub tcp_capacity: u8,
    /// One `max_frame` for both roles: one of 256, 1024, 4096, 1 MiB.
    pub max_frame: u8,
}

/// What the hosts do (probabilities are this / 256).
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
#[allow(missing_docs)]
pub struct Work {
    pub tick_ms: u8,
    pub sessions_per_client: u8,
    pub connect_gap: u8,
    pub connect_abort: u8,
    pub connect_abort_ms: u8,
    pub life_lo: u8,
    pub life_spread: u8,
    pub send_gap_lo: u8,
    pub send_gap_spread: u8,
    pub burst: u8,
    pub payload: u8,
    pub large: u8,
    pub large_payload: u8,
    pub bulk_mix: u8,
    pub reply: u8,
    pub reply_burst: u8,
    pub server_push_gap: Option<u8>,
    pub closer_client: u8,
    pub closer_server: u8,
    pub closer_both: u8,
    pub close_burst: u8,
    pub close_on_open: u8,
    pub mute: u8,
    pub too_large: u8,
    pub close_waiting: u8,
    pub close_again: u8,
    pub listen_pause: u8,
    pub keep_refs: u8,
}

/// One role's service configuration and whether its fault layers are on.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
#[allow(missing_docs)]
pub struct SideIn {
    /// One of 1, 2, 4, 8, 1024.
    pub max_sessions: u8,
    /// 20 + this ms.
    pub heartbeat: Option<u8>,
    /// 20 + 2 × this ms.
    pub idle_timeout: Option<u8>,
    /// One of 512, 4096, 65536, 1 MiB.
    pub send_queue_limit: u8,
    /// 2 × this ms.
    pub linger: u8,
    /// 20 + 2 × this ms.
    pub connect_timeout: u8,
    /// One of 512, 4096, 16384.
    pub segment_size: u8,
    /// One of 32, 8, 5, 4 (raised until `max_sessions` fits).
    pub id_bits: u8,
    /// Encrypted servers: 1 + this % 8 handshakes at once.
    pub max_handshakes: Option<u8>,
    /// Encrypted: 20 + 4 × this ms for the whole handshake.
    pub handshake_timeout: Option<u8>,
    /// Encrypted servers: 10 + 2 × this ms for the ClientHello.
    pub hello_timeout: Option<u8>,
    /// Encrypted servers: 1 + this % 4 handshakes per source.
    pub per_source: Option<u8>,
    /// Socket faults on in this role (scheduled ones apply; `laxsim run` of the scenario
    /// draws them with these probabilities / 1024).
    pub io: Option<[u8; 6]>,
    /// Record faults on in this role (encrypted only).
    pub ct: bool,
}

/// One scheduled fault. Times are mapped into the workload phase; hosts by index.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
#[allow(missing_docs)]
pub enum FaultIn {
    Partition {
        at: u16,
        dur: u16,
        server: u8,
        client: u8,
    },
    Hold {
        at: u16,
        dur: u16,
        server: u8,
        client: u8,
    },
    Spike {
        at: u16,
        dur: u16,
        max: u8,
    },
    Crash {
        at: u16,
        down: u16,
        server: u8,
    },
    /// The `op`-th poll (from 1) of the `read` or write side of stream `stream % 16`.
    Io {
        stream: u8,
        read: bool,
        op: u8,
        act: IoIn,
    },
    /// Record `record` (after the handshake) written on stream `stream % 16`.
    Ct {
        stream: u8,
        record: u8,
        act: CtIn,
    },
}

/// A socket fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
#[allow(missing_docs)]
pub enum IoIn {
    /// At most 1 + n bytes.
    Short {
        n: u16,
    },
    /// 1 + ms % 60 ms.
    Stall {
        ms: u8,
    },
    Reset,
}

/// A record fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
#[allow(missing_docs)]
pub enum CtIn {
    Corrupt { bit: u32 },
    Duplicate,
    Reorder,
    Splice { pick: u8 },
    Drop,
}

impl Input {
    /// Decodes an input (never fails: missing bytes read as zeros).
    pub fn decode(data: &[u8]) -> Input {
        Input::arbitrary_take_rest(Unstructured::new(data)).unwrap_or_else(|_| {
            // take_rest fails only on invalid variant data of a field: read zeros instead.
            Input::arbitrary_take_rest(Unstructured::new(&[])).expect("the empty input decodes")
        })
    }
}

/// A failing run: the oracle's violations (panics included), and how to replay it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The first violations, each with its session's last events.
    pub violations: Vec<String>,
    /// The run's trace hash.
    pub hash: u64,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} violation(s), trace-hash {:016x} \
             (`laxsim fuzz-input FILE` writes the scenario and schedule to replay):",
            self.violations.len(),
            self.hash
        )?;
        for v in &self.violations {
            writeln!(f, "- {v}")?;
        }
        Ok(())
    }
}

/// What one input runs: a scenario (its TOML text and the value parsed from it) and a
/// scripted fault schedule.
#[derive(Debug, Clone)]
pub struct Case {
    /// The scenario file's text.
    pub toml: String,
    /// The scenario, as parsed from `toml`.
    pub scenario: Arc<Scenario>,
    /// The fault schedule (scenario name, seed, plant and faults).
    pub schedule: Schedule,
}

fn p(x: u8) -> f64 {
    f64::from(x) / 256.0
}

fn pick<T: Copy>(x: u8, of: &[T]) -> T {
    of[usize::from(x) % of.len()]
}

fn service(s: &SideIn, max_frame: usize) -> ServiceCfg {
    let max_sessions = pick(s.max_sessions, &[1, 2, 4, 8, 1024]);
    let mut id_bits = pick(s.id_bits, &[32, 8, 5, 4]);
    while max_sessions > 1usize << (id_bits - 2) {
        id_bits += 1;
    }
    ServiceCfg {
        max_sessions,
        heartbeat_ms: s.heartbeat.map(|x| 20 + u64::from(x)),
        idle_timeout_ms: s.idle_timeout.map(|x| 20 + 2 * u64::from(x)),
        send_queue_limit: pick(s.send_queue_limit, &[512, 4096, 65536, 1 << 20]),
        linger_ms: 2 * u64::from(s.linger),
        max_frame,
        connect_timeout_ms: 20 + 2 * u64::from(s.connect_timeout),
        segment_size: pick(s.segment_size, &[512, 4096, 16384]),
        id_bits,
        max_handshakes: s.max_handshakes.map(|x| 1 + usize::from(x % 8)),
        handshake_timeout_ms: s.handshake_timeout.map(|x| 20 + 4 * u64::from(x)),
        hello_timeout_ms: s.hello_timeout.map(|x| 10 + 2 * u64::from(x)),
        max_handshakes_per_source: s.per_source.map(|x| 1 + usize::from(x % 4)),
    }
}

fn side(s: &SideIn, max_frame: usize, encrypted: bool, faulted: bool) -> Side {
    let mut io = IoFaults::default();
    if let Some(q) = s.io {
        let f = |x: u8| f64::from(x) / 1024.0;
        io.short_read = f(q[0]);
        io.short_write = f(q[1]);
        io.stall_read = f(q[2]) / 4.0;
        io.stall_write = f(q[3]) / 4.0;
        io.reset_read = f(q[4]) / 64.0;
        io.reset_write = f(q[5]) / 64.0;
        // Scheduled socket faults apply only where the layer is on (not `is_off`).
        if io.is_off() && faulted {
            io.short_read = 1.0 / 1024.0;
        }
    }
    if s.ct && encrypted {
        io.ct_corrupt = 0.004;
        io.ct_duplicate = 0.004;
        io.ct_reorder = 0.004;
        io.ct_splice = 0.004;
        io.ct_drop = 0.004;
    }
    Side {
        service: service(s, max_frame),
        io,
    }
}

fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Case {
    /// The scenario and schedule of `data` (see the module docs); `plant` names a planted
    /// library bug (a build with feature `planted-bugs`).
    pub fn new(data: &[u8], plant: Option<&str>) -> Case {
        let input = Input::decode(data);
        Case::from_input(&input, &format!("fuzz-{:08x}", fnv(data) as u32), plant)
    }

    /// The case of a decoded input, its scenario called `name`.
    pub fn from_input(input: &Input, name: &str, plant: Option<&str>) -> Case {
        let sh = &input.shape;
        let w = &input.work;
        let protocol = if sh.encrypted {
            Protocol::BitsHpke
        } else {
            Protocol::Bits
        };
        let duration_ms = 150 + u64::from(sh.duration) * (MAX_DURATION_MS - 150) / 255;
        let servers: u16 = if sh.two_servers { 2 } else { 1 };
        let clients: u16 = 1 + u16::from(sh.clients % 3);
        let max_frame = pick(sh.max_frame, &[256, 1024, 4096, 1 << 20]);

        // The schedule: every timed fault inside [50, duration - 50] (as laxsim draws them).
        let lat_min = u64::from(sh.latency_min % 6);
        let mut faults = vec![Fault::Latency {
            min_ms: lat_min,
            max_ms: lat_min + u64::from(sh.latency_spread % 20),
        }];
        let span = duration_ms - 100;
        let window = |at: u16, dur: u16| -> (u64, u64) {
            let dur = 1 + u64::from(dur) % span;
            let at = 50 + u64::from(at) % (span - dur + 1);
            (at, dur)
        };
        let (mut io_server, mut io_client) = (false, false);
        for f in &input.faults {
            match *f {
                FaultIn::Partition {
                    at,
                    dur,
                    server,
                    client,
                }
                | FaultIn::Hold {
                    at,
                    dur,
                    server,
                    client,
                } => {
                    let (at_ms, dur_ms) = window(at, dur);
                    let a = format!("server{}", u16::from(server) % servers);
                    let b = format!("client{}", u16::from(client) % clients);
                    faults.push(if matches!(f, FaultIn::Partition { .. }) {
                        Fault::Partition {
                            at_ms,
                            dur_ms,
                            a,
                            b,
                        }
                    } else {
                        Fault::Hold {
                            at_ms,
                            dur_ms,
                            a,
                            b,
                        }
                    });
                }
                FaultIn::Spike { at, dur, max } => {
                    let (at_ms, dur_ms) = window(at, dur);
                    faults.push(Fault::Spike {
                        at_ms,
                        dur_ms,
                        max_ms: 20 + u64::from(max),
                    });
                }
                FaultIn::Crash { at, down, server } => {
                    let (at_ms, down_ms) = window(at, down);
                    faults.push(Fault::Crash {
                        at_ms,
                        down_ms,
                        host: format!("server{}", u16::from(server) % servers),
                    });
                }
                FaultIn::Io {
                    stream,
                    read,
                    op,
                    act,
                } => {
                    // Which role owns a stream is known only when the run creates it: switch
                    // the layer on in both roles for any scheduled socket fault.
                    io_server = true;
                    io_client = true;
                    faults.push(Fault::Io {
                        t_us: 0,
                        stream: u64::from(stream % 16),
                        dir: if read { Dir::Read } else { Dir::Write },
                        op: 1 + u64::from(op),
                        act: match act {
                            IoIn::Short { n } => IoAct::Short {
                                n: 1 + u32::from(n),
                            },
                            IoIn::Stall { ms } => IoAct::Stall {
                                us: 1000 * (1 + u64::from(ms % 60)),
                            },
                            IoIn::Reset => IoAct::Reset,
                        },
                    });
                }
                FaultIn::Ct {
                    stream,
                    record,
                    act,
                } => {
                    if !sh.encrypted {
                        continue;
                    }
                    faults.push(Fault::Ct {
                        t_us: 0,
                        stream: u64::from(stream % 16),
                        record: u64::from(record),
                        act: match act {
                            CtIn::Corrupt { bit } => CtAct::Corrupt { bit },
                            CtIn::Duplicate => CtAct::Duplicate,
                            CtIn::Reorder => CtAct::Reorder,
                            CtIn::Splice { pick } => CtAct::Splice {
                                pick: u32::from(pick),
                            },
                            CtIn::Drop => CtAct::Drop,
                        },
                    });
                }
            }
        }

        let attacks: Vec<String> = {
            let mine: Vec<&str> = Attack::ALL
                .iter()
                .filter(|(a, _)| a.encrypted() == sh.encrypted)
                .map(|(_, n)| *n)
                .collect();
            let chosen: Vec<String> = mine
                .iter()
                .enumerate()
                .filter(|(i, _)| sh.attacks & (1 << i) != 0)
                .map(|(_, n)| n.to_string())
                .collect();
            if chosen.is_empty() {
                mine.iter().map(|n| n.to_string()).collect()
            } else {
                chosen
            }
        };
        let range = |lo: u64, spread: u64| [lo, lo + spread];
        let mut sc: Scenario = Scenario::parse(&format!(
            "name = {name:?}\nduration_ms = {duration_ms}\n[hosts]\nservers = 1\nclients = 1\n"
        ))
        .expect("the skeleton scenario parses");
        sc.description = "written by `laxsim fuzz-input` from a fuzz input: its faults are in \
                          the schedule file next to it (`laxsim replay --schedule`)"
            .into();
        sc.hosts.servers = servers;
        sc.hosts.clients = clients;
        sc.hosts.rogues = u16::from(sh.rogue);
        sc.net.latency_ms = [lat_min, lat_min + u64::from(sh.latency_spread % 20)];
        // turmoil panics when SYNs overflow a listener's accept backlog (`tcp_capacity`; a
        // real stack drops the SYN), which clients that abandon and retry connects reach with
        // a capacity of 4, and a hold reaches by releasing every SYN sent during it at once:
        // no capacity under 16, and 256 with a hold.
        let holds = faults.iter().any(|f| matches!(f, Fault::Hold { .. }));
        sc.net.tcp_capacity = if holds {
            256
        } else {
            pick(sh.tcp_capacity, &[16, 32, 64, 256])
        };
        sc.protocol = protocol;
        if sh.encrypted {
            sc.cipher = match sh.cipher % 3 {
                1 => Some(CipherName::ChaCha20Poly1305),
                2 => Some(CipherName::Aes128Gcm),
                _ => None,
            };
            sc.client_auth = sh.client_auth;
        }
        if sh.rogue {
            sc.rogue.attacks = attacks;
            sc.rogue.parallel = 1 + usize::from(sh.rogue_parallel % 3);
            let hold = 10 + 4 * u64::from(sh.rogue_hold);
            sc.rogue.hold_ms = [hold, 2 * hold];
        }
        sc.server = side(&input.server, max_frame, sh.encrypted, io_server);
        sc.client = side(&input.client, max_frame, sh.encrypted, io_client);
        let wl = &mut sc.workload;
        wl.tick_ms = 1 + u64::from(w.tick_ms % 3);
        wl.sessions_per_client = 1 + usize::from(w.sessions_per_client % 3);
        wl.connect_gap_ms = [0, u64::from(w.connect_gap % 30)];
        wl.connect_abort = p(w.connect_abort) / 2.0;
        wl.connect_abort_ms = [0, u64::from(w.connect_abort_ms % 10)];
        wl.life_ms = range(u64::from(w.life_lo), 2 * u64::from(w.life_spread));
        wl.send_gap_ms = range(
            1 + u64::from(w.send_gap_lo % 20),
            u64::from(w.send_gap_spread % 40),
        );
        wl.burst = [1, 1 + u64::from(w.burst % 8)];
        wl.payload = [0, 4 * u64::from(w.payload)];
        wl.large = p(w.large) / 4.0;
        wl.large_payload = [1000, 1000 + 200 * u64::from(w.large_payload)];
        wl.bulk_mix = p(w.bulk_mix);
        wl.reply = p(w.reply);
        wl.reply_burst = [1, 1 + u64::from(w.reply_burst % 4)];
        wl.server_push_gap_ms = w.server_push_gap.map(|x| range(5 + u64::from(x % 50), 30));
        wl.closer_client = p(w.closer_client);
        wl.closer_server = p(w.closer_server);
        wl.closer_both = p(w.closer_both);
        wl.close_burst = p(w.close_burst);
        wl.close_on_open = p(w.close_on_open) / 4.0;
        wl.mute = p(w.mute) / 2.0;
        wl.too_large = p(w.too_large) / 8.0;
        wl.close_waiting = p(w.close_waiting) / 8.0;
        wl.close_again = p(w.close_again) / 2.0;
        wl.listen_pause = p(w.listen_pause) / 32.0;
        wl.keep_refs = usize::from(w.keep_refs % 33);

        // Through TOML and back: the run uses exactly what the scenario file says.
        let toml = toml::to_string(&sc).expect("a scenario serializes");
        let scenario = Arc::new(Scenario::parse(&toml).unwrap_or_else(|e| {
            panic!("laxsim::fuzz made a scenario that does not parse back: {e}\n{toml}")
        }));
        Case {
            toml,
            scenario,
            schedule: Schedule {
                scenario: name.to_string(),
                seed: input.seed,
                plant: plant.map(str::to_string),
                faults,
            },
        }
    }

    /// Runs the case as `laxsim replay --schedule` runs a schedule.
    pub fn run(&self) -> Outcome {
        run_seed(
            &self.scenario,
            &RunOpts {
                seed: self.schedule.seed,
                plant: self.schedule.plant.clone(),
                schedule: Some(self.schedule.faults.clone()),
                ..Default::default()
            },
        )
    }

    /// Writes `DIR/NAME.toml` (the scenario, alone in `dir` so `--scenarios DIR` loads only
    /// it) and `DIR/NAME.schedule.json`; returns the schedule's path.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let name = &self.schedule.scenario;
        std::fs::write(dir.join(format!("{name}.toml")), &self.toml)?;
        let sched = dir.join(format!("{name}.schedule.json"));
        let json = serde_json::to_string_pretty(&self.schedule).map_err(std::io::Error::other)?;
        std::fs::write(&sched, json + "\n")?;
        Ok(sched)
    }

    /// The `laxsim replay` command for the files [`Case::write`] wrote to `dir`.
    pub fn replay_command(&self, dir: &Path) -> String {
        let name = &self.schedule.scenario;
        format!(
            "laxsim replay --scenarios {} --scenario {name} --seed {} --schedule {}{}",
            dir.display(),
            self.schedule.seed,
            dir.join(format!("{name}.schedule.json")).display(),
            self.schedule
                .plant
                .as_deref()
                .map_or(String::new(), |p| format!(" --plant {p}"))
        )
    }
}

/// The fuzz target: runs `data`'s case with the full oracle; any violation (a panic inside
/// the run is one) is an error.
pub fn run(data: &[u8]) -> Result<(), Violation> {
    run_planted(data, None)
}

/// [`run`] with a planted library bug (a build with feature `planted-bugs`).
pub fn run_planted(data: &[u8], plant: Option<&str>) -> Result<(), Violation> {
    let o = Case::new(data, plant).run();
    if o.passed() {
        Ok(())
    } else {
        Err(Violation {
            violations: o.violations.clone(),
            hash: o.hash,
        })
    }
}
