//! Scenario 15: bad handshakes ("bits-hpke" only: the encrypted listener's counterpart of
//! `bad_input`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use laxnet::{CloseKind, Config, ConnectError, HandshakeError, KeyPair, PeerMisbehaved, wire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{close_client_session, garbage, read_to_end, round_trip, server_session, setup_echo};
use crate::harness::{Ctx, HPKE, Seq, server_encryption};

/// What the encrypted listener sends a bad handshake before dropping it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// Nothing: the hello was rejected (or never completed).
    Nothing,
    /// Its ServerHello: the hello was plausible, the client's finish was not.
    ServerHello,
}

/// A ClientHello that passes every check the server can make before the client's finished
/// tag: known magic and cipher (ChaCha20-Poly1305), no client key, valid X25519 points. Only
/// a client holding the ephemeral secret could finish it (and the suite never does).
fn plausible_hello(seed: u8) -> Vec<u8> {
    let mut h = wire::HANDSHAKE_MAGIC.to_vec();
    h.extend_from_slice(&[1, 0, 0, 0]);
    h.extend_from_slice(&[seed; 32]);
    h.extend_from_slice(&KeyPair::from_seed(&[seed; 32]).public().to_bytes());
    assert_eq!(h.len(), wire::CLIENT_HELLO);
    h
}

/// Handshake header `magic ‖ cipher ‖ flags ‖ reserved` followed by zeros, to a hello's length.
fn hello_with_header(header: [u8; wire::CLIENT_HELLO_HEADER]) -> Vec<u8> {
    let mut h = header.to_vec();
    h.resize(wire::CLIENT_HELLO, 0);
    h
}

/// Raw connections that fail the handshake of the encrypted listener. Each must be counted as
/// one handshake failure, open no session (no `Opened`, no id, no `accepted`), get exactly the
/// answer its stage calls for, and leave the good session talking; a client pinning the wrong
/// key fails to connect; a silent attempt makes room for a newcomer when the handshake places
/// are full (evicted), attempts past their hellos do not (newcomers are then refused at once);
/// connections that never finish time out, not earlier (at the handshake timeout after a
/// hello, at the hello deadline without one); afterwards a real client
/// gets in.
pub(crate) async fn bad_handshake(ctx: Arc<Ctx>) {
    assert!(ctx.encrypted(), "bad_handshake runs over {HPKE} only");
    // The silent connections must outlast the steps between their connect and the client
    // refused over the cap: a wide margin on real time.
    let timeout = Duration::from_secs(if ctx.is_sim() { 2 } else { 3 });
    let hello_timeout = timeout / 2;
    let sc = Config::default().with_encryption(
        server_encryption()
            .with_handshake_timeout(timeout)
            .with_hello_timeout(hello_timeout)
            .with_max_handshakes(2),
    );
    let addr = setup_echo(&ctx, sc, Config::default()).await;
    let good = ctx.connect().await;
    let good_srv = server_session(&ctx, 0).await;

    // The good session talks the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let (g, st) = (good.clone(), stop.clone());
    let pinger = ctx.client.spawn(move |_| async move {
        let mut q = 0u64;
        while !st.load(SeqCst) {
            g.send(&Seq::new(q, 100)).unwrap();
            q += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        q
    });
    let pings_flow = async |what: &str| {
        let before = ctx.client.msgs(good.id()).len();
        ctx.wait_for(&format!("pings to flow after {what}"), || {
            ctx.client.msgs(good.id()).len() >= before + 3
        })
        .await;
    };
    let failures = async || ctx.server.status().await.handshake_failures;
    let no_new_session = |what: &str| {
        assert_eq!(ctx.server.opened(), [good_srv], "{what} opened a session");
    };

    let hello = plausible_hello(ctx.seed() as u8 + 1);
    let header = |cipher: u8, flags: u8, reserved: u8| {
        let mut h = [0; wire::CLIENT_HELLO_HEADER];
        h[..4].copy_from_slice(&wire::HANDSHAKE_MAGIC);
        h[4..].copy_from_slice(&[cipher, flags, reserved, 0]);
        h
    };
    let mut attacks: Vec<(&str, Vec<u8>, bool, Answer)> = vec![
        (
            "random garbage",
            garbage(ctx.seed() * 10 + 7, 2000),
            true,
            Answer::Nothing,
        ),
        (
            "a plaintext \"bits\" frame",
            Seq::new(1, 200).frame(),
            false,
            Answer::Nothing,
        ),
        (
            "an unknown cipher",
            hello_with_header(header(0x77, 0, 0)),
            false,
            Answer::Nothing,
        ),
        (
            "unknown flags",
            hello_with_header(header(1, 0x80, 0)),
            false,
            Answer::Nothing,
        ),
        (
            "nonzero reserved bytes",
            hello_with_header(header(1, 0, 1)),
            false,
            Answer::Nothing,
        ),
        (
            "a hello cut short by the end of stream",
            hello[..50].to_vec(),
            true,
            Answer::Nothing,
        ),
        (
            "the end of stream instead of the finished tag",
            hello.clone(),
            true,
            Answer::ServerHello,
        ),
    ];
    let mut bad_finish = hello.clone();
    bad_finish.extend_from_slice(&[0x5a; 32]);
    attacks.push((
        "a forged finished tag",
        bad_finish,
        false,
        Answer::ServerHello,
    ));

    let mut expected_failures = 0;
    let mut raws = Vec::new();
    for (what, bytes, eof, answer) in attacks {
        let mut raw = ctx.raw_connect().await.expect("raw connect");
        let _ = raw.write_all(&bytes).await;
        if eof {
            let _ = raw.shutdown().await;
        }
        expected_failures += 1;
        ctx.wait_until(&format!("{what} to fail the handshake"), async || {
            failures().await >= expected_failures
        })
        .await;
        let (got, _) = read_to_end(&ctx, &mut raw).await;
        match answer {
            Answer::Nothing => assert!(got.is_empty(), "{what}: the server sent {got:?}"),
            Answer::ServerHello => {
                assert_eq!(
                    got.len(),
                    wire::SERVER_HELLO,
                    "{what}: the server sent {got:?}"
                );
                assert_eq!(got[..4], wire::HANDSHAKE_MAGIC, "{what}");
            }
        }
        assert_eq!(failures().await, expected_failures, "{what}");
        no_new_session(what);
        pings_flow(what).await;
        raws.push(raw);
    }

    // A real client that pins another key: the server answers, the client finds it cannot
    // be the key it pinned, and gives up; the server counts a failure too.
    let (host, a) = (ctx.client.clone(), addr.clone());
    let (res, mallory) = ctx
        .client
        .exec_async(move |_| async move {
            let wrong_key = KeyPair::from_seed(&[8; 32]).public();
            let enc = crate::harness::client_encryption().with_server_key(wrong_key);
            let cfg = Config::default().with_encryption(enc);
            let m = host.new_service(cfg, 8);
            let res = m.connect(&a, HPKE).await.map(|s| s.id());
            m.shutdown().await;
            (res, m.status())
        })
        .await;
    assert!(
        matches!(
            res,
            Err(ConnectError::Handshake(HandshakeError::Peer(
                PeerMisbehaved::ServerNotAuthenticated
            )))
        ),
        "{res:?}"
    );
    assert_eq!(
        (
            mallory.handshakes,
            mallory.handshake_failures,
            mallory.connected
        ),
        (0, 1, 0),
        "{mallory}"
    );
    assert_eq!(
        (mallory.live(), mallory.pool.in_use_bytes, mallory.panics),
        (0, 0, 0),
        "{mallory}"
    );
    expected_failures += 1;
    ctx.wait_until("the wrong-key client to fail on the server", async || {
        failures().await >= expected_failures
    })
    .await;
    no_new_session("the wrong-key client");

    // Admission with two places (`max_handshakes`). A silent connection and one that sent
    // its hello take both; a third connection evicts the silent one (stalled: no hello yet),
    // which is closed at once, before any handshake work.
    let started = tokio::time::Instant::now();
    let mut silent = ctx.raw_connect().await.expect("raw connect");
    let mut after_hello = ctx.raw_connect().await.expect("raw connect");
    after_hello
        .write_all(&hello)
        .await
        .expect("write the hello");
    // The server answered the second, so it accepted (and admitted) the first one too.
    let mut sh = [0u8; wire::SERVER_HELLO];
    ctx.within("the ServerHello", after_hello.read_exact(&mut sh))
        .await
        .expect("the ServerHello");
    assert_eq!(sh[..4], wire::HANDSHAKE_MAGIC);
    let second_at = started.elapsed();
    let mut second_hello = ctx.raw_connect().await.expect("raw connect");
    ctx.wait_until("the silent attempt to be evicted", async || {
        ctx.server.status().await.handshakes_evicted == 1
    })
    .await;
    // The evicted attempt is told why (unauthenticated, in place of the ServerHello): busy.
    let (got, _) = read_to_end(&ctx, &mut silent).await;
    assert_eq!(got, b"LXNR\x12", "the evicted connection");
    // Both places are now held by attempts past their hellos: not stalled (until their
    // ClientFinished is `hello_timeout` late), so further connections are refused at once.
    second_hello
        .write_all(&plausible_hello(ctx.seed() as u8 + 2))
        .await
        .expect("write the hello");
    ctx.within("the second ServerHello", second_hello.read_exact(&mut sh))
        .await
        .expect("the second ServerHello");
    let mut over_cap = ctx.raw_connect().await.expect("raw connect");
    ctx.wait_until("a connection over the cap to be refused", async || {
        ctx.server.status().await.handshakes_refused == 1
    })
    .await;
    // Refused with a reason (unauthenticated, in place of the ServerHello): busy.
    let (got, _) = read_to_end(&ctx, &mut over_cap).await;
    assert_eq!(got, b"LXNR\x12", "the connection over the cap");
    match ctx.try_connect().await {
        Err(ConnectError::Refused(laxnet::Refusal::Busy)) => {}
        Err(e) => panic!("a client over the handshake cap failed with {e:?}"),
        Ok(s) => panic!("a client over the handshake cap opened {}", s.id()),
    }
    let st = ctx.server.status().await;
    assert_eq!(
        (st.handshakes_refused, st.handshakes_evicted),
        (2, 1),
        "{st}"
    );
    assert_eq!(st.handshake_failures, expected_failures, "{st}");
    // With nobody else connecting, the two time out at the handshake timeout, not before
    // (measured from before their connects: a lower bound on both backends).
    expected_failures += 2;
    ctx.wait_until("the stalled handshakes to time out", async || {
        failures().await >= expected_failures
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= timeout,
        "timed out after {waited:?} (timeout {timeout:?})"
    );
    if ctx.is_sim() {
        // The second one connected `second_at` later.
        assert!(
            waited <= second_at + timeout + Duration::from_millis(100),
            "{waited:?}, the second connected at {second_at:?}"
        );
    }
    for (what, raw) in [("first", &mut after_hello), ("second", &mut second_hello)] {
        let (got, _) = read_to_end(&ctx, raw).await;
        assert!(
            got.is_empty(),
            "after the {what} ServerHello, the server sent {got:?}"
        );
    }
    // A silent connection with room to spare is dropped at the hello deadline, not before.
    let started = tokio::time::Instant::now();
    let mut late_silent = ctx.raw_connect().await.expect("raw connect");
    expected_failures += 1;
    ctx.wait_until("the silent connection to time out", async || {
        failures().await >= expected_failures
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= hello_timeout && waited < timeout,
        "dropped after {waited:?} (hello timeout {hello_timeout:?})"
    );
    if ctx.is_sim() {
        assert!(
            waited <= hello_timeout + Duration::from_millis(100),
            "{waited:?}"
        );
    }
    let (got, _) = read_to_end(&ctx, &mut late_silent).await;
    assert!(got.is_empty(), "the silent connection got {got:?}");
    no_new_session("the stalled connections");
    pings_flow("the timeouts").await;
    raws.extend([silent, after_hello, second_hello, over_cap, late_silent]);

    stop.store(true, SeqCst);
    let sent = pinger.await;
    ctx.wait_for("every ping echoed", || {
        ctx.client.msgs(good.id()).len() as u64 == sent
    })
    .await;
    assert_eq!(ctx.client.msgs(good.id()), (0..sent).collect::<Vec<_>>());
    assert_eq!(ctx.client.closed(good.id()), None);
    assert_eq!(ctx.server.closed(good_srv), None);
    let st = ctx.server.status().await;
    assert_eq!(st.handshake_failures, expected_failures, "{st}");
    assert_eq!(
        (
            st.handshakes,
            st.accepted,
            st.refused,
            st.handshakes_refused
        ),
        (1, 1, 0, 2),
        "{st}"
    );
    assert_eq!(st.live(), 1, "{st}");
    let c = ctx.client.status().await;
    // The refused client's handshake did not fail: it was refused (a failed connect).
    assert_eq!((c.handshakes, c.handshake_failures), (1, 0), "{c}");
    assert_eq!(c.connect_failures, 1, "{c}");

    // With its handshake slots free again, the listener admits a real client.
    let late = ctx.connect().await;
    let late_srv = server_session(&ctx, 1).await;
    round_trip(&ctx, &late, 1).await;
    close_client_session(&ctx, &late, late_srv).await;
    close_client_session(&ctx, &good, good_srv).await;
    drop(raws);
    ctx.assert_no_leaks().await;
    let st = ctx.server.status().await;
    assert_eq!((st.handshakes, st.accepted), (2, 2), "{st}");
    assert_eq!(st.closed(CloseKind::Peer), 2, "{st}");
    assert_eq!(st.closes.iter().map(|(_, n)| n).sum::<u64>(), 2, "{st}");
}
