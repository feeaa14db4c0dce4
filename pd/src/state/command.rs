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
