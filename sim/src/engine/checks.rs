//! The engine's checks of a run: the user's `always` invariants, refs and ids after `Closed`,
//! close reasons across each connection, quiescence, and the end of the run.

use laxnet::{CloseCode, CloseReason, Service, SessionRef};

use crate::engine::World;
use crate::log::fmt_id;
use crate::state::lock;

/// The services of the current incarnations, with their numbers and hosts.
pub(crate) fn live_services(world: &World) -> Vec<(u32, u16, Service)> {
    world
        .app()
        .services
        .iter()
        .filter_map(|s| s.svc.clone().map(|svc| (s.no, s.host, svc)))
        .collect()
}

/// `None` when every service is back to empty (no session, pooled buffer or handshake) and
/// every session the oracle saw open has its `Closed`; else what is left.
pub(crate) fn quiet(world: &World) -> Option<(Option<u16>, String)> {
    for (_, h, svc) in live_services(world) {
        let s = svc.status();
        if s.live() != 0 || s.pool.in_use_bytes != 0 || s.handshaking != 0 {
            let ids: Vec<String> = svc
                .sessions()
                .iter()
                .map(|i| format!("{} ({:?})", i.id, i.state))
                .collect();
            let name = lock(&world.shared).hosts[h as usize].name.clone();
            return Some((
                Some(h),
                format!(
                    "{name} has {} live sessions [{}], {} pooled bytes in use, {} handshakes in progress",
                    s.live(),
                    ids.join(", "),
                    s.pool.in_use_bytes,
                    s.handshaking
                ),
            ));
        }
    }
    let app = world.app();
    if let Some((&(_, id), _)) = app.open.iter().next() {
        return Some((None, format!("{} has no Closed yet", fmt_id(id))));
    }
    None
}

/// Runs the user's `always` checks (outside the locks); the first failure of each is
/// reported, once.
pub(crate) fn run_checks(world: &World, at_end: bool) {
    let checks: Vec<(u16, usize, String, crate::engine::world::Check)> = {
        let app = world.app();
        app.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.down)
            .flat_map(|(h, host)| {
                host.checks
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.2)
                    .map(move |(i, c)| (h as u16, i, c.0.clone(), c.1.clone()))
            })
            .collect()
    };
    for (h, i, name, check) in checks {
        if let Err(b) = check() {
            if let Some(c) = world.app().hosts[h as usize].checks.get_mut(i) {
                c.2 = true;
            }
            let svc = {
                let app = world.app();
                app.services
                    .iter()
                    .rev()
                    .find(|s| s.host == h && s.svc.is_some())
                    .map(|s| s.no)
            };
            let when = if at_end { " at the end of the run" } else { "" };
            world.fail(
                Some(h),
                svc,
                &b.sessions,
                format!("invariant \"{name}\" failed{when}: {}", b.what),
            );
        }
    }
}

/// Refs and ids after `Closed`: a closed session's ref says it is closed, with the reason
/// `Closed` carried, and its id resolves (`Service::acquire`) to nothing, unless a newer
/// session the oracle saw open carries the same id again.
pub(crate) fn probe_closed(world: &World) {
    type Probe = (usize, u16, u32, Option<Service>, SessionRef, CloseReason);
    let probes: Vec<Probe> = {
        let app = world.app();
        let st = lock(&world.shared);
        app.followed
            .iter()
            .filter_map(|(&idx, f)| {
                let s = &st.sessions[idx];
                let reason = s.reason.clone()?;
                let svc = app
                    .services
                    .iter()
                    .find(|x| x.no == f.svc)
                    .and_then(|x| x.svc.clone());
                Some((idx, s.host, f.svc, svc, f.sref.clone(), reason))
            })
            .collect()
    };
    for (idx, h, no, svc, sref, reason) in probes {
        let id = sref.id();
        let mut bad = Vec::new();
        if sref.is_open() {
            bad.push(format!("a ref to {id} says it is open after its Closed"));
        }
        if sref.close_reason().as_ref() != Some(&reason) {
            bad.push(format!(
                "a ref to {id} reports close reason {:?} after Closed said \"{reason}\"",
                sref.close_reason()
            ));
        }
        if let Some(svc) = svc
            && svc.acquire(id).is_some()
            && !world.app().open.contains_key(&(no, id.get()))
        {
            bad.push(format!(
                "acquire({id}) resolves after its Closed, and no newer session with that id opened"
            ));
        }
        for what in bad {
            lock(&world.shared).violation(Some(h), Some(idx), what);
        }
    }
}

/// The code (and detail) a session closing for `r` sends its peer, and whether it surely
/// arrives (a clean close flushes it before the end of stream; the abortive ones send it at
/// best effort before dropping the connection). `None`: it sends none.
fn code_sent(r: &CloseReason) -> Option<(CloseCode, u16, bool)> {
    Some(match r {
        CloseReason::Local => (CloseCode::Normal, 0, true),
        CloseReason::Shutdown => (CloseCode::Shutdown, 0, true),
        CloseReason::Heartbeat => (CloseCode::Heartbeat, 0, false),
        CloseReason::Idle => (CloseCode::Idle, 0, false),
        CloseReason::Protocol(v) => (CloseCode::Protocol, v.detail(), false),
        CloseReason::Panic => (CloseCode::Panic, 0, false),
        _ => return None,
    })
}

/// A session's stream was cut or spoiled by a fault (a reset or I/O error, a crash, a
/// ciphertext fault): what its peer reports need not match what it sent.
fn faulted(s: &crate::state::streams::StreamInfo) -> bool {
    s.reset || s.io_error.is_some() || s.crashed || s.ct.is_some() || s.landed.is_some()
}

/// Close reasons across a connection: when neither end was cut by a fault, the reason one
/// side reports for the peer's close matches what the peer sent. A peer that closed cleanly
/// (`close()`, `close_with`, shutdown) sends its reason before its end of stream, so a side
/// that read everything the peer wrote reports `Peer` with the peer's code, never
/// `PeerClosed`; and a side that reports `Peer` reports the code of the peer's own reason.
fn check_reasons(world: &World) {
    let mut bad = Vec::new();
    {
        let app = world.app();
        let st = lock(&world.shared);
        for &idx in app.followed.keys() {
            let a = &st.sessions[idx];
            let (Some(ra), Some(sa)) = (a.reason.as_ref(), a.stream) else {
                continue;
            };
            let sa_info = &st.streams[sa as usize];
            let Some(sb) = sa_info.peer else { continue };
            let sb_info = &st.streams[sb as usize];
            let Some(b_idx) = sb_info.sess else { continue };
            let b = &st.sessions[b_idx];
            let Some(rb) = b.reason.as_ref() else {
                continue;
            };
            if faulted(sa_info) || faulted(sb_info) {
                continue;
            }
            let Some((code, detail, sure)) = code_sent(rb) else {
                continue;
            };
            let peer = format!("{} on {}", fmt_id(b.id), st.hosts[b.host as usize].name);
            match ra {
                CloseReason::PeerClosed if sure && sa_info.read_total >= sb_info.written => {
                    bad.push((
                        a.host,
                        idx,
                        format!(
                            "{} reports \"{ra}\" (no reason), but its peer {peer} closed with \"{rb}\", which sends its reason ({code:?}), and nothing it wrote was lost",
                            fmt_id(a.id)
                        ),
                    ));
                }
                CloseReason::Peer(pc) if pc.code != code || pc.detail != detail => {
                    bad.push((
                        a.host,
                        idx,
                        format!(
                            "{} reports \"{ra}\", but its peer {peer} closed with \"{rb}\", which sends {code:?}",
                            fmt_id(a.id)
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
    for (h, idx, what) in bad {
        lock(&world.shared).violation(Some(h), Some(idx), what);
    }
}

/// The end of the run: sessions never closed, panics counted by a service, refs and ids,
/// close reasons across each connection.
pub(crate) fn end_checks(world: &World) {
    probe_closed(world);
    check_reasons(world);
    let never: Vec<(usize, u16, u32)> = {
        let app = world.app();
        let st = lock(&world.shared);
        app.open
            .values()
            .map(|&i| (i, st.sessions[i].host, st.sessions[i].id))
            .collect()
    };
    for (idx, h, id) in never {
        lock(&world.shared).violation(
            Some(h),
            Some(idx),
            format!("session {} never got a Closed event", fmt_id(id)),
        );
    }
    for (_, h, svc) in live_services(world) {
        let s = svc.status();
        if s.panics != 0 {
            world.fail(
                Some(h),
                None,
                &[],
                format!(
                    "the service counted {} panics (in a subscriber or a service task)",
                    s.panics
                ),
            );
        }
    }
}
