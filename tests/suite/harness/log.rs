//! The event log every host keeps ([`Rec`]) and the lifecycle check that rebuilds each
//! session's history from it ([`sessions_of`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use laxnet::{CloseReason, Direction, SessionId};

/// One entry of a host's event log, written by the subscriptions every host installs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rec {
    Opened {
        id: SessionId,
        dir: Direction,
        peer: SocketAddr,
    },
    Closed {
        id: SessionId,
        reason: CloseReason,
    },
    Msg {
        id: SessionId,
        seq: u64,
        len: usize,
        intact: bool,
    },
    /// Something a helper subscriber wants the test to see (e.g. an echo that failed).
    Note(String),
}

/// What one session went through, as rebuilt from an event log by [`sessions_of`].
#[derive(Debug, Clone)]
pub(crate) struct SessionLog {
    pub(crate) id: SessionId,
    pub(crate) dir: Direction,
    pub(crate) peer: SocketAddr,
    pub(crate) msgs: Vec<u64>,
    pub(crate) bytes: u64,
    pub(crate) closed: Option<CloseReason>,
}

/// Rebuilds every session's history from a log and checks the lifecycle contract on the way:
/// one `Opened` first, messages only between `Opened` and `Closed`, at most one `Closed`, nothing
/// after it, every payload intact. Panics with the offending record otherwise.
pub(crate) fn sessions_of(log: &[Rec]) -> BTreeMap<SessionId, SessionLog> {
    let mut out: BTreeMap<SessionId, SessionLog> = BTreeMap::new();
    for (i, r) in log.iter().enumerate() {
        match r {
            Rec::Opened { id, dir, peer } => {
                let prev = out.insert(
                    *id,
                    SessionLog {
                        id: *id,
                        dir: *dir,
                        peer: *peer,
                        msgs: Vec::new(),
                        bytes: 0,
                        closed: None,
                    },
                );
                assert!(prev.is_none(), "record {i}: second Opened for {id}: {r:?}");
            }
            Rec::Closed { id, reason } => {
                let s = out
                    .get_mut(id)
                    .unwrap_or_else(|| panic!("record {i}: Closed before Opened: {r:?}"));
                assert!(
                    s.closed.is_none(),
                    "record {i}: second Closed for {id}: {r:?} (first: {:?})",
                    s.closed
                );
                s.closed = Some(reason.clone());
            }
            Rec::Msg {
                id,
                seq,
                len,
                intact,
            } => {
                let s = out
                    .get_mut(id)
                    .unwrap_or_else(|| panic!("record {i}: message before Opened: {r:?}"));
                assert!(
                    s.closed.is_none(),
                    "record {i}: message after Closed ({:?}): {r:?}",
                    s.closed
                );
                assert!(*intact, "record {i}: corrupted payload: {r:?}");
                s.msgs.push(*seq);
                s.bytes += 8 + 8 + 4 + *len as u64;
            }
            Rec::Note(n) => panic!("record {i}: {n}"),
        }
    }
    out
}

/// The last 40 records of `log` (what a timeout prints).
pub(super) fn tail(log: &[Rec]) -> &[Rec] {
    &log[log.len().saturating_sub(40)..]
}
