//! Entry points for the fuzz targets (feature `fuzzing`, re-exported as `laxnet::fuzz_api`);
//! not a stable API.
//!
//! The fuzz targets (the repository's `fuzz/` package) drive the library's decoders and state
//! machines directly, below the socket: the frame parser, message decoding through the
//! subscription registry, both sides of the pure handshake, the record layer and the sans-IO
//! session `Conn`. The wrapped types stay crate-private; these newtypes forward to them
//! and add nothing but conversions, so a target exercises the code the service runs.

use std::io::{ErrorKind, IoSlice};
use std::ops::Range;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::crypto::handshake;
use crate::crypto::io::Sealed;
use crate::crypto::record::{self, RecordType};
use crate::error::SubscribeError;
use crate::event::{Received, SubId};
use crate::planted::Plants;
use crate::registry::{Registry, Target};
use crate::session::connection::{self, Connection};
use crate::session::context::{Context, SessionCounters};
use crate::session::inbound::{FrameRef, Inbound};
use crate::session::shared::{Phase, SendState, SessionShared};
use crate::session::{Direction, SessionRef};

pub use crate::buffer::{BufferPool, PoolConfig, PoolStats, SegmentQueue};
pub use crate::crypto::{Cipher, CryptoError, Encryption, KeyError, KeyPair, PeerMisbehaved};
pub use crate::crypto::{HandshakeError, PublicKey};
pub use crate::error::{CloseReason, ProtocolViolation};
pub use crate::message::{HEADER_BYTES, LEN_BYTES, Message, Parsed, encode_frame, parse_frame};
pub use crate::protocol::Protocol;
pub use crate::time::Instant;

/// The close message body this side sends when it closes for `reason` without an
/// application code (`docs/wire.md`): `None` for endings that send none (the peer's close, a
/// broken connection). On "bits" it goes out as a control frame ([`control_frame`]), on
/// "bits-hpke" as the Close record's payload.
pub fn close_message(reason: &CloseReason) -> Option<Vec<u8>> {
    let (code, detail) = reason.code()?;
    let mut pc = crate::error::PeerClose::new(code);
    pc.detail = detail;
    Some(crate::control::close_body(&pc))
}

/// Whether an abortive close for `reason` still writes its close message (and the frames
/// already taken) before it ends.
pub fn sends_reason(reason: &CloseReason) -> bool {
    reason.sends_reason()
}

/// `body` as a "bits" control frame (message id `u32::MAX`).
pub fn control_frame(body: &[u8]) -> Vec<u8> {
    crate::control::frame(body)
}

// ---- frames ----------------------------------------------------------------------------

/// The session's receive buffer and frame parser (`session::inbound`).
pub struct FrameReader(Inbound);

impl FrameReader {
    /// A reader whose reads start at `read_buffer` bytes and adapt up to `read_buffer_max`,
    /// accepting frames up to `max_frame`.
    pub fn new(
        pool: &BufferPool,
        read_buffer: usize,
        read_buffer_max: usize,
        max_frame: usize,
    ) -> FrameReader {
        FrameReader(Inbound::new(
            pool.clone(),
            read_buffer,
            read_buffer_max,
            max_frame,
        ))
    }

    /// One socket read: copies as much of `bytes` as the reader offers room for. Returns how
    /// many bytes it took.
    pub fn read(&mut self, bytes: &[u8]) -> usize {
        let spare = self.0.spare();
        let offered = spare.len();
        let n = offered.min(bytes.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        self.0.commit(n);
        self.0.note_read(n, offered);
        n
    }

    /// The next complete frame (its id and a copy of its body), consumed.
    pub fn next_frame(&mut self) -> Result<Option<(u32, Vec<u8>)>, ProtocolViolation> {
        let Some(f) = self.0.poll_frame()? else {
            return Ok(None);
        };
        let out = (f.id, self.0.body(&f).to_vec());
        self.0.consume(&f);
        Ok(Some(out))
    }

    /// A read would block: the reader gives idle memory back.
    pub fn would_block(&mut self) {
        self.0.release_idle();
    }

    /// End of stream: clean only at a frame boundary.
    pub fn finish(&self) -> Result<(), ProtocolViolation> {
        self.0.finish()
    }

    /// Gives every buffer back to the pool.
    pub fn release(&mut self) {
        self.0.release();
    }
}

// ---- message decoding through the registry ----------------------------------------------

/// The registry's decoders by message id, as a session's dispatch uses them, with a session
/// that has no socket behind it (dispatch only lends it to the subscribers).
pub struct Decoders {
    registry: Registry,
    session: Option<SessionRef>,
    next_sub: u64,
}

impl Default for Decoders {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoders {
    /// No message type registered yet.
    pub fn new() -> Decoders {
        let core = Arc::new(Context::new(
            crate::config::Config::default(),
            Arc::new(crate::runtime::TokioRuntime::new()),
        ));
        let id = crate::id::SessionId::from_raw(1).expect("a valid id");
        let shared = Arc::new(SessionShared {
            id,
            protocol: Protocol::Bits,
            peer: ([127, 0, 0, 1], 1).into(),
            direction: Direction::Accepted,
            opened_at: Instant::ZERO,
            last_recv: AtomicU64::new(0),
            in_flight: Default::default(),
            max_record: None,
            peer_key: None,
            counters: SessionCounters::default(),
            state: Mutex::new(SendState {
                queue: SegmentQueue::new(core.pool.clone(), core.config.segment_size),
                phase: Phase::Open,
                waker: None,
                app_close: None,
            }),
            want_room: Default::default(),
            room: Default::default(),
            core,
        });
        Decoders {
            registry: Registry::default(),
            session: Some(SessionRef { shared }),
            next_sub: 0,
        }
    }

    /// Registers `T` with a subscriber on the "bits" protocol that is handed each decoded
    /// message.
    pub fn subscribe<T: Message>(
        mut self,
        f: impl Fn(&T) + Send + Sync + 'static,
    ) -> Result<Decoders, SubscribeError> {
        self.next_sub += 1;
        let target = Target::Callback(Arc::new(move |r: &Received<T>| f(&r.msg)));
        let sub = (SubId(self.next_sub), Protocol::Bits, target);
        self.registry = self.registry.with_message::<T>(Some(sub))?;
        Ok(self)
    }

    /// Registers `T` without a subscriber (its messages are decoded, then unhandled).
    pub fn register<T: Message>(mut self) -> Result<Decoders, SubscribeError> {
        self.registry = self.registry.with_message::<T>(None)?;
        Ok(self)
    }

    /// Decodes a frame's body by its message id and delivers it, as a session's dispatch does:
    /// `Ok(true)` if a subscriber had it, `Ok(false)` if none wanted it, or the violation
    /// (unknown id, undecodable body) that closes the session.
    pub fn decode(&mut self, id: u32, body: &[u8]) -> Result<bool, ProtocolViolation> {
        let handler = self.registry.handler(id)?;
        let session = self.session.take().expect("lent back after every dispatch");
        let (back, result) = handler.dispatch(Protocol::Bits, session, body);
        self.session = Some(back);
        result
    }
}

// ---- handshake ---------------------------------------------------------------------------

/// Bytes of the ClientHello header.
pub const CH_HEADER: usize = handshake::CH_HEADER;
/// Bytes of a ClientHello without a client key.
pub const CH_BASE: usize = handshake::CH_BASE;
/// Bytes of a ClientHello with a client key.
pub const CH_MAX: usize = handshake::CH_MAX;
/// Bytes of the ServerHello.
pub const SH_LEN: usize = handshake::SH_LEN;
/// Bytes of the ClientFinished.
pub const CF_LEN: usize = handshake::CF_LEN;
/// Bytes of fresh entropy one side of a handshake draws (its random and ephemeral secret).
pub const FRESH_LEN: usize = handshake::Fresh::LEN;

/// What a client prepares once for all its handshakes.
pub struct ClientKeys(handshake::ClientKeys);

impl ClientKeys {
    /// A client pinning `server`, presenting `identity` if given, in `context`.
    pub fn new(server: &PublicKey, identity: Option<&KeyPair>, context: &[u8]) -> ClientKeys {
        ClientKeys(handshake::ClientKeys::new(server, identity, context))
    }
}

/// What a server prepares once for all its handshakes.
pub struct ServerKeys(handshake::ServerKeys);

impl ServerKeys {
    /// A server with `identity`, allowing only `allowed` client keys if given, in `context`;
    /// `accept_null`: its own configuration names the null cipher.
    pub fn new(
        identity: &KeyPair,
        allowed: Option<&[PublicKey]>,
        context: &[u8],
        accept_null: bool,
    ) -> ServerKeys {
        ServerKeys(
            handshake::ServerKeys::new(identity, allowed, context).with_null_cipher(accept_null),
        )
    }

    /// The ClientHello's total length from its header, as the server reads it off the stream.
    pub fn hello_len(&self, header: &[u8; CH_HEADER]) -> Result<usize, PeerMisbehaved> {
        self.0.hello_len(header)
    }
}

/// A client between its hello and the server's answer.
pub struct ClientPending(handshake::ClientPending);

/// A server between its answer and the ClientFinished.
pub struct ServerPending(handshake::ServerPending);

/// The keys one side derived (copies of secrets: fuzzing only).
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    /// The negotiated cipher.
    pub cipher: Cipher,
    /// The peer's authenticated static key, if any.
    pub peer_key: Option<PublicKey>,
    /// Client-to-server key and base nonce.
    pub c2s: ([u8; 32], [u8; 12]),
    /// Server-to-client key and base nonce.
    pub s2c: ([u8; 32], [u8; 12]),
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("cipher", &self.cipher)
            .field("peer_key", &self.peer_key)
            .finish_non_exhaustive()
    }
}

impl Keys {
    fn of(k: &handshake::SessionKeys) -> Keys {
        Keys {
            cipher: k.cipher,
            peer_key: k.peer_key,
            c2s: (*k.c2s_key, *k.c2s_nonce),
            s2c: (*k.s2c_key, *k.s2c_nonce),
        }
    }

    fn session_keys(&self) -> handshake::SessionKeys {
        handshake::SessionKeys {
            cipher: self.cipher,
            peer_key: self.peer_key,
            c2s_key: Zeroizing::new(self.c2s.0),
            c2s_nonce: Zeroizing::new(self.c2s.1),
            s2c_key: Zeroizing::new(self.s2c.0),
            s2c_nonce: Zeroizing::new(self.s2c.1),
        }
    }
}

/// The client's hello, from `fresh` (its random, then its ephemeral secret).
pub fn client_hello(
    fresh: &[u8; FRESH_LEN],
    cipher: Cipher,
    keys: &ClientKeys,
) -> Result<(ClientPending, Vec<u8>), PeerMisbehaved> {
    let (p, hello) = handshake::client_hello(handshake::Fresh::new(fresh), cipher, &keys.0)?;
    Ok((ClientPending(p), hello))
}

/// The client's check of the ServerHello, and its ClientFinished.
pub fn client_finish(
    pending: ClientPending,
    keys: &ClientKeys,
    sh: &[u8; SH_LEN],
) -> Result<(Keys, [u8; CF_LEN]), PeerMisbehaved> {
    let (k, cf) = handshake::client_finish(pending.0, &keys.0, sh)?;
    Ok((Keys::of(&k), cf))
}

/// The server's answer to a ClientHello, from `fresh`.
pub fn server_respond(
    fresh: &[u8; FRESH_LEN],
    keys: &ServerKeys,
    hello: &[u8],
) -> Result<(ServerPending, [u8; SH_LEN]), PeerMisbehaved> {
    let (p, sh) = handshake::server_respond(handshake::Fresh::new(fresh), &keys.0, hello)?;
    Ok((ServerPending(p), sh))
}

/// The server's check of the ClientFinished.
pub fn server_finish(pending: ServerPending, cf: &[u8; CF_LEN]) -> Result<Keys, PeerMisbehaved> {
    handshake::server_finish(pending.0, cf).map(|k| Keys::of(&k))
}

// ---- records -----------------------------------------------------------------------------

/// Bytes of a record's length header.
pub const RECORD_HEADER: usize = record::HEADER;
/// Bytes of a record's tag.
pub const RECORD_TAG: usize = record::TAG;
/// Bytes a record adds around its payload: header, type byte, tag.
pub const RECORD_OVERHEAD: usize = record::OVERHEAD;

/// Seals records for one direction.
pub struct RecordSealer(record::Sealer);

impl RecordSealer {
    /// A sealer for `cipher` with a direction's key and base nonce, sealing at most `limit`.
    pub fn new(cipher: Cipher, key: &[u8; 32], nonce: &[u8; 12], limit: u64) -> RecordSealer {
        RecordSealer(record::Sealer::new(cipher, key, nonce, limit))
    }

    /// Seals `payload` as one record (`close`: the authenticated end of stream).
    pub fn seal(&mut self, close: bool, payload: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let ty = if close {
            RecordType::Close
        } else {
            RecordType::Data
        };
        let mut buf = vec![0u8; payload.len() + RECORD_OVERHEAD];
        buf[RECORD_HEADER + 1..RECORD_HEADER + 1 + payload.len()].copy_from_slice(payload);
        let n = self.0.seal(ty, &mut buf, payload.len())?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Opens records for one direction.
pub struct RecordOpener(record::Opener);

impl RecordOpener {
    /// An opener for `cipher` with a direction's key and base nonce, opening at most `limit`.
    pub fn new(cipher: Cipher, key: &[u8; 32], nonce: &[u8; 12], limit: u64) -> RecordOpener {
        RecordOpener(record::Opener::new(cipher, key, nonce, limit))
    }

    /// The total length of the record at the front of `data`, once its header is there.
    pub fn record_len(data: &[u8], max_payload: usize) -> Result<Option<usize>, CryptoError> {
        record::Opener::record_len(data, max_payload)
    }

    /// Opens one complete record in place: whether it is a Close, and its payload's range.
    pub fn open(&mut self, record: &mut [u8]) -> Result<(bool, Range<usize>), CryptoError> {
        let (ty, range) = self.0.open(record)?;
        Ok((ty == RecordType::Close, range))
    }
}

// ---- the session state machine -----------------------------------------------------------

/// A session's sizes and limits (`Config`'s fields of the same names).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a clean close may take.
    pub linger: Duration,
    /// Largest frame body accepted.
    pub max_frame: usize,
    /// Initial read size.
    pub read_buffer: usize,
    /// Largest read size.
    pub read_buffer_max: usize,
    /// Send-queue segment size.
    pub segment_size: usize,
}

/// The record layer of an encrypted session.
#[derive(Debug, Clone)]
pub struct SealedParams {
    /// The keys both sides derived.
    pub keys: Keys,
    /// This side is the client.
    pub is_client: bool,
    /// Largest record payload (`Encryption::max_record`).
    pub max_record: usize,
    /// Records per direction before the keys are used up (`Encryption::record_limit`).
    pub record_limit: u64,
}

/// What a `Conn` reports (`session::connection::Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    /// The connection started closing on its own for this reason.
    Closing(CloseReason),
    /// The peer broke the protocol.
    ProtocolError,
    /// The linger time ran out.
    LingerExpired,
}

/// A complete frame at the front of a `Conn`'s receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame(FrameRef);

impl Frame {
    /// Its message id.
    pub fn id(&self) -> u32 {
        self.0.id
    }
}

/// The sans-IO session state machine (`session::connection::Connection`); see its module
/// docs for the call order a driver keeps.
pub struct Conn(Connection);

impl Conn {
    /// A connection over a fresh stream; `sealed`: an encrypted one.
    pub fn new(pool: &BufferPool, limits: Limits, sealed: Option<&SealedParams>) -> Conn {
        let l = connection::Limits {
            linger: limits.linger,
            max_frame: limits.max_frame,
            read_buffer: limits.read_buffer,
            read_buffer_max: limits.read_buffer_max,
            segment_size: limits.segment_size,
        };
        let sealed = sealed.map(|p| {
            let enc = Encryption::default()
                .with_max_record(p.max_record)
                .with_record_limit(p.record_limit);
            Box::new(Sealed::new(
                &p.keys.session_keys(),
                p.is_client,
                &enc,
                pool,
                limits.read_buffer,
                limits.read_buffer_max,
                limits.segment_size,
            ))
        });
        Conn(Connection::new(pool.clone(), l, sealed, Plants::default()))
    }

    /// The largest record payload of an encrypted connection (`Encryption::max_record` as the
    /// session applies it).
    pub fn max_record(max_record: usize) -> usize {
        max_record.max(64)
    }

    /// Queues a client's Finished ahead of its first records.
    pub fn queue_finished(&mut self, cf: &[u8; CF_LEN]) {
        if let Some(s) = self.sealed_mut() {
            s.queue_finished(cf);
        }
    }

    fn sealed_mut(&mut self) -> Option<&mut Sealed> {
        self.0.sealed_mut()
    }

    /// See `Connection::handle_queued`.
    pub fn handle_queued(&mut self, queue: &mut SegmentQueue) -> bool {
        self.0.handle_queued(queue)
    }
    /// See `Connection::handle_close`.
    pub fn handle_close(&mut self, reason: CloseReason, now: Instant) {
        self.0.handle_close(reason, now)
    }
    /// See `Connection::adopt_reason`.
    pub fn adopt_reason(&mut self, reason: CloseReason) {
        self.0.adopt_reason(reason)
    }
    /// See `Connection::read_buf`.
    pub fn read_buf(&mut self) -> &mut [u8] {
        self.0.read_buf()
    }
    /// See `Connection::handle_read`.
    pub fn handle_read(&mut self, n: usize, offered: usize) {
        self.0.handle_read(n, offered)
    }
    /// See `Connection::handle_would_block`.
    pub fn handle_would_block(&mut self) {
        self.0.handle_would_block()
    }
    /// See `Connection::handle_eof`.
    pub fn handle_eof(&mut self, now: Instant) {
        self.0.handle_eof(now)
    }
    /// See `Connection::handle_read_error`.
    pub fn handle_read_error(&mut self, kind: ErrorKind) {
        self.0.handle_read_error(kind)
    }
    /// See `Connection::handle_violation`.
    pub fn handle_violation(&mut self, v: ProtocolViolation, now: Instant) {
        self.0.handle_violation(v, now)
    }
    /// See `Connection::handle_written`.
    pub fn handle_written(&mut self, n: usize) -> usize {
        self.0.handle_written(n)
    }
    /// See `Connection::handle_write_error`.
    pub fn handle_write_error(&mut self, kind: ErrorKind) {
        self.0.handle_write_error(kind)
    }
    /// See `Connection::handle_shutdown`.
    pub fn handle_shutdown(&mut self) {
        self.0.handle_shutdown()
    }
    /// See `Connection::handle_timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now)
    }
    /// See `Connection::poll_frame`.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, ProtocolViolation> {
        self.0.poll_frame().map(|f| f.map(Frame))
    }
    /// See `Connection::body`.
    pub fn body(&self, frame: &Frame) -> &[u8] {
        self.0.body(&frame.0)
    }
    /// See `Connection::consume`.
    pub fn consume(&mut self, frame: &Frame) {
        self.0.consume(&frame.0)
    }
    /// See `Connection::poll_transmit`.
    pub fn poll_transmit<'a>(&'a mut self, slices: &mut [IoSlice<'a>]) -> usize {
        self.0.poll_transmit(slices)
    }
    /// See `Connection::wants_shutdown`.
    pub fn wants_shutdown(&self) -> bool {
        self.0.wants_shutdown()
    }
    /// See `Connection::poll_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    /// See `Connection::poll_event`.
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        self.0.poll_event().map(|e| match e {
            connection::Event::Closing(r) => ConnEvent::Closing(r),
            connection::Event::ProtocolError => ConnEvent::ProtocolError,
            connection::Event::LingerExpired => ConnEvent::LingerExpired,
        })
    }
    /// See `Connection::is_done`.
    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }
    /// See `Connection::reason`.
    pub fn reason(&self) -> Option<&CloseReason> {
        self.0.reason()
    }
    /// See `Connection::read_done`.
    pub fn read_done(&self) -> bool {
        self.0.read_done()
    }
    /// See `Connection::wants_queue`.
    pub fn wants_queue(&self) -> bool {
        self.0.wants_queue()
    }
    /// See `Connection::in_flight` (plaintext frames counted as they are).
    pub fn in_flight(&self) -> usize {
        self.0.in_flight(|p| p)
    }
    /// [`Conn::in_flight`] in wire bytes, as the session's task publishes it for the
    /// send-queue limit (plaintext frames counted with the record overhead they will carry
    /// when sealed `max_record` at a time; `max_record` as [`Conn::max_record`] applies it).
    pub fn in_flight_wire(&self, max_record: usize) -> usize {
        let encrypted = self.0.encrypted();
        self.0.in_flight(|p| {
            if encrypted {
                p + p.div_ceil(max_record) * RECORD_OVERHEAD
            } else {
                p
            }
        })
    }
    /// See `Connection::release`.
    pub fn release(&mut self) {
        self.0.release()
    }
}

// ---- key files ---------------------------------------------------------------------------

/// The key pair a key file's contents name (what `KeyPair::load` does after reading it).
pub fn key_file(contents: &[u8]) -> Result<KeyPair, KeyError> {
    KeyPair::from_key_file(contents)
}
