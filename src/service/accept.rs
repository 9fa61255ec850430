//! Listening: [`Service::accept`], the [`Acceptor`] handle, the accept loop, and the server
//! side of the encrypted handshake, run per connection before it becomes a session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::watch;

use super::{Service, ServiceInner, close_body, spawn_guarded};
use crate::control;
use crate::crypto::{self, HandshakeError};
use crate::error::{AcceptError, CloseCode};
use crate::planted::Bug;
use crate::protocol::Protocol;
use crate::runtime::{BoxStream, Listener};
use crate::session::Direction;

impl Service {
    /// Listens on `addr` (`"host:port"`, port 0 for any) and opens a session with `protocol`
    /// for every connection, up to `Config::max_sessions`. [`Protocol::BitsHpke`] without an
    /// identity key pair in `Config::encryption` fails with `NotConfigured` before any I/O.
    pub async fn accept(&self, addr: &str, protocol: Protocol) -> Result<Acceptor, AcceptError> {
        if self.inner.is_shut_down() {
            return Err(AcceptError::Shutdown);
        }
        if protocol.is_encrypted() {
            let enc = self.inner.core.config.encryption.as_ref();
            if enc.and_then(|e| e.identity.as_ref()).is_none() {
                return Err(AcceptError::NotConfigured);
            }
        }
        let listener = self
            .inner
            .core
            .runtime
            .bind(addr, self.inner.core.config.listen_backlog)
            .await
            .map_err(AcceptError::Io)?;
        let local_addr = listener.local_addr().map_err(AcceptError::Io)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = accept_loop(self.inner.clone(), listener, protocol, stop_rx);
        spawn_guarded(&self.inner.core, Box::pin(task));
        if self.inner.core.logging() {
            tracing::info!(target: "laxnet", %local_addr, %protocol, "listening");
        }
        Ok(Acceptor {
            local_addr,
            stop: stop_tx,
        })
    }
}

/// A listener started by [`Service::accept`]. Dropping the handle keeps it listening;
/// [`Acceptor::close`] or service shutdown stops it.
#[derive(Debug)]
pub struct Acceptor {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Acceptor {
    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting; sessions already open are not affected.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }
}

async fn accept_loop(
    inner: Arc<ServiceInner>,
    listener: Box<dyn Listener>,
    protocol: Protocol,
    mut stop: watch::Receiver<bool>,
) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let res = tokio::select! {
            biased;
            Ok(_) = shutdown.wait_for(|s| *s) => return,
            // A dropped `Acceptor` handle closes the channel: keep listening (a disabled branch).
            Ok(_) = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let core = &inner.core;
        match res {
            Ok((stream, peer)) if protocol.is_encrypted() => {
                start_server_handshake(&inner, stream, peer)
            }
            Ok((stream, _)) if inner.is_shut_down() => {
                let refusal = control::frame(&close_body(CloseCode::ShuttingDown));
                refuse(&inner, stream, &refusal);
            }
            Ok((stream, peer)) => {
                if let Err((stream, _)) =
                    inner.open_session(stream, peer, protocol, Direction::Accepted, None)
                {
                    // At max_sessions: the client learns why instead of its `connect`
                    // succeeding.
                    core.counters.refused.fetch_add(1, Relaxed);
                    if core.logging() {
                        tracing::warn!(target: "laxnet", %peer, "refused: max sessions reached");
                    }
                    let refusal = control::frame(&close_body(CloseCode::Full));
                    refuse(&inner, stream, &refusal);
                }
            }
            Err(e) => {
                core.counters.accept_errors.fetch_add(1, Relaxed);
                if core.logging() {
                    tracing::warn!(target: "laxnet", error = %e, "accept failed");
                }
                // Out of descriptors and similar: back off instead of spinning.
                crate::runtime::sleep(&*core.runtime, std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Runs the server side of an encrypted handshake in its own task, so a slow client never
/// holds up the accept loop. The connection holds no session (no id, no event) until the
/// client has proved liveness; admission ([`crypto::admission`]) bounds how many run at once,
/// in all and per source, evicting stalled attempts to make room for new ones.
fn start_server_handshake(inner: &Arc<ServiceInner>, stream: BoxStream, peer: SocketAddr) {
    let core = &inner.core;
    let Some(enc) = core.config.encryption.as_ref() else {
        return;
    };
    if inner.is_full() {
        core.counters.refused.fetch_add(1, Relaxed);
        let code = CloseCode::Full.to_u8();
        return refuse(inner, stream, &crypto::io::refusal(code));
    }
    let source = crypto::admission::Source::of(peer.ip());
    let mut limits = enc.admission_limits();
    if core.config.plants().on(Bug::RefuseInsteadOfEvict) {
        limits.evict = false;
    }
    let admitted = inner.admission.admit(source, core.runtime.now(), limits);
    if admitted.evicted > 0 {
        core.counters
            .handshakes_evicted
            .fetch_add(admitted.evicted.into(), Relaxed);
    }
    let Some(mut ticket) = admitted.ticket else {
        core.counters.handshakes_refused.fetch_add(1, Relaxed);
        let code = CloseCode::Busy.to_u8();
        return refuse(inner, stream, &crypto::io::refusal(code));
    };
    let inner2 = inner.clone();
    let mut stream = stream;
    spawn_guarded(
        core,
        Box::pin(async move {
            let inner = inner2;
            // Borrowed from the service's own configuration, not cloned per connection (an
            // allow-list can be long).
            let (Some(enc), Some(keys)) = (
                inner.core.config.encryption.as_ref(),
                inner.core.handshake_keys.as_ref().and_then(|k| k.server()),
            ) else {
                return;
            };
            let rt = &*inner.core.runtime;
            let mut stop = inner.shutdown.subscribe();
            let res = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => None,
                r = crypto::io::server(rt, &mut stream, enc, keys, &mut ticket) => Some(r),
            };
            // The place goes back before the session opens (or the stream is dropped).
            if matches!(res, Some(Err(_))) && inner.core.config.plants().on(Bug::HandshakeSlotLeak)
            {
                std::mem::forget(ticket);
            } else {
                drop(ticket);
            }
            let Some(res) = res else {
                // The service is shutting down: give up (dropping the stream closes it).
                return;
            };
            let counters = &inner.core.counters;
            match res {
                Ok(keys) => {
                    counters.handshakes.fetch_add(1, Relaxed);
                    let mut sealed = Box::new(inner.sealed(&keys, false, enc));
                    drop(keys);
                    if inner.is_shut_down() {
                        // Authenticated close: the client learns why, it sees no truncation.
                        let body = close_body(CloseCode::ShuttingDown);
                        crypto::io::refuse(rt, &mut stream, &mut sealed, &body).await;
                        return;
                    }
                    if let Err((mut stream, Some(mut sealed))) = inner.open_session(
                        stream,
                        peer,
                        Protocol::BitsHpke,
                        Direction::Accepted,
                        Some(sealed),
                    ) {
                        counters.refused.fetch_add(1, Relaxed);
                        let body = close_body(CloseCode::Full);
                        crypto::io::refuse(rt, &mut stream, &mut sealed, &body).await;
                    }
                }
                // Evicted (counted when it happened).
                Err(HandshakeError::Busy) => {
                    let code = CloseCode::Busy.to_u8();
                    refuse(&inner, stream, &crypto::io::refusal(code));
                }
                Err(e) => {
                    if matches!(
                        e,
                        HandshakeError::Peer(crypto::PeerMisbehaved::UnknownClientKey)
                    ) {
                        let code = CloseCode::NotAllowed.to_u8();
                        refuse(&inner, stream, &crypto::io::refusal(code));
                    }
                    counters.handshake_failures.fetch_add(1, Relaxed);
                    if inner.core.logging() {
                        tracing::info!(target: "laxnet", %peer, error = %e, "handshake failed");
                    }
                }
            }
        }),
    );
}

/// Refusals written at once, at most: each holds a connection (and a small task) for up to
/// the linger time; beyond it a flood of connections is dropped without a word.
const MAX_REFUSING: usize = 1024;

/// Refuses a connection that gets no session: writes `refusal`, shuts the write side down,
/// and reads what the client sends until it closes (a close over unread bytes would reset
/// the connection, and a reset can overtake the refusal), all bounded by the linger time,
/// in a task of its own. Beyond [`MAX_REFUSING`] refusals at once (a flood), the stream is
/// dropped instead, which closes it: a refusal is best effort, a client may see a reset.
pub(super) fn refuse(inner: &Arc<ServiceInner>, stream: BoxStream, refusal: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let core = &inner.core;
    if core.config.plants().on(Bug::RefusalLooksLikeReset)
        || inner.refusing.load(Relaxed) >= MAX_REFUSING
    {
        return;
    }
    inner.refusing.fetch_add(1, Relaxed);
    let refusing = inner.refusing.clone();
    let rt = core.runtime.clone();
    let linger = core.config.linger;
    let refusal = refusal.to_vec();
    let mut stream = stream;
    spawn_guarded(
        core,
        Box::pin(async move {
            let io = async {
                stream.write_all(&refusal).await?;
                stream.shutdown().await?;
                let mut buf = [0u8; 512];
                while stream.read(&mut buf).await? > 0 {}
                Ok::<_, std::io::Error>(())
            };
            let _ = crate::runtime::timeout(&*rt, linger, io).await;
            refusing.fetch_sub(1, Relaxed);
        }),
    );
}
