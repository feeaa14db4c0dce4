//! The 16-byte frame header and an incremental, allocation-bounded frame decoder.
//!
//! Owns the framing layer: every message on a GolemDB connection is one
//! header followed by `payload_len` bytes of rkyv payload.
//!
//! Invariants:
//! - The header is exactly 16 bytes (asserted at compile time).
//! - A header is fully validated (magic, version, kind, flags, length bound)
//!   before one byte of its payload is buffered; the payload buffer grows only
//!   as bytes arrive, so a lying length costs nothing.
//! - A completed payload sits in a 16-byte-aligned buffer whose length is
//!   exactly `payload_len`, and its crc32c matched the header's.

use crate::ids::RequestId;
use crate::limits::FRAME_PAYLOAD_BYTES_MAX;
use rkyv::util::AlignedVec;

/// First byte of every frame.
pub const FRAME_MAGIC: u8 = 0xC7;
/// The protocol version this build speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u8 = 4;
/// Size of the frame header in bytes.
pub const FRAME_HEADER_BYTES: usize = 16;

/// Alignment of payload buffers; matches the largest archived alignment.
pub const PAYLOAD_ALIGN: usize = 16;
/// A payload buffer.
pub type Payload = AlignedVec<PAYLOAD_ALIGN>;

/// What a frame carries. Values are stable on the wire.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Client → server, first frame: `Hello`.
    Hello = 1,
    /// Server → client, answer to `Hello`: `HelloOk`.
    HelloOk = 2,
    /// Client → server: `Request`.
    Request = 3,
    /// Server → client: `Response`, same request id as its request.
    Response = 4,
    /// Server → client, the last frame before the server closes the
    /// connection: a `GolemError` saying why (request id 0).
    Goodbye = 5,
    /// Client → PD: `PdRequest` (docs/pd.md).
    PdRequest = 6,
    /// PD → client: `PdResponse`, same request id as its request.
    PdResponse = 7,
    /// PD member → PD member: `PdRaftBatch` (request id 0, no answer).
    PdRaft = 8,
    /// Node shard → node shard: `RaftBatch`, Raft messages of regions
    /// (request id 0, no answer), after a `Hello`.
    Raft = 9,
    /// Node shard → node shard: `SnapshotChunk`, one chunk of a region
    /// snapshot's data, after a `Hello`; answered by a `SnapshotAck` with
    /// the same request id before the next chunk is sent.
    SnapshotChunk = 10,
    /// Node shard → node shard: `SnapshotAck`, answer to a `SnapshotChunk`.
    SnapshotAck = 11,
}

impl FrameKind {
    /// Parses a kind byte.
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Hello,
            2 => FrameKind::HelloOk,
            3 => FrameKind::Request,
            4 => FrameKind::Response,
            5 => FrameKind::Goodbye,
            6 => FrameKind::PdRequest,
            7 => FrameKind::PdResponse,
            8 => FrameKind::PdRaft,
            9 => FrameKind::Raft,
            10 => FrameKind::SnapshotChunk,
            11 => FrameKind::SnapshotAck,
            _ => return None,
        })
    }
}

/// The decoded frame header.
///
/// Layout (little endian):
/// ```text
/// offset size field
///      0    1 magic          0xC7
///      1    1 version        PROTOCOL_VERSION
///      2    1 kind           FrameKind
///      3    1 flags          0 in version 1 (reserved)
///      4    4 payload_len    u32, ≤ FRAME_PAYLOAD_BYTES_MAX
///      8    4 request_id     u32
///     12    4 payload_crc    crc32c (Castagnoli) of the payload bytes
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub flags: u8,
    pub payload_len: u32,
    pub request_id: RequestId,
    pub payload_crc: u32,
}

/// The on-wire form of the header, for the size assertion.
#[repr(C)]
struct RawHeader {
    magic: u8,
    version: u8,
    kind: u8,
    flags: u8,
    payload_len: u32,
    request_id: u32,
    payload_crc: u32,
}
const _: () = assert!(std::mem::size_of::<RawHeader>() == FRAME_HEADER_BYTES);
const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX <= u32::MAX as usize);

/// Why a byte stream is not a valid frame sequence. Every variant closes the
/// connection that produced it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad frame magic {got:#04x}")]
    BadMagic { got: u8 },
    #[error("unsupported protocol version {got} (this build speaks {supported})")]
    UnsupportedVersion { got: u8, supported: u8 },
    #[error("unknown frame kind {got}")]
    BadKind { got: u8 },
    #[error("reserved frame flags set: {got:#04x}")]
    BadFlags { got: u8 },
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("frame payload checksum mismatch (header {expected:#010x}, payload {actual:#010x})")]
    ChecksumMismatch { expected: u32, actual: u32 },
}

impl FrameHeader {
    /// Serializes the header.
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut b = [0u8; FRAME_HEADER_BYTES];
        b[0] = FRAME_MAGIC;
        b[1] = PROTOCOL_VERSION;
        b[2] = self.kind as u8;
        b[3] = self.flags;
        b[4..8].copy_from_slice(&self.payload_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.request_id.0.to_le_bytes());
        b[12..16].copy_from_slice(&self.payload_crc.to_le_bytes());
        b
    }

    /// Parses and validates a header against `payload_bytes_max`.
    pub fn decode(
        b: &[u8; FRAME_HEADER_BYTES],
        payload_bytes_max: usize,
    ) -> Result<FrameHeader, FrameError> {
        if b[0] != FRAME_MAGIC {
            return Err(FrameError::BadMagic { got: b[0] });
        }
        if b[1] != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion {
                got: b[1],
                supported: PROTOCOL_VERSION,
            });
        }
        let kind = FrameKind::from_u8(b[2]).ok_or(FrameError::BadKind { got: b[2] })?;
        if b[3] != 0 {
            return Err(FrameError::BadFlags { got: b[3] });
        }
        let payload_len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        if payload_len as usize > payload_bytes_max {
            return Err(FrameError::TooLarge {
                len: payload_len,
                max: payload_bytes_max as u32,
            });
        }
        Ok(FrameHeader {
            kind,
            flags: 0,
            payload_len,
            request_id: RequestId(u32::from_le_bytes([b[8], b[9], b[10], b[11]])),
            payload_crc: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

/// One complete, checksum-verified frame.
#[derive(Debug)]
pub struct Frame {
    pub header: FrameHeader,
    /// Exactly `header.payload_len` bytes, 16-byte aligned.
    pub payload: Payload,
}

/// Builds a complete frame (header and payload) ready to write.
pub fn encode_frame(kind: FrameKind, request_id: RequestId, payload: &[u8]) -> Vec<u8> {
    assert!(
        payload.len() <= FRAME_PAYLOAD_BYTES_MAX,
        "encoder produced an oversized payload; callers validate sizes first"
    );
    let header = FrameHeader {
        kind,
        flags: 0,
        payload_len: payload.len() as u32,
        request_id,
        payload_crc: crc32c::crc32c(payload),
    };
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    out
}

/// Incremental frame decoder: feed it whatever bytes arrive, in any pieces.
///
/// Sans-IO: used by the server (glommio), the tokio client and the blocking
/// client alike.
#[derive(Debug)]
pub struct FrameDecoder {
    payload_bytes_max: usize,
    header_buf: [u8; FRAME_HEADER_BYTES],
    header_filled: usize,
    header: Option<FrameHeader>,
    payload: Payload,
}

impl FrameDecoder {
    /// A decoder that rejects payloads above `payload_bytes_max`
    /// (itself capped at `FRAME_PAYLOAD_BYTES_MAX`).
    pub fn new(payload_bytes_max: usize) -> FrameDecoder {
        FrameDecoder {
            payload_bytes_max: payload_bytes_max.min(FRAME_PAYLOAD_BYTES_MAX),
            header_buf: [0; FRAME_HEADER_BYTES],
            header_filled: 0,
            header: None,
            payload: Payload::new(),
        }
    }

    /// True when part of a frame has been received but not all of it; the
    /// server uses this to time out senders that stall mid-frame.
    pub fn is_mid_frame(&self) -> bool {
        self.header_filled > 0
    }

    /// Consumes a prefix of `input`. Returns how many bytes were consumed and
    /// the frame they completed, if any. Call again with the rest of the
    /// input until it is empty. After an error the stream is unusable.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), FrameError> {
        let mut used = 0;
        if self.header.is_none() {
            let take = (FRAME_HEADER_BYTES - self.header_filled).min(input.len());
            self.header_buf[self.header_filled..self.header_filled + take]
                .copy_from_slice(&input[..take]);
            self.header_filled += take;
            used += take;
            if self.header_filled < FRAME_HEADER_BYTES {
                return Ok((used, None));
            }
            let header = FrameHeader::decode(&self.header_buf, self.payload_bytes_max)?;
            self.header = Some(header);
        }
        let header = self.header.expect("header parsed above");
        let want = header.payload_len as usize - self.payload.len();
        let take = want.min(input.len() - used);
        self.payload.extend_from_slice(&input[used..used + take]);
        used += take;
        if self.payload.len() < header.payload_len as usize {
            return Ok((used, None));
        }
        let payload = std::mem::take(&mut self.payload);
        self.header = None;
        self.header_filled = 0;
        let actual = crc32c::crc32c(&payload);
        // Fuzz builds skip the checksum so the fuzzer reaches the payload decoder.
        if actual != header.payload_crc && !cfg!(fuzzing) {
            return Err(FrameError::ChecksumMismatch {
                expected: header.payload_crc,
                actual,
            });
        }
        Ok((used, Some(Frame { header, payload })))
    }
}
