//! [`Fault`]: who or what is at fault for an ending. The bottom of the error types: the
//! crypto layer's errors and [`CloseReason`](crate::CloseReason) both classify with it.

/// Who or what is at fault for an ending: [`CloseReason::fault`](crate::CloseReason::fault),
/// [`HandshakeError::fault`](crate::HandshakeError::fault). For a clean ending
/// ([`CloseReason::is_clean`](crate::CloseReason::is_clean)) it names the side that chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The peer: it closed the session, broke the protocol, sent records that fail
    /// authentication or end without an authenticated close, or failed the handshake. Trying
    /// the same peer again gets the same answer until it changes.
    Peer,
    /// This side: the application closed the session or shut the service down, a subscriber
    /// panicked, the runtime dropped the session's task, or a limit this side configured was
    /// reached (a key's usage limit, handshake admission).
    Local,
    /// The network between the two: the connection was reset or the socket failed. Often
    /// transient: trying again may work.
    Network,
    /// Nothing arrived in time (heartbeat, idle sweep, handshake deadline): the peer or the
    /// network is slow, partitioned or gone.
    Timeout,
}
