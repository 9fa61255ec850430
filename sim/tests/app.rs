//! The library API for users' simulation tests (`laxnet_sim::Sim`), used as a user would:
//! only the public APIs of laxnet and laxnet-sim. Each test that expects a failure checks
//! that it is reported, with the seed's replay command.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // user code: tokio time; a HashMap on purpose

use std::sync::{Arc, Mutex};
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{Config, Protocol, Received, Topic};
use laxnet_sim::{Broken, Faults, Sim};

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct Ping(u32);
laxnet::message!(Ping = 1);

/// An echo server and a client that connects three times; `leak`: the client forgets to
/// close its last session.
fn echo(name: &str, leak: bool) -> Sim {
    Sim::new(name)
        .server("server", |ctx| async move {
            let svc = ctx.service(Config::default());
            ctx.watch::<Ping>(&svc, Protocol::Bits);
            svc.sub(
                Topic::message::<Ping>(Protocol::Bits),
                |m: &Received<Ping>| {
                    let _ = m.session.send(&m.msg);
                },
            )?;
            let _acceptor = svc.accept("0.0.0.0:7000", Protocol::Bits).await?;
            std::future::pending::<()>().await;
            Ok(())
        })
        .client("client", move |ctx| async move {
            let svc = ctx.service(Config::default());
            ctx.watch::<Ping>(&svc, Protocol::Bits);
            let mut inbox = svc.inbox();
            inbox.add(Topic::message::<Ping>(Protocol::Bits))?;
            for round in 0..3u32 {
                let Ok(s) = svc.connect("server:7000", Protocol::Bits).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = s.send(&Ping(round));
                let got = tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await;
                ctx.sometimes("echo came back", matches!(got, Ok(Some(_))));
                if !(leak && round == 2) {
                    s.close();
                }
            }
            Ok(())
        })
        .time_limit(Duration::from_secs(20))
        .drain(Duration::from_secs(1))
}

#[test]
fn echo_passes_under_socket_chaos() {
    let r = echo("echo", false)
        .faults(Faults::profile("socket-chaos").unwrap())
        .seeds(0..20)
        .check();
    println!("{r}");
    assert!(r.passed(), "{r}");
    assert_eq!(r.seeds.len(), 20);
    assert!(r.seeds.iter().map(|s| s.sessions).sum::<u64>() >= 100);
    assert!(r.seeds.iter().map(|s| s.faults).sum::<u64>() > 0);
    assert!(r.goals["echo came back"] > 0);
}

#[test]
fn per_seed_goals_fail_the_seeds_that_miss_them_and_lifecycle_edges_are_goals() {
    // Without faults every echo comes back: at least once per seed holds in every seed, four
    // times (more than the client's three rounds) in none.
    let r = echo("goals", false)
        .seeds(0..4)
        .at_least("echo came back", 1)
        .check();
    assert!(r.passed(), "{r}");
    let r = echo("goals", false)
        .seeds(0..4)
        .at_least("echo came back", 4)
        .check();
    assert_eq!(r.failing().count(), 4, "{r}");
    for s in r.failing() {
        assert!(
            s.failures
                .iter()
                .any(|f| f.contains("coverage goal echo came back reached 3 times, at least 4")),
            "{r}"
        );
    }
    // A lifecycle edge laxsim's oracle counts is a goal like the test's own: socket faults
    // make short reads; a run without faults has none, and the suite says so.
    let r = echo("edges", false)
        .faults(Faults::profile("socket-chaos").unwrap())
        .seeds(0..4)
        .sometimes("short-read")
        .check();
    assert!(r.passed() && r.goals["short-read"] > 0, "{r}");
    let r = echo("edges", false)
        .seeds(0..4)
        .sometimes("short-read")
        .check();
    assert_eq!(r.missing_goals(), vec!["short-read"], "{r}");
}

#[test]
fn a_session_left_open_is_reported_with_a_replay_command() {
    let r = echo("leaky", true).seeds(0..3).check();
    assert!(!r.passed());
    let s = r.failing().next().unwrap();
    assert!(
        s.failures.iter().any(|f| f.contains("not quiescent")),
        "{r}"
    );
    assert!(
        r.replay_command(s.seed)
            .starts_with(&format!("LAXSIM_SEED={} cargo test", s.seed))
    );
}

#[test]
fn a_broken_user_invariant_fails_the_seed_and_names_the_session() {
    // The server "forgets" sessions that closed with a reset: its member list keeps them.
    let r = Sim::new("forgetful")
        .server("server", |ctx| async move {
            let svc = ctx.service(Config::default());
            let members: Arc<Mutex<Vec<laxnet::SessionRef>>> = Arc::default();
            let m = members.clone();
            svc.sub(
                Topic::sessions(Protocol::Bits),
                move |ev: &laxnet::SessionEvent| {
                    let mut m = m.lock().unwrap();
                    match ev {
                        laxnet::SessionEvent::Opened { session, .. } => m.push(session.clone()),
                        laxnet::SessionEvent::Closed { id, reason }
                            if *reason != laxnet::CloseReason::Local =>
                        {
                            m.retain(|s| s.id() != *id)
                        }
                        _ => {}
                    }
                },
            )?;
            ctx.always("members are open sessions", move || {
                match members.lock().unwrap().iter().find(|s| !s.is_open()) {
                    Some(s) => Err(Broken::new(format!("{} is closed", s.id())).session(s.id())),
                    None => Ok(()),
                }
            });
            let _acceptor = svc.accept("0.0.0.0:7000", Protocol::Bits).await?;
            // The server closes every session after a while: the path the bug is on.
            loop {
                tokio::time::sleep(Duration::from_millis(30)).await;
                for s in svc.sessions() {
                    if let Some(r) = svc.acquire(s.id) {
                        r.close();
                    }
                }
            }
        })
        .client("client", |ctx| async move {
            let svc = ctx.service(Config::default());
            if let Ok(s) = svc.connect("server:7000", Protocol::Bits).await {
                let _ = s.closed().await;
            }
            Ok(())
        })
        .seeds(0..2)
        .check();
    assert!(!r.passed());
    let f = &r.failing().next().unwrap().failures[0];
    assert!(
        f.contains("invariant \"members are open sessions\" failed"),
        "{f}"
    );
    assert!(f.contains("last events of"), "{f}");
    assert!(f.contains("CLOSED: closed locally"), "{f}");
}

#[test]
fn a_crashed_server_runs_again_and_its_sessions_are_accounted() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s2 = starts.clone();
    let r = Sim::new("crashy")
        .server("server", move |ctx| {
            s2.lock().unwrap().push((ctx.seed(), ctx.incarnation()));
            async move {
                let svc = ctx.service(Config::default());
                let _acceptor = svc.accept("0.0.0.0:7000", Protocol::Bits).await?;
                std::future::pending::<()>().await;
                Ok(())
            }
        })
        .client("client", |ctx| async move {
            let mut config = Config::default();
            config.idle_timeout = Some(Duration::from_millis(300));
            let svc = ctx.service(config);
            for _ in 0..20 {
                match svc.connect("server:7000", Protocol::Bits).await {
                    Ok(s) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        s.close();
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            Ok(())
        })
        .faults(
            Faults::profile("crashes")
                .unwrap()
                .window(Duration::from_millis(1500)),
        )
        .seeds(0..4)
        .check();
    assert!(r.passed(), "{r}");
    let starts = starts.lock().unwrap();
    for seed in 0..4 {
        assert!(
            starts.iter().any(|&(s, inc)| s == seed && inc == 1),
            "seed {seed}: no restart in {starts:?}"
        );
    }
}

#[test]
fn unseeded_hashmap_order_is_caught_by_the_determinism_guard() {
    let sim = Sim::new("hashy")
        .server("server", |ctx| async move {
            let svc = ctx.service(Config::default());
            let _acceptor = svc.accept("0.0.0.0:7000", Protocol::Bits).await?;
            std::future::pending::<()>().await;
            Ok(())
        })
        .client("client", |ctx| async move {
            // A randomly seeded HashMap decides the order of the log lines.
            let mut m = std::collections::HashMap::new();
            for k in 0..16u32 {
                m.insert(k, k);
            }
            for k in m.keys() {
                ctx.log(format!("key {k}"));
            }
            Ok(())
        });
    let d = sim.determinism(5).unwrap_err();
    assert!(d.contains("is not deterministic"), "{d}");
    assert!(d.contains("HashMap"), "{d}");
    assert!(d.contains("first run:"), "{d}");
    // The same test without the HashMap replays.
    assert!(echo("echo", false).determinism(5).is_ok());
}

#[test]
fn profiles_and_scenario_files_load() {
    for p in laxnet_sim::app::faults::PROFILES {
        Faults::profile(p).unwrap();
    }
    let f = Faults::from_scenario_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/partition-heartbeat.toml"
    ))
    .unwrap();
    assert_eq!(f.name(), "partition-heartbeat");
}

/// A server that drops a member only when its session ends in an orderly close: one cut by
/// a reset stays a member. Socket faults (resets) are what break it.
fn reset_forgetful() -> Sim {
    Sim::new("reset-forgetful")
        .server("server", |ctx| async move {
            let svc = ctx.service(Config::default());
            ctx.watch::<Ping>(&svc, Protocol::Bits);
            let members: Arc<Mutex<Vec<laxnet::SessionRef>>> = Arc::default();
            let m = members.clone();
            svc.sub(
                Topic::sessions(Protocol::Bits),
                move |ev: &laxnet::SessionEvent| {
                    let mut m = m.lock().unwrap();
                    match ev {
                        laxnet::SessionEvent::Opened { session, .. } => m.push(session.clone()),
                        laxnet::SessionEvent::Closed { id, reason }
                            if !matches!(
                                reason,
                                laxnet::CloseReason::Reset | laxnet::CloseReason::Io(_)
                            ) =>
                        {
                            m.retain(|s| s.id() != *id)
                        }
                        _ => {}
                    }
                },
            )?;
            ctx.always("members are open sessions", move || {
                match members.lock().unwrap().iter().find(|s| !s.is_open()) {
                    Some(s) => Err(Broken::new(format!("{} is closed", s.id())).session(s.id())),
                    None => Ok(()),
                }
            });
            let _acceptor = svc.accept("0.0.0.0:7000", Protocol::Bits).await?;
            std::future::pending::<()>().await;
            Ok(())
        })
        .client("client", |ctx| async move {
            let svc = ctx.service(Config::default());
            for round in 0..20u32 {
                let Ok(s) = svc.connect("server:7000", Protocol::Bits).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                for i in 0..5 {
                    let _ = s.send(&Ping(round * 10 + i));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.close();
            }
            Ok(())
        })
        .faults(Faults::profile("socket-chaos").unwrap())
        .time_limit(Duration::from_secs(20))
        .drain(Duration::from_secs(1))
}

#[test]
fn a_shrunk_schedule_has_fewer_faults_and_fails_the_same_way() {
    let sim = reset_forgetful();
    let r = reset_forgetful().seeds(0..30).check();
    let seed = r
        .failing()
        .next()
        .unwrap_or_else(|| panic!("no seed failed: {r}"))
        .seed;
    let s = sim.shrink(seed, 300, |_| {}).unwrap();
    println!(
        "seed {seed}: {} -> {} faults in {} runs",
        s.original,
        s.schedule.faults.len(),
        s.runs
    );
    assert!(s.schedule.faults.len() < s.original, "nothing shrunk");
    assert!(
        s.signature
            .contains("invariant \"members are open sessions\""),
        "{}",
        s.signature
    );
    // The shrunk schedule, replayed (also through its JSON file form), fails the same way.
    let text = serde_json::to_string(&s.schedule).unwrap();
    let back = laxnet_sim::app::Schedule::parse(&text).unwrap();
    let o = sim.run_schedule(&back);
    assert!(
        o.violations
            .iter()
            .any(|v| laxnet_sim::shrink::signature(v) == s.signature),
        "{:?}",
        o.violations
    );
    // Without any socket fault the same seed passes: the faults left are what it needs.
    let mut none = back.clone();
    none.faults
        .retain(|f| !matches!(f, laxnet_sim::app::Fault::Io { .. }));
    assert!(sim.run_schedule(&none).passed());
}
