//! Thin wrappers that let `benches/internals.rs` drive the record layer and the pure handshake
//! (feature `bench-internals`, re-exported as `laxnet::bench_api`). Not a stable API.
//!
//! The wrapped types (`record::Sealer`, `record::Opener`, `RecordType`, the handshake state)
//! stay crate-private; only these newtypes and functions are reachable, and only with the
//! feature on.

use std::ops::Range;

use rand_core::CryptoRng;

use super::handshake;
use super::record::{self, RecordType};
use super::x25519;
use super::{Cipher, CryptoError, HandshakeError, KeyPair, PublicKey};

/// Bytes of a record's length header (the AAD).
pub const RECORD_HEADER: usize = record::HEADER;
/// Bytes a record adds around its payload: header, type byte, tag.
pub const RECORD_OVERHEAD: usize = record::OVERHEAD;
/// Offset of the payload within a record buffer (after the header and the type byte).
pub const RECORD_PAYLOAD_AT: usize = record::HEADER + 1;

/// Seals `Data` records for one direction (no record limit).
pub struct Sealer(record::Sealer);

impl Sealer {
    /// A sealer for `cipher` with the direction's key and base nonce.
    pub fn new(cipher: Cipher, key: &[u8; 32], nonce: &[u8; 12]) -> Sealer {
        Sealer(record::Sealer::new(cipher, key, nonce, u64::MAX))
    }

    /// Seals a `Data` record in place: `record` holds `payload_len` bytes of payload at
    /// [`RECORD_PAYLOAD_AT`] and has room for the tag after them. Returns the record's length.
    #[inline]
    pub fn seal(&mut self, record: &mut [u8], payload_len: usize) -> Result<usize, CryptoError> {
        self.0.seal(RecordType::Data, record, payload_len)
    }
}

/// Opens records for one direction (no record limit).
pub struct Opener(record::Opener);

impl Opener {
    /// An opener for `cipher` with the direction's key and base nonce.
    pub fn new(cipher: Cipher, key: &[u8; 32], nonce: &[u8; 12]) -> Opener {
        Opener(record::Opener::new(cipher, key, nonce, u64::MAX))
    }

    /// Opens a complete `Data` record in place; returns the payload's range within `record`.
    /// A `Close` record is reported as [`CryptoError::BadRecord`] (these benches never seal one).
    #[inline]
    pub fn open(&mut self, record: &mut [u8]) -> Result<Range<usize>, CryptoError> {
        match self.0.open(record)? {
            (RecordType::Data, range) => Ok(range),
            (RecordType::Close, _) => Err(CryptoError::BadRecord),
        }
    }
}

/// The `c2s` and `s2c` keys one side derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerivedKeys {
    /// Client-to-server record key.
    pub c2s_key: [u8; 32],
    /// Server-to-client record key.
    pub s2c_key: [u8; 32],
}

/// What a service computes once for all its handshakes (the pinned key's point; with client
/// authentication the static-static DH on each side), for a client pinning `pinned` and a
/// server with key pair `server`. `client_identity` turns on client authentication (RFC 9180
/// `AuthEncap`); the server then allows exactly that key.
pub struct HandshakeSetup {
    client: handshake::ClientKeys,
    server: handshake::ServerKeys,
}

impl HandshakeSetup {
    /// The setup for one client/server pair.
    pub fn new(
        server: &KeyPair,
        pinned: &PublicKey,
        client_identity: Option<&KeyPair>,
    ) -> HandshakeSetup {
        let allowed = client_identity.map(|k| [k.public()]);
        HandshakeSetup {
            client: handshake::ClientKeys::new(pinned, client_identity, &[]),
            server: handshake::ServerKeys::new(server, allowed.as_ref().map(|a| a.as_slice()), &[]),
        }
    }

    /// One whole handshake as pure functions, no socket: `client_hello` → `server_respond` →
    /// `client_finish` → `server_finish` — what a connect costs both ends in crypto. Returns
    /// the keys each side derived (client, server).
    pub fn run(
        &self,
        client_rng: &mut impl CryptoRng,
        server_rng: &mut impl CryptoRng,
        cipher: Cipher,
    ) -> Result<(DerivedKeys, DerivedKeys), HandshakeError> {
        let fresh_c = handshake::Fresh::from_rng(client_rng);
        let (cp, ch) = handshake::client_hello(fresh_c, cipher, &self.client)?;
        let fresh_s = handshake::Fresh::from_rng(server_rng);
        let (sp, sh) = handshake::server_respond(fresh_s, &self.server, &ch)?;
        let (ck, cf) = handshake::client_finish(cp, &self.client, &sh)?;
        let sk = handshake::server_finish(sp, &cf)?;
        let keys = |k: &handshake::SessionKeys| DerivedKeys {
            c2s_key: *k.c2s_key,
            s2c_key: *k.s2c_key,
        };
        Ok((keys(&ck), keys(&sk)))
    }
}

/// [`HandshakeSetup::new`] and one [`HandshakeSetup::run`]: a handshake including the work a
/// service does once.
pub fn pure_handshake(
    client_rng: &mut impl CryptoRng,
    server_rng: &mut impl CryptoRng,
    cipher: Cipher,
    server: &KeyPair,
    pinned: &PublicKey,
    client_identity: Option<&KeyPair>,
) -> Result<(DerivedKeys, DerivedKeys), HandshakeError> {
    HandshakeSetup::new(server, pinned, client_identity).run(client_rng, server_rng, cipher)
}

/// One X25519 Diffie-Hellman (RFC 7748 `X25519(secret, peer)`) the way the handshake computes
/// it (`src/crypto/x25519.rs`): the peer's point mapped to the Edwards form where that is
/// faster, multiplied, and converted back.
pub fn x25519_dh(secret: &[u8; 32], peer: &[u8; 32]) -> [u8; 32] {
    x25519::batch([x25519::Op::Dh(secret, &x25519::Point::new(peer))])[0]
}
