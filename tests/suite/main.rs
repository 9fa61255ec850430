//! laxnet's integration suite: every scenario runs on real loopback sockets (`tokio_backend`)
//! and inside the turmoil simulator with several seeds (`turmoil_backend::<scenario>::seed_N`),
//! over the plaintext protocol `"bits"`; every scenario that means something over encryption
//! runs again, on both backends, over `"bits-hpke"` (`tokio_backend_hpke`,
//! `turmoil_backend_hpke`).
//!
//! `harness/` runs a scenario on either backend (see its module docs); `scenarios/` holds one
//! file per scenario and the helpers they share. Run with
//! `cargo test --features sim --test suite` (a name filters, e.g. `... --test suite peer_crash`).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod harness;
mod scenarios;

/// Instantiates each scenario once per backend (and once per seed on turmoil), for each
/// protocol: `plain` lists the scenarios run over `"bits"`, `hpke` those run over
/// `"bits-hpke"`, and `seeds` names the turmoil test of each seed (`seed_1 = 1`:
/// `turmoil_backend::<scenario>::seed_1` runs seed 1).
macro_rules! suite {
    (
        seeds: $seeds:tt,
        plain: [$($(#[$pattr:meta])* $plain:ident),* $(,)?],
        hpke: [$($(#[$hattr:meta])* $hpke:ident),* $(,)?] $(,)?
    ) => {
        suite!(@backends tokio_backend, turmoil_backend, crate::harness::BITS, $seeds,
            $($(#[$pattr])* $plain),*);
        suite!(@backends tokio_backend_hpke, turmoil_backend_hpke, crate::harness::HPKE, $seeds,
            $($(#[$hattr])* $hpke),*);
    };
    (@backends $tokio:ident, $turmoil:ident, $proto:expr, $seeds:tt,
        $($(#[$attr:meta])* $name:ident),*) => {
        mod $tokio {
            $(
                $(#[$attr])*
                #[test]
                fn $name() {
                    crate::harness::run_tokio($proto, crate::scenarios::$name);
                }
            )*
        }
        mod $turmoil {
            $(
                mod $name {
                    suite!(@seeds $proto, $name, [$(#[$attr])*], $seeds);
                }
            )*
        }
    };
    (@seeds $proto:expr, $name:ident, $attrs:tt, [$($test:ident = $seed:literal),* $(,)?]) => {
        $(
            suite!(@seed $proto, $name, $attrs, $test, $seed);
        )*
    };
    (@seed $proto:expr, $name:ident, [$(#[$attr:meta])*], $test:ident, $seed:literal) => {
        $(#[$attr])*
        #[test]
        fn $test() {
            crate::harness::run_turmoil($seed, $proto, crate::scenarios::$name);
        }
    };
}

suite! {
    seeds: [seed_1 = 1, seed_2 = 2, seed_3 = 3],
    plain: [
        echo,
        many_sessions,
        close_from_server,
        close_from_client,
        close_with_reaches_the_peer,
        close_with_queued_data,
        peer_crash,
        heartbeat_silent_peer,
        stale_ref,
        protocol_misuse,
        bad_input,
        max_sessions,
        shutdown,
        duplicate_message_id,
        dropped_acceptor_keeps_listening,
        status_consistent_while_closing,
        bulk_send_waits_for_room,
        a_message_larger_than_the_queue_limit_is_sent,
        waiting_partial_frame_holds_a_small_block,
    ],
    // `protocol_misuse` needs services without encryption keys; `bad_input` and
    // `waiting_partial_frame_holds_a_small_block` are about "bits" itself (its frames, which
    // an attacker cannot put inside records without the keys); `bad_handshake` is the
    // encrypted listener's counterpart of `bad_input`.
    hpke: [
        echo,
        many_sessions,
        close_from_server,
        close_from_client,
        close_with_reaches_the_peer,
        close_with_queued_data,
        peer_crash,
        heartbeat_silent_peer,
        stale_ref,
        bad_handshake,
        max_sessions,
        shutdown,
        duplicate_message_id,
        dropped_acceptor_keeps_listening,
        status_consistent_while_closing,
        bulk_send_waits_for_room,
        a_message_larger_than_the_queue_limit_is_sent,
        // A session refused after its handshake completed (the refusing side is full): the
        // refusing side closes it with an authenticated Close record carrying its reason, so
        // its peer sees the refusal (service full), never `Crypto(Truncated)` (the scenarios
        // assert exactly that).
        server_refuses_after_handshake,
        client_refuses_after_handshake,
    ],
}
