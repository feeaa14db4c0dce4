//! The sans-IO core shared by both front ends: no sockets, no runtime, no
//! clock and no global RNG (time and randomness are passed in).
//!
//! - [`in_flight`]: request-id allocation, the in-flight cap, abandoned ids.
//! - [`reader`]: the frame decoder, the handshake, validated messages out.
//! - [`conn`]: both together for a single-owner connection.
//! - [`call`]: one call across attempts: validation, deadline, retries.
//! - [`pieces`]: scans and batch gets cut into one request per region.
//!
//! Invariant: the front ends only move bytes and wait; every protocol and
//! retry decision is made here, so both clients behave identically.

pub mod call;
pub mod conn;
pub mod in_flight;
pub mod pieces;
pub mod reader;

pub use call::{Attempt, Call, Step};
pub use conn::{encode, Connection, Event, SendError};
pub use in_flight::{Completion, InFlight, RegisterError};
pub use reader::{hello_frame, Incoming, ResponseReader, CONNECTION_REQUEST_ID};

#[cfg(test)]
mod tests;
