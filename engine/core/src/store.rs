//! `KvStore`: the shard's state-machine store as region peers see it.
//!
//! One store per shard holds the applied data of every region the shard
//! hosts (regions' key ranges never overlap, so keys are stored as they
//! are). Peers write each committed entry as one atomic batch tagged with
//! `(region, index)`, and after a restart ask `persisted_applied(region)`
//! where their WAL replay starts: the Raft log is the store's write-ahead
//! log, nothing is logged twice.
//!
//! Implementations: [`golem_lsm::Lsm`] (the node's; in this file) and
//! [`MemStore`] (in memory, with an explicit `flush`/`crash` model of what
//! is durable, for tests and the simulator).
//!
//! Invariants every implementation keeps: `write` applies a batch entirely
//! or not at all; `Stall` means nothing was applied and the same batch may
//! be retried later; `persisted_applied(region)` only grows, and every
//! write of `region` up to it survives a crash; a failure the store cannot
//! recover from (a background fsync error, a corrupt file) is `Failed`, and
//! the caller stops applying (the node stops: fail-stop).

mod mem;

pub use golem_lsm::WriteBatch;
pub use mem::MemStore;

use golem_wire::{KvPair, LogIndex, RegionId};

/// Why a `write` did not apply its batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Back-pressure: the store is flushing; retry the same batch later.
    #[error("store write stall")]
    Stall,
    /// The store can apply nothing more (fsync error, corruption).
    #[error("store failed: {0}")]
    Failed(String),
}

/// A read that the store could not serve (a corrupt or unreadable file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("store read failed: {0}")]
pub struct ReadError(pub String);

/// A page of a bounded scan: the pairs in scan order, and whether the range
/// holds more after the last one.
pub type ScanResult = (Vec<KvPair>, bool);

/// The per-shard store of applied region data.
pub trait KvStore {
    /// The value of `key`, if present.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError>;

    /// Pairs with `start <= key < end` (empty `end`: unbounded), ascending
    /// or (`reverse`) descending, at most `pairs_max` pairs and `bytes_max`
    /// key+value bytes (at least one pair when one exists).
    fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        pairs_max: usize,
        bytes_max: usize,
    ) -> Result<ScanResult, ReadError>;

    /// Applies `batch` atomically (it may be empty) and records that
    /// `region`'s entries up to `index` are applied.
    fn write(
        &mut self,
        batch: WriteBatch,
        region: RegionId,
        index: LogIndex,
    ) -> Result<(), WriteError>;

    /// The highest applied index of `region` whose writes are durable.
    fn persisted_applied(&mut self, region: RegionId) -> LogIndex;

    /// Asks the store to make everything applied so far durable soon (a
    /// memtable flush); `persisted_applied` shows when it is. Best effort:
    /// a store that cannot start one now is asked again by the caller.
    fn request_flush(&mut self);

    /// Approximate bytes stored for keys in `[start, end)` (for size-based
    /// split decisions and heartbeats; cheap, no data scan).
    fn approximate_bytes(&mut self, start: &[u8], end: &[u8]) -> u64;
}

impl KvStore for golem_lsm::Lsm {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        golem_lsm::Lsm::get(self, key).map_err(|e| ReadError(e.to_string()))
    }

    fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        pairs_max: usize,
        bytes_max: usize,
    ) -> Result<ScanResult, ReadError> {
        let page = golem_lsm::Lsm::scan(self, start, end, reverse, pairs_max, bytes_max)
            .map_err(|e| ReadError(e.to_string()))?;
        let pairs = page
            .pairs
            .into_iter()
            .map(|(key, value)| KvPair { key, value })
            .collect();
        Ok((pairs, page.more))
    }

    fn write(
        &mut self,
        batch: WriteBatch,
        region: RegionId,
        index: LogIndex,
    ) -> Result<(), WriteError> {
        match self.apply(batch, (region, index)) {
            Ok(()) => Ok(()),
            Err(golem_lsm::LsmError::WriteStall { .. }) => Err(WriteError::Stall),
            Err(e) => Err(WriteError::Failed(e.to_string())),
        }
    }

    fn persisted_applied(&mut self, region: RegionId) -> LogIndex {
        golem_lsm::Lsm::persisted_applied(self, region)
    }

    fn request_flush(&mut self) {
        if let Err(e) = golem_lsm::Lsm::flush(self) {
            tracing::debug!(error = %e, "LSM flush deferred");
        }
    }

    fn approximate_bytes(&mut self, start: &[u8], end: &[u8]) -> u64 {
        golem_lsm::Lsm::approximate_bytes(self, start, end)
    }
}
