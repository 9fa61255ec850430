//! Admission of encrypted handshakes: which connections may run one, so that idle sockets
//! cannot lock real clients out.
//!
//! A server runs at most [`Encryption::max_handshakes`] handshakes at once, and at most
//! [`Encryption::max_handshakes_per_source`] from one source (an IPv4 address, or an IPv6
//! /64: one host or one site). When a new connection finds either limit reached, it does not
//! get refused while a *stalled* attempt holds a place: the oldest stalled attempt (of its
//! source, or of all) is evicted — its connection dropped — and the newcomer takes the place.
//! An attempt is stalled while it waits for the client:
//!
//! - for its ClientHello, at any age (an honest client writes it with its connect, so the
//!   hello is there about as soon as the connection is; a client that has not sent it is
//!   the one to go first), and in any case no longer than [`Encryption::hello_timeout`];
//! - for its ClientFinished, once that has taken longer than `hello_timeout` after the
//!   ServerHello went out (an honest client answers within a round trip).
//!
//! So silent and trickling connections (slowloris) hold places only while nobody else needs
//! them. Only when every place is held by an attempt that is *not* stalled is the newcomer
//! refused. What this does not stop (stateless cookies would, and are out of scope):
//!
//! - clients that complete their hellos: each costs the server its handshake's X25519 work
//!   and then holds a place for up to `hello_timeout` (the ClientFinished that never comes),
//!   so an attacker sending `max_handshakes / hello_timeout` valid hellos per second (128/s
//!   with the defaults), from at least `max_handshakes / max_handshakes_per_source` sources
//!   (16), keeps newcomers refused;
//! - a flood of new connections so fast that `max_handshakes` newer ones arrive (or, from
//!   its own source, `max_handshakes_per_source`) before an honest client's hello has been
//!   read: the honest attempt is then the oldest stalled one. Clients behind one address
//!   (a NAT) share its places with whoever else is there;
//! - spoofed sources need a TCP handshake first, so the per-source limit is as good as the
//!   attacker's supply of real addresses.
//!
//! [`Encryption::max_handshakes`]: super::Encryption::max_handshakes
//! [`Encryption::max_handshakes_per_source`]: super::Encryption::max_handshakes_per_source
//! [`Encryption::hello_timeout`]: super::Encryption::hello_timeout

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::time::Instant;

/// Where a connection comes from, as the per-source limit counts it: an IPv4 address (also
/// when IPv4-mapped in IPv6), or the /64 prefix of an IPv6 address (one host may hold a
/// whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    V4(u32),
    V6(u64),
}

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.to_bits()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.to_bits()),
                None => Source::V6((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

/// The limits, from [`super::Encryption`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max: usize,
    pub(crate) per_source: usize,
    pub(crate) hello_timeout: Duration,
    /// Evict stalled attempts to make room (always, but for a planted bug).
    pub(crate) evict: bool,
}

struct Attempt {
    source: Source,
    /// When its ClientHello was complete; `None` while it waits for it.
    hello_done: Option<Instant>,
    /// Held only to be dropped: when the attempt is evicted, its task sees the channel close.
    _evict: oneshot::Sender<()>,
}

impl Attempt {
    fn stalled(&self, now: Instant, hello_timeout: Duration) -> bool {
        match self.hello_done {
            None => true,
            Some(t) => now.saturating_since(t) >= hello_timeout,
        }
    }
}

struct State {
    next: u64,
    /// Attempts in progress by admission number: oldest first.
    attempts: BTreeMap<u64, Attempt>,
    per_source: BTreeMap<Source, usize>,
    /// `attempts.len()`, for whoever waits for the handshakes to end (the shutdown).
    count: watch::Sender<usize>,
}

impl Default for State {
    fn default() -> Self {
        State {
            next: 0,
            attempts: BTreeMap::new(),
            per_source: BTreeMap::new(),
            count: watch::Sender::new(0),
        }
    }
}

impl State {
    fn remove(&mut self, id: u64) -> bool {
        let Some(a) = self.attempts.remove(&id) else {
            return false;
        };
        self.count.send_replace(self.attempts.len());
        if let Some(n) = self.per_source.get_mut(&a.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&a.source);
            }
        }
        // Dropping `a.evict` wakes the attempt's task if it is still running.
        true
    }

    /// The oldest stalled attempt (of `source` if given).
    fn oldest_stalled(
        &self,
        source: Option<Source>,
        now: Instant,
        hello_timeout: Duration,
    ) -> Option<u64> {
        self.attempts
            .iter()
            .find(|(_, a)| source.is_none_or(|s| a.source == s) && a.stalled(now, hello_timeout))
            .map(|(&id, _)| id)
    }
}

/// The handshakes in progress on one service.
#[derive(Default)]
pub(crate) struct Admission {
    state: Mutex<State>,
}

/// The outcome of [`Admission::admit`].
pub(crate) struct Admitted {
    /// The newcomer's place, if it got one.
    pub(crate) ticket: Option<Ticket>,
    /// Stalled attempts evicted to make room (0, 1 or 2: one for the source's limit, one for
    /// the global one, when both were reached).
    pub(crate) evicted: u32,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every critical section completes its mutation before anything can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Admission {
    /// A place for a new connection from `source` at `now`, evicting the oldest stalled
    /// attempt where a limit is reached; no place if no attempt there is stalled.
    pub(crate) fn admit(self: &Arc<Self>, source: Source, now: Instant, l: Limits) -> Admitted {
        let mut st = lock(&self.state);
        let mut evicted = 0;
        if st.per_source.get(&source).copied().unwrap_or(0) >= l.per_source.max(1) {
            match st
                .oldest_stalled(Some(source), now, l.hello_timeout)
                .filter(|_| l.evict)
            {
                Some(id) => {
                    st.remove(id);
                    evicted += 1;
                }
                None => {
                    return Admitted {
                        ticket: None,
                        evicted,
                    };
                }
            }
        }
        if st.attempts.len() >= l.max.max(1) {
            match st
                .oldest_stalled(None, now, l.hello_timeout)
                .filter(|_| l.evict)
            {
                Some(id) => {
                    st.remove(id);
                    evicted += 1;
                }
                None => {
                    return Admitted {
                        ticket: None,
                        evicted,
                    };
                }
            }
        }
        let id = st.next;
        st.next += 1;
        let (tx, rx) = oneshot::channel();
        st.attempts.insert(
            id,
            Attempt {
                source,
                hello_done: None,
                _evict: tx,
            },
        );
        *st.per_source.entry(source).or_insert(0) += 1;
        let n = st.attempts.len();
        st.count.send_replace(n);
        Admitted {
            ticket: Some(Ticket {
                admission: self.clone(),
                id,
                evicted: rx,
            }),
            evicted,
        }
    }

    /// Handshakes in progress.
    /// Handshakes in progress.
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).attempts.len()
    }

    /// Returns once no handshake is in progress.
    pub(crate) async fn idle(&self) {
        let mut count = lock(&self.state).count.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }
}

/// One attempt's place; dropping it gives the place back.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    /// Closes when the attempt is evicted.
    pub(crate) evicted: oneshot::Receiver<()>,
}

impl Ticket {
    /// The attempt's ClientHello is complete (at `now`): it is no longer stalled, until its
    /// ClientFinished is overdue.
    pub(crate) fn hello_done(&self, now: Instant) {
        if let Some(a) = lock(&self.admission.state).attempts.get_mut(&self.id) {
            a.hello_done = Some(now);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.admission.state).remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        evict: true,
        max: 4,
        per_source: 2,
        hello_timeout: Duration::from_secs(2),
    };

    fn at(ms: u64) -> Instant {
        Instant::from_origin(Duration::from_millis(ms))
    }

    fn src(i: u8) -> Source {
        Source::of(IpAddr::from([10, 0, 0, i]))
    }

    #[test]
    fn a_full_table_of_silent_attempts_makes_room_oldest_first() {
        let adm = Arc::new(Admission::default());
        let mut held: Vec<Ticket> = (1..=4)
            .map(|i| adm.admit(src(i), at(i as u64), L).ticket.unwrap())
            .collect();
        let a = adm.admit(src(9), at(10), L);
        assert_eq!(a.evicted, 1);
        assert!(a.ticket.is_some());
        assert_eq!(adm.len(), 4);
        // The oldest one's channel closed: its task stops.
        assert!(held[0].evicted.try_recv().is_err());
        assert!(matches!(
            held[1].evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        held.clear();
        assert_eq!(adm.len(), 1, "dropped tickets give their places back");
    }

    #[test]
    fn attempts_past_their_hello_are_kept_until_their_finished_is_overdue() {
        let adm = Arc::new(Admission::default());
        let held: Vec<Ticket> = (1..=4)
            .map(|i| {
                let t = adm.admit(src(i), at(0), L).ticket.unwrap();
                t.hello_done(at(1));
                t
            })
            .collect();
        // Nobody is stalled: the newcomer is refused.
        let a = adm.admit(src(9), at(1000), L);
        assert!(a.ticket.is_none());
        assert_eq!(a.evicted, 0);
        // Two seconds after the hellos, the finished tags are overdue.
        let a = adm.admit(src(9), at(2001), L);
        assert!(a.ticket.is_some());
        assert_eq!(a.evicted, 1);
        drop(held);
    }

    #[test]
    fn one_source_evicts_its_own_stalled_attempts_not_others() {
        let adm = Arc::new(Admission::default());
        let other = adm.admit(src(1), at(0), L).ticket.unwrap();
        let mine: Vec<Ticket> = (0..2)
            .map(|i| adm.admit(src(2), at(1 + i), L).ticket.unwrap())
            .collect();
        // Source 2 is at its limit: its oldest stalled attempt goes, not source 1's older one.
        let a = adm.admit(src(2), at(5), L);
        assert_eq!(a.evicted, 1);
        assert!(a.ticket.is_some());
        assert!(matches!(
            { other }.evicted.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        // With its attempts past their hellos, source 2 is refused, whatever the table has.
        for t in mine.iter().skip(1).chain(a.ticket.iter()) {
            t.hello_done(at(6));
        }
        assert!(adm.admit(src(2), at(7), L).ticket.is_none());
        assert!(adm.admit(src(3), at(7), L).ticket.is_some());
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::of(mapped), src(1));
    }
}
