//! The server's side of the handshake: what it prepares once per service ([`ServerKeys`]),
//! its answer to a ClientHello with all its X25519 work as one batch, and its check of the
//! ClientFinished.

use sha2::Sha256;
use zeroize::Zeroizing;

use super::schedule::{Schedule, kem_secret, schedule};
use super::{CF_LEN, CH_HEADER, CH_MAX, Fresh, MAGIC, SH_CORE, SH_LEN, Secret32, SessionKeys};
use super::{client_hello_len, ct_eq, transcript_prefix};
use crate::crypto::keys::{KeyPair, PublicKey};
use crate::crypto::x25519::{self, Op, Point};
use crate::crypto::{Cipher, PeerMisbehaved};

/// A client key on a server's allow-list, with what every handshake with it shares: its
/// point and the static-static DH (`AuthDecap`'s second DH).
pub(super) struct AllowedKey {
    pub(super) key: PublicKey,
    pub(super) point: Point,
    pub(super) ss: Secret32,
}

/// What a server computes once (per service) for all its handshakes: its key pair, the
/// context's transcript prefix and, with an allow-list, each allowed client key (sorted, for
/// binary search) with its point and static-static DH.
pub(crate) struct ServerKeys {
    identity: KeyPair,
    pub(super) allowed: Option<Vec<AllowedKey>>,
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

/// What the server keeps between its answer and the ClientFinished.
pub(crate) struct ServerPending {
    pub(super) schedule: Schedule,
}

/// A client's static key as the server uses it: the key, its point and, from the allow-list,
/// the static-static DH.
pub(super) struct ClientStatic<'a> {
    pub(super) key: &'a [u8; 32],
    pub(super) point: &'a Point,
    pub(super) ss: Option<&'a [u8; 32]>,
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
pub(super) fn server_kem(
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
