//! One connection's protocol state for a single owner: handshake, sending,
//! and matching responses to in-flight requests.
//!
//! Owns a [`ResponseReader`] and an [`InFlight`] table together, for front
//! ends that drive a connection from one place (the blocking client, tests).
//! The tokio client splits the two between its reader task and its callers.
//!
//! Invariants:
//! - No request is encoded before the handshake completed.
//! - Every response is matched to the in-flight request with its id; a
//!   response to an id not in flight, a `Goodbye`, or any malformed input
//!   fails the connection.
//! - When the connection fails, every waiting request is handed back exactly
//!   once, as [`Event::Lost`], with the error; the connection accepts nothing
//!   afterwards.

use super::in_flight::{Completion, InFlight, RegisterError};
use super::reader::{hello_frame, Incoming, ResponseReader};
use crate::error::{ClientError, Disconnect, ProtocolError};
use golem_wire::codec::encode_request;
use golem_wire::{ClusterId, HelloOk, Request, RequestId, Response};
use std::net::SocketAddr;

/// Something that happened on a connection.
#[derive(Debug)]
pub enum Event<T> {
    /// The handshake completed.
    Ready(HelloOk),
    /// The response to a request.
    Response {
        id: RequestId,
        token: T,
        response: Response,
    },
    /// The connection failed with this request in flight.
    Lost {
        id: RequestId,
        token: T,
        error: ClientError,
    },
}

/// Why a request was not sent.
#[derive(Clone, Debug)]
pub enum SendError {
    /// The in-flight cap is reached: wait for a response first.
    Full,
    /// The request cannot be sent on this connection: it is not ready or it
    /// is closed (transport error), or the request does not encode
    /// (`InvalidRequest`).
    Failed(ClientError),
}

/// Encodes `request` as frame `id`; an oversized request is `InvalidRequest`.
pub fn encode(id: RequestId, request: &Request) -> Result<Vec<u8>, ClientError> {
    encode_request(id, request).map_err(ClientError::InvalidRequest)
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Connection<T> {
    addr: SocketAddr,
    cluster_id: ClusterId,
    reader: ResponseReader,
    in_flight: InFlight<T>,
    incoming: Vec<Incoming>,
}

impl<T> Connection<T> {
    /// A fresh connection to `addr`, expecting `cluster_id` (0: any), with at
    /// most `in_flight_max` requests in flight.
    pub fn new(addr: SocketAddr, cluster_id: ClusterId, in_flight_max: usize) -> Connection<T> {
        Connection {
            addr,
            cluster_id,
            reader: ResponseReader::new(addr, cluster_id),
            in_flight: InFlight::new(in_flight_max),
            incoming: Vec::new(),
        }
    }

    /// The `Hello` frame to write first.
    pub fn hello(&self, client_name: &str) -> Result<Vec<u8>, ClientError> {
        hello_frame(self.cluster_id, client_name)
    }

    /// The endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The handshake answer, once received.
    pub fn hello_ok(&self) -> Option<&HelloOk> {
        self.reader.hello_ok()
    }

    /// True when the connection has failed or been closed.
    pub fn is_closed(&self) -> bool {
        self.in_flight.closed_reason().is_some()
    }

    /// Requests in flight (abandoned ones included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Registers `request` and returns its id and the frame to write.
    pub fn send(&mut self, request: &Request, token: T) -> Result<(RequestId, Vec<u8>), SendError> {
        if let Some(reason) = self.in_flight.closed_reason() {
            return Err(SendError::Failed(reason.clone()));
        }
        if self.reader.hello_ok().is_none() {
            return Err(SendError::Failed(ClientError::lost(
                self.addr,
                Disconnect::Shutdown,
            )));
        }
        let id = self.in_flight.register(token).map_err(|e| match e {
            RegisterError::Full => SendError::Full,
            RegisterError::Closed(reason) => SendError::Failed(reason),
        })?;
        match encode(id, request) {
            Ok(frame) => Ok((id, frame)),
            Err(e) => {
                self.in_flight.unregister(id);
                Err(SendError::Failed(e))
            }
        }
    }

    /// The caller of `id` gave up waiting; its late response will be dropped.
    pub fn abandon(&mut self, id: RequestId) -> Option<T> {
        self.in_flight.abandon(id)
    }

    /// Feeds received bytes. Events are appended to `out`. On error the
    /// connection is closed and every waiting request is appended as
    /// [`Event::Lost`] before the error is returned.
    pub fn receive(&mut self, bytes: &[u8], out: &mut Vec<Event<T>>) -> Result<(), ClientError> {
        let fed = self.reader.feed(bytes, &mut self.incoming);
        let mut result = fed;
        for incoming in self.incoming.drain(..) {
            match incoming {
                Incoming::HelloOk(ok) => out.push(Event::Ready(ok)),
                Incoming::Response(id, response) => match self.in_flight.complete(id) {
                    Some(Completion::Waiting(token)) => out.push(Event::Response {
                        id,
                        token,
                        response,
                    }),
                    Some(Completion::Abandoned) => {}
                    None => {
                        result = Err(ClientError::protocol(
                            self.addr,
                            ProtocolError::UnknownRequestId { id },
                        ));
                        break;
                    }
                },
            }
        }
        self.incoming.clear();
        if let Err(e) = &result {
            self.fail(e.clone(), out);
        }
        result
    }

    /// The transport ended (EOF, I/O error): closes the connection and
    /// appends every waiting request to `out` as lost with `error`.
    pub fn fail(&mut self, error: ClientError, out: &mut Vec<Event<T>>) {
        for (id, token) in self.in_flight.close(error.clone()) {
            out.push(Event::Lost {
                id,
                token,
                error: error.clone(),
            });
        }
    }
}
