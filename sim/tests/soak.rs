//! `laxsim soak` in small: a few hundred sessions on loopback for a few seconds must pass every
//! check, and the checks must fire: a planted library bug that drops queued messages on close
//! (feature `planted-bugs`) must fail the loss check, a leak must fail the plateau check, and
//! the server must also work as a child process.
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use laxnet_sim::soak::{ServerPlace, SoakOpts, SoakReport, soak};

/// The soaks measure this process's RSS: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn small() -> SoakOpts {
    SoakOpts {
        sessions: 300,
        duration: Duration::from_secs(4),
        rate: 5.0,
        churn: 0.5,
        destroyers: 5,
        hostile_every: Some(Duration::from_millis(100)),
        interval: Duration::from_millis(250),
        ramp: Duration::from_millis(500),
        server: ServerPlace::InProcess,
        progress: false,
        ..SoakOpts::default()
    }
}

fn run(opts: &SoakOpts) -> SoakReport {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    soak(opts)
}

#[test]
fn a_short_soak_passes_every_check() {
    let r = run(&small());
    assert!(r.passed(), "{:#?}\n{:#?}", r.failures, r.first_violations);
    assert!(r.sent > 1000 && r.received == r.sent, "{r:?}");
    assert!(r.opened > 300 && r.opened == r.closed, "no churn: {r:?}");
    assert!(r.destroyed > 0, "no reset session: {r:?}");
    assert!(r.hostile_started > 10 && r.hostile_closed == r.hostile_started);
    assert!(r.hostile_ok.len() >= 4, "few attacks: {:?}", r.hostile_ok);
    // The plateau rule was applied, not skipped for want of samples.
    assert!(
        r.plateaus.iter().all(|p| p.ok == Some(true)),
        "{:?}",
        r.plateaus
    );
}

#[test]
fn an_encrypted_short_soak_passes() {
    let r = run(&SoakOpts {
        protocol: laxnet::Protocol::BitsHpke,
        hostile_every: Some(Duration::from_millis(50)),
        // Every client connects from 127.0.0.1: with the default per-source admission limit
        // (16 handshakes in progress) a burst of connects gets handshakes evicted after the
        // client's `connect` returned (docs/simulation-ci.md, "Soak", findings).
        server_handshakes: Some(4096),
        // Fewer connects, spread wider: a debug build's handshakes are slow.
        sessions: 100,
        ramp: Duration::from_secs(1),
        ..small()
    });
    assert!(r.passed(), "{:#?}\n{:#?}", r.failures, r.first_violations);
    assert!(r.received > 200 && r.connect_failures == 0, "{r:?}");
    assert!(
        r.handshake_failures > 0,
        "no attack on the handshake: {r:?}"
    );
}

#[test]
fn a_leak_fails_the_plateau_check() {
    // 256 KiB kept per ended session: at ~150 ends a second, ~40 MiB/s.
    let r = run(&SoakOpts {
        leak_per_session: 256 << 10,
        hostile_every: None,
        destroyers: 0,
        ..small()
    });
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("RSS (client process) did not plateau")),
        "{:#?}\n{:?}",
        r.failures,
        r.plateaus
    );
}

#[cfg(feature = "planted-bugs")]
#[test]
fn a_close_that_drops_queued_messages_fails_the_loss_check() {
    let r = run(&SoakOpts {
        plant: Some("no-flush-on-close".into()),
        hostile_every: None,
        // Bursts: the last messages are still queued when `close()` comes.
        rate: 50.0,
        ..small()
    });
    assert!(
        r.failures
            .iter()
            .any(|f| f.contains("lost messages on clean closes")),
        "{:#?}",
        r.failures
    );
}

#[test]
fn the_server_runs_as_a_child_process() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_laxsim"))
        .args([
            "soak",
            "--sessions",
            "200",
            "--duration",
            "3s",
            "--server",
            "child",
            "--hostile-every",
            "200ms",
            "--json",
            "--no-progress",
        ])
        .output()
        .expect("laxsim runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
    assert_eq!(v["server_child"], true);
    assert!(v["samples"].as_array().is_some_and(|s| s.len() >= 2));
    assert!(v["samples"][1]["rss_server"].as_u64() > Some(0), "{text}");
    assert!(v["received"].as_u64() > Some(0));
}
