//! How subscribers say what they want: [`Topic`]s, and the [`Inbox`] for async code. What
//! they receive is in [`crate::event`] (the ordering contract is there).
//!
//! Callbacks run on the session's task; a subscriber that blocks stalls that session only.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::error::SubscribeError;
use crate::event::{Event, Received, SessionEvent, SubId};
use crate::message::Message;
use crate::protocol::Protocol;
use crate::registry::{Registry, Target};

/// A subscription key: session events or one message type, on one protocol. Subscribe a
/// callback with [`Service::sub`](crate::Service::sub) or add it to an [`Inbox`] with
/// [`Inbox::add`].
///
/// ```
/// # use laxnet::{Protocol, Topic};
/// # #[derive(borsh::BorshSerialize, borsh::BorshDeserialize, Debug)] struct Chat;
/// # laxnet::message!(Chat = 1);
/// let sessions = Topic::sessions(Protocol::Bits);
/// let chats = Topic::message::<Chat>(Protocol::Bits);
/// ```
pub struct Topic<E> {
    pub(crate) protocol: Protocol,
    pub(crate) kind: TopicKind,
    /// Adds a subscriber of this topic to a registry snapshot.
    pub(crate) add: AddFn<E>,
    _event: PhantomData<fn(E)>,
}

pub(crate) type AddFn<E> =
    fn(&Registry, SubId, Protocol, Target<E>) -> Result<Registry, SubscribeError>;

fn add_sessions(
    r: &Registry,
    id: SubId,
    p: Protocol,
    t: Target<SessionEvent>,
) -> Result<Registry, SubscribeError> {
    Ok(r.with_sessions(id, p, t))
}

fn add_message<T: Message>(
    r: &Registry,
    id: SubId,
    p: Protocol,
    t: Target<Received<T>>,
) -> Result<Registry, SubscribeError> {
    r.with_message::<T>(Some((id, p, t)))
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum TopicKind {
    Sessions,
    Message,
}

impl Topic<SessionEvent> {
    /// Session events (opened, closed) of sessions on `protocol`.
    pub fn sessions(protocol: Protocol) -> Topic<SessionEvent> {
        Topic {
            protocol,
            kind: TopicKind::Sessions,
            add: add_sessions,
            _event: PhantomData,
        }
    }

    /// Messages of type `T` received on sessions of `protocol`. Subscribing registers `T`'s
    /// decoder under `T::ID`.
    pub fn message<T: Message>(protocol: Protocol) -> Topic<Received<T>> {
        Topic {
            protocol,
            kind: TopicKind::Message,
            add: add_message::<T>,
            _event: PhantomData,
        }
    }
}

impl<E> Topic<E> {
    /// A copy of `registry` with one more subscriber: `target` gets this topic's deliveries.
    /// The one way in for callbacks and inboxes alike.
    pub(crate) fn subscribe(
        &self,
        registry: &Registry,
        id: SubId,
        target: Target<E>,
    ) -> Result<Registry, SubscribeError> {
        (self.add)(registry, id, self.protocol, target)
    }
}

impl<E> Clone for Topic<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Topic<E> {}

impl<E> fmt::Debug for Topic<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?}, {:?})", self.protocol, self.kind)
    }
}

/// An async stream of [`Event`]s for the topics added to it ([`Inbox::add`]): the actor-style
/// alternative to callbacks. Dropping the inbox ends its subscriptions.
///
/// It receives what a callback on the same topic would, as owned values: a message moves
/// into the inbox when it is the last subscriber of its type, and is otherwise decoded once
/// more for it (so message types need not be `Clone`).
///
/// The queue is unbounded: a consumer that stops reading keeps every delivered message in
/// memory. Pair it with `Config::send_queue_limit` on the sending side and keep up.
pub struct Inbox {
    pub(crate) rx: mpsc::UnboundedReceiver<Event>,
    pub(crate) tx: mpsc::UnboundedSender<Event>,
    pub(crate) subs: Vec<SubId>,
    pub(crate) service: super::Service,
}

impl Inbox {
    /// Adds `topic` to this inbox: its deliveries arrive as [`Event`]s, in the same order as
    /// a callback subscribed to it would see them. Fails as [`Service::sub`] does (a message
    /// id registered for another type).
    ///
    /// ```no_run
    /// # async fn demo(svc: laxnet::Service) -> Result<(), laxnet::SubscribeError> {
    /// use laxnet::{Protocol, Topic};
    /// # #[derive(borsh::BorshSerialize, borsh::BorshDeserialize, Debug)] struct Chat;
    /// # laxnet::message!(Chat = 1);
    /// let mut inbox = svc.inbox();
    /// inbox
    ///     .add(Topic::sessions(Protocol::Bits))?
    ///     .add(Topic::message::<Chat>(Protocol::Bits))?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`Service::sub`]: crate::Service::sub
    pub fn add<E>(&mut self, topic: Topic<E>) -> Result<&mut Inbox, SubscribeError> {
        let target = Target::Inbox(self.tx.clone());
        let id = self.service.inner().subscribe(topic, target)?;
        self.subs.push(id);
        Ok(self)
    }

    /// Waits for the next event. (The inbox keeps a sender of its own, so this never returns
    /// `None` while the inbox exists; the `Option` mirrors the `Stream` impl.)
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl futures_core::Stream for Inbox {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        for id in self.subs.drain(..) {
            self.service.unsub(id);
        }
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox").field("subs", &self.subs).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::time::Duration;

    use crate::{Config, Event, Protocol, Received, Service, Topic};

    /// Not `Clone`: inboxes own what they receive all the same.
    #[derive(borsh::BorshSerialize, borsh::BorshDeserialize, Debug, PartialEq)]
    struct Note(u64);
    crate::message!(Note = 7);

    async fn next_note(inbox: &mut super::Inbox) -> u64 {
        let rt = crate::TokioRuntime::new();
        let ev = crate::runtime::timeout(&rt, Duration::from_secs(5), inbox.recv())
            .await
            .expect("a note in time");
        match ev {
            Some(Event::Message(m)) => m.downcast::<Note>().expect("a Note").msg.0,
            other => panic!("expected a Note, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn callbacks_and_inboxes_share_one_subscription_path() {
        let server = Service::new(Config::default());
        let topic = Topic::message::<Note>(Protocol::Bits);
        // An inbox before another subscriber gets a copy decoded for it; the last one (also an
        // inbox) takes the decoded message; the callback in between sees it by reference.
        let mut first = server.inbox();
        first.add(topic).unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let cb = server
            .sub(topic, move |m: &Received<Note>| {
                s.fetch_add(m.msg.0, Relaxed);
            })
            .unwrap();
        let mut last = server.inbox();
        last.add(topic).unwrap();
        let acc = server.accept("127.0.0.1:0", Protocol::Bits).await.unwrap();
        let client = Service::new(Config::default());
        let addr = acc.local_addr().to_string();
        let session = client.connect(&addr, Protocol::Bits).await.unwrap();
        for n in 1..=3 {
            session.send(&Note(n)).unwrap();
        }
        for n in 1..=3 {
            assert_eq!(next_note(&mut first).await, n);
            assert_eq!(next_note(&mut last).await, n);
        }
        assert_eq!(seen.load(Relaxed), 6);
        // Unsubscribing the callback and dropping an inbox end their deliveries only.
        assert!(server.unsub(cb));
        assert!(!server.unsub(cb));
        drop(first);
        session.send(&Note(10)).unwrap();
        assert_eq!(next_note(&mut last).await, 10);
        assert_eq!(seen.load(Relaxed), 6);
        server.shutdown().await;
        client.shutdown().await;
    }
}
