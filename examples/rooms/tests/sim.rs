//! The room server under laxsim, written only against the public APIs of laxnet and
//! laxnet-sim: one server, three members that join rooms, talk, leave, and reconnect when
//! their session is lost, under socket faults, partitions, holds, latency spikes and server
//! crashes. laxsim checks the lifecycle of every session; the test adds the server's own
//! invariant (room lists and members agree) and coverage goals.
//!
//! `cargo test -p laxnet-rooms --features planted-bug` plants the bug of `src/lib.rs`; then
//! this test fails and prints the failing seed and the command that replays it.

use std::time::Duration;

use laxnet::Config;
use laxnet_rooms::{RoomServer, talk};
use laxnet_sim::{Broken, Faults, Sim};

const ROOMS: [&str; 3] = ["lobby", "games", "music"];

fn rooms_sim(seeds: std::ops::Range<u64>) -> Sim {
    let mut sim = Sim::new("rooms")
        .server("rooms", |ctx| async move {
            let svc = ctx.service(Config::default());
            let (server, _acceptor) = RoomServer::start(&svc, "0.0.0.0:7000").await?;
            let s = server.clone();
            ctx.always("room lists and members agree", move || {
                s.check().map_err(|(what, id)| Broken::new(what).session(id))
            });
            // Dropping memberships when a session closes is the path worth covering.
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ctx.sometimes("membership dropped on close", server.dropped_on_close() > 0);
            }
        })
        .faults(Faults::profile("everything").expect("a known profile"))
        .seeds(seeds)
        .sometimes("a member reconnected")
        .sometimes("a member left a room")
        .sometimes("membership dropped on close");
    for (i, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        sim = sim.client(name, move |ctx| async move {
            let svc = ctx.service(Config::default());
            // Each member joins two of the rooms, drawn from the seed.
            let mut rng = ctx.rng(0);
            let first = rng.below(ROOMS.len());
            let second = (first + 1 + rng.below(ROOMS.len() - 1)) % ROOMS.len();
            let rooms = [ROOMS[first].to_string(), ROOMS[second].to_string()];
            ctx.log(format!("member {i} joins {rooms:?}"));
            let t = talk(&svc, "rooms:7000", ctx.name(), &rooms, 5, 30, Duration::from_millis(400)).await?;
            ctx.log(format!("{t:?}"));
            ctx.sometimes("a member reconnected", t.reconnects > 0 && t.done);
            ctx.sometimes("a member left a room", t.left > 0);
            Ok(())
        });
    }
    sim
}

/// The suite CI runs (more seeds with `LAXSIM_SEEDS=0..2000`).
#[test]
fn rooms_under_faults() {
    rooms_sim(0..200).run();
}

/// Every seed replays exactly: the test's code is deterministic under the simulator.
#[test]
fn rooms_is_deterministic() {
    let sim = rooms_sim(0..1);
    for seed in [1, 2, 3] {
        if let Err(d) = sim.determinism(seed) {
            panic!("{d}");
        }
    }
}
