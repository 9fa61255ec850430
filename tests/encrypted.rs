//! Encrypted sessions over real loopback sockets: the protocol works end to end, and the
//! attacks the design claims to stop are stopped (each test fails if its property breaks).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests use Tokio directly

use std::sync::{Arc, Mutex};
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{
    CloseReason, Config, ConnectError, CryptoError, Encryption, Event, HandshakeError, KeyPair,
    PeerMisbehaved, Protocol, PublicKey, Received, Service, SessionEvent, Topic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone, PartialEq)]
struct Note {
    seq: u32,
    text: String,
}
laxnet::message!(Note = 1);

type Log = Arc<Mutex<Vec<String>>>;

fn server_config(key: &KeyPair, tweak: impl FnOnce(&mut Encryption)) -> Config {
    let mut enc =
        Encryption::server(key.clone()).with_handshake_timeout(Duration::from_millis(500));
    tweak(&mut enc);
    Config::default()
        .with_encryption(enc)
        .with_linger(Duration::from_millis(500))
}

fn client_config(server: &KeyPair, tweak: impl FnOnce(&mut Encryption)) -> Config {
    let mut enc = Encryption::client(server.public());
    tweak(&mut enc);
    Config::default().with_encryption(enc)
}

/// A client service that knows `Note` (echoes come back as notes).
fn new_client(server: &KeyPair, tweak: impl FnOnce(&mut Encryption)) -> Service {
    let svc = Service::new(client_config(server, tweak));
    svc.register::<Note>().unwrap();
    svc
}

/// A server that logs sessions and notes, and echoes notes.
async fn server(key: &KeyPair, tweak: impl FnOnce(&mut Encryption)) -> (Service, String, Log) {
    let svc = Service::new(server_config(key, tweak));
    let log: Log = Arc::default();
    let l = log.clone();
    svc.sub(
        Topic::sessions(Protocol::BitsHpke),
        move |ev: &SessionEvent| {
            if let SessionEvent::Opened { session, .. } = ev
                && let Some(k) = session.peer_key()
            {
                l.lock().unwrap().push(format!("client key {k}"));
            }
            let line = match ev {
                SessionEvent::Opened { .. } => "opened".to_string(),
                SessionEvent::Closed { reason, .. } => format!("closed: {reason:?}"),
                _ => "other".into(),
            };
            l.lock().unwrap().push(line);
        },
    )
    .unwrap();
    let l = log.clone();
    svc.sub(
        Topic::message::<Note>(Protocol::BitsHpke),
        move |m: &Received<Note>| {
            l.lock().unwrap().push(format!("note {}", m.msg.seq));
            let _ = m.session.send(&m.msg);
        },
    )
    .unwrap();
    let acc = svc.accept("127.0.0.1:0", Protocol::BitsHpke).await.unwrap();
    (svc, acc.local_addr().to_string(), log)
}

async fn wait_for(log: &Log, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
    for _ in 0..500 {
        {
            let l = log.lock().unwrap();
            if pred(&l) {
                return l.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out; log: {:?}", log.lock().unwrap());
}

#[tokio::test]
async fn encrypted_echo_both_ciphers_and_clean_close() {
    let key = KeyPair::from_seed(&[1; 32]);
    for cipher in [laxnet::Cipher::ChaCha20Poly1305, laxnet::Cipher::Aes128Gcm] {
        let (srv, addr, log) = server(&key, |_| {}).await;
        let client = new_client(&key, |e| e.cipher = cipher);
        let mut inbox = client.inbox();
        inbox
            .add(Topic::message::<Note>(Protocol::BitsHpke))
            .unwrap()
            .add(Topic::sessions(Protocol::BitsHpke))
            .unwrap();
        let s = match client.connect(&addr, Protocol::BitsHpke).await {
            Ok(s) => s,
            Err(e) => panic!("{e:?}\nserver: {}", srv.status()),
        };
        for seq in 0..500 {
            s.send(&Note {
                seq,
                text: "x".repeat(seq as usize % 97),
            })
            .unwrap();
        }
        let mut got = 0;
        while got < 500 {
            let ev = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
                .await
                .unwrap()
                .unwrap();
            if let Event::Message(m) = ev {
                assert_eq!(m.downcast::<Note>().unwrap().msg.seq, got);
                got += 1;
            }
        }
        s.close();
        let l = wait_for(&log, |l| l.iter().any(|x| x.starts_with("closed"))).await;
        assert_eq!(
            l.last().unwrap(),
            "closed: Peer(PeerClose { code: Normal, detail: 0, app_code: 0, text: \"\" })",
            "{cipher:?}: {l:?}"
        );
        assert_eq!(l.iter().filter(|x| *x == "opened").count(), 1);
        srv.shutdown().await;
        client.shutdown().await;
        assert_eq!(srv.status().pool.in_use_bytes, 0);
        // A clean close completes by itself: the linger timer is only a bound.
        assert_eq!(srv.status().linger_expired, 0, "{cipher:?}");
        assert_eq!(client.status().linger_expired, 0, "{cipher:?}");
    }
}

/// A client whose service fills up during its handshake (two connects racing for its last
/// session) still sends its Finished, then an authenticated Close: the server counts no
/// failed handshake and sees a clean close, not a truncation.
#[tokio::test]
async fn a_client_refused_after_its_handshake_finishes_it_and_closes_cleanly() {
    let key = KeyPair::from_seed(&[6; 32]);
    let (srv, addr, log) = server(&key, |_| {}).await;
    let client = Service::new(client_config(&key, |_| {}).with_max_sessions(1));
    let (a, b) = tokio::join!(
        client.connect(&addr, Protocol::BitsHpke),
        client.connect(&addr, Protocol::BitsHpke)
    );
    let kept = match (a, b) {
        (Ok(s), Err(ConnectError::TooManySessions))
        | (Err(ConnectError::TooManySessions), Ok(s)) => s,
        other => panic!("one connect must be refused after its handshake: {other:?}"),
    };
    let l = wait_for(&log, |l| l.iter().any(|x| x.starts_with("closed"))).await;
    let full = "closed: Peer(PeerClose { code: Full, detail: 0, app_code: 0, text: \"\" })";
    assert_eq!(l, ["opened", "opened", full]);
    let st = srv.status();
    assert_eq!((st.handshakes, st.handshake_failures), (2, 0), "{st}");
    assert_eq!(client.status().handshakes, 2);
    kept.close();
    wait_for(&log, |l| l.len() == 4).await;
    srv.shutdown().await;
    client.shutdown().await;
}

#[tokio::test]
async fn wrong_server_key_is_refused_and_server_keeps_nothing() {
    let key = KeyPair::from_seed(&[1; 32]);
    let other = KeyPair::from_seed(&[2; 32]);
    let (srv, addr, log) = server(&key, |_| {}).await;
    let client = new_client(&other, |_| {});
    let err = client.connect(&addr, Protocol::BitsHpke).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Handshake(
                HandshakeError::Peer(
                    PeerMisbehaved::ServerNotAuthenticated | PeerMisbehaved::Malformed
                ) | HandshakeError::Closed
            )
        ),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(log.lock().unwrap().is_empty(), "no session on the server");
    assert_eq!(srv.status().live(), 0);
    // Other sessions are unaffected.
    let good = new_client(&key, |_| {});
    let s = good.connect(&addr, Protocol::BitsHpke).await.unwrap();
    s.send(&Note {
        seq: 7,
        text: String::new(),
    })
    .unwrap();
    wait_for(&log, |l| l.contains(&"note 7".to_string())).await;
}

#[tokio::test]
async fn client_auth_allow_list() {
    let key = KeyPair::from_seed(&[1; 32]);
    let alice = KeyPair::from_seed(&[3; 32]);
    let mallory = KeyPair::from_seed(&[4; 32]);
    // A long list, unsorted, with a duplicate: Alice sits among 200 other keys (the server
    // sorts its own copy once and looks keys up by binary search).
    let mut allowed: Vec<PublicKey> = (0..200u32)
        .rev()
        .map(|i| {
            let mut b = [0x5a; 32];
            b[..4].copy_from_slice(&i.to_be_bytes());
            let k = KeyPair::from_seed(&b).public();
            // What a configuration file would hold.
            PublicKey::from_bytes(k.to_bytes()).unwrap()
        })
        .collect();
    allowed.insert(123, alice.public());
    allowed.push(allowed[7]);
    assert!(!allowed.is_sorted());
    let (srv, addr, log) = server(&key, |e| e.allowed_clients = Some(allowed.clone())).await;
    let list = srv
        .config()
        .encryption
        .as_ref()
        .unwrap()
        .allowed_clients
        .as_ref();
    assert_eq!(list, Some(&allowed), "the configuration stays as given");
    let m = new_client(&key, |e| e.identity = Some(mallory.clone()));
    assert!(m.connect(&addr, Protocol::BitsHpke).await.is_err());
    let anon = new_client(&key, |_| {});
    assert!(anon.connect(&addr, Protocol::BitsHpke).await.is_err());
    let a = new_client(&key, |e| e.identity = Some(alice.clone()));
    let s = a.connect(&addr, Protocol::BitsHpke).await.unwrap();
    assert_eq!(
        s.peer_key(),
        Some(key.public()),
        "the client's view: the server's key"
    );
    s.send(&Note {
        seq: 1,
        text: "hi".into(),
    })
    .unwrap();
    let l = wait_for(&log, |l| l.contains(&"note 1".to_string())).await;
    assert_eq!(srv.status().live(), 1);
    // The server's view: exactly one session opened, and it carries Alice's key.
    let keys: Vec<_> = l.iter().filter(|x| x.starts_with("client key")).collect();
    assert_eq!(keys, [&format!("client key {}", alice.public())], "{l:?}");
}

/// Two services that share a key pair but not a context are not interchangeable: a client
/// meant for one that is sent to the other (a wrong DNS entry, a misrouted proxy) fails its
/// handshake, and the other service opens no session. (Before the context existed, the client
/// connected to whichever service had the key.)
#[tokio::test]
async fn services_sharing_a_key_are_told_apart_by_their_context() {
    let key = KeyPair::from_seed(&[8; 32]);
    let (pay, pay_addr, pay_log) = server(&key, |e| e.context = b"payments/eu".to_vec()).await;
    let (chat, chat_addr, chat_log) = server(&key, |e| e.context = b"chat/eu".to_vec()).await;
    let client = Service::new(client_config(&key, |e| {
        *e = Encryption::client(key.public()).with_context("payments/eu")
    }));
    let err = client
        .connect(&chat_addr, Protocol::BitsHpke)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Handshake(HandshakeError::Peer(PeerMisbehaved::ServerNotAuthenticated))
        ),
        "{err:?}"
    );
    let s = client.connect(&pay_addr, Protocol::BitsHpke).await.unwrap();
    s.send(&Note {
        seq: 3,
        text: "to payments".into(),
    })
    .unwrap();
    wait_for(&pay_log, |l| l.contains(&"note 3".to_string())).await;
    for _ in 0..200 {
        if chat.status().handshake_failures > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(chat.status().handshake_failures, 1, "{}", chat.status());
    assert_eq!(chat.status().handshakes, 0);
    assert!(
        chat_log.lock().unwrap().is_empty(),
        "no session on the other service"
    );
    assert_eq!(pay.status().handshakes, 1);
}

#[tokio::test]
async fn peer_key_is_none_without_a_proven_key() {
    // Encrypted, anonymous client: the client still knows the server's key.
    let key = KeyPair::from_seed(&[1; 32]);
    let (_srv, addr, log) = server(&key, |_| {}).await;
    let c = new_client(&key, |_| {});
    let s = c.connect(&addr, Protocol::BitsHpke).await.unwrap();
    assert_eq!(s.peer_key(), Some(key.public()));
    s.send(&Note {
        seq: 2,
        text: "x".into(),
    })
    .unwrap();
    let l = wait_for(&log, |l| l.contains(&"note 2".to_string())).await;
    assert!(!l.iter().any(|x| x.starts_with("client key")), "{l:?}");
    // Plaintext: nobody's key is known.
    let plain = Service::new(Config::default());
    let seen: Arc<Mutex<Vec<Option<laxnet::PublicKey>>>> = Arc::default();
    let s2 = seen.clone();
    plain
        .sub(Topic::sessions(Protocol::Bits), move |ev: &SessionEvent| {
            if let SessionEvent::Opened { session, .. } = ev {
                s2.lock().unwrap().push(session.peer_key());
            }
        })
        .unwrap();
    let acc = plain.accept("127.0.0.1:0", Protocol::Bits).await.unwrap();
    let client = Service::new(Config::default());
    let cs = client
        .connect(&acc.local_addr().to_string(), Protocol::Bits)
        .await
        .unwrap();
    assert_eq!(cs.peer_key(), None);
    for _ in 0..200 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*seen.lock().unwrap(), [None]);
}

/// A man in the middle on loopback: forwards bytes both ways, optionally rewriting the
/// client's stream (after `skip` bytes) with `mangle`.
async fn relay(
    target: String,
    mangle: impl Fn(&mut Vec<u8>, usize) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let recorded: Arc<Mutex<Vec<u8>>> = Arc::default();
    let rec = recorded.clone();
    tokio::spawn(async move {
        let (mut c, _) = listener.accept().await.unwrap();
        let mut s = TcpStream::connect(&target).await.unwrap();
        let (mut cr, mut cw) = c.split();
        let (mut sr, mut sw) = s.split();
        let up = async {
            let mut buf = vec![0u8; 65536];
            let mut seen = 0usize;
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut chunk = buf[..n].to_vec();
                rec.lock().unwrap().extend_from_slice(&chunk);
                mangle(&mut chunk, seen);
                seen += n;
                if sw.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = sw.shutdown().await;
        };
        let down = async {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
            let _ = cw.shutdown().await;
        };
        tokio::join!(up, down);
    });
    (addr, recorded)
}

/// What the client writes before its records: ClientHello (no client key) and ClientFinished.
const HELLO_AND_FINISHED: usize = laxnet::wire::client_handshake(false);

#[tokio::test]
async fn flipped_bit_closes_with_crypto_reason_and_delivers_nothing_after() {
    let key = KeyPair::from_seed(&[1; 32]);
    let (_srv, addr, log) = server(&key, |_| {}).await;
    // Flip one bit inside the second record (after handshake and first record).
    let (mitm, _) = relay(addr, |chunk, seen| {
        let target = HELLO_AND_FINISHED + 200;
        if seen <= target && target < seen + chunk.len() {
            chunk[target - seen] ^= 0x10;
        }
    })
    .await;
    let client = new_client(&key, |_| {});
    let s = client.connect(&mitm, Protocol::BitsHpke).await.unwrap();
    // Separate records: wait between sends so each batch is its own record.
    for seq in 0..20u32 {
        let _ = s.send(&Note {
            seq,
            text: "y".repeat(40),
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let l = wait_for(&log, |l| l.iter().any(|x| x.starts_with("closed"))).await;
    assert!(l.last().unwrap().contains("Crypto(BadRecord)"), "{l:?}");
    let notes = l.iter().filter(|x| x.starts_with("note")).count();
    assert!(
        notes < 20,
        "nothing after the bad record is delivered: {l:?}"
    );
}

#[tokio::test]
async fn truncation_without_authenticated_close_is_abnormal() {
    let key = KeyPair::from_seed(&[1; 32]);
    let (_srv, addr, log) = server(&key, |_| {}).await;
    // The relay drops everything after the first 400 bytes from the client and then closes:
    // the server sees EOF without the Close record.
    let (mitm, _) = relay(addr, |chunk, seen| {
        let keep = 400usize.saturating_sub(seen).min(chunk.len());
        chunk.truncate(keep);
    })
    .await;
    let client = new_client(&key, |_| {});
    let s = client.connect(&mitm, Protocol::BitsHpke).await.unwrap();
    for seq in 0..50u32 {
        let _ = s.send(&Note {
            seq,
            text: "z".repeat(30),
        });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.close();
    let l = wait_for(&log, |l| l.iter().any(|x| x.starts_with("closed"))).await;
    let last = l.last().unwrap();
    assert!(
        last.contains("Crypto(Truncated)") || last.contains("Crypto(BadRecord)"),
        "EOF without an authenticated close must not be clean: {l:?}"
    );
}

#[tokio::test]
async fn replayed_handshake_and_records_deliver_nothing() {
    let key = KeyPair::from_seed(&[1; 32]);
    let (_srv, addr, log) = server(&key, |_| {}).await;
    let (mitm, recorded) = relay(addr.clone(), |_, _| {}).await;
    let client = new_client(&key, |_| {});
    let s = client.connect(&mitm, Protocol::BitsHpke).await.unwrap();
    s.send(&Note {
        seq: 42,
        text: "secret".into(),
    })
    .unwrap();
    wait_for(&log, |l| l.contains(&"note 42".to_string())).await;
    s.close();
    wait_for(&log, |l| l.iter().any(|x| x.starts_with("closed"))).await;
    let before = log.lock().unwrap().len();
    let bytes = recorded.lock().unwrap().clone();
    assert!(
        !bytes.windows(6).any(|w| w == b"secret"),
        "plaintext on the wire"
    );
    // Replay everything the client sent, verbatim, on a new connection.
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(&bytes).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), raw.read_to_end(&mut sink)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = log.lock().unwrap().clone();
    assert_eq!(after.len(), before, "replay delivered something: {after:?}");
}

#[tokio::test]
async fn garbage_and_silent_handshakes_fail_without_state() {
    let key = KeyPair::from_seed(&[1; 32]);
    let (srv, addr, log) = server(&key, |e| e.max_handshakes = 4).await;
    // Garbage: rejected from the header.
    let mut g = TcpStream::connect(&addr).await.unwrap();
    g.write_all(&[0xAB; 300]).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), g.read_to_end(&mut sink)).await;
    // Silent: beyond the cap of 4 the oldest silent attempts make room for newer ones
    // (evicted, their connections closed); the rest time out (500 ms in this config).
    let mut silent = Vec::new();
    for _ in 0..6 {
        silent.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let st = srv.status();
    assert_eq!(st.handshakes_evicted, 2, "pre-auth cap: {st:?}");
    assert_eq!(st.handshakes_refused, 0, "{st:?}");
    // Each evicted attempt is told why (busy, unauthenticated) and its connection closed.
    let mut closed = 0;
    for s in &mut silent[..2] {
        let mut b = Vec::new();
        let read = tokio::time::timeout(Duration::from_millis(100), s.read_to_end(&mut b)).await;
        if let Ok(Ok(_)) = read
            && b == laxnet::wire::REFUSAL_MAGIC
                .iter()
                .chain(&[18])
                .copied()
                .collect::<Vec<_>>()
        {
            closed += 1;
        }
    }
    assert_eq!(closed, 2, "the two oldest were dropped");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = srv.status();
    assert_eq!(
        st.handshake_failures, 5,
        "garbage + timeouts counted: {st:?}"
    );
    assert_eq!(st.live(), 0);
    assert!(log.lock().unwrap().is_empty());
    // A real client still gets in.
    let client = new_client(&key, |_| {});
    client.connect(&addr, Protocol::BitsHpke).await.unwrap();
}

#[tokio::test]
async fn record_counter_limit_closes_the_session() {
    let key = KeyPair::from_seed(&[1; 32]);
    let (_srv, addr, log) = server(&key, |e| e.record_limit = 5).await;
    let client = new_client(&key, |e| e.record_limit = 5);
    let mut inbox = client.inbox();
    inbox.add(Topic::sessions(Protocol::BitsHpke)).unwrap();
    let s = client.connect(&addr, Protocol::BitsHpke).await.unwrap();
    for seq in 0..20u32 {
        let _ = s.send(&Note {
            seq,
            text: String::new(),
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let l = wait_for(&log, |l| l.iter().any(|x| x.starts_with("closed"))).await;
    // The client runs out first: its 5th record is the Close record's, so its 5th note
    // finds no record left. The server sees the connection end without an authenticated
    // close, or reaches its own limit.
    let last = l.last().unwrap();
    assert!(
        last.contains("CounterExhausted") || last.contains("Truncated"),
        "{l:?}"
    );
    assert_eq!(
        l.iter().filter(|x| x.starts_with("note")).count(),
        4,
        "{l:?}"
    );
    let reason = loop {
        match tokio::time::timeout(Duration::from_secs(5), inbox.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Session(SessionEvent::Closed { reason, .. }) => break reason,
            _ => continue,
        }
    };
    assert_eq!(reason, CloseReason::Crypto(CryptoError::CounterExhausted));
}
