//! The end of a host's run: wait for quiet, close and shut the service down, then check that
//! it is back to empty (no session, buffer, waiter, handshake or id left) and count the edges
//! its final status shows.

use std::time::Duration;

use laxnet::{ConnectError, Service, SessionRef};

use crate::log::{Ev, fmt_id};
use crate::state::{Shared, lock};
use crate::workload::PORT;
use crate::workload::actions::closed_as;

/// The end of the run: close everything, wait for every session to be destroyed, then check
/// that the service is back to empty.
pub(super) async fn drain(shared: &Shared, h: u16, svc: &Service) {
    // The workload stopped: once nothing moves, the service must hold no pooled buffers.
    for _ in 0..300 {
        if lock(shared).check_quiet(h) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let budget = {
        let mut st = lock(shared);
        st.hosts[h as usize].draining = true;
        // Half of the open sessions are closed just before the shutdown (their closes
        // overlap it; see below).
        let ids: Vec<u32> = st.hosts[h as usize].live.keys().copied().collect();
        for id in ids {
            if st.hosts[h as usize].rng.chance(0.5) {
                st.close(h, id, "before-shutdown");
            }
        }
        // `shutdown` closes every session below: a visible reason to close, and the reason
        // of every session still open.
        let open: Vec<usize> = st.hosts[h as usize].by_id.values().copied().collect();
        for idx in open {
            if st.sessions[idx].closed == 0 {
                st.cause(idx);
            }
        }
        let live: Vec<(usize, bool)> = st.hosts[h as usize]
            .live
            .values()
            .map(|l| (l.sess, l.sref.is_open()))
            .collect();
        for (idx, open) in live {
            if open {
                st.session_cause(idx, crate::reasons::Cause::Shutdown);
            }
        }
        // Leave the driver loop some slack after this host's own deadline.
        Duration::from_millis(st.sc.drain_ms.saturating_sub(200).max(100))
    };
    // The shutdown asks every session to close; one already closing keeps its reason. Its
    // first poll makes the requests, so what senders are told is compared around it.
    let closing: Vec<(usize, SessionRef, Result<(), laxnet::SendError>)> = {
        let st = lock(shared);
        st.hosts[h as usize]
            .live
            .values()
            .filter(|l| !l.sref.is_open())
            .map(|l| (l.sess, l.sref.clone(), closed_as(h, &l.sref)))
            .collect()
    };
    let mut shutdown = std::pin::pin!(svc.shutdown());
    let first = std::future::poll_fn(|cx| match shutdown.as_mut().poll(cx) {
        std::task::Poll::Ready(()) => std::task::Poll::Ready(true),
        std::task::Poll::Pending => std::task::Poll::Ready(false),
    })
    .await;
    {
        let mut st = lock(shared);
        for (idx, sref, before) in closing {
            st.edge("closing-at-shutdown");
            let after = closed_as(h, &sref);
            if after != before && !matches!(after, Err(laxnet::SendError::Stale)) {
                let id = sref.id();
                st.violation(
                    Some(h),
                    Some(idx),
                    format!(
                        "the shutdown changed what senders of closing session {id} are told from {before:?} to {after:?}"
                    ),
                );
            }
        }
    }
    let finished = first || tokio::time::timeout(budget, shutdown).await.is_ok();
    // Let the tasks that the shutdown woke in `ready()` record their answers.
    tokio::time::sleep(Duration::from_millis(1)).await;
    // A shut-down service refuses new work, before any I/O.
    let proto = lock(shared).sc.protocol.lib();
    let connect = svc.connect(&format!("server0:{PORT}"), proto).await;
    let accept = svc.accept(&format!("0.0.0.0:{}", PORT + 1), proto).await;
    if !matches!(connect, Err(ConnectError::Shutdown))
        || !matches!(accept, Err(laxnet::AcceptError::Shutdown))
    {
        lock(shared).violation(
            Some(h),
            None,
            format!(
                "after the shutdown, connect gave {:?} and accept {:?}, not Shutdown",
                connect.map(|s| s.id()),
                accept.map(|a| a.local_addr())
            ),
        );
    }
    let mut st = lock(shared);
    let waiters = st.hosts[h as usize].waiters;
    if finished && waiters != 0 {
        st.violation(
            Some(h),
            None,
            format!("{waiters} tasks are still waiting in ready() after the service shut down"),
        );
    }
    st.probe(h);
    let status = svc.status();
    if !finished {
        st.violation(
            Some(h),
            None,
            format!(
                "shutdown did not finish within {budget:?}: {} sessions still live",
                status.live()
            ),
        );
    }
    if status.live() != 0 {
        st.violation(
            Some(h),
            None,
            format!(
                "at quiescence {} sessions are still live (slot leak)",
                status.live()
            ),
        );
    }
    if status.pool.in_use_bytes != 0 {
        st.violation(
            Some(h),
            None,
            format!(
                "at quiescence {} pooled bytes are still in use (buffer leak)",
                status.pool.in_use_bytes
            ),
        );
    }
    if status.panics != 0 {
        st.violation(
            Some(h),
            None,
            format!("the service counted {} panics", status.panics),
        );
    }
    st.check_pool(h, &svc.config().pool, &status.pool, true);
    let peak = st.hosts[h as usize].peak_open;
    if status.slots != peak {
        st.violation(
            Some(h),
            None,
            format!(
                "status reports {} id slots created, but at most {peak} sessions were open at once",
                status.slots
            ),
        );
    }
    if status.handshaking != 0 {
        st.violation(
            Some(h),
            None,
            format!(
                "at quiescence {} handshakes are still counted in progress (handshake slot leak)",
                status.handshaking
            ),
        );
    }
    st.check_totals(h, &status);
    let host = &st.hosts[h as usize];
    let (got, want, late_done) = (host.late_got, host.late_expected, host.late_done);
    if got != want {
        st.violation(
            Some(h),
            None,
            format!(
                "a subscriber added while sessions ran got {got} messages, but {want} were delivered while it was subscribed"
            ),
        );
    }
    if late_done {
        st.edge("late-subscriber");
    }
    for _ in 0..status.refused {
        st.edge("admission-refused");
    }
    for _ in 0..status.handshake_failures {
        st.edge("handshake-failed");
    }
    for _ in 0..status.handshakes_refused {
        st.edge("handshake-refused");
    }
    for _ in 0..status.handshakes_evicted {
        st.edge("handshake-evicted");
    }
    for _ in 0..status.linger_expired {
        st.edge("linger-expired");
    }
    let ids: Vec<u32> = st.hosts[h as usize].ids_seen.iter().copied().collect();
    for id in ids {
        if let Some(sid) = laxnet::SessionId::from_raw(id)
            && svc.acquire(sid).is_some()
        {
            st.violation(
                Some(h),
                None,
                format!(
                    "acquire({}) still resolves after the service drained",
                    fmt_id(id)
                ),
            );
        }
    }
    st.log(
        h,
        Ev::Quiesced {
            live: status.live() as u64,
            in_use: status.pool.in_use_bytes as u64,
            panics: status.panics,
        },
    );
}
