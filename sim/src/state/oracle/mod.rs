//! The oracle: it checks the library against what the run observed and records every
//! failed invariant as a violation. Each file checks one part:
//!
//! - [`session`]: the session lifecycle: ids, `Opened`/`Closed`, the close reason a session
//!   reports against what caused it, and every delivered message;
//! - [`cipher`]: ciphertext faults: nothing from a record that fails authentication is
//!   delivered, and the session closes;
//! - [`send`]: the result of every send (frame limit, queue limit, heartbeat) and of every
//!   `ready()` waiter (no lost wake-up);
//! - [`accounting`]: the library's counters against what the sockets moved, the buffer pool,
//!   and quiescence;
//! - [`admission`]: handshake admission on encrypted servers;
//! - [`end`]: at the end of the run, exactly one `Closed` per session and no loss after a
//!   graceful close.

pub mod accounting;
pub mod admission;
pub mod cipher;
pub mod end;
pub mod send;
pub mod session;
