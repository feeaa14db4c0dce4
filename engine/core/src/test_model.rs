//! A `BTreeMap` model of the state machine's semantics, for tests: what
//! each command does to the data and answers, and what a scan returns.
//! Shared by the state-machine tests (`kv.rs`) and the region tests.

use crate::command::Command;
use golem_wire::{KvPair, ResponseBody, WriteOp};
use std::collections::BTreeMap;

/// The model's data.
pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Applies `cmd` to `model` and returns the client's answer.
pub fn apply(model: &mut Model, cmd: Command) -> ResponseBody {
    match cmd {
        Command::Put { key, value } => {
            model.insert(key, value);
            ResponseBody::Put
        }
        Command::Delete { key } => {
            model.remove(&key);
            ResponseBody::Delete
        }
        Command::BatchWrite { ops } => {
            for op in ops {
                match op {
                    WriteOp::Put { key, value } => model.insert(key, value),
                    WriteOp::Delete { key } => model.remove(&key),
                };
            }
            ResponseBody::BatchWrite
        }
        Command::CompareAndSwap {
            key,
            expected,
            new_value,
        } => {
            let previous = model.get(&key).cloned();
            let swapped = previous == expected;
            if swapped {
                match new_value {
                    Some(v) => model.insert(key, v),
                    None => model.remove(&key),
                };
            }
            ResponseBody::CompareAndSwap { swapped, previous }
        }
        // Changes metadata only (region::split).
        Command::Split { .. } => ResponseBody::Split {
            regions: Vec::new(),
        },
        // Changes metadata only (region::merge).
        Command::Merge(_) => ResponseBody::ChangePeers {
            epoch: Default::default(),
        },
    }
}

/// Pairs with `start <= key < end` (empty `end`: unbounded), in order or
/// reversed, at most `limit`; and whether more remain.
pub fn scan(
    model: &Model,
    start: &[u8],
    end: &[u8],
    limit: u32,
    reverse: bool,
) -> (Vec<KvPair>, bool) {
    let mut all: Vec<KvPair> = model
        .iter()
        .filter(|(k, _)| k.as_slice() >= start && (end.is_empty() || k.as_slice() < end))
        .map(|(k, v)| KvPair {
            key: k.clone(),
            value: v.clone(),
        })
        .collect();
    if reverse {
        all.reverse();
    }
    let more = all.len() > limit as usize;
    all.truncate(limit as usize);
    (all, more)
}
