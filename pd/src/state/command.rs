//! The PD's Raft log entries: commands and their codec.
//!
//! Owns `PdCommand`, the only way replicated PD state changes. An entry's
//! data is one rkyv-archived `PdCommand` behind a one-byte format version.
//! Invariant: decoding validates the archive (bytecheck) and the version
//! first, so a corrupt entry is a typed `CommandError`, never a panic or
//! garbage state.

use golem_wire::pd::{RegionHeartbeat, Store, StoreState};
use golem_wire::{ClusterId, StoreId};
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
        heartbeat: RegionHeartbeat,
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
