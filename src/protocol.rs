//! [`Protocol`]: the wire protocols a session can speak, as a type. Their names (`"bits"`,
//! `"bits-hpke"`) exist only at the edge, for configuration files: [`Protocol::name`],
//! `Display` and `FromStr`.

use std::fmt;
use std::str::FromStr;

/// A wire protocol: what [`Service::accept`](crate::Service::accept) and
/// [`Service::connect`](crate::Service::connect) open sessions with, and the sessions a
/// [`Topic`](crate::Topic) is about.
///
/// ```
/// use laxnet::Protocol;
///
/// let p: Protocol = "bits-hpke".parse()?; // e.g. from a configuration file
/// assert_eq!(p, Protocol::BitsHpke);
/// assert_eq!(p.to_string(), "bits-hpke");
/// assert!("tls".parse::<Protocol>().is_err());
/// # Ok::<(), laxnet::UnknownProtocol>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// `"bits"`: borsh messages in length-prefixed frames, in plaintext.
    Bits,
    /// `"bits-hpke"`: the same frames in authenticated records after an HPKE handshake. Needs
    /// `Config::encryption`: with an identity key pair to accept, with the server's public
    /// key to connect (see [`Encryption`](crate::Encryption)).
    BitsHpke,
}

impl Protocol {
    /// Every protocol, in declaration order (the order of
    /// [`Status::sessions`](crate::Status::sessions)).
    pub const ALL: [Protocol; 2] = [Protocol::Bits, Protocol::BitsHpke];

    /// Its name: `"bits"` or `"bits-hpke"`.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Bits => "bits",
            Protocol::BitsHpke => "bits-hpke",
        }
    }

    /// Whether its sessions are encrypted (and need `Config::encryption`).
    pub const fn is_encrypted(self) -> bool {
        matches!(self, Protocol::BitsHpke)
    }

    /// Its position in [`Protocol::ALL`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// The protocol named `name` (exactly as [`Protocol::name`] spells it).
    fn from_str(name: &str) -> Result<Protocol, UnknownProtocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| UnknownProtocol::new(name))
    }
}

/// A name that names no [`Protocol`]: the error of parsing one
/// (`"tls".parse::<Protocol>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProtocol {
    name: String,
}

impl UnknownProtocol {
    pub(crate) fn new(name: &str) -> UnknownProtocol {
        UnknownProtocol {
            name: name.to_string(),
        }
    }

    /// The name that was given.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown protocol {:?} (known: ", self.name)?;
        for (i, p) in Protocol::ALL.into_iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{:?}", p.name())?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownProtocol {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_all() {
        for (i, p) in Protocol::ALL.into_iter().enumerate() {
            assert_eq!(p.index(), i);
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
            assert_eq!(format!("{p:<10}|"), format!("{:<10}|", p.name()));
        }
        let err = "Bits".parse::<Protocol>().unwrap_err();
        assert_eq!(err.name(), "Bits");
        assert_eq!(
            err.to_string(),
            "unknown protocol \"Bits\" (known: \"bits\", \"bits-hpke\")"
        );
    }
}
