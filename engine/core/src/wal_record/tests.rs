//! Tests of the record and batch codec and of `scan`'s torn-versus-corrupt
//! rule, including out-of-order partial persistence of a batch's blocks.

use super::*;
use proptest::prelude::*;

type Rec = (RecordKind, u64, Vec<u8>);

fn kinds() -> [RecordKind; 3] {
    [
        RecordKind::RegionMeta,
        RecordKind::Entries,
        RecordKind::HardState,
    ]
}

/// Appends one batch of `recs` to `out` (which must end on an `align`
/// boundary) and returns its byte range.
fn encode_batch(out: &mut Vec<u8>, recs: &[Rec], align: usize) -> Range<usize> {
    let start = out.len();
    reserve_batch_header(out);
    for (k, r, p) in recs {
        encode_record(out, *k, RegionId(*r), p).unwrap();
    }
    seal_batch(out, start, recs.len() as u32, align);
    start..out.len()
}

/// A log of `batches`, each padded to `align`, and each batch's range.
fn encode_log(batches: &[Vec<Rec>], align: usize) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut out = Vec::new();
    let ranges = batches
        .iter()
        .map(|b| encode_batch(&mut out, b, align))
        .collect();
    (out, ranges)
}

fn decoded(buf: &[u8], res: &ScanResult) -> Vec<Rec> {
    res.records
        .iter()
        .map(|r| (r.kind, r.region.get(), buf[r.payload.clone()].to_vec()))
        .collect()
}

fn sample() -> Vec<Rec> {
    vec![
        (RecordKind::RegionMeta, 1, b"meta".to_vec()),
        (RecordKind::Entries, 2, vec![7u8; 100]),
        (RecordKind::HardState, 3, vec![]),
        (RecordKind::Entries, u64::MAX, vec![0u8; 13]),
    ]
}

/// Three batches of the sample records, 512-aligned.
fn sample_log() -> (Vec<u8>, Vec<Range<usize>>, Vec<Vec<Rec>>) {
    let s = sample();
    let batches = vec![s[..2].to_vec(), s[2..3].to_vec(), s[3..].to_vec()];
    let (buf, ranges) = encode_log(&batches, 512);
    (buf, ranges, batches)
}

fn flat(batches: &[Vec<Rec>]) -> Vec<Rec> {
    batches.iter().flatten().cloned().collect()
}

/// Overwrites `buf[at..at + 40]` with a batch header of any content (valid
/// crc), for building malformed batches.
fn put_batch_header(buf: &mut [u8], at: usize, batch_bytes: u64, count: u32) {
    let h = encode_batch_header(&BatchHeader {
        batch_bytes,
        record_count: count,
    });
    buf[at..at + BATCH_HEADER_BYTES].copy_from_slice(&h);
}

/// Recomputes the crc of the record at `at` after its bytes were edited.
fn fix_crc(buf: &mut [u8], at: usize) {
    let len = read_u32(buf, at + 4) as usize;
    let crc = crc32c::crc32c(&buf[at + 4..at + RECORD_HEADER_BYTES + len]);
    buf[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn garbage(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn kind_values_are_stable() {
    assert_eq!(RecordKind::RegionMeta as u8, 1);
    assert_eq!(RecordKind::Entries as u8, 2);
    assert_eq!(RecordKind::HardState as u8, 3);
    for k in kinds() {
        assert_eq!(RecordKind::from_u8(k as u8), Some(k));
    }
    assert_eq!(RecordKind::from_u8(0), None);
    for special in [PADDING_KIND, SEGMENT_HEADER_KIND, BATCH_HEADER_KIND] {
        assert_eq!(RecordKind::from_u8(special), None);
    }
    assert_eq!(
        (PADDING_KIND, SEGMENT_HEADER_KIND, BATCH_HEADER_KIND),
        (0xFE, 0xFD, 0xFC)
    );
    assert_eq!(WAL_FORMAT_VERSION, 2);
}

#[test]
fn encode_layout_is_as_documented() {
    let mut out = Vec::new();
    encode_record(&mut out, RecordKind::Entries, RegionId(0x0102), b"abc").unwrap();
    assert_eq!(out.len(), 32);
    assert_eq!(&out[4..8], &3u32.to_le_bytes());
    assert_eq!(out[8], 2);
    assert_eq!(&out[9..16], &[0; 7]);
    assert_eq!(&out[16..24], &0x0102u64.to_le_bytes());
    assert_eq!(&out[24..27], b"abc");
    assert_eq!(&out[27..32], &[0; 5]);
    let crc = crc32c::crc32c(&out[4..27]);
    assert_eq!(&out[0..4], &crc.to_le_bytes());
}

#[test]
fn batch_layout_is_as_documented() {
    let recs = sample();
    let mut out = Vec::new();
    let range = encode_batch(&mut out, &recs, 512);
    assert_eq!(range, 0..512);
    assert_eq!(out[8], BATCH_HEADER_KIND);
    assert_eq!(&out[4..8], &16u32.to_le_bytes());
    assert_eq!(&out[16..24], &0u64.to_le_bytes(), "region 0");
    assert_eq!(&out[24..32], &512u64.to_le_bytes(), "batch_bytes");
    assert_eq!(&out[32..36], &4u32.to_le_bytes(), "record_count");
    assert_eq!(&out[36..40], &[0; 4], "reserved");
    assert_eq!(
        decode_batch_header(&out, 0),
        Ok(BatchHeader {
            batch_bytes: 512,
            record_count: 4
        })
    );
    // The first record follows the header; the padding ends the batch.
    let res = scan(&out);
    assert_eq!(res.records[0].offset, BATCH_HEADER_BYTES);
    assert_eq!(res.end, Ok(ScanEnd::Clean { end: 512 }));
    assert_eq!(decoded(&out, &res), recs);

    // A new segment: [segment header][batch header][records][padding], the
    // batch ending on the alignment in the file.
    let mut seg = Vec::new();
    encode_segment_header(
        &mut seg,
        &SegmentHeader {
            seq: 1,
            prev_log_end: 0,
        },
    );
    reserve_batch_header(&mut seg);
    encode_record(&mut seg, RecordKind::Entries, RegionId(1), &[5; 4000]).unwrap();
    seal_batch(&mut seg, SEGMENT_HEADER_BYTES, 1, 4096);
    assert_eq!(seg.len(), 8192);
    let h = decode_batch_header(&seg, SEGMENT_HEADER_BYTES).unwrap();
    assert_eq!(h.batch_bytes as usize, 8192 - SEGMENT_HEADER_BYTES);
    let res = scan(&seg[SEGMENT_HEADER_BYTES..]);
    assert_eq!(res.records.len(), 1);
    assert_eq!(
        res.end,
        Ok(ScanEnd::Clean {
            end: 8192 - SEGMENT_HEADER_BYTES
        })
    );
}

#[test]
fn round_trip_clean() {
    let (buf, ranges, batches) = sample_log();
    assert_eq!(ranges.len(), 3);
    let res = scan(&buf);
    assert_eq!(res.end, Ok(ScanEnd::Clean { end: buf.len() }));
    assert_eq!(decoded(&buf, &res), flat(&batches));
}

#[test]
fn empty_batch_round_trips() {
    let (buf, _) = encode_log(&[vec![], sample()], 512);
    let res = scan(&buf);
    assert_eq!(res.end, Ok(ScanEnd::Clean { end: 1024 }));
    assert_eq!(decoded(&buf, &res), sample());
}

#[test]
fn zero_tail_is_clean_end() {
    let (mut buf, _, batches) = sample_log();
    let end = buf.len();
    buf.resize(end + 4096, 0);
    let res = scan(&buf);
    assert_eq!(res.end, Ok(ScanEnd::Clean { end }));
    assert_eq!(decoded(&buf, &res), flat(&batches));
}

#[test]
fn empty_and_all_zero_buffers_are_clean() {
    assert_eq!(scan(&[]).end, Ok(ScanEnd::Clean { end: 0 }));
    let z = vec![0u8; 8192];
    let res = scan(&z);
    assert!(res.records.is_empty());
    assert_eq!(res.end, Ok(ScanEnd::Clean { end: 0 }));
    // Fewer zero bytes than a header.
    assert_eq!(scan(&[0u8; 5]).end, Ok(ScanEnd::Clean { end: 0 }));
}

#[test]
fn padding_fills_to_alignment() {
    for pre in [0usize, 8, 16, 24, 480, 488, 496, 504, 512, 1000] {
        for align in [512usize, 4096] {
            let mut out = vec![1u8; pre];
            encode_padding(&mut out, align);
            assert_eq!(out.len() % align, 0, "pre {pre} align {align}");
            assert_eq!(out.len(), padded_len(pre, align));
            let gap = out.len() - pre;
            assert!(gap == 0 || gap >= RECORD_HEADER_BYTES);
            assert!(gap < align + RECORD_HEADER_BYTES);
        }
    }
}

#[test]
fn small_gap_pads_through_one_more_block() {
    let mut out = Vec::new();
    reserve_batch_header(&mut out);
    // 40 + 456 = 496 bytes: the gap to 512 is 16, smaller than a header.
    encode_record(&mut out, RecordKind::Entries, RegionId(1), &[3u8; 432]).unwrap();
    assert_eq!(out.len(), 496);
    seal_batch(&mut out, 0, 1, 512);
    assert_eq!(out.len(), 1024);
    let res = scan(&out);
    assert_eq!(res.records.len(), 1);
    assert_eq!(res.end, Ok(ScanEnd::Clean { end: 1024 }));
}

#[test]
fn oversize_payload_is_rejected_on_encode() {
    let big = vec![0u8; RECORD_PAYLOAD_BYTES_MAX + 1];
    let mut out = Vec::new();
    assert_eq!(
        encode_record(&mut out, RecordKind::Entries, RegionId(1), &big),
        Err(EncodeError::PayloadTooLarge {
            len: RECORD_PAYLOAD_BYTES_MAX + 1,
            max: RECORD_PAYLOAD_BYTES_MAX
        })
    );
    assert!(out.is_empty());
}

#[test]
fn oversize_length_is_rejected_on_read() {
    let (mut buf, _) = encode_log(&[sample()[..1].to_vec()], 512);
    let at = BATCH_HEADER_BYTES;
    for len in [(RECORD_PAYLOAD_BYTES_MAX as u32) + 1, u32::MAX] {
        buf[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        let res = scan(&buf);
        assert!(res.records.is_empty());
        assert!(
            matches!(
                res.end,
                Ok(ScanEnd::TornTail {
                    offset: 0,
                    damage_offset: BATCH_HEADER_BYTES,
                    reason: BadRecord::PayloadTooLarge { .. },
                    ..
                })
            ),
            "{:?}",
            res.end
        );
    }
}

#[test]
fn torn_last_batch_is_a_torn_tail() {
    let (buf, ranges, batches) = sample_log();
    let last = ranges[2].clone();
    // Cut anywhere inside the last batch: header, record, padding.
    for cut in (last.start + 1..last.end).step_by(7) {
        let res = scan(&buf[..cut]);
        assert_eq!(decoded(&buf, &res), flat(&batches[..2]), "cut {cut}");
        match &res.end {
            Ok(ScanEnd::TornTail { offset, .. }) => assert_eq!(*offset, last.start),
            other => panic!("cut {cut}: unexpected end {other:?}"),
        }
    }
    // The last batch zeroed half-way, then zeros.
    let mut z = buf.clone();
    z[last.start + 60..].fill(0);
    z.resize(buf.len() + 1024, 0);
    let res = scan(&z);
    assert_eq!(decoded(&z, &res), flat(&batches[..2]));
    match res.end {
        Ok(ScanEnd::TornTail {
            offset,
            nonzero_end,
            ..
        }) => {
            assert_eq!(offset, last.start);
            assert!(nonzero_end <= last.start + 60);
        }
        other => panic!("unexpected end {other:?}"),
    }
}

#[test]
fn a_damaged_batch_before_a_valid_batch_is_corrupt() {
    let (buf, ranges, batches) = sample_log();
    let second = scan(&buf).records[1].clone();
    assert!(ranges[0].contains(&second.offset));
    let mut bad = buf.clone();
    bad[second.payload.start + 3] ^= 0x40;
    let res = scan(&bad);
    assert!(res.records.is_empty(), "no record of a damaged batch");
    match res.end {
        Err(CorruptRecord {
            offset,
            damage_offset,
            reason: BadRecord::ChecksumMismatch { .. },
            next_valid,
        }) => {
            assert_eq!(offset, 0);
            assert_eq!(damage_offset, second.offset);
            assert_eq!(next_valid, ranges[1].start);
        }
        other => panic!("unexpected end {other:?}"),
    }
    // A zeroed middle batch header: corruption, found after the header.
    let mut bad = buf.clone();
    bad[ranges[1].start..ranges[1].start + BATCH_HEADER_BYTES].fill(0);
    let res = scan(&bad);
    assert_eq!(decoded(&bad, &res), batches[0]);
    assert!(matches!(
        res.end,
        Err(CorruptRecord {
            reason: BadRecord::ZeroHeader,
            ..
        })
    ));
    if let Err(c) = res.end {
        assert_eq!((c.offset, c.next_valid), (ranges[1].start, ranges[2].start));
    }
}

#[test]
fn bad_kinds_and_reserved_bytes_are_bad_records() {
    let at = BATCH_HEADER_BYTES;
    let (mut buf, _) = encode_log(&[sample()[..1].to_vec()], 512);
    buf[at + 8] = 0x77;
    assert!(matches!(
        scan(&buf).end,
        Ok(ScanEnd::TornTail {
            reason: BadRecord::UnknownKind { kind: 0x77 },
            ..
        })
    ));
    let (mut buf, _) = encode_log(&[sample()[..1].to_vec()], 512);
    buf[at + 12] = 1;
    assert!(matches!(
        scan(&buf).end,
        Ok(ScanEnd::TornTail {
            reason: BadRecord::NonzeroReserved,
            ..
        })
    ));
}

/// A batch made bad by `damage`, alone and before a valid batch.
fn check_framing_error(damage: impl Fn(&mut Vec<u8>), expect: impl Fn(&BadRecord) -> bool) {
    let recs = sample();
    let (mut one, _) = encode_log(std::slice::from_ref(&recs), 512);
    damage(&mut one);
    let res = scan(&one);
    assert!(res.records.is_empty());
    match &res.end {
        Ok(ScanEnd::TornTail {
            offset: 0, reason, ..
        }) => assert!(expect(reason), "{reason:?}"),
        other => panic!("alone: unexpected end {other:?}"),
    }
    let mut two = one.clone();
    two.resize(one.len().next_multiple_of(512) + 512, 0);
    let next = two.len();
    encode_batch(&mut two, &recs, 512);
    let res = scan(&two);
    assert!(res.records.is_empty());
    match &res.end {
        // A valid header whose batch runs past all the data: any later batch
        // would start after that, so there is none.
        Ok(ScanEnd::TornTail {
            offset: 0,
            reason: reason @ BadRecord::BatchPastEnd { .. },
            ..
        }) => assert!(expect(reason), "{reason:?}"),
        Err(CorruptRecord {
            offset: 0,
            reason,
            next_valid,
            ..
        }) => {
            assert!(expect(reason), "{reason:?}");
            assert!(*next_valid <= next);
        }
        other => panic!("before a valid batch: unexpected end {other:?}"),
    }
}

#[test]
fn batch_framing_errors_are_damage() {
    // The header counts one record too many, or too few.
    for count in [3u32, 5] {
        check_framing_error(
            |b| put_batch_header(b, 0, 512, count),
            |r| matches!(r, BadRecord::RecordCount { found: 4, .. }),
        );
    }
    // The batch ends inside a record: that record crosses the end.
    check_framing_error(
        |b| put_batch_header(b, 0, 96, 4),
        |r| matches!(r, BadRecord::PastEnd { .. }),
    );
    // The batch runs past the end of the data.
    check_framing_error(
        |b| put_batch_header(b, 0, 1 << 40, 4),
        |r| matches!(r, BadRecord::BatchPastEnd { .. }),
    );
    check_framing_error(
        |b| put_batch_header(b, 0, u64::MAX - 7, 4),
        |r| matches!(r, BadRecord::BatchPastEnd { .. }),
    );
    // Impossible lengths.
    for len in [0u64, 8, 513] {
        check_framing_error(
            |b| put_batch_header(b, 0, len, 4),
            |r| matches!(r, BadRecord::BatchLength { .. }),
        );
    }
    // Nonzero reserved field.
    check_framing_error(
        |b| {
            b[36] = 1;
            fix_crc(b, 0);
        },
        |r| matches!(r, BadRecord::BatchReserved),
    );
    // A batch that does not start with a batch header.
    check_framing_error(
        |b| b[..BATCH_HEADER_BYTES].copy_from_slice(&encode_padding_record(16)),
        |r| matches!(r, BadRecord::NotBatchHeader { kind: PADDING_KIND }),
    );
    // A batch header or a segment header inside a batch.
    check_framing_error(
        |b| put_batch_header(b, BATCH_HEADER_BYTES, 512, 0),
        |r| matches!(r, BadRecord::UnexpectedBatchHeader),
    );
    check_framing_error(
        |b| {
            let mut seg = Vec::new();
            encode_segment_header(
                &mut seg,
                &SegmentHeader {
                    seq: 1,
                    prev_log_end: 0,
                },
            );
            b[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + seg.len()].copy_from_slice(&seg);
        },
        |r| matches!(r, BadRecord::UnexpectedSegmentHeader),
    );
}

/// A padding record with a `payload_len`-byte payload.
fn encode_padding_record(payload_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    encode_raw(&mut out, PADDING_KIND, 0, &vec![0; payload_len]);
    out
}

#[test]
fn segment_header_round_trip_and_errors() {
    let h = SegmentHeader {
        seq: 42,
        prev_log_end: 65536,
    };
    let mut buf = Vec::new();
    encode_segment_header(&mut buf, &h);
    assert_eq!(buf.len(), SEGMENT_HEADER_BYTES);
    assert_eq!(decode_segment_header(&buf), Ok(h));
    assert_eq!(
        decode_segment_header(&[0u8; 64]),
        Err(BadRecord::ZeroHeader)
    );
    assert!(matches!(
        decode_segment_header(&buf[..30]),
        Err(BadRecord::PastEnd { .. })
    ));
    let (data, _) = encode_log(&[sample()], 512);
    assert!(matches!(
        decode_segment_header(&data),
        Err(BadRecord::NotSegmentHeader {
            kind: BATCH_HEADER_KIND
        })
    ));
    let mut bad = buf.clone();
    bad[RECORD_HEADER_BYTES + 8] = 9; // version
    fix_crc(&mut bad, 0);
    assert_eq!(
        decode_segment_header(&bad),
        Err(BadRecord::UnsupportedVersion { version: 9 })
    );
    let mut bad = buf.clone();
    bad[RECORD_HEADER_BYTES] = b'X'; // magic
    fix_crc(&mut bad, 0);
    assert_eq!(decode_segment_header(&bad), Err(BadRecord::SegmentMagic));
}

#[test]
fn find_batch_header_sees_only_batch_headers() {
    let mut buf = vec![0u8; 4096];
    assert_eq!(find_batch_header(&buf, 0), None);
    // Segment headers, padding and data records are not batch headers.
    let mut other = Vec::new();
    encode_segment_header(
        &mut other,
        &SegmentHeader {
            seq: 1,
            prev_log_end: 0,
        },
    );
    for (k, r, p) in sample() {
        encode_record(&mut other, k, RegionId(r), &p).unwrap();
    }
    encode_padding(&mut other, 512);
    buf[..512].copy_from_slice(&other);
    assert_eq!(find_batch_header(&buf, 0), None);
    let (batch, _) = encode_log(&[sample()], 512);
    buf[1024..1536].copy_from_slice(&batch);
    assert_eq!(find_batch_header(&buf, 0), Some(1024));
    assert_eq!(find_batch_header(&buf, 1020), Some(1024));
    assert_eq!(find_batch_header(&buf, 1024), Some(1024));
    assert_eq!(find_batch_header(&buf, 1025), None);
    assert_eq!(find_batch_header(&buf, usize::MAX - 3), None);
    // After a batch with a valid header: only after its declared end.
    let (two, ranges) = encode_log(&[sample(), sample()], 512);
    assert_eq!(find_batch_header_after(&two, 0), Some(ranges[1].start));
    assert_eq!(find_batch_header_after(&two, ranges[1].start), None);
    assert_eq!(find_batch_header_after(&two, 8), Some(ranges[1].start));
    assert_eq!(find_batch_header_after(&two, usize::MAX), None);
}

#[test]
fn a_hole_then_later_blocks_of_the_same_batch_is_a_torn_tail() {
    // The bug this format fixes: the first block of the last batch (with
    // its header) never reached the disk, its later blocks (valid data
    // records, the padding) did.
    let (buf, ranges, batches) = sample_log();
    let big: Vec<Rec> = (0..6)
        .map(|i| (RecordKind::Entries, i, vec![i as u8; 300]))
        .collect();
    let mut log = buf.clone();
    let last = encode_batch(&mut log, &big, 512);
    assert!(last.len() >= 2048);
    let mut torn = log.clone();
    torn[last.start..last.start + 512].fill(0);
    let res = scan(&torn);
    assert_eq!(decoded(&torn, &res), flat(&batches));
    match res.end {
        Ok(ScanEnd::TornTail {
            offset,
            reason: BadRecord::ZeroHeader,
            nonzero_end,
            ..
        }) => {
            assert_eq!(offset, last.start);
            // The batch ends with its zero padding payload.
            assert!(nonzero_end > last.start + 512 && nonzero_end <= last.end);
        }
        other => panic!("unexpected end {other:?}"),
    }
    // Only a stray padding record after a hole.
    let mut torn = buf.clone();
    torn.resize(buf.len() + 64, 0);
    torn.extend_from_slice(&encode_padding_record(448));
    let res = scan(&torn);
    assert_eq!(res.records.len(), 4);
    assert!(matches!(
        res.end,
        Ok(ScanEnd::TornTail { offset, reason: BadRecord::ZeroHeader, .. }) if offset == ranges[2].end
    ));
    // A hole, then garbage.
    let mut torn = buf.clone();
    torn.resize(buf.len() + 100, 0);
    torn.extend_from_slice(&[0xAB; 50]);
    assert!(matches!(
        scan(&torn).end,
        Ok(ScanEnd::TornTail {
            reason: BadRecord::ZeroHeader,
            ..
        })
    ));
}

/// Damages the blocks of `buf[range]` (of `block` bytes) selected by the bits
/// of `subset`: zeros, or garbage seeded by `seed`.
fn damage_blocks(
    buf: &mut [u8],
    range: &Range<usize>,
    block: usize,
    subset: u64,
    seed: Option<u64>,
) {
    for (i, start) in range.clone().step_by(block).enumerate() {
        if subset & (1 << i) == 0 {
            continue;
        }
        let end = (start + block).min(range.end);
        match seed {
            None => buf[start..end].fill(0),
            Some(s) => buf[start..end].copy_from_slice(&garbage(s ^ (i as u64) << 32, end - start)),
        }
    }
}

/// A log of small batches and `big` batches (each a few blocks) at `at`.
fn block_test_log(
    align: usize,
    big_bytes: usize,
    big_at: usize,
) -> (Vec<u8>, Vec<Range<usize>>, Vec<Vec<Rec>>) {
    let big: Vec<Rec> = (0..big_bytes / 600)
        .map(|i| {
            (
                kinds()[i % 3],
                i as u64,
                vec![(i * 7) as u8 | 1; 555 + i % 9],
            )
        })
        .collect();
    let mut batches = vec![sample()[..2].to_vec(), sample()[2..].to_vec(), sample()];
    batches.insert(big_at, big);
    let (buf, ranges) = encode_log(&batches, align);
    (buf, ranges, batches)
}

/// For every subset of the blocks of batch `victim`: zeros and garbage.
/// The last batch ⇒ torn tail at its start; an earlier one ⇒ corruption.
fn check_every_block_subset(align: usize, block: usize, big_bytes: usize, victim: usize) {
    let (buf, ranges, batches) = block_test_log(align, big_bytes, victim);
    let range = ranges[victim].clone();
    let blocks = range.len() / block;
    assert!((2..=12).contains(&blocks), "{blocks} blocks");
    let is_last = victim + 1 == ranges.len();
    let mut padded = buf.clone();
    padded.resize(buf.len() + 2 * align, 0); // the preallocated tail
    for subset in 1..(1u64 << blocks) {
        for seed in [None, Some(subset * 0x9E37_79B9)] {
            let mut img = padded.clone();
            damage_blocks(&mut img, &range, block, subset, seed);
            let res = scan(&img);
            let what = format!("batch {victim} blocks {subset:#b} seed {seed:?}");
            if img == padded {
                // Zeroing blocks that were zero (padding) changes nothing.
                assert_eq!(res.end, Ok(ScanEnd::Clean { end: buf.len() }), "{what}");
                continue;
            }
            assert_eq!(decoded(&img, &res), flat(&batches[..victim]), "{what}");
            match (&res.end, is_last) {
                (Ok(ScanEnd::TornTail { offset, .. }), true) => {
                    assert_eq!(*offset, range.start, "{what}")
                }
                // None of the batch's nonzero blocks reached the disk.
                (Ok(ScanEnd::Clean { end }), true) => {
                    assert_eq!(*end, range.start, "{what}");
                    assert!(img[range.start..].iter().all(|&b| b == 0), "{what}");
                }
                (Err(c), false) => {
                    assert_eq!(c.offset, range.start, "{what}");
                    assert_eq!(c.next_valid, ranges[victim + 1].start, "{what}");
                }
                (other, _) => panic!("{what}: unexpected end {other:?}"),
            }
        }
    }
}

#[test]
fn last_batch_any_subset_of_512_blocks_is_a_torn_tail() {
    check_every_block_subset(512, 512, 4000, 3);
}

#[test]
fn last_batch_any_subset_of_4k_blocks_is_a_torn_tail() {
    check_every_block_subset(4096, 4096, 20_000, 3);
}

#[test]
fn earlier_batch_any_subset_of_512_blocks_is_corrupt() {
    check_every_block_subset(512, 512, 4000, 1);
    check_every_block_subset(512, 512, 4000, 0);
}

#[test]
fn earlier_batch_any_subset_of_4k_blocks_is_corrupt() {
    check_every_block_subset(4096, 4096, 20_000, 2);
}

fn arb_record() -> impl Strategy<Value = Rec> {
    (
        prop_oneof![
            Just(RecordKind::RegionMeta),
            Just(RecordKind::Entries),
            Just(RecordKind::HardState)
        ],
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
}

fn arb_batches() -> impl Strategy<Value = Vec<Vec<Rec>>> {
    proptest::collection::vec(proptest::collection::vec(arb_record(), 0..6), 1..5)
}

/// Bytes of `buf` that no crc covers: the zero bytes after each data
/// record's payload, up to 8-alignment.
fn uncovered(res: &ScanResult) -> Vec<usize> {
    res.records
        .iter()
        .flat_map(|r| r.payload.end..r.payload.end.next_multiple_of(RECORD_ALIGN))
        .collect()
}

proptest! {
    #[test]
    fn prop_round_trip(batches in arb_batches(), align_shift in 9u32..13) {
        let align = 1usize << align_shift;
        let (mut buf, ranges) = encode_log(&batches, align);
        for r in &ranges {
            prop_assert_eq!(r.start % align, 0);
            prop_assert_eq!(r.end % align, 0);
        }
        let end = buf.len();
        buf.resize(end + align, 0);
        let res = scan(&buf);
        prop_assert_eq!(res.end.clone(), Ok(ScanEnd::Clean { end }));
        prop_assert_eq!(decoded(&buf, &res), flat(&batches));
    }

    #[test]
    fn prop_random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let res = scan(&buf);
        for r in &res.records {
            prop_assert!(r.payload.end <= buf.len());
        }
        let _ = decode_segment_header(&buf);
        let _ = decode_batch_header(&buf, 0);
        let _ = decode_batch_header(&buf, usize::MAX);
        let _ = find_batch_header(&buf, 0);
        let _ = find_batch_header(&buf, 3);
        let _ = find_batch_header_after(&buf, 0);
        let _ = find_batch_header_after(&buf, 5);
    }

    #[test]
    fn prop_random_bytes_after_a_batch_header_never_panic(
        batch_bytes in any::<u64>(),
        count in any::<u32>(),
        tail in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut buf = vec![0u8; BATCH_HEADER_BYTES];
        put_batch_header(&mut buf, 0, batch_bytes, count);
        buf.extend_from_slice(&tail);
        let res = scan(&buf);
        for r in &res.records {
            prop_assert!(r.payload.end <= buf.len());
        }
    }

    #[test]
    fn prop_mutations_never_panic_or_invent_records(
        batches in arb_batches(),
        mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        truncate in proptest::option::of(any::<usize>()),
    ) {
        let (mut buf, ranges) = encode_log(&batches, 512);
        buf.resize(buf.len() + 512, 0);
        for (at, x) in &mutations {
            let i = at % buf.len();
            buf[i] ^= x | 1; // always changes the byte
        }
        if let Some(t) = truncate {
            let t = t % (buf.len() + 1);
            buf.truncate(t);
        }
        let res = scan(&buf);
        for r in &res.records {
            prop_assert!(r.payload.end <= buf.len());
        }
        // Whatever the scan accepts is whole batches, in order, as written
        // (crc32c catches every burst of up to 32 bits, and a single
        // mutation is such a burst).
        if mutations.len() == 1 {
            let got = decoded(&buf, &res);
            let whole = (0..=batches.len()).any(|n| got == flat(&batches[..n]));
            prop_assert!(whole, "not a prefix of whole batches");
            if let Ok(ScanEnd::TornTail { offset, .. }) | Err(CorruptRecord { offset, .. }) = res.end {
                // A batch start, or the end of the log (damage after it).
                prop_assert!(ranges.iter().any(|r| r.start == offset || r.end == offset));
            }
        }
    }

    #[test]
    fn prop_single_flip_is_detected(batches in arb_batches(), at in any::<usize>(), bit in 0u8..8) {
        let (mut buf, ranges) = encode_log(&batches, 512);
        let clean = scan(&buf);
        let i = at % buf.len();
        buf[i] ^= 1 << bit;
        let res = scan(&buf);
        let b = ranges.iter().position(|r| r.contains(&i)).unwrap();
        let got = decoded(&buf, &res);
        match res.end {
            Ok(ScanEnd::Clean { .. }) => {
                // Only a byte no crc covers, which changes no record.
                prop_assert!(uncovered(&clean).contains(&i), "flip at {} not detected", i);
                prop_assert_eq!(got, flat(&batches));
            }
            Ok(ScanEnd::TornTail { offset, .. }) => {
                prop_assert_eq!(b + 1, ranges.len(), "only the last batch is torn");
                prop_assert_eq!(offset, ranges[b].start);
                prop_assert_eq!(got, flat(&batches[..b]));
            }
            Err(CorruptRecord { offset, next_valid, .. }) => {
                prop_assert!(b + 1 < ranges.len(), "the last batch is never corrupt");
                prop_assert_eq!(offset, ranges[b].start);
                prop_assert_eq!(next_valid, ranges[b + 1].start);
                prop_assert_eq!(got, flat(&batches[..b]));
            }
        }
    }

    #[test]
    fn prop_block_damage_torn_if_last_corrupt_if_not(
        batches in arb_batches(),
        victim in any::<usize>(),
        subset in any::<u64>(),
        seed in proptest::option::of(any::<u64>()),
    ) {
        let (buf, ranges) = encode_log(&batches, 512);
        let v = victim % ranges.len();
        let mut img = buf.clone();
        damage_blocks(&mut img, &ranges[v], 512, subset, seed);
        let unchanged = img == buf;
        img.resize(buf.len() + 1024, 0);
        let res = scan(&img);
        if unchanged {
            prop_assert_eq!(res.end, Ok(ScanEnd::Clean { end: buf.len() }));
            return Ok(());
        }
        prop_assert_eq!(decoded(&img, &res), flat(&batches[..v]));
        match res.end {
            Ok(ScanEnd::TornTail { offset, .. }) => {
                prop_assert_eq!(v + 1, ranges.len());
                prop_assert_eq!(offset, ranges[v].start);
            }
            Err(CorruptRecord { offset, .. }) => {
                prop_assert!(v + 1 < ranges.len());
                prop_assert_eq!(offset, ranges[v].start);
            }
            // None of the last batch's nonzero blocks reached the disk.
            Ok(ScanEnd::Clean { end }) => {
                prop_assert_eq!(v + 1, ranges.len());
                prop_assert_eq!(end, ranges[v].start);
                prop_assert!(img[end..].iter().all(|&b| b == 0));
            }
        }
    }
}

#[test]
fn one_record_decodes_from_its_location_and_damage_is_typed() {
    let mut buf = Vec::new();
    reserve_batch_header(&mut buf);
    let at = buf.len();
    encode_record(&mut buf, RecordKind::Entries, RegionId(7), b"payload").unwrap();
    let end = buf.len();
    let rec = decode_data_record(&buf[at..end]).unwrap();
    assert_eq!((rec.kind, rec.region), (RecordKind::Entries, RegionId(7)));
    assert_eq!(&buf[at..end][rec.payload.clone()], b"payload");
    // Every single-bit flip is an error, never another record.
    for bit in 0..(end - at) * 8 {
        let mut bad = buf[at..end].to_vec();
        bad[bit / 8] ^= 1 << (bit % 8);
        if let Ok(r) = decode_data_record(&bad) {
            // A flip in the padding after the payload is not covered.
            assert!(bit / 8 >= at + RECORD_HEADER_BYTES + 7 - at, "bit {bit}");
            assert_eq!(&bad[r.payload], b"payload");
        }
    }
    // Truncation is an error; a batch header is not a data record.
    assert!(decode_data_record(&buf[at..end - 8]).is_err());
    seal_batch(&mut buf, 0, 1, PADDING_ALIGNMENT_MIN);
    assert_eq!(
        decode_data_record(&buf),
        Err(BadRecord::UnexpectedBatchHeader)
    );
}
