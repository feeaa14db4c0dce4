//! Builds a valid segment with `SegmentWriter` from fuzz-chosen points
//! (values and tombstones), range tombstones, applied indexes, block size
//! and bloom bits; checks that an `Lsm` reading it over a base segment
//! returns exactly the model's answers (gets, full scans both ways, a
//! bounded scan, chunks, applied indexes). Then damages the file with
//! fuzz-chosen edits (bit flips, byte xors, zeroed runs, truncation,
//! appended bytes) and asserts that `Segment::open`, `Lsm::open`, gets,
//! scans and chunks each either fail with a typed error or return exactly
//! the original data: never different data.
//!
//! In "reseal" runs (chosen by the input), the checksum of every block the
//! edits touched is recomputed, as a buggy writer would produce: then only
//! "no panic, typed errors, full scans in key order" is asserted, with the
//! decoders past their checksums.
//!
//! Run: `cd engine/lsm/fuzz && cargo +nightly fuzz run segment_mutate`

#![no_main]

mod common;

use common::*;
use golem_lsm::{LogIndex, RegionId, Segment, SegmentWriter};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn run(u: &mut Unstructured) -> Result<()> {
    let block_bytes = u.int_in_range(64usize..=1024)?;
    let bloom_bits = u.int_in_range(1usize..=32)?;
    let mut points: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    for _ in 0..u.int_in_range(0usize..=40)? {
        let key = letter_key(u, 1, 3)?;
        let value = if u.ratio(1u8, 5)? {
            None
        } else {
            let len = u.int_in_range(0usize..=300)?;
            Some(match u.bytes(len) {
                Ok(b) => b.to_vec(),
                Err(_) => vec![b'v'; len],
            })
        };
        points.insert(key, value);
    }
    let mut ranges = Vec::new();
    for _ in 0..u.int_in_range(0usize..=3)? {
        ranges.push((letter_key(u, 0, 2)?, letter_key(u, 0, 2)?));
    }
    let mut applied = BTreeMap::new();
    for _ in 0..u.int_in_range(0usize..=3)? {
        let region = RegionId(u.int_in_range(1u64..=12)?);
        let index = LogIndex(u.arbitrary()?);
        let slot = applied.entry(region).or_insert(index);
        *slot = (*slot).max(index);
    }

    // Write it with the public writer.
    let dir = run_dir();
    let path = segment_path(dir.path(), FUZZ_ID);
    let mut w = SegmentWriter::create(&path, block_bytes, bloom_bits).expect("create");
    for (k, v) in &points {
        w.add(k, v.as_deref()).expect("add");
    }
    let mut kept_ranges = Vec::new();
    for (s, e) in ranges {
        // The writer refuses start >= end (with a bounded end).
        if w.add_range_tombstone(&s, &e).is_ok() {
            kept_ranges.push((s, e));
        }
    }
    for (r, i) in &applied {
        w.set_applied(*r, *i);
    }
    let info = w.finish().expect("finish");
    assert_eq!(info.entry_count, points.len() as u64);
    let original = std::fs::read(&path).expect("read segment");
    assert_eq!(info.file_bytes, original.len() as u64);

    let model = Model::new(&points, &kept_ranges, &applied);
    let probe_keys = probes(
        points
            .keys()
            .cloned()
            .chain(kept_ranges.iter().flat_map(|(s, e)| [s.clone(), e.clone()]))
            .filter(|k| !k.is_empty()),
    );
    let q = Query::arbitrary(u)?;

    // The written segment reads back exactly.
    install(dir.path(), &original);
    {
        let seg = Segment::open(&path).expect("a written segment opens");
        assert_eq!(seg.entry_count(), points.len() as u64);
        assert_eq!(seg.applied(), &applied);
    }
    assert!(check_reads(dir.path(), Some(&model), true, &probe_keys, &q));

    // Damage it.
    let reseal = u.ratio(1u8, 3)?;
    let mut bad = original.clone();
    for _ in 0..u.int_in_range(1usize..=4)? {
        if bad.is_empty() {
            break;
        }
        // Aim at the tail (metadata and footer) as often as at the whole file.
        let at = if u.arbitrary()? {
            u.int_in_range(0..=bad.len() - 1)?
        } else {
            bad.len() - 1 - u.int_in_range(0..=bad.len().min(512) - 1)?
        };
        let op = u.int_in_range(0u8..=if reseal { 2 } else { 4 })?;
        match op {
            0 => bad[at] ^= 1 << u.int_in_range(0u8..=7)?,
            1 => bad[at] ^= u.int_in_range(1u8..=255)?,
            2 => {
                let end = (at + u.int_in_range(1usize..=64)?).min(bad.len());
                bad[at..end].fill(0);
            }
            3 => bad.truncate(at),
            _ => {
                let n = u.int_in_range(1usize..=128)?;
                let extra = u.bytes(n).map(<[u8]>::to_vec).unwrap_or(vec![0; n]);
                bad.extend_from_slice(&extra);
            }
        }
    }
    if reseal {
        // Same length (no truncation or append in reseal runs): recompute
        // the crc of every block of the original layout that changed.
        for b in sealed_blocks(&original) {
            if bad[b.clone()] != original[b.clone()] {
                seal(&mut bad, b);
            }
        }
    }

    std::fs::write(&path, &bad).expect("write damaged segment");
    let opened = match Segment::open(&path) {
        Ok(seg) => {
            if !reseal {
                // Footer and regions block are checksummed at open.
                assert_eq!(seg.entry_count(), points.len() as u64, "entry count");
                assert_eq!(seg.applied(), &applied, "applied indexes");
            }
            true
        }
        Err(e) => {
            assert_typed(&e);
            false
        }
    };
    let expect = if reseal { None } else { Some(&model) };
    let lsm_opened = check_reads(dir.path(), expect, false, &probe_keys, &q);
    assert_eq!(lsm_opened, opened, "Segment::open and Lsm::open disagree");
    Ok(())
}
