//! Property test: a real node, driven through the client SDK, behaves like
//! a BTreeMap under random puts, deletes, gets, scans, batches, CAS and
//! restarts (clean and kill -9).

mod common;

use common::*;
use golem_client::{Client, ClientConfig};
use golem_wire::WriteOp;
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Get(u8),
    Scan {
        start: u8,
        end: Option<u8>,
        limit: u32,
        reverse: bool,
    },
    BatchGet(Vec<u8>),
    BatchWrite(Vec<(u8, Option<u8>)>),
    Cas {
        key: u8,
        expected: Option<u8>,
        new: Option<u8>,
    },
    Restart {
        kill: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..24;
    let v = 0u8..4;
    prop_oneof![
        8 => (k.clone(), v.clone()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => k.clone().prop_map(Op::Delete),
        5 => k.clone().prop_map(Op::Get),
        3 => (k.clone(), proptest::option::of(k.clone()), 1u32..30, any::<bool>())
            .prop_map(|(start, end, limit, reverse)| Op::Scan { start, end, limit, reverse }),
        2 => proptest::collection::vec(k.clone(), 1..6).prop_map(Op::BatchGet),
        2 => proptest::collection::vec((k.clone(), proptest::option::of(v.clone())), 1..6)
            .prop_map(Op::BatchWrite),
        4 => (k.clone(), proptest::option::of(v.clone()), proptest::option::of(v.clone()))
            .prop_map(|(key, expected, new)| Op::Cas { key, expected, new }),
        1 => any::<bool>().prop_map(|kill| Op::Restart { kill }),
    ]
}

struct Harness {
    node: NodeProcess,
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    case: u32,
}

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fn connect(rt: &tokio::runtime::Runtime, node: &NodeProcess) -> Client {
    let mut cfg = ClientConfig::new(vec![node.base]);
    cfg.request_timeout_ms = 20_000;
    // One node: nothing to fail over to, so no per-attempt timeout (a slow
    // fsync must not turn an acknowledged-later write into an unknown one).
    cfg.attempt_timeout_ms = 0;
    rt.block_on(Client::connect(cfg)).expect("connect")
}

fn run_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(|| {
            let dir = tempfile::tempdir().unwrap();
            let node = NodeProcess::start(dir.path(), 2, &[]);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            Harness {
                node,
                _dir: dir,
                rt,
                case: 0,
            }
        });
        h.case += 1;
        // Each case owns a fresh key prefix, so the model starts empty.
        let prefix = format!("case{:05}/", h.case);
        let key = |k: u8| format!("{prefix}{k:02}").into_bytes();
        let val = |v: u8| vec![b'a' + v; 1 + v as usize * 3];
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut client = connect(&h.rt, &h.node);
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    h.rt.block_on(client.put(key(k), val(v))).unwrap();
                    model.insert(key(k), val(v));
                }
                Op::Delete(k) => {
                    h.rt.block_on(client.delete(key(k))).unwrap();
                    model.remove(&key(k));
                }
                Op::Get(k) => {
                    let got = h.rt.block_on(client.get(key(k))).unwrap();
                    prop_assert_eq!(got.as_ref(), model.get(&key(k)));
                }
                Op::Scan {
                    start,
                    end,
                    limit,
                    reverse,
                } => {
                    let s = key(start);
                    // An absent end scans to the end of this case's prefix.
                    let e = end
                        .map(key)
                        .unwrap_or_else(|| format!("{prefix}~").into_bytes());
                    let r =
                        h.rt.block_on(client.scan(s.clone(), e.clone(), limit, reverse));
                    if s > e {
                        prop_assert!(r.is_err(), "scan with start > end must fail");
                        continue;
                    }
                    let r = r.unwrap();
                    let range =
                        model.range::<Vec<u8>, _>((Bound::Included(&s), Bound::Excluded(&e)));
                    let expect: Vec<_> = if reverse {
                        range.rev().take(limit as usize).collect()
                    } else {
                        range.take(limit as usize).collect()
                    };
                    let got: Vec<_> = r.pairs.iter().map(|p| (&p.key, &p.value)).collect();
                    prop_assert_eq!(got, expect);
                }
                Op::BatchGet(ks) => {
                    let got = h
                        .rt
                        .block_on(client.batch_get(ks.iter().map(|&k| key(k)).collect::<Vec<_>>()))
                        .unwrap();
                    let expect: Vec<_> = ks.iter().map(|&k| model.get(&key(k)).cloned()).collect();
                    prop_assert_eq!(got, expect);
                }
                Op::BatchWrite(ws) => {
                    let ops: Vec<WriteOp> = ws
                        .iter()
                        .map(|&(k, v)| match v {
                            Some(v) => WriteOp::Put {
                                key: key(k),
                                value: val(v),
                            },
                            None => WriteOp::Delete { key: key(k) },
                        })
                        .collect();
                    h.rt.block_on(client.batch_write(ops)).unwrap();
                    for (k, v) in ws {
                        match v {
                            Some(v) => model.insert(key(k), val(v)),
                            None => model.remove(&key(k)),
                        };
                    }
                }
                Op::Cas {
                    key: k,
                    expected,
                    new,
                } => {
                    let r =
                        h.rt.block_on(client.compare_and_swap(
                            key(k),
                            expected.map(val).as_deref(),
                            new.map(val).as_deref(),
                        ))
                        .unwrap();
                    let current = model.get(&key(k)).cloned();
                    let should_swap = current == expected.map(val);
                    prop_assert_eq!(r.swapped, should_swap);
                    prop_assert_eq!(r.previous, current);
                    if should_swap {
                        match new {
                            Some(v) => model.insert(key(k), val(v)),
                            None => model.remove(&key(k)),
                        };
                    }
                }
                Op::Restart { kill } => {
                    drop(client);
                    if kill {
                        h.node.kill9();
                    } else {
                        prop_assert!(h.node.terminate());
                    }
                    h.node.restart();
                    client = connect(&h.rt, &h.node);
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn node_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..60)) {
        run_case(ops)?;
    }
}
