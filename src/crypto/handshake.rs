//! The handshake as pure functions (no socket, no clock): bytes in, bytes and keys out.
//!
//! ```text
//! client                                                     server
//!   ClientHello  magic "LXN1" | cipher | flags | 0 0 | client_random[32]
//!                | enc1[32] | eph_pk[32] | (client_pk[32] if flags&1)      -->
//!                                  <--  ServerHello  magic | 0 0 0 0 | server_random[32]
//!                                                    | enc2[32] | server_finished[32]
//!   ClientFinished  client_finished[32]                                  -->
//! ```
//!
//! - `enc1`: HPKE (X25519-HKDF-SHA256, export-only) to the server's static key, in `Auth`
//!   mode with the client's static key when client authentication is on. Its exporter gives
//!   `E1`: only the server-key holder (and, in `Auth` mode, the client-key holder) can compute it.
//! - `enc2`: HPKE from the server to the client's fresh ephemeral key `eph_pk`; exporter `E2`
//!   needs the ephemeral secret, which both sides drop after the handshake (forward secrecy).
//! - Keys: `HKDF-SHA256(salt = SHA-256(ClientHello ‖ ServerHello without its finished tag),
//!   ikm = E1 ‖ E2)`, expanded to a key and nonce per direction, and the two finished tags.
//!   Both randoms sit in the transcript, so a replayed ClientHello meets a fresh
//!   `server_random` and yields different keys: its recorded records fail to authenticate.

use hkdf::Hkdf;
use hpke::aead::ExportOnlyAead;
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use super::keys::{Kem, KemPublicKey, KeyPair, PublicKey};
use super::{Cipher, HandshakeError};

pub(crate) const MAGIC: [u8; 4] = *b"LXN1";
/// Bytes of the ClientHello header (magic, cipher, flags, reserved).
pub(crate) const CH_HEADER: usize = 8;
const CH_BASE: usize = CH_HEADER + 32 * 3;
/// The largest ClientHello (with a client key).
pub(crate) const CH_MAX: usize = CH_BASE + 32;
/// Bytes of the ServerHello.
pub(crate) const SH_LEN: usize = 8 + 32 * 3;
/// Bytes of the ClientFinished.
pub(crate) const CF_LEN: usize = 32;
const FLAG_CLIENT_AUTH: u8 = 1;

type Enc = <Kem as hpke::Kem>::EncappedKey;

/// Key material for both directions, derived by both sides.
pub(crate) struct SessionKeys {
    pub(crate) cipher: Cipher,
    pub(crate) c2s_key: [u8; 32],
    pub(crate) c2s_nonce: [u8; 12],
    pub(crate) s2c_key: [u8; 32],
    pub(crate) s2c_nonce: [u8; 12],
}

struct Schedule {
    keys: SessionKeys,
    server_finished: [u8; 32],
    client_finished: [u8; 32],
}

/// The total length of a ClientHello, from its header; rejects anything else before any
/// cryptographic work.
pub(crate) fn client_hello_len(header: &[u8; CH_HEADER]) -> Result<usize, HandshakeError> {
    if header[..4] != MAGIC || header[6..8] != [0, 0] {
        return Err(HandshakeError::Malformed);
    }
    Cipher::from_code(header[4]).ok_or(HandshakeError::Malformed)?;
    match header[5] {
        0 => Ok(CH_BASE),
        FLAG_CLIENT_AUTH => Ok(CH_MAX),
        _ => Err(HandshakeError::Malformed),
    }
}

/// What the client keeps between its hello and the server's answer.
pub(crate) struct ClientPending {
    hello: [u8; CH_MAX],
    hello_len: usize,
    e1: [u8; 32],
    eph: KeyPair,
    cipher: Cipher,
}

/// Builds the ClientHello.
pub(crate) fn client_hello(
    rng: &mut impl CryptoRng,
    cipher: Cipher,
    server: &PublicKey,
    identity: Option<&KeyPair>,
) -> Result<(ClientPending, Vec<u8>), HandshakeError> {
    let mut client_random = [0u8; 32];
    rng.fill_bytes(&mut client_random);
    let mut eph_seed = [0u8; 32];
    rng.fill_bytes(&mut eph_seed);
    let eph = KeyPair::from_seed(&eph_seed);
    let mut hello = [0u8; CH_MAX];
    hello[..4].copy_from_slice(&MAGIC);
    hello[4] = cipher.code();
    hello[5] = if identity.is_some() {
        FLAG_CLIENT_AUTH
    } else {
        0
    };
    hello[8..40].copy_from_slice(&client_random);
    let info = hs_info(&hello[..CH_HEADER], &client_random);
    let mode = match identity {
        Some(id) => OpModeS::Auth((id.secret.clone(), id.public.kem())),
        None => OpModeS::Base,
    };
    let (enc, ctx) = hpke::setup_sender_with_rng::<ExportOnlyAead, HkdfSha256, Kem>(
        &mode,
        &server.kem(),
        &info,
        rng,
    )
    .map_err(|_| HandshakeError::Malformed)?;
    let mut e1 = [0u8; 32];
    ctx.export(b"laxnet/v1 e1", &mut e1)
        .map_err(|_| HandshakeError::Malformed)?;
    hello[40..72].copy_from_slice(&enc.to_bytes());
    hello[72..104].copy_from_slice(&eph.public.0);
    let len = match identity {
        Some(id) => {
            hello[104..136].copy_from_slice(&id.public.0);
            CH_MAX
        }
        None => CH_BASE,
    };
    let bytes = hello[..len].to_vec();
    Ok((
        ClientPending {
            hello,
            hello_len: len,
            e1,
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

/// Answers a ClientHello. Rejects an unknown client key before any Diffie-Hellman.
/// Work per call is fixed: five X25519 operations (six with client authentication) and a few
/// hashes: two DH (three in `Auth` mode) for the HPKE receive and send, plus three base-point
/// multiplications, two of them hpke 0.15 recomputing public keys (`decap` and `encap` call
/// `sk_to_pk`).
pub(crate) fn server_respond(
    rng: &mut impl CryptoRng,
    identity: &KeyPair,
    allowed_clients: Option<&[PublicKey]>,
    hello: &[u8],
) -> Result<(ServerPending, [u8; SH_LEN]), HandshakeError> {
    let header: &[u8; CH_HEADER] = hello.first_chunk().ok_or(HandshakeError::Malformed)?;
    if client_hello_len(header)? != hello.len() {
        return Err(HandshakeError::Malformed);
    }
    let cipher = Cipher::from_code(hello[4]).ok_or(HandshakeError::Malformed)?;
    let client_key = match hello.len() {
        CH_MAX => Some(
            PublicKey::from_bytes(hello[104..136].try_into().expect("32 bytes"))
                .map_err(|_| HandshakeError::Malformed)?,
        ),
        _ => None,
    };
    match (allowed_clients, client_key) {
        (Some(list), Some(k)) if list.contains(&k) => {}
        (Some(_), _) => return Err(HandshakeError::UnknownClientKey),
        (None, _) => {}
    }
    let client_random = &hello[8..40];
    let enc1 = Enc::from_bytes(&hello[40..72]).map_err(|_| HandshakeError::Malformed)?;
    let eph_pk =
        KemPublicKey::from_bytes(&hello[72..104]).map_err(|_| HandshakeError::Malformed)?;
    let info = hs_info(&hello[..CH_HEADER], client_random);
    let mode = match client_key {
        Some(k) => OpModeR::Auth(k.kem()),
        None => OpModeR::Base,
    };
    let ctx1 = hpke::setup_receiver::<ExportOnlyAead, HkdfSha256, Kem>(
        &mode,
        &identity.secret,
        &enc1,
        &info,
    )
    .map_err(|_| HandshakeError::Malformed)?;
    let mut e1 = [0u8; 32];
    ctx1.export(b"laxnet/v1 e1", &mut e1)
        .map_err(|_| HandshakeError::Malformed)?;

    let mut sh = [0u8; SH_LEN];
    sh[..4].copy_from_slice(&MAGIC);
    rng.fill_bytes(&mut sh[8..40]);
    let info2 = eph_info(&sh[8..40]);
    let (enc2, ctx2) = hpke::setup_sender_with_rng::<ExportOnlyAead, HkdfSha256, Kem>(
        &OpModeS::Base,
        &eph_pk,
        &info2,
        rng,
    )
    .map_err(|_| HandshakeError::Malformed)?;
    let mut e2 = [0u8; 32];
    ctx2.export(b"laxnet/v1 e2", &mut e2)
        .map_err(|_| HandshakeError::Malformed)?;
    sh[40..72].copy_from_slice(&enc2.to_bytes());
    let schedule = schedule(cipher, hello, &sh[..72], &e1, &e2);
    sh[72..104].copy_from_slice(&schedule.server_finished);
    Ok((ServerPending { schedule }, sh))
}

/// Checks the ServerHello (a wrong server key fails here: the server could not compute the
/// finished tag) and produces the ClientFinished.
pub(crate) fn client_finish(
    pending: ClientPending,
    sh: &[u8; SH_LEN],
) -> Result<(SessionKeys, [u8; CF_LEN]), HandshakeError> {
    if sh[..4] != MAGIC || sh[4..8] != [0; 4] {
        return Err(HandshakeError::Malformed);
    }
    let enc2 = Enc::from_bytes(&sh[40..72]).map_err(|_| HandshakeError::Malformed)?;
    let info2 = eph_info(&sh[8..40]);
    let ctx2 = hpke::setup_receiver::<ExportOnlyAead, HkdfSha256, Kem>(
        &OpModeR::Base,
        &pending.eph.secret,
        &enc2,
        &info2,
    )
    .map_err(|_| HandshakeError::Malformed)?;
    let mut e2 = [0u8; 32];
    ctx2.export(b"laxnet/v1 e2", &mut e2)
        .map_err(|_| HandshakeError::Malformed)?;
    let s = schedule(
        pending.cipher,
        &pending.hello[..pending.hello_len],
        &sh[..72],
        &pending.e1,
        &e2,
    );
    if !ct_eq(&s.server_finished, &sh[72..104]) {
        return Err(HandshakeError::ServerNotAuthenticated);
    }
    Ok((s.keys, s.client_finished))
}

/// Checks the ClientFinished: proves the client derived the same keys (so it is live, holds
/// its ephemeral key and, with client authentication, its static key).
pub(crate) fn server_finish(
    pending: ServerPending,
    cf: &[u8; CF_LEN],
) -> Result<SessionKeys, HandshakeError> {
    if !ct_eq(&pending.schedule.client_finished, cf) {
        return Err(HandshakeError::ClientNotAuthenticated);
    }
    Ok(pending.schedule.keys)
}

fn hs_info(header: &[u8], client_random: &[u8]) -> Vec<u8> {
    [b"laxnet/v1 hs".as_slice(), header, client_random].concat()
}

fn eph_info(server_random: &[u8]) -> Vec<u8> {
    [b"laxnet/v1 eph".as_slice(), server_random].concat()
}

fn schedule(
    cipher: Cipher,
    hello: &[u8],
    sh_core: &[u8],
    e1: &[u8; 32],
    e2: &[u8; 32],
) -> Schedule {
    let th = Sha256::new()
        .chain_update(hello)
        .chain_update(sh_core)
        .finalize();
    let ikm = [e1.as_slice(), e2.as_slice()].concat();
    let hk = Hkdf::<Sha256>::new(Some(&th), &ikm);
    let expand32 = |label: &[u8]| {
        let mut out = [0u8; 32];
        hk.expand(label, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    };
    let expand12 = |label: &[u8]| {
        let mut out = [0u8; 12];
        hk.expand(label, &mut out)
            .expect("12 bytes is a valid HKDF-SHA256 length");
        out
    };
    Schedule {
        keys: SessionKeys {
            cipher,
            c2s_key: expand32(b"laxnet/v1 c2s key"),
            c2s_nonce: expand12(b"laxnet/v1 c2s nonce"),
            s2c_key: expand32(b"laxnet/v1 s2c key"),
            s2c_nonce: expand12(b"laxnet/v1 s2c nonce"),
        },
        server_finished: expand32(b"laxnet/v1 server finished"),
        client_finished: expand32(b"laxnet/v1 client finished"),
    }
}

/// Constant-time equality of two tags.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    fn run(
        client_id: Option<&KeyPair>,
        allowed: Option<&[PublicKey]>,
        server: &KeyPair,
        pinned: &PublicKey,
    ) -> Result<(SessionKeys, SessionKeys), HandshakeError> {
        let mut crng = ChaCha20Rng::seed_from_u64(1);
        let mut srng = ChaCha20Rng::seed_from_u64(2);
        let (cp, ch) = client_hello(&mut crng, Cipher::ChaCha20Poly1305, pinned, client_id)?;
        let (sp, sh) = server_respond(&mut srng, server, allowed, &ch)?;
        let (ck, cf) = client_finish(cp, &sh)?;
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
                HandshakeError::ServerNotAuthenticated | HandshakeError::Malformed
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
        assert!(run(Some(&alice), Some(&allowed), &server, &server.public()).is_ok());
        assert!(matches!(
            run(Some(&mallory), Some(&allowed), &server, &server.public()),
            Err(HandshakeError::UnknownClientKey)
        ));
        assert!(matches!(
            run(None, Some(&allowed), &server, &server.public()),
            Err(HandshakeError::UnknownClientKey)
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
                HandshakeError::ClientNotAuthenticated | HandshakeError::ServerNotAuthenticated
            ),
            "{err:?}"
        );
    }

    #[test]
    fn replayed_hello_yields_different_keys() {
        let server = KeyPair::from_seed(&[1; 32]);
        let mut crng = ChaCha20Rng::seed_from_u64(1);
        let (_, ch) = client_hello(&mut crng, Cipher::Aes128Gcm, &server.public(), None).unwrap();
        let (a, _) =
            server_respond(&mut ChaCha20Rng::seed_from_u64(5), &server, None, &ch).unwrap();
        let (b, _) =
            server_respond(&mut ChaCha20Rng::seed_from_u64(6), &server, None, &ch).unwrap();
        assert_ne!(a.schedule.keys.c2s_key, b.schedule.keys.c2s_key);
    }

    #[test]
    fn garbage_hellos_are_rejected_cheaply() {
        let server = KeyPair::from_seed(&[1; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        for len in [0, 7, 8, 103, 104, 105, 136, 200] {
            let mut junk = vec![0u8; len];
            rng.fill_bytes(&mut junk);
            assert!(server_respond(&mut rng, &server, None, &junk).is_err());
        }
        let mut bad = [0u8; CH_HEADER];
        bad[..4].copy_from_slice(&MAGIC);
        bad[4] = 0x77;
        assert!(client_hello_len(&bad).is_err());
    }

    #[test]
    fn known_answer_transcript() {
        // Pins the handshake wire format and key schedule: fixed seeds give fixed bytes.
        let server = KeyPair::from_seed(&[1; 32]);
        let mut crng = ChaCha20Rng::seed_from_u64(1);
        let mut srng = ChaCha20Rng::seed_from_u64(2);
        let (cp, ch) =
            client_hello(&mut crng, Cipher::ChaCha20Poly1305, &server.public(), None).unwrap();
        let (sp, sh) = server_respond(&mut srng, &server, None, &ch).unwrap();
        let (keys, cf) = client_finish(cp, &sh).unwrap();
        server_finish(sp, &cf).unwrap();
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
            .chain_update(keys.c2s_key)
            .chain_update(keys.s2c_nonce)
            .finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex, KAT_HANDSHAKE,
            "the handshake wire format or key schedule changed"
        );
    }

    const KAT_HANDSHAKE: &str = "6dcf13f28de8bad8f68002fd22846dfd1ec5821adaa86b00649ccb3ac8c5e807";
}
