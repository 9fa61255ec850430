//! The attacks of the bits-hpke review, performed against the real service on loopback
//! sockets (real Tokio runtime, real crypto). Each test fails on the protocol and service
//! before the hardening that stops its attack (v2, `LXN2`).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // tests use Tokio directly

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::handshake;
use super::x25519::{self, Op};
use super::{Encryption, HandshakeError, KeyPair, PublicKey};
use crate::{BITS_HPKE, Config, ConnectError, Service};

fn client_config(server: PublicKey, seed: Option<u64>) -> Config {
    Config {
        rng_seed: seed,
        encryption: Some(Encryption::client(server)),
        ..Config::default()
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
        let sh = handshake::forge_server_hello(&client_eph, &hello, &server.public(), &[0x77; 32])
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
    let res = client.connect(&addr, BITS_HPKE).await;
    let predicted_right = attacker.await.unwrap();
    assert!(
        !predicted_right,
        "the client's random and ephemeral key follow from its rng_seed"
    );
    match res {
        Err(ConnectError::Handshake(HandshakeError::ServerNotAuthenticated)) => {}
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
    let connect = tokio::spawn(async move { client.connect(&addr, BITS_HPKE).await.is_ok() });
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
