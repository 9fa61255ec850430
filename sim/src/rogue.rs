//! Hostile hosts: they connect to the servers with raw turmoil sockets (not through laxnet)
//! and send what no honest peer sends — frames over the size limit or too short to hold an
//! id, unknown message ids, bodies that do not decode, streams that end inside a frame, a
//! frame of exactly the maximum size; on "bits-hpke", garbage and truncated hellos, silent
//! connections and connections that trickle a byte at a time.
//!
//! Each connection carries one [`Attack`], and the oracle knows what it must cause: on
//! "bits", the server's session for it closes with exactly the `ProtocolViolation` the
//! attack was built to trigger (once the server has read that far), after delivering only
//! the valid frames before it; on "bits-hpke", no session ever opens for it, and the server's
//! handshake admission holds (see [`crate::state::State::check_admission`]). Every other
//! session must be unaffected, which the rest of the oracle checks as usual.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // rogues pace themselves with tokio's (virtual) timers

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::attack::{Attack, Plan, plan};
use crate::engine::{BoxError, Ctx};
use crate::rng::Rng;
use crate::state::{Shared, lock};
use crate::workload::PORT;

/// The software of a rogue host (an engine host function): until the workload phase ends, opens hostile connections
/// to the servers in turn, at most `parallel` at once, then waits for them to end.
pub async fn rogue_main(ctx: Ctx) -> Result<(), BoxError> {
    let (shared, h, seed) = (ctx.shared().clone(), ctx.host(), ctx.seed());
    let (cfg, servers, max_frame, end_us) = {
        let st = lock(&shared);
        (
            st.sc.rogue.clone(),
            st.sc.hosts.servers,
            st.sc.server.service.max_frame,
            st.sc.duration_ms * 1000,
        )
    };
    let mut rng = Rng::new(seed, 0x524F_4755 + h as u64);
    let attacks: Vec<Attack> = cfg.attacks.iter().filter_map(|a| a.parse().ok()).collect();
    let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut target = 0u16;
    loop {
        let gap = rng.range(cfg.connect_gap_ms[0], cfg.connect_gap_ms[1]);
        tokio::time::sleep(Duration::from_millis(gap.max(1))).await;
        if lock(&shared).now_us >= end_us {
            break;
        }
        if active.load(std::sync::atomic::Ordering::Relaxed) >= cfg.parallel {
            continue;
        }
        let attack = attacks[rng.below(attacks.len())];
        let p = plan(attack, h, max_frame, &mut rng);
        let hold = Duration::from_millis(rng.range(cfg.hold_ms[0], cfg.hold_ms[1]));
        let addr = format!("server{target}:{PORT}");
        target = (target + 1) % servers.max(1);
        active.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (shared, active) = (shared.clone(), active.clone());
        tokio::spawn(async move {
            one(&shared, h, addr, p, hold).await;
            active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    // Connections still held end with the host's last hold time.
    while active.load(std::sync::atomic::Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// One hostile connection: connect, send the plan, then read (and drop) whatever the server
/// says until it closes the connection or `hold` has passed.
async fn one(shared: &Shared, h: u16, addr: String, p: Plan, hold: Duration) {
    let deadline = tokio::time::Instant::now() + hold;
    let connect = turmoil::net::TcpStream::connect(addr);
    let Ok(Ok(mut s)) = tokio::time::timeout_at(deadline, connect).await else {
        return;
    };
    let (Ok(local), Ok(peer)) = (s.local_addr(), s.peer_addr()) else {
        return;
    };
    let stream = lock(shared).rogue_stream(h, local, peer, &p);
    let sent = async {
        match p.trickle {
            Some(gap) => {
                for b in &p.bytes {
                    s.write_all(std::slice::from_ref(b)).await?;
                    tokio::time::sleep(gap).await;
                }
            }
            None => s.write_all(&p.bytes).await?,
        }
        if p.fin {
            s.shutdown().await?;
        }
        std::io::Result::Ok(())
    };
    if tokio::time::timeout_at(deadline, sent).await.is_ok() {
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout_at(deadline, async {
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
    lock(shared).rogue_done(stream);
}
