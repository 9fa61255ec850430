//! The counter under laxsim, written only against the public APIs of laxnet and laxnet-sim
//! (this crate is outside the laxnet workspace, so nothing else is reachable): one server, two
//! clients that connect, add, check the totals and close, under socket faults.
// User code on a simulated host takes time from tokio, which turmoil simulates.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use laxnet::{Config, Event, Topic};
use laxnet_sim::{Broken, Faults, Sim};
use outside_user::{Add, Counter, PROTOCOL, Total};

#[test]
fn counter_under_socket_chaos() {
    let mut sim = Sim::new("counter")
        .server("counter", |ctx| async move {
            let svc = ctx.service(Config::default());
            ctx.watch::<Add>(&svc, PROTOCOL);
            let counter = Counter::serve(&svc)?;
            ctx.always("tallies belong to open sessions", move || {
                counter
                    .check()
                    .map_err(|(what, id)| Broken::new(what).session(id))
            });
            let _acceptor = svc.accept("0.0.0.0:7000", PROTOCOL).await?;
            std::future::pending::<()>().await;
            Ok(())
        })
        .faults(Faults::profile("socket-chaos").expect("a known profile"))
        .seeds(0..30)
        .time_limit(Duration::from_secs(20))
        .drain(Duration::from_secs(2))
        .sometimes("a running total came back");
    for name in ["ann", "ben"] {
        sim = sim.client(name, |ctx| async move {
            let svc = ctx.service(Config::default());
            ctx.watch::<Total>(&svc, PROTOCOL);
            let mut inbox = svc.inbox();
            inbox.add(Topic::message::<Total>(PROTOCOL))?;
            let mut rng = ctx.rng(0);
            for _ in 0..3 {
                let Ok(s) = svc.connect("counter:7000", PROTOCOL).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let (a, b) = (1 + rng.below(10) as u32, 1 + rng.below(10) as u32);
                let _ = s.send(&Add(a));
                let _ = s.send(&Add(b));
                let mut last = None;
                while let Ok(Some(ev)) =
                    tokio::time::timeout(Duration::from_millis(200), inbox.recv()).await
                {
                    // Replies of an earlier session may still wait in the inbox.
                    if let Event::Message(m) = ev
                        && m.session.id() == s.id()
                        && let Ok(t) = m.downcast::<Total>()
                    {
                        last = Some(t.msg.0);
                    }
                    if last == Some(u64::from(a + b)) {
                        break;
                    }
                }
                // Totals count only this session's adds: a reply is `a` or `a + b`.
                ctx.check(
                    "a total counts only this session's adds",
                    last.is_none_or(|t| t == u64::from(a) || t == u64::from(a + b)),
                    || Broken::new(format!("got {last:?} after adding {a} and {b}")),
                );
                ctx.sometimes("a running total came back", last == Some(u64::from(a + b)));
                s.close();
            }
            Ok(())
        });
    }
    sim.run();
}
