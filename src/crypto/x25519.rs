//! X25519 (RFC 7748) for the handshake, on curve25519-dalek, a handshake step at a time.
//!
//! x25519-dalek computes a Diffie-Hellman operation with the Montgomery ladder, which runs on
//! curve25519-dalek's scalar field arithmetic whatever the CPU. Where curve25519-dalek has a
//! vector backend (AVX2, which it detects at run time; AVX-512 IFMA, which it detects at run
//! time in builds with `--cfg curve25519_dalek_backend="avx512"` — this workspace's
//! `.cargo/config.toml` — or for targets that have it), its constant-time variable-base
//! multiplication on the Edwards form of the curve is faster than the ladder, and faster
//! still on AVX-512 IFMA (the figures: docs/performance.md, "Records and handshake"), so a
//! step here:
//!
//! - maps each peer point to the Edwards form once ([`Point::new`]), even when the step uses it
//!   twice (the server multiplies the client's ephemeral key by two secrets);
//! - multiplies in the Edwards form (base-point multiplications use the precomputed table);
//! - converts all of the step's results back to Montgomery `u` with one batched inversion.
//!
//! A point that every handshake of a service uses (the client's pinned server key) is a
//! [`FixedPoint`]: once it has served enough Diffie-Hellman operations ([`table_after`]), it
//! builds a table of its multiples (curve25519-dalek's radix-16 basepoint table: 30 KiB),
//! with which each further one costs what a base-point multiplication does, on any backend.
//! Building the table costs many operations' worth of time: waiting first keeps a service
//! that connects a few times from paying for it.
//!
//! The results are the RFC 7748 function's, bit for bit (the tests compare against the
//! ladder, including points on the twist, low-order points and non-canonical encodings), so
//! the choice changes speed only, never bytes: simulation traces do not depend on the CPU.
//! Points with no Edwards form (the twist, and `u = −1`) and CPUs without a vector backend
//! take the ladder. The mapping depends only on the public point, so branching on it leaks
//! nothing about a secret.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use curve25519_dalek::edwards::{EdwardsBasepointTable, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{BasepointTable, IsIdentity};
use zeroize::Zeroizing;

/// A public X25519 key, ready for Diffie-Hellman.
pub(crate) struct Point(Form);

enum Form {
    Edwards(EdwardsPoint),
    Montgomery(MontgomeryPoint),
}

/// Whether `u` is the canonical encoding of a field element: the top bit clear and
/// `u < p = 2^255 − 19`. Every X25519 output is (RFC 7748 reduces and encodes in 255 bits).
fn canonical(u: &[u8; 32]) -> bool {
    // With the top bit clear, u ≥ p exactly when u = p + k for k < 19: bytes 1..31 all
    // 0xff, byte 31 0x7f and byte 0 at least 0xed.
    u[31] & 0x80 == 0 && !(u[31] == 0x7f && u[1..31].iter().all(|&b| b == 0xff) && u[0] >= 0xed)
}

impl Point {
    /// The point with `u`-coordinate `u`, as RFC 7748 reads any 32-byte string (on the curve
    /// or its twist; it masks the top bit and reduces non-canonical values). For keys this
    /// side configured itself (the pinned server key, an allow-list); a peer's keys go through
    /// [`Point::from_peer`].
    pub(crate) fn new(u: &[u8; 32]) -> Point {
        let m = MontgomeryPoint(*u);
        if vector_backend()
            && let Some(e) = m.to_edwards(0)
        {
            // Either sign: P and −P have the same `u`, and so do k·P and k·(−P).
            return Point(Form::Edwards(e));
        }
        Point(Form::Montgomery(m))
    }

    /// A public key a peer sent, or `None` if no honest peer sends it: a non-canonical
    /// encoding, a `u` that is not on the curve (about half of all 32-byte strings are on its
    /// twist, whose multiplication is the slower ladder) or a point of small order (whose
    /// Diffie-Hellman output is all zeros). Costs one mapping to the Edwards form (an
    /// inversion and a square root), which the vector backend's multiplication needs anyway,
    /// and three doublings; no scalar multiplication.
    pub(crate) fn from_peer(u: &[u8; 32]) -> Option<Point> {
        let e = edwards_of_peer(u)?;
        Some(Point(if vector_backend() {
            Form::Edwards(e)
        } else {
            Form::Montgomery(MontgomeryPoint(*u))
        }))
    }
}

impl Point {
    /// A static key a peer sent (a client's), or `None` unless [`is_valid_static_key`].
    pub(crate) fn from_peer_static(u: &[u8; 32]) -> Option<Point> {
        let e = edwards_of_peer(u)?;
        if !is_torsion_free_vartime(&e) {
            return None;
        }
        Some(Point(if vector_backend() {
            Form::Edwards(e)
        } else {
            Form::Montgomery(MontgomeryPoint(*u))
        }))
    }
}

/// The Edwards form of a peer's `u`, if [`Point::from_peer`] accepts it.
fn edwards_of_peer(u: &[u8; 32]) -> Option<EdwardsPoint> {
    if !canonical(u) {
        return None;
    }
    // `None` exactly for points of the twist (including u = −1, the one exceptional point
    // of the birational map, which lies on the twist).
    let e = MontgomeryPoint(*u).to_edwards(0)?;
    (!e.is_small_order()).then_some(e)
}

/// Whether `u` is a static public key as an honest key pair has it: what
/// [`Point::from_peer`] accepts, and in the prime-order subgroup (no torsion component), so
/// that one secret key has exactly one public key (clamping makes `k·(P + T)` equal `k·P`
/// for a torsion point `T`, so a key with torsion added would authenticate with the same
/// secret). The subgroup check is one scalar multiplication by the group order (the point is
/// public, so its variable time leaks nothing).
pub(crate) fn is_valid_static_key(u: &[u8; 32]) -> bool {
    edwards_of_peer(u).is_some_and(|e| is_torsion_free_vartime(&e))
}

/// `ℓ·P == O` for the prime order ℓ, in variable time: `(ℓ − 1)·P + P` (a reduced scalar
/// cannot hold ℓ itself).
fn is_torsion_free_vartime(p: &EdwardsPoint) -> bool {
    // ℓ − 1 = 2^252 + 27742317777372353535851937790883648492, little-endian.
    const L_MINUS_ONE: [u8; 32] = [
        0xec, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let l_minus_one = Option::<Scalar>::from(Scalar::from_canonical_bytes(L_MINUS_ONE))
        .expect("ℓ − 1 is canonical");
    let q = EdwardsPoint::vartime_double_scalar_mul_basepoint(&l_minus_one, p, &Scalar::ZERO);
    (q + p).is_identity()
}

/// Diffie-Hellman operations a [`FixedPoint`] serves before it builds its table: about as
/// many as it takes for the time saved to pay for the table, so a service that keeps
/// connecting pays at most about twice the least it could have (the ski-rental rule), and one
/// that connects a few times pays nothing. The table saves much more per operation on AVX2
/// than with AVX-512 IFMA, whose variable-base multiplication is almost as fast as the
/// table's, hence the two thresholds (the measured costs behind them: docs/performance.md,
/// "Handshake: the one-core target").
pub(crate) fn table_after() -> u32 {
    if ifma_backend() { 512 } else { 64 }
}

/// A peer point used by many handshakes of a service (see the module docs).
pub(crate) struct FixedPoint {
    point: Point,
    /// Operations before the table is built.
    after: u32,
    uses: AtomicU32,
    table: OnceLock<Box<EdwardsBasepointTable>>,
}

impl FixedPoint {
    pub(crate) fn new(u: &[u8; 32]) -> FixedPoint {
        FixedPoint::with_threshold(u, table_after())
    }

    fn with_threshold(u: &[u8; 32], after: u32) -> FixedPoint {
        FixedPoint {
            point: Point::new(u),
            after,
            uses: AtomicU32::new(0),
            table: OnceLock::new(),
        }
    }

    /// `X25519(k, P)` for a batch, through the table once this point has served
    /// [`table_after`] operations (building it then, once, if several threads get there).
    pub(crate) fn dh<'a>(&'a self, k: &'a [u8; 32]) -> Op<'a> {
        if let Some(t) = self.table.get() {
            return Op::Table(k, t);
        }
        let Point(Form::Edwards(p)) = &self.point else {
            // The ladder has no table (and such a point is no real server key).
            return Op::Dh(k, &self.point);
        };
        if self.uses.fetch_add(1, Relaxed) < self.after {
            return Op::Dh(k, &self.point);
        }
        Op::Table(
            k,
            self.table
                .get_or_init(|| Box::new(EdwardsBasepointTable::create(p))),
        )
    }

    /// The point itself (for a one-off operation that should not count as a use).
    pub(crate) fn point(&self) -> &Point {
        &self.point
    }

    #[cfg(test)]
    fn has_table(&self) -> bool {
        self.table.get().is_some()
    }
}

/// One X25519 operation of a batch.
pub(crate) enum Op<'a> {
    /// `X25519(k, 9)`: the public key of the secret `k`.
    Base(&'a [u8; 32]),
    /// `X25519(k, P)`: the shared secret of `k` with the peer point `P`.
    Dh(&'a [u8; 32], &'a Point),
    /// `X25519(k, P)` with a table of `P`'s multiples (from [`FixedPoint::dh`]).
    Table(&'a [u8; 32], &'a EdwardsBasepointTable),
}

/// The `u`-coordinates of `ops`, in order: RFC 7748's `X25519` (the secrets are clamped). A
/// Diffie-Hellman with a low-order point gives all zeros, which the caller must refuse.
///
/// The results are shared secrets, so they come back zeroed on drop, and so is every buffer
/// here that held one (the Edwards results and curve25519-dalek's vector of their `u`s).
/// What this cannot reach: copies on the stack inside curve25519-dalek, and the scratch
/// vectors of its batched inversion (denominators `Z − Y` of the results and their
/// products, freed without zeroing).
pub(crate) fn batch<const N: usize>(ops: [Op<'_>; N]) -> Zeroizing<[[u8; 32]; N]> {
    #[cfg(test)]
    tests::count_multiplications(N);
    let mut out = Zeroizing::new([[0u8; 32]; N]);
    // Results still in the Edwards form, and their slots in `out`.
    let mut points = Zeroizing::new(Vec::with_capacity(N));
    let mut slots = Vec::with_capacity(N);
    for (i, op) in ops.into_iter().enumerate() {
        let p = match op {
            Op::Base(k) => EdwardsPoint::mul_base_clamped(*k),
            // Defined like `mul_clamped` for every clamped scalar (below 2^255, unreduced), so
            // a point outside the prime-order subgroup still gives RFC 7748's result.
            Op::Table(k, t) => t.mul_base_clamped(*k),
            Op::Dh(k, Point(Form::Edwards(p))) => p.mul_clamped(*k),
            Op::Dh(k, Point(Form::Montgomery(p))) => {
                out[i] = p.mul_clamped(*k).to_bytes();
                continue;
            }
        };
        points.push(p);
        slots.push(i);
    }
    let us = Zeroizing::new(EdwardsPoint::to_montgomery_batch(&points));
    for (&i, u) in slots.iter().zip(us.iter()) {
        out[i] = u.to_bytes();
    }
    out
}

/// Whether curve25519-dalek multiplies Edwards points with vector instructions here: on
/// x86-64 it picks its AVX2 backend at run time when the CPU has AVX2 (AVX-512 IFMA when the
/// build targets it, which implies AVX2)
/// (std's cached feature detection makes the same check), unless the build forces a scalar
/// backend with `--cfg curve25519_dalek_backend="serial"` or `"fiat"` (RUSTFLAGS reach this
/// crate too). Without vector instructions the ladder is the faster way.
fn vector_backend() -> bool {
    #[cfg(all(
        target_arch = "x86_64",
        not(any(curve25519_dalek_backend = "serial", curve25519_dalek_backend = "fiat"))
    ))]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        not(any(curve25519_dalek_backend = "serial", curve25519_dalek_backend = "fiat"))
    )))]
    {
        false
    }
}

/// Whether curve25519-dalek multiplies with AVX-512 IFMA here: it was built with that backend
/// (`--cfg curve25519_dalek_backend="avx512"`, or a target that has the features, and no
/// scalar backend forced) and the CPU has the instructions — the check it makes at run time.
fn ifma_backend() -> bool {
    let built = cfg!(all(
        not(any(
            curve25519_dalek_backend = "serial",
            curve25519_dalek_backend = "fiat"
        )),
        any(
            curve25519_dalek_backend = "avx512",
            all(target_feature = "avx512ifma", target_feature = "avx512vl")
        )
    ));
    #[cfg(target_arch = "x86_64")]
    {
        built
            && std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = built;
        false
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    thread_local! {
        static MULTIPLICATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Counts the scalar multiplications [`batch`] is asked for, on this thread.
    pub(super) fn count_multiplications(n: usize) {
        MULTIPLICATIONS.with(|c| c.set(c.get() + n));
    }

    /// Scalar multiplications [`batch`] did on this thread so far (tests show that a check
    /// comes before any).
    pub(crate) fn multiplications() -> usize {
        MULTIPLICATIONS.with(|c| c.get())
    }

    fn ladder(k: &[u8; 32], u: &[u8; 32]) -> [u8; 32] {
        MontgomeryPoint(*u).mul_clamped(*k).to_bytes()
    }

    /// p = 2^255 − 19, little-endian, plus `add`.
    fn p_plus(add: u8) -> [u8; 32] {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let (lo, carry) = p[0].overflowing_add(add);
        p[0] = lo;
        assert!(!carry, "stays below 2^255");
        p
    }

    #[test]
    fn matches_rfc_7748_test_vectors() {
        // RFC 7748 §5.2, the two single-operation vectors.
        let cases = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ];
        for (k, u, want) in cases {
            let (k, u, want) = (hex(k), hex(u), hex(want));
            assert_eq!(*batch([Op::Dh(&k, &Point::new(&u))]), [want]);
            assert_eq!(ladder(&k, &u), want);
        }
        // §6.1: Alice's public key.
        let alice = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        assert_eq!(
            *batch([Op::Base(&alice)]),
            [hex(
                "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
            )]
        );
    }

    #[test]
    fn agrees_with_the_ladder_on_every_kind_of_point() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut points: Vec<[u8; 32]> = Vec::new();
        for _ in 0..64 {
            // Random strings: about half are on the curve, half on the twist.
            let mut u = [0u8; 32];
            rng.fill_bytes(&mut u);
            points.push(u);
            // Public keys (on the curve, in the prime-order subgroup).
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            points.push(ladder(&k, &nine()));
        }
        // Low-order points (RFC 7748 §7 / libsodium's blocklist), u = −1 (= p − 1), and
        // non-canonical encodings: p + k for small k, and the top bit set.
        for small in [0u8, 1, 2, 3, 9, 18] {
            points.push(p_plus(small));
        }
        points.push(hex(
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ));
        points.push(hex(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        ));
        points.push(hex(
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        ));
        points.push([0; 32]);
        let mut one = [0; 32];
        one[0] = 1;
        points.push(one);
        for i in 0..points.len() {
            let mut high = points[i];
            high[31] |= 0x80;
            points.push(high);
        }
        let mut twist = 0;
        for u in &points {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            let p = Point::new(u);
            if matches!(p.0, Form::Montgomery(_)) {
                twist += 1;
            }
            let [a, b] = *batch([Op::Dh(&k, &p), Op::Base(&k)]);
            assert_eq!(a, ladder(&k, u), "u = {u:02x?}");
            assert_eq!(
                b,
                ladder(&k, &nine()),
                "the batch keeps each result in its slot"
            );
        }
        if vector_backend() {
            assert!(
                twist > 10 && twist < points.len() - 10,
                "both forms are exercised: {twist} of {}",
                points.len()
            );
        }
    }

    #[test]
    fn a_fixed_point_builds_its_table_after_enough_uses_and_agrees_with_the_ladder() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        let mut points = vec![ladder(&k, &nine())];
        // A point with a torsion component (a public key plus a point of order 8): clamped
        // scalars clear it, with a table as without.
        let p8 = hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
        let torsion = EdwardsPoint::mul_base_clamped(k)
            + MontgomeryPoint(p8).to_edwards(0).expect("on the curve");
        points.push(torsion.to_montgomery().to_bytes());
        // On the twist (about every other random string is): no Edwards form, so never a
        // table.
        let twist = std::iter::repeat_with(|| {
            let mut u = [0u8; 32];
            rng.fill_bytes(&mut u);
            u
        })
        .find(|u| MontgomeryPoint(*u).to_edwards(0).is_none())
        .expect("a twist point");
        points.push(twist);
        for u in &points {
            // The real thresholds (64 or 512) only make the test slower in debug builds.
            let after = 16;
            let fixed = FixedPoint::with_threshold(u, after);
            let edwards = matches!(fixed.point.0, Form::Edwards(_));
            for i in 0..after + 8 {
                assert_eq!(fixed.has_table(), edwards && i > after, "use {i}");
                rng.fill_bytes(&mut k);
                let [a, b] = *batch([fixed.dh(&k), Op::Base(&k)]);
                assert_eq!(a, ladder(&k, u), "use {i}, u = {u:02x?}");
                assert_eq!(b, ladder(&k, &nine()));
            }
            assert_eq!(fixed.has_table(), edwards, "u = {u:02x?}");
            assert_eq!(edwards, vector_backend() && *u != twist);
        }
    }

    #[test]
    fn a_low_order_point_gives_zero_without_spoiling_the_batch() {
        let zero_order = [0u8; 32];
        let eight = hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
        let k = [0x42; 32];
        let other = Point::new(&ladder(&[5; 32], &nine()));
        for low in [zero_order, eight] {
            let [a, b, c] = *batch([
                Op::Dh(&k, &other),
                Op::Dh(&k, &Point::new(&low)),
                Op::Base(&k),
            ]);
            assert_eq!(b, [0; 32], "a low-order point gives the all-zero output");
            assert_eq!(a, ladder(&k, &ladder(&[5; 32], &nine())));
            assert_eq!(c, ladder(&k, &nine()));
        }
    }

    /// Which of curve25519-dalek's backends does the handshake's multiplications here:
    /// `"serial"` (scalar code: a build that forces the serial or fiat backend, or a CPU
    /// without AVX2), `"avx2"` or `"avx512-ifma"`.
    fn backend_name() -> &'static str {
        if ifma_backend() {
            "avx512-ifma"
        } else if vector_backend() {
            "avx2"
        } else {
            "serial"
        }
    }

    /// `ci/test.sh` runs these tests once per backend this CPU can run and names the one it
    /// built for in `LAXNET_X25519_BACKEND`: this checks that the build really runs it.
    #[test]
    fn runs_on_the_backend_ci_asked_for() {
        let name = backend_name();
        eprintln!("X25519 backend: {name}");
        if let Ok(want) = std::env::var("LAXNET_X25519_BACKEND")
            && !want.is_empty()
        {
            assert_eq!(name, want, "LAXNET_X25519_BACKEND");
        }
    }

    fn nine() -> [u8; 32] {
        let mut u = [0; 32];
        u[0] = 9;
        u
    }

    fn hex(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn peers_points_off_the_curve_non_canonical_or_of_small_order_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let (mut on, mut twist) = (0, 0);
        for _ in 0..200 {
            let mut u = [0u8; 32];
            rng.fill_bytes(&mut u);
            u[31] &= 0x7f;
            let curve = MontgomeryPoint(u).to_edwards(0).is_some();
            let small = curve && MontgomeryPoint(u).to_edwards(0).unwrap().is_small_order();
            assert_eq!(
                Point::from_peer(&u).is_some(),
                curve && !small,
                "u = {u:02x?}"
            );
            if curve { on += 1 } else { twist += 1 }
        }
        assert!(
            on > 50 && twist > 50,
            "both kinds drawn: {on} on the curve, {twist} not"
        );
        // Honest public keys pass, and as static keys too.
        for _ in 0..16 {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            let pk = ladder(&k, &nine());
            assert!(Point::from_peer(&pk).is_some());
            assert!(is_valid_static_key(&pk));
            // The same key with the top bit set, or plus p (where that stays below 2^256):
            // refused, though RFC 7748 reads them as the same point.
            let mut high = pk;
            high[31] |= 0x80;
            assert!(Point::from_peer(&high).is_none());
            assert!(!is_valid_static_key(&high));
        }
        // Non-canonical encodings p + k of small k (p + 1 is u = 1, on the curve).
        for small in [0u8, 1, 2, 9, 18] {
            assert!(Point::from_peer(&p_plus(small)).is_none(), "p + {small}");
        }
        // Low-order points (RFC 7748 §7) and u = −1 (on the twist).
        for low in [
            [0u8; 32],
            {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            },
            hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
            hex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
            hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        ] {
            assert!(Point::from_peer(&low).is_none(), "u = {low:02x?}");
            assert!(!is_valid_static_key(&low));
        }
        // A public key plus a point of order 8: on the curve and not of small order (an
        // ephemeral key like that is harmless: clamping clears the torsion), but not a static
        // key, since the same secret would also prove it.
        let k = [0x31; 32];
        let p8 = hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
        let torsion = EdwardsPoint::mul_base_clamped(k)
            + MontgomeryPoint(p8).to_edwards(0).expect("on the curve");
        let t = torsion.to_montgomery().to_bytes();
        assert!(Point::from_peer(&t).is_some());
        assert!(!is_valid_static_key(&t));
        assert_eq!(
            ladder(&[0x55; 32], &t),
            ladder(&[0x55; 32], &ladder(&k, &nine())),
            "the same DH output as the key without torsion"
        );
    }
}
