//! The client's side of the handshake: what it prepares once per service ([`ClientKeys`]),
//! its ClientHello, and its check of the ServerHello with its X25519 work as one batch.

use sha2::Sha256;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::schedule::{kem_secret, schedule};
use super::{CF_LEN, CH_BASE, CH_MAX, FLAG_CLIENT_AUTH, Fresh, MAGIC, SH_CORE, SH_LEN, Secret32};
use super::{SessionKeys, ct_eq, transcript_prefix};
use crate::crypto::keys::{KeyPair, PublicKey};
use crate::crypto::x25519::{self, FixedPoint, Op, Point};
use crate::crypto::{Cipher, PeerMisbehaved};

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

/// The client's X25519 work on the ServerHello, as one batch: with its ephemeral secret `eph`
/// (public key `enc_c`) `K1 = Encap(server)` (`AuthEncap` with the prepared static-static DH)
/// and `K2 = Decap(enc_s)`, and with its static key `K3 = Decap(enc_s)`. Refuses an `enc_s`
/// no honest server sends before any of it.
pub(super) fn client_kem(
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
