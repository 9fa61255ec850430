//! The two-backend harness: a scenario is written once against [`Ctx`] and run on real loopback
//! sockets ([`run_tokio`]) and inside the turmoil simulator ([`run_turmoil`]).
//!
//! Each "host" (server, client) owns one [`Service`](laxnet::Service) and runs a loop that
//! executes closures sent to it over a channel, so every call to a service happens on the
//! runtime (and clock) of the host that owns it. Every host records what its subscribers saw
//! in an event log ([`Rec`]).
//!
//! * `fixtures`: the protocols, the server's key and encryption settings, the [`Seq`] message
//!   and raw frames;
//! * `log`: the event log ([`Rec`]) and the lifecycle check that rebuilds sessions from it
//!   ([`sessions_of`]);
//! * `host`: a [`Host`], its job loop and recording subscriptions, the echo subscription;
//! * `ctx`: [`Ctx`], what a scenario gets: the two hosts, connect/listen helpers, waits,
//!   crash and restart;
//! * `backends`: [`run_tokio`] and [`run_turmoil`], which build the hosts on each backend.

use std::sync::{Mutex, MutexGuard};

mod backends;
mod ctx;
mod fixtures;
mod host;
mod log;

pub(crate) use backends::{run_tokio, run_turmoil};
pub(crate) use ctx::Ctx;
pub(crate) use fixtures::{BITS, HPKE, Seq, client_encryption, raw_frame, server_encryption};
pub(crate) use host::{Host, install_echo};
pub(crate) use log::sessions_of;

/// Locks `m`, also after a panic elsewhere poisoned it (a failing scenario must still tear
/// its hosts down).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
