//! Outbound sessions: [`Service::connect`], with the client side of the encrypted handshake.

use std::sync::atomic::Ordering::Relaxed;

use super::{Service, close_body, lock};
use crate::control::{self, Control};
use crate::crypto::{self, HandshakeError};
use crate::error::{CloseCode, ConnectError, ProtocolViolation, Refusal};
use crate::protocol::Protocol;
use crate::runtime::BoxStream;
use crate::session::{Direction, SessionRef};

impl Service {
    /// Connects to `addr` and opens a session with `protocol`. Fails after
    /// `Config::connect_timeout`. [`Protocol::BitsHpke`] without the server's key in
    /// `Config::encryption` fails with `NotConfigured` before any I/O.
    pub async fn connect(
        &self,
        addr: &str,
        protocol: Protocol,
    ) -> Result<SessionRef, ConnectError> {
        let inner = &self.inner;
        if inner.is_shut_down() {
            return Err(ConnectError::Shutdown);
        }
        // The encryption settings and the client's handshake keys, checked before any I/O.
        let hpke = match protocol {
            Protocol::Bits => None,
            Protocol::BitsHpke => {
                let core = &inner.core;
                match (
                    core.config.encryption.as_ref(),
                    core.handshake_keys.as_ref().and_then(|k| k.client()),
                ) {
                    (Some(enc), Some(keys)) => Some((enc, keys)),
                    _ => return Err(ConnectError::NotConfigured),
                }
            }
        };
        if lock(&inner.sessions).table.len() >= inner.core.config.max_sessions {
            return Err(ConnectError::TooManySessions);
        }
        let rt = &inner.core.runtime;
        let timeout = inner.core.config.connect_timeout;
        // "bits": the server's Open frame (or its refusal) is part of connecting.
        let connecting = async {
            let (mut stream, peer) = rt.connect(addr).await.map_err(ConnectError::Io)?;
            if hpke.is_none() {
                read_open(&mut stream).await?;
            }
            Ok((stream, peer))
        };
        let res = crate::runtime::timeout(&**rt, timeout, connecting).await;
        let (mut stream, peer) = match res {
            None => {
                inner.core.counters.connect_failures.fetch_add(1, Relaxed);
                return Err(ConnectError::Timeout);
            }
            Some(Err(e)) => {
                inner.core.counters.connect_failures.fetch_add(1, Relaxed);
                return Err(e);
            }
            Some(Ok(x)) => x,
        };
        let sealed = if let Some((enc, keys)) = hpke {
            match crypto::io::client(&**rt, &mut stream, enc, keys).await {
                Ok((keys, finished)) => {
                    inner.core.counters.handshakes.fetch_add(1, Relaxed);
                    let mut sealed = Box::new(inner.sealed(&keys, true, enc));
                    // Written by the session task with its first records.
                    sealed.queue_finished(&finished);
                    Some(sealed)
                }
                Err(HandshakeError::Refused(code)) => {
                    inner.core.counters.connect_failures.fetch_add(1, Relaxed);
                    let code = CloseCode::from_u8(code);
                    return Err(ConnectError::Refused(Refusal::from(code)));
                }
                Err(e) => {
                    inner.core.counters.handshake_failures.fetch_add(1, Relaxed);
                    inner.core.counters.connect_failures.fetch_add(1, Relaxed);
                    return Err(ConnectError::Handshake(e));
                }
            }
        } else {
            None
        };
        if inner.is_shut_down() {
            if let Some(mut s) = sealed {
                let body = close_body(CloseCode::ShuttingDown);
                crypto::io::refuse(&**rt, &mut stream, &mut s, &body).await;
            }
            inner.core.counters.connect_failures.fetch_add(1, Relaxed);
            return Err(ConnectError::Shutdown);
        }
        match inner.open_session(stream, peer, protocol, Direction::Connected, sealed) {
            Ok(s) => Ok(s),
            Err((mut stream, sealed)) => {
                if let Some(mut s) = sealed {
                    let body = close_body(CloseCode::Full);
                    crypto::io::refuse(&**rt, &mut stream, &mut s, &body).await;
                }
                inner.core.counters.connect_failures.fetch_add(1, Relaxed);
                Err(ConnectError::TooManySessions)
            }
        }
    }
}

/// Reads a "bits" server's first frame: its Open frame, or its refusal (a close frame).
/// Reads exactly that frame, so no application byte is taken before the session exists.
async fn read_open(stream: &mut BoxStream) -> Result<(), ConnectError> {
    use tokio::io::AsyncReadExt;
    let mut header = [0u8; crate::message::HEADER_BYTES];
    stream
        .read_exact(&mut header)
        .await
        .map_err(ConnectError::Io)?;
    let len = control::header_body_len(&header).map_err(ConnectError::Protocol)?;
    let mut body = [0u8; control::MAX_BODY];
    stream
        .read_exact(&mut body[..len])
        .await
        .map_err(ConnectError::Io)?;
    match control::decode(&body[..len]).map_err(ConnectError::Protocol)? {
        Control::Open { .. } => Ok(()),
        Control::Close(pc) => Err(ConnectError::Refused(Refusal::from(pc.code))),
        Control::Unknown => Err(ConnectError::Protocol(ProtocolViolation::BadControl)),
    }
}
