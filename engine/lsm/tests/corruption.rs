//! Corruption: bit flips anywhere in a segment and truncations give typed
//! errors at open or read, never wrong data, never a panic, never SIGBUS.

use golem_lsm::{
    LogIndex, Lsm, LsmError, LsmOptions, RegionId, Segment, SegmentWriter, WriteBatch,
};
use std::path::Path;

const FOOTER_BYTES: usize = 96;

fn key(i: u32) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat((i % 7) as usize)).into_bytes()
}

/// A segment of `n` keys (every 5th a tombstone) and one range tombstone.
fn build(path: &Path, n: u32) -> Vec<u8> {
    let mut w = SegmentWriter::create(path, 256, 10).unwrap();
    for i in 0..n {
        if i % 5 == 4 {
            w.add(&key(i), None).unwrap();
        } else {
            w.add(&key(i), Some(&value(i))).unwrap();
        }
    }
    w.add_range_tombstone(b"zz", b"zzz").unwrap();
    w.set_applied(RegionId(3), LogIndex(42));
    w.finish().unwrap();
    std::fs::read(path).unwrap()
}

fn expected(i: u32) -> Option<Option<Vec<u8>>> {
    Some(if i % 5 == 4 { None } else { Some(value(i)) })
}

/// Reads every key through an LSM-like path (the segment API via an LSM
/// directory would hide open errors in `Lsm::open`; here we check both).
/// Each read is either an error or the right answer.
fn check_reads_never_wrong(path: &Path, n: u32) -> usize {
    let seg = match Segment::open(path) {
        Ok(s) => s,
        Err(LsmError::Corrupt { .. } | LsmError::UnsupportedVersion { .. }) => return 1,
        Err(e) => panic!("unexpected error kind {e}"),
    };
    assert_eq!(seg.applied().get(&RegionId(3)), Some(&LogIndex(42)));
    // Open succeeded: go through an LSM to read (get and scans).
    let dir = tempfile::tempdir().unwrap();
    drop(seg);
    let mut lsm = Lsm::open(dir.path(), LsmOptions::default()).unwrap();
    let copy = dir.path().join("ingest.seg.in");
    std::fs::copy(path, &copy).unwrap();
    lsm.ingest(&copy).unwrap();
    lsm.wait_idle().unwrap();
    let failures = lsm.take_ingest_failures();
    if !failures.is_empty() {
        assert!(
            matches!(failures[0].1, LsmError::Corrupt { .. }),
            "{}",
            failures[0].1
        );
        return 1;
    }
    let mut errors = 0;
    for i in 0..n {
        match lsm.get(&key(i)) {
            Ok(v) => assert_eq!(
                Some(v),
                expected(i).map(|o| o.map(|v| v.to_vec())),
                "key {i}"
            ),
            Err(LsmError::Corrupt { .. }) => errors += 1,
            Err(e) => panic!("unexpected error kind {e}"),
        }
    }
    errors
}

#[test]
fn every_single_bit_flip_is_caught_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.seg");
    let n = 60;
    let bytes = build(&good, n);
    let bad = dir.path().join("bad.seg");
    // Segment-level reads for every flip (fast), full LSM path for a sample.
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 1 << (at % 8);
        std::fs::write(&bad, &b).unwrap();
        let seg = match Segment::open(&bad) {
            Ok(s) => s,
            Err(LsmError::Corrupt { .. } | LsmError::UnsupportedVersion { .. }) => continue,
            Err(e) => panic!("flip at {at}: unexpected error kind {e}"),
        };
        // Metadata is all checksummed at open, so the flip is in a data
        // block: a typed error when that block is read, never a wrong value.
        assert!(
            at < bytes.len() - FOOTER_BYTES,
            "footer flip at {at} accepted"
        );
        drop(seg);
        if at % 17 == 0 {
            assert!(
                check_reads_never_wrong(&bad, n) > 0,
                "flip at {at} went unnoticed"
            );
        }
    }
}

#[test]
fn bit_flip_in_a_data_block_is_a_typed_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.seg");
    let mut bytes = build(&path, 60);
    bytes[20] ^= 0x04; // Inside the first data block.
    std::fs::write(&path, &bytes).unwrap();
    // Open succeeds (data blocks are checked when read) ...
    let errors = check_reads_never_wrong(&path, 60);
    // ... or the ingest's full validation refuses it: either way typed.
    assert!(errors > 0);
}

fn footer_handle(bytes: &[u8], field: usize) -> usize {
    let f = bytes.len() - FOOTER_BYTES;
    let at = f + 16 + 16 * field;
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize
}

#[test]
fn bit_flips_in_index_bloom_regions_tombstones_and_footer_fail_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.seg");
    let bytes = build(&path, 60);
    // Fields: 0 range tombstones, 1 index, 2 bloom, 3 regions.
    let mut targets: Vec<(&str, usize)> = (0..4)
        .map(|f| {
            (
                ["range tombstones", "index", "bloom", "regions"][f],
                footer_handle(&bytes, f) + 5,
            )
        })
        .collect();
    targets.push(("footer", bytes.len() - 50));
    targets.push(("footer magic", bytes.len() - FOOTER_BYTES));
    for (what, at) in targets {
        let mut b = bytes.clone();
        b[at] ^= 0x20;
        std::fs::write(&path, &b).unwrap();
        match Segment::open(&path) {
            Err(LsmError::Corrupt { offset, .. }) => assert!(offset as usize <= at, "{what}"),
            other => panic!("{what}: expected Corrupt, got {other:?}"),
        }
    }
}

#[test]
fn truncated_segments_fail_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.seg");
    let bytes = build(&path, 30);
    for len in (0..bytes.len()).rev() {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert!(
            matches!(Segment::open(&path), Err(LsmError::Corrupt { .. })),
            "truncated to {len} accepted"
        );
    }
}

#[test]
fn corrupt_live_segment_makes_lsm_open_or_read_fail_typed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut lsm = Lsm::open(dir.path(), LsmOptions::default()).unwrap();
        let mut b = WriteBatch::new();
        for i in 0..100 {
            b.put(key(i), value(i));
        }
        lsm.apply(b, (RegionId(1), LogIndex(1))).unwrap();
        lsm.flush().unwrap();
        lsm.wait_idle().unwrap();
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[30] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let mut lsm = Lsm::open(dir.path(), LsmOptions::default()).unwrap();
    assert!(matches!(lsm.get(&key(0)), Err(LsmError::Corrupt { .. })));
    assert!(matches!(
        lsm.scan(b"", b"", false, 1000, usize::MAX),
        Err(LsmError::Corrupt { .. })
    ));
    assert!(matches!(
        lsm.scan(b"", b"", true, 1000, usize::MAX),
        Err(LsmError::Corrupt { .. })
    ));
    drop(lsm);
    // A truncated live segment: open fails with a typed error.
    std::fs::write(&seg, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        Lsm::open(dir.path(), LsmOptions::default()),
        Err(LsmError::Corrupt { .. })
    ));
    // A missing one too.
    std::fs::remove_file(&seg).unwrap();
    assert!(matches!(
        Lsm::open(dir.path(), LsmOptions::default()),
        Err(LsmError::MissingSegment { .. })
    ));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Opens `bytes` as a segment and reads all of it both ways: any
    /// outcome but a panic (or SIGBUS) is fine, and whatever is read is
    /// well-formed.
    fn open_and_read_all(bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.seg");
        std::fs::write(&path, bytes).unwrap();
        let Ok(seg) = Segment::open(&path) else {
            return;
        };
        let _ = seg.entry_count();
        let copy = dir.path().join("in.seg");
        std::fs::copy(&path, &copy).unwrap();
        let mut lsm = Lsm::open(&dir.path().join("lsm"), LsmOptions::default()).unwrap();
        lsm.ingest(&copy).unwrap();
        lsm.wait_idle().unwrap();
        for reverse in [false, true] {
            let _ = lsm.scan(b"", b"", reverse, usize::MAX, usize::MAX);
        }
        let _ = lsm.get(b"key00003");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            open_and_read_all(&bytes);
        }

        #[test]
        fn many_flips_and_a_cut_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..8),
            cut in any::<prop::sample::Index>(),
            do_cut in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = build(&dir.path().join("g.seg"), 40);
            for (at, bit) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            if do_cut {
                bytes.truncate(cut.index(bytes.len()));
            }
            open_and_read_all(&bytes);
        }
    }
}

/// Decoders behind the checksums: blocks whose bytes are damaged and whose
/// crc is then recomputed (as a fuzz build that skips checksums would see)
/// must still never panic.
mod behind_the_checksum {
    use super::*;
    use proptest::prelude::*;

    fn u32_at(b: &[u8], at: usize) -> usize {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
    }

    fn u64_at(b: &[u8], at: usize) -> usize {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
    }

    /// (offset, len) of every block, data and metadata, with its crc.
    fn blocks(bytes: &[u8]) -> Vec<(usize, usize)> {
        let f = bytes.len() - FOOTER_BYTES;
        let meta: Vec<(usize, usize)> = (0..4)
            .map(|i| {
                (
                    u64_at(bytes, f + 16 + 16 * i),
                    u64_at(bytes, f + 24 + 16 * i),
                )
            })
            .collect();
        let (index_at, _) = meta[1];
        let mut out = meta.clone();
        let mut at = index_at + 4;
        for _ in 0..u32_at(bytes, index_at) {
            let off = u64_at(bytes, at);
            let len = u32_at(bytes, at + 8);
            let key_len = u32_at(bytes, at + 12);
            out.push((off, len));
            at += 16 + key_len;
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn resealed_damage_never_panics(
            which in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = build(&dir.path().join("g.seg"), 80);
            let all = blocks(&bytes);
            let (off, len) = all[which.index(all.len())];
            let body = len - 4;
            for (at, bit) in flips {
                bytes[off + at.index(body)] ^= 1 << bit;
            }
            let crc = crc32c::crc32c(&bytes[off..off + body]);
            bytes[off + body..off + len].copy_from_slice(&crc.to_le_bytes());
            // Install the good file as a live segment, then swap the damaged
            // bytes in under the manifest, so reads go through every decoder
            // (the ingest path validates whole files and would refuse it).
            let lsm_dir = dir.path().join("lsm");
            {
                let mut lsm = Lsm::open(&lsm_dir, LsmOptions::default()).unwrap();
                lsm.ingest(&dir.path().join("g.seg")).unwrap();
                lsm.wait_idle().unwrap();
                assert!(lsm.take_ingest_failures().is_empty());
            }
            let live = std::fs::read_dir(&lsm_dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|x| x == "seg"))
                .unwrap();
            std::fs::write(&live, &bytes).unwrap();
            if let Ok(mut lsm) = Lsm::open(&lsm_dir, LsmOptions::default()) {
                for reverse in [false, true] {
                    let _ = lsm.scan(b"", b"", reverse, usize::MAX, usize::MAX);
                    let _ = lsm.scan(&key(10), &key(50), reverse, 7, usize::MAX);
                }
                for i in 0..80 {
                    let _ = lsm.get(&key(i));
                }
            }
        }
    }
}
