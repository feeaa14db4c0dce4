//! rkyv mirrors of raft-rs's `eraftpb` messages.
//!
//! Owns the on-wire (and on-disk) form of Raft messages, entries and hard
//! states. raft-rs 0.7 encodes these with protobuf 2, which has a known
//! stack-overflow advisory on crafted input (RUSTSEC-2024-0437): bytes from
//! the network or the disk are never decoded with it. They are validated
//! here with bytecheck and converted field by field to `eraftpb` types at the
//! boundary (the conversion lives with the crate that links raft-rs, so that
//! this crate still depends on nothing of ours and on no Raft library).
//!
//! Invariant: every field of the `eraftpb` message has a field here, so the
//! conversion is lossless in both directions. Enum-like fields (`msg_type`,
//! `entry_type`) travel as their protobuf integer values and are checked by
//! the converter, which rejects unknown values with a typed error.

use crate::error::GolemError;
use crate::frame::encode_frame;
use crate::ids::{PeerId, RegionId, RequestId, ShardId, StoreId};
use crate::limits::FRAME_PAYLOAD_BYTES_MAX;
use crate::RegionEpoch;
use rkyv::rancor;
use rkyv::{Archive, Deserialize, Serialize};

/// Most region messages in one node → node `RaftBatch` frame.
pub const RAFT_BATCH_MESSAGES_MAX: usize = 4096;

/// `eraftpb::Entry`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RaftEntry {
    /// `EntryType` as its protobuf value (0 normal, 1 conf change, 2 conf change v2).
    pub entry_type: u8,
    pub term: u64,
    pub index: u64,
    pub data: Vec<u8>,
    pub context: Vec<u8>,
}

/// `eraftpb::HardState`.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RaftHardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

/// `eraftpb::ConfState`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RaftConfState {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

/// `eraftpb::Snapshot` (metadata flattened).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RaftSnapshot {
    pub data: Vec<u8>,
    pub conf_state: RaftConfState,
    /// Index of the last entry the snapshot covers.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
}

/// `eraftpb::Message`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RaftMessage {
    /// `MessageType` as its protobuf value.
    pub msg_type: u8,
    pub to: u64,
    pub from: u64,
    pub term: u64,
    pub log_term: u64,
    pub index: u64,
    pub entries: Vec<RaftEntry>,
    pub commit: u64,
    pub commit_term: u64,
    pub snapshot: Option<RaftSnapshot>,
    pub request_snapshot: u64,
    pub reject: bool,
    pub reject_hint: u64,
    pub context: Vec<u8>,
    pub deprecated_priority: u64,
    pub priority: i64,
}

/// One Raft message of a region, addressed to a peer on a shard.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RegionMessage {
    pub region: RegionId,
    /// The sender's view of the region's epoch.
    pub epoch: RegionEpoch,
    /// The shard of the receiving store that owns the `to` peer.
    pub to_shard: ShardId,
    /// Where the sending peer lives (a replica that does not know its
    /// region's members yet answers there).
    pub from_store: StoreId,
    pub from_shard: ShardId,
    /// Sending and receiving peers (also in `message.from` / `message.to`).
    pub from_peer: PeerId,
    pub to_peer: PeerId,
    pub message: RaftMessage,
    /// Set by a current member, at `epoch`, answering a peer that is no
    /// longer in the region: the receiving replica is stale and destroys
    /// itself (`message` is then empty and not stepped).
    pub gc: bool,
    /// Set by a shard answering for a replica it removed (`from_peer`, a
    /// tombstone) to a member that still counts it: the entry that removed
    /// `from_peer` is committed (`message` is then empty and not stepped).
    pub removed_by: Option<RaftEntryId>,
}

/// A Raft log entry by position: its index and term.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RaftEntryId {
    pub index: u64,
    pub term: u64,
}

/// Node shard → node shard: region Raft messages, batched per destination
/// shard per raft-loop pass. One-way (no answer): Raft retries.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RaftBatch {
    pub from_store: StoreId,
    /// At most `RAFT_BATCH_MESSAGES_MAX`.
    pub messages: Vec<RegionMessage>,
}

crate::codec::codec!(
    RaftBatch,
    ArchivedRaftBatch,
    crate::frame::FrameKind::Raft,
    encode_raft_batch,
    access_raft_batch,
    decode_raft_batch
);

/// Most key-value bytes (keys and values) in one `SnapshotChunk`.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1024 * 1024;

/// Node shard → node shard: one chunk of a region snapshot's data, pairs in
/// strictly increasing key order across the whole stream. Chunks of one
/// snapshot travel on one connection, numbered from 0; the sender waits for
/// each chunk's `SnapshotAck` (flow control: one chunk in flight).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SnapshotChunk {
    pub from_store: StoreId,
    pub region: RegionId,
    /// The shard of the receiving store that owns `to_peer`.
    pub to_shard: ShardId,
    pub to_peer: PeerId,
    /// The snapshot's Raft index and term (they name the stream).
    pub index: u64,
    pub term: u64,
    /// 0, 1, 2, … within the stream.
    pub seq: u32,
    /// At most `SNAPSHOT_CHUNK_BYTES_MAX` bytes of keys and values (a
    /// single larger pair travels alone).
    pub pairs: Vec<crate::KvPair>,
    /// On the last chunk only: the Raft `MsgSnapshot` to step once the data
    /// is durable on the receiver.
    pub last: Option<RegionMessage>,
}

/// Answer to a `SnapshotChunk`: taken (`ok`; for the last chunk: the whole
/// snapshot is durable on the receiver and its message stepped), or refused with
/// the reason (the sender stops the stream and reports the failure to
/// raft, which tries again later).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SnapshotAck {
    pub region: RegionId,
    pub index: u64,
    pub seq: u32,
    pub ok: bool,
    pub reason: String,
}

crate::codec::codec!(
    SnapshotChunk,
    ArchivedSnapshotChunk,
    crate::frame::FrameKind::SnapshotChunk,
    encode_snapshot_chunk,
    access_snapshot_chunk,
    decode_snapshot_chunk
);

crate::codec::codec!(
    SnapshotAck,
    ArchivedSnapshotAck,
    crate::frame::FrameKind::SnapshotAck,
    encode_snapshot_ack,
    access_snapshot_ack,
    decode_snapshot_ack
);
