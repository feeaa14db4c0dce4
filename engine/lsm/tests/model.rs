//! Model test: random sequences of writes, reads, flushes, compactions,
//! snapshots and clean reopens against a `BTreeMap`.

use golem_lsm::{LogIndex, Lsm, LsmOptions, LsmSnapshot, RegionId, WriteBatch};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    DeleteRange(u8, Option<u8>),
    Get(u8),
    Scan(u8, Option<u8>, bool, usize),
    Flush,
    Compact,
    WaitIdle,
    Reopen,
    Crash,
    Snapshot,
    CheckSnapshot(u8, Option<u8>, bool),
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k:03}").into_bytes()
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..40;
    prop_oneof![
        30 => (k.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        8 => k.clone().prop_map(Op::Delete),
        3 => (k.clone(), proptest::option::weighted(0.8, 0u8..40)).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        10 => k.clone().prop_map(Op::Get),
        8 => (k.clone(), proptest::option::of(0u8..40), any::<bool>(), 0usize..12)
            .prop_map(|(a, b, r, l)| Op::Scan(a, b, r, l)),
        3 => Just(Op::Flush),
        2 => Just(Op::Compact),
        2 => Just(Op::WaitIdle),
        2 => Just(Op::Reopen),
        2 => Just(Op::Crash),
        2 => Just(Op::Snapshot),
        3 => (k, proptest::option::of(0u8..40), any::<bool>()).prop_map(|(a, b, r)| Op::CheckSnapshot(a, b, r)),
    ]
}

fn options() -> LsmOptions {
    LsmOptions {
        memtable_bytes_max: 1024,
        frozen_memtables_max: 64,
        block_bytes: 256,
        segments_per_tier_max: 2,
        segments_max: 4,
        ..LsmOptions::default()
    }
}

fn model_scan(m: &Model, start: &[u8], end: &[u8], reverse: bool, limit: usize) -> (Pairs, bool) {
    if !end.is_empty() && start >= end {
        return (Vec::new(), false);
    }
    let upper = if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end.to_vec())
    };
    let all: Pairs = m
        .range((Bound::Included(start.to_vec()), upper))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut all = all;
    if reverse {
        all.reverse();
    }
    let more = all.len() > limit;
    all.truncate(limit);
    (all, more)
}

fn bound(b: Option<u8>) -> Vec<u8> {
    b.map(key).unwrap_or_default()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), options()).unwrap();
    let mut model = Model::new();
    let mut index = 0u64;
    let region = RegionId(7);
    let mut snap: Option<(LsmSnapshot, Model)> = None;
    // The "WAL": entry i is log[i - 1]; history[i] is the model after it.
    let mut log: Vec<WriteBatch> = Vec::new();
    let mut history: Vec<Model> = vec![Model::new()];
    for op in ops {
        match op {
            Op::Put(k, v) => {
                index += 1;
                let mut b = WriteBatch::new();
                b.put(key(k), vec![v; 1 + v as usize % 50]);
                lsm.apply(b.clone(), (region, LogIndex(index))).unwrap();
                model.insert(key(k), vec![v; 1 + v as usize % 50]);
                log.push(b);
                history.push(model.clone());
            }
            Op::Delete(k) => {
                index += 1;
                let mut b = WriteBatch::new();
                b.delete(key(k));
                lsm.apply(b.clone(), (region, LogIndex(index))).unwrap();
                model.remove(&key(k));
                log.push(b);
                history.push(model.clone());
            }
            Op::DeleteRange(a, b) => {
                let (start, end) = (key(a), bound(b));
                if !end.is_empty() && start >= end {
                    continue;
                }
                index += 1;
                let mut wb = WriteBatch::new();
                wb.delete_range(start.clone(), end.clone());
                lsm.apply(wb.clone(), (region, LogIndex(index))).unwrap();
                model.retain(|k, _| !(k >= &start && (end.is_empty() || k < &end)));
                log.push(wb);
                history.push(model.clone());
            }
            Op::Get(k) => assert_eq!(
                lsm.get(&key(k)).unwrap(),
                model.get(&key(k)).cloned(),
                "get {k}"
            ),
            Op::Scan(a, b, reverse, limit) => {
                let (start, end) = (key(a), bound(b));
                let page = lsm.scan(&start, &end, reverse, limit, usize::MAX).unwrap();
                let (want, more) = model_scan(&model, &start, &end, reverse, limit);
                assert_eq!(
                    page.pairs, want,
                    "scan {a} {b:?} rev={reverse} limit={limit}"
                );
                assert_eq!(page.more, more);
            }
            Op::Flush => lsm.flush().unwrap(),
            Op::Compact => lsm.compact().unwrap(),
            Op::WaitIdle => lsm.wait_idle().unwrap(),
            Op::Reopen => {
                lsm.flush().unwrap();
                lsm.wait_idle().unwrap();
                drop(lsm);
                lsm = Lsm::open(dir.path(), options()).unwrap();
                let want = if index == 0 {
                    LogIndex(0)
                } else {
                    LogIndex(index)
                };
                assert_eq!(lsm.persisted_applied(region), want);
            }
            Op::Crash => {
                // Like kill -9: memtables are lost, the WAL is replayed
                // from the persisted applied index.
                drop(lsm);
                lsm = Lsm::open(dir.path(), options()).unwrap();
                let p = lsm.persisted_applied(region).get();
                assert!(p <= index);
                let state = lsm
                    .scan(b"", b"", false, usize::MAX, usize::MAX)
                    .unwrap()
                    .pairs;
                assert_eq!(
                    state,
                    model_scan(&history[p as usize], b"", b"", false, usize::MAX).0
                );
                for i in p + 1..=index {
                    lsm.apply(log[i as usize - 1].clone(), (region, LogIndex(i)))
                        .unwrap();
                }
            }
            Op::Snapshot => snap = Some((lsm.snapshot(), model.clone())),
            Op::CheckSnapshot(a, b, reverse) => {
                if let Some((s, m)) = &snap {
                    let (start, end) = (key(a), bound(b));
                    let page = s.scan(&start, &end, reverse, 1000, usize::MAX).unwrap();
                    assert_eq!(page.pairs, model_scan(m, &start, &end, reverse, 1000).0);
                    assert_eq!(s.get(&key(a)).unwrap(), m.get(&key(a)).cloned());
                }
            }
        }
    }
    // Finally everything, both directions, and after a full compaction.
    for round in 0..2 {
        let page = lsm.scan(b"", b"", false, usize::MAX, usize::MAX).unwrap();
        assert_eq!(
            page.pairs,
            model_scan(&model, b"", b"", false, usize::MAX).0,
            "round {round}"
        );
        let page = lsm.scan(b"", b"", true, usize::MAX, usize::MAX).unwrap();
        assert_eq!(page.pairs, model_scan(&model, b"", b"", true, usize::MAX).0);
        lsm.flush().unwrap();
        lsm.compact().unwrap();
        lsm.wait_idle().unwrap();
    }
    assert!(lsm.stats().segments <= 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn lsm_matches_btreemap(ops in proptest::collection::vec(op(), 1..300)) {
        run(ops);
    }
}

#[test]
fn bytes_max_returns_at_least_one_pair() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), options()).unwrap();
    let mut b = WriteBatch::new();
    b.put("a", vec![1; 100]).put("b", vec![2; 100]);
    lsm.apply(b, (RegionId(1), LogIndex(1))).unwrap();
    let page = lsm.scan(b"", b"", false, 10, 10).unwrap();
    assert_eq!(page.pairs.len(), 1);
    assert!(page.more);
}
