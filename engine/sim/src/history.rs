//! The client history of a run and its per-key linearizability check.
//!
//! Owns the recorded operations (byte keys and values, as clients saw
//! them) and their translation into the checker's interned form. What is
//! recorded: every write whose outcome is known (answered) or unknown
//! (timed out, or failed after it was proposed), and every answered read.
//! Writes refused before they were proposed, and reads without an answer,
//! had no effect and are not recorded.
//!
//! Invariants: call and return times come from the simulator's event
//! counter, so they are unique and totally ordered; every key starts
//! absent.

use crate::check::linearizability::{check, Input, Operation, Output, Value, Verdict};
use std::collections::BTreeMap;

/// A client's request, with byte values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvInput {
    Get,
    Put(Vec<u8>),
    Delete,
    Cas {
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
}

/// A client's answer, with byte values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    Get(Option<Vec<u8>>),
    Put,
    Delete,
    Cas {
        swapped: bool,
        previous: Option<Vec<u8>>,
    },
}

/// One recorded operation.
#[derive(Clone, Debug)]
pub struct Record {
    pub key: Vec<u8>,
    pub client: usize,
    pub input: KvInput,
    pub call: u64,
    /// None: outcome unknown.
    pub ret: Option<(u64, KvOutput)>,
}

/// Per-key check statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    pub keys: usize,
    pub ops: usize,
    pub unknown: usize,
    /// Keys whose search ran out of steps (neither passed nor failed).
    pub inconclusive: usize,
}

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub records: Vec<Record>,
}

fn show(v: &Option<Vec<u8>>) -> String {
    match v {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => "∅".to_owned(),
    }
}

impl Record {
    fn describe(&self) -> String {
        let input = match &self.input {
            KvInput::Get => "get".to_owned(),
            KvInput::Put(v) => format!("put {}", String::from_utf8_lossy(v)),
            KvInput::Delete => "delete".to_owned(),
            KvInput::Cas { expected, new } => format!("cas {}→{}", show(expected), show(new)),
        };
        let output = match &self.ret {
            None => "?".to_owned(),
            Some((t, o)) => {
                let o = match o {
                    KvOutput::Get(v) => show(v),
                    KvOutput::Put | KvOutput::Delete => "ok".to_owned(),
                    KvOutput::Cas { swapped, previous } => {
                        format!("swapped={swapped} previous={}", show(previous))
                    }
                };
                format!("{o} @{t}")
            }
        };
        format!("client {} @{} {input} → {output}", self.client, self.call)
    }
}

impl History {
    /// Records one operation.
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Checks every key's history; Err describes the first key that is not
    /// linearizable.
    pub fn check(&self, steps_max: u64) -> Result<CheckStats, String> {
        let mut by_key: BTreeMap<&[u8], Vec<&Record>> = BTreeMap::new();
        for r in &self.records {
            by_key.entry(&r.key).or_default().push(r);
        }
        let mut stats = CheckStats::default();
        for (key, records) in by_key {
            let mut values: BTreeMap<Vec<u8>, Value> = BTreeMap::new();
            let mut intern = |v: &Option<Vec<u8>>| -> Option<Value> {
                v.as_ref().map(|b| {
                    let n = values.len() as Value;
                    *values.entry(b.clone()).or_insert(n)
                })
            };
            let ops: Vec<Operation> = records
                .iter()
                .map(|r| Operation {
                    client: r.client,
                    input: match &r.input {
                        KvInput::Get => Input::Get,
                        KvInput::Put(v) => Input::Put(intern(&Some(v.clone())).expect("a value")),
                        KvInput::Delete => Input::Delete,
                        KvInput::Cas { expected, new } => Input::Cas {
                            expected: intern(expected),
                            new: intern(new),
                        },
                    },
                    call: r.call,
                    ret: r.ret.as_ref().map(|(t, o)| {
                        let o = match o {
                            KvOutput::Get(v) => Output::Get(intern(v)),
                            KvOutput::Put => Output::Put,
                            KvOutput::Delete => Output::Delete,
                            KvOutput::Cas { swapped, previous } => Output::Cas {
                                swapped: *swapped,
                                previous: intern(previous),
                            },
                        };
                        (*t, o)
                    }),
                })
                .collect();
            stats.keys += 1;
            stats.ops += ops.len();
            stats.unknown += ops.iter().filter(|o| o.ret.is_none()).count();
            match check(&ops, None, steps_max) {
                Verdict::Linearizable => {}
                Verdict::Inconclusive => stats.inconclusive += 1,
                Verdict::Violation { prefix, stuck } => {
                    let mut msg = format!(
                        "key {}: history not linearizable ({} ops); longest linearizable prefix:\n",
                        String::from_utf8_lossy(key),
                        ops.len()
                    );
                    let tail = prefix.len().saturating_sub(12);
                    if tail > 0 {
                        msg.push_str(&format!("  … {tail} earlier ops\n"));
                    }
                    for &i in &prefix[tail..] {
                        msg.push_str(&format!("  {}\n", records[i].describe()));
                    }
                    if let Some(r) = records.get(stuck) {
                        msg.push_str(&format!("cannot be placed next: {}\n", r.describe()));
                    }
                    msg.push_str("full history of the key (call order):\n");
                    let mut order: Vec<&&Record> = records.iter().collect();
                    order.sort_by_key(|r| r.call);
                    for r in order.iter().rev().take(40).rev() {
                        msg.push_str(&format!("  {}\n", r.describe()));
                    }
                    return Err(msg);
                }
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, input: KvInput, call: u64, ret: Option<(u64, KvOutput)>) -> Record {
        Record {
            key: key.as_bytes().to_vec(),
            client: 0,
            input,
            call,
            ret,
        }
    }

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn keys_are_checked_separately_and_violations_are_described() {
        let mut h = History::default();
        h.push(rec("a", KvInput::Put(v("1")), 1, Some((2, KvOutput::Put))));
        h.push(rec("b", KvInput::Get, 3, Some((4, KvOutput::Get(None)))));
        h.push(rec("a", KvInput::Put(v("2")), 5, None));
        h.push(rec(
            "a",
            KvInput::Get,
            6,
            Some((7, KvOutput::Get(Some(v("2"))))),
        ));
        let stats = h.check(10_000).unwrap();
        assert_eq!((stats.keys, stats.ops, stats.unknown), (2, 4, 1));

        h.push(rec(
            "b",
            KvInput::Get,
            8,
            Some((9, KvOutput::Get(Some(v("1"))))),
        ));
        let err = h.check(10_000).unwrap_err();
        assert!(err.starts_with("key b"), "{err}");
        assert!(
            err.contains("cannot be placed next: client 0 @8 get → 1 @9"),
            "{err}"
        );
    }
}
