//! The static key pairs of a run's fleets, derived from its seed: the servers' shared key
//! and, with `client_auth`, the clients' shared key.

use laxnet::KeyPair;

use crate::rng::Rng;

/// The static key pair of every server of a run with seed `seed` (they share it, as a
/// cluster behind one name would, because a client pins one server key). Restarts keep it.
pub fn server_key(seed: u64) -> KeyPair {
    fleet_key(seed, 0x4B45_5953)
}

/// The static key pair every client of a run with seed `seed` presents when the scenario has
/// `client_auth` (one fleet key, as the servers share theirs).
pub fn client_key(seed: u64) -> KeyPair {
    fleet_key(seed, 0x434C_4945)
}

/// A key pair from the run's seed and a stream tag that keeps the fleets' keys apart.
fn fleet_key(seed: u64, stream: u64) -> KeyPair {
    let mut rng = Rng::new(seed, stream);
    let mut b = [0u8; 32];
    for c in b.chunks_mut(8) {
        c.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    KeyPair::from_seed(&b)
}
