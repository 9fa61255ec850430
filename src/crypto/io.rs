//! The handshake over a byte stream, and the per-session record state the driver uses.
//!
//! The handshake reads exactly the bytes of each message (fixed sizes, checked before any
//! cryptographic work), so no application bytes are consumed early, and holds at most one
//! ClientHello (104 bytes) per attempt. Each side draws its handshake's secrets from the
//! runtime ([`Runtime::fill_secret`]) when it needs them — a server only once the whole
//! ClientHello is there — and zeroes them after use.

use std::future::Future;
use std::task::Poll;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::admission::Ticket;
use super::handshake::{
    self, CF_LEN, CH_HEADER, CH_MAX, ClientKeys, Fresh, REFUSAL_LEN, REFUSAL_MAGIC, SH_LEN,
    ServerKeys, SessionKeys,
};
use super::record::{self, Opener, RecordType, Sealer};
use super::{Encryption, HandshakeError, PublicKey};
use crate::buffer::{BufferPool, ReadBuffer, SegmentQueue};
use crate::runtime::{self, BoxStream, Runtime};
use crate::time::Instant;

fn io_err(e: std::io::Error) -> HandshakeError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        HandshakeError::Closed
    } else {
        HandshakeError::Io(e.kind())
    }
}

/// Runs `fut` until `deadline` on `rt`'s clock (then `Timeout`), or until `evicted` closes
/// (then `Busy`: admission dropped this stalled attempt for a newer one).
async fn bounded<T>(
    rt: &dyn Runtime,
    deadline: Instant,
    mut evicted: Option<&mut tokio::sync::oneshot::Receiver<()>>,
    fut: impl Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    let mut fut = std::pin::pin!(fut);
    let or_evicted = std::future::poll_fn(|cx| {
        // Biased: a handshake that completes wins a tie with the eviction (and, through
        // `timeout_at`, with the timer).
        if let Poll::Ready(r) = fut.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if let Some(rx) = evicted.as_mut()
            && std::pin::Pin::new(&mut **rx).poll(cx).is_ready()
        {
            return Poll::Ready(Err(HandshakeError::Busy));
        }
        Poll::Pending
    });
    runtime::timeout_at(rt, deadline, or_evicted)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

/// One side's fresh secrets for one handshake, from the runtime's secret entropy.
fn fresh(rt: &dyn Runtime) -> Result<Fresh, HandshakeError> {
    let mut bytes = Zeroizing::new([0u8; Fresh::LEN]);
    rt.fill_secret(&mut bytes[..])
        .map_err(|e| HandshakeError::Io(e.kind()))?;
    Ok(Fresh::new(&bytes))
}

/// What a service computes once from its [`Encryption`] for all its handshakes (in
/// `Service::new`): the client side's if a server key is pinned, the server side's if there
/// is an identity.
pub(crate) struct HandshakeKeys {
    client: Option<ClientKeys>,
    server: Option<ServerKeys>,
}

impl HandshakeKeys {
    pub(crate) fn new(enc: &Encryption) -> HandshakeKeys {
        HandshakeKeys {
            client: enc
                .server_key
                .map(|k| ClientKeys::new(&k, enc.identity.as_ref(), &enc.context)),
            server: enc.identity.as_ref().map(|id| {
                let keys = ServerKeys::new(id, enc.allowed_clients.as_deref(), &enc.context);
                #[cfg(any(test, feature = "null-cipher"))]
                let keys = keys.with_null_cipher(enc.cipher == super::Cipher::Null);
                keys
            }),
        }
    }
}

impl HandshakeKeys {
    /// The client side's keys: present when a server key is pinned.
    pub(crate) fn client(&self) -> Option<&ClientKeys> {
        self.client.as_ref()
    }

    /// The server side's keys: present when there is an identity key pair.
    pub(crate) fn server(&self) -> Option<&ServerKeys> {
        self.server.as_ref()
    }

    /// Whether the server side accepts the null cipher.
    #[cfg(test)]
    pub(crate) fn server_accepts_null(&self) -> bool {
        self.server.as_ref().is_some_and(|s| s.accepts_null())
    }
}

/// The client side: hello, check the server.
///
/// Returns the session keys and the ClientFinished, which is not written here: the caller
/// queues it in front of the session's first records ([`Sealed::queue_finished`]), so it
/// shares a write (and the server a read) with them, as TLS 1.3 clients send their Finished
/// with their first application data. The server opens no session before it arrives.
pub(crate) async fn client(
    rt: &dyn Runtime,
    stream: &mut BoxStream,
    enc: &Encryption,
    keys: &ClientKeys,
) -> Result<(SessionKeys, [u8; CF_LEN]), HandshakeError> {
    bounded(rt, rt.now() + enc.handshake_timeout, None, async {
        let (pending, hello) = handshake::client_hello(fresh(rt)?, enc.cipher, keys)?;
        stream.write_all(&hello).await.map_err(io_err)?;
        let mut sh = [0u8; SH_LEN];
        stream.read_exact(&mut sh[..4]).await.map_err(io_err)?;
        if sh[..4] == REFUSAL_MAGIC {
            // The server's refusal instead of its ServerHello.
            let mut code = [0u8; REFUSAL_LEN - 4];
            stream.read_exact(&mut code).await.map_err(io_err)?;
            return Err(HandshakeError::Refused(code[0]));
        }
        stream.read_exact(&mut sh[4..]).await.map_err(io_err)?;
        Ok(handshake::client_finish(pending, keys, &sh)?)
    })
    .await
}

/// The server side: read the hello (by the hello deadline), answer, check the client's
/// finished tag (by the handshake deadline). Tells `ticket` when the hello is complete, and
/// stops with `Busy` if admission evicts the attempt.
pub(crate) async fn server(
    rt: &dyn Runtime,
    stream: &mut BoxStream,
    enc: &Encryption,
    keys: &ServerKeys,
    ticket: &mut Ticket,
) -> Result<SessionKeys, HandshakeError> {
    let start = rt.now();
    let hello_deadline = start + enc.hello_timeout.min(enc.handshake_timeout);
    let mut hello = [0u8; CH_MAX];
    let len = bounded(rt, hello_deadline, Some(&mut ticket.evicted), async {
        stream
            .read_exact(&mut hello[..CH_HEADER])
            .await
            .map_err(io_err)?;
        let header: &[u8; CH_HEADER] = hello.first_chunk().expect("header");
        let len = keys.hello_len(header)?;
        stream
            .read_exact(&mut hello[CH_HEADER..len])
            .await
            .map_err(io_err)?;
        Ok(len)
    })
    .await?;
    ticket.hello_done(rt.now());
    let deadline = start + enc.handshake_timeout;
    bounded(rt, deadline, Some(&mut ticket.evicted), async {
        let (pending, sh) = handshake::server_respond(fresh(rt)?, keys, &hello[..len])?;
        stream.write_all(&sh).await.map_err(io_err)?;
        let mut cf = [0u8; CF_LEN];
        stream.read_exact(&mut cf).await.map_err(io_err)?;
        Ok(handshake::server_finish(pending, &cf)?)
    })
    .await
}

/// The refusal a server writes instead of its ServerHello (see [`client`]).
pub(crate) fn refusal(code: u8) -> [u8; REFUSAL_LEN] {
    let mut r = [0u8; REFUSAL_LEN];
    r[..4].copy_from_slice(&REFUSAL_MAGIC);
    r[4] = code;
    r
}

/// Ends an established encrypted connection that gets no session (the service is full or shut
/// down) with an authenticated Close record carrying `reason` (a close body, see
/// `docs/wire.md`), after what is already queued (a client's Finished), so the peer learns
/// why instead of seeing a truncation. Bounded by the handshake timeout; errors are ignored
/// (the stream is dropped next anyway).
pub(crate) async fn refuse(
    rt: &dyn Runtime,
    stream: &mut BoxStream,
    sealed: &mut Sealed,
    reason: &[u8],
) {
    let mut rec = vec![0u8; record::OVERHEAD + reason.len()];
    rec[record::HEADER + 1..record::HEADER + 1 + reason.len()].copy_from_slice(reason);
    let Ok(n) = sealed
        .sealer
        .seal(RecordType::Close, &mut rec, reason.len())
    else {
        return;
    };
    // A rare path: one small copy keeps it a single write.
    let mut bytes: Vec<u8> = sealed.wire_out.chunks().flatten().copied().collect();
    bytes.extend_from_slice(&rec[..n]);
    sealed.wire_out.clear();
    let io = async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    };
    let _ = runtime::timeout(rt, sealed.handshake_timeout, io).await;
}

/// Record state of one encrypted session, owned by its driver.
pub(crate) struct Sealed {
    pub(crate) sealer: Sealer,
    pub(crate) opener: Opener,
    pub(crate) max_record: usize,
    /// The peer's key the handshake authenticated (see [`SessionKeys`]).
    pub(crate) peer_key: Option<PublicKey>,
    /// Raw bytes from the socket: records, possibly partial.
    pub(crate) wire_in: ReadBuffer,
    /// Sealed records waiting for the socket.
    pub(crate) wire_out: SegmentQueue,
    /// Our authenticated close has been queued.
    pub(crate) close_sent: bool,
    /// The peer's authenticated close has arrived.
    pub(crate) close_received: bool,
    /// Bounds [`refuse`].
    handshake_timeout: std::time::Duration,
    /// Bytes of the client's Finished still at the front of `wire_out`.
    unsent_finished: usize,
    /// A client that has opened no record yet: the server may still answer with its plaintext
    /// refusal (see [`Sealed::take_refusal`]).
    refusal_possible: bool,
}

impl Sealed {
    /// Queues the client's Finished ahead of every record (see [`client`]).
    pub(crate) fn queue_finished(&mut self, cf: &[u8; CF_LEN]) {
        debug_assert!(self.wire_out.is_empty(), "the Finished goes first");
        self.wire_out.push(cf);
        self.unsent_finished = CF_LEN;
    }

    /// Bytes of the client's Finished not yet written.
    pub(crate) fn unsent_finished(&self) -> usize {
        self.unsent_finished
    }

    /// How many of `written` bytes, just written from the front of `wire_out`, were records
    /// (the rest finished the handshake, which the byte counters leave out).
    pub(crate) fn record_bytes(&mut self, written: usize) -> usize {
        let finished = written.min(self.unsent_finished);
        self.unsent_finished -= finished;
        written - finished
    }

    /// Record state for the side that `is_client`.
    pub(crate) fn new(
        keys: &SessionKeys,
        is_client: bool,
        enc: &Encryption,
        pool: &BufferPool,
        read_buffer: usize,
        read_buffer_max: usize,
        segment: usize,
    ) -> Sealed {
        let (tx_key, tx_nonce, rx_key, rx_nonce) = if is_client {
            (
                &keys.c2s_key,
                &keys.c2s_nonce,
                &keys.s2c_key,
                &keys.s2c_nonce,
            )
        } else {
            (
                &keys.s2c_key,
                &keys.s2c_nonce,
                &keys.c2s_key,
                &keys.c2s_nonce,
            )
        };
        Sealed {
            // At least the Close record.
            sealer: Sealer::new(keys.cipher, tx_key, tx_nonce, enc.record_limit.max(1)),
            opener: Opener::new(keys.cipher, rx_key, rx_nonce, enc.record_limit.max(1)),
            max_record: enc.max_record.max(64),
            peer_key: keys.peer_key,
            wire_in: ReadBuffer::new(pool.clone(), read_buffer, read_buffer_max),
            wire_out: SegmentQueue::new(pool.clone(), segment),
            close_sent: false,
            close_received: false,
            handshake_timeout: enc.handshake_timeout,
            unsent_finished: 0,
            refusal_possible: is_client,
        }
    }

    /// A client's first bytes from the server after the handshake may be the server's
    /// plaintext refusal instead of a record: a server evicts an attempt whose ClientFinished
    /// it has waited for too long (`crypto::admission`), and the client, whose `connect`
    /// returned once it wrote its Finished, learns of it only now. Returns `Ok(Some(code))`
    /// for a refusal (consumed from `wire_in`), `Ok(None)` when the bytes are a record (or
    /// none can be a refusal any more), `Err(())` while too few bytes tell. Unauthenticated,
    /// like the refusal before a ServerHello; the refusal's magic is never a valid record
    /// header at the record sizes this accepts.
    pub(crate) fn take_refusal(&mut self) -> Result<Option<u8>, ()> {
        if !self.refusal_possible {
            return Ok(None);
        }
        let data = self.wire_in.data();
        let n = data.len().min(REFUSAL_MAGIC.len());
        let as_len = u32::from_le_bytes(REFUSAL_MAGIC) as usize;
        if data[..n] != REFUSAL_MAGIC[..n] || as_len <= self.max_record + 1 + record::TAG {
            self.refusal_possible = false;
            return Ok(None);
        }
        if data.len() < REFUSAL_LEN {
            return Err(());
        }
        let code = data[REFUSAL_LEN - 1];
        self.wire_in.consume(REFUSAL_LEN);
        self.refusal_possible = false;
        Ok(Some(code))
    }
}
