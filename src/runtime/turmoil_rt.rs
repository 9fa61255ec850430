//! The turmoil backend: simulated TCP inside a turmoil host (feature `sim`).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use turmoil::net::{TcpListener, TcpStream};

use super::tokio_rt::{self, TokioClock};
use super::{BoxFuture, BoxStream, Listener, Runtime};
use crate::time::Instant;

/// Sockets from turmoil's simulated network and the host's virtual clock (crate feature `sim`).
///
/// Create it (and the `Service` that owns it) inside a turmoil host or client future: each
/// simulated host gets its own runtime handle and its own service. Bind with
/// `"0.0.0.0:PORT"`; connect with `"hostname:PORT"`.
///
/// # Your own code must be deterministic too
///
/// A seed replays only if everything that runs in the simulation decides the same way every
/// time. laxnet does; code you run next to it on a simulated host must as well:
///
/// - every `tokio::select!` with `biased;` (an unbiased one picks its branch with tokio's
///   runtime RNG, which turmoil seeds only when the build has `--cfg tokio_unstable`: set it
///   in `.cargo/config.toml` under `[build] rustflags`, and do not let a `RUSTFLAGS`
///   environment variable replace it);
/// - no iteration of a randomly seeded `HashMap`/`HashSet` where the order matters (use
///   `BTreeMap`, or a fixed hasher);
/// - no real time (`std::time::Instant::now`, `SystemTime`) and no OS randomness: take time
///   from `Service::now` or `tokio::time` (virtual inside turmoil) and randomness from a
///   generator seeded from the simulation's seed;
/// - no threads of your own and no blocking I/O (the host's runtime is single-threaded and
///   its time is paused).
///
/// `laxsim run --check-determinism` (and the same check in your own simulation tests) runs
/// each seed twice and fails when the traces differ.
#[derive(Debug)]
pub struct TurmoilRuntime {
    clock: TokioClock,
    seed: [u8; 32],
    /// The host's stream of handshake secrets ([`Runtime::fill_secret`]): seeded, so a run
    /// replays; kept apart from `seed` (the service RNG's), so the secrets are no function of
    /// what the service RNG hands out.
    secrets: Mutex<ChaCha20Rng>,
}

impl TurmoilRuntime {
    /// A runtime handle for the current simulated host. `seed` feeds the entropy of services
    /// that do not name their own RNG seed and the host's handshake secrets; derive it from
    /// the simulation seed and the host. (Simulated secrets replay with the seed: never use
    /// this runtime for real traffic.)
    pub fn new(seed: u64) -> TurmoilRuntime {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..16].copy_from_slice(b"turmoil!");
        let mut secrets = bytes;
        secrets[8..16].copy_from_slice(b"secrets!");
        TurmoilRuntime {
            clock: TokioClock::new(),
            seed: bytes,
            secrets: Mutex::new(ChaCha20Rng::from_seed(secrets)),
        }
    }
}

struct TurmoilListener(TcpListener);

impl Listener for TurmoilListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Runtime for TurmoilRuntime {
    fn name(&self) -> &'static str {
        "turmoil"
    }

    fn bind<'a>(
        &'a self,
        addr: &'a str,
        _backlog: u32, // turmoil's listeners have no backlog
    ) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = TcpListener::bind(addr.to_string()).await?;
            Ok(Box::new(TurmoilListener(l)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let stream = TcpStream::connect(addr.to_string()).await?;
            let peer = stream.peer_addr()?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.clock.sleep_until(deadline)
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio_rt::spawn(task);
    }

    fn entropy(&self) -> [u8; 32] {
        self.seed
    }

    fn fill_secret(&self, out: &mut [u8]) -> io::Result<()> {
        self.secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .fill_bytes(out);
        Ok(())
    }
}
