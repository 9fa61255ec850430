//! What subscribers receive: session events, received messages, and the [`Event`] an
//! [`Inbox`](crate::Inbox) yields. Plain values, below the registry that delivers them and
//! the topics that name them.
//!
//! Ordering contract: for one session, every subscriber sees `Opened` before that session's
//! first message, messages in the order they were sent, and `Closed` after the last message.

use std::any::Any;
use std::fmt;

use crate::error::CloseReason;
use crate::id::SessionId;
use crate::message::Message;
use crate::session::{Direction, SessionRef};

/// A session lifecycle event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SessionEvent {
    /// A session opened. Published before any of its messages.
    Opened {
        /// A ref to send on it or close it.
        session: SessionRef,
        /// Who opened it.
        direction: Direction,
    },
    /// A session ended. Published exactly once per session, after its last message; its id
    /// is released right after.
    Closed {
        /// The session.
        id: SessionId,
        /// Why it ended.
        reason: CloseReason,
    },
}

impl SessionEvent {
    /// The session this event is about.
    pub fn id(&self) -> SessionId {
        match self {
            SessionEvent::Opened { session, .. } => session.id(),
            SessionEvent::Closed { id, .. } => *id,
        }
    }
}

/// A message received on a session.
#[derive(Debug, Clone)]
pub struct Received<T> {
    /// The session it arrived on; reply with `session.send(..)`.
    pub session: SessionRef,
    /// The message.
    pub msg: T,
}

/// Identifies a subscription, for [`Service::unsub`](crate::Service::unsub).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubId(pub(crate) u64);

/// What an [`Inbox`](crate::Inbox) yields: session events and messages in one stream, so the per-session
/// order holds across both.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A session lifecycle event.
    Session(SessionEvent),
    /// A received message of any subscribed type.
    Message(AnyMessage),
}

/// A received message whose type is chosen at run time; see [`AnyMessage::downcast`].
pub struct AnyMessage {
    /// The session it arrived on.
    pub session: SessionRef,
    msg: Box<dyn Any + Send>,
    type_name: &'static str,
}

impl AnyMessage {
    pub(crate) fn new<T: Message>(session: SessionRef, msg: T) -> AnyMessage {
        AnyMessage {
            session,
            msg: Box::new(msg),
            type_name: T::name(),
        }
    }

    /// True if the message is a `T`.
    pub fn is<T: Message>(&self) -> bool {
        self.msg.is::<T>()
    }

    /// The message as a `T`, or `self` back if it is another type.
    pub fn downcast<T: Message>(self) -> Result<Received<T>, AnyMessage> {
        match self.msg.downcast::<T>() {
            Ok(msg) => Ok(Received {
                session: self.session,
                msg: *msg,
            }),
            Err(msg) => Err(AnyMessage {
                session: self.session,
                msg,
                type_name: self.type_name,
            }),
        }
    }

    /// The message's type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name
    }
}

impl fmt::Debug for AnyMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyMessage")
            .field("session", &self.session.id())
            .field("type", &self.type_name)
            .finish()
    }
}
