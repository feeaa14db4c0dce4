//! The receive side of one connection: bytes in, validated messages out.
//!
//! Owns the frame decoder and the handshake state of one connection. Knows
//! nothing of in-flight requests (see `in_flight.rs`), so that a reader task
//! can own it outright while callers share the in-flight table.
//!
//! Invariants:
//! - Nothing but a `HelloOk` is accepted before the handshake completes, and
//!   no `HelloOk` after it.
//! - A `HelloOk` with another protocol version, or another cluster than the
//!   one expected (unless `ClusterId(0)`: any), fails the handshake.
//! - Any error is final: the connection must be closed, and the reader
//!   refuses further input.

use crate::error::{ClientError, Disconnect, ProtocolError};
use golem_wire::codec::{decode_goodbye, decode_hello_ok, decode_response, encode_hello};
use golem_wire::frame::{FrameKind, PROTOCOL_VERSION};
use golem_wire::limits::{CLIENT_NAME_BYTES_MAX, FRAME_PAYLOAD_BYTES_MAX};
use golem_wire::{ClusterId, FrameDecoder, GolemError, Hello, HelloOk, RequestId, Response};
use std::net::SocketAddr;

/// A validated message from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// The handshake answer; the connection is ready.
    HelloOk(HelloOk),
    /// The answer to request `id`.
    Response(RequestId, Response),
}

/// The request id of connection-level frames (Hello, HelloOk, Goodbye).
pub const CONNECTION_REQUEST_ID: RequestId = RequestId(0);

/// Builds the `Hello` frame that opens a connection. `client_name` is cut to
/// `CLIENT_NAME_BYTES_MAX` bytes (at a character boundary).
pub fn hello_frame(cluster_id: ClusterId, client_name: &str) -> Result<Vec<u8>, ClientError> {
    let mut cut = client_name.len().min(CLIENT_NAME_BYTES_MAX);
    while !client_name.is_char_boundary(cut) {
        cut -= 1;
    }
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION.into(),
        cluster_id,
        client_name: client_name[..cut].to_string(),
    };
    encode_hello(CONNECTION_REQUEST_ID, &hello).map_err(ClientError::InvalidRequest)
}

#[derive(Debug)]
enum State {
    Handshaking,
    Ready(HelloOk),
    Failed,
}

/// Decodes and validates everything a server sends on one connection.
#[derive(Debug)]
pub struct ResponseReader {
    addr: SocketAddr,
    expected_cluster: ClusterId,
    decoder: FrameDecoder,
    state: State,
}

impl ResponseReader {
    /// A reader for a fresh connection to `addr`, expecting `expected_cluster`.
    pub fn new(addr: SocketAddr, expected_cluster: ClusterId) -> ResponseReader {
        ResponseReader {
            addr,
            expected_cluster,
            decoder: FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX),
            state: State::Handshaking,
        }
    }

    /// The handshake answer, once received.
    pub fn hello_ok(&self) -> Option<&HelloOk> {
        match &self.state {
            State::Ready(ok) => Some(ok),
            _ => None,
        }
    }

    /// True when part of a frame has been received but not all of it.
    pub fn is_mid_frame(&self) -> bool {
        self.decoder.is_mid_frame()
    }

    /// Feeds received bytes, in pieces of any size. Complete messages are
    /// appended to `out` (those before an error included). An error is
    /// final: close the connection and fail its requests with it.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Incoming>) -> Result<(), ClientError> {
        if matches!(self.state, State::Failed) {
            return Err(ClientError::lost(self.addr, Disconnect::Shutdown));
        }
        while !bytes.is_empty() {
            let (used, frame) = match self.decoder.push(bytes) {
                Ok(r) => r,
                Err(e) => return Err(self.fail(ProtocolError::Frame(e))),
            };
            bytes = &bytes[used..];
            let Some(frame) = frame else { continue };
            let kind = frame.header.kind;
            let malformed = |e: GolemError| ProtocolError::Malformed {
                kind,
                reason: e.to_string(),
            };
            match (kind, &self.state) {
                (FrameKind::HelloOk, State::Handshaking) => {
                    let ok = match decode_hello_ok(&frame.payload) {
                        Ok(ok) => ok,
                        Err(e) => return Err(self.fail(malformed(e))),
                    };
                    self.check_hello_ok(&ok)?;
                    self.state = State::Ready(ok.clone());
                    out.push(Incoming::HelloOk(ok));
                }
                (FrameKind::Response, State::Ready(_)) => match decode_response(&frame.payload) {
                    Ok(r) => out.push(Incoming::Response(frame.header.request_id, r)),
                    Err(e) => return Err(self.fail(malformed(e))),
                },
                (FrameKind::Goodbye, _) => {
                    let why = match decode_goodbye(&frame.payload) {
                        Ok(why) => why,
                        Err(e) => return Err(self.fail(malformed(e))),
                    };
                    self.state = State::Failed;
                    let refused = matches!(
                        why,
                        GolemError::ClusterMismatch { .. } | GolemError::UnsupportedVersion { .. }
                    );
                    return Err(if refused {
                        ClientError::Handshake {
                            addr: self.addr,
                            error: why,
                        }
                    } else {
                        ClientError::lost(self.addr, Disconnect::Goodbye(why))
                    });
                }
                (kind, _) => return Err(self.fail(ProtocolError::UnexpectedFrame { kind })),
            }
        }
        Ok(())
    }

    fn check_hello_ok(&mut self, ok: &HelloOk) -> Result<(), ClientError> {
        let error = if ok.protocol_version != u32::from(PROTOCOL_VERSION) {
            GolemError::UnsupportedVersion {
                got: ok.protocol_version,
                supported: PROTOCOL_VERSION.into(),
            }
        } else if self.expected_cluster != ClusterId(0) && ok.cluster_id != self.expected_cluster {
            GolemError::ClusterMismatch {
                server: ok.cluster_id.0,
                client: self.expected_cluster.0,
            }
        } else {
            return Ok(());
        };
        self.state = State::Failed;
        Err(ClientError::Handshake {
            addr: self.addr,
            error,
        })
    }

    fn fail(&mut self, error: ProtocolError) -> ClientError {
        self.state = State::Failed;
        ClientError::protocol(self.addr, error)
    }
}
