//! What the workload keeps per host: its incarnation, its service, the sessions it drives and
//! the refs it keeps after close, the ids it saw, its RNG and its schedule; and what a crash
//! or the end of the run takes away from it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use laxnet::{Service, SessionRef};

use crate::rng::Rng;
use crate::scenario::Scenario;
use crate::state::State;

/// A session the workload is driving.
pub struct Live {
    /// The ref from `Opened`.
    pub sref: SessionRef,
    /// Index into [`State::sessions`].
    pub sess: usize,
    /// Next burst (sim µs).
    pub next_send_us: u64,
    /// When its closer acts (sim µs), if anyone closes it before the end.
    pub close_at_us: Option<u64>,
    /// Who closes: "client", "server", "both".
    pub closer: &'static str,
    /// Send a burst right before closing.
    pub burst_close: bool,
    /// A server session that never sends.
    pub mute: bool,
    /// A task waits in `ready()` after `QueueFull`; the workload sends nothing meanwhile.
    pub waiting: bool,
    /// Since when (sim µs) the waiting session's queue has been at or below the low-water mark.
    pub room_since_us: Option<u64>,
    /// A lost wake-up was reported for this session (once).
    pub lost_reported: bool,
}

/// A ref kept after its session closed.
pub struct Kept {
    /// The ref.
    pub sref: SessionRef,
    /// Index into [`State::sessions`].
    pub sess: usize,
}

/// One host's workload state.
pub struct HostState {
    /// Name.
    pub name: String,
    /// True for servers.
    pub server: bool,
    /// Current incarnation.
    pub inc: u16,
    /// Incarnations started so far.
    pub starts: u16,
    /// Its service (None while crashed).
    pub svc: Option<Service>,
    /// Workload RNG.
    pub rng: Rng,
    /// Sessions being driven, by id.
    pub live: BTreeMap<u32, Live>,
    /// Refs kept after close.
    pub kept: VecDeque<Kept>,
    /// Current id → session index (this incarnation).
    pub by_id: BTreeMap<u32, usize>,
    /// Ids issued in this incarnation.
    pub ids_seen: BTreeSet<u32>,
    /// The latest id issued (this incarnation).
    pub last_id: Option<u32>,
    /// Sessions opened and not yet closed.
    pub open_now: usize,
    /// The most sessions open at once (this incarnation).
    pub peak_open: usize,
    /// Connects in flight.
    pub connecting: usize,
    /// The stream the runtime created last (taken by the next `Opened`).
    pub last_stream: Option<u64>,
    /// Currently crashed.
    pub down: bool,
    /// Next connect attempt (sim µs).
    pub next_connect_us: u64,
    /// Next stale probe (sim µs).
    pub next_probe_us: u64,
    /// Round-robin server choice.
    pub next_server: u16,
    /// Workload phase over: no new connects or sends.
    pub draining: bool,
    /// Tasks of this incarnation waiting in `ready()`.
    pub waiters: u64,
    /// The subscriber added while sessions run (servers; see `workload::events::late_subscriber`).
    pub late_sub: Option<laxnet::SubId>,
    /// It was added and dropped again.
    pub late_done: bool,
    /// `Data` messages delivered while it was subscribed.
    pub late_expected: u64,
    /// Messages it got.
    pub late_got: u64,
    /// A server whose listener is closed (`Acceptor::close`) for a while.
    pub paused: bool,
    /// The callbacks' and the inbox's view of this incarnation (`workload::inbox`).
    pub inbox: InboxMirror,
}

/// What the callbacks delivered and what the host's `Inbox` delivered, to compare.
#[derive(Debug, Default)]
pub struct InboxMirror {
    /// `Opened`, `Closed` and `Data` the callbacks got.
    pub cb: [u64; 3],
    /// The same, from the inbox.
    pub got: [u64; 3],
    /// Sessions open as the inbox saw them, with the last `Data` sequence number it got on each.
    pub live: BTreeMap<u32, Option<u64>>,
}

impl HostState {
    /// Host `i` of scenario `sc` before its first start, in the run with seed `seed`.
    pub fn new(sc: &Scenario, seed: u64, i: u16) -> HostState {
        HostState {
            name: sc.host_name(i),
            server: sc.is_server(i),
            inc: 0,
            starts: 0,
            svc: None,
            rng: Rng::new(seed, 1 + i as u64),
            live: BTreeMap::new(),
            kept: VecDeque::new(),
            by_id: BTreeMap::new(),
            ids_seen: BTreeSet::new(),
            last_id: None,
            open_now: 0,
            peak_open: 0,
            connecting: 0,
            last_stream: None,
            down: false,
            next_connect_us: 0,
            next_probe_us: 0,
            next_server: i % sc.hosts.servers.max(1),
            draining: false,
            waiters: 0,
            late_sub: None,
            late_done: false,
            late_expected: 0,
            late_got: 0,
            paused: false,
            inbox: InboxMirror::default(),
        }
    }
}

/// Library handles to drop outside the state lock.
pub struct Handles(pub Option<Service>, pub Vec<SessionRef>);

impl State {
    /// Host `h` crashed: forget its incarnation's sessions. Returns the handles to drop
    /// outside the lock.
    pub fn crashed(&mut self, h: u16) -> Handles {
        let host = &mut self.hosts[h as usize];
        let svc = host.svc.take();
        let mut refs: Vec<SessionRef> = std::mem::take(&mut host.live)
            .into_values()
            .map(|l| l.sref)
            .collect();
        refs.extend(std::mem::take(&mut host.kept).into_iter().map(|k| k.sref));
        host.by_id.clear();
        host.ids_seen.clear();
        host.last_id = None;
        host.open_now = 0;
        host.peak_open = 0;
        host.connecting = 0;
        host.last_stream = None;
        host.draining = false;
        host.paused = false;
        host.late_sub = None;
        host.late_done = false;
        host.late_expected = 0;
        host.late_got = 0;
        host.inbox = InboxMirror::default();
        // The crash dropped the tasks waiting in `ready()` with everything else.
        host.waiters = 0;
        Handles(svc, refs)
    }

    /// Takes every service and ref out of the state (they reference it through the runtime:
    /// a cycle). Drop the result outside the lock.
    pub fn release_handles(&mut self) -> Vec<Handles> {
        self.hosts
            .iter_mut()
            .map(|host| {
                let svc = host.svc.take();
                let mut refs: Vec<SessionRef> = std::mem::take(&mut host.live)
                    .into_values()
                    .map(|l| l.sref)
                    .collect();
                refs.extend(std::mem::take(&mut host.kept).into_iter().map(|k| k.sref));
                Handles(svc, refs)
            })
            .collect()
    }
}
