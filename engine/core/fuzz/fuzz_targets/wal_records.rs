//! Feeds arbitrary bytes to the WAL record and batch decoder
//! (`golem_core::wal_record`): `scan` over a buffer of batches, and the
//! recovery path over a segment image (`decode_segment_header`, then `scan`
//! of the bytes after the header, `find_batch_header_after` for a bad
//! header), and `decode_data_record` (one record read back from a known
//! location, the fetch path for old entries). Asserts, besides "never
//! panics":
//! - every record returned has a valid kind, matches the bytes it was read
//!   from (kind byte, region, length, crc) and its payload lies within the
//!   input and before the end of the log; `decode_data_record` at its
//!   offset returns the same record;
//! - decoding is deterministic, and scanning just the valid log
//!   (`buf[..log_end]`) gives the same records and a clean end there;
//! - the end classification is consistent: a clean end is followed by zeros
//!   only; a torn tail has no valid batch header after it, a corruption
//!   names one (`find_batch_header_after` agrees, as recovery relies on).
//!
//! The first input byte selects options: bit 0 recomputes the crc of every
//! record-looking header before decoding, so the fuzzer gets past the
//! checksums to the batch framing checks.
//!
//! Run: `cd engine/core/fuzz && cargo +nightly fuzz run wal_records`

#![no_main]

use golem_core::wal_record::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, rest) = match data.split_first() {
        Some((f, r)) => (*f, r),
        None => (0, data),
    };
    let mut buf = rest.to_vec();
    if flags & 1 != 0 {
        fix_crcs(&mut buf);
    }
    check_log(&buf);
    check_segment_image(&buf);
    check_data_record(&buf);
});

/// `buf` as one data record read from a known location
/// (`decode_data_record`, the fetch path for old entries).
fn check_data_record(buf: &[u8]) {
    let res = decode_data_record(buf);
    assert_eq!(res, decode_data_record(buf), "not deterministic");
    if let Ok(r) = res {
        assert_eq!(r.offset, 0);
        assert_eq!(r.payload.start, RECORD_HEADER_BYTES);
        assert!(r.payload.start <= r.payload.end && r.payload.end <= buf.len());
        assert_eq!(buf[8], r.kind as u8);
        assert_eq!(u64_at(buf, 16), r.region.get());
        assert_eq!(u32_at(buf, 4) as usize, r.payload.len());
        assert_eq!(u32_at(buf, 0), crc32c::crc32c(&buf[4..r.payload.end]));
    }
}

/// Walks `buf` in steps of 8 and, wherever a header with a known kind and a
/// length that fits starts, rewrites its crc and jumps past the record.
fn fix_crcs(buf: &mut [u8]) {
    let mut off = 0usize;
    while off + RECORD_HEADER_BYTES <= buf.len() {
        let kind = buf[off + 8];
        let len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().unwrap()) as usize;
        let known = RecordKind::from_u8(kind).is_some()
            || matches!(kind, PADDING_KIND | SEGMENT_HEADER_KIND | BATCH_HEADER_KIND);
        let end = off + RECORD_HEADER_BYTES + len;
        if known && len <= RECORD_PAYLOAD_BYTES_MAX && end <= buf.len() {
            let crc = crc32c::crc32c(&buf[off + 4..end]);
            buf[off..off + 4].copy_from_slice(&crc.to_le_bytes());
            off += record_bytes(len);
        } else {
            off += RECORD_ALIGN;
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// `buf` as a run of batches starting at offset 0 (what `scan` reads: a
/// segment's bytes after its header).
fn check_log(buf: &[u8]) {
    let res = scan(buf);
    assert_eq!(res, scan(buf), "scan is not deterministic");

    let log_end = match &res.end {
        Ok(end) => end.log_end(),
        Err(c) => c.offset,
    };
    assert!(log_end <= buf.len(), "log end {log_end} past the buffer");
    assert!(
        log_end.is_multiple_of(RECORD_ALIGN) || log_end == buf.len(),
        "log end {log_end} not 8-aligned"
    );

    let mut prev_end = 0usize;
    for r in &res.records {
        assert!(r.offset.is_multiple_of(RECORD_ALIGN), "{r:?} not aligned");
        assert!(r.offset >= prev_end, "{r:?} overlaps the previous record");
        assert_eq!(r.payload.start, r.offset + RECORD_HEADER_BYTES, "{r:?}");
        assert!(r.payload.start <= r.payload.end, "{r:?}");
        assert!(r.payload.end <= buf.len(), "{r:?} past the input");
        assert!(r.payload.end <= log_end, "{r:?} past the log end {log_end}");
        // The record says what its bytes say, and they passed the crc.
        assert_eq!(buf[r.offset + 8], r.kind as u8, "{r:?}");
        assert_eq!(RecordKind::from_u8(r.kind as u8), Some(r.kind), "{r:?}");
        assert_eq!(u64_at(buf, r.offset + 16), r.region.get(), "{r:?}");
        assert_eq!(u32_at(buf, r.offset + 4) as usize, r.payload.len(), "{r:?}");
        assert!(r.payload.len() <= RECORD_PAYLOAD_BYTES_MAX);
        assert_eq!(
            u32_at(buf, r.offset),
            crc32c::crc32c(&buf[r.offset + 4..r.payload.end]),
            "{r:?}: crc"
        );
        // The fetch path reads one located record alone: the same record.
        let alone = decode_data_record(&buf[r.offset..]).expect("a scanned record decodes alone");
        assert_eq!(
            (alone.offset, alone.kind, alone.region),
            (0, r.kind, r.region)
        );
        assert_eq!(
            alone.payload,
            r.payload.start - r.offset..r.payload.end - r.offset
        );
        prev_end = r.payload.end;
    }

    match &res.end {
        Ok(ScanEnd::Clean { end }) => {
            assert!(
                buf[*end..].iter().all(|&b| b == 0),
                "clean end {end} before nonzero bytes"
            );
        }
        Ok(ScanEnd::TornTail {
            offset,
            damage_offset,
            nonzero_end,
            ..
        }) => {
            assert!(*offset < buf.len(), "torn tail at the end of the buffer");
            assert!(damage_offset >= offset, "{:?}", res.end);
            assert!(*nonzero_end > *offset && *nonzero_end <= buf.len());
            assert_ne!(buf[nonzero_end - 1], 0, "{:?}", res.end);
            assert!(buf[*nonzero_end..].iter().all(|&b| b == 0));
            assert_eq!(
                find_batch_header_after(buf, *offset),
                None,
                "torn tail at {offset} but a later batch header exists"
            );
        }
        Err(c) => {
            assert!(c.offset < buf.len(), "{c:?}");
            assert!(c.damage_offset >= c.offset, "{c:?}");
            assert!(c.next_valid > c.offset, "{c:?}");
            assert!(c.next_valid.is_multiple_of(RECORD_ALIGN), "{c:?}");
            assert!(
                decode_batch_header(buf, c.next_valid).is_ok(),
                "{c:?}: no batch header at next_valid"
            );
            assert_eq!(
                find_batch_header_after(buf, c.offset),
                Some(c.next_valid),
                "{c:?}: recovery's search disagrees"
            );
        }
    }

    // Only the valid log: the same records, ending cleanly at the same place.
    let prefix = scan(&buf[..log_end]);
    assert_eq!(
        prefix.records, res.records,
        "records change when the buffer is cut at the log end {log_end}"
    );
    assert_eq!(prefix.end, Ok(ScanEnd::Clean { end: log_end }));

    // The search for a batch header: the first valid one at or after `from`.
    for from in [0, 1, 8, buf.len() / 2, buf.len(), usize::MAX - 3] {
        if let Some(at) = find_batch_header(buf, from) {
            assert!(at >= from && at.is_multiple_of(RECORD_ALIGN));
            assert!(decode_batch_header(buf, at).is_ok());
            if from == 0 {
                assert!((0..at)
                    .step_by(RECORD_ALIGN)
                    .all(|o| decode_batch_header(buf, o).is_err()));
            }
        }
    }
    for off in [0, 8, usize::MAX, usize::MAX - 7] {
        if let Ok(h) = decode_batch_header(buf, off) {
            assert!(h.batch_bytes >= BATCH_HEADER_BYTES as u64);
            assert!(h.batch_bytes.is_multiple_of(RECORD_ALIGN as u64));
        }
    }
}

/// `buf` as a whole WAL segment file, read the way recovery reads it.
fn check_segment_image(buf: &[u8]) {
    let header = decode_segment_header(buf);
    assert_eq!(header, decode_segment_header(buf));
    match header {
        Ok(h) => {
            let mut again = Vec::new();
            encode_segment_header(&mut again, &h);
            assert_eq!(again.len(), SEGMENT_HEADER_BYTES);
            assert_eq!(decode_segment_header(&again), Ok(h));
            assert!(buf.len() >= SEGMENT_HEADER_BYTES);
            check_log(&buf[SEGMENT_HEADER_BYTES..]);
        }
        Err(_) => {
            // Recovery's "is this an unfinished last segment" check.
            if let Some(at) = find_batch_header_after(buf, SEGMENT_HEADER_BYTES) {
                assert!(at > SEGMENT_HEADER_BYTES);
                assert!(decode_batch_header(buf, at).is_ok());
            }
        }
    }
}
