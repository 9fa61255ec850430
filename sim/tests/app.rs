//! The library API for users' simulation tests (`laxnet_sim::Sim`), used as a user would:
//! only the public APIs of laxnet and laxnet-sim.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{Config, Protocol, Received, Topic};
use laxnet_sim::{Broken, Faults, Sim};

#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
struct Ping(u32);
laxnet::message!(Ping = 1);

fn echo(name: &str) -> Sim {
    Sim::new(name)
        .server("server", |ctx| async move {
            let svc = ctx.service(Config::default());
            ctx.watch::<Ping>(&svc, Protocol::Bits);
            svc.sub(Topic::message::<Ping>(Protocol::Bits), |m: &Received<Ping>| {
                let _ = m.session.send(&m.msg);
            })?;
            let _acceptor = svc.accept("0.0.0.0:7000", Protocol::Bits).await?;
            std::future::pending::<()>().await;
            Ok(())
        })
        .client("client", |ctx| async move {
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
                let _ = tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await;
                ctx.sometimes("echo came back", true);
                s.close();
            }
            Ok(())
        })
}

#[test]
fn echo_passes_under_socket_chaos() {
    let r = echo("echo")
        .faults(Faults::profile("socket-chaos").unwrap())
        .seeds(0..20)
        .check();
    println!("{r}");
    assert!(r.passed());
    assert_eq!(r.seeds.len(), 20);
    assert!(r.seeds.iter().map(|s| s.sessions).sum::<u64>() > 60);
}
