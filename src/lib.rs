//! # laxnet
//!
//! Typed messages over TCP sessions for servers, written against an abstract clock and socket
//! so the same code runs on real Tokio sockets and inside the turmoil network simulator.
//!
//! ```no_run
//! use borsh::{BorshDeserialize, BorshSerialize};
//! use laxnet::{Config, Protocol, Received, Service, Topic};
//!
//! #[derive(BorshSerialize, BorshDeserialize, Debug)]
//! struct Chat { text: String }
//! laxnet::message!(Chat = 1);
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Service::new(Config::default());
//! server.sub(Topic::message::<Chat>(Protocol::Bits), |m: &Received<Chat>| {
//!     // Echo it back; a peer that does not read its echoes (`QueueFull`) is let go.
//!     if m.session.send(&m.msg).is_err() {
//!         m.session.close();
//!     }
//! })?;
//! let listener = server.accept("127.0.0.1:0", Protocol::Bits).await?;
//!
//! let client = Service::new(Config::default());
//! let mut inbox = client.inbox();
//! inbox.add(Topic::message::<Chat>(Protocol::Bits))?;
//! let addr = listener.local_addr().to_string();
//! let session = client.connect(&addr, Protocol::Bits).await?;
//! session.send(&Chat { text: "hello".into() })?;
//! if let Some(laxnet::Event::Message(m)) = inbox.recv().await {
//!     println!("{:?}", m.downcast::<Chat>().unwrap().msg);
//! }
//! session.close();
//! # Ok(()) }
//! ```
//!
//! ## Layout
//!
//! From the bottom up (see `ARCHITECTURE.md` for the invariants):
//!
//! - `runtime`: the [`Runtime`] trait (sockets, clock, spawn) and its backends
//!   [`TokioRuntime`] and `TurmoilRuntime` (feature `sim`). Nothing else touches a socket or
//!   a clock.
//! - `id`: [`SessionId`]s from a counter, unique over time.
//! - `buffer`: the pooled read buffer and segmented send queue.
//! - `message`: the [`Message`] trait and the "bits" frame format; `protocol`: [`Protocol`].
//! - `session`: [`SessionRef`] and the session task (a sans-IO receive state machine plus a
//!   poll-loop driver).
//! - `registry` / `service`: subscriptions by [`Topic`], [`Service`], [`Acceptor`],
//!   [`Status`].
//! - `wire` (hidden, not a stable API): the wire formats' sizes, defined once for this
//!   crate's simulator and tests.
//!
//! ## Cargo features
//!
//! - `sim`: the turmoil backend, `runtime::TurmoilRuntime`, for running services inside
//!   turmoil's simulated network (one `Service::with_runtime` per simulated host). Off by
//!   default; these docs (and docs.rs) are built with it.
//! - `planted-bugs`, `null-cipher`, `bench-internals`, `fuzzing`: for this crate's own
//!   simulation oracle, fuzzers and benches. Never enable them in a real build.
//!
//! Build flags: none are needed. On CPUs with AVX-512 IFMA an encrypted connect costs less
//! CPU (the repository's docs/performance.md has the figures) when the build passes
//! `--cfg curve25519_dalek_backend="avx512"` (in the application's `.cargo/config.toml` or
//! `RUSTFLAGS`): curve25519-dalek then also compiles its IFMA backend and picks it at run
//! time, so the binary still runs on other CPUs.
//!
//! ## Guarantees
//!
//! - Per session, subscribers see `Opened`, then messages in order, then exactly one
//!   `Closed`.
//! - A [`SessionRef`] never reaches a newer session that reuses its id's slot.
//! - Bytes from the network never panic the stack or allocate beyond `Config::max_frame`
//!   per frame; a misbehaving peer closes only its own session, with a typed
//!   [`CloseReason`].

#![warn(missing_docs, unreachable_pub)]

mod buffer;
mod config;
mod control;
mod crypto;
mod error;
mod event;
mod fault;
mod id;
mod message;
#[cfg(feature = "planted-bugs")]
#[doc(hidden)]
pub mod planted;
#[cfg(not(feature = "planted-bugs"))]
mod planted;
mod protocol;
mod registry;
pub mod runtime;
mod service;
mod session;
mod time;
#[doc(hidden)]
pub mod wire;

pub use buffer::{PoolConfig, PoolStats};
pub use config::Config;
pub use crypto::{
    Cipher, CryptoError, Encryption, HandshakeError, KeyError, KeyPair, PeerMisbehaved, PublicKey,
};
pub use error::{
    AcceptError, CloseCode, CloseKind, CloseReason, ConnectError, PeerClose, ProtocolViolation,
    Refusal, SendError, SubscribeError,
};
pub use event::{AnyMessage, Event, Received, SessionEvent, SubId};
pub use fault::Fault;
pub use id::{MAX_SESSIONS, SessionId};
pub use message::Message;
pub use protocol::{Protocol, UnknownProtocol};
#[cfg(feature = "sim")]
pub use runtime::TurmoilRuntime;
pub use runtime::{Runtime, TokioRuntime};
pub use service::{
    Acceptor, Inbox, ProtocolCount, Service, SessionInfo, SessionState, Status, Topic,
};
pub use session::{Direction, SessionRef};
pub use time::Instant;

/// Internals for benchmarks only (feature `bench-internals`); not a stable API.
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod bench_api {
    pub use crate::buffer::{BufferPool, PoolConfig, ReadBuffer, SegmentQueue};
    pub use crate::crypto::bench::{
        DerivedKeys, HandshakeSetup, Opener, RECORD_HEADER, RECORD_OVERHEAD, RECORD_PAYLOAD_AT,
        Sealer, pure_handshake, x25519_dh,
    };
    pub use crate::crypto::{Cipher, KeyPair, PublicKey};
    pub use crate::message::{HEADER_BYTES, LEN_BYTES, Parsed, encode_frame, parse_frame};
}

/// Decoders and state machines for the fuzz targets only (feature `fuzzing`); not a stable
/// API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_api;

/// Re-exported so message types can derive the serialization traits with a matching version.
pub use borsh;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
