//! `SimStore`: one node's state-machine store, golem-core's `MemStore`
//! with a log of what was applied.
//!
//! Owns the node's `MemStore` (durability: `flush` makes everything applied
//! durable, `crash` keeps only the last flush) and the `(region, index)` of
//! every write applied since the simulator last took them, so that the
//! applied-entries checker sees every entry a peer applies without any
//! hook in golem-core. Invariant: a write is logged only if the store
//! applied it (a stall or failure logs nothing).

use golem_core::store::{KvStore, MemStore, ReadError, ScanResult, WriteBatch, WriteError};
use golem_wire::{LogIndex, RegionId};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SimStore {
    pub mem: MemStore,
    applied: Vec<(RegionId, u64)>,
}

impl SimStore {
    /// Takes the writes applied since the last call, in apply order.
    pub fn take_applied(&mut self) -> Vec<(RegionId, u64)> {
        std::mem::take(&mut self.applied)
    }

    /// Pairs with keys in `[start, end)` (empty `end`: unbounded).
    pub fn pairs_in(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.mem
            .iter()
            .filter(|(k, _)| *k >= start && (end.is_empty() || *k < end))
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }
}

impl KvStore for SimStore {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.mem.get(key)
    }

    fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        pairs_max: usize,
        bytes_max: usize,
    ) -> Result<ScanResult, ReadError> {
        self.mem.scan(start, end, reverse, pairs_max, bytes_max)
    }

    fn write(
        &mut self,
        batch: WriteBatch,
        region: RegionId,
        index: LogIndex,
    ) -> Result<(), WriteError> {
        self.mem.write(batch, region, index)?;
        self.applied.push((region, index.get()));
        Ok(())
    }

    fn persisted_applied(&mut self, region: RegionId) -> LogIndex {
        self.mem.persisted_applied(region)
    }

    fn request_flush(&mut self) {
        self.mem.flush();
    }

    fn approximate_bytes(&mut self, start: &[u8], end: &[u8]) -> u64 {
        self.mem.approximate_bytes(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_writes_are_logged_and_a_crash_keeps_the_flush() {
        let mut s = SimStore::default();
        let mut b = WriteBatch::new();
        b.put(b"a".to_vec(), b"1".to_vec());
        s.write(b, RegionId(1), LogIndex(1)).unwrap();
        s.mem.flush();
        let mut b = WriteBatch::new();
        b.put(b"b".to_vec(), b"2".to_vec());
        s.write(b, RegionId(1), LogIndex(2)).unwrap();
        s.mem.set_stalled(true);
        assert!(s
            .write(WriteBatch::new(), RegionId(1), LogIndex(3))
            .is_err());
        assert_eq!(s.take_applied(), vec![(RegionId(1), 1), (RegionId(1), 2)]);
        assert!(s.take_applied().is_empty());
        assert_eq!(s.pairs_in(b"b", b"").len(), 1);
        s.mem.crash();
        assert_eq!(s.pairs_in(b"", b"").len(), 1);
        assert_eq!(s.persisted_applied(RegionId(1)), LogIndex(1));
    }
}
