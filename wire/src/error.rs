//! The error every response may carry, with stable numeric codes.
//!
//! Owns `GolemError`: routing errors carry what the client needs to recover
//! (the leader, the current regions), request errors say which limit was
//! broken. Invariant: a variant's code never changes and is never reused;
//! new variants get new codes (the enum is `#[non_exhaustive]`).

use crate::ids::{
    ClusterId, PdMemberId, PeerId, RegionEpoch, RegionId, RequestId, ShardId, StoreId,
};
use rkyv::{Archive, Deserialize, Serialize};

/// Where a region's peer lives: enough to connect to its core directly.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PeerLocation {
    pub peer: PeerId,
    pub store: StoreId,
    pub shard: ShardId,
    /// `ip:port` of that shard's listener (connect by IP; never a host name).
    pub addr: String,
}

/// A region's routing metadata, as returned in `EpochNotMatch`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RegionInfo {
    pub id: RegionId,
    /// Inclusive start key; empty means the start of the key space.
    pub start: Vec<u8>,
    /// Exclusive end key; empty means the end of the key space.
    pub end: Vec<u8>,
    pub epoch: RegionEpoch,
    pub leader: Option<PeerLocation>,
}

impl RegionInfo {
    /// Whether `key` lies in `[start, end)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// Every error a GolemDB server can return. Codes are stable.
#[non_exhaustive]
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[rkyv(derive(Debug))]
pub enum GolemError {
    // --- routing: retry elsewhere after updating the route (1–99) ---
    /// Code 1. This peer is not the region's leader; `leader` is the hint.
    #[error("not leader for region {region}")]
    NotLeader {
        region: RegionId,
        leader: Option<PeerLocation>,
    },
    /// Code 2. The request's epoch is stale; these are the current regions.
    #[error("epoch not match ({} current regions)", current_regions.len())]
    EpochNotMatch { current_regions: Vec<RegionInfo> },
    /// Code 3. No such region here.
    #[error("region {region} not found")]
    RegionNotFound { region: RegionId },
    /// Code 4. The key is outside the region the request named.
    #[error("key not in region {region}")]
    KeyNotInRegion {
        key: Vec<u8>,
        region: RegionId,
        start: Vec<u8>,
        end: Vec<u8>,
    },
    /// Code 5. Overloaded: retry after the given time.
    #[error("server busy, retry after {retry_after_ms} ms")]
    ServerBusy { retry_after_ms: u32 },
    /// Code 6. The server is shutting down; retry on another node or later.
    #[error("server is shutting down")]
    ShuttingDown,

    // --- the request itself is wrong: do not retry (100–199) ---
    /// Code 100.
    #[error("empty key")]
    EmptyKey,
    /// Code 101.
    #[error("key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge { len: u32, max: u32 },
    /// Code 102.
    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge { len: u32, max: u32 },
    /// Code 103.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: u32, max: u32 },
    /// Code 104.
    #[error("batch of {len} exceeds the limit of {max}")]
    BatchTooLarge { len: u32, max: u32 },
    /// Code 105.
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },
    /// Code 106. Bytes that are not a valid message; the connection closes.
    #[error("malformed input: {reason}")]
    Malformed { reason: String },
    /// Code 107.
    #[error("unsupported protocol version {got} (supported: {supported})")]
    UnsupportedVersion { got: u32, supported: u32 },
    /// Code 108.
    #[error("payload checksum mismatch")]
    ChecksumMismatch,
    /// Code 109. The connection already has `max` requests in flight.
    #[error("too many requests in flight (max {max})")]
    TooManyInFlight { max: u32 },
    /// Code 110. The request id is already in flight on this connection.
    #[error("request id {id} is already in flight")]
    DuplicateRequestId { id: RequestId },
    /// Code 111. The client expected another cluster.
    #[error("cluster id mismatch: server is {server}, client expected {client}")]
    ClusterMismatch { server: u64, client: u64 },
    /// Code 112. A request arrived before the handshake.
    #[error("handshake required before requests")]
    HandshakeRequired,

    // --- the server failed to serve a valid request (200–299) ---
    /// Code 200. The request's deadline passed before it completed; it may
    /// or may not have taken effect.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// Code 201.
    #[error("internal error: {reason}")]
    Internal { reason: String },
    /// Code 202. The connection was idle or stalled mid-frame too long.
    #[error("connection timed out")]
    Timeout,

    // --- Placement Driver (300–399) ---
    /// Code 300. This PD member is not the PD leader; retry at `leader`
    /// (unknown while an election runs: retry any member after a backoff).
    #[error("not the PD leader (leader: {leader_id:?} at {leader_addr:?})")]
    PdNotLeader {
        leader_id: Option<PdMemberId>,
        leader_addr: Option<String>,
    },
    /// Code 301. The cluster has not been bootstrapped yet.
    #[error("cluster not bootstrapped")]
    NotBootstrapped,
    /// Code 302. Bootstrap of a cluster that already exists.
    #[error("cluster {cluster} is already bootstrapped")]
    AlreadyBootstrapped { cluster: ClusterId },
    /// Code 303. No store with this id was ever registered.
    #[error("store {store} not found")]
    UnknownStore { store: StoreId },
    /// Code 304. The PD knows no region with this id.
    #[error("region {region} not known to the PD")]
    UnknownRegion { region: RegionId },
    /// Code 305. The store id is registered with another address, or the
    /// address with another store.
    #[error("store {store} conflicts with store {existing} at {existing_addr}")]
    DuplicateStore {
        store: StoreId,
        existing: StoreId,
        existing_addr: String,
    },
    /// Code 306. A region report older than what the PD knows; ignored.
    #[error("stale epoch for region {region}: reported {reported:?}, known {current:?}")]
    StaleEpoch {
        region: RegionId,
        reported: RegionEpoch,
        current: RegionEpoch,
    },
    /// Code 307. The store was removed; its id is never reused.
    #[error("store {store} is a tombstone")]
    StoreTombstone { store: StoreId },
}

impl GolemError {
    /// The stable numeric code of this error.
    pub fn code(&self) -> u16 {
        match self {
            GolemError::NotLeader { .. } => 1,
            GolemError::EpochNotMatch { .. } => 2,
            GolemError::RegionNotFound { .. } => 3,
            GolemError::KeyNotInRegion { .. } => 4,
            GolemError::ServerBusy { .. } => 5,
            GolemError::ShuttingDown => 6,
            GolemError::EmptyKey => 100,
            GolemError::KeyTooLarge { .. } => 101,
            GolemError::ValueTooLarge { .. } => 102,
            GolemError::FrameTooLarge { .. } => 103,
            GolemError::BatchTooLarge { .. } => 104,
            GolemError::InvalidArgument { .. } => 105,
            GolemError::Malformed { .. } => 106,
            GolemError::UnsupportedVersion { .. } => 107,
            GolemError::ChecksumMismatch => 108,
            GolemError::TooManyInFlight { .. } => 109,
            GolemError::DuplicateRequestId { .. } => 110,
            GolemError::ClusterMismatch { .. } => 111,
            GolemError::HandshakeRequired => 112,
            GolemError::DeadlineExceeded => 200,
            GolemError::Internal { .. } => 201,
            GolemError::Timeout => 202,
            GolemError::PdNotLeader { .. } => 300,
            GolemError::NotBootstrapped => 301,
            GolemError::AlreadyBootstrapped { .. } => 302,
            GolemError::UnknownStore { .. } => 303,
            GolemError::UnknownRegion { .. } => 304,
            GolemError::DuplicateStore { .. } => 305,
            GolemError::StaleEpoch { .. } => 306,
            GolemError::StoreTombstone { .. } => 307,
        }
    }

    /// Whether a client may retry the same request (after refreshing its route
    /// or backing off). Request errors are never retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GolemError::NotLeader { .. }
                | GolemError::EpochNotMatch { .. }
                | GolemError::RegionNotFound { .. }
                | GolemError::KeyNotInRegion { .. }
                | GolemError::ServerBusy { .. }
                | GolemError::ShuttingDown
                | GolemError::TooManyInFlight { .. }
                | GolemError::PdNotLeader { .. }
        )
    }

    /// A `Malformed` error with `reason` cut to `ERROR_TEXT_BYTES_MAX`.
    pub fn malformed(reason: impl Into<String>) -> GolemError {
        GolemError::Malformed {
            reason: cut_text(reason.into()),
        }
    }

    /// An `InvalidArgument` error with `reason` cut to `ERROR_TEXT_BYTES_MAX`.
    pub fn invalid(reason: impl Into<String>) -> GolemError {
        GolemError::InvalidArgument {
            reason: cut_text(reason.into()),
        }
    }
}

fn cut_text(mut s: String) -> String {
    let max = crate::limits::ERROR_TEXT_BYTES_MAX;
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

impl From<crate::frame::FrameError> for GolemError {
    fn from(e: crate::frame::FrameError) -> Self {
        use crate::frame::FrameError as F;
        match e {
            F::UnsupportedVersion { got, supported } => GolemError::UnsupportedVersion {
                got: got.into(),
                supported: supported.into(),
            },
            F::TooLarge { len, max } => GolemError::FrameTooLarge { len, max },
            F::ChecksumMismatch { .. } => GolemError::ChecksumMismatch,
            other => GolemError::malformed(other.to_string()),
        }
    }
}
