//! Tests of the glommio WAL on a real executor and real files (tempdir).
//!
//! Faults are injected with `std::fs` between runs: truncation and zeroing
//! (torn tails), byte flips (corruption), removed and half-created segments.

use super::*;
use golem_core::wal_record::{scan, ScannedRecord, BATCH_HEADER_BYTES};
use std::future::Future;

/// Runs `fut` on a fresh glommio executor. A small `io_memory` keeps the
/// pinned ring buffers under a low `RLIMIT_MEMLOCK`.
pub(super) fn run<T>(fut: impl Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 * 1024)
        .make()
        .expect("glommio executor")
        .run(fut)
}

pub(super) fn small() -> WalOptions {
    WalOptions {
        segment_bytes: 16 * 1024,
        write_alignment_bytes: 4096,
        ..WalOptions::default()
    }
}

/// `Wal::open`, with every record's segment number and offset set to 0 (the tests
/// compare records with what they appended, which has no segment yet).
pub(super) async fn open_unsegmented(
    dir: &Path,
    opts: WalOptions,
) -> Result<(Wal, Vec<RecoveredRecord>), WalError> {
    let (wal, mut records) = Wal::open(dir, opts).await?;
    for r in &mut records {
        r.segment = 0;
        r.offset = 0;
    }
    Ok((wal, records))
}

pub(super) fn rec(i: usize) -> RecoveredRecord {
    let kind = match i % 3 {
        0 => RecordKind::Entries,
        1 => RecordKind::HardState,
        _ => RecordKind::RegionMeta,
    };
    RecoveredRecord {
        kind,
        region: RegionId((i % 5) as u64 + 1),
        payload: format!("record-{i};").repeat(i % 9).into_bytes(),
        segment: 0,
        offset: 0,
    }
}

pub(super) fn rec_sized(i: usize, bytes: usize) -> RecoveredRecord {
    let mut r = rec(i);
    r.payload = (0..bytes).map(|j| (i * 31 + j) as u8).collect();
    r
}

pub(super) fn put(wal: &mut Wal, r: &RecoveredRecord) {
    wal.append(r.kind, r.region, &r.payload);
}

/// Segment files in `dir`, in order.
pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    segment::list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|s| s.1)
        .collect()
}

/// The data records of a segment file, with offsets in the file.
fn file_records(path: &Path) -> Vec<ScannedRecord> {
    let bytes = std::fs::read(path).unwrap();
    scan(&bytes[SEGMENT_HEADER_BYTES..])
        .records
        .into_iter()
        .map(|mut r| {
            r.offset += SEGMENT_HEADER_BYTES;
            r.payload =
                r.payload.start + SEGMENT_HEADER_BYTES..r.payload.end + SEGMENT_HEADER_BYTES;
            r
        })
        .collect()
}

async fn reopen(dir: &Path, opts: WalOptions) -> (Wal, Vec<RecoveredRecord>) {
    open_unsegmented(dir, opts).await.expect("open WAL")
}

#[test]
fn empty_directory_opens_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shard-0").join("wal");
    run(async {
        let (mut wal, recs) = reopen(&dir, WalOptions::default()).await;
        assert!(recs.is_empty());
        assert!(!wal.has_pending());
        wal.sync().await; // nothing to do
        wal.close().await;
        let (wal, recs) = reopen(&dir, WalOptions::default()).await;
        assert!(recs.is_empty());
        wal.close().await;
    });
    assert!(
        segment_files(&dir).is_empty(),
        "no segment without a record"
    );
    assert!(dir.join(LOCK_FILE_NAME).exists());
}

#[test]
fn append_sync_reopen_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let written: Vec<_> = (0..10).map(rec).collect();
    run(async {
        let (mut wal, _) = reopen(dir, WalOptions::default()).await;
        for r in &written[..3] {
            put(&mut wal, r);
        }
        // Through the sink trait, as region logic does.
        {
            let sink: &mut dyn WalSink = &mut wal;
            for r in &written[3..] {
                sink.append(r.kind, r.region, &r.payload);
            }
        }
        assert!(wal.has_pending());
        wal.sync().await;
        assert!(!wal.has_pending());
        // Appended but never synced: not acknowledged, may be lost.
        put(&mut wal, &rec(99));
        wal.close().await;
        let (wal, recs) = reopen(dir, WalOptions::default()).await;
        assert_eq!(recs, written);
        wal.close().await;
    });
    let segs = segment_files(dir);
    assert_eq!(segs.len(), 1);
    assert_eq!(
        std::fs::metadata(&segs[0]).unwrap().len(),
        WalOptions::default().segment_bytes,
        "preallocated"
    );
}

#[test]
fn many_syncs_never_rewrite_synced_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let opts = WalOptions {
        segment_bytes: 1024 * 1024,
        ..WalOptions::default()
    };
    let mut written = Vec::new();
    run(async {
        let (mut wal, _) = reopen(dir, opts.clone()).await;
        let mut synced: Vec<u8> = Vec::new();
        for s in 0..120 {
            for k in 0..(s % 3 + 1) {
                let r = rec(s * 3 + k);
                put(&mut wal, &r);
                written.push(r);
            }
            wal.sync().await;
            let a = wal.active.as_ref().unwrap();
            assert_eq!(a.seq, 1);
            assert_eq!(a.pos % a.align, 0, "batches end aligned");
            let now = std::fs::read(&a.path).unwrap();
            assert_eq!(
                &now[..synced.len()],
                &synced[..],
                "sync {s} rewrote synced bytes"
            );
            synced = now[..a.pos as usize].to_vec();
        }
        wal.close().await;
        let (mut wal, recs) = reopen(dir, opts.clone()).await;
        assert_eq!(recs, written);
        // Writing continues in the same segment after a clean reopen.
        let r = rec(1000);
        put(&mut wal, &r);
        written.push(r);
        wal.sync().await;
        assert_eq!(wal.active.as_ref().unwrap().seq, 1);
        wal.close().await;
        let (wal, recs) = reopen(dir, opts).await;
        assert_eq!(recs, written);
        wal.close().await;
    });
    assert_eq!(segment_files(dir).len(), 1);
}

#[test]
fn crossing_segment_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut written = Vec::new();
    run(async {
        let (mut wal, _) = reopen(dir, small()).await;
        for s in 0..40 {
            for k in 0..2 {
                let r = rec_sized(s * 2 + k, 700 + 97 * ((s + k) % 11));
                put(&mut wal, &r);
                written.push(r);
            }
            wal.sync().await;
        }
        wal.close().await;
        let (mut wal, recs) = reopen(dir, small()).await;
        assert_eq!(recs, written);
        for s in 0..10 {
            let r = rec_sized(500 + s, 3000);
            put(&mut wal, &r);
            written.push(r);
            wal.sync().await;
        }
        wal.close().await;
        let (wal, recs) = reopen(dir, small()).await;
        assert_eq!(recs, written);
        wal.close().await;
    });
    let segs = segment_files(dir);
    assert!(segs.len() >= 5, "{} segments", segs.len());
    for p in &segs {
        assert_eq!(std::fs::metadata(p).unwrap().len(), small().segment_bytes);
    }
}

#[test]
fn batch_larger_than_a_segment_gets_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let big = rec_sized(1, 100 * 1024);
    let after = rec(2);
    run(async {
        let (mut wal, _) = reopen(dir, small()).await;
        put(&mut wal, &big);
        wal.sync().await;
        put(&mut wal, &after);
        wal.sync().await;
        wal.close().await;
        let (wal, recs) = reopen(dir, small()).await;
        assert_eq!(recs, vec![big.clone(), after.clone()]);
        wal.close().await;
    });
    let segs = segment_files(dir);
    assert_eq!(segs.len(), 2);
    assert!(std::fs::metadata(&segs[0]).unwrap().len() > 100 * 1024);
}

#[test]
fn oversized_record_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let (mut wal, _) = reopen(tmp.path(), WalOptions::default()).await;
        let huge = vec![0u8; golem_core::wal_record::RECORD_PAYLOAD_BYTES_MAX + 1];
        assert!(wal
            .try_append(RecordKind::Entries, RegionId(1), &huge)
            .is_err());
        assert!(!wal.has_pending());
        wal.close().await;
    });
}

/// Writes `n` single-record syncs, closes, and returns the records and the
/// (only) segment file.
fn three_syncs(dir: &Path) -> (Vec<RecoveredRecord>, PathBuf) {
    let written: Vec<_> = (0..3).map(|i| rec_sized(i, 200 + i * 50)).collect();
    run(async {
        let (mut wal, _) = reopen(dir, WalOptions::default()).await;
        for r in &written {
            put(&mut wal, r);
            wal.sync().await;
        }
        wal.close().await;
    });
    let segs = segment_files(dir);
    assert_eq!(segs.len(), 1);
    (written, segs[0].clone())
}

/// After a cut, the earlier records survive, new records go to a new
/// segment, and later reopens agree.
fn check_cut_and_continue(dir: &Path, written: &[RecoveredRecord]) {
    run(async {
        let (mut wal, recs) = reopen(dir, WalOptions::default()).await;
        assert_eq!(recs, written[..2].to_vec(), "tail cut, the rest intact");
        let r = rec(77);
        put(&mut wal, &r);
        wal.sync().await;
        assert_eq!(
            wal.active.as_ref().unwrap().seq,
            2,
            "a new segment after a cut"
        );
        wal.close().await;
        let (wal, recs) = reopen(dir, WalOptions::default()).await;
        let mut expect = written[..2].to_vec();
        expect.push(r);
        assert_eq!(recs, expect);
        wal.close().await;
        // Idempotent.
        let (wal, recs) = reopen(dir, WalOptions::default()).await;
        assert_eq!(recs, expect);
        wal.close().await;
    });
}

#[test]
fn torn_tail_truncated_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (written, seg) = three_syncs(dir);
    let last = file_records(&seg).pop().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(last.offset as u64 + 30).unwrap();
    drop(f);
    check_cut_and_continue(dir, &written);
}

#[test]
fn torn_tail_zeroed_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (written, seg) = three_syncs(dir);
    let last = file_records(&seg).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // The last batch's record never reached the disk; its padding did.
    bytes[last.offset..last.payload.end].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    check_cut_and_continue(dir, &written);
}

#[test]
fn torn_tail_garbage_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (written, seg) = three_syncs(dir);
    let last = file_records(&seg).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[last.payload.start + 10] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    check_cut_and_continue(dir, &written);
}

#[test]
fn corrupt_early_record_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, seg) = three_syncs(dir);
    let first = file_records(&seg).remove(0);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[first.payload.start + 5] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let before = bytes.clone();
    run(async {
        match open_unsegmented(dir, WalOptions::default()).await {
            Err(WalError::Corrupt {
                offset,
                what: Corruption::Record(c),
                ..
            }) => {
                // The whole first batch: its header, then the bad record.
                let batch = first.offset - BATCH_HEADER_BYTES;
                assert_eq!(offset, batch as u64);
                assert_eq!((c.offset, c.damage_offset), (batch, first.offset));
                assert!(matches!(c.reason, BadRecord::ChecksumMismatch { .. }));
                assert!(c.next_valid > c.offset);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        // Refusing to open changes nothing, and so does trying again.
        assert!(open_unsegmented(dir, WalOptions::default()).await.is_err());
    });
    assert_eq!(std::fs::read(&seg).unwrap(), before);
}

#[test]
fn corrupt_end_of_an_earlier_segment_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let segs = write_three_segments(dir);
    // The last record of the first segment: nothing valid follows it in its
    // file, but the next segment says the log went on.
    let last = file_records(&segs[0]).pop().unwrap();
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[last.payload.start] ^= 0x80;
    std::fs::write(&segs[0], &bytes).unwrap();
    run(async {
        match open_unsegmented(dir, small()).await {
            Err(WalError::Corrupt {
                path,
                what: Corruption::LogEnd { reason, .. },
                ..
            }) => {
                assert_eq!(path, segs[0]);
                assert!(matches!(reason, Some(BadRecord::ChecksumMismatch { .. })));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    });
}

#[test]
fn bad_header_of_a_segment_with_records_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, seg) = three_syncs(dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[30] ^= 0x04; // inside the magic
    std::fs::write(&seg, &bytes).unwrap();
    run(async {
        assert!(matches!(
            open_unsegmented(dir, WalOptions::default()).await,
            Err(WalError::Corrupt {
                offset: 0,
                what: Corruption::SegmentHeader(_),
                ..
            })
        ));
    });
}

#[test]
fn segment_of_another_format_version_is_an_error_not_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_, seg) = three_syncs(dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    // A well-formed version 1 header: not a torn write, never recreated.
    let version_at = golem_core::wal_record::RECORD_HEADER_BYTES + 8;
    bytes[version_at..version_at + 4].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[4..SEGMENT_HEADER_BYTES]);
    bytes[0..4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    run(async {
        assert!(matches!(
            open_unsegmented(dir, WalOptions::default()).await,
            Err(WalError::Corrupt {
                what: Corruption::SegmentHeader(BadRecord::UnsupportedVersion { version: 1 }),
                ..
            })
        ));
    });
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
}

#[test]
fn torn_first_write_of_a_new_segment_is_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (written, _) = three_syncs(dir);
    // Segment 2's first batch: its first block (segment header, batch
    // header) never reached the disk, its later blocks did.
    let mut img = Vec::new();
    golem_core::wal_record::encode_segment_header(
        &mut img,
        &SegmentHeader {
            seq: 2,
            prev_log_end: 3 * 4096, // three 4 KiB batches in segment 1
        },
    );
    let batch_at = img.len();
    golem_core::wal_record::reserve_batch_header(&mut img);
    for i in 0..3 {
        let r = rec_sized(100 + i, 3000);
        golem_core::wal_record::encode_record(&mut img, r.kind, r.region, &r.payload).unwrap();
    }
    golem_core::wal_record::seal_batch(&mut img, batch_at, 3, 4096);
    img[..4096].fill(0);
    img.resize(64 * 1024, 0);
    std::fs::write(segment_path(dir, 2), &img).unwrap();
    run(async {
        let (mut wal, recs) = reopen(dir, WalOptions::default()).await;
        assert_eq!(recs, written);
        let r = rec(5);
        put(&mut wal, &r);
        wal.sync().await;
        assert_eq!(wal.active.as_ref().unwrap().seq, 2, "recreated");
        wal.close().await;
        let (wal, recs) = reopen(dir, WalOptions::default()).await;
        let mut expect = written.clone();
        expect.push(r);
        assert_eq!(recs, expect);
        wal.close().await;
    });
}

#[test]
fn missing_segment_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let segs = write_three_segments(dir);
    std::fs::remove_file(&segs[1]).unwrap();
    run(async {
        assert!(matches!(
            open_unsegmented(dir, small()).await,
            Err(WalError::MissingSegment {
                after: 1,
                found: 3,
                ..
            })
        ));
    });
}

#[test]
fn unfinished_trailing_segment_is_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (written, _) = three_syncs(dir);
    // A crash after creating segment 2, before its first write was durable.
    std::fs::write(segment_path(dir, 2), vec![0u8; 8192]).unwrap();
    run(async {
        let (mut wal, recs) = reopen(dir, WalOptions::default()).await;
        assert_eq!(recs, written);
        let r = rec(5);
        put(&mut wal, &r);
        wal.sync().await;
        wal.close().await;
        let (wal, recs) = reopen(dir, WalOptions::default()).await;
        let mut expect = written.clone();
        expect.push(r);
        assert_eq!(recs, expect);
        wal.close().await;
    });
    assert_eq!(segment_files(dir).len(), 2);
    // An empty file is the same.
    std::fs::write(segment_path(dir, 3), b"").unwrap();
    run(async {
        let (wal, recs) = reopen(dir, WalOptions::default()).await;
        assert_eq!(recs.len(), written.len() + 1);
        wal.close().await;
    });
}

#[test]
fn second_owner_is_locked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run(async {
        let (wal, _) = reopen(dir, WalOptions::default()).await;
        assert!(matches!(
            open_unsegmented(dir, WalOptions::default()).await,
            Err(WalError::Locked { .. })
        ));
        wal.close().await;
        let (wal, _) = reopen(dir, WalOptions::default()).await;
        wal.close().await;
    });
}

#[test]
fn invalid_options_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        for opts in [
            WalOptions {
                write_alignment_bytes: 1000,
                ..WalOptions::default()
            },
            WalOptions {
                write_alignment_bytes: 256,
                ..WalOptions::default()
            },
            WalOptions {
                segment_bytes: 4096,
                ..WalOptions::default()
            },
        ] {
            assert!(matches!(
                open_unsegmented(tmp.path(), opts).await,
                Err(WalError::InvalidOptions(_))
            ));
        }
    });
}

#[test]
fn dsync_writes_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        dsync_writes: true,
        ..small()
    };
    let recs: Vec<RecoveredRecord> = (0..40).map(rec).collect();
    {
        let opts = opts.clone();
        let path = dir.path().to_owned();
        let recs = recs.clone();
        run(async move {
            let (mut wal, got) = open_unsegmented(&path, opts).await.unwrap();
            assert!(got.is_empty());
            for (i, r) in recs.iter().enumerate() {
                wal.append(r.kind, r.region, &r.payload);
                if i % 7 == 0 {
                    wal.sync().await;
                }
            }
            wal.sync().await;
            wal.close().await;
        });
    }
    let path = dir.path().to_owned();
    let got = run(async move { open_unsegmented(&path, opts).await.unwrap().1 });
    assert_eq!(got, recs);
}

/// Writes 12 syncs of 3,000-byte records with `small()` options, which
/// spreads them over at least three segments; returns the segment files.
fn write_three_segments(dir: &Path) -> Vec<PathBuf> {
    run(async {
        let (mut wal, _) = reopen(dir, small()).await;
        for s in 0..12 {
            put(&mut wal, &rec_sized(s, 3000));
            wal.sync().await;
        }
        wal.close().await;
    });
    let segs = segment_files(dir);
    assert!(segs.len() >= 3);
    segs
}

#[test]
fn deleted_prefix_segments_are_accepted_only_behind_a_wal_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let segs = write_three_segments(dir);
    let total = segs.len() as u64;
    let (kept, first, second) = run(async {
        let (mut wal, all) = Wal::open(dir, small()).await.unwrap();
        assert_eq!(wal.first_segment(), 1);
        let active = wal.active_segment();
        assert_eq!(active, total);
        // Deleting nothing is a no-op.
        wal.delete_segments_before(1).await;
        assert_eq!(wal.first_segment(), 1);
        wal.delete_segments_before(3).await;
        assert_eq!(wal.first_segment(), 3);
        put(&mut wal, &rec(500));
        wal.sync().await;
        wal.close().await;
        let kept: Vec<_> = all.into_iter().filter(|r| r.segment >= 3).collect();
        (kept, segs[0].clone(), segs[1].clone())
    });
    // The unlink thread runs on its own; wait for it (bounded).
    for _ in 0..500 {
        if !first.exists() && !second.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(!first.exists() && !second.exists());
    let got = run(async { Wal::open(dir, small()).await.unwrap().1 });
    let (last, got_old) = got.split_last().unwrap();
    assert!(
        got_old == kept.as_slice(),
        "records of the kept segments ({} recovered, {} expected), WalStart hidden",
        got_old.len(),
        kept.len()
    );
    assert_eq!(last.payload, rec(500).payload);
    assert!(got.iter().all(|r| r.kind != RecordKind::WalStart));

    // A crash part way through the unlinks (segment 2 still there) is fine.
    std::fs::write(&second, b"").unwrap();
    std::fs::remove_file(&second).unwrap();

    // A missing prefix past the WalStart is an error.
    std::fs::remove_file(segment_path(dir, 3)).unwrap();
    run(async {
        match Wal::open(dir, small()).await {
            Err(WalError::MissingSegment { found, .. }) => assert_eq!(found, 4),
            other => panic!(
                "expected MissingSegment, got {:?}",
                other.map(|r| r.1.len())
            ),
        }
    });
}

#[test]
fn a_missing_first_segment_without_a_wal_start_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let segs = write_three_segments(dir);
    std::fs::remove_file(&segs[0]).unwrap();
    run(async {
        match Wal::open(dir, small()).await {
            Err(WalError::MissingSegment { found, .. }) => assert_eq!(found, 2),
            other => panic!(
                "expected MissingSegment, got {:?}",
                other.map(|r| r.1.len())
            ),
        }
    });
}
