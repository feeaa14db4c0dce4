//! `CoreError`: why a region could not be created or recovered.
//!
//! Owns the typed errors of region construction and WAL replay. Client-facing
//! failures of a running region are `golem_wire::GolemError`s instead (they
//! travel to clients); a broken internal invariant panics. Invariant: every
//! error names the region it concerns, so that a shard hosting many regions
//! can isolate the bad one.

use crate::command::DecodeError;
use crate::wal_record::RecordKind;
use golem_wire::{LogIndex, RegionId};

/// Why a region peer could not be built, bootstrapped or recovered.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A `PeerConfig` value is out of range.
    #[error("invalid peer config for region {region}: {reason}")]
    InvalidConfig { region: RegionId, reason: String },
    /// A `RegionMeta` is inconsistent (range, peers, or not this peer's).
    #[error("invalid metadata for region {region}: {reason}")]
    InvalidMeta { region: RegionId, reason: String },
    /// A WAL record's payload does not decode.
    #[error("bad {kind:?} record of region {region}: {source}")]
    BadRecord {
        region: RegionId,
        kind: RecordKind,
        #[source]
        source: DecodeError,
    },
    /// The records of a region hold no `RegionMeta` record.
    #[error("region {region}: no RegionMeta record in the WAL")]
    MissingRegionMeta { region: RegionId },
    /// The WAL's entries are not a contiguous log from index 1.
    #[error(
        "region {region}: log gap: an entries run starts at {found}, expected at most {expected}"
    )]
    LogGap {
        region: RegionId,
        expected: LogIndex,
        found: LogIndex,
    },
    /// The recovered log breaks a Raft invariant (terms decreasing, an
    /// entry newer than the hard state).
    #[error("region {region}: corrupt log: {reason}")]
    CorruptLog { region: RegionId, reason: String },
    /// A committed entry does not decode as a command.
    #[error("region {region}: committed entry {index} is not a command: {source}")]
    BadEntry {
        region: RegionId,
        index: LogIndex,
        #[source]
        source: DecodeError,
    },
    /// The store's durable applied index does not fit the recovered log: it
    /// is behind the log start (the WAL dropped entries the store lost) or
    /// past the last entry (the WAL lost entries the store applied).
    #[error("region {region}: the store has entries up to {persisted_applied} durably applied, but the WAL's log holds {log_start}+1..={last_index}")]
    StoreMismatch {
        region: RegionId,
        persisted_applied: LogIndex,
        log_start: LogIndex,
        last_index: LogIndex,
    },
    /// A received Raft snapshot's metadata does not decode, names another
    /// region, leaves this replica out, or disagrees with raft's
    /// configuration in it (the message is dropped).
    #[error("region {region}: bad snapshot: {reason}")]
    BadSnapshot { region: RegionId, reason: String },
    /// raft-rs refused to build the node.
    #[error("region {region}: raft: {source}")]
    Raft {
        region: RegionId,
        #[source]
        source: raft::Error,
    },
}
