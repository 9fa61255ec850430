//! laxnet's integration suite: every scenario runs on real loopback sockets (`tokio_backend`)
//! and inside the turmoil simulator with several seeds (`turmoil_backend::<scenario>::seed_N`).
//!
//! Run with `cargo test --features sim --test suite`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod harness;
mod scenarios;

/// Instantiates each scenario once per backend (and once per seed on turmoil).
macro_rules! suite {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod tokio_backend {
            $(
                $(#[$attr])*
                #[test]
                fn $name() {
                    crate::harness::run_tokio(crate::scenarios::$name);
                }
            )*
        }
        mod turmoil_backend {
            $(
                mod $name {
                    $(#[$attr])*
                    #[test]
                    fn seed_1() {
                        crate::harness::run_turmoil(crate::harness::SEEDS[0], crate::scenarios::$name);
                    }
                    $(#[$attr])*
                    #[test]
                    fn seed_2() {
                        crate::harness::run_turmoil(crate::harness::SEEDS[1], crate::scenarios::$name);
                    }
                    $(#[$attr])*
                    #[test]
                    fn seed_3() {
                        crate::harness::run_turmoil(crate::harness::SEEDS[2], crate::scenarios::$name);
                    }
                }
            )*
        }
    };
}

suite! {
    echo,
    many_sessions,
    close_from_server,
    close_from_client,
    close_with_queued_data,
    peer_crash,
    heartbeat_silent_peer,
    stale_ref,
    unknown_protocol,
    bad_input,
    max_sessions,
    shutdown,
    duplicate_message_id,
    dropped_acceptor_keeps_listening,
    status_consistent_while_closing,
}
