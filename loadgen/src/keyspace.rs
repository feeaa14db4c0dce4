//! Record numbers, keys and the operation mix.
//!
//! Owns how a record number becomes a key (YCSB's `buildKeyName`), the
//! shared insert sequence, and the choice of each operation by the
//! workload's proportions. Invariant: `InsertSequence::existing()` never
//! counts a record whose insert has not been acknowledged at least by the
//! highest-numbered insert acknowledged so far (reads of a record whose
//! lower-numbered neighbour is still in flight may miss: counted as reads).

use crate::dist::fnv64;
use crate::workload::{InsertOrder, Workload};
use rand::Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of operation a worker issues, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OpKind {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Read,
        OpKind::Update,
        OpKind::Insert,
        OpKind::Scan,
        OpKind::ReadModifyWrite,
    ];

    /// go-ycsb's row name.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "READ",
            OpKind::Update => "UPDATE",
            OpKind::Insert => "INSERT",
            OpKind::Scan => "SCAN",
            OpKind::ReadModifyWrite => "READ_MODIFY_WRITE",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Turns record numbers into keys.
#[derive(Clone, Debug)]
pub struct KeySpace {
    prefix: String,
    zeropadding: usize,
    order: InsertOrder,
}

impl KeySpace {
    pub fn new(w: &Workload) -> KeySpace {
        KeySpace {
            prefix: w.keyprefix.clone(),
            zeropadding: w.zeropadding,
            order: w.insertorder,
        }
    }

    /// The key of record `n`.
    pub fn key(&self, n: u64) -> Vec<u8> {
        let n = match self.order {
            InsertOrder::Hashed => fnv64(n),
            InsertOrder::Ordered => n,
        };
        format!("{}{n:0>width$}", self.prefix, width = self.zeropadding).into_bytes()
    }
}

/// Record numbers of inserts, shared by the workers of a run.
#[derive(Debug)]
pub struct InsertSequence {
    next: AtomicU64,
    existing: AtomicU64,
}

impl InsertSequence {
    /// `records` exist already (numbered `0..records`).
    pub fn new(records: u64) -> InsertSequence {
        InsertSequence {
            next: AtomicU64::new(records),
            existing: AtomicU64::new(records),
        }
    }

    /// The number of the next record to insert.
    pub fn take(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Record `n` is acknowledged.
    pub fn acknowledge(&self, n: u64) {
        self.existing.fetch_max(n + 1, Ordering::Relaxed);
    }

    /// Records known to exist: `0..existing()`.
    pub fn existing(&self) -> u64 {
        self.existing.load(Ordering::Relaxed)
    }
}

/// Picks each operation by the workload's proportions.
#[derive(Clone, Debug)]
pub struct OpChooser {
    /// Cumulative proportions, normalised to end at 1.
    cumulative: [f64; 5],
    /// The last kind with a share, for a draw that rounding left above 1.
    fallback: OpKind,
}

impl OpChooser {
    pub fn new(w: &Workload) -> OpChooser {
        let p = w.proportions();
        let total: f64 = p.iter().sum();
        let mut cumulative = [0.0; 5];
        let mut acc = 0.0;
        for (c, x) in cumulative.iter_mut().zip(p) {
            acc += x / total;
            *c = acc;
        }
        let last = p.iter().rposition(|x| *x > 0.0).unwrap_or(0);
        OpChooser {
            cumulative,
            fallback: OpKind::ALL[last],
        }
    }

    pub fn next(&self, rng: &mut impl Rng) -> OpKind {
        let u: f64 = rng.gen();
        for (kind, c) in OpKind::ALL.iter().zip(self.cumulative) {
            if u < c {
                return *kind;
            }
        }
        self.fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    #[test]
    fn keys_follow_ycsb_naming() {
        let mut w = Workload {
            insertorder: InsertOrder::Ordered,
            zeropadding: 12,
            keyprefix: "key".into(),
            ..Workload::default()
        };
        assert_eq!(KeySpace::new(&w).key(42), b"key000000000042");
        w.insertorder = InsertOrder::Hashed;
        w.keyprefix = "user".into();
        let k = KeySpace::new(&w).key(0);
        assert_eq!(k, format!("user{}", fnv64(0)).into_bytes());
    }

    #[test]
    fn op_mix_follows_proportions() {
        let w = Workload {
            readproportion: 0.5,
            updateproportion: 0.0,
            insertproportion: 0.0,
            scanproportion: 0.0,
            readmodifywriteproportion: 0.5,
            ..Workload::default()
        };
        let c = OpChooser::new(&w);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut n = [0u32; 5];
        for _ in 0..10_000 {
            n[c.next(&mut rng).index()] += 1;
        }
        assert_eq!(n[1] + n[2] + n[3], 0);
        assert!((4_700..5_300).contains(&n[0]), "{n:?}");
    }

    #[test]
    fn insert_sequence_counts_acknowledged_records() {
        let s = InsertSequence::new(10);
        let (a, b) = (s.take(), s.take());
        assert_eq!((a, b, s.existing()), (10, 11, 10));
        s.acknowledge(b);
        s.acknowledge(a);
        assert_eq!(s.existing(), 12);
    }
}
