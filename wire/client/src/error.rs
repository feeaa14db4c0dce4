//! `ClientError`: every way a client call can fail, and what is known about
//! the request's effect when it did.
//!
//! Invariants:
//! - A server's answer is never lost: `Server` carries the `GolemError` (and
//!   so its stable code) as the server sent it.
//! - Every error that can follow a request reaching a server says whether a
//!   write may have been applied ([`Outcome::Unknown`]); errors raised before
//!   anything was sent, and errors of reads, say [`Outcome::NotApplied`].
//! - Errors are `Clone` (I/O errors are shared behind an `Arc`), so one
//!   connection failure can be handed to every request it affects.

use golem_wire::frame::FrameKind;
use golem_wire::{FrameError, GolemError, RequestId};
use std::net::SocketAddr;
use std::sync::Arc;

/// What is known about the effect of a request that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The request certainly had no effect: it was a read, it was never sent,
    /// or the server rejected it before applying it.
    NotApplied,
    /// The request was a write that may or may not have been applied (it was
    /// sent and no answer came back). Read the data back before retrying a
    /// non-idempotent write such as a compare-and-swap.
    Unknown,
}

/// Why a connection ended without a protocol violation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Disconnect {
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Eof,
    /// The server sent a `Goodbye` frame saying why, then closed.
    #[error("server said goodbye: {0} (code {code})", code = .0.code())]
    Goodbye(GolemError),
    /// The client shut the connection down (the client was dropped, or the
    /// connection's tasks stopped).
    #[error("connection shut down by the client")]
    Shutdown,
}

/// A violation of the protocol by the server. The connection is closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The byte stream is not a valid frame sequence.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// A frame's payload failed validation.
    #[error("malformed {kind:?} payload: {reason}")]
    Malformed {
        /// The kind of the frame whose payload was bad.
        kind: FrameKind,
        /// The validator's message.
        reason: String,
    },
    /// A frame kind the server must not send at this point.
    #[error("unexpected {kind:?} frame")]
    UnexpectedFrame {
        /// The kind received.
        kind: FrameKind,
    },
    /// A response for a request id that is not in flight.
    #[error("response for request id {id}, which is not in flight")]
    UnknownRequestId {
        /// The id the server echoed.
        id: RequestId,
    },
    /// A response whose kind does not match its request.
    #[error("{got} response to a {request} request")]
    ResponseMismatch {
        /// The request's operation name.
        request: &'static str,
        /// The response's operation name.
        got: &'static str,
    },
}

/// Every error a client call can return.
#[non_exhaustive]
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error that was not retryable, or that was
    /// still returned when retries ran out.
    #[error("server error {code}: {0}", code = .0.code())]
    Server(GolemError),
    /// The request broke a protocol limit; it was never sent.
    #[error("invalid request: {0}")]
    InvalidRequest(GolemError),
    /// The client configuration is unusable.
    #[error("invalid client configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The Placement Driver could not name a node to start from (a client
    /// configured with PD endpoints only).
    #[error("no node found through the PD: {reason}")]
    NoNodeFromPd {
        /// The PD client's error.
        reason: String,
    },
    /// The request's deadline passed.
    #[error("request timed out after {timeout_ms} ms and {attempts} attempt(s) (outcome {outcome:?}){}",
        last_error.as_ref().map(|e| format!("; last error: {e}")).unwrap_or_default())]
    Timeout {
        /// The request's whole budget, in milliseconds.
        timeout_ms: u64,
        /// Attempts made (including the one cut short, if any).
        attempts: u32,
        /// Whether a write may have been applied.
        outcome: Outcome,
        /// The error of the last failed attempt, if one failed.
        last_error: Option<Box<ClientError>>,
    },
    /// The connection ended while the request was in flight, or before it
    /// could be sent.
    #[error("connection to {addr} lost: {reason} (outcome {outcome:?})")]
    ConnectionLost {
        /// The endpoint.
        addr: SocketAddr,
        /// Why it ended.
        reason: Disconnect,
        /// Whether a write may have been applied.
        outcome: Outcome,
    },
    /// An I/O error on the connection (connecting, reading or writing).
    #[error("I/O error with {addr}: {source} (outcome {outcome:?})")]
    Io {
        /// The endpoint.
        addr: SocketAddr,
        /// The error.
        source: Arc<std::io::Error>,
        /// Whether a write may have been applied.
        outcome: Outcome,
    },
    /// The server broke the protocol; the connection was closed.
    #[error("protocol error from {addr}: {error} (outcome {outcome:?})")]
    Protocol {
        /// The endpoint.
        addr: SocketAddr,
        /// The violation.
        error: ProtocolError,
        /// Whether a write may have been applied.
        outcome: Outcome,
    },
    /// The handshake was refused or answered with something this client
    /// cannot use (another cluster, another protocol version). Retrying the
    /// same endpoint does not help.
    #[error("handshake with {addr} failed: {error}")]
    Handshake {
        /// The endpoint.
        addr: SocketAddr,
        /// The reason, as a server error (`ClusterMismatch`,
        /// `UnsupportedVersion`, …).
        error: GolemError,
    },
}

impl ClientError {
    /// The stable code of the server error this error carries, if any.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Server(e) | ClientError::InvalidRequest(e) => Some(e.code()),
            ClientError::Handshake { error, .. } => Some(error.code()),
            ClientError::ConnectionLost {
                reason: Disconnect::Goodbye(e),
                ..
            } => Some(e.code()),
            _ => None,
        }
    }

    /// What is known about the request's effect. Errors that cannot follow a
    /// sent request say `NotApplied`.
    pub fn outcome(&self) -> Outcome {
        match self {
            ClientError::Timeout { outcome, .. }
            | ClientError::ConnectionLost { outcome, .. }
            | ClientError::Io { outcome, .. }
            | ClientError::Protocol { outcome, .. } => *outcome,
            _ => Outcome::NotApplied,
        }
    }

    /// True when a write may or may not have been applied.
    pub fn is_outcome_unknown(&self) -> bool {
        self.outcome() == Outcome::Unknown
    }

    /// The same error with its outcome replaced (for variants that have one).
    pub fn with_outcome(mut self, new: Outcome) -> ClientError {
        match &mut self {
            ClientError::Timeout { outcome, .. }
            | ClientError::ConnectionLost { outcome, .. }
            | ClientError::Io { outcome, .. }
            | ClientError::Protocol { outcome, .. } => *outcome = new,
            _ => {}
        }
        self
    }

    /// True for failures of the transport (connecting, the connection
    /// dropping, I/O), after which a fresh connection may succeed.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            ClientError::ConnectionLost { .. } | ClientError::Io { .. }
        )
    }

    /// An I/O error from `addr`, outcome not yet known.
    pub fn io(addr: SocketAddr, source: std::io::Error) -> ClientError {
        ClientError::Io {
            addr,
            source: Arc::new(source),
            outcome: Outcome::NotApplied,
        }
    }

    /// A lost connection to `addr`, outcome not yet known.
    pub fn lost(addr: SocketAddr, reason: Disconnect) -> ClientError {
        ClientError::ConnectionLost {
            addr,
            reason,
            outcome: Outcome::NotApplied,
        }
    }

    /// A protocol violation by `addr`, outcome not yet known.
    pub fn protocol(addr: SocketAddr, error: impl Into<ProtocolError>) -> ClientError {
        ClientError::Protocol {
            addr,
            error: error.into(),
            outcome: Outcome::NotApplied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_outcome_accessors() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let e = ClientError::Server(GolemError::ServerBusy { retry_after_ms: 5 });
        assert_eq!(e.code(), Some(5));
        assert_eq!(e.outcome(), Outcome::NotApplied);
        let lost = ClientError::lost(addr, Disconnect::Goodbye(GolemError::ShuttingDown));
        assert_eq!(lost.code(), Some(6));
        assert!(lost.is_transport());
        let lost = lost.with_outcome(Outcome::Unknown);
        assert!(lost.is_outcome_unknown());
        assert!(lost.to_string().contains("goodbye"), "{lost}");
        let t = ClientError::Timeout {
            timeout_ms: 10,
            attempts: 2,
            outcome: Outcome::Unknown,
            last_error: Some(Box::new(e)),
        };
        assert!(t.to_string().contains("server busy"), "{t}");
    }
}
