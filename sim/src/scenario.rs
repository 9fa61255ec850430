//! Scenarios as data: the hosts, the workload, the faults and the service configuration of one
//! simulated run, read from `scenarios/*.toml`.
//!
//! Every field except `name`, `duration_ms` and `[hosts]` has a default, so a scenario file
//! only says what makes it different. Unknown keys are errors (a typo must not silently fall
//! back to a default).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An inclusive `[lo, hi]` range, written as a two-element array in TOML.
pub type Span = [u64; 2];

/// The most faults of one kind a scenario may draw per run (each is an event the simulation
/// schedules; a hand-written count in the billions would never finish drawing).
pub const MAX_FAULTS: u64 = 10_000;

/// The smallest `max_record` a scenario may set (the library's floor).
pub const MIN_RECORD: usize = 64;
/// The largest `max_record` a scenario may set (records are read whole into one buffer).
pub const MAX_RECORD: usize = 1 << 20;

/// One scenario file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The name `--scenario` selects (the file name without `.toml` by convention).
    pub name: String,
    /// One line on what the scenario is for.
    #[serde(default)]
    pub description: String,
    /// Lifecycle edges this scenario must reach at least once over a suite run.
    #[serde(default)]
    pub expect_edges: Vec<String>,
    /// Edges every single seed must reach at least this many times (else the seed fails:
    /// the scenario is too weak to mean anything).
    #[serde(default)]
    pub expect_min: std::collections::BTreeMap<String, u64>,
    /// Length of the workload phase (sim time). Then every host drains and checks quiescence.
    pub duration_ms: u64,
    /// Upper bound on the drain phase: hosts must be quiescent by then.
    #[serde(default = "default_drain")]
    pub drain_ms: u64,
    /// The hosts.
    pub hosts: Hosts,
    /// The simulated network.
    #[serde(default)]
    pub net: Net,
    /// Service configuration and socket faults of the servers.
    #[serde(default)]
    pub server: Side,
    /// Service configuration and socket faults of the clients.
    #[serde(default)]
    pub client: Side,
    /// What the hosts do.
    #[serde(default)]
    pub workload: Workload,
    /// Network-level faults (planned from the seed at the start of the run).
    #[serde(default)]
    pub faults: Faults,
    /// The protocol every session uses: `"bits"` (the default) or `"bits-hpke"` (encrypted).
    #[serde(default)]
    pub protocol: Protocol,
    /// The AEAD clients propose on `"bits-hpke"` (default: the library's,
    /// `Cipher::preferred()`).
    #[serde(default)]
    pub cipher: Option<CipherName>,
    /// On `"bits-hpke"`: clients authenticate with a static key (they share one, derived from
    /// the seed), and servers accept only that key. Default off (anonymous clients).
    #[serde(default)]
    pub client_auth: bool,
    /// What the hostile hosts (`hosts.rogues`) send.
    #[serde(default)]
    pub rogue: RogueCfg,
    /// On `"bits-hpke"`: the largest record payload of every host (`Encryption::max_record`,
    /// at least 64; both ends must agree, as a record over the reader's limit is refused).
    /// Small records cut frames across records and fill records exactly. Default: the
    /// library's.
    #[serde(default)]
    pub max_record: Option<usize>,
}

/// The protocol of a scenario's sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Protocol {
    /// Plain frames.
    #[default]
    #[serde(rename = "bits")]
    Bits,
    /// The encrypted protocol: an HPKE handshake, then authenticated records. The servers of
    /// a run share one static key pair derived from the seed; clients pin its public key.
    #[serde(rename = "bits-hpke")]
    BitsHpke,
}

impl Protocol {
    /// The library's protocol.
    pub fn lib(self) -> laxnet::Protocol {
        match self {
            Protocol::Bits => laxnet::Protocol::Bits,
            Protocol::BitsHpke => laxnet::Protocol::BitsHpke,
        }
    }

    /// True for `"bits-hpke"`.
    pub fn encrypted(self) -> bool {
        self == Protocol::BitsHpke
    }
}

/// The AEAD of an encrypted scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum CipherName {
    /// ChaCha20-Poly1305.
    #[serde(rename = "chacha20poly1305")]
    ChaCha20Poly1305,
    /// AES-128-GCM.
    #[serde(rename = "aes128gcm")]
    Aes128Gcm,
    /// The library's test-only cipher that neither encrypts nor authenticates (feature
    /// `null-cipher`): with it, ciphertext faults go undetected and the oracle must say so.
    #[cfg(feature = "null-cipher")]
    #[serde(rename = "null")]
    Null,
}

impl CipherName {
    /// The library's cipher.
    pub fn cipher(self) -> laxnet::Cipher {
        match self {
            CipherName::ChaCha20Poly1305 => laxnet::Cipher::ChaCha20Poly1305,
            CipherName::Aes128Gcm => laxnet::Cipher::Aes128Gcm,
            #[cfg(feature = "null-cipher")]
            CipherName::Null => laxnet::Cipher::Null,
        }
    }
}

fn default_drain() -> u64 {
    2000
}

/// Host counts. Servers are named `server0..`, clients `client0..`; every host is a turmoil
/// `host` (so it can crash and restart), and every client connects to every server in turn.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hosts {
    /// Number of servers.
    pub servers: u16,
    /// Number of clients.
    pub clients: u16,
    /// Number of hostile hosts (`rogue0..`): they connect to the servers with raw sockets,
    /// not through laxnet, and send what no honest peer sends ([`RogueCfg`]).
    #[serde(default)]
    pub rogues: u16,
}

/// What hostile hosts do: each connection sends one attack, drawn from `attacks`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RogueCfg {
    /// The attacks to draw from (`crate::attack::Attack` names). Plaintext: `oversized`,
    /// `short`, `unknown-id`, `undecodable`, `trailing`, `truncated`, `boundary`. Encrypted:
    /// `hello-garbage`, `hello-truncated`, `silent`, `trickle`.
    pub attacks: Vec<String>,
    /// Pause between two connections of one rogue host.
    pub connect_gap_ms: Span,
    /// Connections each rogue host keeps open at once (silent ones hold a handshake slot).
    pub parallel: usize,
    /// How long a rogue keeps a connection that the server does not close.
    pub hold_ms: Span,
}

impl Default for RogueCfg {
    fn default() -> Self {
        RogueCfg {
            attacks: Vec::new(),
            connect_gap_ms: [5, 40],
            parallel: 1,
            hold_ms: [200, 600],
        }
    }
}

/// turmoil network settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Net {
    /// Base message latency range `[min, max]` in milliseconds.
    pub latency_ms: Span,
    /// turmoil's `tcp_capacity` (segments: receive queue, send credits, accept backlog).
    pub tcp_capacity: usize,
}

impl Default for Net {
    fn default() -> Self {
        Net {
            latency_ms: [1, 10],
            tcp_capacity: 256,
        }
    }
}

/// One role's service configuration and socket-layer faults.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Side {
    /// `laxnet::Config` fields.
    pub service: ServiceCfg,
    /// Faults injected in this role's sockets (the `FaultyRuntime`).
    pub io: IoFaults,
}

/// The `laxnet::Config` fields a scenario can set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceCfg {
    /// `max_sessions`.
    pub max_sessions: usize,
    /// `heartbeat` in ms (absent: off).
    pub heartbeat_ms: Option<u64>,
    /// `idle_timeout` in ms (absent: off).
    pub idle_timeout_ms: Option<u64>,
    /// `send_queue_limit` in bytes.
    pub send_queue_limit: usize,
    /// `linger` in ms.
    pub linger_ms: u64,
    /// `max_frame` in bytes.
    pub max_frame: usize,
    /// `connect_timeout` in ms.
    pub connect_timeout_ms: u64,
    /// `segment_size` in bytes.
    pub segment_size: usize,
    /// Width of the id space in bits (the library's test hook `id_bits`): fewer bits make
    /// the id counter wrap within a run, so the horizon invariants bite. At most
    /// `2^(id_bits - 2)` sessions fit (`max_sessions` must not exceed it).
    pub id_bits: u32,
    /// Encrypted servers: handshakes in progress at once (`Encryption::max_handshakes`).
    pub max_handshakes: Option<usize>,
    /// Encrypted: the whole handshake's timeout in ms (`Encryption::handshake_timeout`).
    pub handshake_timeout_ms: Option<u64>,
    /// Encrypted servers: the deadline for the ClientHello, in ms (`Encryption::hello_timeout`).
    pub hello_timeout_ms: Option<u64>,
    /// Encrypted servers: handshakes in progress from one source
    /// (`Encryption::max_handshakes_per_source`).
    pub max_handshakes_per_source: Option<usize>,
}

impl Default for ServiceCfg {
    fn default() -> Self {
        ServiceCfg {
            max_sessions: 1024,
            heartbeat_ms: None,
            idle_timeout_ms: None,
            send_queue_limit: 1 << 20,
            linger_ms: 400,
            max_frame: 1 << 20,
            connect_timeout_ms: 500,
            segment_size: 16 << 10,
            id_bits: 32,
            max_handshakes: None,
            handshake_timeout_ms: None,
            hello_timeout_ms: None,
            max_handshakes_per_source: None,
        }
    }
}

impl ServiceCfg {
    /// The linger time.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// The heartbeat timeout.
    pub fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat_ms.map(Duration::from_millis)
    }
}

/// Per-operation probabilities of socket faults, drawn for every poll of a read or write.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IoFaults {
    /// A read returns fewer bytes than available.
    pub short_read: f64,
    /// A write accepts fewer bytes than offered.
    pub short_write: f64,
    /// A read stalls (returns `Pending`, wakes after `stall_ms`).
    pub stall_read: f64,
    /// A write stalls.
    pub stall_write: f64,
    /// Stall length range in ms.
    pub stall_ms: Span,
    /// A read fails with `ConnectionReset`.
    pub reset_read: f64,
    /// A write fails with `ConnectionReset` (possibly after a short write: mid-frame).
    pub reset_write: f64,
    /// Ciphertext faults (encrypted scenarios only), drawn per record this role writes after
    /// the handshake, at most one per stream: flip a bit inside the record.
    pub ct_corrupt: f64,
    /// Send the record twice.
    pub ct_duplicate: f64,
    /// Swap the record with the next one.
    pub ct_reorder: f64,
    /// Insert, before the record, a record taken from another stream of the same host.
    pub ct_splice: f64,
    /// Leave the record out.
    pub ct_drop: f64,
}

impl Default for IoFaults {
    fn default() -> Self {
        IoFaults {
            short_read: 0.0,
            short_write: 0.0,
            stall_read: 0.0,
            stall_write: 0.0,
            stall_ms: [1, 20],
            reset_read: 0.0,
            reset_write: 0.0,
            ct_corrupt: 0.0,
            ct_duplicate: 0.0,
            ct_reorder: 0.0,
            ct_splice: 0.0,
            ct_drop: 0.0,
        }
    }
}

impl IoFaults {
    /// True if no socket fault (short, stall, reset) can ever be injected.
    pub fn is_off(&self) -> bool {
        self.short_read == 0.0
            && self.short_write == 0.0
            && self.stall_read == 0.0
            && self.stall_write == 0.0
            && self.reset_read == 0.0
            && self.reset_write == 0.0
    }

    /// True if a ciphertext fault can be injected.
    pub fn ciphertext(&self) -> bool {
        self.ct_corrupt + self.ct_duplicate + self.ct_reorder + self.ct_splice + self.ct_drop > 0.0
    }
}

/// What the hosts do.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Period of each host's workload loop.
    pub tick_ms: u64,
    /// Sessions each client tries to keep open.
    pub sessions_per_client: usize,
    /// Pause between two connect attempts of a client.
    pub connect_gap_ms: Span,
    /// Probability a connect attempt is abandoned after `connect_abort_ms` (close while
    /// connecting).
    pub connect_abort: f64,
    /// When an abandoned connect is dropped.
    pub connect_abort_ms: Span,
    /// How long a session lives before its closer closes it.
    pub life_ms: Span,
    /// Pause between two bursts a client sends on a session.
    pub send_gap_ms: Span,
    /// Messages per burst.
    pub burst: Span,
    /// Payload bytes of an ordinary message.
    pub payload: Span,
    /// Probability a message is large.
    pub large: f64,
    /// Payload bytes of a large message.
    pub large_payload: Span,
    /// Fraction of messages sent as the second message type (`Bulk`).
    pub bulk_mix: f64,
    /// Probability the server answers a received message.
    pub reply: f64,
    /// Messages per answer.
    pub reply_burst: Span,
    /// If set, servers also push bursts on every session at this interval.
    pub server_push_gap_ms: Option<Span>,
    /// Probability the client closes a session when its life ends.
    pub closer_client: f64,
    /// Probability the server closes it (else, with `closer_both`, both close at once;
    /// with the remaining probability nobody closes before the end of the run).
    pub closer_server: f64,
    /// Probability both ends close at once.
    pub closer_both: f64,
    /// Probability the closer sends a burst right before `close()` (close during a send
    /// burst: everything must still arrive).
    pub close_burst: f64,
    /// Probability a side closes the session from inside its `Opened` callback.
    pub close_on_open: f64,
    /// Probability a server session never sends anything (a silent peer).
    pub mute: f64,
    /// Probability a send is a message of about `max_frame` bytes: a few fit exactly, the
    /// rest must fail with `TooLarge` and leave nothing behind (the traffic after it must
    /// arrive intact).
    pub too_large: f64,
    /// Probability per workload tick that a session whose sender waits in `ready()` is closed
    /// (by its own side): the waiter must have its answer within a tick.
    pub close_waiting: f64,
    /// Probability per workload tick that a session seen closing (and not yet closed) is
    /// closed again by its application: close() on a closing session must change nothing.
    pub close_again: f64,
    /// Probability per workload tick that a server stops listening (`Acceptor::close`) for
    /// `listen_pause_ms`, then listens on the same port again: no connection may be accepted
    /// meanwhile.
    pub listen_pause: f64,
    /// How long a paused listener stays closed.
    pub listen_pause_ms: Span,
    /// Every host also receives through an `Inbox` (its sessions' events and `Data`),
    /// drained with `recv` and `try_recv`: it must see what the callbacks see, in order
    /// (`workload::inbox`).
    pub inbox: bool,
    /// Session refs kept after close, to probe with sends later.
    pub keep_refs: usize,
    /// Pause between two stale-ref probes.
    pub probe_gap_ms: Span,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            tick_ms: 2,
            sessions_per_client: 2,
            connect_gap_ms: [0, 20],
            connect_abort: 0.0,
            connect_abort_ms: [0, 3],
            life_ms: [100, 600],
            send_gap_ms: [5, 30],
            burst: [1, 3],
            payload: [0, 200],
            large: 0.0,
            large_payload: [2000, 40000],
            bulk_mix: 0.2,
            reply: 1.0,
            reply_burst: [1, 1],
            server_push_gap_ms: None,
            closer_client: 0.6,
            closer_server: 0.3,
            closer_both: 0.1,
            close_burst: 0.3,
            close_on_open: 0.0,
            mute: 0.0,
            too_large: 0.0,
            close_waiting: 0.0,
            close_again: 0.0,
            listen_pause: 0.0,
            listen_pause_ms: [20, 100],
            inbox: false,
            keep_refs: 16,
            probe_gap_ms: [10, 40],
        }
    }
}

/// A class of timed network faults: how many, and how long each lasts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timed {
    /// How many per run.
    pub count: Span,
    /// How long each lasts (partition until repair, hold until release, crash until restart).
    pub dur_ms: Span,
}

impl Default for Timed {
    fn default() -> Self {
        Timed {
            count: [0, 0],
            dur_ms: [100, 500],
        }
    }
}

/// Latency spikes: the maximum message latency is raised for a while.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Spikes {
    /// How many per run.
    pub count: Span,
    /// How long each lasts.
    pub dur_ms: Span,
    /// The raised maximum latency.
    pub max_ms: Span,
}

impl Default for Spikes {
    fn default() -> Self {
        Spikes {
            count: [0, 0],
            dur_ms: [100, 400],
            max_ms: [50, 200],
        }
    }
}

/// Network-level faults, planned from the seed (or read from a schedule).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Partitions between a client and a server, later repaired.
    pub partitions: Timed,
    /// Holds (messages delayed, none lost) between a client and a server, later released.
    pub holds: Timed,
    /// Raised latency for a while.
    pub spikes: Spikes,
    /// Server crashes, each followed by a restart.
    pub crashes: Timed,
}

impl Scenario {
    /// The largest record payload of this scenario's encrypted sessions.
    pub fn max_record(&self) -> usize {
        self.max_record
            .unwrap_or_else(|| laxnet::Encryption::default().max_record)
    }

    /// Parses one scenario from TOML text.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if self.hosts.servers == 0 || self.hosts.clients == 0 {
            return Err(format!(
                "{}: needs at least one server and one client",
                self.name
            ));
        }
        let h = &self.hosts;
        if u32::from(h.servers) + u32::from(h.clients) + u32::from(h.rogues) > u32::from(u16::MAX) {
            return Err(format!("{}: at most {} hosts in all", self.name, u16::MAX));
        }
        if self.duration_ms.checked_add(self.drain_ms).is_none() {
            return Err(format!("{}: duration_ms + drain_ms overflows", self.name));
        }
        let f = &self.faults;
        for (kind, count) in [
            ("partitions", f.partitions.count),
            ("holds", f.holds.count),
            ("spikes", f.spikes.count),
            ("crashes", f.crashes.count),
        ] {
            if count[1] > MAX_FAULTS {
                return Err(format!(
                    "{}: [faults.{kind}] count over {MAX_FAULTS}",
                    self.name
                ));
            }
        }
        if self.duration_ms == 0 || self.workload.tick_ms == 0 {
            return Err(format!(
                "{}: duration_ms and tick_ms must be > 0",
                self.name
            ));
        }
        if self.cipher.is_some() && !self.protocol.encrypted() {
            return Err(format!(
                "{}: cipher is only for protocol = \"bits-hpke\"",
                self.name
            ));
        }
        if let Some(n) = self.max_record {
            if !self.protocol.encrypted() {
                return Err(format!(
                    "{}: max_record is only for protocol = \"bits-hpke\"",
                    self.name
                ));
            }
            if !(MIN_RECORD..=MAX_RECORD).contains(&n) {
                return Err(format!(
                    "{}: max_record must be in {MIN_RECORD}..={MAX_RECORD}",
                    self.name
                ));
            }
        }
        if (self.server.io.ciphertext() || self.client.io.ciphertext())
            && !self.protocol.encrypted()
        {
            return Err(format!(
                "{}: ciphertext faults (ct_*) need protocol = \"bits-hpke\"",
                self.name
            ));
        }
        if self.hosts.rogues > 0 && self.rogue.attacks.is_empty() {
            return Err(format!("{}: rogues need [rogue] attacks", self.name));
        }
        for a in &self.rogue.attacks {
            let attack: crate::attack::Attack =
                a.parse().map_err(|e| format!("{}: {e}", self.name))?;
            if attack.encrypted() != self.protocol.encrypted() {
                return Err(format!(
                    "{}: attack {a:?} is for the other protocol",
                    self.name
                ));
            }
        }
        for side in [&self.server, &self.client] {
            let bits = side.service.id_bits;
            if !(4..=32).contains(&bits) || side.service.max_sessions > 1 << (bits - 2).min(30) {
                return Err(format!(
                    "{}: id_bits must be in 4..=32 and leave room for max_sessions (at most 2^(id_bits - 2))",
                    self.name
                ));
            }
        }
        for e in self.expect_edges.iter().chain(self.expect_min.keys()) {
            if !crate::edges::EDGES.contains(&e.as_str()) {
                return Err(format!(
                    "{}: unknown edge {e:?} in expect_edges (known: {})",
                    self.name,
                    crate::edges::EDGES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Total number of hosts.
    pub fn host_count(&self) -> u16 {
        self.hosts.servers + self.hosts.clients + self.hosts.rogues
    }

    /// The name of host `i` (servers first, then clients, then rogues).
    pub fn host_name(&self, i: u16) -> String {
        let (s, c) = (self.hosts.servers, self.hosts.clients);
        if i < s {
            format!("server{i}")
        } else if i < s + c {
            format!("client{}", i - s)
        } else {
            format!("rogue{}", i - s - c)
        }
    }

    /// True if host `i` is a hostile host (no laxnet service).
    pub fn is_rogue(&self, i: u16) -> bool {
        i >= self.hosts.servers + self.hosts.clients
    }

    /// True if host `i` is a server.
    pub fn is_server(&self, i: u16) -> bool {
        i < self.hosts.servers
    }

    /// The role configuration of host `i`.
    pub fn side(&self, i: u16) -> &Side {
        if self.is_server(i) {
            &self.server
        } else {
            &self.client
        }
    }
}

/// The default scenario directory: `$LAXSIM_SCENARIOS`, else the workspace's `scenarios/`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("LAXSIM_SCENARIOS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios"),
    }
}

/// Every `*.toml` scenario in `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let s = Scenario::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push(s);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    for w in out.windows(2) {
        if w[0].name == w[1].name {
            return Err(format!("two scenarios named {:?}", w[0].name));
        }
    }
    Ok(out)
}
