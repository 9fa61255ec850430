//! The Tokio backend: real sockets and Tokio's clock.
//!
//! This backend is also the clock used *inside* turmoil hosts (turmoil runs each host on a
//! paused Tokio runtime), which is why the turmoil backend reuses [`TokioClock`].
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use super::{BoxFuture, BoxStream, Listener, Runtime};
use crate::time::Instant;

/// Reads Tokio's clock (`tokio::time::Instant`, virtual under turmoil or paused time) relative
/// to an origin captured at construction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now. Must be called inside a Tokio runtime when that runtime's
    /// time is paused (simulation); otherwise anywhere.
    pub(crate) fn new() -> TokioClock {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::from_origin(tokio::time::Instant::now().saturating_duration_since(self.origin))
    }

    pub(crate) fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let at = self.origin + deadline.since_origin();
        Box::pin(tokio::time::sleep_until(at))
    }
}

/// Spawns on the current Tokio runtime.
pub(crate) fn spawn(task: BoxFuture<'static, ()>) {
    tokio::spawn(task);
}

/// Real TCP sockets on the current Tokio runtime, `TCP_NODELAY` on every stream.
///
/// Create it (and the `Service` that owns it) inside a Tokio runtime with the `net` and
/// `time` drivers enabled.
#[derive(Debug)]
pub struct TokioRuntime {
    clock: TokioClock,
}

impl TokioRuntime {
    /// A runtime handle whose clock starts now.
    pub fn new() -> TokioRuntime {
        TokioRuntime {
            clock: TokioClock::new(),
        }
    }
}

impl Default for TokioRuntime {
    fn default() -> Self {
        Self::new()
    }
}

struct TokioListener(TcpListener);

impl Listener for TokioListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok((Box::new(stream) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Runtime for TokioRuntime {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn bind<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = TcpListener::bind(addr).await?;
            Ok(Box::new(TokioListener(l)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
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
        spawn(task);
    }

    fn entropy(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        // The OS RNG failing is not something a server can run without.
        rand_core::TryRng::try_fill_bytes(&mut getrandom::SysRng, &mut seed)
            .expect("the operating system's random number generator is unavailable");
        seed
    }

    fn fill_secret(&self, out: &mut [u8]) -> io::Result<()> {
        rand_core::TryRng::try_fill_bytes(&mut getrandom::SysRng, out)
            .map_err(|e| io::Error::other(format!("operating system RNG: {e}")))
    }
}
