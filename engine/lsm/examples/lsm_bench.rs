//! Micro-benchmark of golem-lsm beside redb on the same put/get workload.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-lsm cargo run --release -p golem-lsm --example lsm_bench -- [keys]
//! ```
//!
//! Workload: `keys` keys of 16 bytes (random order), 100-byte values.
//! - golem-lsm put: one `apply` per key (one Raft entry each), 8 MiB
//!   memtables, flush and compaction on the background thread; timed to the
//!   last `apply` and again until the background is idle (all on disk).
//! - redb put: 1000 inserts per write transaction with `Durability::None`,
//!   a final durable commit (the LSM itself never fsyncs per write: the
//!   Raft WAL does), so both sides skip per-write fsync.
//! - get: random existing keys, from segments only (memtable empty) and
//!   from redb's B-tree; scans: 100 pairs from a random start, both
//!   sides copying keys and values out.
//!
//! Reads run in three rounds, each measure on both engines back to back.
//! Prints one line per measure; compare ratios, not absolute numbers.

use golem_lsm::{LogIndex, Lsm, LsmOptions, RegionId, WriteBatch};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redb::{Database, Durability, TableDefinition};
use std::time::Instant;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(b"user0000");
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn report(what: &str, ops: u64, secs: f64) {
    println!(
        "{what:<44} {ops:>9} ops in {secs:>7.3} s = {:>11.0} ops/s",
        ops as f64 / secs
    );
}

fn main() {
    let keys: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let reads = keys.min(200_000);
    let mut rng = SmallRng::seed_from_u64(42);
    let mut order: Vec<u64> = (0..keys).collect();
    order.shuffle(&mut rng);
    let value = vec![0xabu8; 100];
    let probes: Vec<u64> = (0..reads).map(|_| rng.gen_range(0..keys)).collect();

    // --- golem-lsm ---
    let dir = tempfile::tempdir().unwrap();
    let options = LsmOptions {
        memtable_bytes_max: 8 * 1024 * 1024,
        frozen_memtables_max: 64,
        ..LsmOptions::default()
    };
    let mut lsm = Lsm::open(dir.path(), options.clone()).unwrap();
    let t = Instant::now();
    for (n, &i) in order.iter().enumerate() {
        let mut b = WriteBatch::new();
        b.put(key(i).to_vec(), value.clone());
        lsm.apply(b, (RegionId(1), LogIndex(n as u64 + 1))).unwrap();
    }
    report(
        "golem-lsm put (memtable, background flush)",
        keys,
        t.elapsed().as_secs_f64(),
    );
    lsm.flush().unwrap();
    lsm.wait_idle().unwrap();
    report(
        "golem-lsm put (until flushed+compacted)",
        keys,
        t.elapsed().as_secs_f64(),
    );
    let stats = lsm.stats();
    println!(
        "golem-lsm: {} segments, {} bytes; compaction write amplification {:.2} \
         (segment bytes written by flush + compaction / by flush)",
        stats.segments,
        stats.segment_bytes,
        (stats.flushed_bytes + stats.compacted_bytes) as f64 / stats.flushed_bytes.max(1) as f64
    );

    // --- redb ---
    let rdir = tempfile::tempdir().unwrap();
    let db = Database::create(rdir.path().join("redb")).unwrap();
    let t = Instant::now();
    for chunk in order.chunks(1000) {
        let mut tx = db.begin_write().unwrap();
        tx.set_durability(Durability::None);
        {
            let mut table = tx.open_table(TABLE).unwrap();
            for &i in chunk {
                table.insert(&key(i)[..], &value[..]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let mut tx = db.begin_write().unwrap();
    tx.set_durability(Durability::Immediate);
    tx.commit().unwrap();
    report(
        "redb put (1000/txn, Durability::None)",
        keys,
        t.elapsed().as_secs_f64(),
    );
    let rtx = db.begin_read().unwrap();
    let table = rtx.open_table(TABLE).unwrap();

    // Reads: each measure runs on both engines back to back, in rounds, so
    // that load from other processes hits both sides alike.
    let scans = reads / 20;
    for round in 1..=3 {
        println!("-- read round {round}");
        let t = Instant::now();
        for &i in &probes {
            assert!(lsm.get(&key(i)).unwrap().is_some());
        }
        report(
            "golem-lsm get (segments, hit)",
            reads,
            t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        for &i in &probes {
            assert!(table.get(&key(i)[..]).unwrap().is_some());
        }
        report("redb get (hit)", reads, t.elapsed().as_secs_f64());
        let t = Instant::now();
        for &i in &probes {
            assert!(lsm.get(&key(i + keys)).unwrap().is_none());
        }
        report(
            "golem-lsm get (segments, miss)",
            reads,
            t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        for &i in &probes {
            assert!(table.get(&key(i + keys)[..]).unwrap().is_none());
        }
        report("redb get (miss)", reads, t.elapsed().as_secs_f64());
        let t = Instant::now();
        for &i in &probes[..scans as usize] {
            let page = lsm.scan(&key(i), b"", false, 100, usize::MAX).unwrap();
            assert!(!page.pairs.is_empty());
        }
        report(
            "golem-lsm scan 100 (segments)",
            scans,
            t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        for &i in &probes[..scans as usize] {
            let n = table
                .range(&key(i)[..]..)
                .unwrap()
                .take(100)
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value().to_vec(), v.value().to_vec())
                })
                .count();
            assert!(n > 0);
        }
        report("redb scan 100", scans, t.elapsed().as_secs_f64());
        let t = Instant::now();
        for &i in &probes[..scans as usize] {
            lsm.scan(b"", &key(i + 1), true, 100, usize::MAX).unwrap();
        }
        report(
            "golem-lsm reverse scan 100 (segments)",
            scans,
            t.elapsed().as_secs_f64(),
        );
        let t = Instant::now();
        for &i in &probes[..scans as usize] {
            let n = table
                .range(..=&key(i)[..])
                .unwrap()
                .rev()
                .take(100)
                .map(|r| {
                    let (k, v) = r.unwrap();
                    (k.value().to_vec(), v.value().to_vec())
                })
                .count();
            assert!(n > 0);
        }
        report("redb reverse scan 100", scans, t.elapsed().as_secs_f64());
    }
}
