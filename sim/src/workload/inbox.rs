//! The inbox mirror (`workload.inbox`): a host receives through an [`Inbox`] as well as
//! through its callbacks (its sessions' events and `Data`, not `Bulk`): hosts with an even
//! index in a task that waits in `recv`, the others by polling `try_recv` every tick and after
//! the drain. The inbox must see what the callbacks see: every
//! message a `Data` (and no `Bulk`: `AnyMessage::is`, `downcast`), on a session it saw open
//! and not yet closed, in sequence order; one `Opened` and one `Closed` per session; and at
//! quiescence as many of each as the callbacks got.

use laxnet::{Event, Inbox, Protocol, Service, SessionEvent, Topic};

use crate::log::fmt_id;
use crate::msg::{Bulk, Data};
use crate::state::{Shared, lock};

/// Opens the host's inbox, or says why it could not.
pub(super) fn open(svc: &Service, proto: Protocol) -> Result<Inbox, String> {
    let mut inbox = svc.inbox();
    inbox
        .add(Topic::sessions(proto))
        .and_then(|i| i.add(Topic::message::<Data>(proto)))
        .map_err(|e| format!("inbox add failed: {e}"))?;
    Ok(inbox)
}

/// The inbox consumer of a host that waits in `recv` (one per incarnation; a crash drops it
/// with the host's tasks).
pub(super) async fn consume(shared: Shared, h: u16, mut inbox: Inbox) {
    while let Some(ev) = inbox.recv().await {
        event(&shared, h, ev);
    }
}

/// A host that polls: everything the inbox holds now.
pub(super) fn poll(shared: &Shared, h: u16, inbox: &mut Inbox) {
    while let Some(ev) = inbox.try_recv() {
        event(shared, h, ev);
    }
}

fn event(shared: &Shared, h: u16, ev: Event) {
    let mut st = lock(shared);
    let m = &mut st.hosts[h as usize].inbox;
    let bad = match ev {
        Event::Session(SessionEvent::Opened { session, .. }) => {
            m.got[0] += 1;
            let id = session.id().get();
            m.live
                .insert(id, None)
                .map(|_| format!("inbox: {} opened twice", fmt_id(id)))
        }
        Event::Session(SessionEvent::Closed { id, .. }) => {
            m.got[1] += 1;
            let id = id.get();
            m.live
                .remove(&id)
                .is_none()
                .then(|| format!("inbox: {} closed, but it never saw it open", fmt_id(id)))
        }
        Event::Message(msg) => {
            m.got[2] += 1;
            if !msg.is::<Data>() || msg.is::<Bulk>() {
                Some(format!(
                    "inbox: a {} message says is::<Data> {} and is::<Bulk> {} (it subscribed to Data only)",
                    msg.type_name(),
                    msg.is::<Data>(),
                    msg.is::<Bulk>()
                ))
            } else {
                match msg.downcast::<Data>() {
                    Err(msg) => Some(format!(
                        "inbox: a {} did not downcast to Data",
                        msg.type_name()
                    )),
                    Ok(r) => {
                        let (id, seq) = (r.session.id().get(), r.msg.0.seq);
                        match m.live.get_mut(&id) {
                            None => Some(format!(
                                "inbox: Data seq {seq} on {}, which it did not see open",
                                fmt_id(id)
                            )),
                            Some(last) if seq != u64::MAX && last.is_some_and(|l| seq <= l) => {
                                Some(format!(
                                    "inbox: Data seq {seq} on {} after seq {}",
                                    fmt_id(id),
                                    last.unwrap_or_default()
                                ))
                            }
                            Some(last) => {
                                if seq != u64::MAX {
                                    *last = Some(seq);
                                }
                                None
                            }
                        }
                    }
                }
            }
        }
        _ => None,
    };
    if let Some(why) = bad {
        st.violation(Some(h), None, why);
    }
}

/// At quiescence: the inbox got as many `Opened`, `Closed` and `Data` as the callbacks.
pub(super) fn check(shared: &Shared, h: u16) {
    let mut st = lock(shared);
    if !st.sc.workload.inbox {
        return;
    }
    let m = &st.hosts[h as usize].inbox;
    let (cb, got) = (m.cb, m.got);
    if cb != got {
        st.violation(
            Some(h),
            None,
            format!(
                "the inbox got {} Opened, {} Closed and {} Data, the callbacks {}, {} and {}",
                got[0], got[1], got[2], cb[0], cb[1], cb[2]
            ),
        );
    } else if got[2] > 0 {
        st.edge("inbox-mirrored");
    }
}
