//! Sessions: the shared state behind a [`SessionRef`], the send path, and the task that
//! drives one connection.
//!
//! - [`shared`]: what a `SessionRef` points at: the send queue, the close request, the
//!   heartbeat clock. `send` and `close` take one short lock here and never touch a table.
//! - [`inbound`]: the sans-IO receive state machine: bytes in, frames out, typed close reasons.
//! - [`driver`]: the only code that awaits the socket or reads the clock for a session: it
//!   reads, dispatches, flushes, runs the close sequence and finally destroys the session.
//!
//! Lifecycle: `Open` → (`close()` / peer EOF / error / heartbeat / shutdown) → `Closing`
//! (no new sends; queued bytes are flushed within the linger time; write side shut down;
//! the peer's end of stream awaited) → `Closed` event published exactly once → destroy
//! (buffers back to the pool, id released, refs turn `Stale`).

pub(crate) mod driver;
pub(crate) mod inbound;
pub(crate) mod shared;

pub use shared::SessionRef;
pub(crate) use shared::SessionShared;
