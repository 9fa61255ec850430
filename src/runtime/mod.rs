//! The runtime abstraction: the one place that touches sockets, clocks and tasks.
//!
//! [`Runtime`] is an object-safe trait that the service holds as one `Arc<dyn Runtime>`
//! handle. Two backends implement it:
//!
//! - [`TokioRuntime`]: real TCP sockets (with `TCP_NODELAY`) and Tokio's clock;
//! - `TurmoilRuntime` (feature `sim`): turmoil's simulated TCP, on the simulated host's
//!   virtual clock.
//!
//! Only the files in this directory may name `tokio::net`, `tokio::time`, `std::time::Instant`
//! or spawn tasks (clippy's `disallowed_types`/`disallowed_methods` enforce it everywhere else).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::time::Instant;

mod tokio_rt;
#[cfg(feature = "sim")]
mod turmoil_rt;

pub use tokio_rt::TokioRuntime;
#[cfg(feature = "sim")]
pub use turmoil_rt::TurmoilRuntime;

/// A boxed, `Send` future (the runtime trait is object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connected, bidirectional byte stream.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}

/// A boxed byte stream as handed out by a runtime.
pub type BoxStream = Box<dyn ByteStream>;

/// A listening socket.
pub trait Listener: Send + Sync + 'static {
    /// Waits for the next inbound connection. Must be cancel safe.
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>>;
    /// The address the listener is bound to (with the real port when bound to port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Sockets, a monotonic clock, timers and task spawning: everything the stack needs from
/// the outside world.
pub trait Runtime: Send + Sync + 'static {
    /// A short name for logs and status ("tokio", "turmoil").
    fn name(&self) -> &'static str;
    /// Binds a listener to `addr` (`"host:port"`, resolved; the first address that binds
    /// wins), holding up to `backlog` connections the service has not accepted yet (where the
    /// backend has a backlog: the simulator's does not).
    fn bind<'a>(
        &'a self,
        addr: &'a str,
        backlog: u32,
    ) -> BoxFuture<'a, io::Result<Box<dyn Listener>>>;
    /// Opens a connection to `addr` (`"host:port"`); returns the stream and the peer address.
    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<(BoxStream, SocketAddr)>>;
    /// Now, on this runtime's monotonic clock.
    fn now(&self) -> Instant;
    /// A future that completes at `deadline` on this runtime's clock.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
    /// Runs `task` in the background on this runtime.
    fn spawn(&self, task: BoxFuture<'static, ()>);
    /// 32 bytes of seed material for a service whose configuration names no seed (its RNG
    /// serves what is not secret: where the session id counter starts). Production backends read the OS;
    /// the simulator derives them from its seed.
    fn entropy(&self) -> [u8; 32];
    /// Fills `out` with secret key material, once per handshake side (its random and its
    /// ephemeral secret), which the caller zeroes after use. Never derived from
    /// `Config::rng_seed` or any other long-lived state of the service: a real backend reads
    /// the operating system's RNG on every call ([`TokioRuntime`]: `getrandom`), so neither a
    /// known seed nor a later memory dump of the service regenerates a past handshake's
    /// secrets. Only a simulator may draw from a seeded stream (`TurmoilRuntime`: the
    /// simulated host's, so a run replays), and its secrets are then simulation data.
    fn fill_secret(&self, out: &mut [u8]) -> io::Result<()>;
}

/// A future that completes after `d` on `rt`'s clock.
pub(crate) fn sleep(rt: &dyn Runtime, d: Duration) -> BoxFuture<'static, ()> {
    rt.sleep_until(rt.now() + d)
}

/// Runs `fut` until `deadline` on `rt`'s clock: `Some` of its output, or `None` if the
/// deadline passed first. Biased toward the future: one that is ready when the timer fires
/// wins the tie, so a completion is never reported as a timeout.
pub(crate) async fn timeout_at<F: Future>(
    rt: &dyn Runtime,
    deadline: Instant,
    fut: F,
) -> Option<F::Output> {
    let mut timer = rt.sleep_until(deadline);
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Runs `fut` for at most `d` on `rt`'s clock (see [`timeout_at`]).
pub(crate) async fn timeout<F: Future>(rt: &dyn Runtime, d: Duration, fut: F) -> Option<F::Output> {
    timeout_at(rt, rt.now() + d, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timeout_is_biased_toward_the_future() {
        let rt = TokioRuntime::new();
        // The deadline has passed when the future is first polled: a ready future still wins.
        assert_eq!(timeout_at(&rt, rt.now(), async { 7 }).await, Some(7));
        assert_eq!(timeout(&rt, Duration::ZERO, async { 7 }).await, Some(7));
        let never = std::future::pending::<()>();
        assert_eq!(timeout(&rt, Duration::from_millis(1), never).await, None);
    }
}
