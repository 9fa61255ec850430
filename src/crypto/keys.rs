//! Static X25519 keys: generation, bytes, files.

use std::fmt;
use std::io;
use std::path::Path;

use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, Serializable};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, Zeroizing};

use super::x25519;

/// RFC 9180's DHKEM(X25519, HKDF-SHA256), from the `hpke` crate: derives key pairs from seeds
/// and is the reference the handshake's own DHKEM is tested against.
pub(crate) type Kem = X25519HkdfSha256;
pub(crate) type SecretKey = <Kem as hpke::Kem>::PrivateKey;
pub(crate) type KemPublicKey = <Kem as hpke::Kem>::PublicKey;

/// An X25519 public key (32 bytes): the server's pinned identity or an allowed client.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub(crate) [u8; 32]);

impl PublicKey {
    /// The key's bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A key from its 32 bytes. Fails ([`KeyError::Invalid`]) unless they are a public key
    /// some X25519 key pair has: the canonical encoding (top bit clear, below 2^255 − 19) of
    /// a point on the curve (not its twist) in the prime-order subgroup (so not of small
    /// order). Each secret key has exactly one such public key; RFC 7748 would read other
    /// encodings, or the key with a small-order point added, as interchangeable with it.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<PublicKey, KeyError> {
        if !x25519::is_valid_static_key(&bytes) {
            return Err(KeyError::Invalid);
        }
        Ok(PublicKey(bytes))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<PublicKey, KeyError> {
        let bytes = parse_hex32(s.trim()).ok_or(KeyError::Invalid)?;
        PublicKey::from_bytes(bytes)
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    parse_hex32_into(s.as_bytes(), &mut out)?;
    Some(out)
}

/// Parses 64 hex digits into `out` (no copies of the bytes elsewhere).
fn parse_hex32_into(s: &[u8], out: &mut [u8; 32]) -> Option<()> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if s.len() != 64 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(())
}

/// The most bytes [`KeyPair::load`] reads: 64 hex digits, a line ending and some whitespace.
const MAX_KEY_FILE: usize = 128;

/// A static X25519 key pair: a server's identity, or a client's for client authentication.
///
/// `Debug` never prints the secret half.
#[derive(Clone)]
pub struct KeyPair {
    /// Clamped (RFC 7748), as RFC 9180's `DeserializePrivateKey` leaves it.
    pub(crate) secret: StaticSecret,
    pub(crate) public: PublicKey,
}

/// A key could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not a valid key.
    Invalid,
    /// Reading or writing the key file failed.
    Io(io::Error),
    /// The key file may be read or written by others than its owner: its Unix mode (given
    /// here) has group or other permission bits. `chmod 600` it.
    InsecurePermissions(u32),
    /// The path is not a regular file, or larger than a key file can be.
    NotAKeyFile,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Invalid => f.write_str("invalid key"),
            KeyError::Io(e) => write!(f, "key file: {e}"),
            KeyError::InsecurePermissions(mode) => write!(
                f,
                "key file is accessible to others than its owner (mode {mode:03o}; use 0600)"
            ),
            KeyError::NotAKeyFile => {
                f.write_str("not a key file (not a regular file, or too large)")
            }
        }
    }
}

impl std::error::Error for KeyError {}

impl KeyPair {
    /// A new key pair from the operating system's RNG.
    pub fn generate() -> KeyPair {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::TryRng::try_fill_bytes(&mut getrandom::SysRng, &mut *seed)
            .expect("the operating system's random number generator is unavailable");
        KeyPair::from_seed(&seed)
    }

    /// The key pair derived from `seed` (deterministic: for tests and simulations).
    pub fn from_seed(seed: &[u8; 32]) -> KeyPair {
        let (secret, public) = Kem::derive_keypair(seed);
        KeyPair::from_kem(&secret, &public)
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret key's 32 bytes. Keep them secret, and zero them after use (e.g. hold them in
    /// a `zeroize::Zeroizing`); the key pair zeroes its own copy when dropped.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// A key pair from the secret key's 32 bytes.
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Result<KeyPair, KeyError> {
        let bytes = Zeroizing::new(bytes);
        let secret = SecretKey::from_bytes(&*bytes).map_err(|_| KeyError::Invalid)?;
        let public = Kem::sk_to_pk(&secret);
        Ok(KeyPair::from_kem(&secret, &public))
    }

    fn from_kem(secret: &SecretKey, public: &KemPublicKey) -> KeyPair {
        let mut encoded = secret.to_bytes();
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&encoded);
        encoded[..].zeroize();
        KeyPair {
            secret: StaticSecret::from(*bytes),
            public: PublicKey(public.to_bytes().into()),
        }
    }

    /// Writes the secret key to `path` as hex, readable by the owner only (mode 0600 on Unix).
    /// Fails if the file exists.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), KeyError> {
        use std::io::Write;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).map_err(KeyError::Io)?;
        let secret = Zeroizing::new(self.secret_bytes());
        let mut text = Zeroizing::new([b'\n'; 65]);
        for (pair, b) in text.chunks_exact_mut(2).zip(secret.iter()) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
        f.write_all(&*text).map_err(KeyError::Io)
    }

    /// Reads a key written by [`KeyPair::save`]: 64 hex digits, surrounding whitespace
    /// allowed. Refuses, before reading a byte of it, a path that is not a regular file (a
    /// FIFO, a device, a directory: [`KeyError::NotAKeyFile`], without waiting for a writer)
    /// or a file larger than a key file can be, and on Unix a file that its group or others
    /// may read or write ([`KeyError::InsecurePermissions`]). Reads at most 128 bytes, and
    /// zeroes what it read.
    pub fn load(path: impl AsRef<Path>) -> Result<KeyPair, KeyError> {
        use std::io::Read;
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        // Opening a FIFO for reading waits for a writer, unless non-blocking; a regular
        // file's reads are not affected.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NONBLOCK);
        let f = opts.open(path).map_err(KeyError::Io)?;
        // The metadata of the file opened, not of whatever the path names by now.
        let meta = f.metadata().map_err(KeyError::Io)?;
        if !meta.is_file() || meta.len() > MAX_KEY_FILE as u64 {
            return Err(KeyError::NotAKeyFile);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::InsecurePermissions(mode));
            }
        }
        let mut buf = Zeroizing::new([0u8; MAX_KEY_FILE + 1]);
        let mut len = 0;
        let mut f = f.take(MAX_KEY_FILE as u64 + 1);
        loop {
            match f.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(KeyError::Io(e)),
            }
        }
        if len > MAX_KEY_FILE {
            return Err(KeyError::NotAKeyFile); // it grew since the check
        }
        KeyPair::from_key_file(&buf[..len])
    }

    /// The key pair whose secret a key file's contents name (what [`KeyPair::load`] read):
    /// 64 hex digits, surrounding whitespace allowed; anything else is [`KeyError::Invalid`].
    pub(crate) fn from_key_file(contents: &[u8]) -> Result<KeyPair, KeyError> {
        let text = contents.trim_ascii();
        let mut bytes = Zeroizing::new([0u8; 32]);
        parse_hex32_into(text, &mut bytes).ok_or(KeyError::Invalid)?;
        KeyPair::from_secret_bytes(*bytes)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_round_trip_and_public_matches() {
        let k = KeyPair::from_seed(&[7; 32]);
        let k2 = KeyPair::from_secret_bytes(k.secret_bytes()).unwrap();
        assert_eq!(k.public(), k2.public());
        assert_eq!(
            k.public().to_string().parse::<PublicKey>().unwrap(),
            k.public()
        );
        assert!(!format!("{k:?}").contains(&format!("{:02x}", k.secret_bytes()[0]).repeat(4)));
    }

    #[test]
    fn save_is_owner_only_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("laxnet-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let k = KeyPair::from_seed(&[9; 32]);
        k.save(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(k.save(&dir).is_err(), "save must not overwrite");
        assert_eq!(KeyPair::load(&dir).unwrap().public(), k.public());
        std::fs::remove_file(&dir).unwrap();
    }

    /// A scratch path for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("laxnet-key-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    /// `load` on a path an attacker (or a mistake) made a FIFO: it must answer at once with a
    /// typed error, not wait for a writer. (Fails on the unhardened `load`, which blocks in
    /// `open` until someone writes.)
    #[cfg(unix)]
    #[test]
    fn load_refuses_a_fifo_at_once() {
        let path = scratch("fifo");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(KeyPair::load(&p));
        });
        let res = rx
            .recv_timeout(std::time::Duration::from_secs(2))
            .expect("load must not block on a FIFO");
        assert!(matches!(res, Err(KeyError::NotAKeyFile)), "{res:?}");
        std::fs::remove_file(&path).unwrap();
    }

    /// Bytes this thread has read through `read(2)` so far (Linux's per-thread I/O
    /// accounting; reading the counter itself adds its own few hundred bytes).
    #[cfg(target_os = "linux")]
    fn thread_rchar() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }

    /// A huge file (sparse here) is refused from its size without reading it; a key with
    /// trailing junk beyond what a key file holds, or junk in it, is not a key.
    #[test]
    fn load_reads_at_most_a_key_files_worth() {
        let path = scratch("huge");
        let f = {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            o.open(&path).unwrap()
        };
        f.set_len(64 << 30).unwrap(); // 64 GiB, sparse
        #[cfg(target_os = "linux")]
        let before = thread_rchar();
        assert!(matches!(KeyPair::load(&path), Err(KeyError::NotAKeyFile)));
        // Counted in bytes read, not time: the only reads between the two counters are
        // `load`'s and the counter's own (a line per field, well under a KiB).
        #[cfg(target_os = "linux")]
        {
            let read = thread_rchar() - before;
            assert!(read < 1024, "load read {read} bytes of a 64 GiB file");
        }
        drop(f);
        let k = KeyPair::from_seed(&[9; 32]);
        let hex: String = k
            .secret_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(&path, format!("  {hex}\r\n")).unwrap();
        assert_eq!(
            KeyPair::load(&path).unwrap().public(),
            k.public(),
            "whitespace is fine"
        );
        std::fs::write(&path, format!("{hex}\n{}", "0".repeat(200))).unwrap();
        assert!(matches!(KeyPair::load(&path), Err(KeyError::NotAKeyFile)));
        std::fs::write(&path, format!("{}zz", &hex[..62])).unwrap();
        assert!(matches!(KeyPair::load(&path), Err(KeyError::Invalid)));
        std::fs::remove_file(&path).unwrap();
        let dir = std::env::temp_dir();
        assert!(matches!(KeyPair::load(&dir), Err(KeyError::NotAKeyFile)));
    }

    /// A key file its group or others can read (or write) is refused, like ssh refuses such
    /// private keys. (Fails on the unhardened `load`, which reads it.)
    #[cfg(unix)]
    #[test]
    fn load_refuses_a_key_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let path = scratch("perm");
        let k = KeyPair::from_seed(&[9; 32]);
        k.save(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match KeyPair::load(&path) {
                Err(KeyError::InsecurePermissions(m)) => assert_eq!(m, mode),
                other => panic!("mode {mode:o}: {other:?}"),
            }
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(KeyPair::load(&path).unwrap().public(), k.public());
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn public_keys_are_valid_keys_only() {
        let k = KeyPair::from_seed(&[7; 32]);
        assert_eq!(
            PublicKey::from_bytes(k.public().to_bytes()).unwrap(),
            k.public()
        );
        let mut high = k.public().to_bytes();
        high[31] |= 0x80;
        assert!(matches!(
            PublicKey::from_bytes(high),
            Err(KeyError::Invalid)
        ));
        assert!(matches!(
            PublicKey::from_bytes([0; 32]),
            Err(KeyError::Invalid)
        ));
        assert!("00".repeat(32).parse::<PublicKey>().is_err());
    }
}
