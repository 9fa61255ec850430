//! A user's service on laxnet, outside the laxnet workspace: a counter server. Each session
//! adds numbers ([`Add`]) to a tally of its own and gets the running total back
//! ([`Total`]); a session's tally is dropped when the session closes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use borsh::{BorshDeserialize, BorshSerialize};
use laxnet::{Protocol, Received, Service, SessionEvent, SessionId, SessionRef, Topic};

/// The protocol the counter speaks.
pub const PROTOCOL: Protocol = Protocol::Bits;

/// Client → server: add this to my tally.
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
pub struct Add(pub u32);
laxnet::message!(Add = 1);

/// Server → client: the tally after an [`Add`].
#[derive(BorshSerialize, BorshDeserialize, Debug, Clone)]
pub struct Total(pub u64);
laxnet::message!(Total = 2);

type Tallies = Arc<Mutex<BTreeMap<SessionId, (SessionRef, u64)>>>;

/// The server's state: one tally per open session.
#[derive(Clone, Default)]
pub struct Counter {
    tallies: Tallies,
}

impl Counter {
    /// Serves the counter on `svc`'s sessions of [`PROTOCOL`] (call before accepting).
    pub fn serve(svc: &Service) -> Result<Counter, laxnet::SubscribeError> {
        let c = Counter::default();
        let t = c.tallies.clone();
        svc.sub(Topic::message::<Add>(PROTOCOL), move |m: &Received<Add>| {
            let total = {
                let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                let e = t
                    .entry(m.session.id())
                    .or_insert_with(|| (m.session.clone(), 0));
                e.1 += u64::from(m.msg.0);
                e.1
            };
            let _ = m.session.send(&Total(total));
        })?;
        let t = c.tallies.clone();
        svc.sub(Topic::sessions(PROTOCOL), move |ev: &SessionEvent| {
            if let SessionEvent::Closed { id, .. } = ev {
                t.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
            }
        })?;
        Ok(c)
    }

    /// The invariant: every tally belongs to an open session. `Err` names one that does not.
    pub fn check(&self) -> Result<(), (String, SessionId)> {
        let t = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        match t.values().find(|(s, _)| !s.is_open()) {
            Some((s, n)) => Err((
                format!("{} has a tally ({n}) but is closed", s.id()),
                s.id(),
            )),
            None => Ok(()),
        }
    }
}
