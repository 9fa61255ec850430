//! The subscription registry: message decoders by id and subscribers by topic.
//!
//! The registry is an immutable snapshot behind an `Arc`. Subscribing builds a new snapshot
//! (copy on write) and bumps a version number; each session task keeps its own `Arc` and
//! refreshes it when the version moves, so dispatch takes no lock and callbacks may
//! subscribe or unsubscribe without deadlocking. Callbacks and inboxes subscribe the same way
//! ([`Topic::subscribe`](crate::Topic) with a [`Target`]); only delivery tells them apart.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::{ProtocolViolation, SubscribeError};
use crate::event::{AnyMessage, Event, Received, SessionEvent, SubId};
use crate::message::Message;
use crate::protocol::Protocol;
use crate::session::{Deliver, Handlers, SessionRef};

/// Where a subscription's deliveries go.
pub(crate) enum Target<E> {
    /// A callback, handed a reference to each delivery.
    Callback(Arc<dyn Fn(&E) + Send + Sync>),
    /// An inbox's channel, sent an owned [`Event`] per delivery.
    Inbox(mpsc::UnboundedSender<Event>),
}

impl<E> Clone for Target<E> {
    fn clone(&self) -> Self {
        match self {
            Target::Callback(f) => Target::Callback(f.clone()),
            Target::Inbox(tx) => Target::Inbox(tx.clone()),
        }
    }
}

struct Sub<E> {
    id: SubId,
    protocol: Protocol,
    target: Target<E>,
}

impl<E> Clone for Sub<E> {
    fn clone(&self) -> Self {
        Sub {
            id: self.id,
            protocol: self.protocol,
            target: self.target.clone(),
        }
    }
}

/// Decodes one message type and hands it to that type's subscribers ([`Deliver`]), and is
/// rebuilt when they change.
pub(crate) trait Handler: Deliver {
    fn type_name(&self) -> &'static str;
    fn without(&self, id: SubId) -> Option<Arc<dyn Handler>>;
    fn as_any(&self) -> &dyn Any;
}

struct Typed<T: Message> {
    subs: Vec<Sub<Received<T>>>,
}

impl<T: Message> Deliver for Typed<T> {
    fn dispatch(
        &self,
        protocol: Protocol,
        session: SessionRef,
        body: &[u8],
    ) -> (SessionRef, Result<bool, ProtocolViolation>) {
        let mut wanted = self
            .subs
            .iter()
            .filter(|s| s.protocol == protocol)
            .peekable();
        let wanted_by_none = wanted.peek().is_none();
        // The decoded value goes straight into `Received`: one move, not two. The move reads
        // back what the decoder has just stored field by field, which stalls store-forwarding
        // (docs/performance.md, "Sampling profile"); a second move through a local measurably
        // cut one-way throughput (same document, the optimizations table).
        let mut rest = body;
        let received = match T::deserialize_reader(&mut rest) {
            Ok(msg) if rest.is_empty() => Received { session, msg },
            _ => {
                let v = ProtocolViolation::Undecodable {
                    id: T::ID,
                    type_name: T::name(),
                };
                return (session, Err(v));
            }
        };
        if wanted_by_none {
            return (received.session, Ok(false));
        }
        while let Some(sub) = wanted.next() {
            match &sub.target {
                Target::Callback(f) => f(&received),
                // An inbox owns what it is sent, and `T` need not be `Clone`: the last
                // subscriber takes the decoded message itself (the common case: one inbox
                // per type costs no copy); an inbox before others gets its own, decoded from
                // the same bytes (decoding is a function of them, and costs about what a
                // clone would).
                Target::Inbox(tx) if wanted.peek().is_none() => {
                    let Received { session, msg } = received;
                    let _ = tx.send(Event::Message(AnyMessage::new(session.clone(), msg)));
                    return (session, Ok(true));
                }
                Target::Inbox(tx) => {
                    let mut rest = body;
                    if let Ok(msg) = T::deserialize_reader(&mut rest) {
                        let any = AnyMessage::new(received.session.clone(), msg);
                        let _ = tx.send(Event::Message(any));
                    }
                }
            }
        }
        (received.session, Ok(true))
    }
}

impl<T: Message> Handler for Typed<T> {
    fn type_name(&self) -> &'static str {
        T::name()
    }

    fn without(&self, id: SubId) -> Option<Arc<dyn Handler>> {
        let pos = self.subs.iter().position(|s| s.id == id)?;
        let mut subs = self.subs.clone();
        subs.remove(pos);
        Some(Arc::new(Typed::<T> { subs }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// One immutable snapshot of all subscriptions of a service.
#[derive(Default, Clone)]
pub(crate) struct Registry {
    handlers: BTreeMap<u32, Arc<dyn Handler>>,
    sessions: Vec<Sub<SessionEvent>>,
}

impl Registry {
    /// Decodes a frame body with the decoder registered for `id` and delivers it.
    /// The handler of message id `id`: decodes a body and hands it to the subscribers.
    pub(crate) fn handler(&self, id: u32) -> Result<&dyn Handler, ProtocolViolation> {
        match self.handlers.get(&id) {
            Some(h) => Ok(&**h),
            None => Err(ProtocolViolation::UnknownMessage { id }),
        }
    }

    /// Delivers a session event to the session subscribers of `protocol`.
    pub(crate) fn publish(&self, protocol: Protocol, ev: &SessionEvent) {
        for sub in self.sessions.iter().filter(|s| s.protocol == protocol) {
            match &sub.target {
                Target::Callback(f) => f(ev),
                Target::Inbox(tx) => {
                    let _ = tx.send(Event::Session(ev.clone()));
                }
            }
        }
    }

    /// A copy with `T` registered (if it is not yet) and, if given, one more subscriber.
    pub(crate) fn with_message<T: Message>(
        &self,
        sub: Option<(SubId, Protocol, Target<Received<T>>)>,
    ) -> Result<Registry, SubscribeError> {
        if T::ID == crate::control::CONTROL_ID {
            return Err(SubscribeError::ReservedId { refused: T::name() });
        }
        let mut subs = match self.handlers.get(&T::ID) {
            None => Vec::new(),
            Some(h) => match h.as_any().downcast_ref::<Typed<T>>() {
                Some(t) => t.subs.clone(),
                None => {
                    return Err(SubscribeError::DuplicateId {
                        id: T::ID,
                        existing: h.type_name(),
                        refused: T::name(),
                    });
                }
            },
        };
        if let Some((id, protocol, target)) = sub {
            subs.push(Sub {
                id,
                protocol,
                target,
            });
        }
        let mut next = self.clone();
        next.handlers.insert(T::ID, Arc::new(Typed::<T> { subs }));
        Ok(next)
    }

    /// A copy with one more session-event subscriber.
    pub(crate) fn with_sessions(
        &self,
        id: SubId,
        protocol: Protocol,
        target: Target<SessionEvent>,
    ) -> Registry {
        let mut next = self.clone();
        next.sessions.push(Sub {
            id,
            protocol,
            target,
        });
        next
    }

    /// A copy without subscription `id` (message types stay registered). `None` if absent.
    pub(crate) fn without(&self, id: SubId) -> Option<Registry> {
        if let Some(pos) = self.sessions.iter().position(|s| s.id == id) {
            let mut next = self.clone();
            next.sessions.remove(pos);
            return Some(next);
        }
        for (msg_id, h) in &self.handlers {
            if let Some(h2) = h.without(id) {
                let mut next = self.clone();
                next.handlers.insert(*msg_id, h2);
                return Some(next);
            }
        }
        None
    }
}

impl Handlers for Registry {
    fn handler(&self, id: u32) -> Result<&dyn Deliver, ProtocolViolation> {
        Registry::handler(self, id).map(|h| h as &dyn Deliver)
    }
}
