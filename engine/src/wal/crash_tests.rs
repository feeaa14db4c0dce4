//! Crash consistency of the WAL at the file level (model: redb's
//! `tests/crash_consistency.rs`).
//!
//! A history is written through the real `Wal` on a glommio executor, and
//! after every sync the harness records what was acknowledged and where the
//! batch went (segment, byte range). From the final files it then builds the
//! disk images a crash could leave behind, reopens each with `Wal::open`, and
//! checks the recovered log:
//!
//! - a crash before or during sync `k`: every later batch is lost; the
//!   blocks of batch `k` reached the disk in any order (cut at every block
//!   boundary from the front and from the back, random subsets, the missing
//!   blocks zeros or garbage), and a segment that sync `k` creates may be
//!   missing, empty or all zeros. Recovery must succeed and return exactly
//!   the records acknowledged before sync `k`, or, if every byte of batch
//!   `k` is on disk, those of sync `k` too: every acknowledged record, in
//!   order, nothing that was never appended, never part of a batch. Some
//!   images are then written to again and reopened.
//! - damage to an acknowledged batch that is not the last one (a zeroed or
//!   garbage block, a flipped bit in its header): `WalError::Corrupt`, never
//!   a panic, never wrong data.

use super::tests::{open_unsegmented, put, rec_sized, run, small};
use super::*;
use golem_core::wal_record::BATCH_HEADER_BYTES;
use std::ops::Range;

/// Size of the blocks a torn write is made of.
const TORN_BLOCK_BYTES: usize = 512;
/// Random block subsets tried per batch, for zeros and for garbage each.
const RANDOM_SUBSETS_PER_BATCH: usize = 6;
/// Every this many images is also written to after recovery.
const CONTINUE_EVERY_IMAGES: usize = 9;

/// Where one sync's batch went, and what was acknowledged once it returned.
#[derive(Clone, Debug)]
struct SyncPoint {
    /// The segment the batch was written to.
    seq: u64,
    /// The batch's bytes in that segment (with the segment header when the
    /// sync created the segment).
    range: Range<usize>,
    /// The sync created the segment.
    new_segment: bool,
    /// Records acknowledged once this sync returned (a prefix of all).
    acked: usize,
}

/// What a run of the real WAL wrote.
struct History {
    opts: WalOptions,
    /// Every record appended, in order (the last ones never synced).
    appended: Vec<RecoveredRecord>,
    syncs: Vec<SyncPoint>,
    /// Final bytes of segment `i + 1`.
    files: Vec<Vec<u8>>,
}

/// The records of batch `k` of a planned history: 1 to 4 records of mixed
/// sizes, and one batch larger than a small segment.
fn planned_batch(k: usize, next_id: &mut usize) -> Vec<RecoveredRecord> {
    const SIZES_BYTES: [usize; 5] = [40, 700, 1500, 3000, 0];
    let sizes: Vec<usize> = if k == 11 {
        vec![9000, 9000, 300]
    } else {
        (0..1 + k % 4).map(|j| SIZES_BYTES[(k + j) % 5]).collect()
    };
    sizes
        .into_iter()
        .map(|bytes| {
            *next_id += 1;
            rec_sized(*next_id, bytes)
        })
        .collect()
}

/// Writes `batches` syncs through the real `Wal` in `dir` (closing and
/// reopening half-way), recording every sync, then appends records it never
/// syncs.
fn write_history(dir: &Path, opts: WalOptions, batches: usize) -> History {
    let mut appended = Vec::new();
    let mut syncs = Vec::new();
    let mut next_id = 0;
    run(async {
        let (mut wal, recs) = open_unsegmented(dir, opts.clone()).await.expect("open");
        assert!(recs.is_empty());
        for k in 0..batches {
            if k == batches / 2 {
                wal.close().await;
                let (w, recs) = open_unsegmented(dir, opts.clone()).await.expect("reopen");
                assert_eq!(recs, appended);
                wal = w;
            }
            let before = wal.active.as_ref().map(|a| (a.seq, a.pos));
            for r in planned_batch(k, &mut next_id) {
                put(&mut wal, &r);
                appended.push(r);
            }
            wal.sync().await;
            let a = wal.active.as_ref().expect("a segment after a sync");
            let new_segment = before.is_none_or(|(seq, _)| seq != a.seq);
            let start = if new_segment { 0 } else { before.unwrap().1 };
            syncs.push(SyncPoint {
                seq: a.seq,
                range: start as usize..a.pos as usize,
                new_segment,
                acked: appended.len(),
            });
        }
        // Appended, never synced: never acknowledged, never on disk.
        for r in planned_batch(1, &mut next_id) {
            put(&mut wal, &r);
            appended.push(r);
        }
        wal.close().await;
    });
    let files = segment::list_segments(dir)
        .unwrap()
        .iter()
        .map(|(_, p)| std::fs::read(p).unwrap())
        .collect();
    History {
        opts,
        appended,
        syncs,
        files,
    }
}

/// One disk image: the segment files a crash left, by sequence number.
#[derive(Clone, PartialEq, Eq)]
struct Image {
    what: String,
    files: Vec<(u64, Vec<u8>)>,
}

impl Image {
    fn file_mut(&mut self, seq: u64) -> &mut Vec<u8> {
        &mut self
            .files
            .iter_mut()
            .find(|(s, _)| *s == seq)
            .expect("segment in image")
            .1
    }

    fn file(&self, seq: u64) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, b)| b.as_slice())
    }
}

/// What a block of the batch being written holds after the crash.
#[derive(Clone, Copy, Debug)]
enum Block {
    Persisted,
    Zeros,
    Garbage(u64),
}

/// The files just before sync `k` started, with the segment it writes to
/// present and preallocated (zeros) if that sync created it.
fn before_sync(h: &History, k: usize) -> Image {
    let sp = &h.syncs[k];
    let mut files = Vec::new();
    for (i, bytes) in h.files.iter().enumerate() {
        let seq = i as u64 + 1;
        if seq < sp.seq {
            files.push((seq, bytes.clone()));
        } else if seq == sp.seq {
            let mut b = bytes.clone();
            b[sp.range.start..].fill(0);
            files.push((seq, b));
        }
    }
    Image {
        what: format!("before sync {k}"),
        files,
    }
}

/// A crash during sync `k`: each block of its batch as `block(i)` says.
fn torn(h: &History, k: usize, what: String, block: impl Fn(usize) -> Block) -> Image {
    let sp = &h.syncs[k];
    let mut img = before_sync(h, k);
    img.what = format!("sync {k}: {what}");
    let fin = &h.files[sp.seq as usize - 1];
    let file = img.file_mut(sp.seq);
    for (i, start) in sp.range.clone().step_by(TORN_BLOCK_BYTES).enumerate() {
        let end = (start + TORN_BLOCK_BYTES).min(sp.range.end);
        match block(i) {
            Block::Persisted => file[start..end].copy_from_slice(&fin[start..end]),
            Block::Zeros => {}
            Block::Garbage(seed) => file[start..end].copy_from_slice(&garbage(seed, end - start)),
        }
    }
    img
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..n).map(|_| (rng.next() >> 56) as u8).collect()
}

/// Every crash image for a crash before or during sync `k`.
fn crash_images(h: &History, k: usize, rng: &mut Rng) -> Vec<Image> {
    let sp = &h.syncs[k];
    let blocks = sp.range.len().div_ceil(TORN_BLOCK_BYTES);
    let mut out = Vec::new();
    if sp.new_segment {
        // Created, or not even that, before the crash.
        let mut absent = before_sync(h, k);
        absent.files.retain(|(s, _)| *s != sp.seq);
        absent.what = format!("sync {k}: new segment missing");
        let mut empty = absent.clone();
        empty.files.push((sp.seq, Vec::new()));
        empty.what = format!("sync {k}: new segment empty");
        out.extend([absent, empty]);
    }
    for j in 0..=blocks {
        out.push(torn(h, k, format!("first {j} blocks"), |i| {
            if i < j {
                Block::Persisted
            } else {
                Block::Zeros
            }
        }));
        out.push(torn(h, k, format!("last {j} blocks"), |i| {
            if i + j >= blocks {
                Block::Persisted
            } else {
                Block::Zeros
            }
        }));
    }
    for n in 0..2 * RANDOM_SUBSETS_PER_BATCH {
        let mask: Vec<bool> = (0..blocks).map(|_| rng.next() & 1 == 1).collect();
        let seed = rng.next();
        let missing = if n % 2 == 0 {
            Block::Zeros
        } else {
            Block::Garbage(seed)
        };
        out.push(torn(
            h,
            k,
            format!("blocks {mask:?}, else {missing:?}"),
            |i| match (mask[i], missing) {
                (true, _) => Block::Persisted,
                (false, Block::Garbage(s)) => Block::Garbage(s ^ i as u64),
                (false, m) => m,
            },
        ));
    }
    out
}

/// Replaces the segment files in `dir` with `img`'s.
fn install(dir: &Path, img: &Image) {
    for (_, p) in segment::list_segments(dir).unwrap() {
        std::fs::remove_file(p).unwrap();
    }
    for (seq, bytes) in &img.files {
        std::fs::write(segment_path(dir, *seq), bytes).unwrap();
    }
}

/// What recovery must return from a crash image of sync `k`: the records
/// acknowledged before it, or with batch `k` if all of it is on disk.
fn expected_records<'a>(h: &'a History, k: usize, img: &Image) -> &'a [RecoveredRecord] {
    let sp = &h.syncs[k];
    let fin = &h.files[sp.seq as usize - 1][sp.range.clone()];
    let complete = img
        .file(sp.seq)
        .and_then(|b| b.get(sp.range.clone()))
        .is_some_and(|b| b == fin);
    let acked = if complete {
        sp.acked
    } else {
        k.checked_sub(1).map_or(0, |p| h.syncs[p].acked)
    };
    &h.appended[..acked]
}

/// Opens `img`, checks the records, and (if `continue_writing`) writes one
/// more batch and checks that it is recovered after the others.
async fn check_image(
    dir: &Path,
    h: &History,
    img: &Image,
    expect: &[RecoveredRecord],
    continue_writing: bool,
) {
    install(dir, img);
    let (mut wal, recs) = match open_unsegmented(dir, h.opts.clone()).await {
        Ok(r) => r,
        Err(e) => panic!("{}: recovery failed: {e}", img.what),
    };
    assert!(
        recs == expect,
        "{}: recovered {} records, expected {}",
        img.what,
        recs.len(),
        expect.len()
    );
    if !continue_writing {
        wal.close().await;
        return;
    }
    let extra = rec_sized(1_000_000, 777);
    put(&mut wal, &extra);
    wal.sync().await;
    wal.close().await;
    let (wal, recs) = match open_unsegmented(dir, h.opts.clone()).await {
        Ok(r) => r,
        Err(e) => panic!("{}: reopen after writing failed: {e}", img.what),
    };
    let mut want = expect.to_vec();
    want.push(extra);
    assert!(recs == want, "{}: wrong records after writing on", img.what);
    wal.close().await;
}

/// Every crash image of every sync of `h` recovers exactly the
/// acknowledged records.
fn check_every_crash_point(h: &History) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = Rng(0x5EED_0FC4_A5A5);
    let mut images = 0usize;
    run(async {
        for k in 0..h.syncs.len() {
            for img in crash_images(h, k, &mut rng) {
                let expect = expected_records(h, k, &img);
                images += 1;
                let again = images.is_multiple_of(CONTINUE_EVERY_IMAGES);
                check_image(dir, h, &img, expect, again).await;
            }
        }
        // The last sync completed: everything acknowledged is there.
        let all = Image {
            what: "after the last sync".into(),
            files: (1..).zip(h.files.iter().cloned()).collect(),
        };
        let acked = h.syncs.last().unwrap().acked;
        check_image(dir, h, &all, &h.appended[..acked], true).await;
    });
    assert!(images > 20 * h.syncs.len(), "{images} images");
}

/// Damage to acknowledged batch `k` (not the last) of the final files.
fn damaged_images(h: &History, k: usize, rng: &mut Rng) -> Vec<Image> {
    let sp = &h.syncs[k];
    let all = Image {
        what: String::new(),
        files: (1..).zip(h.files.iter().cloned()).collect(),
    };
    // The batch header: right after the segment header in a new segment.
    let header_at = sp.range.start
        + if sp.new_segment {
            SEGMENT_HEADER_BYTES
        } else {
            0
        };
    let blocks = sp.range.len().div_ceil(TORN_BLOCK_BYTES);
    let block = sp.range.start + TORN_BLOCK_BYTES * (rng.next() as usize % blocks);
    let mut out = Vec::new();
    let mut edit = |what: String, f: &dyn Fn(&mut Vec<u8>)| {
        let mut img = all.clone();
        img.what = format!("acknowledged batch {k}: {what}");
        f(img.file_mut(sp.seq));
        if img != all {
            out.push(img);
        }
    };
    edit("first block zeroed".into(), &|b| {
        b[sp.range.start..sp.range.start + TORN_BLOCK_BYTES].fill(0)
    });
    let seed = rng.next();
    edit(format!("garbage block at {block}"), &|b| {
        b[block..block + TORN_BLOCK_BYTES].copy_from_slice(&garbage(seed, TORN_BLOCK_BYTES))
    });
    let bit = rng.next();
    let at = header_at + (bit as usize >> 8) % BATCH_HEADER_BYTES;
    edit(format!("bit {} of byte {at} flipped", bit % 8), &|b| {
        b[at] ^= 1 << (bit % 8)
    });
    out
}

/// Damage to any acknowledged batch but the last is a typed corruption.
fn check_damaged_batches(h: &History) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = Rng(0xBAD_B10C);
    run(async {
        for k in 0..h.syncs.len() - 1 {
            let sp = &h.syncs[k];
            let batch_at = sp.range.start
                + if sp.new_segment {
                    SEGMENT_HEADER_BYTES
                } else {
                    0
                };
            let next_in_same_segment = h.syncs[k + 1].seq == sp.seq;
            for img in damaged_images(h, k, &mut rng) {
                install(dir, &img);
                let fin = &h.files[sp.seq as usize - 1];
                let header_damaged = img.file(sp.seq).unwrap()[..SEGMENT_HEADER_BYTES]
                    != fin[..SEGMENT_HEADER_BYTES];
                match open_unsegmented(dir, h.opts.clone()).await {
                    Err(WalError::Corrupt { what, .. }) => match what {
                        Corruption::SegmentHeader(_) => {
                            assert!(header_damaged, "{}: {what}", img.what)
                        }
                        Corruption::Record(c) => {
                            assert!(!header_damaged && next_in_same_segment, "{}: {c}", img.what);
                            assert_eq!(c.offset, batch_at, "{}", img.what);
                        }
                        Corruption::LogEnd { valid_end, .. } => {
                            assert!(
                                !header_damaged && !next_in_same_segment,
                                "{}: {what}",
                                img.what
                            );
                            assert_eq!(valid_end, batch_at as u64, "{}", img.what);
                        }
                        other => panic!("{}: unexpected {other}", img.what),
                    },
                    Err(e) => panic!("{}: expected corruption, got {e}", img.what),
                    Ok((_, recs)) => panic!(
                        "{}: expected corruption, recovered {} records",
                        img.what,
                        recs.len()
                    ),
                }
            }
        }
    });
}

fn history_4k() -> (tempfile::TempDir, History) {
    let tmp = tempfile::tempdir().unwrap();
    let h = write_history(tmp.path(), small(), 24);
    (tmp, h)
}

/// Every batch in one segment: damage is found by the scan, not by a
/// mismatch with the next segment's header.
fn history_one_segment() -> (tempfile::TempDir, History) {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes: 1024 * 1024,
        write_alignment_bytes: 4096,
        ..WalOptions::default()
    };
    let h = write_history(tmp.path(), opts, 24);
    assert_eq!(h.files.len(), 1);
    (tmp, h)
}

fn history_512() -> (tempfile::TempDir, History) {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_bytes: 8 * 1024,
        write_alignment_bytes: 512,
        ..WalOptions::default()
    };
    let h = write_history(tmp.path(), opts, 24);
    (tmp, h)
}

#[test]
fn history_is_as_planned() {
    for (_tmp, h) in [history_4k(), history_512()] {
        let align = h.opts.write_alignment_bytes as usize;
        assert!(h.files.len() >= 4, "{} segments", h.files.len());
        assert!(h.syncs.iter().filter(|s| s.new_segment).count() >= 4);
        assert!(h.syncs.iter().any(|s| s.range.len() > 16 * 1024));
        for (i, s) in h.syncs.iter().enumerate() {
            assert_eq!(s.range.start % align, 0, "sync {i}");
            assert_eq!(s.range.end % align, 0, "sync {i}");
        }
        assert!(h.syncs.last().unwrap().acked < h.appended.len());
    }
}

#[test]
fn every_crash_point_recovers_exactly_the_acknowledged_records_4k() {
    let (_tmp, h) = history_4k();
    check_every_crash_point(&h);
}

#[test]
fn every_crash_point_recovers_exactly_the_acknowledged_records_512() {
    let (_tmp, h) = history_512();
    check_every_crash_point(&h);
}

#[test]
fn damage_to_an_acknowledged_earlier_batch_is_corruption_4k() {
    let (_tmp, h) = history_4k();
    check_damaged_batches(&h);
}

#[test]
fn damage_to_an_acknowledged_earlier_batch_is_corruption_512() {
    let (_tmp, h) = history_512();
    check_damaged_batches(&h);
}

#[test]
fn every_crash_point_recovers_exactly_the_acknowledged_records_one_segment() {
    let (_tmp, h) = history_one_segment();
    check_every_crash_point(&h);
}

#[test]
fn damage_to_an_acknowledged_earlier_batch_is_corruption_one_segment() {
    let (_tmp, h) = history_one_segment();
    check_damaged_batches(&h);
}
