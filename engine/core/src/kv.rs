//! The state machine's semantics: how a committed [`Command`] changes a
//! shard's [`KvStore`], and how reads are answered from it.
//!
//! Owns the meaning of every request: Put, Delete, BatchWrite (atomic),
//! CompareAndSwap (read then conditional write: atomic because a shard
//! applies on one thread), and the reads Get, Scan, BatchGet.
//!
//! Invariants: applying is deterministic (the same commands in the same order
//! give the same state on every replica); a command is applied entirely or
//! not at all (one `WriteBatch` per entry, tagged with its log index); a
//! Scan returns at most `SCAN_PAIRS_MAX` pairs and at most `SCAN_BYTES_MAX`
//! key+value bytes (but always at least one pair when one exists), and says
//! `more` exactly when it stopped before the end of its range.

use crate::command::Command;
use crate::store::{KvStore, WriteBatch, WriteError};
use golem_wire::limits::{SCAN_BYTES_MAX, SCAN_PAIRS_MAX};
use golem_wire::{GolemError, LogIndex, RegionId, RequestBody, ResponseBody, WriteOp};

/// Applies one committed command of `region` at log `index` to `store` and
/// returns the client's answer. On `Err` nothing was applied.
pub fn apply_command(
    store: &mut dyn KvStore,
    region: RegionId,
    index: LogIndex,
    cmd: Command,
) -> Result<ResponseBody, WriteError> {
    let mut batch = WriteBatch::new();
    let response = match cmd {
        Command::Put { key, value } => {
            batch.put(key, value);
            ResponseBody::Put
        }
        Command::Delete { key } => {
            batch.delete(key);
            ResponseBody::Delete
        }
        Command::BatchWrite { ops } => {
            for op in ops {
                match op {
                    WriteOp::Put { key, value } => batch.put(key, value),
                    WriteOp::Delete { key } => batch.delete(key),
                };
            }
            ResponseBody::BatchWrite
        }
        Command::CompareAndSwap {
            key,
            expected,
            new_value,
        } => {
            let previous = store
                .get(&key)
                .map_err(|e| WriteError::Failed(e.to_string()))?;
            let swapped = previous == expected;
            if swapped {
                match new_value {
                    Some(v) => batch.put(key, v),
                    None => batch.delete(key),
                };
            }
            ResponseBody::CompareAndSwap { swapped, previous }
        }
        // A split writes no data (both halves stay in this store); its
        // metadata change and answer are `region::split`'s.
        Command::Split { .. } => ResponseBody::Split {
            regions: Vec::new(),
        },
        // Changes metadata only (region::merge).
        Command::Merge(_) => ResponseBody::ChangePeers {
            epoch: Default::default(),
        },
    };
    store.write(batch, region, index)?;
    Ok(response)
}

/// Records an entry that changes no data (a leader's empty entry, a
/// membership change) as applied.
pub fn apply_noop(
    store: &mut dyn KvStore,
    region: RegionId,
    index: LogIndex,
) -> Result<(), WriteError> {
    store.write(WriteBatch::new(), region, index)
}

/// Serves a read (Get, Scan, BatchGet); `InvalidArgument` for a write,
/// `Internal` when the store cannot read its files.
pub fn read(store: &mut dyn KvStore, body: &RequestBody) -> Result<ResponseBody, GolemError> {
    let internal = |e: crate::store::ReadError| GolemError::Internal {
        reason: e.to_string(),
    };
    match body {
        RequestBody::Get { key } => Ok(ResponseBody::Get {
            value: store.get(key).map_err(internal)?,
        }),
        RequestBody::Scan {
            start,
            end,
            limit,
            reverse,
        } => {
            let pairs_max = (*limit).min(SCAN_PAIRS_MAX) as usize;
            let (pairs, more) = store
                .scan(start, end, *reverse, pairs_max, SCAN_BYTES_MAX)
                .map_err(internal)?;
            Ok(ResponseBody::Scan { pairs, more })
        }
        RequestBody::BatchGet { keys } => {
            let mut values = Vec::with_capacity(keys.len());
            for k in keys {
                values.push(store.get(k).map_err(internal)?);
            }
            Ok(ResponseBody::BatchGet { values })
        }
        other => Err(GolemError::invalid(format!(
            "{} is not a read",
            other.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use golem_wire::KvPair;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const REGION: RegionId = RegionId(1);

    /// A store and the next log index, applying commands in order.
    struct KvState<S: KvStore = MemStore> {
        store: S,
        index: u64,
    }

    impl KvState<MemStore> {
        fn new() -> Self {
            KvState::over(MemStore::new())
        }
    }

    impl<S: KvStore> KvState<S> {
        fn over(store: S) -> Self {
            KvState { store, index: 0 }
        }

        fn apply(&mut self, cmd: Command) -> ResponseBody {
            self.index += 1;
            apply_command(&mut self.store, REGION, LogIndex(self.index), cmd).unwrap()
        }

        fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
            self.store.get(key).unwrap()
        }

        fn scan(
            &mut self,
            start: &[u8],
            end: &[u8],
            limit: u32,
            reverse: bool,
        ) -> (Vec<KvPair>, bool) {
            let body = RequestBody::Scan {
                start: start.to_vec(),
                end: end.to_vec(),
                limit,
                reverse,
            };
            match read(&mut self.store, &body).unwrap() {
                ResponseBody::Scan { pairs, more } => (pairs, more),
                other => panic!("scan answered {other:?}"),
            }
        }

        fn read(&mut self, body: &RequestBody) -> Result<ResponseBody, GolemError> {
            read(&mut self.store, body)
        }

        fn all(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
            let (pairs, more) = self
                .store
                .scan(b"", b"", false, usize::MAX, usize::MAX)
                .unwrap();
            assert!(!more);
            pairs.into_iter().map(|p| (p.key, p.value)).collect()
        }

        fn is_empty(&mut self) -> bool {
            self.all().is_empty()
        }
    }

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn put(state: &mut KvState<impl KvStore>, k: &str, v: &str) {
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
        assert_eq!(s.get(b"a"), Some(b("1")));
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
        assert_eq!(s.get(b"b"), Some(b("3")));
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

    proptest! {
        #[test]
        fn matches_a_btreemap_model(ops in proptest::collection::vec(op(), 1..60)) {
            run_model(KvState::new(), ops)?;
        }

        #[test]
        fn matches_a_btreemap_model_on_the_lsm(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let opts = golem_lsm::LsmOptions {
                memtable_bytes_max: 1024,
                ..golem_lsm::LsmOptions::default()
            };
            let lsm = golem_lsm::Lsm::open(dir.path(), opts).unwrap();
            run_model(KvState::over(lsm), ops)?;
        }
    }

    fn run_model<S: KvStore>(mut state: KvState<S>, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Write(cmd) => {
                    let expected = crate::test_model::apply(&mut model, cmd.clone());
                    prop_assert_eq!(state.apply(cmd), expected);
                }
                Op::Scan {
                    start,
                    end,
                    limit,
                    reverse,
                } => {
                    prop_assert_eq!(
                        state.scan(&start, &end, limit, reverse),
                        crate::test_model::scan(&model, &start, &end, limit, reverse)
                    );
                }
            }
            let got = state.all();
            let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
            prop_assert_eq!(got, want);
        }
        Ok(())
    }
}
