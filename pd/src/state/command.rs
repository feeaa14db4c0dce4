//! The PD's Raft log entries: commands and their codec.
//!
//! Owns `PdCommand`, the only way replicated PD state changes. An entry's
//! data is one rkyv-archived `PdCommand` behind a one-byte format version.
//! Invariant: decoding validates the archive (bytecheck) and the version
//! first, so a corrupt entry is a typed `CommandError`, never a panic or
//! garbage state.

use golem_wire::pd::{Region, RegionHeartbeat, RegionStats, Store, StoreState};
use golem_wire::{ClusterId, PeerId, StoreId};
use rkyv::util::AlignedVec;
use rkyv::{rancor, Archive, Deserialize, Serialize};

/// Format version of encoded commands.
pub const COMMAND_FORMAT_VERSION: u8 = 1;

/// A replicated change of PD state.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum PdCommand {
    /// Creates the cluster (once). `cluster` is picked by the proposer.
    Bootstrap {
        cluster: ClusterId,
        store: Store,
        region: golem_wire::pd::Region,
    },
    PutStore {
        store: Store,
    },
    /// Administrative store state: `Offline` or `Tombstone` (for #6's ctl).
    SetStoreState {
        store: StoreId,
        state: StoreState,
    },
    RegionHeartbeat {
        heartbeat: LoggedHeartbeat,
    },
    AllocIds {
        count: u32,
    },
    /// Raises the committed timestamp window end (ms).
    TsoWindow {
        end_ms: u64,
    },
    /// A joining store (`JoinCluster`): registered as a bootstrap candidate
    /// before the cluster exists, as a store afterwards. If it brings the
    /// candidates to `initial_replicas`, the same apply bootstraps the
    /// cluster as `cluster` (picked by the proposer) with a first region
    /// whose ids come from the id allocator. Appended last: the archived
    /// size and the other variants' indexes stay as they were, so older
    /// log entries decode unchanged.
    JoinCluster {
        store: Store,
        cluster: ClusterId,
        initial_replicas: u8,
    },
}

/// A region heartbeat as the log keeps it: the wire's `RegionHeartbeat`
/// in the layout it had when the log format was fixed. The log has its
/// own type so that wire-only fields (`RegionStats::split_key`, a hint for
/// the leader's scheduler) never change the archive of older entries.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct LoggedHeartbeat {
    pub region: Region,
    pub leader: PeerId,
    pub term: u64,
    pub stats: LoggedStats,
}

/// `RegionStats` without the wire-only fields (see `LoggedHeartbeat`).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct LoggedStats {
    pub approximate_size_bytes: u64,
    pub approximate_keys: u64,
    pub read_bytes: u64,
    pub read_keys: u64,
    pub written_bytes: u64,
    pub written_keys: u64,
    pub interval_ms: u32,
}

impl From<&RegionStats> for LoggedStats {
    fn from(s: &RegionStats) -> Self {
        LoggedStats {
            approximate_size_bytes: s.approximate_size_bytes,
            approximate_keys: s.approximate_keys,
            read_bytes: s.read_bytes,
            read_keys: s.read_keys,
            written_bytes: s.written_bytes,
            written_keys: s.written_keys,
            interval_ms: s.interval_ms,
        }
    }
}

impl From<LoggedStats> for RegionStats {
    fn from(s: LoggedStats) -> Self {
        RegionStats {
            approximate_size_bytes: s.approximate_size_bytes,
            approximate_keys: s.approximate_keys,
            read_bytes: s.read_bytes,
            read_keys: s.read_keys,
            written_bytes: s.written_bytes,
            written_keys: s.written_keys,
            interval_ms: s.interval_ms,
            split_key: None,
            sampled_keys: Vec::new(),
        }
    }
}

impl From<&RegionHeartbeat> for LoggedHeartbeat {
    fn from(hb: &RegionHeartbeat) -> Self {
        LoggedHeartbeat {
            region: hb.region.clone(),
            leader: hb.leader,
            term: hb.term,
            stats: (&hb.stats).into(),
        }
    }
}

impl LoggedHeartbeat {
    /// The heartbeat as the routing table takes it (no split key).
    pub fn to_wire(&self) -> RegionHeartbeat {
        RegionHeartbeat {
            region: self.region.clone(),
            leader: self.leader,
            term: self.term,
            stats: self.stats.into(),
        }
    }
}

/// Why an entry's data is not a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("empty command")]
    Empty,
    #[error("unsupported command format version {0}")]
    Version(u8),
    #[error("malformed command: {0}")]
    Malformed(String),
}

impl PdCommand {
    /// Encodes the command for a Raft entry.
    pub fn encode(&self) -> Vec<u8> {
        let bytes = rkyv::to_bytes::<rancor::Error>(self).expect("commands always serialize");
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.push(COMMAND_FORMAT_VERSION);
        out.extend_from_slice(&bytes);
        out
    }

    /// Decodes and validates an entry's data.
    pub fn decode(data: &[u8]) -> Result<PdCommand, CommandError> {
        let (&version, body) = data.split_first().ok_or(CommandError::Empty)?;
        if version != COMMAND_FORMAT_VERSION {
            return Err(CommandError::Version(version));
        }
        let mut aligned = AlignedVec::<16>::with_capacity(body.len());
        aligned.extend_from_slice(body);
        rkyv::from_bytes::<PdCommand, rancor::BoxedError>(&aligned)
            .map_err(|e| CommandError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries of older logs must keep decoding: the archived command (the
    /// rkyv root, at the end of an entry) must not change size.
    #[test]
    fn archived_size_is_unchanged() {
        assert_eq!(std::mem::size_of::<ArchivedPdCommand>(), 128);
    }

    /// The logged heartbeat keeps the layout the wire heartbeat had before
    /// `split_key` was added (same fields, same order: region, leader,
    /// term, then the seven statistics).
    #[test]
    fn logged_heartbeat_layout_is_unchanged() {
        assert_eq!(std::mem::size_of::<ArchivedLoggedStats>(), 56);
        assert_eq!(std::mem::size_of::<ArchivedLoggedHeartbeat>(), 120);
    }

    #[test]
    fn join_cluster_round_trips() {
        let cmd = PdCommand::JoinCluster {
            store: Store {
                id: StoreId(4),
                addr: "127.0.0.1:7420".into(),
                shard_count: 2,
            },
            cluster: ClusterId(77),
            initial_replicas: 3,
        };
        assert_eq!(PdCommand::decode(&cmd.encode()).unwrap(), cmd);
    }
}
