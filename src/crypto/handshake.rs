//! The handshake as pure functions (no socket, no clock): bytes in, bytes and keys out.
//!
//! ```text
//! client                                                     server
//!   ClientHello  magic "LXN3" | cipher | flags | 0 0 | client_random[32]
//!                | enc_c[32] | (client_pk[32] if flags&1)                  -->
//!                                  <--  ServerHello  magic | 0 0 0 0 | server_random[32]
//!                                                    | enc_s[32] | server_finished[32]
//!   ClientFinished  client_finished[32], in the same write as the
//!                   client's first records                              -->
//! ```
//!
//! The client's session opens on the ServerHello (the server is authenticated by then); its
//! ClientFinished leaves with whatever the session writes first — its first messages, or its
//! Close record — so it costs no write of its own (TLS 1.3 clients send their Finished with
//! their first application data the same way). The server opens its session only after the
//! ClientFinished verified.
//!
//! The key exchanges are RFC 9180 DHKEM(X25519, HKDF-SHA256) encapsulations (§4.1, checked
//! against the `hpke` crate's in the tests):
//!
//! - `enc_c`: the client's ephemeral public key, encapsulating `K1` to the server's static
//!   key (`AuthEncap` with the client's static key when client authentication is on). Only
//!   the server-key holder (and, with `Auth`, the client-key holder) can compute `K1`.
//! - `enc_s`: the server's ephemeral public key, encapsulating `K2` to `enc_c`. `K2` needs one
//!   of the two ephemeral secrets, which both sides drop after the handshake (forward secrecy).
//! - With client authentication, `enc_s` also encapsulates `K3` to the client's static key
//!   (Noise's `se`: DH(client static, server ephemeral)). `AuthEncap`'s static-static DH in
//!   `K1` is one that the server's secret computes as well, so without `K3` whoever holds the
//!   server's key could log in to that server as any client (key-compromise impersonation);
//!   `K3` needs the client's secret or the server's fresh ephemeral one.
//! - Keys: `HKDF-SHA256(salt = SHA-256(context prefix ‖ ClientHello ‖ ServerHello without its
//!   finished tag), ikm = K1 ‖ K2 (‖ K3))`, expanded to a key and nonce per direction, and the
//!   two finished tags. The context prefix binds the application's context string
//!   ([`Encryption::context`](super::Encryption::context)), so two services that share a key
//!   but not a context are not interchangeable. Both randoms sit in the transcript, so a
//!   replayed ClientHello meets a fresh `server_random` (and `enc_s`) and yields different
//!   keys: its recorded records fail to authenticate.
//!
//! Every public key a peer sends is checked before any scalar multiplication: canonical, on
//! the curve (not its twist) and not of small order ([`Point::from_peer`]); a client's static
//! key must also lie in the prime-order subgroup, so one secret proves exactly one key. No
//! honest peer sends anything else.
//!
//! The client's ephemeral key serves both of its exchanges (as in Noise `NK`), and no side
//! recomputes a public key it already knows, so an anonymous handshake costs the minimum for
//! server authentication plus forward secrecy: per side one base-point multiplication and two
//! Diffie-Hellman operations; client authentication adds `K3`'s DH on each side. Each side
//! does its X25519 work as one batch ([`super::x25519`]): the server all of it on the
//! ClientHello, the client its key generation for the ClientHello and its Diffie-Hellman
//! operations on the ServerHello. What is the same for every handshake of a service is
//! computed once ([`ClientKeys`], [`ServerKeys`]): the pinned server key's point (and, once a
//! service has connected often enough, a table of its multiples: [`x25519::FixedPoint`]), the
//! context's transcript prefix and, with client authentication, the static-static DH of
//! `AuthEncap`/`AuthDecap` (and each allowed client key's point).
//!
//! Every secret here is zeroed when dropped: ephemeral secrets, Diffie-Hellman outputs, `K1`,
//! `K2`, `K3`, the HKDF state and pseudorandom keys, the derived keys and the finished tags
//! the server expects.
//!
//! The code is in four places: this file holds the wire constants, what both sides share
//! ([`SessionKeys`], [`Fresh`]) and the ClientHello's header check; `client` and `server`
//! each side's keys prepared once, its messages and its batch of X25519 work; `schedule` the
//! key derivation both sides run alike (RFC 9180 DHKEM secrets and the key schedule).
//!
//! [`Point::from_peer`]: super::x25519::Point::from_peer
//! [`x25519::FixedPoint`]: super::x25519::FixedPoint

#[cfg(any(test, feature = "bench-internals"))]
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::keys::PublicKey;
use super::{Cipher, PeerMisbehaved};

mod client;
mod schedule;
mod server;

#[cfg(feature = "fuzzing")]
pub(crate) use client::ClientPending;
pub(crate) use client::{ClientKeys, client_finish, client_hello};
#[cfg(feature = "fuzzing")]
pub(crate) use server::ServerPending;
#[cfg(test)]
pub(crate) use server::forge_server_hello;
pub(crate) use server::{ServerKeys, server_finish, server_respond};

/// The protocol version, first on the wire: v3 binds the client's static key to the server's
/// ephemeral one (`K3`) and the context into the transcript.
pub(crate) const MAGIC: [u8; 4] = *b"LXN3";
/// A server's refusal in place of its ServerHello: these four bytes, then a one-byte close
/// code (`CloseCode`). Unauthenticated (see `docs/wire.md`).
pub(crate) const REFUSAL_MAGIC: [u8; 4] = *b"LXNR";
/// Bytes of a refusal.
pub(crate) const REFUSAL_LEN: usize = 5;
/// Bytes of the ClientHello header (magic, cipher, flags, reserved).
pub(crate) const CH_HEADER: usize = 8;
/// Bytes of a ClientHello without a client key.
pub(crate) const CH_BASE: usize = CH_HEADER + 32 * 2;
/// The largest ClientHello (with a client key).
pub(crate) const CH_MAX: usize = CH_BASE + 32;
/// Bytes of the ServerHello.
pub(crate) const SH_LEN: usize = 8 + 32 * 3;
/// Bytes of the ServerHello without its finished tag.
const SH_CORE: usize = SH_LEN - 32;
/// Bytes of the ClientFinished.
pub(crate) const CF_LEN: usize = 32;
const FLAG_CLIENT_AUTH: u8 = 1;

/// A 32-byte secret, zeroed on drop.
type Secret32 = Zeroizing<[u8; 32]>;
/// A 12-byte secret (a base nonce), zeroed on drop.
type Secret12 = Zeroizing<[u8; 12]>;

/// Key material for both directions, derived by both sides, and the peer's authenticated key.
/// The keys are zeroed on drop.
pub(crate) struct SessionKeys {
    pub(crate) cipher: Cipher,
    /// The peer's static key, proven by the handshake: the server's (pinned) key on the
    /// client; the client's key on the server when the client presented one.
    pub(crate) peer_key: Option<PublicKey>,
    pub(crate) c2s_key: Secret32,
    pub(crate) c2s_nonce: Secret12,
    pub(crate) s2c_key: Secret32,
    pub(crate) s2c_nonce: Secret12,
}

/// What one side of one handshake draws fresh: its random and its ephemeral secret. The
/// service draws it from its runtime's secret entropy (`Runtime::fill_secret`: the operating
/// system's RNG on real sockets), never from its seeded RNG. The secret is zeroed on drop.
pub(crate) struct Fresh {
    random: [u8; 32],
    eph: StaticSecret,
}

impl Fresh {
    /// Bytes of entropy one side of a handshake draws.
    pub(crate) const LEN: usize = 64;

    /// The random (the first 32 bytes) and the ephemeral secret (the rest). The caller zeroes
    /// `bytes`.
    pub(crate) fn new(bytes: &[u8; Fresh::LEN]) -> Fresh {
        let mut random = [0u8; 32];
        random.copy_from_slice(&bytes[..32]);
        let mut eph = Zeroizing::new([0u8; 32]);
        eph.copy_from_slice(&bytes[32..]);
        Fresh {
            random,
            eph: StaticSecret::from(*eph),
        }
    }

    /// Drawn from `rng` (tests and benches: known answers, no system calls).
    #[cfg(any(test, feature = "bench-internals"))]
    pub(crate) fn from_rng(rng: &mut impl CryptoRng) -> Fresh {
        let mut bytes = Zeroizing::new([0u8; Fresh::LEN]);
        rng.fill_bytes(&mut *bytes);
        Fresh::new(&bytes)
    }
}

/// The total length of a ClientHello, from its header; rejects anything else before any
/// cryptographic work. (A server also checks that it accepts the cipher:
/// [`ServerKeys::hello_len`].)
pub(crate) fn client_hello_len(header: &[u8; CH_HEADER]) -> Result<usize, PeerMisbehaved> {
    if header[..4] != MAGIC || header[6..8] != [0, 0] {
        return Err(PeerMisbehaved::Malformed);
    }
    Cipher::from_code(header[4]).ok_or(PeerMisbehaved::Malformed)?;
    match header[5] {
        0 => Ok(CH_BASE),
        FLAG_CLIENT_AUTH => Ok(CH_MAX),
        _ => Err(PeerMisbehaved::Malformed),
    }
}

/// The transcript hash's prefix, the same for every handshake of a service: the application's
/// context string, length first (so no context is a prefix of another's encoding).
fn transcript_prefix(context: &[u8]) -> Sha256 {
    Sha256::new()
        .chain_update(b"laxnet/v3 context")
        .chain_update((context.len() as u64).to_le_bytes())
        .chain_update(context)
}

/// Constant-time equality of two tags.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
