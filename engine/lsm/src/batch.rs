//! `WriteBatch`: the writes of one applied Raft entry (or of several), which
//! the LSM applies atomically and in order.
//!
//! Key-range convention (same as `KvState::scan`): a range is `[start, end)`
//! and an **empty `end` means unbounded** (to the end of the key space), so a
//! region's range `[start, end)` can be passed as it is.

use crate::error::LsmError;
use crate::options::{KEY_BYTES_MAX, VALUE_BYTES_MAX};

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// Sets `key` to `value`.
    Put {
        /// The key (non-empty).
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes `key` (a tombstone until compaction reaches the bottom).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Removes every key in `[start, end)` (empty `end`: unbounded).
    DeleteRange {
        /// First key removed.
        start: Vec<u8>,
        /// First key kept; empty for unbounded.
        end: Vec<u8>,
    },
}

/// An ordered list of writes applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Appends a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(WriteOp::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Appends a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(WriteOp::Delete { key: key.into() });
        self
    }

    /// Appends a range delete of `[start, end)` (empty `end`: unbounded).
    pub fn delete_range(
        &mut self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) -> &mut Self {
        self.ops.push(WriteOp::DeleteRange {
            start: start.into(),
            end: end.into(),
        });
        self
    }

    /// The writes, in order.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Whether the batch has no writes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks every limit before anything is applied (so that a batch is
    /// applied entirely or not at all).
    pub(crate) fn validate(&self) -> Result<(), LsmError> {
        for op in &self.ops {
            match op {
                WriteOp::Put { key, value } => {
                    check_key(key)?;
                    if value.len() > VALUE_BYTES_MAX {
                        return Err(LsmError::InvalidArgument(format!(
                            "value of {} bytes is over VALUE_BYTES_MAX {VALUE_BYTES_MAX}",
                            value.len()
                        )));
                    }
                }
                WriteOp::Delete { key } => check_key(key)?,
                WriteOp::DeleteRange { start, end } => {
                    if start.len() > KEY_BYTES_MAX || end.len() > KEY_BYTES_MAX {
                        return Err(LsmError::InvalidArgument(
                            "range bound over KEY_BYTES_MAX".into(),
                        ));
                    }
                    if !end.is_empty() && start >= end {
                        return Err(LsmError::InvalidArgument(
                            "delete_range with start >= end".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_key(key: &[u8]) -> Result<(), LsmError> {
    if key.is_empty() {
        return Err(LsmError::InvalidArgument("empty key".into()));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(LsmError::InvalidArgument(format!(
            "key of {} bytes is over KEY_BYTES_MAX {KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}
