//! The two backends a scenario runs on: real loopback sockets ([`run_tokio`]) and the turmoil
//! simulator ([`run_turmoil`], once per seed: `main.rs` lists the seeds).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, UNIX_EPOCH};

use laxnet::Protocol;

use super::ctx::Ctx;
use super::host::Host;

/// Where a run's hosts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Tokio,
    Turmoil { seed: u64 },
}

/// Runs `body` over `protocol` on real loopback sockets: server and client each on a Tokio
/// runtime of their own (a 2-worker multi-thread runtime for the server, a current-thread one
/// for the client).
pub(crate) fn run_tokio<F, Fut>(protocol: Protocol, body: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = ()>,
{
    let ctx = Ctx::new(Backend::Tokio, protocol);
    ctx.server.spawn_thread(2);
    ctx.client.spawn_thread(0);
    // Stops the host threads even if the scenario panics.
    struct Teardown(Host, Host);
    impl Drop for Teardown {
        fn drop(&mut self) {
            self.0.mark_down();
            self.1.mark_down();
        }
    }
    let _teardown = Teardown(ctx.server.clone(), ctx.client.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime");
    rt.block_on(async {
        let c = ctx.clone();
        c.server.wait_up(1, &ctx).await;
        c.client.wait_up(1, &ctx).await;
        tokio::time::timeout(Duration::from_secs(90), body(ctx.clone()))
            .await
            .expect("scenario timed out");
    });
}

/// Runs `body` over `protocol` inside a turmoil simulation with `seed`: hosts "server" and
/// "client", the body as client "test", and a step loop that honours crash/restart requests.
pub(crate) fn run_turmoil<F, Fut>(seed: u64, protocol: Protocol, body: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(Duration::from_secs(120))
        .tcp_capacity(4096)
        .build();
    let ctx = Ctx::new(Backend::Turmoil { seed }, protocol);
    for h in [ctx.server.clone(), ctx.client.clone()] {
        sim.host(h.name(), move || h.clone().run());
    }
    let fut = body(ctx.clone());
    let c = ctx.clone();
    sim.client("test", async move {
        c.server.wait_up(1, &c).await;
        c.client.wait_up(1, &c).await;
        fut.await;
        Ok(())
    });
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => panic!("seed {seed}: simulation failed: {e}"),
        }
        let ctl = &ctx.sim;
        if ctl.crash_client.swap(false, SeqCst) {
            sim.crash("client");
            ctx.client.mark_down();
            ctl.done.store(true, SeqCst);
        }
        if ctl.restart_client.swap(false, SeqCst) {
            sim.bounce("client");
            ctl.done.store(true, SeqCst);
        }
    }
}
