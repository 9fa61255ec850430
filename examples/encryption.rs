//! The encryption sample: key generation, an encrypted exchange, a tampered record rejected,
//! a wrong-key connect refused. Prints what it showed; exits 0 only if every check held.
//!
//! Run: `cargo run --example encryption`
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // examples may use Tokio directly

use std::sync::{Arc, Mutex};
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{
    CloseReason, Config, ConnectError, CryptoError, Encryption, Event, KeyPair, Protocol, Received,
    Service, SessionEvent, Topic,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(BorshSerialize, BorshDeserialize, Debug)]
struct Secret {
    text: String,
}
laxnet::message!(Secret = 1);

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // 1. Keys: generate, save owner-only, load back.
    let path = std::env::temp_dir().join(format!("laxnet-example-{}.key", std::process::id()));
    let generated = KeyPair::generate();
    generated.save(&path)?;
    let server_key = KeyPair::load(&path)?;
    std::fs::remove_file(&path)?;
    assert_eq!(server_key.public(), generated.public());
    println!(
        "1. server key generated, saved (mode 0600) and loaded: public {}",
        server_key.public()
    );

    // The server: echoes secrets, records how each session closed.
    let server =
        Service::new(Config::default().with_encryption(Encryption::server(server_key.clone())));
    let closes: Arc<Mutex<Vec<CloseReason>>> = Arc::default();
    let c = closes.clone();
    server.sub(
        Topic::sessions(Protocol::BitsHpke),
        move |ev: &SessionEvent| {
            if let SessionEvent::Closed { reason, .. } = ev {
                c.lock().unwrap().push(reason.clone());
            }
        },
    )?;
    server.sub(
        Topic::message::<Secret>(Protocol::BitsHpke),
        |m: &Received<Secret>| {
            // Echo; a peer that does not read its echoes (`QueueFull`) is let go.
            if let Err(e) = m.session.send(&m.msg) {
                eprintln!("server: echo to {} not sent ({e}), closing", m.session.id());
                m.session.close();
            }
        },
    )?;
    let addr = server
        .accept("127.0.0.1:0", Protocol::BitsHpke)
        .await?
        .local_addr()
        .to_string();

    // 2. An encrypted exchange through a relay that records the bytes on the wire.
    let (relay_addr, wire) = relay(addr.clone(), None).await?;
    let client = client(&server_key)?;
    let mut inbox = client.inbox();
    inbox.add(Topic::message::<Secret>(Protocol::BitsHpke))?;
    let session = client.connect(&relay_addr, Protocol::BitsHpke).await?;
    session.send(&Secret {
        text: "the eagle lands at dawn".into(),
    })?;
    let Some(Event::Message(m)) =
        tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await?
    else {
        return Err("no echo".into());
    };
    let echo = m.downcast::<Secret>().map_err(|_| "wrong type")?.msg.text;
    session.close();
    wait(&closes, 1).await?;
    let on_wire = wire.lock().unwrap().clone();
    if on_wire.windows(5).any(|w| w == b"eagle") {
        return Err("plaintext visible on the wire".into());
    }
    println!(
        "2. encrypted exchange: echoed {echo:?}; {} bytes on the wire, no plaintext in them",
        on_wire.len()
    );

    // 3. A tampered record: the relay flips one bit after the handshake (the client's 72-byte
    // hello and 32-byte finished tag).
    let (relay_addr, _) = relay(addr.clone(), Some(72 + 32 + 10)).await?;
    let tampered = client.connect(&relay_addr, Protocol::BitsHpke).await?;
    tampered.send(&Secret {
        text: "pay 100 to alice".into(),
    })?;
    wait(&closes, 2).await?;
    let reason = closes.lock().unwrap()[1].clone();
    if reason != CloseReason::Crypto(CryptoError::BadRecord) {
        return Err(format!("tampered record: expected a crypto close, got {reason:?}").into());
    }
    println!(
        "3. tampered record rejected: the server closed the session ({reason}); nothing delivered"
    );

    // 4. A client that pins the wrong key cannot connect.
    let impostor_pin = KeyPair::generate();
    let wrong = client_pinning(&impostor_pin)?;
    match wrong.connect(&addr, Protocol::BitsHpke).await {
        Err(ConnectError::Handshake(e)) => println!("4. wrong server key refused: {e}"),
        Err(e) => return Err(format!("wrong key: unexpected error {e}").into()),
        Ok(_) => return Err("wrong key: connected!".into()),
    }
    println!("{}", server.status());
    server.shutdown().await;
    println!("encryption: all checks held");
    Ok(())
}

fn client(server_key: &KeyPair) -> Result<Service, Error> {
    client_pinning(server_key)
}

fn client_pinning(pinned: &KeyPair) -> Result<Service, Error> {
    let svc = Service::new(Config::default().with_encryption(Encryption::client(pinned.public())));
    svc.register::<Secret>()?;
    Ok(svc)
}

async fn wait(closes: &Mutex<Vec<CloseReason>>, n: usize) -> Result<(), Error> {
    for _ in 0..500 {
        if closes.lock().unwrap().len() >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err("timed out waiting for a close".into())
}

/// A loopback relay that records client→server bytes and optionally flips a bit at `flip`.
async fn relay(
    target: String,
    flip: Option<usize>,
) -> Result<(String, Arc<Mutex<Vec<u8>>>), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let wire: Arc<Mutex<Vec<u8>>> = Arc::default();
    let w = wire.clone();
    tokio::spawn(async move {
        let Ok((mut c, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut s) = TcpStream::connect(&target).await else {
            return;
        };
        let (mut cr, mut cw) = c.split();
        let (mut sr, mut sw) = s.split();
        let up = async {
            let mut buf = vec![0u8; 65536];
            let mut seen = 0;
            while let Ok(n @ 1..) = cr.read(&mut buf).await {
                if let Some(at) = flip.filter(|at| (seen..seen + n).contains(at)) {
                    buf[at - seen] ^= 0x01;
                }
                w.lock().unwrap().extend_from_slice(&buf[..n]);
                seen += n;
                if sw.write_all(&buf[..n]).await.is_err() {
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
    Ok((addr, wire))
}
