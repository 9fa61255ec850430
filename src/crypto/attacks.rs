//! The attacks of the bits-hpke review, performed against the real service on loopback
//! sockets (real Tokio runtime, real crypto). Each test fails on the protocol and service
//! before the hardening that stops its attack (v2, `LXN2`).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // tests use Tokio directly

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::handshake::{self, CF_LEN, ClientKeys, Fresh, SH_LEN};
use super::x25519::{self, Op, Point};
use super::{Cipher, Encryption, HandshakeError, KeyPair, PeerMisbehaved, PublicKey};
use crate::{Config, ConnectError, Protocol, Service, SessionEvent, Topic};

fn client_config(server: PublicKey, seed: Option<u64>) -> Config {
    let c = Config::default().with_encryption(Encryption::client(server));
    match seed {
        Some(seed) => c.with_rng_seed(seed),
        None => c,
    }
}

/// What a client with `rng_seed = Some(seed)` drew for its first handshake before the
/// hardening: the service's `ChaCha20Rng::seed_from_u64(seed)` handed the handshake a 32-byte
/// seed (its first draw, as a connect makes no other), and the handshake's `ChaCha20Rng` from
/// that seed drew the client random, then the ephemeral secret.
fn predicted_fresh(seed: u64) -> [u8; 64] {
    let mut service_rng = ChaCha20Rng::seed_from_u64(seed);
    let mut hs_seed = [0u8; 32];
    service_rng.fill_bytes(&mut hs_seed);
    let mut bytes = [0u8; 64];
    ChaCha20Rng::from_seed(hs_seed).fill_bytes(&mut bytes);
    bytes
}

/// Whoever knows a client's `rng_seed` listens where the client connects (DNS, a route, a
/// proxy), rebuilds the client's ephemeral secret from the seed and answers with a ServerHello
/// forged without the pinned server's secret. Before the hardening the prediction was exact and
/// `connect` succeeded, reporting the pinned key as the peer's (review finding 1). Now the
/// handshake's secrets come from the operating system per handshake: the prediction misses and
/// `connect` fails.
#[tokio::test]
async fn a_client_with_a_known_rng_seed_cannot_be_impersonated() {
    let server = KeyPair::from_seed(&[1; 32]); // its secret is never used below
    let seed = 42;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let attacker = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 72];
        s.read_exact(&mut hello).await.unwrap();
        let predicted = predicted_fresh(seed);
        let client_eph: [u8; 32] = predicted[32..].try_into().unwrap();
        let predicted_enc = x25519::batch([Op::Base(&client_eph)])[0];
        let predicted_right = hello[8..40] == predicted[..32] && hello[40..72] == predicted_enc;
        let sh =
            handshake::forge_server_hello(&client_eph, &hello, &server.public(), b"", &[0x77; 32])
                .unwrap();
        s.write_all(&sh).await.unwrap();
        // Keep the connection until the client decided.
        let mut sink = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut sink)).await;
        predicted_right
    });
    let client = Service::new(client_config(
        KeyPair::from_seed(&[1; 32]).public(),
        Some(seed),
    ));
    let res = client.connect(&addr, Protocol::BitsHpke).await;
    let predicted_right = attacker.await.unwrap();
    assert!(
        !predicted_right,
        "the client's random and ephemeral key follow from its rng_seed"
    );
    match res {
        Err(ConnectError::Handshake(HandshakeError::Peer(
            PeerMisbehaved::ServerNotAuthenticated,
        ))) => {}
        Ok(s) => panic!(
            "impersonated: connected to a forged server, peer key {:?}",
            s.peer_key()
        ),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

/// The first ClientHello a client service sends to a fresh listener.
async fn first_hello(config: Config) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let grab = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hello = vec![0u8; 72];
        s.read_exact(&mut hello).await.unwrap();
        hello
    });
    let client = Service::new(config);
    let connect =
        tokio::spawn(async move { client.connect(&addr, Protocol::BitsHpke).await.is_ok() });
    let hello = grab.await.unwrap();
    connect.abort();
    hello
}

/// A handshake's secrets are not a function of the service's RNG (its seed or its state): two
/// services with the same `rng_seed` on real sockets send different randoms and ephemeral keys,
/// so nothing in a service's memory regenerates a past handshake's secrets. (Before the
/// hardening both sent the same bytes.)
#[tokio::test]
async fn the_same_rng_seed_gives_different_handshake_secrets() {
    let server = KeyPair::from_seed(&[1; 32]).public();
    let a = first_hello(client_config(server, Some(7))).await;
    let b = first_hello(client_config(server, Some(7))).await;
    assert_eq!(a[..8], b[..8], "same header");
    assert_ne!(a[8..40], b[8..40], "client randoms");
    assert_ne!(a[40..72], b[40..72], "ephemeral keys");
    let predicted = predicted_fresh(7);
    assert_ne!(a[8..40], predicted[..32]);
}

/// A server with Alice on its allow-list, counting what its handshakes did.
async fn alice_server(
    key: &KeyPair,
    allowed: Option<Vec<PublicKey>>,
) -> (
    Service,
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Option<PublicKey>>>>,
) {
    let mut enc = Encryption::server(key.clone());
    enc.allowed_clients = allowed;
    let svc = Service::new(Config::default().with_encryption(enc));
    let opened: std::sync::Arc<std::sync::Mutex<Vec<Option<PublicKey>>>> = Default::default();
    let o = opened.clone();
    svc.sub(
        Topic::sessions(Protocol::BitsHpke),
        move |ev: &SessionEvent| {
            if let SessionEvent::Opened { session, .. } = ev {
                o.lock().unwrap().push(session.peer_key());
            }
        },
    )
    .unwrap();
    let acc = svc.accept("127.0.0.1:0", Protocol::BitsHpke).await.unwrap();
    (svc, acc.local_addr().to_string(), opened)
}

/// Key-compromise impersonation (review finding 3): with only the server's secret key (a
/// stolen key file or memory dump), log in to that real server as Alice. The attacker computes
/// `AuthEncap`'s static-static DH from the server's side (`DH(server secret, Alice)`), which
/// was all of the client's proof before the hardening: the server opened a session reporting
/// Alice's key. Now the key schedule also needs `DH(Alice's secret, server ephemeral)`, and
/// the server refuses the attacker's finished tag.
#[tokio::test]
async fn the_servers_key_alone_does_not_log_in_as_a_client() {
    let server = KeyPair::from_seed(&[1; 32]);
    let alice = KeyPair::from_seed(&[3; 32]);
    let mallory = KeyPair::from_seed(&[4; 32]);
    // Stolen: the server's secret key. Public: Alice's key.
    let ss = x25519::batch([Op::Dh(
        server.secret.as_bytes(),
        &Point::new(&alice.public.0),
    )])[0];
    for allowed in [Some(vec![alice.public()]), None] {
        let (svc, addr, opened) = alice_server(&server, allowed.clone()).await;
        let keys = ClientKeys::impersonating(&server.public(), alice.public(), &mallory, ss, b"");
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let fresh = Fresh::from_rng(&mut ChaCha20Rng::seed_from_u64(5));
        let (pending, hello) = handshake::client_hello(fresh, Cipher::Aes128Gcm, &keys).unwrap();
        s.write_all(&hello).await.unwrap();
        let mut sh = [0u8; SH_LEN];
        s.read_exact(&mut sh).await.unwrap();
        // The best the attacker has: its own finished tag, or a guess if it cannot make one.
        let cf = match handshake::client_finish(pending, &keys, &sh) {
            Ok((_, cf)) => cf,
            Err(_) => [0x42; CF_LEN],
        };
        s.write_all(&cf).await.unwrap();
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut sink)).await;
        for _ in 0..200 {
            if svc.status().handshake_failures + svc.status().handshakes > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let st = svc.status();
        assert_eq!(
            (st.handshakes, st.handshake_failures),
            (0, 1),
            "allow-list {}: {st}",
            allowed.is_some()
        );
        assert!(
            opened.lock().unwrap().is_empty(),
            "a session opened as {:?}",
            opened.lock().unwrap()
        );
        // Alice herself still gets in.
        let alice_enc = Encryption::client(server.public()).with_identity(alice.clone());
        let session = Service::new(Config::default().with_encryption(alice_enc))
            .connect(&addr, Protocol::BitsHpke)
            .await
            .unwrap();
        assert_eq!(session.peer_key(), Some(server.public()));
        for _ in 0..200 {
            if !opened.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*opened.lock().unwrap(), [Some(alice.public())]);
        svc.shutdown().await;
    }
}
