//! Subscriptions: the service's registry of subscribers (a snapshot swapped whole on every
//! change, with a version so session tasks notice), and the `Service` calls that change it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::sync::mpsc;

use super::{Inbox, Service, ServiceInner, Topic, lock};
use crate::error::SubscribeError;
use crate::event::SubId;
use crate::message::Message;
use crate::registry::{Registry, Target};

impl ServiceInner {
    /// The current registry snapshot and its version.
    pub(crate) fn registry(&self) -> (u64, Arc<Registry>) {
        let r = lock(&self.registry);
        (self.registry_version.load(Relaxed), r.clone())
    }

    /// The registry if it changed since `version` (one atomic load when it did not).
    pub(crate) fn registry_if_newer(&self, version: u64) -> (u64, Option<Arc<Registry>>) {
        if self.registry_version.load(Relaxed) == version {
            return (version, None);
        }
        let (v, r) = self.registry();
        (v, Some(r))
    }

    pub(super) fn modify_registry<E>(
        &self,
        f: impl FnOnce(&Registry) -> Result<Registry, E>,
    ) -> Result<(), E> {
        let mut r = lock(&self.registry);
        let next = f(&r)?;
        *r = Arc::new(next);
        self.registry_version.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Adds a subscription: `target` gets `topic`'s deliveries. Callbacks
    /// ([`Service::sub`]) and inboxes ([`Inbox::add`]) both come through here.
    pub(crate) fn subscribe<E>(
        &self,
        topic: Topic<E>,
        target: Target<E>,
    ) -> Result<SubId, SubscribeError> {
        let id = SubId(self.next_sub.fetch_add(1, Relaxed));
        self.modify_registry(|r| topic.subscribe(r, id, target))?;
        Ok(id)
    }
}

impl Service {
    /// Registers message type `T` for decoding without subscribing to it (received `T`s are
    /// then counted as unhandled instead of closing the session). Subscribing registers too.
    pub fn register<T: Message>(&self) -> Result<(), SubscribeError> {
        self.inner.modify_registry(|r| r.with_message::<T>(None))
    }

    /// Subscribes `f` to `topic`. Callbacks run on the session's task, in per-session order.
    ///
    /// ```no_run
    /// # async fn demo(svc: laxnet::Service) -> Result<(), Box<dyn std::error::Error>> {
    /// use laxnet::{Protocol, Received, SessionEvent, Topic};
    /// # #[derive(borsh::BorshSerialize, borsh::BorshDeserialize, Debug)] struct Chat { text: String }
    /// # laxnet::message!(Chat = 1);
    /// svc.sub(Topic::sessions(Protocol::Bits), |ev: &SessionEvent| println!("{ev:?}"))?;
    /// svc.sub(Topic::message::<Chat>(Protocol::Bits), |m: &Received<Chat>| {
    ///     let _ = m.session.send(&m.msg); // echo
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn sub<E: 'static>(
        &self,
        topic: Topic<E>,
        f: impl Fn(&E) + Send + Sync + 'static,
    ) -> Result<SubId, SubscribeError> {
        self.inner.subscribe(topic, Target::Callback(Arc::new(f)))
    }

    /// Ends a subscription (a callback's; an inbox's end when it is dropped). Returns false if
    /// it did not exist.
    pub fn unsub(&self, id: SubId) -> bool {
        self.inner
            .modify_registry(|r| r.without(id).ok_or(()))
            .is_ok()
    }

    /// A new, empty [`Inbox`]; add topics with [`Inbox::add`].
    pub fn inbox(&self) -> Inbox {
        let (tx, rx) = mpsc::unbounded_channel();
        Inbox {
            rx,
            tx,
            subs: Vec::new(),
            service: self.clone(),
        }
    }
}
