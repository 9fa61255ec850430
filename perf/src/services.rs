//! How the laxnet services of a run are configured ([`Lax`]), and the event that ends a
//! server's part of a run ([`sessions_closed`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use laxnet::{Cipher, Config, Encryption, KeyPair, Protocol, Service, SessionEvent, Topic};
use tokio::sync::Notify;

use crate::cli::Opts;

/// The configuration of every laxnet service a measurement creates: the command line's
/// buffer and queue settings, and the protocol, which the modes that compare protocols
/// change per run (`Lax { encrypted: true, ..lax.clone() }`).
#[derive(Clone)]
pub(crate) struct Lax {
    /// Sessions use `bits-hpke` with [`Lax::key`] as the server's key, instead of `bits`.
    pub(crate) encrypted: bool,
    /// The cipher clients propose (`None`: `Cipher::preferred()`).
    pub(crate) cipher: Option<Cipher>,
    /// `Config::read_buffer` (`None`: the default).
    pub(crate) read_buffer: Option<usize>,
    /// `Config::read_buffer_max` (`None`: the default).
    pub(crate) read_buffer_max: Option<usize>,
    /// `Config::send_queue_limit` (`None`: the default).
    pub(crate) send_queue_limit: Option<usize>,
    /// The server's key pair, one per process (generated before anything is timed).
    pub(crate) key: KeyPair,
    /// `--client-auth`: the key encrypted clients present, which the server allows.
    pub(crate) client_key: Option<KeyPair>,
}

impl Lax {
    /// The settings of `o`: `--encrypted`, `--read-buffer`, `--read-buffer-max`,
    /// `--send-queue-limit`; the default cipher.
    pub(crate) fn new(o: &Opts) -> Lax {
        Lax {
            encrypted: o.encrypted,
            cipher: None,
            read_buffer: o.read_buffer,
            read_buffer_max: o.read_buffer_max,
            send_queue_limit: o.send_queue_limit,
            key: KeyPair::generate(),
            client_key: o.client_auth.then(KeyPair::generate),
        }
    }

    /// The protocol sessions use (`Bits`, or `BitsHpke` when encrypted).
    pub(crate) fn proto(&self) -> Protocol {
        if self.encrypted {
            Protocol::BitsHpke
        } else {
            Protocol::Bits
        }
    }

    /// The configuration without encryption settings (logging off).
    pub(crate) fn config(&self) -> Config {
        let mut c = Config::default().with_logging(false);
        if let Some(rb) = self.read_buffer {
            c.read_buffer = rb;
        }
        if let Some(max) = self.read_buffer_max {
            c.read_buffer_max = max;
        }
        if let Some(limit) = self.send_queue_limit {
            c.send_queue_limit = limit;
        }
        c
    }

    /// A server's configuration: [`Lax::config`], with the server key when encrypted.
    pub(crate) fn server_config(&self) -> Config {
        let mut c = self.config();
        if self.encrypted {
            let mut e = Encryption::server(self.key.clone());
            e.allowed_clients = self.client_key.as_ref().map(|k| vec![k.public()]);
            c = c.with_encryption(e);
        }
        c
    }

    /// A client's configuration: [`Lax::config`], pinning the server key (and proposing
    /// [`Lax::cipher`]) when encrypted.
    pub(crate) fn client_config(&self) -> Config {
        let mut c = self.config();
        if self.encrypted {
            let mut e = Encryption::client(self.key.public());
            e.identity = self.client_key.clone();
            if let Some(cipher) = self.cipher {
                e = e.with_cipher(cipher);
            }
            c = c.with_encryption(e);
        }
        c
    }
}

/// Resolves once `n` sessions of `server` (over `proto`) have closed. Event-driven (a session
/// subscription, made before the caller accepts), so nothing ticks beside the measured
/// sessions: a periodic `status()` poll here, a timer the raw baselines never run, costs
/// laxnet's ping-pong round trips and inflates its tail latency (docs/performance.md, "What
/// changed since the first measurement", 7103dd4).
pub(crate) fn sessions_closed(
    server: &Service,
    proto: Protocol,
    n: u64,
) -> impl Future<Output = ()> + use<> {
    let state = Arc::new((AtomicU64::new(0), Notify::new()));
    let s = state.clone();
    server
        .sub(Topic::sessions(proto), move |e: &SessionEvent| {
            if matches!(e, SessionEvent::Closed { .. }) && s.0.fetch_add(1, Relaxed) + 1 == n {
                // Stores a permit if nobody waits yet.
                s.1.notify_one();
            }
        })
        .expect("sub");
    async move {
        if state.0.load(Relaxed) < n {
            state.1.notified().await;
        }
    }
}
