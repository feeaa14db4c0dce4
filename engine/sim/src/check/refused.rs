//! A write answered `NotLeader` after it was proposed never takes effect.
//!
//! golem-core promises this (`RegionPeer` answers a proposal `NotLeader`
//! only once the entry at its index is applied with another term, or is
//! cut from the peer's log), so clients may retry such a write — even a
//! CAS. Every written value in a run is unique to one write, so the check
//! is exact: a refused write's value must never be carried by an applied
//! entry, before or after the refusal.
//!
//! Owns the set of refused values and of values carried by applied
//! entries. Invariant: the two sets never intersect; the first
//! intersection is reported, naming the value, the region and the node.

use golem_core::command::Command;
use golem_wire::{RegionId, WriteOp};
use std::collections::{BTreeMap, BTreeSet};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct RefusedChecker {
    refused: BTreeSet<Vec<u8>>,
    /// Value → (region, index) of the first entry applied with it.
    applied: BTreeMap<Vec<u8>, (RegionId, u64)>,
}

/// The values a command writes.
pub fn written_values(cmd: &Command) -> Vec<&[u8]> {
    match cmd {
        Command::Put { value, .. } => vec![value.as_slice()],
        Command::Delete { .. } => Vec::new(),
        Command::BatchWrite { ops } => ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Put { value, .. } => Some(value.as_slice()),
                WriteOp::Delete { .. } => None,
            })
            .collect(),
        Command::CompareAndSwap { new_value, .. } => new_value.as_deref().into_iter().collect(),
        // Admin commands write no client values.
        _ => Vec::new(),
    }
}

impl RefusedChecker {
    /// A node answered the write carrying `value` with `NotLeader` after
    /// proposing it.
    pub fn refused(&mut self, node: usize, value: &[u8]) -> Result<(), String> {
        if let Some((region, index)) = self.applied.get(value) {
            return Err(format!(
                "node {node} answered NotLeader (never took effect) for the write of {}, but it was applied at region {region} index {index}",
                String::from_utf8_lossy(value)
            ));
        }
        self.refused.insert(value.to_vec());
        Ok(())
    }

    /// `node` applied `cmd` at `index` of `region`.
    pub fn applied(
        &mut self,
        node: usize,
        region: RegionId,
        index: u64,
        cmd: &Command,
    ) -> Result<(), String> {
        for v in written_values(cmd) {
            if self.refused.contains(v) {
                return Err(format!(
                    "node {node} applied the write of {} at region {region} index {index}, which was answered NotLeader (never took effect)",
                    String::from_utf8_lossy(v)
                ));
            }
            self.applied.entry(v.to_vec()).or_insert((region, index));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str) -> Command {
        Command::Put {
            key: b"k".to_vec(),
            value: v.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_refused_value_must_never_apply_in_either_order() {
        let r = RegionId(1);
        let mut c = RefusedChecker::default();
        c.applied(0, r, 1, &put("a")).unwrap();
        c.refused(1, b"b").unwrap();
        c.applied(0, r, 2, &put("c")).unwrap();
        assert!(c
            .applied(2, r, 3, &put("b"))
            .unwrap_err()
            .contains("index 3"));
        assert!(c.refused(0, b"a").unwrap_err().contains("index 1"));
    }

    #[test]
    fn values_of_every_command_kind() {
        let cas = Command::CompareAndSwap {
            key: b"k".to_vec(),
            expected: Some(b"x".to_vec()),
            new_value: Some(b"y".to_vec()),
        };
        assert_eq!(written_values(&cas), vec![b"y".as_slice()]);
        let batch = Command::BatchWrite {
            ops: vec![
                WriteOp::Put {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                },
                WriteOp::Delete { key: b"b".to_vec() },
            ],
        };
        assert_eq!(written_values(&batch), vec![b"1".as_slice()]);
        assert!(written_values(&Command::Delete { key: b"k".to_vec() }).is_empty());
    }
}
