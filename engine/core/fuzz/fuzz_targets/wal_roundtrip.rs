//! Round trip of the WAL codec: builds a segment image from fuzz-chosen
//! batches of records exactly as `Wal::sync` does (engine/src/wal/mod.rs:
//! the segment header and the first batch in one buffer, later batches
//! each `reserve_batch_header` + `encode_record`* + `seal_batch`, padded to
//! the write alignment, then preallocated zeros), decodes it and asserts
//! the same header and records come back with a clean end. Then damages
//! the image with fuzz-chosen edits (bit flips, byte xors, zeroed aligned
//! blocks as from a lost write, truncation) and asserts that decoding
//! returns a prefix of whole batches, exactly as written, ending where the
//! damaged batch starts: never a different record; `decode_data_record` at
//! a record's offset (the fetch path) returns that record or an error.
//! Damage in a byte the crc covers drops the batch holding it (crc32c
//! catches any burst of up to 32 bits; more scattered edits slip through
//! with odds of 2^-32 per record, which a fuzzer does not beat).
//!
//! Run: `cd engine/core/fuzz && cargo +nightly fuzz run wal_roundtrip`

#![no_main]

use golem_core::wal_record::*;
use golem_wire::RegionId;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::ops::Range;

type Rec = (RecordKind, u64, Vec<u8>);

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

const KINDS: [RecordKind; 3] = [
    RecordKind::RegionMeta,
    RecordKind::Entries,
    RecordKind::HardState,
];

fn arb_record(u: &mut Unstructured) -> Result<Rec> {
    let kind = *u.choose(&KINDS)?;
    let region = match u.int_in_range(0u8..=3)? {
        0 => 0,
        1 => u64::MAX,
        _ => u.arbitrary()?,
    };
    let len = u.int_in_range(0usize..=1200)?;
    let payload = match u.bytes(len) {
        Ok(b) => b.to_vec(),
        // Out of fuzz bytes: a recognisable pattern of the same length.
        Err(_) => (0..len).map(|i| i as u8 ^ 0x5a).collect(),
    };
    Ok((kind, region, payload))
}

/// One batch as `Wal::try_append` buffers it: a reserved header, then the
/// records (the caller seals it).
fn pending(recs: &[Rec]) -> Vec<u8> {
    let mut out = Vec::new();
    reserve_batch_header(&mut out);
    for (k, r, p) in recs {
        encode_record(&mut out, *k, RegionId(*r), p).expect("payload within the limit");
    }
    out
}

/// The first changed index of `a` versus `b`, where a byte missing from one
/// counts as changed.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn run(u: &mut Unstructured) -> Result<()> {
    let align = 512usize << u.int_in_range(0u32..=3)?;
    let header = SegmentHeader {
        seq: u.arbitrary()?,
        prev_log_end: u.arbitrary()?,
    };
    let nbatches = u.int_in_range(1usize..=5)?;
    let mut batches: Vec<Vec<Rec>> = Vec::with_capacity(nbatches);
    for _ in 0..nbatches {
        let n = u.int_in_range(0usize..=6)?;
        let mut recs = Vec::with_capacity(n);
        for _ in 0..n {
            recs.push(arb_record(u)?);
        }
        batches.push(recs);
    }

    // Build the segment image the way the WAL writes it.
    let mut image = Vec::new();
    encode_segment_header(&mut image, &header);
    // Batch ranges, relative to the body (the bytes after the header).
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (i, recs) in batches.iter().enumerate() {
        let start = image.len();
        if i == 0 {
            image.extend_from_slice(&pending(recs));
            seal_batch(&mut image, SEGMENT_HEADER_BYTES, recs.len() as u32, align);
        } else {
            let mut p = pending(recs);
            seal_batch(&mut p, 0, recs.len() as u32, align);
            assert_eq!(p.len() % align, 0, "a sealed batch is whole blocks");
            image.extend_from_slice(&p);
        }
        assert_eq!(image.len() % align, 0, "batches end on the alignment");
        ranges.push(start - SEGMENT_HEADER_BYTES..image.len() - SEGMENT_HEADER_BYTES);
    }
    let log_len = image.len() - SEGMENT_HEADER_BYTES;
    let zeros = u.int_in_range(0usize..=2)? * align;
    image.resize(image.len() + zeros, 0);
    let all: Vec<Rec> = batches.iter().flatten().cloned().collect();

    // Clean decode: the same header and records, a clean end at the log end.
    assert_eq!(decode_segment_header(&image), Ok(header));
    let body = &image[SEGMENT_HEADER_BYTES..];
    let clean = scan(body);
    assert_eq!(clean.end, Ok(ScanEnd::Clean { end: log_len }));
    assert_eq!(decoded(body, &clean), all, "round trip");
    for (i, r) in ranges.iter().enumerate() {
        let h = decode_batch_header(body, r.start).expect("a written batch header");
        assert_eq!(h.batch_bytes as usize, r.len());
        assert_eq!(h.record_count as usize, batches[i].len());
    }
    assert_eq!(
        find_batch_header_after(&image, SEGMENT_HEADER_BYTES),
        ranges.get(1).map(|r| r.start + SEGMENT_HEADER_BYTES)
    );
    // Bytes no crc covers: the zero padding after each data record's payload.
    let uncovered: Vec<Range<usize>> = clean
        .records
        .iter()
        .map(|r| r.payload.end..r.payload.end.next_multiple_of(RECORD_ALIGN))
        .collect();

    // Damage it.
    let mut bad = image.clone();
    let edits = u.int_in_range(1usize..=6)?;
    for _ in 0..edits {
        if bad.is_empty() {
            break;
        }
        let at = u.int_in_range(0..=bad.len() - 1)?;
        match u.int_in_range(0u8..=3)? {
            0 => bad[at] ^= 1 << u.int_in_range(0u8..=7)?,
            1 => bad[at] ^= u.int_in_range(1u8..=255)?,
            2 => {
                // A block that never reached the disk reads as zeros.
                let block = 512 << u.int_in_range(0u32..=3)?;
                let start = at / block * block;
                let end = (start + block).min(bad.len());
                bad[start..end].fill(0);
            }
            _ => bad.truncate(at),
        }
    }

    // The segment header: an error or the header as written.
    match decode_segment_header(&bad) {
        Ok(h) => assert_eq!(h, header, "a damaged segment header decoded differently"),
        Err(_) => {
            let _ = find_batch_header_after(&bad, SEGMENT_HEADER_BYTES);
        }
    }
    let Some(bad_body) = bad.get(SEGMENT_HEADER_BYTES..) else {
        return Ok(());
    };
    let res = scan(bad_body);
    assert_eq!(res, scan(bad_body), "scan is not deterministic");
    let got = decoded(bad_body, &res);

    // A prefix of whole batches, exactly as written, ending where the
    // returned batches end (the damaged batch starts there). Empty batches
    // make several prefixes hold the same records: the end picks one.
    let end = match &res.end {
        Ok(e) => e.log_end(),
        Err(c) => {
            assert!(decode_batch_header(bad_body, c.next_valid).is_ok(), "{c:?}");
            c.offset
        }
    };
    let boundary = |n: usize| if n == 0 { 0 } else { ranges[n - 1].end };
    let n = (0..=batches.len())
        .find(|&n| boundary(n) == end && got == flat(&batches[..n]))
        .unwrap_or_else(|| {
            panic!(
                "damaged log decoded to {} records ending at {end} ({:?}), not a prefix of \
                 whole batches as written ({:?} records in batches {ranges:?})",
                got.len(),
                res.end,
                batches.iter().map(Vec::len).collect::<Vec<_>>()
            )
        });
    // Every batch before the first changed byte is still read.
    match first_difference(body, bad_body) {
        None => assert_eq!(res, clean, "unchanged bytes decoded differently"),
        Some(first) => {
            let intact = ranges.iter().take_while(|r| r.end <= first).count();
            assert!(
                n >= intact,
                "{intact} batches before the first change at {first}, only {n} read"
            );
        }
    }
    // The fetch path reads a record at its known offset: after damage, an
    // error or the record as written, never another one.
    for (r, (kind, region, payload)) in clean.records.iter().zip(&all) {
        let Some(rest) = bad_body.get(r.offset..) else {
            continue;
        };
        if let Ok(got) = decode_data_record(rest) {
            assert_eq!((got.kind, got.region.get()), (*kind, *region), "{r:?}");
            assert_eq!(&rest[got.payload], &payload[..], "{r:?}: payload");
        }
    }
    // A batch with a changed byte that a crc covers (or cut short) is not.
    let covered_change = (0..log_len).find(|&i| {
        let changed = bad_body.get(i) != Some(&body[i]);
        changed && !uncovered.iter().any(|r| r.contains(&i))
    });
    if let Some(i) = covered_change {
        let b = ranges
            .iter()
            .position(|r| r.contains(&i))
            .expect("in a batch");
        assert!(
            n <= b,
            "batch {b} was read although byte {i} (covered by a crc) changed"
        );
    }
    Ok(())
}

fn decoded(buf: &[u8], res: &ScanResult) -> Vec<Rec> {
    res.records
        .iter()
        .map(|r| (r.kind, r.region.get(), buf[r.payload.clone()].to_vec()))
        .collect()
}

fn flat(batches: &[Vec<Rec>]) -> Vec<Rec> {
    batches.iter().flatten().cloned().collect()
}
