//! Snapshots of the PD state machine.
//!
//! Owns the snapshot format: a one-byte format version followed by an
//! rkyv-archived `SnapshotData`. Invariant: a decoded snapshot is validated
//! (bytecheck, then the routing table's invariants) before it replaces any
//! state; a bad one is a typed `SnapshotError`. Soft state (statistics,
//! heartbeat times) is included as a convenience and is not relied upon.

use super::command::LoggedStats;
use super::{PdState, StoreTimeouts};
use golem_wire::pd::{Peer, Region, RegionRoute, StoreInfo};
use rkyv::util::AlignedVec;
use rkyv::{rancor, Archive, Deserialize, Serialize};

/// Format version of encoded snapshots.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;

/// Everything a PD member needs to rebuild its state.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SnapshotData {
    /// 0: not bootstrapped.
    pub cluster: u64,
    pub id_next: u64,
    pub tso_window_end_ms: u64,
    pub stores: Vec<StoreInfo>,
    pub regions: Vec<SnapshotRoute>,
    /// Regions removed by overlaps and their last epochs.
    pub removed: Vec<RemovedRegion>,
}

/// A region as a snapshot keeps it: `RegionRoute` in the layout it had
/// when the format was fixed (wire-only statistics fields left out).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SnapshotRoute {
    pub region: Region,
    pub leader: Option<Peer>,
    pub term: u64,
    pub stats: LoggedStats,
}

impl From<&RegionRoute> for SnapshotRoute {
    fn from(r: &RegionRoute) -> Self {
        SnapshotRoute {
            region: r.region.clone(),
            leader: r.leader,
            term: r.term,
            stats: (&r.stats).into(),
        }
    }
}

impl From<SnapshotRoute> for RegionRoute {
    fn from(r: SnapshotRoute) -> Self {
        RegionRoute {
            region: r.region,
            leader: r.leader,
            term: r.term,
            stats: r.stats.into(),
        }
    }
}

/// A region removed from the routing table by a newer overlapping one.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RemovedRegion {
    pub id: golem_wire::RegionId,
    pub epoch: golem_wire::RegionEpoch,
}

/// Why bytes are not a valid snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("empty snapshot")]
    Empty,
    #[error("unsupported snapshot format version {0}")]
    Version(u8),
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    #[error("inconsistent snapshot: {0}")]
    Inconsistent(String),
}

impl PdState {
    /// Serializes the state.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let data = SnapshotData {
            cluster: self.cluster.map_or(0, |c| c.get()),
            id_next: self.ids.next(),
            tso_window_end_ms: self.tso_window_end_ms,
            stores: self.stores.iter().cloned().collect(),
            regions: self.routing.iter().map(SnapshotRoute::from).collect(),
            removed: self
                .routing
                .removed()
                .map(|(id, epoch)| RemovedRegion { id, epoch })
                .collect(),
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&data).expect("snapshots always serialize");
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.push(SNAPSHOT_FORMAT_VERSION);
        out.extend_from_slice(&bytes);
        out
    }

    /// Rebuilds a state from `encode_snapshot`'s bytes.
    pub fn decode_snapshot(
        bytes: &[u8],
        timeouts: StoreTimeouts,
    ) -> Result<PdState, SnapshotError> {
        let (&version, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::Version(version));
        }
        let mut aligned = AlignedVec::<16>::with_capacity(body.len());
        aligned.extend_from_slice(body);
        let data = rkyv::from_bytes::<SnapshotData, rancor::BoxedError>(&aligned)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        let mut state = PdState::new(timeouts);
        state.cluster = (data.cluster != 0).then_some(golem_wire::ClusterId(data.cluster));
        state.ids = super::IdAllocator::from_next(data.id_next);
        state.tso_window_end_ms = data.tso_window_end_ms;
        for s in data.stores {
            state.stores.insert_unchecked(s);
        }
        for r in data.regions {
            let r = RegionRoute::from(r);
            if state.routing.get(r.region.id).is_some() {
                return Err(SnapshotError::Inconsistent(format!(
                    "region {} twice",
                    r.region.id
                )));
            }
            state.routing.insert_unchecked(r);
        }
        for r in data.removed {
            state.routing.insert_removed(r.id, r.epoch);
        }
        state
            .routing
            .check_invariants()
            .map_err(SnapshotError::Inconsistent)?;
        Ok(state)
    }
}
