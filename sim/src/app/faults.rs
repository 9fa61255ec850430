//! Fault profiles for a simulation test of a user's service ([`Faults`]): what the socket
//! layer of every server and client does wrong (short reads and writes, stalls, resets) and
//! what the network does (latency, partitions, holds, latency spikes, server crashes).
//!
//! Three ways to say it: a named profile ([`Faults::profile`]), a scenario file with the schema
//! of laxsim's own `scenarios/*.toml` (only its `net`, `server.io`, `client.io`, `faults` and
//! `duration_ms` are used: [`Faults::from_scenario_file`]), or the builder methods.

use std::path::Path;
use std::time::Duration;

use crate::scenario::{self, IoFaults, Net, Scenario, Spikes, Timed};

/// The faults of a simulation test. Network faults are planned from the seed inside the
/// fault window ([`Faults::window`]), so they are over before the run drains.
#[derive(Debug, Clone)]
pub struct Faults {
    pub(crate) name: String,
    pub(crate) net: Net,
    pub(crate) server_io: IoFaults,
    pub(crate) client_io: IoFaults,
    pub(crate) faults: scenario::Faults,
    pub(crate) window_ms: u64,
}

/// The named profiles [`Faults::profile`] knows.
pub const PROFILES: &[&str] = &[
    "none",
    "calm",
    "socket-chaos",
    "network",
    "crashes",
    "everything",
];

fn socket_chaos() -> IoFaults {
    IoFaults {
        short_read: 0.3,
        short_write: 0.3,
        stall_read: 0.03,
        stall_write: 0.03,
        stall_ms: [1, 10],
        reset_read: 0.002,
        reset_write: 0.004,
        ..IoFaults::default()
    }
}

fn network() -> scenario::Faults {
    scenario::Faults {
        partitions: Timed {
            count: [0, 2],
            dur_ms: [100, 500],
        },
        holds: Timed {
            count: [0, 2],
            dur_ms: [50, 300],
        },
        spikes: Spikes {
            count: [0, 2],
            dur_ms: [100, 400],
            max_ms: [50, 200],
        },
        crashes: Timed::default(),
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::none()
    }
}

impl Faults {
    /// No faults: 1 ms latency, sockets that do as they are told.
    pub fn none() -> Faults {
        Faults {
            name: "none".into(),
            net: Net {
                latency_ms: [1, 1],
                ..Net::default()
            },
            server_io: IoFaults::default(),
            client_io: IoFaults::default(),
            faults: scenario::Faults::default(),
            window_ms: 2000,
        }
    }

    /// A named profile (see [`PROFILES`]):
    ///
    /// - `none`: no faults, 1 ms latency;
    /// - `calm`: latency drawn from 1–10 ms per run, nothing else;
    /// - `socket-chaos`: short reads and writes, stalls and resets (often mid-frame) on both
    ///   sides, as laxsim's `socket-chaos` scenario;
    /// - `network`: partitions, holds and latency spikes between servers and clients;
    /// - `crashes`: one server crash and restart per run, and `calm` latency;
    /// - `everything`: all of the above, with fewer resets.
    pub fn profile(name: &str) -> Result<Faults, String> {
        let calm = Net::default();
        let mut f = Faults::none();
        f.name = name.to_string();
        match name {
            "none" => {}
            "calm" => f.net = calm,
            "socket-chaos" => {
                f.net.latency_ms = [1, 8];
                f.server_io = socket_chaos();
                f.client_io = socket_chaos();
            }
            "network" => {
                f.net = calm;
                f.faults = network();
            }
            "crashes" => {
                f.net = calm;
                f.faults.crashes = Timed {
                    count: [1, 1],
                    dur_ms: [100, 500],
                };
            }
            "everything" => {
                f.net = calm;
                let io = IoFaults {
                    reset_read: 0.0005,
                    reset_write: 0.001,
                    ..socket_chaos()
                };
                f.server_io = io.clone();
                f.client_io = io;
                f.faults = network();
                f.faults.crashes = Timed {
                    count: [0, 1],
                    dur_ms: [100, 500],
                };
            }
            _ => {
                return Err(format!(
                    "no fault profile {name:?} (known: {})",
                    PROFILES.join(", ")
                ));
            }
        }
        Ok(f)
    }

    /// The faults of a laxsim scenario: its `net`, `server.io`, `client.io` and `faults`, and
    /// its `duration_ms` as the fault window. Its hosts and workload are not used (your hosts
    /// and your code are the workload). Ciphertext faults (`ct_*`) are not applied.
    pub fn from_scenario(sc: &Scenario) -> Faults {
        Faults {
            name: sc.name.clone(),
            net: sc.net.clone(),
            server_io: sc.server.io.clone(),
            client_io: sc.client.io.clone(),
            faults: sc.faults.clone(),
            window_ms: sc.duration_ms,
        }
    }

    /// Reads a scenario file (the schema of laxsim's `scenarios/*.toml`): see
    /// [`Faults::from_scenario`].
    pub fn from_scenario_file(path: impl AsRef<Path>) -> Result<Faults, String> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let sc = Scenario::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Faults::from_scenario(&sc))
    }

    /// The profile's name (for the summary).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Network faults are planned inside the first `window` of simulated time (default 2 s).
    pub fn window(mut self, window: Duration) -> Faults {
        self.window_ms = window.as_millis().clamp(1, u64::MAX as u128) as u64;
        self
    }

    /// Base message latency, drawn per run from `[min, max]` milliseconds.
    pub fn latency_ms(mut self, min: u64, max: u64) -> Faults {
        self.net.latency_ms = [min, max.max(min)];
        self
    }

    /// Socket faults of every server's sockets.
    pub fn server_io(mut self, io: IoFaults) -> Faults {
        self.server_io = io;
        self
    }

    /// Socket faults of every client's sockets.
    pub fn client_io(mut self, io: IoFaults) -> Faults {
        self.client_io = io;
        self
    }

    /// Partitions between a server and a client per run (`count` drawn from `[lo, hi]`),
    /// each lasting `dur_ms` (drawn), then repaired.
    pub fn partitions(mut self, count: [u64; 2], dur_ms: [u64; 2]) -> Faults {
        self.faults.partitions = Timed { count, dur_ms };
        self
    }

    /// Holds (messages delayed, none lost) between a server and a client, then released.
    pub fn holds(mut self, count: [u64; 2], dur_ms: [u64; 2]) -> Faults {
        self.faults.holds = Timed { count, dur_ms };
        self
    }

    /// Latency spikes: the maximum latency raised to `max_ms` (drawn) for `dur_ms`.
    pub fn spikes(mut self, count: [u64; 2], dur_ms: [u64; 2], max_ms: [u64; 2]) -> Faults {
        self.faults.spikes = Spikes {
            count,
            dur_ms,
            max_ms,
        };
        self
    }

    /// Server crashes: the host's software is dropped (every task, socket and service of
    /// it) and, `down_ms` later, started again (your server function runs again).
    pub fn crashes(mut self, count: [u64; 2], down_ms: [u64; 2]) -> Faults {
        self.faults.crashes = Timed {
            count,
            dur_ms: down_ms,
        };
        self
    }

    /// The scenario the simulator's parts (fault recorder, faulty runtime, state) run on: the
    /// hosts counted, everything else from the profile.
    pub(crate) fn scenario(&self, test: &str, servers: u16, clients: u16) -> Scenario {
        let mut text = format!(
            "name = {test:?}\nduration_ms = {}\n[hosts]\nservers = {servers}\nclients = {clients}\n",
            self.window_ms.max(1)
        );
        text.push('\n');
        let mut sc = match Scenario::parse(&text) {
            Ok(sc) => sc,
            Err(e) => unreachable!("a generated scenario parses: {e}"),
        };
        sc.net = self.net.clone();
        sc.server.io = IoFaults {
            ct_corrupt: 0.0,
            ct_duplicate: 0.0,
            ct_reorder: 0.0,
            ct_splice: 0.0,
            ct_drop: 0.0,
            ..self.server_io.clone()
        };
        sc.client.io = IoFaults {
            ct_corrupt: 0.0,
            ct_duplicate: 0.0,
            ct_reorder: 0.0,
            ct_splice: 0.0,
            ct_drop: 0.0,
            ..self.client_io.clone()
        };
        sc.faults = self.faults.clone();
        sc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_profile_builds_and_unknown_ones_fail() {
        for p in PROFILES {
            let f = Faults::profile(p).unwrap();
            let sc = f.scenario("t", 1, 2);
            assert_eq!(sc.host_count(), 3);
        }
        assert!(Faults::profile("chaos-monkey").is_err());
        assert!(
            Faults::profile("socket-chaos")
                .unwrap()
                .server_io
                .short_read
                > 0.0
        );
    }

    #[test]
    fn a_scenario_file_gives_its_faults() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let f = Faults::from_scenario_file(dir.join("socket-chaos.toml")).unwrap();
        assert_eq!(f.name(), "socket-chaos");
        assert!(f.client_io.reset_write > 0.0);
        assert_eq!(f.window_ms, 2000);
    }
}
