//! Crash safety of flush, compaction and the manifest: the background
//! thread is stopped dead at each step of writing a file atomically (the
//! `crash_point` hook), the LSM is dropped like a killed process, and the
//! reopened state must equal the model at the reopened
//! `persisted_applied` index; replaying the "WAL" from there must give the
//! final state.

use golem_lsm::{CrashPoint, LogIndex, Lsm, LsmError, LsmOptions, RegionId, WriteBatch};
use std::collections::BTreeMap;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn options(crash_point: Option<CrashPoint>, skip: u32) -> LsmOptions {
    LsmOptions {
        crash_point_skip: skip,
        memtable_bytes_max: 4096,
        frozen_memtables_max: 1000,
        block_bytes: 512,
        segments_per_tier_max: 2,
        segments_max: 4,
        crash_point,
        ..LsmOptions::default()
    }
}

/// The "WAL": batch `i` (1-based) is entry `i` of region 1.
fn batch(i: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    for j in 0..8u64 {
        let k = (i * 7 + j * 13) % 300;
        b.put(format!("k{k:04}"), format!("v{i}-{j}"));
    }
    if i.is_multiple_of(10) {
        b.delete_range(format!("k{:04}", i % 300), format!("k{:04}", i % 300 + 20));
    }
    if i.is_multiple_of(3) {
        b.delete(format!("k{:04}", (i * 11) % 300));
    }
    b
}

fn apply_model(m: &mut Model, b: &WriteBatch) {
    for op in b.ops() {
        match op {
            golem_lsm::WriteOp::Put { key, value } => {
                m.insert(key.clone(), value.clone());
            }
            golem_lsm::WriteOp::Delete { key } => {
                m.remove(key);
            }
            golem_lsm::WriteOp::DeleteRange { start, end } => {
                m.retain(|k, _| !(k >= start && (end.is_empty() || k < end)));
            }
        }
    }
}

fn state(lsm: &mut Lsm) -> Model {
    lsm.scan(b"", b"", false, usize::MAX, usize::MAX)
        .unwrap()
        .pairs
        .into_iter()
        .collect()
}

const ENTRIES: u64 = 400;

fn crash_and_recover(point: CrashPoint, skip: u32) {
    let dir = tempfile::tempdir().unwrap();
    let region = RegionId(1);
    let mut models = vec![Model::new()];
    for i in 1..=ENTRIES {
        let mut m = models.last().unwrap().clone();
        apply_model(&mut m, &batch(i));
        models.push(m);
    }
    // Run until the crash point fires (or the entries run out).
    let mut lsm = Lsm::open(dir.path(), options(Some(point), skip)).unwrap();
    let mut crashed = false;
    for i in 1..=ENTRIES {
        match lsm.apply(batch(i), (region, LogIndex(i))) {
            Ok(()) => {}
            Err(LsmError::Background(_)) => {
                crashed = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
        if i.is_multiple_of(50) {
            lsm.flush().unwrap_or(());
            if lsm.wait_idle().is_err() {
                crashed = true;
                break;
            }
        }
    }
    assert!(crashed, "{point:?} never reached");
    if skip > 0 && point != CrashPoint::ManifestTempWritten {
        // Earlier flushes were made durable before the crash.
        assert!(
            lsm.persisted_applied(region).get() > 0
                || point == CrashPoint::CompactionSegmentRenamed
        );
    }
    drop(lsm); // The memtables are lost, like in a kill -9.

    let mut lsm = Lsm::open(dir.path(), options(None, 0)).unwrap();
    let p = lsm.persisted_applied(region).get();
    assert!(p < ENTRIES);
    assert_eq!(
        state(&mut lsm),
        models[p as usize],
        "{point:?}: state at persisted index {p}"
    );
    // No leftover temp or unnamed files after open.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".tmp"), "{name} left behind");
    }
    // Replay the WAL from p + 1.
    for i in p + 1..=ENTRIES {
        lsm.apply(batch(i), (region, LogIndex(i))).unwrap();
    }
    assert_eq!(state(&mut lsm), models[ENTRIES as usize]);
    lsm.flush().unwrap();
    lsm.compact().unwrap();
    lsm.wait_idle().unwrap();
    drop(lsm);
    let mut lsm = Lsm::open(dir.path(), options(None, 0)).unwrap();
    assert_eq!(lsm.persisted_applied(region), LogIndex(ENTRIES));
    assert_eq!(
        lsm.persisted_applied_all().clone(),
        [(region, LogIndex(ENTRIES))].into_iter().collect()
    );
    assert_eq!(state(&mut lsm), models[ENTRIES as usize]);
}

#[test]
fn crash_after_segment_temp_written() {
    crash_and_recover(CrashPoint::SegmentTempWritten, 0);
    crash_and_recover(CrashPoint::SegmentTempWritten, 3);
}

#[test]
fn crash_after_segment_renamed() {
    crash_and_recover(CrashPoint::SegmentRenamed, 0);
    crash_and_recover(CrashPoint::SegmentRenamed, 3);
}

#[test]
fn crash_after_manifest_temp_written() {
    crash_and_recover(CrashPoint::ManifestTempWritten, 0);
    crash_and_recover(CrashPoint::ManifestTempWritten, 3);
}

#[test]
fn crash_after_manifest_renamed() {
    crash_and_recover(CrashPoint::ManifestRenamed, 0);
    crash_and_recover(CrashPoint::ManifestRenamed, 3);
}

#[test]
fn crash_after_compaction_output_renamed() {
    crash_and_recover(CrashPoint::CompactionSegmentRenamed, 0);
    crash_and_recover(CrashPoint::CompactionSegmentRenamed, 3);
}

#[test]
fn clean_reopen_without_flush_loses_only_the_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), options(None, 0)).unwrap();
    let mut m = Model::new();
    for i in 1..=30 {
        apply_model(&mut m, &batch(i));
        lsm.apply(batch(i), (RegionId(1), LogIndex(i))).unwrap();
    }
    lsm.flush().unwrap();
    lsm.wait_idle().unwrap();
    lsm.apply(batch(31), (RegionId(1), LogIndex(31))).unwrap();
    drop(lsm);
    let mut lsm = Lsm::open(dir.path(), options(None, 0)).unwrap();
    assert_eq!(lsm.persisted_applied(RegionId(1)), LogIndex(30));
    assert_eq!(state(&mut lsm), m);
}

#[test]
fn a_lost_manifest_beside_segments_is_an_error_not_an_empty_lsm() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut lsm = Lsm::open(dir.path(), options(None, 0)).unwrap();
        lsm.apply(batch(1), (RegionId(1), LogIndex(1))).unwrap();
        lsm.flush().unwrap();
        lsm.wait_idle().unwrap();
    }
    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    assert!(matches!(
        Lsm::open(dir.path(), options(None, 0)),
        Err(LsmError::Corrupt { .. })
    ));
    // Nothing was deleted.
    let segs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(segs, 1);
}
