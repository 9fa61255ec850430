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

use hkdf::HkdfExtract;
#[cfg(any(test, feature = "bench-internals"))]
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, Zeroizing};

use super::keys::{KeyPair, PublicKey};
use super::x25519::{self, FixedPoint, Op, Point};
use super::{Cipher, PeerMisbehaved};

/// The protocol version, first on the wire: v3 binds the client's static key to the server's
/// ephemeral one (`K3`) and the context into the transcript.
pub(crate) const MAGIC: [u8; 4] = *b"LXN3";
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

struct Schedule {
    keys: SessionKeys,
    server_finished: Secret32,
    client_finished: Secret32,
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

/// What a client computes once (per service) for all its handshakes: the pinned server key
/// and its point, the context's transcript prefix, and with client authentication the
/// client's key pair and the static-static DH (`AuthEncap`'s second DH, the same for every
/// connect to that server).
pub(crate) struct ClientKeys {
    server: PublicKey,
    point: FixedPoint,
    identity: Option<(KeyPair, Secret32)>,
    transcript: Sha256,
}

impl ClientKeys {
    /// Keys for connecting to `server` in `context`, presenting `identity` if given (one DH
    /// with it).
    pub(crate) fn new(
        server: &PublicKey,
        identity: Option<&KeyPair>,
        context: &[u8],
    ) -> ClientKeys {
        let point = FixedPoint::new(&server.0);
        let identity = identity.map(|id| {
            let r = x25519::batch([Op::Dh(id.secret.as_bytes(), point.point())]);
            (id.clone(), Zeroizing::new(r[0]))
        });
        ClientKeys {
            server: *server,
            point,
            identity,
            transcript: transcript_prefix(context),
        }
    }

    /// A client that presents `claimed` and has `ss` for its static-static DH, but only
    /// `secret` (not `claimed`'s) for anything else: what an attacker who holds the server's
    /// key can build (`ss = DH(server secret, claimed)`), for the key-compromise tests.
    #[cfg(test)]
    pub(crate) fn impersonating(
        server: &PublicKey,
        claimed: PublicKey,
        secret: &KeyPair,
        ss: [u8; 32],
        context: &[u8],
    ) -> ClientKeys {
        let mut keys = ClientKeys::new(server, None, context);
        let mut id = secret.clone();
        id.public = claimed;
        keys.identity = Some((id, Zeroizing::new(ss)));
        keys
    }
}

/// A client key on a server's allow-list, with what every handshake with it shares: its
/// point and the static-static DH (`AuthDecap`'s second DH).
struct AllowedKey {
    key: PublicKey,
    point: Point,
    ss: Secret32,
}

/// What a server computes once (per service) for all its handshakes: its key pair, the
/// context's transcript prefix and, with an allow-list, each allowed client key (sorted, for
/// binary search) with its point and static-static DH.
pub(crate) struct ServerKeys {
    identity: KeyPair,
    allowed: Option<Vec<AllowedKey>>,
    transcript: Sha256,
    /// The server's own configuration names the null cipher (see [`Cipher::Null`]).
    #[cfg(any(test, feature = "null-cipher"))]
    null_cipher: bool,
}

impl ServerKeys {
    /// Keys for accepting with `identity` in `context`, allowing only `allowed` client keys if
    /// given (any order, duplicates ignored; one DH per distinct key).
    pub(crate) fn new(
        identity: &KeyPair,
        allowed: Option<&[PublicKey]>,
        context: &[u8],
    ) -> ServerKeys {
        let allowed = allowed.map(|list| {
            let mut keys = list.to_vec();
            keys.sort_unstable();
            keys.dedup();
            keys.into_iter()
                .map(|key| {
                    let point = Point::new(&key.0);
                    let r = x25519::batch([Op::Dh(identity.secret.as_bytes(), &point)]);
                    AllowedKey {
                        key,
                        point,
                        ss: Zeroizing::new(r[0]),
                    }
                })
                .collect()
        });
        ServerKeys {
            identity: identity.clone(),
            allowed,
            transcript: transcript_prefix(context),
            #[cfg(any(test, feature = "null-cipher"))]
            null_cipher: false,
        }
    }

    /// Whether this server accepts the null cipher.
    #[cfg(test)]
    pub(crate) fn accepts_null(&self) -> bool {
        self.null_cipher
    }

    /// Accept clients that propose the null cipher (only when the server's own configuration
    /// names it).
    #[cfg(any(test, feature = "null-cipher"))]
    pub(crate) fn with_null_cipher(mut self, accept: bool) -> ServerKeys {
        self.null_cipher = accept;
        self
    }

    /// The total length of a ClientHello from its header ([`client_hello_len`]), refusing a
    /// cipher this server does not accept.
    pub(crate) fn hello_len(&self, header: &[u8; CH_HEADER]) -> Result<usize, PeerMisbehaved> {
        let len = client_hello_len(header)?;
        #[cfg(any(test, feature = "null-cipher"))]
        if Cipher::from_code(header[4]) == Some(Cipher::Null) && !self.null_cipher {
            return Err(PeerMisbehaved::Malformed);
        }
        Ok(len)
    }
}

/// What the client keeps between its hello and the server's answer.
pub(crate) struct ClientPending {
    hello: [u8; CH_MAX],
    hello_len: usize,
    /// The ephemeral secret (zeroed on drop).
    eph: StaticSecret,
    cipher: Cipher,
}

/// Builds the ClientHello from `fresh` (its random and ephemeral secret).
pub(crate) fn client_hello(
    fresh: Fresh,
    cipher: Cipher,
    keys: &ClientKeys,
) -> Result<(ClientPending, Vec<u8>), PeerMisbehaved> {
    let Fresh { random, eph } = fresh;
    let mut hello = [0u8; CH_MAX];
    hello[..4].copy_from_slice(&MAGIC);
    hello[4] = cipher.code();
    hello[5] = if keys.identity.is_some() {
        FLAG_CLIENT_AUTH
    } else {
        0
    };
    hello[8..40].copy_from_slice(&random);
    let enc = x25519::batch([Op::Base(eph.as_bytes())]);
    hello[40..72].copy_from_slice(&enc[0]);
    let len = match &keys.identity {
        Some((id, _)) => {
            hello[72..104].copy_from_slice(&id.public.0);
            CH_MAX
        }
        None => CH_BASE,
    };
    let bytes = hello[..len].to_vec();
    Ok((
        ClientPending {
            hello,
            hello_len: len,
            eph,
            cipher,
        },
        bytes,
    ))
}

/// What the server keeps between its answer and the ClientFinished.
pub(crate) struct ServerPending {
    schedule: Schedule,
}

/// A client's static key as the server uses it: the key, its point and, from the allow-list,
/// the static-static DH.
struct ClientStatic<'a> {
    key: &'a [u8; 32],
    point: &'a Point,
    ss: Option<&'a [u8; 32]>,
}

/// Answers a ClientHello, with `fresh` (the server's random and ephemeral secret). Refuses an
/// unknown client key (binary search in the allow-list) and any public key no honest client
/// sends before any Diffie-Hellman. Work per call is fixed: one base-point multiplication (the
/// server's ephemeral key), two Diffie-Hellman operations (three with a client key; four when
/// there is no allow-list, which also checks the key's subgroup with one more multiplication)
/// and a few hashes.
pub(crate) fn server_respond(
    fresh: Fresh,
    keys: &ServerKeys,
    hello: &[u8],
) -> Result<(ServerPending, [u8; SH_LEN]), PeerMisbehaved> {
    let header: &[u8; CH_HEADER] = hello.first_chunk().ok_or(PeerMisbehaved::Malformed)?;
    if keys.hello_len(header)? != hello.len() {
        return Err(PeerMisbehaved::Malformed);
    }
    let cipher = Cipher::from_code(hello[4]).ok_or(PeerMisbehaved::Malformed)?;
    let client_key: Option<&[u8; 32]> = match hello.len() {
        CH_MAX => Some(hello[72..104].try_into().expect("32 bytes")),
        _ => None,
    };
    // An allow-list refuses an unknown key first (exact bytes: its keys are valid keys).
    let allowed = match (&keys.allowed, client_key) {
        (Some(list), Some(k)) => match list.binary_search_by(|a| a.key.0.cmp(k)) {
            Ok(i) => Some(&list[i]),
            Err(_) => return Err(PeerMisbehaved::UnknownClientKey),
        },
        (Some(_), None) => return Err(PeerMisbehaved::UnknownClientKey),
        (None, _) => None,
    };
    let enc_c: &[u8; 32] = hello[40..72].try_into().expect("32 bytes");
    let e = Point::from_peer(enc_c).ok_or(PeerMisbehaved::Malformed)?;
    // Without an allow-list, any valid key (checked last: the subgroup check multiplies).
    let unlisted = match (allowed, client_key) {
        (None, Some(k)) => Some(Point::from_peer_static(k).ok_or(PeerMisbehaved::Malformed)?),
        _ => None,
    };
    let client = match (allowed, client_key, &unlisted) {
        (Some(a), _, _) => Some(ClientStatic {
            key: &a.key.0,
            point: &a.point,
            ss: Some(&a.ss),
        }),
        (None, Some(key), Some(point)) => Some(ClientStatic {
            key,
            point,
            ss: None,
        }),
        _ => None,
    };

    let Fresh { random, eph } = fresh;
    let mut sh = [0u8; SH_LEN];
    sh[..4].copy_from_slice(&MAGIC);
    sh[8..40].copy_from_slice(&random);
    let (enc_s, k1, k2, k3) = server_kem(&keys.identity, enc_c, &e, client, eph.as_bytes())?;
    drop(eph);
    sh[40..72].copy_from_slice(&enc_s);
    let peer_key = client_key.map(|k| PublicKey(*k));
    let ks: &[&[u8; 32]] = match &k3 {
        Some(k3) => &[&k1, &k2, k3],
        None => &[&k1, &k2],
    };
    let schedule = schedule(
        &keys.transcript,
        cipher,
        peer_key,
        hello,
        &sh[..SH_CORE],
        ks,
    );
    sh[SH_CORE..].copy_from_slice(&*schedule.server_finished);
    Ok((ServerPending { schedule }, sh))
}

/// Checks the ServerHello (a wrong server key fails here: the server could not compute the
/// finished tag) and produces the ClientFinished.
pub(crate) fn client_finish(
    pending: ClientPending,
    keys: &ClientKeys,
    sh: &[u8; SH_LEN],
) -> Result<(SessionKeys, [u8; CF_LEN]), PeerMisbehaved> {
    if sh[..4] != MAGIC || sh[4..8] != [0; 4] {
        return Err(PeerMisbehaved::Malformed);
    }
    let enc_s: &[u8; 32] = sh[40..72].try_into().expect("32 bytes");
    let enc_c: &[u8; 32] = pending.hello[40..72].try_into().expect("32 bytes");
    let (k1, k2, k3) = client_kem(pending.eph.as_bytes(), enc_c, keys, enc_s)?;
    let ks: &[&[u8; 32]] = match &k3 {
        Some(k3) => &[&k1, &k2, k3],
        None => &[&k1, &k2],
    };
    let s = schedule(
        &keys.transcript,
        pending.cipher,
        Some(keys.server),
        &pending.hello[..pending.hello_len],
        &sh[..SH_CORE],
        ks,
    );
    if !ct_eq(&*s.server_finished, &sh[SH_CORE..]) {
        return Err(PeerMisbehaved::ServerNotAuthenticated);
    }
    // The tag goes on the wire next: no secret.
    let cf = *s.client_finished;
    Ok((s.keys, cf))
}

/// Checks the ClientFinished: proves the client derived the same keys (so it is live, holds
/// its ephemeral key and, with client authentication, its static key).
pub(crate) fn server_finish(
    pending: ServerPending,
    cf: &[u8; CF_LEN],
) -> Result<SessionKeys, PeerMisbehaved> {
    if !ct_eq(&*pending.schedule.client_finished, cf) {
        return Err(PeerMisbehaved::ClientNotAuthenticated);
    }
    Ok(pending.schedule.keys)
}

type Bytes32 = [u8; 32];
/// `enc_s`, `K1`, `K2` and, with a client key, `K3`.
type ServerKem = (Bytes32, Secret32, Secret32, Option<Secret32>);

/// The server's X25519 work for one ClientHello, as one batch: its ephemeral public key
/// `enc_s` (from the secret `eph`), `K1 = Decap(enc_c)` (`AuthDecap` with the client's key:
/// the static-static DH from the allow-list, or computed in the batch), `K2 = Encap(enc_c)`
/// and, with a client key, `K3 = Encap(client key)`, both with `eph`. Each peer point is
/// mapped once (`e` is `enc_c`'s).
fn server_kem(
    identity: &KeyPair,
    enc_c: &[u8; 32],
    e: &Point,
    client: Option<ClientStatic<'_>>,
    eph: &[u8; 32],
) -> Result<ServerKem, PeerMisbehaved> {
    let own = &identity.public.0;
    let secret = identity.secret.as_bytes();
    match client {
        None => {
            let r = x25519::batch([Op::Base(eph), Op::Dh(secret, e), Op::Dh(eph, e)]);
            let enc_s = r[0];
            let k1 = kem_secret(&[&r[1]], enc_c, own, None)?;
            let k2 = kem_secret(&[&r[2]], &enc_s, enc_c, None)?;
            Ok((enc_s, k1, k2, None))
        }
        Some(ClientStatic {
            key,
            point,
            ss: Some(ss),
        }) => {
            let r = x25519::batch([
                Op::Base(eph),
                Op::Dh(secret, e),
                Op::Dh(eph, e),
                Op::Dh(eph, point),
            ]);
            let enc_s = r[0];
            let k1 = kem_secret(&[&r[1], ss], enc_c, own, Some(key))?;
            let k2 = kem_secret(&[&r[2]], &enc_s, enc_c, None)?;
            let k3 = kem_secret(&[&r[3]], &enc_s, key, None)?;
            Ok((enc_s, k1, k2, Some(k3)))
        }
        Some(ClientStatic {
            key,
            point,
            ss: None,
        }) => {
            let r = x25519::batch([
                Op::Base(eph),
                Op::Dh(secret, e),
                Op::Dh(secret, point),
                Op::Dh(eph, e),
                Op::Dh(eph, point),
            ]);
            let enc_s = r[0];
            let k1 = kem_secret(&[&r[1], &r[2]], enc_c, own, Some(key))?;
            let k2 = kem_secret(&[&r[3]], &enc_s, enc_c, None)?;
            let k3 = kem_secret(&[&r[4]], &enc_s, key, None)?;
            Ok((enc_s, k1, k2, Some(k3)))
        }
    }
}

/// The client's X25519 work on the ServerHello, as one batch: with its ephemeral secret `eph`
/// (public key `enc_c`) `K1 = Encap(server)` (`AuthEncap` with the prepared static-static DH)
/// and `K2 = Decap(enc_s)`, and with its static key `K3 = Decap(enc_s)`. Refuses an `enc_s`
/// no honest server sends before any of it.
fn client_kem(
    eph: &[u8; 32],
    enc_c: &[u8; 32],
    keys: &ClientKeys,
    enc_s: &[u8; 32],
) -> Result<(Secret32, Secret32, Option<Secret32>), PeerMisbehaved> {
    let e = Point::from_peer(enc_s).ok_or(PeerMisbehaved::Malformed)?;
    let server = &keys.server.0;
    match &keys.identity {
        None => {
            let r = x25519::batch([keys.point.dh(eph), Op::Dh(eph, &e)]);
            let k1 = kem_secret(&[&r[0]], enc_c, server, None)?;
            let k2 = kem_secret(&[&r[1]], enc_s, enc_c, None)?;
            Ok((k1, k2, None))
        }
        Some((id, ss)) => {
            let r = x25519::batch([
                keys.point.dh(eph),
                Op::Dh(eph, &e),
                Op::Dh(id.secret.as_bytes(), &e),
            ]);
            let k1 = kem_secret(&[&r[0], ss], enc_c, server, Some(&id.public.0))?;
            let k2 = kem_secret(&[&r[1]], enc_s, enc_c, None)?;
            let k3 = kem_secret(&[&r[2]], enc_s, &id.public.0, None)?;
            Ok((k1, k2, Some(k3)))
        }
    }
}

/// The shared secret of RFC 9180 `Encap`/`Decap` (§4.1; `AuthEncap`/`AuthDecap` with
/// `sender`) from its Diffie-Hellman outputs, which both ends compute alike: `dh` is
/// `[DH(skE, pkR)]`, or `[DH(skE, pkR), DH(skS, pkR)]` with a sender key; the KEM context is
/// `enc ‖ pkR (‖ pkS)`. Refuses an all-zero DH output (a low-order point from the peer), as
/// RFC 9180 requires.
fn kem_secret(
    dh: &[&[u8; 32]],
    enc: &[u8; 32],
    recipient: &[u8; 32],
    sender: Option<&[u8; 32]>,
) -> Result<Secret32, PeerMisbehaved> {
    if dh.iter().any(|d| ct_eq(*d, &[0; 32])) {
        return Err(PeerMisbehaved::Malformed);
    }
    Ok(match sender {
        Some(pk_s) => dhkem_secret(dh, &[enc, recipient, pk_s]),
        None => dhkem_secret(dh, &[enc, recipient]),
    })
}

/// RFC 9180 §4.1 `ExtractAndExpand(dh, kem_context)` for DHKEM(X25519, HKDF-SHA256), with
/// `dh` and `kem_context` given as the parts they concatenate.
fn dhkem_secret(dh: &[&[u8; 32]], kem_context: &[&[u8]]) -> Secret32 {
    const SUITE_ID: &[u8] = b"KEM\x00\x20";
    let mut extract = HkdfExtract::<Sha256>::new(Some(&[][..]));
    for part in [b"HPKE-v1".as_slice(), SUITE_ID, b"eae_prk"] {
        extract.input_ikm(part);
    }
    for part in dh {
        extract.input_ikm(*part);
    }
    let (mut prk_bytes, prk) = extract.finalize();
    prk_bytes[..].zeroize();
    // I2OSP(32, 2) ‖ "HPKE-v1" ‖ suite_id ‖ "shared_secret" ‖ kem_context (at most 3 keys).
    let mut info: [&[u8]; 7] = [
        &[0, 32],
        b"HPKE-v1",
        SUITE_ID,
        b"shared_secret",
        &[],
        &[],
        &[],
    ];
    assert!(
        kem_context.len() <= 3,
        "a kem_context has at most three keys"
    );
    for (slot, part) in info[4..].iter_mut().zip(kem_context) {
        *slot = part;
    }
    let mut out = Zeroizing::new([0u8; 32]);
    prk.expand_multi_info(&info, &mut *out)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// The key schedule: HKDF-SHA256 with the transcript hash (`prefix`, then the hellos) as the
/// salt and `ks` (`K1 ‖ K2 (‖ K3)`) as the input keying material.
fn schedule(
    prefix: &Sha256,
    cipher: Cipher,
    peer_key: Option<PublicKey>,
    hello: &[u8],
    sh_core: &[u8],
    ks: &[&[u8; 32]],
) -> Schedule {
    let th = prefix
        .clone()
        .chain_update(hello)
        .chain_update(sh_core)
        .finalize();
    let mut extract = HkdfExtract::<Sha256>::new(Some(&th));
    for k in ks {
        extract.input_ikm(*k);
    }
    let (mut prk_bytes, hk) = extract.finalize();
    prk_bytes[..].zeroize();
    let expand32 = |label: &[u8]| {
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(label, &mut *out)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    };
    let expand12 = |label: &[u8]| {
        let mut out = Zeroizing::new([0u8; 12]);
        hk.expand(label, &mut *out)
            .expect("12 bytes is a valid HKDF-SHA256 length");
        out
    };
    Schedule {
        keys: SessionKeys {
            cipher,
            peer_key,
            c2s_key: expand32(b"laxnet/v3 c2s key"),
            c2s_nonce: expand12(b"laxnet/v3 c2s nonce"),
            s2c_key: expand32(b"laxnet/v3 s2c key"),
            s2c_nonce: expand12(b"laxnet/v3 s2c nonce"),
        },
        server_finished: expand32(b"laxnet/v3 server finished"),
        client_finished: expand32(b"laxnet/v3 client finished"),
    }
}

/// A ServerHello for `hello` (an anonymous ClientHello to `server` in `context`) made without
/// the server's secret key, by whoever knows the client's ephemeral secret `client_eph`:
/// `DH(client_eph, server)` is the `DH(server secret, enc_c)` of `K1`. With `server_eph` as
/// its own ephemeral secret. For the tests of what a predictable client secret would give away.
#[cfg(test)]
pub(crate) fn forge_server_hello(
    client_eph: &[u8; 32],
    hello: &[u8],
    server: &PublicKey,
    context: &[u8],
    server_eph: &[u8; 32],
) -> Result<[u8; SH_LEN], PeerMisbehaved> {
    let enc_c: &[u8; 32] = hello[40..72].try_into().expect("32 bytes");
    let r = x25519::batch([
        Op::Base(server_eph),
        Op::Dh(client_eph, &Point::new(&server.0)),
        Op::Dh(server_eph, &Point::new(enc_c)),
    ]);
    let enc_s = r[0];
    let k1 = kem_secret(&[&r[1]], enc_c, &server.0, None)?;
    let k2 = kem_secret(&[&r[2]], &enc_s, enc_c, None)?;
    let mut sh = [0u8; SH_LEN];
    sh[..4].copy_from_slice(&MAGIC);
    sh[40..72].copy_from_slice(&enc_s);
    let cipher = Cipher::from_code(hello[4]).ok_or(PeerMisbehaved::Malformed)?;
    let s = schedule(
        &transcript_prefix(context),
        cipher,
        None,
        hello,
        &sh[..SH_CORE],
        &[&k1, &k2],
    );
    sh[SH_CORE..].copy_from_slice(&*s.server_finished);
    Ok(sh)
}

/// Constant-time equality of two tags.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpke::{Deserializable, Serializable};
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn fresh(seed: u64) -> Fresh {
        Fresh::from_rng(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    fn run(
        client_id: Option<&KeyPair>,
        allowed: Option<&[PublicKey]>,
        server: &KeyPair,
        pinned: &PublicKey,
    ) -> Result<(SessionKeys, SessionKeys), PeerMisbehaved> {
        run_in(client_id, allowed, server, pinned, b"", b"")
    }

    /// One handshake with fixed randomness; the client in `client_context`, the server in
    /// `server_context`.
    fn run_in(
        client_id: Option<&KeyPair>,
        allowed: Option<&[PublicKey]>,
        server: &KeyPair,
        pinned: &PublicKey,
        client_context: &[u8],
        server_context: &[u8],
    ) -> Result<(SessionKeys, SessionKeys), PeerMisbehaved> {
        let client_keys = ClientKeys::new(pinned, client_id, client_context);
        let (cp, ch) = client_hello(fresh(1), Cipher::ChaCha20Poly1305, &client_keys)?;
        let server_keys = ServerKeys::new(server, allowed, server_context);
        let (sp, sh) = server_respond(fresh(2), &server_keys, &ch)?;
        let (ck, cf) = client_finish(cp, &client_keys, &sh)?;
        let sk = server_finish(sp, &cf)?;
        Ok((ck, sk))
    }

    #[test]
    fn both_sides_derive_the_same_independent_keys() {
        let server = KeyPair::from_seed(&[1; 32]);
        let (c, s) = run(None, None, &server, &server.public()).unwrap();
        assert_eq!(c.c2s_key, s.c2s_key);
        assert_eq!(c.s2c_key, s.s2c_key);
        assert_eq!(c.c2s_nonce, s.c2s_nonce);
        assert_ne!(c.c2s_key, c.s2c_key, "each direction has its own key");
        assert_eq!(
            c.peer_key,
            Some(server.public()),
            "the client knows the server's key"
        );
        assert_eq!(s.peer_key, None, "an anonymous client has no key");
    }

    #[test]
    fn wrong_server_key_is_detected_by_the_client() {
        let real = KeyPair::from_seed(&[1; 32]);
        let impostor = KeyPair::from_seed(&[2; 32]);
        // The client pins `real`; `impostor` answers. HPKE setup fails or the finished tag does.
        let err = run(None, None, &impostor, &real.public()).err().unwrap();
        assert!(
            matches!(
                err,
                PeerMisbehaved::ServerNotAuthenticated | PeerMisbehaved::Malformed
            ),
            "{err:?}"
        );
    }

    #[test]
    fn client_auth_allow_list() {
        let server = KeyPair::from_seed(&[1; 32]);
        let alice = KeyPair::from_seed(&[3; 32]);
        let mallory = KeyPair::from_seed(&[4; 32]);
        let allowed = [alice.public()];
        let (c, s) = run(Some(&alice), Some(&allowed), &server, &server.public()).unwrap();
        assert_eq!(
            s.peer_key,
            Some(alice.public()),
            "the server knows the client's key"
        );
        assert_eq!(c.peer_key, Some(server.public()));
        assert_eq!(c.c2s_key, s.c2s_key);
        // Without an allow-list the key is still proven, and reported.
        let (c, s) = run(Some(&mallory), None, &server, &server.public()).unwrap();
        assert_eq!(s.peer_key, Some(mallory.public()));
        assert_eq!(c.c2s_key, s.c2s_key);
        assert!(matches!(
            run(Some(&mallory), Some(&allowed), &server, &server.public()),
            Err(PeerMisbehaved::UnknownClientKey)
        ));
        assert!(matches!(
            run(None, Some(&allowed), &server, &server.public()),
            Err(PeerMisbehaved::UnknownClientKey)
        ));
    }

    #[test]
    fn claiming_an_allowed_key_without_its_secret_fails() {
        // Mallory sends Alice's public key but must use her own secret in Auth mode: the
        // derived keys differ, so the server rejects the ClientFinished.
        let server = KeyPair::from_seed(&[1; 32]);
        let alice = KeyPair::from_seed(&[3; 32]);
        let mallory = KeyPair::from_seed(&[4; 32]);
        let forged = KeyPair {
            secret: mallory.secret.clone(),
            public: alice.public(),
        };
        let allowed = [alice.public()];
        let err = run(Some(&forged), Some(&allowed), &server, &server.public())
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                PeerMisbehaved::ClientNotAuthenticated | PeerMisbehaved::ServerNotAuthenticated
            ),
            "{err:?}"
        );
    }

    /// Key-compromise impersonation: whoever holds the server's secret key computes the
    /// static-static DH of any client (`DH(server secret, client key)` = `DH(client secret,
    /// server key)`), so `K1` alone cannot authenticate a client to that server. `K3` (the
    /// server's fresh ephemeral with the client's key) needs the client's secret. Fails on
    /// v2 (without `K3`), where this handshake succeeds and reports Alice's key.
    #[test]
    fn the_servers_secret_key_alone_does_not_log_in_as_a_client() {
        let server = KeyPair::from_seed(&[1; 32]);
        let alice = KeyPair::from_seed(&[3; 32]);
        let mallory = KeyPair::from_seed(&[4; 32]);
        let ss = x25519::batch([Op::Dh(
            server.secret.as_bytes(),
            &Point::new(&alice.public.0),
        )])[0];
        for allowed in [Some(vec![alice.public()]), None] {
            let attacker =
                ClientKeys::impersonating(&server.public(), alice.public(), &mallory, ss, b"");
            let server_keys = ServerKeys::new(&server, allowed.as_deref(), b"");
            let (cp, ch) = client_hello(fresh(7), Cipher::Aes128Gcm, &attacker).unwrap();
            let (sp, sh) = server_respond(fresh(8), &server_keys, &ch).unwrap();
            // The attacker cannot even check the server's tag (it lacks K3), and whatever
            // finished tag it sends is refused.
            let err = client_finish(cp, &attacker, &sh).err();
            assert_eq!(err, Some(PeerMisbehaved::ServerNotAuthenticated));
            let mut guess = [0u8; CF_LEN];
            ChaCha20Rng::seed_from_u64(9).fill_bytes(&mut guess);
            assert_eq!(
                server_finish(sp, &guess).err(),
                Some(PeerMisbehaved::ClientNotAuthenticated),
                "allow-list {}",
                allowed.is_some()
            );
        }
    }

    #[test]
    fn the_context_is_bound_into_the_transcript() {
        let server = KeyPair::from_seed(&[1; 32]);
        let alice = KeyPair::from_seed(&[3; 32]);
        let allowed = [alice.public()];
        for id in [None, Some(&alice)] {
            let list = id.map(|_| &allowed[..]);
            let (c, s) = run_in(id, list, &server, &server.public(), b"eu", b"eu").unwrap();
            assert_eq!(c.c2s_key, s.c2s_key);
            let (c0, _) = run_in(id, list, &server, &server.public(), b"", b"").unwrap();
            assert_ne!(c.c2s_key, c0.c2s_key, "the context changes the keys");
            for (cc, sc) in [(&b"eu"[..], &b"us"[..]), (b"", b"eu"), (b"e", b"u")] {
                assert_eq!(
                    run_in(id, list, &server, &server.public(), cc, sc).err(),
                    Some(PeerMisbehaved::ServerNotAuthenticated),
                    "client context {cc:?}, server context {sc:?}"
                );
            }
        }
        // Length-prefixed: a context is not another one's prefix plus hello bytes.
        assert_ne!(
            transcript_prefix(b"ab").finalize(),
            transcript_prefix(b"a").chain_update(b"b").finalize()
        );
    }

    #[test]
    fn replayed_hello_yields_different_keys() {
        let server = KeyPair::from_seed(&[1; 32]);
        let client_keys = ClientKeys::new(&server.public(), None, b"");
        let server_keys = ServerKeys::new(&server, None, b"");
        let (_, ch) = client_hello(fresh(1), Cipher::Aes128Gcm, &client_keys).unwrap();
        let (a, _) = server_respond(fresh(5), &server_keys, &ch).unwrap();
        let (b, _) = server_respond(fresh(6), &server_keys, &ch).unwrap();
        assert_ne!(a.schedule.keys.c2s_key, b.schedule.keys.c2s_key);
    }

    #[test]
    fn garbage_hellos_are_rejected_cheaply() {
        let server = KeyPair::from_seed(&[1; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let before = x25519::tests::multiplications();
        for len in [0, 7, 8, 71, 72, 73, 103, 104, 105, 136, 200] {
            let mut junk = vec![0u8; len];
            rng.fill_bytes(&mut junk);
            assert!(
                server_respond(
                    fresh(len as u64),
                    &ServerKeys::new(&server, None, b""),
                    &junk
                )
                .is_err()
            );
        }
        assert_eq!(
            x25519::tests::multiplications(),
            before,
            "refused before any X25519"
        );
        let mut bad = [0u8; CH_HEADER];
        bad[..4].copy_from_slice(&MAGIC);
        bad[4] = 0x77;
        assert!(client_hello_len(&bad).is_err());
        // The previous version is refused from its header.
        bad = *b"LXN2\x01\x00\x00\x00";
        assert_eq!(client_hello_len(&bad), Err(PeerMisbehaved::Malformed));
    }

    /// A 32-byte string that is not on the curve (on its twist): about half of all strings.
    fn twist_point(seed: u64) -> [u8; 32] {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        loop {
            let mut u = [0u8; 32];
            rng.fill_bytes(&mut u);
            u[31] &= 0x7f;
            if curve25519_dalek::montgomery::MontgomeryPoint(u)
                .to_edwards(0)
                .is_none()
            {
                return u;
            }
        }
    }

    /// Off-curve ephemeral keys take the slower ladder and no honest peer sends one: each
    /// side refuses them as `Malformed` before any scalar multiplication. (Fails on v2,
    /// which answers such a hello, and finishes a handshake whose `enc_s` is one.)
    #[test]
    fn ephemeral_keys_off_the_curve_are_refused_before_any_multiplication() {
        let server = KeyPair::from_seed(&[1; 32]);
        let alice = KeyPair::from_seed(&[3; 32]);
        for id in [None, Some(&alice)] {
            let client_keys = ClientKeys::new(&server.public(), id, b"");
            let server_keys = ServerKeys::new(&server, None, b"");
            for seed in 0..8 {
                let bad = twist_point(seed);
                let (_, mut ch) =
                    client_hello(fresh(seed), Cipher::Aes128Gcm, &client_keys).unwrap();
                ch[40..72].copy_from_slice(&bad);
                let before = x25519::tests::multiplications();
                assert_eq!(
                    server_respond(fresh(100 + seed), &server_keys, &ch).err(),
                    Some(PeerMisbehaved::Malformed)
                );
                assert_eq!(
                    x25519::tests::multiplications(),
                    before,
                    "server: no X25519"
                );
                let (cp, ch) = client_hello(fresh(seed), Cipher::Aes128Gcm, &client_keys).unwrap();
                let (_, mut sh) = server_respond(fresh(200 + seed), &server_keys, &ch).unwrap();
                sh[40..72].copy_from_slice(&bad);
                let before = x25519::tests::multiplications();
                assert_eq!(
                    client_finish(cp, &client_keys, &sh).err(),
                    Some(PeerMisbehaved::Malformed)
                );
                assert_eq!(
                    x25519::tests::multiplications(),
                    before,
                    "client: no X25519"
                );
            }
        }
    }

    /// One secret, one identity: without an allow-list the server reports whatever key the
    /// client proved, so Alice's secret must not also prove her key's other encodings (top
    /// bit set, `u + p`) or her key plus a small-order point (clamping makes both give the
    /// same DH outputs). All are refused as `Malformed`; so are off-curve and low-order
    /// client keys, before any multiplication. (Fails on v2, which accepts them and reports
    /// a different `peer_key` for each.)
    #[test]
    fn a_client_key_must_be_canonical_on_the_curve_and_in_the_subgroup() {
        let server = KeyPair::from_seed(&[1; 32]);
        let alice = KeyPair::from_seed(&[3; 32]);
        let pk = alice.public.0;
        let mut high = pk;
        high[31] |= 0x80;
        let p8 = hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
        let torsion = (curve25519_dalek::montgomery::MontgomeryPoint(pk)
            .to_edwards(0)
            .unwrap()
            + curve25519_dalek::montgomery::MontgomeryPoint(p8)
                .to_edwards(0)
                .unwrap())
        .to_montgomery()
        .to_bytes();
        // p + 5, the non-canonical encoding of u = 5 (only u < 19 have one below 2^255).
        let mut plus_p = [0xffu8; 32];
        plus_p[0] = 0xed + 5;
        plus_p[31] = 0x7f;
        let server_keys = ServerKeys::new(&server, None, b"");
        for (what, key) in [
            ("top bit set", high),
            ("a small-order point added", torsion),
            ("u + p", plus_p),
            ("off the curve", twist_point(3)),
            ("low order", p8),
            ("zero", [0u8; 32]),
        ] {
            // The real handshake, with Alice's secret behind the mangled key.
            let forged = KeyPair {
                secret: alice.secret.clone(),
                public: PublicKey(key),
            };
            let client_keys = ClientKeys::new(&server.public(), Some(&forged), b"");
            let (_, ch) = client_hello(fresh(1), Cipher::Aes128Gcm, &client_keys).unwrap();
            assert_eq!(
                server_respond(fresh(2), &server_keys, &ch).err(),
                Some(PeerMisbehaved::Malformed),
                "{what}"
            );
            assert!(PublicKey::from_bytes(key).is_err(), "{what}");
        }
        // Refused before any DH (the subgroup check, the last of them, is not a batch op).
        let forged = KeyPair {
            secret: alice.secret.clone(),
            public: PublicKey(twist_point(4)),
        };
        let client_keys = ClientKeys::new(&server.public(), Some(&forged), b"");
        let (_, ch) = client_hello(fresh(1), Cipher::Aes128Gcm, &client_keys).unwrap();
        let before = x25519::tests::multiplications();
        assert!(server_respond(fresh(2), &server_keys, &ch).is_err());
        assert_eq!(x25519::tests::multiplications(), before);
        // Alice's real key still works.
        let (_, s) = run(Some(&alice), None, &server, &server.public()).unwrap();
        assert_eq!(s.peer_key, Some(alice.public()));
    }

    /// A server never accepts the null cipher unless its own configuration names it, even in
    /// a build that has it (tests, feature `null-cipher`). (Fails on v2, where any such
    /// build accepts it from any client.)
    #[test]
    fn the_null_cipher_needs_the_servers_own_opt_in() {
        let server = KeyPair::from_seed(&[1; 32]);
        let client_keys = ClientKeys::new(&server.public(), None, b"");
        let (_, ch) = client_hello(fresh(1), Cipher::Null, &client_keys).unwrap();
        let header: &[u8; CH_HEADER] = ch.first_chunk().unwrap();
        let default = ServerKeys::new(&server, None, b"");
        assert_eq!(default.hello_len(header), Err(PeerMisbehaved::Malformed));
        assert_eq!(
            server_respond(fresh(2), &default, &ch).err(),
            Some(PeerMisbehaved::Malformed)
        );
        let opted_in = ServerKeys::new(&server, None, b"").with_null_cipher(true);
        assert!(server_respond(fresh(2), &opted_in, &ch).is_ok());
        // Through the service's configuration: only `cipher: Null` on the server opts in.
        let enc = super::super::Encryption::server(server.clone()).with_cipher(Cipher::Aes128Gcm);
        let keys = super::super::io::HandshakeKeys::new(&enc);
        assert!(!keys.server_accepts_null());
        let enc = enc.with_cipher(Cipher::Null);
        let keys = super::super::io::HandshakeKeys::new(&enc);
        assert!(keys.server_accepts_null());
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    fn hpke_secret(k: &KeyPair) -> super::super::keys::SecretKey {
        super::super::keys::SecretKey::from_bytes(&k.secret_bytes()).unwrap()
    }

    fn hpke_public(k: &PublicKey) -> super::super::keys::KemPublicKey {
        super::super::keys::KemPublicKey::from_bytes(&k.0).unwrap()
    }

    #[test]
    fn dhkem_matches_rfc_9180_appendix_a_1_1() {
        // DHKEM(X25519, HKDF-SHA256), Base mode: skEm, pkRm, skRm, enc, shared_secret.
        let sk_e = hex32("52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736");
        let pk_r = hex32("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d");
        let sk_r = hex32("4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8");
        let enc = hex32("37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431");
        let shared = hex32("fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc");
        assert_eq!(
            *x25519::batch([Op::Base(&sk_e), Op::Base(&sk_r)]),
            [enc, pk_r]
        );
        let dh = x25519::batch([
            Op::Dh(&sk_e, &Point::new(&pk_r)),
            Op::Dh(&sk_r, &Point::new(&enc)),
        ]);
        assert_eq!(*kem_secret(&[&dh[0]], &enc, &pk_r, None).unwrap(), shared);
        assert_eq!(*kem_secret(&[&dh[1]], &enc, &pk_r, None).unwrap(), shared);
    }

    #[test]
    fn dhkem_interoperates_with_the_hpke_crate_in_both_modes() {
        // Each side's K1, K2 and K3, as the handshake computes them, against the hpke crate's
        // Encap/Decap (AuthEncap/AuthDecap with a client key for K1) on the other end.
        type Kem = super::super::keys::Kem;
        type Enc = <Kem as hpke::Kem>::EncappedKey;
        let server = KeyPair::from_seed(&[1; 32]);
        let client = KeyPair::from_seed(&[3; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut random32 = || {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            k
        };
        let mut hpke_rng = ChaCha20Rng::seed_from_u64(12);
        for auth in [false, true] {
            let identity = auth.then_some(&client);
            let client_key = auth.then(|| client.public());
            let client_hpke = auth.then(|| (hpke_secret(&client), hpke_public(&client.public)));
            for _ in 0..4 {
                // Our client: K1 is what hpke's Decap computes at the server; K2 and K3 what
                // hpke's Encap to the client's ephemeral key and to its static key produced
                // with one ephemeral key (the same RNG state gives the same `enc_s`).
                let eph_c = random32();
                let enc_c = x25519::batch([Op::Base(&eph_c)])[0];
                let rng_state = hpke_rng.clone();
                let (k2_hpke, enc_s) = <Kem as hpke::Kem>::encap_with_rng(
                    &hpke_public(&PublicKey(enc_c)),
                    None,
                    &mut hpke_rng,
                )
                .unwrap();
                let (k3_hpke, enc_s3) = <Kem as hpke::Kem>::encap_with_rng(
                    &hpke_public(&client.public),
                    None,
                    &mut rng_state.clone(),
                )
                .unwrap();
                assert_eq!(enc_s.to_bytes(), enc_s3.to_bytes());
                let enc_s: [u8; 32] = enc_s.to_bytes().into();
                let client_keys = ClientKeys::new(&server.public, identity, b"");
                let (k1, k2, k3) = client_kem(&eph_c, &enc_c, &client_keys, &enc_s).unwrap();
                let k1_hpke = <Kem as hpke::Kem>::decap(
                    &hpke_secret(&server),
                    client_hpke.as_ref().map(|(_, pk)| pk),
                    &Enc::from_bytes(&enc_c).unwrap(),
                )
                .unwrap();
                assert_eq!(
                    k1.as_slice(),
                    k1_hpke.0.as_slice(),
                    "client K1, auth {auth}"
                );
                assert_eq!(
                    k2.as_slice(),
                    k2_hpke.0.as_slice(),
                    "client K2, auth {auth}"
                );
                assert_eq!(
                    k3.as_ref().map(|k| k.to_vec()),
                    auth.then(|| k3_hpke.0.to_vec()),
                    "client K3, auth {auth}"
                );

                // Our server: K1 is what hpke's Encap to the server key produced; K2 and K3
                // what hpke's Decap with the client's ephemeral and static secrets compute.
                let (k1_hpke, enc_c) = <Kem as hpke::Kem>::encap_with_rng(
                    &hpke_public(&server.public),
                    client_hpke.as_ref().map(|(sk, pk)| (sk, pk)),
                    &mut hpke_rng,
                )
                .unwrap();
                let enc_c: [u8; 32] = enc_c.to_bytes().into();
                // With a client key, both ways the server gets the static-static DH: from
                // its allow-list (computed once) and computed in the handshake's batch.
                let allowed =
                    ServerKeys::new(&server, client_key.as_ref().map(std::slice::from_ref), b"");
                let mut clients = vec![None];
                if let Some(c) = client_key.as_ref() {
                    clients = vec![Some((c, false)), Some((c, true))];
                }
                let e = Point::from_peer(&enc_c).unwrap();
                let mut enc_s = [0u8; 32];
                for client in clients.iter().copied() {
                    let point = client.map(|(c, _)| Point::new(&c.0));
                    let cs = match (client, &point, &allowed.allowed) {
                        (Some((_, true)), _, Some(list)) => Some(ClientStatic {
                            key: &list[0].key.0,
                            point: &list[0].point,
                            ss: Some(&list[0].ss),
                        }),
                        (Some((c, _)), Some(p), _) => Some(ClientStatic {
                            key: &c.0,
                            point: p,
                            ss: None,
                        }),
                        _ => None,
                    };
                    let (e_s, k1, _, _) = server_kem(&server, &enc_c, &e, cs, &random32()).unwrap();
                    assert_eq!(
                        k1.as_slice(),
                        k1_hpke.0.as_slice(),
                        "server K1, auth {auth}, precomputed {:?}",
                        client.map(|c| c.1)
                    );
                    enc_s = e_s;
                }
                let eph_c = random32();
                let enc_c = x25519::batch([Op::Base(&eph_c)])[0];
                let e = Point::from_peer(&enc_c).unwrap();
                let point = client_key.map(|c| Point::new(&c.0));
                let cs = client_key
                    .as_ref()
                    .zip(point.as_ref())
                    .map(|(c, p)| ClientStatic {
                        key: &c.0,
                        point: p,
                        ss: None,
                    });
                let (enc_s2, _, k2, k3) = server_kem(&server, &enc_c, &e, cs, &random32()).unwrap();
                assert_ne!(enc_s, enc_s2);
                let k2_hpke = <Kem as hpke::Kem>::decap(
                    &hpke_secret(&KeyPair::from_secret_bytes(eph_c).unwrap()),
                    None,
                    &Enc::from_bytes(&enc_s2).unwrap(),
                )
                .unwrap();
                assert_eq!(
                    k2.as_slice(),
                    k2_hpke.0.as_slice(),
                    "server K2, auth {auth}"
                );
                let k3_hpke = auth.then(|| {
                    <Kem as hpke::Kem>::decap(
                        &hpke_secret(&client),
                        None,
                        &Enc::from_bytes(&enc_s2).unwrap(),
                    )
                    .unwrap()
                    .0
                    .to_vec()
                });
                assert_eq!(k3.map(|k| k.to_vec()), k3_hpke, "server K3, auth {auth}");
            }
        }
    }

    #[test]
    fn low_order_points_are_refused() {
        let server = KeyPair::from_seed(&[1; 32]);
        let (client_keys, server_keys) = (
            ClientKeys::new(&server.public(), None, b""),
            ServerKeys::new(&server, None, b""),
        );
        // The identity point (all zeros) and a point of order 8 make every DH output zero.
        let order8 = hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
        for bad in [[0u8; 32], order8] {
            let (_, mut ch) = client_hello(fresh(1), Cipher::Aes128Gcm, &client_keys).unwrap();
            ch[40..72].copy_from_slice(&bad);
            assert!(matches!(
                server_respond(fresh(2), &server_keys, &ch),
                Err(PeerMisbehaved::Malformed)
            ));
            let (cp, ch) = client_hello(fresh(3), Cipher::Aes128Gcm, &client_keys).unwrap();
            let (_, mut sh) = server_respond(fresh(4), &server_keys, &ch).unwrap();
            sh[40..72].copy_from_slice(&bad);
            assert!(matches!(
                client_finish(cp, &client_keys, &sh),
                Err(PeerMisbehaved::Malformed)
            ));
            // A pinned (or allowed) low-order key: the static-static DH is zero.
            let low = PublicKey(bad);
            let (cp, ch) = client_hello(
                fresh(5),
                Cipher::Aes128Gcm,
                &ClientKeys::new(&low, None, b""),
            )
            .unwrap();
            let (_, sh) = server_respond(fresh(6), &server_keys, &ch).unwrap();
            assert!(matches!(
                client_finish(cp, &ClientKeys::new(&low, None, b""), &sh),
                Err(PeerMisbehaved::Malformed)
            ));
        }
    }

    #[test]
    fn known_answer_transcript() {
        // Pins the handshake wire format and key schedule: fixed seeds give fixed bytes.
        assert_eq!(
            transcript_digest(None),
            KAT_HANDSHAKE,
            "the handshake wire format or key schedule changed"
        );
    }

    #[test]
    fn known_answer_transcript_with_client_auth() {
        let client = KeyPair::from_seed(&[3; 32]);
        assert_eq!(
            transcript_digest(Some(&client)),
            KAT_HANDSHAKE_CLIENT_AUTH,
            "the handshake wire format or key schedule changed (AuthEncap)"
        );
    }

    /// SHA-256 of a whole handshake's bytes, keys and a first record per cipher, from fixed
    /// seeds, in the context "laxnet KAT".
    fn transcript_digest(client: Option<&KeyPair>) -> String {
        let server = KeyPair::from_seed(&[1; 32]);
        let mut crng = ChaCha20Rng::seed_from_u64(1);
        let mut srng = ChaCha20Rng::seed_from_u64(2);
        let context = b"laxnet KAT";
        let client_keys = ClientKeys::new(&server.public(), client, context);
        let (cp, ch) = client_hello(
            Fresh::from_rng(&mut crng),
            Cipher::ChaCha20Poly1305,
            &client_keys,
        )
        .unwrap();
        let allowed = client.map(|c| [c.public()]);
        let server_keys = ServerKeys::new(&server, allowed.as_ref().map(|a| a.as_slice()), context);
        let (sp, sh) = server_respond(Fresh::from_rng(&mut srng), &server_keys, &ch).unwrap();
        let (keys, cf) = client_finish(cp, &client_keys, &sh).unwrap();
        let server_keys = server_finish(sp, &cf).unwrap();
        assert_eq!(server_keys.c2s_key, keys.c2s_key);
        // ...and the first record of each cipher under these keys.
        let mut records = Vec::new();
        for cipher in [Cipher::ChaCha20Poly1305, Cipher::Aes128Gcm] {
            let mut sealer =
                super::super::record::Sealer::new(cipher, &keys.c2s_key, &keys.c2s_nonce, 10);
            let mut rec = [0u8; 5 + super::super::record::OVERHEAD];
            rec[5..10].copy_from_slice(b"hello");
            let n = sealer
                .seal(super::super::record::RecordType::Data, &mut rec, 5)
                .unwrap();
            records.extend_from_slice(&rec[..n]);
        }
        let digest = Sha256::new()
            .chain_update(&records)
            .chain_update(&ch)
            .chain_update(sh)
            .chain_update(cf)
            .chain_update(*keys.c2s_key)
            .chain_update(*keys.s2c_nonce)
            .finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    const KAT_HANDSHAKE: &str = "c712a97fd67898ca2dd8819d6b2abe6c742b56f8fef3a294a2a363d86f1a72ff";
    const KAT_HANDSHAKE_CLIENT_AUTH: &str =
        "5a2854d842d1efd0e7bfa661470151102f2e878bbdc6598cdcb49ae1824082aa";
}
