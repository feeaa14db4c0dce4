//! Encoding messages into frames and validating payloads back into messages.
//!
//! Invariants: nothing is read from a payload before `rkyv::access` has
//! validated it with bytecheck (bounds, alignment, enum tags, bools, UTF-8);
//! an encoded frame never exceeds `FRAME_PAYLOAD_BYTES_MAX` (an oversized
//! message is an error, not a frame).

use crate::error::GolemError;
use crate::frame::{encode_frame, FrameKind};
use crate::ids::RequestId;
use crate::limits::FRAME_PAYLOAD_BYTES_MAX;
use crate::msg::*;
use rkyv::rancor;

macro_rules! codec {
    ($msg:ty, $archived:ty, $kind:expr, $encode:ident, $access:ident, $decode:ident) => {
        /// Serializes the message into a complete frame.
        pub fn $encode(request_id: RequestId, msg: &$msg) -> Result<Vec<u8>, GolemError> {
            let bytes = rkyv::to_bytes::<rancor::Error>(msg).map_err(|e| GolemError::Internal {
                reason: e.to_string(),
            })?;
            if bytes.len() > FRAME_PAYLOAD_BYTES_MAX {
                return Err(GolemError::FrameTooLarge {
                    len: bytes.len().min(u32::MAX as usize) as u32,
                    max: FRAME_PAYLOAD_BYTES_MAX as u32,
                });
            }
            Ok(encode_frame($kind, request_id, &bytes))
        }

        /// Validates a payload (which must be 16-byte aligned and end exactly
        /// where the archive ends) and returns a zero-copy view of it.
        pub fn $access(payload: &[u8]) -> Result<&$archived, GolemError> {
            rkyv::access::<$archived, rancor::BoxedError>(payload)
                .map_err(|e| GolemError::malformed(e.to_string()))
        }

        /// Validates a payload and deserializes it into an owned message.
        pub fn $decode(payload: &[u8]) -> Result<$msg, GolemError> {
            let archived = $access(payload)?;
            rkyv::deserialize::<$msg, rancor::BoxedError>(archived)
                .map_err(|e| GolemError::malformed(e.to_string()))
        }
    };
}
/// Shared with the PD messages (`pd.rs`), which use the same framing.
pub(crate) use codec;

codec!(
    Hello,
    ArchivedHello,
    FrameKind::Hello,
    encode_hello,
    access_hello,
    decode_hello
);
codec!(
    HelloOk,
    ArchivedHelloOk,
    FrameKind::HelloOk,
    encode_hello_ok,
    access_hello_ok,
    decode_hello_ok
);
codec!(
    Request,
    ArchivedRequest,
    FrameKind::Request,
    encode_request,
    access_request,
    decode_request
);
codec!(
    Response,
    ArchivedResponse,
    FrameKind::Response,
    encode_response,
    access_response,
    decode_response
);
codec!(
    GolemError,
    crate::error::ArchivedGolemError,
    FrameKind::Goodbye,
    encode_goodbye,
    access_goodbye,
    decode_goodbye
);
