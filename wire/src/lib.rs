//! golem-wire: the GolemDB client protocol, with no I/O and no runtime.
//!
//! - [`ids`]: typed ids shared by every crate.
//! - [`limits`]: every size and count limit of the protocol.
//! - [`frame`]: the 16-byte frame header and the incremental decoder.
//! - [`msg`]: rkyv request/response messages.
//! - [`error`]: `GolemError`, with stable codes and routing payloads.
//! - [`codec`]: message ⇄ frame, validated with bytecheck before use.
//! - [`pd`]: the Placement Driver's messages (docs/pd.md).
//! - [`raft`]: rkyv mirrors of raft-rs messages (never decoded with protobuf).
//!
//! The byte-level specification is docs/wire.md.

pub mod codec;
pub mod error;
pub mod frame;
pub mod ids;
pub mod limits;
pub mod msg;
pub mod pd;
pub mod raft;

pub use error::{GolemError, PeerLocation, RegionInfo};
pub use frame::{Frame, FrameDecoder, FrameError, FrameHeader, FrameKind, PROTOCOL_VERSION};
pub use ids::*;
pub use msg::{
    Hello, HelloOk, KvPair, PeerChange, PeerChangeKind, Request, RequestBody, Response,
    ResponseBody, WriteOp,
};
