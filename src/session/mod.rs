//! Sessions: the shared state behind a [`SessionRef`], the send path, the protocol state
//! machine of one connection, and the task that feeds it.
//!
//! - [`shared`]: what a `SessionRef` points at: the send queue, the close request, the
//!   heartbeat clock. `send` and `close` take one short lock here and never touch a table.
//! - [`connection`]: the sans-IO state machine of one session: the receive side
//!   ([`inbound`]: bytes in, frames out), the frames being written, the record layer of an
//!   encrypted session, and the close sequence (clean or abortive, the linger deadline).
//!   Bytes, time and requests come in as values; what to write, when to wake and what
//!   happened go out as values. Unit-tested with no runtime.
//! - [`driver`]: the session's task, a loop that feeds the connection from the socket and the
//!   clock, dispatches frames, and finally destroys the session.
//! - [`context`]: what sessions share with their service (runtime, config, pool, counters).
//!
//! Sessions never name the service: the driver reports through [`SessionHost`] (the service
//! implements it) and delivers messages through [`Handlers`] and [`Deliver`] (the registry
//! implements them), so the layers run one way: runtime → buffers → wire → session → service.
//!
//! Lifecycle: `Open` → (`close()` / peer EOF / error / heartbeat / shutdown) → `Closing`
//! (no new sends; queued bytes are flushed within the linger time; write side shut down;
//! the peer's end of stream awaited) → `Closed` event published exactly once → destroy
//! (buffers back to the pool, id released, refs turn `Stale`).

pub(crate) mod connection;
pub(crate) mod context;
pub(crate) mod driver;
pub(crate) mod inbound;
pub(crate) mod shared;

pub(crate) use shared::SessionShared;
pub use shared::{Direction, SessionRef};

use std::sync::Arc;

use crate::error::{CloseReason, ProtocolViolation};
use crate::protocol::Protocol;

/// Decodes the messages of one type and delivers them to their subscribers (the registry
/// above implements it).
pub(crate) trait Deliver: Send + Sync {
    /// Decodes `body` and delivers it. `Ok(false)` if nobody on `protocol` wanted it.
    ///
    /// Takes the session task's own `SessionRef` and always hands it back: the message the
    /// subscribers see borrows it by value for the call, so a message costs no
    /// reference-count traffic (a clone and a drop were two atomic operations per message).
    fn dispatch(
        &self,
        protocol: Protocol,
        session: SessionRef,
        body: &[u8],
    ) -> (SessionRef, Result<bool, ProtocolViolation>);
}

/// The deliverers by message id: one snapshot of the service's subscriptions.
pub(crate) trait Handlers: Send + Sync {
    /// The deliverer of message id `id`, or the violation an unknown id is.
    fn handler(&self, id: u32) -> Result<&dyn Deliver, ProtocolViolation>;
}

/// What a session's task needs from its service, and all it may ask of it (the service
/// implements it; sessions never name the service).
pub(crate) trait SessionHost: Send + Sync + 'static {
    /// The subscriptions now, and their version.
    fn handlers(&self) -> (u64, Arc<dyn Handlers>);
    /// The subscriptions if they changed since `version` (one atomic load when they did not).
    fn handlers_if_newer(&self, version: u64) -> Option<(u64, Arc<dyn Handlers>)>;
    /// Publishes `Closed` (unless `publish` is false because it already was) and destroys the
    /// session: its id is released and its refs turn stale. Called once per session.
    fn destroy(&self, shared: &Arc<SessionShared>, reason: CloseReason, publish: bool);
    /// Publishes `Closed` now (only for a planted bug that publishes it early).
    fn publish_closed(&self, shared: &Arc<SessionShared>, reason: &CloseReason);
}
