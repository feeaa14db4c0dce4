//! `MemStore`: an in-memory [`KvStore`] with an explicit durability model.
//!
//! Owns a `BTreeMap` of the applied data and each region's applied index,
//! plus a copy of both as of the last `flush` (what a crash keeps). Used by
//! unit tests and by the simulator; the node uses the LSM.
//!
//! Invariants: `crash` returns the store to exactly the last flushed state;
//! `persisted_applied` is the flushed applied index; a stalled store
//! (`set_stalled(true)`) applies nothing; a failed one fails every write.

use super::{KvStore, ReadError, ScanResult, WriteBatch, WriteError};
use golem_lsm::WriteOp;
use golem_wire::{KvPair, LogIndex, RegionId};
use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    applied: BTreeMap<RegionId, LogIndex>,
}

/// An in-memory store. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    live: State,
    durable: State,
    stalled: bool,
    failed: Option<String>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Makes everything applied so far durable.
    pub fn flush(&mut self) {
        self.durable = self.live.clone();
    }

    /// Loses everything applied since the last `flush` (a process crash).
    pub fn crash(&mut self) {
        self.live = self.durable.clone();
        self.stalled = false;
    }

    /// While stalled, every write returns `WriteError::Stall`.
    pub fn set_stalled(&mut self, stalled: bool) {
        self.stalled = stalled;
    }

    /// From now on every write returns `WriteError::Failed(reason)`.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.failed = Some(reason.into());
    }

    /// The applied (not necessarily durable) index of `region`.
    pub fn applied(&self, region: RegionId) -> LogIndex {
        self.live.applied.get(&region).copied().unwrap_or_default()
    }

    /// Every live pair in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.live
            .data
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.live.data.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.live.data.is_empty()
    }
}

fn upper(end: &[u8]) -> Bound<&[u8]> {
    if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end)
    }
}

impl KvStore for MemStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.live.data.get(key).cloned())
    }

    fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        pairs_max: usize,
        bytes_max: usize,
    ) -> Result<ScanResult, ReadError> {
        if !end.is_empty() && start >= end {
            return Ok((Vec::new(), false));
        }
        let range = self
            .live
            .data
            .range::<[u8], _>((Bound::Included(start), upper(end)));
        let it: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = if reverse {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut pairs = Vec::new();
        let mut bytes = 0usize;
        for (k, v) in it {
            let pair_bytes = k.len() + v.len();
            if pairs.len() >= pairs_max || (!pairs.is_empty() && bytes + pair_bytes > bytes_max) {
                return Ok((pairs, true));
            }
            bytes += pair_bytes;
            pairs.push(KvPair {
                key: k.clone(),
                value: v.clone(),
            });
        }
        Ok((pairs, false))
    }

    fn write(
        &mut self,
        batch: WriteBatch,
        region: RegionId,
        index: LogIndex,
    ) -> Result<(), WriteError> {
        if let Some(reason) = &self.failed {
            return Err(WriteError::Failed(reason.clone()));
        }
        if self.stalled {
            return Err(WriteError::Stall);
        }
        for op in batch.ops() {
            match op {
                WriteOp::Put { key, value } => {
                    self.live.data.insert(key.clone(), value.clone());
                }
                WriteOp::Delete { key } => {
                    self.live.data.remove(key);
                }
                WriteOp::DeleteRange { start, end } => {
                    let doomed: Vec<Vec<u8>> = self
                        .live
                        .data
                        .range::<[u8], _>((Bound::Included(start.as_slice()), upper(end)))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        self.live.data.remove(&k);
                    }
                }
            }
        }
        let slot = self.live.applied.entry(region).or_default();
        assert!(
            index >= *slot,
            "region {region}: applied index goes back from {slot} to {index}"
        );
        *slot = index;
        Ok(())
    }

    fn request_flush(&mut self) {
        self.flush();
    }

    fn persisted_applied(&mut self, region: RegionId) -> LogIndex {
        self.durable
            .applied
            .get(&region)
            .copied()
            .unwrap_or_default()
    }

    fn approximate_bytes(&mut self, start: &[u8], end: &[u8]) -> u64 {
        self.live
            .data
            .range::<[u8], _>((Bound::Included(start), upper(end)))
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }
}
