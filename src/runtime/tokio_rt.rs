//! The Tokio backend: real sockets and Tokio's clock.
//!
//! This backend is also the clock used *inside* turmoil hosts (turmoil runs each host on a
//! paused Tokio runtime), which is why the turmoil backend reuses [`TokioClock`].
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

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
///
/// # Where the service's tasks run
///
/// Tasks are spawned with `tokio::spawn` on the runtime current where they start: a
/// listener's accept loop on the runtime that called `Service::accept`, and the tasks of the
/// sessions it accepts (and their encrypted handshakes) on that same runtime; a connected
/// session's task on the runtime that called `Service::connect`; the idle sweep on the one
/// that created the service. A session's callbacks (subscriptions) run on its task. On a
/// multi-thread runtime sessions run in parallel, each on one task at a time. Dropping a
/// runtime ends the tasks it holds: their sessions close with reason `Aborted`.
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

/// A listening socket on `addr` with `backlog`.
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
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

    fn bind<'a>(
        &'a self,
        addr: &'a str,
        backlog: u32,
    ) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            // `TcpListener::bind` listens with a fixed backlog of 128; build the socket
            // ourselves to pass the configured one (with SO_REUSEADDR, as `bind` sets it).
            let mut last = None;
            for a in tokio::net::lookup_host(addr).await? {
                match listen(a, backlog) {
                    Ok(l) => return Ok(Box::new(TokioListener(l)) as Box<dyn Listener>),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
            }))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The configured backlog reaches the kernel: more connects than the fixed default (128)
    /// all complete while nobody accepts. With the default, those beyond it would wait for
    /// SYN retransmits that find the queue still full, and the test would time out.
    #[tokio::test]
    async fn a_burst_beyond_the_default_backlog_completes_without_accepting() {
        const BURST: usize = 300;
        let rt = TokioRuntime::new();
        let listener = rt.bind("127.0.0.1:0", BURST as u32 + 8).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = (0..BURST).map(|_| tokio::spawn(TcpStream::connect(addr)));
        let all = join_connects(connects.collect());
        let streams = tokio::time::timeout(std::time::Duration::from_secs(30), all)
            .await
            .expect("every connect completed without an accept");
        assert_eq!(streams.len(), BURST);
        drop(listener);
    }

    async fn join_connects(
        handles: Vec<tokio::task::JoinHandle<io::Result<TcpStream>>>,
    ) -> Vec<TcpStream> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap().unwrap());
        }
        out
    }
}
