//! The hostile connections' attacks: what each sends (frames over the limit or too short,
//! unknown ids, bodies that do not decode, streams that end inside a frame, a frame of exactly
//! the maximum size, garbage or truncated hellos, silence, a trickle) and the
//! [`ProtocolViolation`] it must cause (see [`crate::rogue`]).

use std::str::FromStr;
use std::time::Duration;

use laxnet::{ProtocolViolation, wire};

use crate::msg::{self, Body};
use crate::rng::Rng;

/// One hostile connection's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attack {
    /// A frame header announcing more than `max_frame`.
    Oversized,
    /// A frame header announcing fewer than the 4 bytes of a message id.
    Short,
    /// A well-formed frame with a message id nobody registered.
    UnknownId,
    /// A `Data` frame whose body is cut short.
    Undecodable,
    /// A `Data` frame with valid contents followed by bytes that belong to no field.
    Trailing,
    /// Half a frame, then the end of the stream.
    Truncated,
    /// A valid frame of exactly `max_frame` (must be delivered), then one byte more (refused).
    Boundary,
    /// Random bytes where the ClientHello belongs.
    HelloGarbage,
    /// The start of a ClientHello, then the end of the stream.
    HelloTruncated,
    /// Connects and sends nothing.
    Silent,
    /// Sends garbage one byte at a time, slowly.
    Trickle,
}

impl Attack {
    /// Every attack with its scenario-file name.
    pub const ALL: [(Attack, &'static str); 11] = [
        (Attack::Oversized, "oversized"),
        (Attack::Short, "short"),
        (Attack::UnknownId, "unknown-id"),
        (Attack::Undecodable, "undecodable"),
        (Attack::Trailing, "trailing"),
        (Attack::Truncated, "truncated"),
        (Attack::Boundary, "boundary"),
        (Attack::HelloGarbage, "hello-garbage"),
        (Attack::HelloTruncated, "hello-truncated"),
        (Attack::Silent, "silent"),
        (Attack::Trickle, "trickle"),
    ];

    /// The scenario-file name.
    pub fn name(self) -> &'static str {
        Attack::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map_or("?", |(_, n)| n)
    }

    /// True for attacks on the encrypted protocol's handshake.
    pub fn encrypted(self) -> bool {
        matches!(
            self,
            Attack::HelloGarbage | Attack::HelloTruncated | Attack::Silent | Attack::Trickle
        )
    }
}

impl FromStr for Attack {
    type Err = String;
    fn from_str(s: &str) -> Result<Attack, String> {
        Attack::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(a, _)| *a)
            .ok_or_else(|| {
                let names: Vec<&str> = Attack::ALL.iter().map(|(_, n)| *n).collect();
                format!("unknown attack {s:?} (known: {})", names.join(", "))
            })
    }
}

/// What an attack sends and what it must cause.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The attack.
    pub attack: Attack,
    /// The bytes, in the order sent.
    pub bytes: Vec<u8>,
    /// Send them one byte at a time, this far apart.
    pub trickle: Option<Duration>,
    /// End the stream (FIN) after the bytes.
    pub fin: bool,
    /// The violation the server must close the session with, and how many bytes it must have
    /// read to see it. `None` where the end of the stream decides (`Truncated`: the oracle's
    /// end-of-stream rule) or where no session opens ("bits-hpke").
    pub expect: Option<(u64, ProtocolViolation)>,
    /// Valid messages before the violation (delivered to the server's subscribers).
    pub valid: u64,
}

/// Bytes of the fixed fields of a [`Body`] (borsh: host, inc, sid, seq, flags, payload length).
const BODY_FIXED: usize = 21;

/// A frame of message `id` with `body` (the plaintext wire format).
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(wire::FRAME_HEADER + body.len());
    f.extend_from_slice(&((wire::FRAME_ID + body.len()) as u32).to_le_bytes());
    f.extend_from_slice(&id.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// A [`Body`] as message `id` (1: `Data`, 2: `Bulk`, flagged as such) carries it.
fn body(id: u32, host: u16, seq: u64, payload: usize) -> Vec<u8> {
    let b = Body {
        host,
        inc: 0,
        sid: 0,
        seq,
        flags: if id == 2 { msg::BULK } else { 0 },
        payload: msg::pattern(seq, payload),
    };
    borsh::to_vec(&b).unwrap_or_default()
}

/// The bytes of `attack` from rogue host `host` against a server with `max_frame`.
pub fn plan(attack: Attack, host: u16, max_frame: usize, rng: &mut Rng) -> Plan {
    let max = u32::try_from(max_frame).unwrap_or(u32::MAX);
    let mut p = Plan {
        attack,
        bytes: Vec::new(),
        trickle: None,
        fin: false,
        expect: None,
        valid: 0,
    };
    match attack {
        Attack::Oversized => {
            let len = if rng.chance(0.2) {
                u32::MAX
            } else {
                max.saturating_add(1 + rng.range(0, 1000) as u32)
            };
            p.bytes.extend_from_slice(&len.to_le_bytes());
            p.bytes.extend_from_slice(&[0xAB; 16]);
            p.expect = Some((4, ProtocolViolation::FrameTooLarge { len, max }));
        }
        Attack::Short => {
            let len = rng.range(0, 3) as u32;
            p.bytes.extend_from_slice(&len.to_le_bytes());
            p.bytes.extend_from_slice(&[0; 8]);
            p.expect = Some((4, ProtocolViolation::FrameTooShort { len }));
        }
        Attack::UnknownId => {
            let id = 0xDEAD_0000 | rng.range(0, 0xFFFF) as u32;
            p.bytes = frame(id, &[7; 8]);
            p.expect = Some((
                p.bytes.len() as u64,
                ProtocolViolation::UnknownMessage { id },
            ));
        }
        Attack::Undecodable | Attack::Trailing => {
            let mut b = body(1, host, 0, rng.range(0, 40) as usize);
            if attack == Attack::Undecodable {
                b.truncate(rng.range(0, (b.len() - 1) as u64) as usize);
            } else {
                b.extend_from_slice(&[1, 2, 3][..rng.range(1, 3) as usize]);
            }
            p.bytes = frame(1, &b);
            p.expect = Some((
                p.bytes.len() as u64,
                ProtocolViolation::Undecodable {
                    id: 1,
                    type_name: std::any::type_name::<crate::msg::Data>(),
                },
            ));
        }
        Attack::Truncated => {
            let b = body(1, host, 0, rng.range(20, 200) as usize);
            let f = frame(1, &b);
            let keep = rng.range(1, (f.len() - 1) as u64) as usize;
            p.bytes = f[..keep].to_vec();
            p.fin = true;
        }
        Attack::Boundary => {
            // A `Bulk` frame whose length field is exactly `max_frame`: id (4) + body.
            let payload = max_frame.saturating_sub(wire::FRAME_ID + BODY_FIXED);
            p.bytes = frame(2, &body(2, host, 0, payload));
            let over = max.saturating_add(1);
            p.bytes.extend_from_slice(&over.to_le_bytes());
            p.bytes.extend_from_slice(&[0xCD; 16]);
            // Seen once the next frame's length prefix is in: the library refuses the length
            // before it reads the id.
            let at = (wire::FRAME_HEADER + BODY_FIXED + payload + wire::FRAME_LEN_PREFIX) as u64;
            p.expect = Some((at, ProtocolViolation::FrameTooLarge { len: over, max }));
            p.valid = 1;
        }
        Attack::HelloGarbage => {
            let n = rng.range(8, 140) as usize;
            p.bytes = (0..n).map(|_| rng.next_u64() as u8).collect();
            if rng.chance(0.5) {
                // A plausible header with a bad body: gets past the first check.
                p.bytes[..4].copy_from_slice(b"LXN2");
            }
        }
        Attack::HelloTruncated => {
            p.bytes = b"LXN2".to_vec();
            let n = rng.range(0, 60) as usize;
            p.bytes.extend((0..n).map(|_| rng.next_u64() as u8));
            p.fin = true;
        }
        Attack::Silent => {}
        Attack::Trickle => {
            let n = rng.range(4, 40) as usize;
            p.bytes = (0..n).map(|_| rng.next_u64() as u8).collect();
            p.trickle = Some(Duration::from_millis(rng.range(20, 80)));
        }
    }
    p
}
