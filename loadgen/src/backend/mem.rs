//! An in-process backend for tests: an ordered map behind a mutex, counting
//! writes per key so that tests can check what the driver sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// key → (value, writes of that key).
pub type MemMap = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

#[derive(Clone, Default)]
pub struct MemConn {
    pub map: Arc<Mutex<MemMap>>,
}

impl MemConn {
    fn map(&self) -> std::sync::MutexGuard<'_, MemMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn read(&self, key: &[u8]) -> bool {
        self.map().contains_key(key)
    }

    pub fn write(&self, key: Vec<u8>, value: Vec<u8>) {
        let mut m = self.map();
        let entry = m.entry(key).or_insert((Vec::new(), 0));
        entry.0 = value;
        entry.1 += 1;
    }

    pub fn scan(&self, start: &[u8], count: u32) -> usize {
        self.map()
            .range(start.to_vec()..)
            .take(count as usize)
            .count()
    }
}
