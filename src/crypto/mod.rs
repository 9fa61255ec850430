//! Encrypted sessions: the `"bits-hpke"` protocol.
//!
//! Same messages, same API as `"bits"`; the bytes on the wire are a short handshake followed
//! by authenticated records that each carry many frames. See [`handshake`] for the exchange
//! and [`record`] for the record format.
//!
//! # What the design gives
//!
//! - **Server authentication.** The client pins the server's static X25519 key
//!   ([`Encryption::server_key`]); only the holder of the matching secret can compute the
//!   server's finished tag, so an impostor fails `connect` with
//!   [`PeerMisbehaved::ServerNotAuthenticated`]. A client's handshake secrets come from the
//!   operating system per handshake, never from `Config::rng_seed`, so knowing a client's
//!   seed does not help an impostor.
//! - **Optional client authentication.** With [`Encryption::allowed_clients`] set, the client
//!   must present one of those keys and prove it holds the secret (RFC 9180 `AuthEncap`, and
//!   a DH of its key with the server's ephemeral key); anyone else is dropped before any
//!   session exists. [`SessionRef::peer_key`] tells the server which key a session proved
//!   (and the client, the server's); a secret key proves exactly one public key (non-canonical
//!   encodings and keys with a small-order component are refused). The proof survives a leak
//!   of the server's key: that key alone does not log in to the server as a client
//!   (key-compromise impersonation), since the client's proof also needs the server's fresh
//!   ephemeral secret or the client's own.
//! - **Context binding.** [`Encryption::context`] is in every handshake's transcript: services
//!   that share a key pair but not a context do not accept each other's clients.
//! - **Confidentiality and integrity** of every byte after the handshake, with an independent
//!   key and nonce per direction and a 64-bit record counter in every nonce (never reused;
//!   at [`Encryption::record_limit`] records the session closes, and with AES-128-GCM also
//!   after 2^34 blocks of data in one direction, RFC 8446's limit for one key).
//! - **Replay protection.** Both sides contribute fresh randomness; a replayed client
//!   handshake meets a new server random, derives other keys, and its recorded records fail
//!   to authenticate: nothing reaches the application, not even an `Opened` event (the server
//!   publishes `Opened` only after the client proved liveness with its finished tag).
//! - **Forward secrecy** against a later compromise of the server's (or client's) static key
//!   — whether from its key file or from a memory dump: the keys also depend on an
//!   ephemeral-ephemeral exchange whose secrets are drawn fresh from the operating system for
//!   each handshake (nothing in the service's state regenerates them) and zeroed after it,
//!   with the Diffie-Hellman outputs, the key schedule and every derived key (the record keys
//!   when the session ends).
//! - **Truncation detection.** A clean close sends an authenticated `Close` record; an end of
//!   stream without it closes the session with [`CryptoError::Truncated`].
//! - **Handshake admission** that idle or trickling connections cannot lock: a short deadline
//!   for the ClientHello, a per-source limit, and eviction of stalled attempts instead of
//!   refusing newcomers ([`Encryption::max_handshakes`]).
//! - **Work only on what an honest peer sends.** Hellos of another version or with a cipher
//!   the server did not enable are refused from their header; public keys that are
//!   off the curve (on its twist, whose multiplication is slower), non-canonical or of small
//!   order are refused before any scalar multiplication. The test-only null cipher is
//!   accepted only by a server whose own configuration names it.
//!
//! # What it does not give
//!
//! - No identity hiding: a client's static public key (with client authentication) is sent in
//!   the clear, and whether a key is on an allow-list shows (a listed key gets a ServerHello,
//!   an unlisted one a closed connection).
//! - No stateless cookie: a client that completes its hello costs the server four X25519
//!   operations (five with a client key, plus a subgroup check without an allow-list; with
//!   an allow-list an unknown key is refused before any), and it can then hold an admission
//!   place until its ClientFinished is [`Encryption::hello_timeout`] late. So fast attackers
//!   that complete hellos — `max_handshakes / hello_timeout` per second from enough sources —
//!   still keep newcomers refused, and a flood of new connections faster than honest hellos
//!   arrive can evict them (the admission module lists the limits).
//! - No protection against a compromise of the running process: whoever reads its memory
//!   while a session is open has that session's record keys, and the static secret keys
//!   (they stay in memory for the life of the service; a static key compromise allows
//!   impersonating that side in future handshakes, not decrypting past ones). What is
//!   zeroed is zeroed when dropped: copies on the stack inside the cryptographic crates, and
//!   curve25519-dalek's internal scratch for batched inversions, are not reached.
//! - No key update: a session ends at the record limit instead of rekeying.
//! - No protection of traffic volume or timing.
//!
//! [`SessionRef::peer_key`]: crate::SessionRef::peer_key

pub(crate) mod admission;
#[cfg(test)]
mod attacks;
#[cfg(feature = "bench-internals")]
pub(crate) mod bench;
pub(crate) mod handshake;
pub(crate) mod io;
mod keys;
pub(crate) mod record;
mod x25519;

use std::fmt;
use std::time::Duration;

use crate::fault::Fault;

pub use keys::{KeyError, KeyPair, PublicKey};

/// The AEAD protecting records. The default is [`Cipher::preferred`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cipher {
    /// ChaCha20-Poly1305: fast in software, the default on CPUs without AES instructions.
    ChaCha20Poly1305,
    /// AES-128-GCM: the fastest where the CPU has AES and carry-less multiply instructions
    /// (several times cheaper per small record than ChaCha20-Poly1305 there; figures in the
    /// repository's docs/performance.md), the default there; slow and best avoided without them.
    Aes128Gcm,
    /// No encryption at all; for fuzzers and oracle tests only (feature `null-cipher`). A
    /// server accepts it only when its own [`Encryption::cipher`] is `Null`.
    #[cfg(any(test, feature = "null-cipher"))]
    #[doc(hidden)]
    Null,
}

impl Cipher {
    /// The cipher a client proposes by default: AES-128-GCM where this CPU has the
    /// instructions that make it fast and constant-time (x86/x86-64: AES-NI and PCLMULQDQ;
    /// aarch64: AES, which includes PMULL), ChaCha20-Poly1305 elsewhere — the choice TLS stacks
    /// make. The server accepts either, so a mixed fleet interoperates. (Simulation traces do
    /// not depend on it: both ciphers produce records of the same sizes.)
    pub fn preferred() -> Cipher {
        if aes_in_hardware() {
            Cipher::Aes128Gcm
        } else {
            Cipher::ChaCha20Poly1305
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Cipher::ChaCha20Poly1305 => 1,
            Cipher::Aes128Gcm => 2,
            #[cfg(any(test, feature = "null-cipher"))]
            Cipher::Null => 0xff,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Cipher> {
        match c {
            1 => Some(Cipher::ChaCha20Poly1305),
            2 => Some(Cipher::Aes128Gcm),
            #[cfg(any(test, feature = "null-cipher"))]
            0xff => Some(Cipher::Null),
            _ => None,
        }
    }
}

/// Whether this CPU runs AES-GCM in hardware (std's cached feature detection).
fn aes_in_hardware() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Keys and limits of the encrypted protocol, in `Config::encryption`.
///
/// Start from [`Encryption::server`] or [`Encryption::client`] and change what you need with
/// a `with_` method per field (the fields stay public for reading; the struct is
/// `#[non_exhaustive]`, so a new setting is no breaking change):
///
/// ```
/// use std::time::Duration;
/// use laxnet::{Config, Encryption, KeyPair};
///
/// let server_key = KeyPair::generate();
/// let client_key = KeyPair::generate();
/// let server = Config::default().with_encryption(
///     Encryption::server(server_key.clone())
///         .with_allowed_clients([client_key.public()])
///         .with_context("chat/eu"),
/// );
/// let client = Config::default().with_encryption(
///     Encryption::client(server_key.public())
///         .with_identity(client_key)
///         .with_context("chat/eu")
///         .with_handshake_timeout(Duration::from_secs(2)),
/// );
/// # let _ = (server, client);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Encryption {
    /// This side's static key pair: required to accept; on a client, enables client
    /// authentication.
    pub identity: Option<KeyPair>,
    /// The server key a client pins (required to connect).
    pub server_key: Option<PublicKey>,
    /// If set, a server accepts only clients presenting one of these keys (in any order).
    /// `Service::new` prepares the list once — sorted for binary search, with the
    /// static-static Diffie-Hellman of each distinct key (one X25519 operation per key) — so a
    /// long list costs a handshake nothing extra.
    pub allowed_clients: Option<Vec<PublicKey>>,
    /// The AEAD a client proposes (a server accepts either real one). Default
    /// [`Cipher::preferred`]: AES-128-GCM on CPUs with AES instructions, else
    /// ChaCha20-Poly1305.
    pub cipher: Cipher,
    /// The application's context (a prologue): bound into every handshake's transcript, so a
    /// client and a server agree only when their contexts are equal, byte for byte. Two
    /// services that share a key pair but not a context are not interchangeable: a client of
    /// one that is sent to the other fails `connect` (`ServerNotAuthenticated`), and the
    /// other counts a failed handshake. Name the service and its deployment here (e.g.
    /// `b"payments/eu-prod"`). Default empty.
    pub context: Vec<u8>,
    /// Time allowed for the whole handshake. Default 5 s.
    pub handshake_timeout: Duration,
    /// Time a server gives a new connection to deliver its whole ClientHello (an honest client
    /// writes it as soon as it is connected); a connection that has not is dropped. The same
    /// time bounds the wait for the ClientFinished before the attempt counts as stalled (see
    /// [`Encryption::max_handshakes`]). At most `handshake_timeout`. Default 2 s.
    pub hello_timeout: Duration,
    /// Handshakes in progress at once on a server. When a new connection finds this many,
    /// the oldest *stalled* attempt is dropped to make room for it — one that has not
    /// delivered its ClientHello yet, or whose ClientFinished is more than `hello_timeout`
    /// late — so idle or trickling connections cannot lock real clients out; only when none is
    /// stalled is the newcomer refused (`Status::handshakes_refused`). What this does not
    /// stop (clients that complete their hellos quickly) is in the README's Encryption
    /// section. Default 256.
    pub max_handshakes: usize,
    /// Handshakes in progress at once from one source (an IPv4 address or an IPv6 /64), with
    /// the same eviction of that source's oldest stalled attempt when it is reached. Clients
    /// behind one NAT share it. Default 16.
    pub max_handshakes_per_source: usize,
    /// Largest record payload (frames per record are packed up to this). Default 16 KiB.
    pub max_record: usize,
    /// Records per direction, the Close record included: a session that needs one data
    /// record more closes abortively (`CryptoError::CounterExhausted`, without a Close
    /// record). Both ends must use the same limit. Default 2^32; at least 1 (the Close
    /// record). With AES-128-GCM a session also closes after 2^34 AES blocks (256 GiB) in one
    /// direction, the data limit RFC 8446 §5.5 sets for one AES-GCM key; there is no key
    /// update.
    pub record_limit: u64,
}

impl Default for Encryption {
    fn default() -> Self {
        Encryption {
            identity: None,
            server_key: None,
            allowed_clients: None,
            cipher: Cipher::preferred(),
            context: Vec::new(),
            handshake_timeout: Duration::from_secs(5),
            hello_timeout: Duration::from_secs(2),
            max_handshakes: 256,
            max_handshakes_per_source: 16,
            max_record: 16 << 10,
            record_limit: 1 << 32,
        }
    }
}

impl Encryption {
    /// A server's settings: its key pair.
    pub fn server(identity: KeyPair) -> Encryption {
        Encryption {
            identity: Some(identity),
            ..Encryption::default()
        }
    }

    /// A client's settings: the pinned server key.
    pub fn client(server_key: PublicKey) -> Encryption {
        Encryption {
            server_key: Some(server_key),
            ..Encryption::default()
        }
    }

    /// Sets [`Encryption::identity`]: on a client, this enables client authentication.
    pub fn with_identity(mut self, identity: KeyPair) -> Encryption {
        self.identity = Some(identity);
        self
    }

    /// Sets [`Encryption::server_key`], the server key a client pins.
    pub fn with_server_key(mut self, server_key: PublicKey) -> Encryption {
        self.server_key = Some(server_key);
        self
    }

    /// Sets [`Encryption::allowed_clients`]: a server accepts only these client keys.
    pub fn with_allowed_clients(
        mut self,
        clients: impl IntoIterator<Item = PublicKey>,
    ) -> Encryption {
        self.allowed_clients = Some(clients.into_iter().collect());
        self
    }

    /// Sets [`Encryption::cipher`].
    pub fn with_cipher(mut self, cipher: Cipher) -> Encryption {
        self.cipher = cipher;
        self
    }

    /// These settings with the application context `context` (see [`Encryption::context`]).
    pub fn with_context(mut self, context: impl Into<Vec<u8>>) -> Encryption {
        self.context = context.into();
        self
    }

    /// Sets [`Encryption::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Encryption {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`Encryption::hello_timeout`].
    pub fn with_hello_timeout(mut self, timeout: Duration) -> Encryption {
        self.hello_timeout = timeout;
        self
    }

    /// Sets [`Encryption::max_handshakes`].
    pub fn with_max_handshakes(mut self, n: usize) -> Encryption {
        self.max_handshakes = n;
        self
    }

    /// Sets [`Encryption::max_handshakes_per_source`].
    pub fn with_max_handshakes_per_source(mut self, n: usize) -> Encryption {
        self.max_handshakes_per_source = n;
        self
    }

    /// Sets [`Encryption::max_record`].
    pub fn with_max_record(mut self, bytes: usize) -> Encryption {
        self.max_record = bytes;
        self
    }

    /// Sets [`Encryption::record_limit`].
    pub fn with_record_limit(mut self, records: u64) -> Encryption {
        self.record_limit = records;
        self
    }

    /// The admission limits (see [`admission`]).
    pub(crate) fn admission_limits(&self) -> admission::Limits {
        admission::Limits {
            max: self.max_handshakes,
            per_source: self.max_handshakes_per_source,
            hello_timeout: self.hello_timeout.min(self.handshake_timeout),
            evict: true,
        }
    }
}

/// Why a handshake failed. The connection is dropped; no session exists.
///
/// Grouped by who is at fault (see [`HandshakeError::fault`]): the peer
/// ([`HandshakeError::Peer`], [`HandshakeError::Closed`]), the network
/// ([`HandshakeError::Io`]), time ([`HandshakeError::Timeout`]), or this side's admission
/// limits ([`HandshakeError::Busy`]). Using the API wrongly is no handshake error: it fails the
/// call before any I/O (`ConnectError::NotConfigured`, `AcceptError::NotConfigured`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer sent what this version does not allow, or could not prove what it must.
    Peer(PeerMisbehaved),
    /// The peer closed the connection during the handshake. A server refuses silently, so a
    /// client sees this when a server does not admit it (a client key it does not allow, a
    /// full service, no handshake place).
    Closed,
    /// The socket failed during the handshake (or the runtime could not supply the
    /// handshake's secrets).
    Io(std::io::ErrorKind),
    /// The handshake did not finish within `Encryption::handshake_timeout` (on a server, or
    /// its ClientHello within `Encryption::hello_timeout`).
    Timeout,
    /// A server only: the attempt was stalled when a new connection found the handshake places
    /// full, and was dropped to make room for it (see [`Encryption::max_handshakes`]; counted
    /// in `Status::handshakes_evicted`). Its client sees a refusal (`Busy`).
    Busy,
    /// A client only: the server refused before the handshake and sent this close code
    /// (`CloseCode::to_u8`) instead of its ServerHello; `Service::connect` reports it as
    /// `ConnectError::Refused`. Unauthenticated: an on-path attacker could forge it, as it
    /// could a reset.
    Refused(u8),
}

impl HandshakeError {
    /// Who is at fault: [`Fault::Peer`] for [`Peer`](HandshakeError::Peer) and
    /// [`Closed`](HandshakeError::Closed), [`Fault::Network`] for
    /// [`Io`](HandshakeError::Io), [`Fault::Timeout`] for
    /// [`Timeout`](HandshakeError::Timeout), [`Fault::Local`] for
    /// [`Busy`](HandshakeError::Busy) (this server's admission limits).
    pub fn fault(&self) -> Fault {
        match self {
            HandshakeError::Peer(_) | HandshakeError::Closed | HandshakeError::Refused(_) => {
                Fault::Peer
            }
            HandshakeError::Io(_) => Fault::Network,
            HandshakeError::Timeout => Fault::Timeout,
            HandshakeError::Busy => Fault::Local,
        }
    }
}

impl From<PeerMisbehaved> for HandshakeError {
    fn from(e: PeerMisbehaved) -> HandshakeError {
        HandshakeError::Peer(e)
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Peer(e) => e.fmt(f),
            HandshakeError::Closed => f.write_str("peer closed during the handshake"),
            HandshakeError::Io(k) => write!(f, "I/O error during the handshake: {k}"),
            HandshakeError::Timeout => f.write_str("handshake timed out"),
            HandshakeError::Busy => f.write_str("dropped for a newer handshake (too many at once)"),
            HandshakeError::Refused(c) => write!(f, "refused by the server (code {c})"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// How the peer broke a handshake (a [`HandshakeError::Peer`]): what it sent is not a
/// handshake of this version, or it could not prove what it must. Like rustls'
/// `PeerMisbehaved`, these are for logs and counters; an application rarely needs to tell
/// them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// Bytes that are not a handshake message of this version (another version, a cipher
    /// this side does not enable, a public key no honest peer sends).
    Malformed,
    /// The server could not prove it holds the pinned key (impersonation, the wrong key
    /// pinned, or another `Encryption::context`).
    ServerNotAuthenticated,
    /// The client's finished tag did not verify (not live, or not the key holder).
    ClientNotAuthenticated,
    /// Client authentication is on and the client's key is not allowed (or missing).
    UnknownClientKey,
}

impl fmt::Display for PeerMisbehaved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerMisbehaved::Malformed => f.write_str("malformed handshake message"),
            PeerMisbehaved::ServerNotAuthenticated => {
                f.write_str("server failed to authenticate (wrong key?)")
            }
            PeerMisbehaved::ClientNotAuthenticated => f.write_str("client failed to authenticate"),
            PeerMisbehaved::UnknownClientKey => f.write_str("client key not allowed"),
        }
    }
}

impl std::error::Error for PeerMisbehaved {}

/// Why an encrypted session's records were rejected (a [`CloseReason::Crypto`]).
///
/// [`CloseReason::Crypto`]: crate::CloseReason::Crypto
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A record failed authentication (tampered, reordered, duplicated, dropped, spliced).
    BadRecord,
    /// A record header announced more than the maximum record size.
    RecordTooLarge,
    /// The key's usage limit was reached: `Encryption::record_limit` records, or (AES-128-GCM)
    /// 2^34 blocks of data in one direction.
    CounterExhausted,
    /// The stream ended without an authenticated close.
    Truncated,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::BadRecord => f.write_str("record failed authentication"),
            CryptoError::RecordTooLarge => f.write_str("record larger than the maximum"),
            CryptoError::CounterExhausted => f.write_str("key usage limit reached"),
            CryptoError::Truncated => f.write_str("stream ended without an authenticated close"),
        }
    }
}

impl std::error::Error for CryptoError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_name_who_is_at_fault() {
        let peer = HandshakeError::from(PeerMisbehaved::ServerNotAuthenticated);
        assert_eq!(
            peer,
            HandshakeError::Peer(PeerMisbehaved::ServerNotAuthenticated)
        );
        assert_eq!(
            peer.to_string(),
            "server failed to authenticate (wrong key?)"
        );
        let cases = [
            (peer, Fault::Peer),
            (HandshakeError::Closed, Fault::Peer),
            (
                HandshakeError::Io(std::io::ErrorKind::ConnectionReset),
                Fault::Network,
            ),
            (HandshakeError::Timeout, Fault::Timeout),
            (HandshakeError::Busy, Fault::Local),
        ];
        for (e, fault) in cases {
            assert_eq!(e.fault(), fault, "{e}");
        }
    }

    #[test]
    fn the_default_cipher_follows_the_cpu() {
        assert_eq!(Encryption::default().cipher, Cipher::preferred());
        assert_eq!(
            Cipher::preferred() == Cipher::Aes128Gcm,
            aes_in_hardware(),
            "AES-128-GCM exactly where the CPU has AES instructions"
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            aes_in_hardware(),
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
        );
    }
}
