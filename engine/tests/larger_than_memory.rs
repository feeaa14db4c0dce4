//! A data set several times the node's memtable budget: every acknowledged
//! key survives kill -9 in the middle of loading, the data lives in segment
//! files (not in memory), old WAL segments are deleted, and the node's
//! anonymous resident memory stays bounded (reported on stderr).

mod common;

use common::*;
use golem_client::{Client, ClientConfig};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Memtable size given to the node, KiB. A shard holds at most 5
/// memtables (one active, four frozen): the memtable budget.
const MEMTABLE_KIB: usize = 256;
const MEMTABLE_BUDGET_BYTES: usize = 5 * MEMTABLE_KIB * 1024;
const VALUE_BYTES: usize = 1024;
/// Keys loaded in all: 8× the memtable budget of value bytes.
const KEYS: u32 = (8 * MEMTABLE_BUDGET_BYTES / VALUE_BYTES) as u32;
const WRITERS: u32 = 32;

fn key(i: u32) -> Vec<u8> {
    format!("big-{i:08}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    let mut v = format!("{i:08}-").into_bytes();
    v.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    v
}

async fn client(node: &NodeProcess) -> Client {
    let mut cfg = ClientConfig::new(vec![node.base]);
    cfg.request_timeout_ms = 30_000;
    // One node: nothing to fail over to, so no per-attempt timeout (a slow
    // fsync must not turn an acknowledged-later write into an unknown one).
    cfg.attempt_timeout_ms = 0;
    Client::connect(cfg).await.expect("connect")
}

/// Loads keys `from..KEYS` with `WRITERS` concurrent writers, recording
/// the acknowledged ones; stops early (without error) if the node dies.
async fn load(c: &Client, from: u32, acked: Arc<Mutex<HashSet<u32>>>) {
    let mut set = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let c = c.clone();
        let acked = acked.clone();
        set.spawn(async move {
            let mut i = from + w;
            while i < KEYS {
                if c.put(key(i), value(i)).await.is_err() {
                    return;
                }
                acked.lock().unwrap().insert(i);
                i += WRITERS;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// `(VmRSS, RssAnon)` of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn files_with_extension(dir: &Path, ext: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == ext))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn data_four_times_the_memory_budget_survives_kill_9_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let memtable = MEMTABLE_KIB.to_string();
    let mut node = NodeProcess::start(
        dir.path(),
        1,
        &["--memtable-kib", &memtable, "--wal-segment-mib", "1"],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(HashSet::new()));

    // Load until half the keys are acknowledged, then kill -9 mid-write.
    rt.block_on(async {
        let c = client(&node).await;
        let loader = {
            let c = c.clone();
            let acked = acked.clone();
            tokio::spawn(async move { load(&c, 0, acked).await })
        };
        while acked.lock().unwrap().len() < (KEYS / 2) as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        node.kill9();
        loader.await.unwrap();
    });
    let first_half = acked.lock().unwrap().len();

    // Restart and load everything (rewriting the first half too).
    node.restart();
    let after_restart = rss_kib(node.child.id());
    rt.block_on(async {
        let c = client(&node).await;
        load(&c, 0, acked.clone()).await;
    });
    let loaded = rss_kib(node.child.id());
    let acked: Vec<u32> = acked.lock().unwrap().iter().copied().collect();
    assert_eq!(acked.len(), KEYS as usize, "every key acknowledged once");

    // Kill -9 again with everything loaded, restart, read everything back.
    node.kill9();
    node.restart();
    rt.block_on(async {
        let c = client(&node).await;
        for chunk in acked.chunks(256) {
            let got = c
                .batch_get(chunk.iter().map(|&i| key(i)).collect::<Vec<_>>())
                .await
                .expect("batch_get");
            for (i, v) in chunk.iter().zip(got) {
                assert!(
                    v.as_deref() == Some(value(*i).as_slice()),
                    "key {i} lost or wrong after kill -9"
                );
            }
        }
    });
    let read_back = rss_kib(node.child.id());

    let lsm_dir = dir.path().join("lsm").join("shard-0");
    let wal_dir = dir.path().join("wal").join("shard-0");
    let segments = files_with_extension(&lsm_dir, "seg");
    let data_mib = (KEYS as usize * VALUE_BYTES) >> 20;
    // Segments whose entries are durable in the LSM are deleted by the
    // node's once-a-second WAL collection (after the memtable flushes it
    // asks for): wait for it, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut wal_segments = files_with_extension(&wal_dir, "wal");
    while wal_segments >= data_mib && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        wal_segments = files_with_extension(&wal_dir, "wal");
    }
    eprintln!(
        "larger-than-memory: {KEYS} keys × {VALUE_BYTES} B = {data_mib} MiB (memtable budget {} KiB); \
         first kill after {first_half} acks; {segments} LSM segments, {wal_segments} WAL segments of 1 MiB; \
         RSS/RssAnon KiB: after restart {after_restart:?}, loaded {loaded:?}, after re-reading {read_back:?}",
        MEMTABLE_BUDGET_BYTES >> 10
    );
    assert!(segments >= 1, "the data was flushed to segment files");
    // 8 MiB of values went through a 1 MiB-segment WAL: old segments were
    // deleted once their entries were durable in the LSM.
    assert!(
        wal_segments < data_mib,
        "{wal_segments} WAL segments kept for {data_mib} MiB written"
    );
    // Anonymous memory (heap: memtables, caches, buffers) does not hold
    // the data set: it stays under the data size plus a fixed allowance
    // for runtime buffers, and does not grow while reading it all back.
    let allowance_kib = 48 * 1024;
    assert!(
        loaded.1 < (data_mib as u64 * 1024) / 2 + allowance_kib,
        "RssAnon {} KiB while holding {data_mib} MiB",
        loaded.1
    );
    assert!(
        read_back.1 < allowance_kib + (MEMTABLE_BUDGET_BYTES as u64 >> 10) * 4,
        "RssAnon {} KiB after reading {data_mib} MiB back",
        read_back.1
    );
}
