//! The network-level plan of a run applied as it goes: partitions, holds, latency spikes,
//! and server crashes and restarts at their planned times.

use std::time::Duration;

use laxnet::Service;

use crate::engine::{Def, World};
use crate::log::Ev;
use crate::schedule::Fault;
use crate::state::lock;

/// One timed step of a network-level plan, as the driver loop applies it.
#[derive(Debug, Clone)]
pub enum Action {
    /// Partition two hosts.
    Partition(String, String),
    /// Repair a partition.
    Repair(String, String),
    /// Hold messages between two hosts.
    Hold(String, String),
    /// Release held messages.
    Release(String, String),
    /// Raise the maximum latency.
    Spike(u64),
    /// Back to the base latency.
    SpikeEnd,
    /// Crash a host.
    Crash(String),
    /// Restart a crashed host.
    Restart(String),
}

/// The plan's faults as timed actions (ms), in time order (plan order breaks ties).
pub fn actions(plan: &[Fault]) -> Vec<(u64, Action)> {
    let mut out = Vec::new();
    for f in plan {
        match f {
            Fault::Partition {
                at_ms,
                dur_ms,
                a,
                b,
            } => {
                out.push((*at_ms, Action::Partition(a.clone(), b.clone())));
                out.push((at_ms + dur_ms, Action::Repair(a.clone(), b.clone())));
            }
            Fault::Hold {
                at_ms,
                dur_ms,
                a,
                b,
            } => {
                out.push((*at_ms, Action::Hold(a.clone(), b.clone())));
                out.push((at_ms + dur_ms, Action::Release(a.clone(), b.clone())));
            }
            Fault::Spike {
                at_ms,
                dur_ms,
                max_ms,
            } => {
                out.push((*at_ms, Action::Spike(*max_ms)));
                out.push((at_ms + dur_ms, Action::SpikeEnd));
            }
            Fault::Crash {
                at_ms,
                down_ms,
                host,
            } => {
                out.push((*at_ms, Action::Crash(host.clone())));
                out.push((at_ms + down_ms, Action::Restart(host.clone())));
            }
            Fault::Latency { .. } | Fault::Io { .. } | Fault::Ct { .. } => {}
        }
    }
    out.sort_by_key(|(t, _)| *t); // stable: plan order breaks ties
    out
}

/// The host index and name of a plan's host (`server0`, `client1`, ...).
fn host_of(def: &Def, plan_name: &str) -> Option<(u16, String)> {
    (0..def.sc.host_count())
        .find(|&i| def.sc.host_name(i) == plan_name)
        .map(|i| (i, def.hosts[i as usize].name.clone()))
}

pub(crate) fn apply(
    sim: &mut turmoil::Sim<'_>,
    def: &Def,
    world: &World,
    act: &Action,
    base_max: u64,
) {
    let net = |world: &World, a: &str, b: &str, what: &'static str, edge: Option<&'static str>| {
        let (Some((ia, _)), Some((ib, _))) = (host_of(def, a), host_of(def, b)) else {
            return;
        };
        let mut st = lock(&world.shared);
        if let Some(e) = edge {
            st.edge(e);
        }
        st.log(
            ia,
            Ev::Net {
                what,
                arg: ib as u64,
            },
        );
    };
    let name = |n: &str| host_of(def, n).map(|(_, s)| s).unwrap_or_default();
    match act {
        Action::Partition(a, b) => {
            sim.partition(name(a).as_str(), name(b).as_str());
            net(world, a, b, "partition", Some("partition"));
        }
        Action::Repair(a, b) => {
            sim.repair(name(a).as_str(), name(b).as_str());
            net(world, a, b, "repair", None);
        }
        Action::Hold(a, b) => {
            sim.hold(name(a).as_str(), name(b).as_str());
            net(world, a, b, "hold", None);
        }
        Action::Release(a, b) => {
            sim.release(name(a).as_str(), name(b).as_str());
            net(world, a, b, "release", Some("hold-release"));
        }
        Action::Spike(max) => {
            sim.set_max_message_latency(Duration::from_millis(*max));
            let mut st = lock(&world.shared);
            st.edge("latency-spike");
            st.log(
                0,
                Ev::Net {
                    what: "spike",
                    arg: *max,
                },
            );
        }
        Action::SpikeEnd => {
            sim.set_max_message_latency(Duration::from_millis(base_max));
            lock(&world.shared).log(
                0,
                Ev::Net {
                    what: "spike-end",
                    arg: base_max,
                },
            );
        }
        Action::Crash(n) => {
            let Some((h, hname)) = host_of(def, n) else {
                return;
            };
            {
                let mut app = world.app();
                if app.hosts[h as usize].down {
                    return;
                }
                app.hosts[h as usize].down = true;
                let mut st = lock(&world.shared);
                st.hosts[h as usize].down = true;
                st.log(h, Ev::Crash);
                // The workload oracle: its sessions on the host have a visible cause to close,
                // and its streams are cut.
                st.crash_causes(h);
                let mut mid = false;
                for s in st.streams.iter().filter(|s| s.host == h && s.open) {
                    mid |= s.wf.mid_frame() || s.rf.mid_frame();
                    if let Some(p) = s.peer {
                        mid |= st.streams[p as usize].rf.mid_frame();
                    }
                }
                if mid {
                    st.edge("crash-mid-frame");
                }
            }
            sim.crash(hname.as_str());
            world.flush_held();
            let handles = {
                let mut st = lock(&world.shared);
                st.flush_crash();
                st.crashed(h)
            };
            let (old, checks) = {
                let mut app = world.app();
                let checks = std::mem::take(&mut app.hosts[h as usize].checks);
                let old: Vec<Service> = app
                    .services
                    .iter_mut()
                    .filter(|s| s.host == h)
                    .filter_map(|s| s.svc.take())
                    .collect();
                (old, checks)
            };
            for svc in &old {
                let live = svc.status().live();
                if live != 0 {
                    world.fail(
                        Some(h),
                        None,
                        &[],
                        format!(
                            "after the crash {live} sessions of the old incarnation are still live"
                        ),
                    );
                }
            }
            drop((old, checks, handles));
        }
        Action::Restart(n) => {
            let Some((h, hname)) = host_of(def, n) else {
                return;
            };
            {
                let mut st = lock(&world.shared);
                if !st.hosts[h as usize].down {
                    return;
                }
                st.hosts[h as usize].down = false;
                st.edge("host-restart");
            }
            sim.bounce(hname.as_str());
        }
    }
}
