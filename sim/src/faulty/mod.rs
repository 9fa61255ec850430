//! [`FaultyRuntime`]: a `laxnet::Runtime` that wraps turmoil's sockets in a fault-injecting
//! `AsyncRead`/`AsyncWrite` adapter.
//!
//! turmoil never splits a write and never fails a read on its own, so the library's partial
//! I/O paths would go untested. Driven by the run's [`Recorder`](crate::schedule::Recorder),
//! the adapter performs short reads and writes, stalls (returns `Pending` and wakes itself
//! later through a timer), and resets (fails with `ConnectionReset`, possibly in the middle of
//! a frame). It also reports every stream's traffic to the oracle: bytes written, frame
//! position, and the time of the last read that returned bytes (the heartbeat clock).
//!
//! On encrypted ("bits-hpke") streams the write side also follows the records the library
//! writes after the fixed-size handshake (sizes from `laxnet::wire`) and, where the scenario asks for it,
//! spoils one of them: flips a bit inside it, sends it twice, swaps it with the next one,
//! inserts a record taken from another stream of the same host before it (each host keeps a
//! small pool of recent records), or leaves it out. Record headers stay intact, so the wire
//! is still a sequence of records, and the oracle knows which of them is the first bad one
//! (see [`crate::state::streams::CtMark`]). Every such decision goes through the recorder, keyed by
//! stream and record number.
//!
//! `bytes` holds the socket faults of every stream (`FaultyStream`);
//! `records` the record follower and ciphertext faults of an encrypted stream's write side.
//! This file holds the runtime that wraps the sockets and the crash guard.

mod bytes;
mod records;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use laxnet::runtime::{BoxFuture, BoxStream, Listener, Runtime};
use laxnet::{Instant, TurmoilRuntime, wire};

use crate::scenario::IoFaults;
use crate::state::{Shared, lock};
use bytes::{Ctl, FaultyStream, nanos};
use records::{CtWriter, SplicePool};

/// The fault-injecting runtime of one host incarnation.
pub struct FaultyRuntime {
    inner: Arc<TurmoilRuntime>,
    ctl: Arc<Ctl>,
}

/// Makes a crash deterministic: tokio drops a crashed host's tasks in an order that depends
/// on process-global task ids, so the streams those tasks own would send their FINs (and
/// draw their latencies) in an order that differs between runs in one process. While the
/// host is down, dropped streams go to a graveyard instead; this guard, owned by the host's
/// main future (which turmoil drops after every other task of the host, still inside the
/// simulator), closes them in creation order.
pub struct Graveyard(Arc<Ctl>);

impl Drop for Graveyard {
    fn drop(&mut self) {
        let mut dead =
            std::mem::take(&mut *self.0.graveyard.lock().unwrap_or_else(|p| p.into_inner()));
        dead.sort_by_key(|(id, _)| *id);
        for (_, s) in dead {
            drop(s);
        }
    }
}

impl FaultyRuntime {
    /// A runtime for host `host` (inside its turmoil host future), injecting `io` faults.
    /// `hpke`: the host's sessions are encrypted.
    pub fn new(shared: Shared, host: u16, seed: u64, io: IoFaults, hpke: bool) -> FaultyRuntime {
        FaultyRuntime {
            inner: Arc::new(TurmoilRuntime::new(seed)),
            ctl: Arc::new(Ctl {
                shared,
                host,
                io,
                hpke,
                graveyard: Mutex::new(Vec::new()),
                pool: SplicePool::default(),
            }),
        }
    }

    /// The clock of this runtime (the one its streams' read times are on).
    pub fn clock(&self) -> Arc<TurmoilRuntime> {
        self.inner.clone()
    }

    /// The crash guard for this host incarnation (see [`Graveyard`]).
    pub fn graveyard(&self) -> Graveyard {
        Graveyard(self.ctl.clone())
    }

    fn wrap(&self, s: turmoil::net::TcpStream, connected: bool) -> io::Result<FaultyStream> {
        let local = s.local_addr()?;
        let peer = s.peer_addr()?;
        let now = nanos(self.inner.now());
        let (id, client_out) = {
            let mut st = lock(&self.ctl.shared);
            let id = st.new_stream(self.ctl.host, connected, local, peer, now);
            st.note_accepted(id);
            (id, st.client_out())
        };
        let ct = self.ctl.hpke.then(|| {
            let skip = if connected {
                client_out
            } else {
                wire::SERVER_HANDSHAKE as u64
            };
            Box::new(CtWriter::new(skip, self.ctl.io.ciphertext()))
        });
        Ok(FaultyStream::new(
            s,
            id,
            self.inner.clone(),
            self.ctl.clone(),
            ct,
        ))
    }
}

struct FaultyListener {
    inner: turmoil::net::TcpListener,
    rt: Arc<FaultyRuntime>,
}

impl Listener for FaultyListener {
    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, peer) = self.inner.accept().await?;
            let s = self.rt.wrap(s, false)?;
            Ok((Box::new(s) as BoxStream, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Runtime for FaultyRuntime {
    fn name(&self) -> &'static str {
        "turmoil+faults"
    }

    fn bind<'a>(
        &'a self,
        addr: &'a str,
        _backlog: u32, // turmoil's listeners have no backlog
    ) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = turmoil::net::TcpListener::bind(addr.to_string()).await?;
            let rt = Arc::new(FaultyRuntime {
                inner: self.inner.clone(),
                ctl: self.ctl.clone(),
            });
            Ok(Box::new(FaultyListener { inner: l, rt }) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr.to_string()).await?;
            let peer = s.peer_addr()?;
            let s = self.wrap(s, true)?;
            Ok((Box::new(s) as BoxStream, peer))
        })
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.inner.sleep_until(deadline)
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.inner.spawn(task)
    }

    fn entropy(&self) -> [u8; 32] {
        self.inner.entropy()
    }

    fn fill_secret(&self, out: &mut [u8]) -> io::Result<()> {
        // The host's seeded stream (deterministic: one host incarnation's draws happen in
        // its tasks' order, which the simulation fixes).
        self.inner.fill_secret(out)
    }
}
