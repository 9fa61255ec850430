//! Handshake admission against a slow-connection flood, on real loopback sockets: idle and
//! trickling connections must not keep real clients out of a `bits-hpke` server.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests use Tokio directly

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use laxnet::{Config, Encryption, KeyPair, Protocol, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Raises this process's open-file limit to at least `want` (up to the hard limit).
fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        if rl.rlim_cur < want {
            rl.rlim_cur = want.min(rl.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        assert!(
            rl.rlim_cur >= want,
            "need {want} open files, the hard limit is {}",
            rl.rlim_max
        );
    }
}

/// How one attacking connection behaves.
#[derive(Clone, Copy)]
enum Style {
    /// Connects and sends nothing.
    Silent,
    /// Sends a valid ClientHello header, then the rest of a hello, one byte per second.
    Trickle,
}

/// Keeps one attacking connection open from `source` to `target`: when the server drops it,
/// opens the next one `pause` later (so the attacker holds its connections open for as long
/// as the flood lasts). Counts connections made.
async fn attacker(
    source: Ipv4Addr,
    target: SocketAddr,
    style: Style,
    pause: Duration,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
) {
    while !stop.load(Relaxed) {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from((source, 0))).unwrap();
        let Ok(mut s) = sock.connect(target).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        made.fetch_add(1, Relaxed);
        match style {
            Style::Silent => {
                let mut b = [0u8; 1];
                let _ = s.read(&mut b).await; // until the server drops it
            }
            Style::Trickle => {
                let mut hello = [0u8; laxnet::wire::CLIENT_HELLO];
                hello[..4].copy_from_slice(&laxnet::wire::HANDSHAKE_MAGIC);
                hello[4] = 2; // AES-128-GCM, no client key
                for byte in hello {
                    if stop.load(Relaxed) || s.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    let mut b = [0u8; 1];
                    // One byte a second, or sooner if the server closes the connection.
                    match tokio::time::timeout(Duration::from_secs(1), s.read(&mut b)).await {
                        Err(_) => continue,
                        Ok(_) => break,
                    }
                }
            }
        }
        drop(s);
        tokio::time::sleep(pause).await;
    }
}

/// 500 silent connections and 500 that trickle a hello one byte a second, from 50 source
/// addresses (20 each, over the per-source limit of 16), are held open against a server with
/// the default admission settings; meanwhile a real client connects 20 times and must get in
/// within 1 s every time. Before admission evicted stalled attempts, the first 256 idle
/// connections held every place for the whole 5 s handshake timeout and each newcomer — the
/// real client too — was refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_gets_in_while_a_thousand_idle_connections_are_held_open() {
    raise_fd_limit(6000);
    let key = KeyPair::from_seed(&[5; 32]);
    let server = Service::new(Config::default().with_encryption(Encryption::server(key.clone())));
    let acc = server
        .accept("127.0.0.1:0", Protocol::BitsHpke)
        .await
        .unwrap();
    let target = acc.local_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for i in 0..1000u32 {
        // 127.0.1.1 – 127.0.1.50 (Linux answers for all of 127/8); the real client comes from
        // 127.0.0.1.
        let source = Ipv4Addr::new(127, 0, 1, 1 + (i % 50) as u8);
        let style = if i % 2 == 0 {
            Style::Silent
        } else {
            Style::Trickle
        };
        // 400–600 ms between a dropped connection and the next, spread over the attackers.
        let pause = Duration::from_millis(400 + u64::from(i % 201));
        flood.push(tokio::spawn(attacker(
            source,
            target,
            style,
            pause,
            stop.clone(),
            made.clone(),
        )));
    }
    // Let the flood fill the server's places.
    while made.load(Relaxed) < 1000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = Service::new(Config::default().with_encryption(Encryption::client(key.public())));
    let mut slowest = Duration::ZERO;
    for attempt in 0..20 {
        let t = Instant::now();
        let res = tokio::time::timeout(
            Duration::from_secs(1),
            client.connect(&target.to_string(), Protocol::BitsHpke),
        )
        .await;
        let took = t.elapsed();
        match res {
            Ok(Ok(session)) => session.close(),
            Ok(Err(e)) => panic!(
                "attempt {attempt}: {e:?} after {took:?}\nserver: {}",
                server.status()
            ),
            Err(_) => panic!(
                "attempt {attempt}: no session within 1 s\nserver: {}",
                server.status()
            ),
        }
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Relaxed);
    let st = server.status();
    eprintln!(
        "20 connects, slowest {slowest:?}; {} attacking connections made; server: {} handshakes, \
         {} evicted, {} refused, {} failed",
        made.load(Relaxed),
        st.handshakes,
        st.handshakes_evicted,
        st.handshakes_refused,
        st.handshake_failures
    );
    assert!(st.handshakes >= 20, "{st}");
    assert!(
        st.handshakes_evicted > 0,
        "the flood never filled the server's places: {st}"
    );
    for f in flood {
        f.abort();
    }
    client.shutdown().await;
    server.shutdown().await;
}
