//! Snapshot isolation, chunked iteration, file lifetime under snapshots,
//! and ingestion of an externally built segment.

use golem_lsm::{LogIndex, Lsm, LsmOptions, RegionId, SegmentWriter, WriteBatch};
use std::path::Path;

fn small() -> LsmOptions {
    LsmOptions {
        memtable_bytes_max: 2048,
        block_bytes: 256,
        segments_per_tier_max: 2,
        segments_max: 4,
        ..LsmOptions::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

fn seg_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

fn put_all(lsm: &mut Lsm, range: std::ops::Range<u32>, tag: &str, index: u64) {
    let mut b = WriteBatch::new();
    for i in range {
        b.put(key(i), format!("{tag}{i}"));
    }
    lsm.apply(b, (RegionId(1), LogIndex(index))).unwrap();
}

#[test]
fn snapshot_keeps_its_view_through_writes_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    put_all(&mut lsm, 0..200, "old", 1);
    lsm.flush().unwrap();
    put_all(&mut lsm, 200..220, "old", 2);
    let snap = lsm.snapshot();
    let before = snap.scan(b"", b"", false, usize::MAX, usize::MAX).unwrap();
    assert_eq!(before.pairs.len(), 220);

    put_all(&mut lsm, 0..220, "new", 3);
    let mut b = WriteBatch::new();
    b.delete_range(key(50), key(150)).delete(key(7));
    lsm.apply(b, (RegionId(1), LogIndex(4))).unwrap();
    lsm.flush().unwrap();
    lsm.compact().unwrap();
    lsm.wait_idle().unwrap();
    assert_eq!(lsm.stats().segments, 1);

    // The snapshot still sees the old values, forward and reverse.
    assert_eq!(
        snap.scan(b"", b"", false, usize::MAX, usize::MAX).unwrap(),
        before
    );
    let mut rev = snap
        .scan(b"", b"", true, usize::MAX, usize::MAX)
        .unwrap()
        .pairs;
    rev.reverse();
    assert_eq!(rev, before.pairs);
    assert_eq!(snap.get(&key(7)).unwrap(), Some(b"old7".to_vec()));
    assert_eq!(snap.get(&key(100)).unwrap(), Some(b"old100".to_vec()));
    // The LSM sees the new state.
    assert_eq!(lsm.get(&key(7)).unwrap(), None);
    assert_eq!(lsm.get(&key(100)).unwrap(), None);
    assert_eq!(lsm.get(&key(200)).unwrap(), Some(b"new200".to_vec()));

    // Compacted-away files live while the snapshot does, then go.
    assert!(seg_files(dir.path()) > 1);
    drop(snap);
    lsm.flush().unwrap(); // Any job wakes the background thread.
    lsm.wait_idle().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while seg_files(dir.path()) != lsm.stats().segments {
        assert!(
            std::time::Instant::now() < deadline,
            "obsolete files not deleted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn chunks_cover_a_region_range_exactly_in_bounded_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    put_all(&mut lsm, 0..300, "v", 1);
    lsm.flush().unwrap();
    put_all(&mut lsm, 100..150, "w", 2);
    let snap = lsm.snapshot();
    let mut all = Vec::new();
    for chunk in snap.chunks(&key(40), &key(260), 16, usize::MAX) {
        let chunk = chunk.unwrap();
        assert!(!chunk.is_empty() && chunk.len() <= 16);
        all.extend(chunk);
    }
    let want: Vec<_> = (40..260)
        .map(|i| {
            let tag = if (100..150).contains(&i) { "w" } else { "v" };
            (key(i), format!("{tag}{i}").into_bytes())
        })
        .collect();
    assert_eq!(all, want);
}

#[test]
fn ingest_shadows_older_data_and_records_its_applied_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    put_all(&mut lsm, 0..100, "old", 5);
    lsm.flush().unwrap();
    put_all(&mut lsm, 0..10, "mem", 6);
    // A Raft snapshot of region 2 = [k0020, k0060): a range tombstone over
    // the region (hides older data) plus its pairs.
    let ext = tempfile::tempdir().unwrap();
    let file = ext.path().join("snap.seg");
    let mut w = SegmentWriter::create(&file, 256, 10).unwrap();
    w.add_range_tombstone(&key(20), &key(60)).unwrap();
    for i in (20..60).step_by(2) {
        w.add(&key(i), Some(format!("snap{i}").as_bytes())).unwrap();
    }
    w.set_applied(RegionId(2), LogIndex(77));
    w.finish().unwrap();
    lsm.ingest(&file).unwrap();
    lsm.wait_idle().unwrap();
    assert!(lsm.take_ingest_failures().is_empty());
    assert!(!file.exists(), "the ingested file is moved in");
    assert_eq!(lsm.get(&key(20)).unwrap(), Some(b"snap20".to_vec()));
    assert_eq!(lsm.get(&key(21)).unwrap(), None);
    assert_eq!(lsm.get(&key(5)).unwrap(), Some(b"mem5".to_vec()));
    assert_eq!(lsm.get(&key(60)).unwrap(), Some(b"old60".to_vec()));
    let page = lsm.scan(&key(18), &key(24), true, 100, usize::MAX).unwrap();
    let keys: Vec<_> = page.pairs.iter().map(|p| p.0.clone()).collect();
    assert_eq!(keys, vec![key(22), key(20), key(19), key(18)]);
    assert_eq!(lsm.persisted_applied(RegionId(2)), LogIndex(77));
    assert_eq!(lsm.persisted_applied(RegionId(1)), LogIndex(6));
    // Survives compaction and reopen.
    lsm.compact().unwrap();
    lsm.wait_idle().unwrap();
    drop(lsm);
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    assert_eq!(lsm.get(&key(21)).unwrap(), None);
    assert_eq!(lsm.get(&key(22)).unwrap(), Some(b"snap22".to_vec()));
    assert_eq!(lsm.persisted_applied(RegionId(2)), LogIndex(77));
}

#[test]
fn a_corrupt_ingest_is_refused_and_the_lsm_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    let file = dir.path().join("bogus.in");
    std::fs::write(&file, vec![7u8; 500]).unwrap();
    lsm.ingest(&file).unwrap();
    lsm.wait_idle().unwrap();
    let failures = lsm.take_ingest_failures();
    assert_eq!(failures.len(), 1);
    assert!(file.exists());
    put_all(&mut lsm, 0..3, "v", 1);
    assert_eq!(lsm.get(&key(1)).unwrap(), Some(b"v1".to_vec()));
}

#[test]
fn a_second_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _lsm = Lsm::open(dir.path(), small()).unwrap();
    assert!(matches!(
        Lsm::open(dir.path(), small()),
        Err(golem_lsm::LsmError::Locked { .. })
    ));
}

#[test]
fn a_full_frozen_queue_pushes_back_with_write_stall_without_applying() {
    let dir = tempfile::tempdir().unwrap();
    let options = LsmOptions {
        memtable_bytes_max: 1024,
        frozen_memtables_max: 2,
        ..small()
    };
    let mut lsm = Lsm::open(dir.path(), options).unwrap();
    lsm.set_background_paused(true);
    let mut stalled_at = None;
    for i in 0..100u32 {
        let mut b = WriteBatch::new();
        b.put(key(i), vec![b'x'; 200]);
        match lsm.apply(b, (RegionId(1), LogIndex(u64::from(i) + 1))) {
            Ok(()) => {}
            Err(golem_lsm::LsmError::WriteStall { frozen: 2, max: 2 }) => {
                stalled_at = Some(i);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let i = stalled_at.expect("never stalled");
    assert_eq!(lsm.stats().frozen_memtables, 2);
    assert_eq!(
        lsm.get(&key(i)).unwrap(),
        None,
        "a stalled batch is not applied"
    );
    assert!(lsm.get(&key(i - 1)).unwrap().is_some());
    // The background catches up; the same batch then goes in.
    lsm.set_background_paused(false);
    lsm.wait_idle().unwrap();
    let mut b = WriteBatch::new();
    b.put(key(i), vec![b'x'; 200]);
    lsm.apply(b, (RegionId(1), LogIndex(u64::from(i) + 1)))
        .unwrap();
    assert!(lsm.get(&key(i)).unwrap().is_some());
    lsm.wait_idle().unwrap();
    assert_eq!(lsm.stats().frozen_memtables, 0);
}

#[test]
fn flushes_proceed_while_a_long_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let options = LsmOptions {
        memtable_bytes_max: 64 * 1024,
        frozen_memtables_max: 1000,
        segments_per_tier_max: 2,
        segments_max: 4,
        ..LsmOptions::default()
    };
    let mut lsm = Lsm::open(dir.path(), options).unwrap();
    let mut model = std::collections::BTreeMap::new();
    for i in 0..40_000u32 {
        let k = key(i.wrapping_mul(2_654_435_761) % 50_000);
        let v = format!("v{i}").into_bytes();
        let mut b = WriteBatch::new();
        b.put(k.clone(), v.clone());
        lsm.apply(b, (RegionId(1), LogIndex(u64::from(i) + 1)))
            .unwrap();
        model.insert(k, v);
        if i % 10_000 == 0 {
            lsm.compact().unwrap();
        }
    }
    lsm.flush().unwrap();
    lsm.wait_idle().unwrap();
    let all = lsm
        .scan(b"", b"", false, usize::MAX, usize::MAX)
        .unwrap()
        .pairs;
    assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    assert_eq!(lsm.persisted_applied(RegionId(1)), LogIndex(40_000));
}

#[test]
fn snapshot_under_write_stall_copies_the_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let options = LsmOptions {
        memtable_bytes_max: 1024,
        frozen_memtables_max: 1,
        ..small()
    };
    let mut lsm = Lsm::open(dir.path(), options).unwrap();
    lsm.set_background_paused(true);
    put_all(&mut lsm, 0..20, "a", 1); // Freezes: the queue is now full.
    put_all(&mut lsm, 20..22, "a", 2);
    assert_eq!(lsm.stats().frozen_memtables, 1);
    assert!(matches!(
        lsm.flush(),
        Err(golem_lsm::LsmError::WriteStall { .. })
    ));
    let snap = lsm.snapshot();
    assert_eq!(lsm.stats().frozen_memtables, 1);
    put_all(&mut lsm, 20..22, "b", 3);
    assert_eq!(snap.get(&key(21)).unwrap(), Some(b"a21".to_vec()));
    assert_eq!(lsm.get(&key(21)).unwrap(), Some(b"b21".to_vec()));
    lsm.set_background_paused(false);
    lsm.wait_idle().unwrap();
    assert_eq!(
        snap.scan(b"", b"", false, 100, usize::MAX)
            .unwrap()
            .pairs
            .len(),
        22
    );
}

#[test]
fn dropping_a_paused_lsm_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    put_all(&mut lsm, 0..10, "v", 1);
    lsm.set_background_paused(true);
    lsm.flush().unwrap();
    drop(lsm);
    // The drop did not hang. The queued flush may or may not have run
    // before the thread stopped (a race with the pause under load, seen in
    // CI): either nothing is durable (the WAL would replay it) or exactly
    // that batch is, never anything else.
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    let persisted = lsm.persisted_applied(RegionId(1));
    assert!(
        persisted == LogIndex(0) || persisted == LogIndex(1),
        "{persisted:?}"
    );
    if persisted == LogIndex(1) {
        assert_eq!(lsm.get(&key(9)).unwrap(), Some(b"v9".to_vec()));
    }
}

#[test]
fn approximate_bytes_and_write_amplification_counters() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    for round in 0..4u64 {
        put_all(&mut lsm, 0..400, "value-", round + 1);
        lsm.flush().unwrap();
    }
    lsm.wait_idle().unwrap();
    let stats = lsm.stats();
    assert!(stats.flushed_bytes > 0);
    assert!(stats.compacted_bytes > 0, "{stats:?}");
    let all = lsm.approximate_bytes(b"", b"");
    let half = lsm.approximate_bytes(b"", &key(200));
    let none = lsm.approximate_bytes(b"zzz", b"");
    assert!(all > 0 && all <= stats.segment_bytes);
    assert!(half > all / 4 && half < all * 3 / 4, "half {half} of {all}");
    assert_eq!(none, 0);
}
