//! [`Config`]: every limit and timeout of a service, in one place, with documented defaults.

use std::time::Duration;

use crate::buffer::PoolConfig;
use crate::crypto::Encryption;
#[cfg(feature = "planted-bugs")]
use crate::planted::Bug;
use crate::planted::Plants;

/// Limits and timeouts of a [`Service`](crate::Service).
///
/// | field | default |
/// |---|---|
/// | `max_sessions` | 10,000 |
/// | `max_frame` | 1 MiB |
/// | `send_queue_limit` | 256 KiB |
/// | `connect_timeout` | 5 s |
/// | `linger` | 5 s |
/// | `heartbeat` | off |
/// | `idle_timeout` / `idle_sweep` | off / 1 s |
/// | `segment_size` | 16 KiB |
/// | `read_buffer` / `read_buffer_max` | 4 KiB / 256 KiB |
/// | `rng_seed` | from the runtime (OS entropy in production); never used for secrets |
/// | `encryption` | none (`"bits-hpke"` unavailable) |
/// | `logging` | on |
///
/// Build one from the defaults with a `with_` method per field (the fields stay public for
/// reading; the struct is `#[non_exhaustive]` so that a new setting is no breaking change,
/// which is also why a struct literal does not compile outside this crate):
///
/// ```
/// use std::time::Duration;
/// use laxnet::Config;
///
/// let config = Config::default()
///     .with_max_sessions(100)
///     .with_heartbeat(Duration::from_secs(10))
///     .with_logging(false);
/// assert_eq!(config.max_sessions, 100);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Maximum live sessions (accepted plus connected). Connections beyond it are refused
    /// (accepted and dropped at once) and counted as `refused` in the status. At most
    /// [`MAX_SESSIONS`](crate::MAX_SESSIONS).
    pub max_sessions: usize,
    /// Maximum frame body in bytes: the borsh-serialized message, without the frame's 8-byte
    /// header (length and message id, docs/wire.md), on both protocols (on `"bits-hpke"` the
    /// frames travel inside records, whose own size limit follows from this one). A message
    /// whose body is exactly `max_frame` bytes goes through; one byte more fails the send
    /// with `SendError::TooLarge` and queues nothing. A peer whose frame header announces
    /// more is disconnected (`ProtocolViolation::FrameTooLarge`) before anything of that
    /// size is allocated. Both ends should use the same value.
    pub max_frame: usize,
    /// High-water mark of one session's send queue, in bytes queued and not yet written to
    /// the socket, counted as they will go on the wire (on encrypted sessions including the
    /// record overhead). While the queue is over it, a send fails with
    /// `SendError::QueueFull`; below it a send is accepted whole, so a queue holds at most
    /// this plus one frame, and a frame of any size up to `max_frame` can always be sent.
    /// `SessionRef::ready` waits until the queue is at half of it.
    ///
    /// The kernel's socket buffer holds more behind it; a larger queue mostly adds memory
    /// and cache misses (docs/performance.md, "Send queue limit").
    pub send_queue_limit: usize,
    /// How long `connect` waits for the TCP connection.
    pub connect_timeout: Duration,
    /// The listen backlog of `Service::accept`'s socket: how many connections the kernel
    /// completes and holds before the service accepts them. A burst of connects beyond it
    /// finds the queue full; the kernel drops their SYNs and those clients wait for a SYN
    /// retransmit (a second or more). The kernel caps it (`net.core.somaxconn` on Linux);
    /// the simulator has no backlog and ignores it.
    pub listen_backlog: u32,
    /// After `close()`, how long the session may take to flush its queue and see the peer's
    /// end of stream before the socket is dropped.
    pub linger: Duration,
    /// Heartbeat-on-send: if set, a `send` on a session that has received nothing for longer
    /// than this closes it (reason `Heartbeat`) and fails. No timer is involved.
    pub heartbeat: Option<Duration>,
    /// If set, one service-wide sweep closes sessions that have received nothing for longer
    /// than this (reason `Idle`), so silent peers are found even when the server never sends.
    pub idle_timeout: Option<Duration>,
    /// Period of the idle sweep (only used when `idle_timeout` is set).
    pub idle_sweep: Duration,
    /// Size of the send queue's segments (rounded up to a power of two).
    pub segment_size: usize,
    /// Initial read size (rounded up to a power of two). The block reads go into grows for
    /// large frames, adapts to the traffic up to `read_buffer_max`, and goes back to the pool
    /// whenever the session has nothing left to read (an idle session holds none).
    pub read_buffer: usize,
    /// Largest read size a busy session adapts to (rounded up to a power of two; not below
    /// `read_buffer`): reads that fill the whole buffer double it, small ones halve it again.
    /// Larger reads mean fewer system calls for bulk streams. A block that large is held only
    /// while the session is draining its socket: when a read would block, a partial frame of
    /// up to `read_buffer` bytes moves to a `read_buffer`-size block.
    pub read_buffer_max: usize,
    /// The buffer pool's size classes and retention.
    pub pool: PoolConfig,
    /// Seed of the service's RNG (`ChaCha20Rng`), which draws everything random that is not a
    /// secret (the start value of the session id counter). `None` takes 32 bytes from the
    /// runtime (the OS in production, the seed in simulation).
    ///
    /// It never feeds key material: each encrypted handshake draws its randoms and ephemeral
    /// secrets from the runtime (`Runtime::fill_secret`: the operating system's RNG on real
    /// sockets, per handshake), so setting a seed — for reproducible ids in a test or a
    /// replay — makes no real deployment's handshakes predictable, with or without
    /// encryption. Only the simulator's runtime draws secrets from its own seeded stream.
    pub rng_seed: Option<u64>,
    /// Keys and limits of the encrypted protocol (`"bits-hpke"`); `None` disables it.
    pub encryption: Option<Encryption>,
    /// Initial state of the service's logging switch (see `Service::set_logging`).
    pub logging: bool,
    /// Width of the session id space in bits (default and maximum 32; clamped to `4..=32`):
    /// ids come from `1..2^id_bits`, so an id recurs after `2^id_bits - 1` others at the
    /// earliest, and `max_sessions` is clamped to `2^(id_bits - 2)`. A test hook: fewer bits
    /// make ids recur sooner, so simulations reach the id horizon many times per run and its
    /// invariants are checked where they bite.
    #[doc(hidden)]
    pub id_bits: u32,
    /// A deliberate bug to plant (oracle tests only).
    #[cfg(feature = "planted-bugs")]
    #[doc(hidden)]
    pub planted: Option<Bug>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_sessions: 10_000,
            max_frame: 1 << 20,
            send_queue_limit: 256 << 10,
            connect_timeout: Duration::from_secs(5),
            listen_backlog: 1024,
            linger: Duration::from_secs(5),
            heartbeat: None,
            idle_timeout: None,
            idle_sweep: Duration::from_secs(1),
            segment_size: 16 << 10,
            read_buffer: 4 << 10,
            read_buffer_max: 256 << 10,
            pool: PoolConfig::default(),
            rng_seed: None,
            encryption: None,
            logging: true,
            id_bits: 32,
            #[cfg(feature = "planted-bugs")]
            planted: None,
        }
    }
}

impl Config {
    /// The bug this configuration plants (oracle tests only): `on` is `false` for every bug
    /// without the `planted-bugs` feature.
    pub(crate) fn plants(&self) -> Plants {
        Plants::new(
            #[cfg(feature = "planted-bugs")]
            self.planted,
            #[cfg(not(feature = "planted-bugs"))]
            None,
        )
    }
}

/// Setters for building a [`Config`] from the defaults, one per field: each returns the
/// configuration with that field set (see the field's documentation).
impl Config {
    /// Sets [`Config::max_sessions`].
    pub fn with_max_sessions(mut self, n: usize) -> Config {
        self.max_sessions = n;
        self
    }

    /// Sets [`Config::max_frame`].
    pub fn with_max_frame(mut self, bytes: usize) -> Config {
        self.max_frame = bytes;
        self
    }

    /// Sets [`Config::send_queue_limit`].
    pub fn with_send_queue_limit(mut self, bytes: usize) -> Config {
        self.send_queue_limit = bytes;
        self
    }

    /// Sets [`Config::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Config {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`Config::listen_backlog`].
    pub fn with_listen_backlog(mut self, connections: u32) -> Config {
        self.listen_backlog = connections;
        self
    }

    /// Sets [`Config::linger`].
    pub fn with_linger(mut self, linger: Duration) -> Config {
        self.linger = linger;
        self
    }

    /// Turns the heartbeat check on: sets [`Config::heartbeat`] to `Some(timeout)`.
    pub fn with_heartbeat(mut self, timeout: Duration) -> Config {
        self.heartbeat = Some(timeout);
        self
    }

    /// Turns the idle sweep on: sets [`Config::idle_timeout`] to `Some(timeout)`.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Config {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sets [`Config::idle_sweep`].
    pub fn with_idle_sweep(mut self, period: Duration) -> Config {
        self.idle_sweep = period;
        self
    }

    /// Sets [`Config::segment_size`].
    pub fn with_segment_size(mut self, bytes: usize) -> Config {
        self.segment_size = bytes;
        self
    }

    /// Sets [`Config::read_buffer`].
    pub fn with_read_buffer(mut self, bytes: usize) -> Config {
        self.read_buffer = bytes;
        self
    }

    /// Sets [`Config::read_buffer_max`].
    pub fn with_read_buffer_max(mut self, bytes: usize) -> Config {
        self.read_buffer_max = bytes;
        self
    }

    /// Sets [`Config::pool`].
    pub fn with_pool(mut self, pool: PoolConfig) -> Config {
        self.pool = pool;
        self
    }

    /// Sets [`Config::rng_seed`] to `Some(seed)` (never used for secrets).
    pub fn with_rng_seed(mut self, seed: u64) -> Config {
        self.rng_seed = Some(seed);
        self
    }

    /// Enables the encrypted protocol: sets [`Config::encryption`] to `Some(encryption)`.
    pub fn with_encryption(mut self, encryption: Encryption) -> Config {
        self.encryption = Some(encryption);
        self
    }

    /// Sets [`Config::logging`], the initial state of the logging switch.
    pub fn with_logging(mut self, on: bool) -> Config {
        self.logging = on;
        self
    }

    /// Sets `id_bits` (a test hook).
    #[doc(hidden)]
    pub fn with_id_bits(mut self, bits: u32) -> Config {
        self.id_bits = bits;
        self
    }
}
