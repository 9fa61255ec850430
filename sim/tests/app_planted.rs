//! The lifecycle checks laxsim applies to users' sessions (`laxnet_sim::Sim`) catch planted
//! library bugs: a close reason that does not reach the peer, a heartbeat that fires while
//! traffic arrives. Each case also runs without the bug and must pass. (Feature
//! `planted-bugs`.)
#![cfg(feature = "planted-bugs")]
#![allow(clippy::disallowed_methods)] // user code: tokio time, which turmoil simulates

use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::planted::Bug;
use laxnet::{Config, Encryption, KeyPair, Protocol, Received, Topic};
use laxnet_sim::{Report, Sim};

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct Ping(u32);
laxnet::message!(Ping = 1);

/// An echo server; a client that connects, pings every 50 ms for `pings` rounds, and closes.
/// `client_config` is the client's `Config`; `protocol` both sides'.
fn echo(
    name: &str,
    protocol: Protocol,
    server_config: Config,
    client_config: Config,
    pings: u32,
) -> Sim {
    Sim::new(name)
        .server("server", move |ctx| {
            let config = server_config.clone();
            async move {
                let svc = ctx.service(config);
                svc.sub(Topic::message::<Ping>(protocol), |m: &Received<Ping>| {
                    let _ = m.session.send(&m.msg);
                })?;
                let _acceptor = svc.accept("0.0.0.0:7000", protocol).await?;
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .client("client", move |ctx| {
            let config = client_config.clone();
            async move {
                let svc = ctx.service(config);
                ctx.watch::<Ping>(&svc, protocol);
                let s = svc.connect("server:7000", protocol).await?;
                for i in 0..pings {
                    if s.send(&Ping(i)).is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                s.close();
                Ok(())
            }
        })
        .time_limit(Duration::from_secs(10))
        .drain(Duration::from_secs(2))
        .seeds(0..4)
}

fn failures(r: &Report) -> String {
    r.failing()
        .flat_map(|s| s.failures.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn planted(mut config: Config, bug: Bug) -> Config {
    config.planted = Some(bug);
    config
}

#[test]
fn a_close_reason_that_never_reaches_the_peer_is_caught() {
    let clean = echo(
        "reasons",
        Protocol::Bits,
        Config::default(),
        Config::default(),
        3,
    )
    .check();
    assert!(clean.passed(), "{clean}");
    // The client's close sends no reason: the server hears the end of stream alone.
    let r = echo(
        "reason-not-sent",
        Protocol::Bits,
        Config::default(),
        planted(Config::default(), Bug::ReasonNotSent),
        3,
    )
    .check();
    assert!(!r.passed(), "{r}");
    let f = failures(&r);
    assert!(
        f.contains("reports \"closed by peer\" (no reason), but its peer"),
        "{f}"
    );
    assert!(f.contains("closed with \"closed locally\""), "{f}");
}

#[test]
fn a_heartbeat_that_fires_while_traffic_arrives_is_caught() {
    let key = KeyPair::generate();
    let server = Config::default().with_encryption(Encryption::server(key.clone()));
    let client = Config::default()
        .with_encryption(Encryption::client(key.public()))
        .with_heartbeat(Duration::from_millis(300));
    // 20 echoes 50 ms apart: the client never goes 300 ms without hearing from the server.
    let clean = echo(
        "heartbeat",
        Protocol::BitsHpke,
        server.clone(),
        client.clone(),
        20,
    )
    .check();
    assert!(clean.passed(), "{clean}");
    // Reads of records do not refresh the heartbeat clock: it fires 300 ms in.
    let r = echo(
        "stale-heartbeat",
        Protocol::BitsHpke,
        server,
        planted(client, Bug::StaleHeartbeatOnRecords),
        20,
    )
    .check();
    assert!(!r.passed(), "{r}");
    let f = failures(&r);
    assert!(
        f.contains("closed by heartbeat (timeout 300ms) although it read bytes"),
        "{f}"
    );
}
