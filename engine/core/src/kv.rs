//! `KvState`: a region's in-memory, ordered key-value state machine.
//!
//! Owns the applied data of one region: writes come in as decoded
//! [`Command`]s in Raft log order, reads (Get, Scan, BatchGet) are served
//! from what has been applied. Issue #3 replaces the `BTreeMap` with the
//! shard's LSM; the surface is kept to `apply` and `read` (plus accessors for
//! tests) so that the swap stays local.
//!
//! Invariants: applying is deterministic (the same commands in the same order
//! give the same state on every replica); a command is applied entirely or
//! not at all (a `BatchWrite` is atomic); a Scan returns at most
//! `SCAN_PAIRS_MAX` pairs and at most `SCAN_BYTES_MAX` key+value bytes (but
//! always at least one pair when one exists), and says `more` exactly when it
//! stopped before the end of its range.

use crate::command::Command;
use golem_wire::limits::{SCAN_BYTES_MAX, SCAN_PAIRS_MAX};
use golem_wire::{GolemError, KvPair, RequestBody, ResponseBody, WriteOp};
use std::collections::BTreeMap;
use std::ops::Bound;

/// A region's applied key-value state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KvState {
    /// An empty state.
    pub fn new() -> KvState {
        KvState::default()
    }

    /// Applies one committed command and returns the client's answer.
    pub fn apply(&mut self, cmd: Command) -> ResponseBody {
        match cmd {
            Command::Put { key, value } => {
                self.map.insert(key, value);
                ResponseBody::Put
            }
            Command::Delete { key } => {
                self.map.remove(&key);
                ResponseBody::Delete
            }
            Command::BatchWrite { ops } => {
                // In memory nothing can fail half-way: the batch is atomic.
                for op in ops {
                    match op {
                        WriteOp::Put { key, value } => {
                            self.map.insert(key, value);
                        }
                        WriteOp::Delete { key } => {
                            self.map.remove(&key);
                        }
                    }
                }
                ResponseBody::BatchWrite
            }
            Command::CompareAndSwap {
                key,
                expected,
                new_value,
            } => {
                let previous = self.map.get(&key).cloned();
                let swapped = previous == expected;
                if swapped {
                    match new_value {
                        Some(v) => {
                            self.map.insert(key, v);
                        }
                        None => {
                            self.map.remove(&key);
                        }
                    }
                }
                ResponseBody::CompareAndSwap { swapped, previous }
            }
        }
    }

    /// Serves a read (Get, Scan, BatchGet); `InvalidArgument` for a write.
    pub fn read(&self, body: &RequestBody) -> Result<ResponseBody, GolemError> {
        match body {
            RequestBody::Get { key } => Ok(ResponseBody::Get {
                value: self.get(key).map(<[u8]>::to_vec),
            }),
            RequestBody::Scan {
                start,
                end,
                limit,
                reverse,
            } => {
                let (pairs, more) = self.scan(start, end, *limit, *reverse);
                Ok(ResponseBody::Scan { pairs, more })
            }
            RequestBody::BatchGet { keys } => Ok(ResponseBody::BatchGet {
                values: keys
                    .iter()
                    .map(|k| self.get(k).map(<[u8]>::to_vec))
                    .collect(),
            }),
            other => Err(GolemError::invalid(format!(
                "{} is not a read",
                other.name()
            ))),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(Vec::as_slice)
    }

    /// Pairs with `start <= key < end` (empty `end`: unbounded), ascending or
    /// (`reverse`) descending, at most `limit` (clamped to `SCAN_PAIRS_MAX`)
    /// pairs and `SCAN_BYTES_MAX` bytes. Returns the pairs and whether more
    /// pairs remain in the range.
    pub fn scan(&self, start: &[u8], end: &[u8], limit: u32, reverse: bool) -> (Vec<KvPair>, bool) {
        if !end.is_empty() && start >= end {
            return (Vec::new(), false);
        }
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let range = self
            .map
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|(k, v)| (k.as_slice(), v.as_slice()));
        let pairs_max = limit.min(SCAN_PAIRS_MAX) as usize;
        if reverse {
            collect_scan(range.rev(), pairs_max)
        } else {
            collect_scan(range, pairs_max)
        }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All pairs in key order (for tests and checkers).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }
}

fn collect_scan<'a>(
    it: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    pairs_max: usize,
) -> (Vec<KvPair>, bool) {
    let mut pairs = Vec::new();
    let mut bytes = 0usize;
    for (k, v) in it {
        let pair_bytes = k.len() + v.len();
        if pairs.len() >= pairs_max || (!pairs.is_empty() && bytes + pair_bytes > SCAN_BYTES_MAX) {
            return (pairs, true);
        }
        bytes += pair_bytes;
        pairs.push(KvPair {
            key: k.to_vec(),
            value: v.to_vec(),
        });
    }
    (pairs, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn put(state: &mut KvState, k: &str, v: &str) {
        state.apply(Command::Put {
            key: b(k),
            value: b(v),
        });
    }

    fn keys(pairs: &[KvPair]) -> Vec<String> {
        pairs
            .iter()
            .map(|p| String::from_utf8(p.key.clone()).unwrap())
            .collect()
    }

    #[test]
    fn put_get_delete() {
        let mut s = KvState::new();
        put(&mut s, "a", "1");
        assert_eq!(s.get(b"a"), Some(&b"1"[..]));
        assert_eq!(
            s.apply(Command::Delete { key: b("a") }),
            ResponseBody::Delete
        );
        assert_eq!(s.get(b"a"), None);
        // Deleting an absent key is fine.
        assert_eq!(
            s.apply(Command::Delete { key: b("a") }),
            ResponseBody::Delete
        );
    }

    #[test]
    fn compare_and_swap() {
        let mut s = KvState::new();
        let cas = |expected: Option<&str>, new_value: Option<&str>| Command::CompareAndSwap {
            key: b("k"),
            expected: expected.map(b),
            new_value: new_value.map(b),
        };
        // Absent expected absent: swaps.
        assert_eq!(
            s.apply(cas(None, Some("1"))),
            ResponseBody::CompareAndSwap {
                swapped: true,
                previous: None
            }
        );
        // Wrong expectation: no swap, previous returned.
        assert_eq!(
            s.apply(cas(Some("2"), Some("3"))),
            ResponseBody::CompareAndSwap {
                swapped: false,
                previous: Some(b("1"))
            }
        );
        assert_eq!(
            s.apply(cas(None, Some("3"))),
            ResponseBody::CompareAndSwap {
                swapped: false,
                previous: Some(b("1"))
            }
        );
        // new_value None deletes.
        assert_eq!(
            s.apply(cas(Some("1"), None)),
            ResponseBody::CompareAndSwap {
                swapped: true,
                previous: Some(b("1"))
            }
        );
        assert!(s.is_empty());
    }

    #[test]
    fn batch_write_applies_in_order() {
        let mut s = KvState::new();
        s.apply(Command::BatchWrite {
            ops: vec![
                WriteOp::Put {
                    key: b("a"),
                    value: b("1"),
                },
                WriteOp::Put {
                    key: b("b"),
                    value: b("2"),
                },
                WriteOp::Delete { key: b("a") },
                WriteOp::Put {
                    key: b("b"),
                    value: b("3"),
                },
            ],
        });
        assert_eq!(s.get(b"a"), None);
        assert_eq!(s.get(b"b"), Some(&b"3"[..]));
    }

    #[test]
    fn scan_bounds_limit_and_reverse() {
        let mut s = KvState::new();
        for k in ["a", "b", "c", "d", "e"] {
            put(&mut s, k, k);
        }
        let (p, more) = s.scan(b"b", b"d", 10, false);
        assert_eq!((keys(&p), more), (vec!["b".into(), "c".into()], false));
        let (p, more) = s.scan(b"b", b"", 10, false);
        assert_eq!(keys(&p), vec!["b", "c", "d", "e"]);
        assert!(!more);
        let (p, more) = s.scan(b"", b"", 2, false);
        assert_eq!((keys(&p), more), (vec!["a".into(), "b".into()], true));
        let (p, more) = s.scan(b"", b"e", 2, true);
        assert_eq!((keys(&p), more), (vec!["d".into(), "c".into()], true));
        let (p, more) = s.scan(b"c", b"", 3, true);
        assert_eq!(
            (keys(&p), more),
            (vec!["e".into(), "d".into(), "c".into()], false)
        );
        // Exactly `limit` pairs left: not more.
        let (p, more) = s.scan(b"d", b"", 2, false);
        assert_eq!((p.len(), more), (2, false));
        // Empty and inverted ranges.
        assert_eq!(s.scan(b"c", b"c", 10, false), (vec![], false));
        assert_eq!(s.scan(b"d", b"c", 10, true), (vec![], false));
    }

    #[test]
    fn scan_limit_is_clamped() {
        let mut s = KvState::new();
        for i in 0..(SCAN_PAIRS_MAX + 5) {
            put(&mut s, &format!("k{i:06}"), "");
        }
        let (p, more) = s.scan(b"", b"", u32::MAX, false);
        assert_eq!(p.len(), SCAN_PAIRS_MAX as usize);
        assert!(more);
    }

    #[test]
    fn scan_bytes_are_bounded() {
        let mut s = KvState::new();
        let value = vec![7u8; 1024 * 1024];
        for k in ["a", "b", "c", "d", "e", "f"] {
            s.apply(Command::Put {
                key: b(k),
                value: value.clone(),
            });
        }
        let (p, more) = s.scan(b"", b"", 100, false);
        let bytes: usize = p.iter().map(|p| p.key.len() + p.value.len()).sum();
        assert!(bytes <= SCAN_BYTES_MAX);
        assert_eq!(p.len(), 3);
        assert!(more);
    }

    #[test]
    fn read_serves_reads_only() {
        let mut s = KvState::new();
        put(&mut s, "a", "1");
        assert_eq!(
            s.read(&RequestBody::BatchGet {
                keys: vec![b("a"), b("z")]
            }),
            Ok(ResponseBody::BatchGet {
                values: vec![Some(b("1")), None]
            })
        );
        assert!(s.read(&RequestBody::Delete { key: b("a") }).is_err());
    }

    /// One operation of the model test.
    #[derive(Clone, Debug)]
    enum Op {
        Write(Command),
        Scan {
            start: Vec<u8>,
            end: Vec<u8>,
            limit: u32,
            reverse: bool,
        },
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..4, 1..3)
    }

    fn op() -> impl Strategy<Value = Op> {
        let value = proptest::collection::vec(any::<u8>(), 0..3);
        prop_oneof![
            (key(), value.clone()).prop_map(|(key, value)| Op::Write(Command::Put { key, value })),
            key().prop_map(|key| Op::Write(Command::Delete { key })),
            proptest::collection::vec(
                prop_oneof![
                    (key(), value.clone()).prop_map(|(key, value)| WriteOp::Put { key, value }),
                    key().prop_map(|key| WriteOp::Delete { key }),
                ],
                1..4
            )
            .prop_map(|ops| Op::Write(Command::BatchWrite { ops })),
            (
                key(),
                proptest::option::of(value.clone()),
                proptest::option::of(value)
            )
                .prop_map(|(key, expected, new_value)| Op::Write(
                    Command::CompareAndSwap {
                        key,
                        expected,
                        new_value
                    }
                )),
            (
                proptest::collection::vec(0u8..4, 0..3),
                proptest::collection::vec(0u8..4, 0..3),
                1u32..6,
                any::<bool>()
            )
                .prop_map(|(start, end, limit, reverse)| Op::Scan {
                    start,
                    end,
                    limit,
                    reverse
                }),
        ]
    }

    /// The model's scan: filter, order, truncate.
    fn model_scan(
        model: &BTreeMap<Vec<u8>, Vec<u8>>,
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

    proptest! {
        #[test]
        fn matches_a_btreemap_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut state = KvState::new();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Write(cmd) => {
                        let expected = match cmd.clone() {
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
                                        WriteOp::Put { key, value } => { model.insert(key, value); }
                                        WriteOp::Delete { key } => { model.remove(&key); }
                                    }
                                }
                                ResponseBody::BatchWrite
                            }
                            Command::CompareAndSwap { key, expected, new_value } => {
                                let previous = model.get(&key).cloned();
                                let swapped = previous == expected;
                                if swapped {
                                    match new_value {
                                        Some(v) => { model.insert(key, v); }
                                        None => { model.remove(&key); }
                                    }
                                }
                                ResponseBody::CompareAndSwap { swapped, previous }
                            }
                        };
                        prop_assert_eq!(state.apply(cmd), expected);
                    }
                    Op::Scan { start, end, limit, reverse } => {
                        prop_assert_eq!(
                            state.scan(&start, &end, limit, reverse),
                            model_scan(&model, &start, &end, limit, reverse)
                        );
                    }
                }
                let got: Vec<(Vec<u8>, Vec<u8>)> =
                    state.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
