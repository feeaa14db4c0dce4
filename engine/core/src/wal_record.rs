//! WAL record kinds, the sink that region logic writes records into, and the
//! byte-level record codec (pure: no I/O).
//!
//! Owns the vocabulary shared by the region logic (which decides *what* to
//! persist) and the WAL (which decides *how*), and the on-disk framing of one
//! record (docs/storage.md):
//!
//! ```text
//! offset size field
//!      0    4 crc32c    Castagnoli, over bytes 4..24+len (len, kind, reserved, region, payload)
//!      4    4 len       u32, payload length in bytes, ≤ RECORD_PAYLOAD_BYTES_MAX
//!      8    1 kind      RecordKind, PADDING_KIND or SEGMENT_HEADER_KIND
//!      9    7 reserved  zero
//!     16    8 region    u64 (0 for padding and segment headers)
//!     24  len payload
//!         pad zero bytes up to the next multiple of 8 (not covered by the crc)
//! ```
//! All integers are little endian.
//!
//! Invariants:
//! - A `RecordKind`'s numeric value never changes; it is part of the on-disk
//!   format.
//! - Every record starts at a multiple of `RECORD_ALIGN` (8) from the start of
//!   the buffer it was encoded into, and its encoded length is a multiple of 8.
//! - An all-zero record header is never a valid record (kind 0 does not
//!   exist), so a preallocated, zero-filled area reads as the end of the log.
//! - Decoding never panics and never allocates in proportion to a length read
//!   from the input: every length is bounded by `RECORD_PAYLOAD_BYTES_MAX` and
//!   by the buffer before it is used. Bad input gets a typed `BadRecord`.
//! - `scan` never reports a record after a bad one: a bad record followed by
//!   a valid data record at any later 8-aligned offset is `CorruptRecord`
//!   (acknowledged data may be damaged; the shard must not serve), a bad
//!   record with no valid data record after it is a torn tail (an
//!   interrupted, unacknowledged write; recovery cuts it). An all-zero header
//!   counts as a bad record unless everything after it is zero too.

use golem_wire::RegionId;
use std::ops::Range;

/// What a WAL record holds. Values are stable on disk.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A region's metadata (range, epoch, peers), written when the region is
    /// created on this shard or changes.
    RegionMeta = 1,
    /// A run of consecutive Raft entries of one region. A run starting at
    /// index `i` supersedes every earlier-written entry with index ≥ `i`.
    Entries = 2,
    /// A region's Raft hard state (term, vote, commit).
    HardState = 3,
}

impl RecordKind {
    /// Parses a kind byte.
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::RegionMeta,
            2 => RecordKind::Entries,
            3 => RecordKind::HardState,
            _ => return None,
        })
    }
}

/// Where region logic puts the records a pass must make durable. The shard
/// loop makes everything appended during a pass durable with one sync before
/// it reports the pass persisted.
pub trait WalSink {
    /// Buffers one record of `region`.
    fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]);
}

/// A `WalSink` that keeps records in memory: for tests and the simulator.
#[derive(Debug, Default, Clone)]
pub struct VecSink {
    pub records: Vec<(RecordKind, RegionId, Vec<u8>)>,
}

impl WalSink for VecSink {
    fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]) {
        self.records.push((kind, region, payload.to_vec()));
    }
}

// ---------------------------------------------------------------------------
// Record codec
// ---------------------------------------------------------------------------

/// Size of a record header in bytes (crc, len, kind, reserved, region).
pub const RECORD_HEADER_BYTES: usize = 24;
/// Every record starts at, and is padded to, a multiple of this.
pub const RECORD_ALIGN: usize = 8;
/// Largest payload of one record, in bytes; checked when encoding and when
/// decoding (a larger length read from disk is a bad record).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Kind byte of a padding record: fills a batch up to the write alignment.
/// Its payload is zeros; scanning skips it.
pub const PADDING_KIND: u8 = 0xFE;
/// Kind byte of a segment header record: the first record of every WAL
/// segment file, and only there.
pub const SEGMENT_HEADER_KIND: u8 = 0xFD;
/// Magic at the start of a segment header's payload.
pub const SEGMENT_MAGIC: [u8; 8] = *b"GOLEMWAL";
/// Version of the WAL format written by this build.
pub const WAL_FORMAT_VERSION: u32 = 1;
/// Payload length of a segment header record.
pub const SEGMENT_HEADER_PAYLOAD_BYTES: usize = 32;
/// Encoded size of a segment header record (header + payload).
pub const SEGMENT_HEADER_BYTES: usize = RECORD_HEADER_BYTES + SEGMENT_HEADER_PAYLOAD_BYTES;
/// Smallest alignment `encode_padding` accepts (the O_DIRECT minimum).
pub const PADDING_ALIGNMENT_MIN: usize = 512;

const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX <= u32::MAX as usize);

/// Why a record could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("record payload of {len} bytes is over the limit of {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },
}

/// Why the bytes at some offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    #[error("truncated record header: {available} of {RECORD_HEADER_BYTES} bytes")]
    TruncatedHeader { available: usize },
    #[error("unknown record kind {kind:#04x}")]
    UnknownKind { kind: u8 },
    #[error("nonzero reserved header bytes")]
    NonzeroReserved,
    #[error("record payload length {len} is over the limit of {max}")]
    PayloadTooLarge { len: u64, max: usize },
    #[error(
        "record payload of {len} bytes runs past the end of the data ({available} bytes left)"
    )]
    PastEnd { len: u64, available: usize },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("all-zero record header (a hole) before later valid records")]
    ZeroHeader,
    #[error("segment header record in the middle of a segment")]
    UnexpectedSegmentHeader,
    #[error("expected a segment header record, found kind {kind:#04x}")]
    NotSegmentHeader { kind: u8 },
    #[error("segment header payload has {len} bytes, expected {SEGMENT_HEADER_PAYLOAD_BYTES}")]
    SegmentHeaderLength { len: u64 },
    #[error("bad segment magic")]
    SegmentMagic,
    #[error("unsupported WAL format version {version} (this build reads {WAL_FORMAT_VERSION})")]
    UnsupportedVersion { version: u32 },
    #[error("nonzero reserved segment header field")]
    SegmentReserved,
}

/// Encoded size of a record with a `payload_len`-byte payload (header,
/// payload and padding to 8).
pub const fn record_bytes(payload_len: usize) -> usize {
    RECORD_HEADER_BYTES + payload_len.next_multiple_of(RECORD_ALIGN)
}

/// Appends one record to `out`.
///
/// `out.len()` must be a multiple of `RECORD_ALIGN` (it always is when `out`
/// only ever receives records); the record then ends on a multiple of it too.
pub fn encode_record(
    out: &mut Vec<u8>,
    kind: RecordKind,
    region: RegionId,
    payload: &[u8],
) -> Result<(), EncodeError> {
    if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
        return Err(EncodeError::PayloadTooLarge {
            len: payload.len(),
            max: RECORD_PAYLOAD_BYTES_MAX,
        });
    }
    encode_raw(out, kind as u8, region.get(), payload);
    Ok(())
}

/// Appends a record with any kind byte; `payload.len()` must be within the limit.
fn encode_raw(out: &mut Vec<u8>, kind: u8, region: u64, payload: &[u8]) {
    debug_assert!(
        out.len().is_multiple_of(RECORD_ALIGN),
        "records start 8-aligned"
    );
    debug_assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX);
    let start = out.len();
    out.reserve(record_bytes(payload.len()));
    out.extend_from_slice(&[0; 4]); // crc, filled below
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&[0; 7]);
    out.extend_from_slice(&region.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + record_bytes(payload.len()), 0);
}

/// Length `len` becomes after `encode_padding` with `alignment`: the next
/// multiple of `alignment`, plus one more block if the gap would be smaller
/// than a record header. `len` must be a multiple of `RECORD_ALIGN`.
pub const fn padded_len(len: usize, alignment: usize) -> usize {
    let aligned = len.next_multiple_of(alignment);
    if aligned - len == 0 || aligned - len >= RECORD_HEADER_BYTES {
        aligned
    } else {
        aligned + alignment
    }
}

/// Appends one padding record so that `out.len()` becomes a multiple of
/// `alignment` (see `padded_len`); does nothing if it already is one.
///
/// # Panics
/// If `alignment` is not a power of two ≥ `PADDING_ALIGNMENT_MIN` or
/// `out.len()` is not a multiple of `RECORD_ALIGN` (caller bugs, never
/// input-dependent).
pub fn encode_padding(out: &mut Vec<u8>, alignment: usize) {
    assert!(
        alignment.is_power_of_two() && alignment >= PADDING_ALIGNMENT_MIN,
        "bad WAL alignment {alignment}"
    );
    assert!(
        out.len().is_multiple_of(RECORD_ALIGN),
        "records start 8-aligned"
    );
    let target = padded_len(out.len(), alignment);
    if target == out.len() {
        return;
    }
    let payload_len = target - out.len() - RECORD_HEADER_BYTES;
    // A gap never exceeds alignment + header size, far below the limit; the
    // payload is zeros and a multiple of 8, so the record ends at `target`.
    let zeros = vec![0u8; payload_len];
    encode_raw(out, PADDING_KIND, 0, &zeros);
    debug_assert_eq!(out.len(), target);
}

/// The header record at the start of every segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's sequence number; equals the number in its file name.
    pub seq: u64,
    /// Where the valid log of the previous segment (`seq - 1`) ends, as a
    /// byte offset in that file. Bytes at and after it in the previous
    /// segment are not part of the log (zeros, or a torn tail cut by
    /// recovery). 0 when there is no previous segment.
    pub prev_log_end: u64,
}

/// Appends a segment header record (payload: magic, version u32, reserved
/// u32 = 0, seq u64, prev_log_end u64).
pub fn encode_segment_header(out: &mut Vec<u8>, header: &SegmentHeader) {
    let mut payload = [0u8; SEGMENT_HEADER_PAYLOAD_BYTES];
    payload[0..8].copy_from_slice(&SEGMENT_MAGIC);
    payload[8..12].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    // 12..16 reserved, zero.
    payload[16..24].copy_from_slice(&header.seq.to_le_bytes());
    payload[24..32].copy_from_slice(&header.prev_log_end.to_le_bytes());
    encode_raw(out, SEGMENT_HEADER_KIND, 0, &payload);
}

/// Decodes the segment header record at the start of `buf`. The segment's
/// other records start at `SEGMENT_HEADER_BYTES`.
pub fn decode_segment_header(buf: &[u8]) -> Result<SegmentHeader, BadRecord> {
    let rec = check_record(buf, 0)?;
    if rec.kind != SEGMENT_HEADER_KIND {
        return Err(BadRecord::NotSegmentHeader { kind: rec.kind });
    }
    let payload = &buf[rec.payload.clone()];
    if payload.len() != SEGMENT_HEADER_PAYLOAD_BYTES {
        return Err(BadRecord::SegmentHeaderLength {
            len: payload.len() as u64,
        });
    }
    if payload[0..8] != SEGMENT_MAGIC {
        return Err(BadRecord::SegmentMagic);
    }
    let version = read_u32(payload, 8);
    if version != WAL_FORMAT_VERSION {
        return Err(BadRecord::UnsupportedVersion { version });
    }
    if read_u32(payload, 12) != 0 {
        return Err(BadRecord::SegmentReserved);
    }
    Ok(SegmentHeader {
        seq: read_u64(payload, 16),
        prev_log_end: read_u64(payload, 24),
    })
}

/// One valid data record found by `scan`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    /// Offset of the record header in the scanned buffer.
    pub offset: usize,
    pub kind: RecordKind,
    pub region: RegionId,
    /// Where the payload lies in the scanned buffer.
    pub payload: Range<usize>,
}

/// How a scan that found no corruption ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// The log ends at `end`: the end of the buffer, or an all-zero record
    /// header with only zero bytes after it.
    Clean { end: usize },
    /// A bad record at `offset` (possibly an all-zero header followed by
    /// nonzero bytes) with no valid data record at any 8-aligned offset
    /// after it: an interrupted write. The log ends at `offset`; recovery
    /// cuts `offset..nonzero_end` (the last nonzero byte of the buffer is at
    /// `nonzero_end - 1`).
    TornTail {
        offset: usize,
        reason: BadRecord,
        nonzero_end: usize,
    },
}

impl ScanEnd {
    /// Where the valid log ends.
    pub fn log_end(&self) -> usize {
        match self {
            ScanEnd::Clean { end } => *end,
            ScanEnd::TornTail { offset, .. } => *offset,
        }
    }
}

/// A bad record at `offset` followed by a valid data record at `next_valid`:
/// data after the damage may have been acknowledged, so it must not be
/// dropped silently.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad WAL record at offset {offset} ({reason}), followed by a valid record at offset {next_valid}")]
pub struct CorruptRecord {
    pub offset: usize,
    pub reason: BadRecord,
    pub next_valid: usize,
}

/// The result of scanning a buffer of records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// Every valid data record before the end (or before the corruption), in
    /// order. Padding records are skipped.
    pub records: Vec<ScannedRecord>,
    pub end: Result<ScanEnd, CorruptRecord>,
}

/// Walks the records of `buf` from offset 0 (which must be where a record
/// starts), collecting valid data records and classifying how the log ends.
/// Never panics.
pub fn scan(buf: &[u8]) -> ScanResult {
    let mut records = Vec::new();
    let mut off = 0usize;
    let end = loop {
        if off >= buf.len() {
            break Ok(ScanEnd::Clean { end: buf.len() });
        }
        let header_end = buf.len().min(off + RECORD_HEADER_BYTES);
        let bad = if buf[off..header_end].iter().all(|&b| b == 0) {
            if buf[off..].iter().all(|&b| b == 0) {
                break Ok(ScanEnd::Clean { end: off });
            }
            BadRecord::ZeroHeader
        } else {
            match check_record(buf, off) {
                Ok(rec) => match rec.kind {
                    PADDING_KIND => {
                        off = rec.next;
                        continue;
                    }
                    SEGMENT_HEADER_KIND => BadRecord::UnexpectedSegmentHeader,
                    k => match RecordKind::from_u8(k) {
                        Some(kind) => {
                            records.push(ScannedRecord {
                                offset: off,
                                kind,
                                region: RegionId(rec.region),
                                payload: rec.payload,
                            });
                            off = rec.next;
                            continue;
                        }
                        // check_record only accepts known kinds.
                        None => BadRecord::UnknownKind { kind: k },
                    },
                },
                Err(bad) => bad,
            }
        };
        break match find_data_record(buf, off.saturating_add(RECORD_ALIGN)) {
            None => Ok(ScanEnd::TornTail {
                offset: off,
                reason: bad,
                nonzero_end: buf.iter().rposition(|&b| b != 0).map_or(off, |i| i + 1),
            }),
            Some(next_valid) => Err(CorruptRecord {
                offset: off,
                reason: bad,
                next_valid,
            }),
        };
    };
    ScanResult { records, end }
}

/// The first offset at or after `from`, in steps of `RECORD_ALIGN`, where a
/// valid *data* record (a `RecordKind`, not padding or a segment header)
/// starts. Decides torn tail versus corruption after a bad record (only data
/// can have been acknowledged), and recognises a segment whose creation never
/// completed (no valid data record anywhere). `from` should be 8-aligned.
pub fn find_data_record(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).step_by(RECORD_ALIGN).find(|&o| {
        // Cheap pre-check on the kind byte before the full check (this runs
        // at every offset of what may be a large, mostly zero area).
        buf.get(o + 8)
            .is_some_and(|&k| RecordKind::from_u8(k).is_some())
            && check_record(buf, o).is_ok()
    })
}

/// A record that passed every check, with a kind byte that is a known data
/// kind, padding or a segment header.
struct CheckedRecord {
    kind: u8,
    region: u64,
    payload: Range<usize>,
    /// Offset of the next record.
    next: usize,
}

/// Validates the record at `off`. Cheap checks first (this also runs at
/// every offset when looking for valid records after a bad one).
fn check_record(buf: &[u8], off: usize) -> Result<CheckedRecord, BadRecord> {
    let available = buf.len().saturating_sub(off);
    if available < RECORD_HEADER_BYTES {
        return Err(BadRecord::TruncatedHeader { available });
    }
    let h = &buf[off..off + RECORD_HEADER_BYTES];
    let kind = h[8];
    if kind != PADDING_KIND && kind != SEGMENT_HEADER_KIND && RecordKind::from_u8(kind).is_none() {
        return Err(BadRecord::UnknownKind { kind });
    }
    if h[9..16].iter().any(|&b| b != 0) {
        return Err(BadRecord::NonzeroReserved);
    }
    let len = u64::from(read_u32(h, 4));
    if len > RECORD_PAYLOAD_BYTES_MAX as u64 {
        return Err(BadRecord::PayloadTooLarge {
            len,
            max: RECORD_PAYLOAD_BYTES_MAX,
        });
    }
    // len ≤ 64 MiB, so this cannot overflow.
    let len = len as usize;
    let payload_start = off + RECORD_HEADER_BYTES;
    if available - RECORD_HEADER_BYTES < len {
        return Err(BadRecord::PastEnd {
            len: len as u64,
            available: available - RECORD_HEADER_BYTES,
        });
    }
    let payload_end = payload_start + len;
    let stored = read_u32(h, 0);
    let computed = crc32c::crc32c(&buf[off + 4..payload_end]);
    if stored != computed {
        return Err(BadRecord::ChecksumMismatch { stored, computed });
    }
    // The zero padding after the payload may be cut off at the very end of
    // the buffer; the next record would then start past the end.
    let next = (off + record_bytes(len)).min(buf.len().next_multiple_of(RECORD_ALIGN));
    Ok(CheckedRecord {
        kind,
        region: read_u64(h, 16),
        payload: payload_start..payload_end,
        next,
    })
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kinds() -> [RecordKind; 3] {
        [
            RecordKind::RegionMeta,
            RecordKind::Entries,
            RecordKind::HardState,
        ]
    }

    fn encode_all(records: &[(RecordKind, u64, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, r, p) in records {
            encode_record(&mut out, *k, RegionId(*r), p).unwrap();
        }
        out
    }

    fn decoded(buf: &[u8], res: &ScanResult) -> Vec<(RecordKind, u64, Vec<u8>)> {
        res.records
            .iter()
            .map(|r| (r.kind, r.region.get(), buf[r.payload.clone()].to_vec()))
            .collect()
    }

    fn sample() -> Vec<(RecordKind, u64, Vec<u8>)> {
        vec![
            (RecordKind::RegionMeta, 1, b"meta".to_vec()),
            (RecordKind::Entries, 2, vec![7u8; 100]),
            (RecordKind::HardState, 3, vec![]),
            (RecordKind::Entries, u64::MAX, vec![0u8; 13]),
        ]
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
        assert_eq!(RecordKind::from_u8(PADDING_KIND), None);
        assert_eq!(RecordKind::from_u8(SEGMENT_HEADER_KIND), None);
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
    fn round_trip_clean() {
        let recs = sample();
        let buf = encode_all(&recs);
        let res = scan(&buf);
        assert_eq!(res.end, Ok(ScanEnd::Clean { end: buf.len() }));
        assert_eq!(decoded(&buf, &res), recs);
    }

    #[test]
    fn zero_tail_is_clean_end() {
        let recs = sample();
        let mut buf = encode_all(&recs);
        let end = buf.len();
        buf.resize(end + 4096, 0);
        let res = scan(&buf);
        assert_eq!(res.end, Ok(ScanEnd::Clean { end }));
        assert_eq!(decoded(&buf, &res), recs);
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
    fn padding_fills_to_alignment_and_is_skipped() {
        for pre in [0usize, 8, 16, 24, 480, 488, 496, 504, 512, 1000] {
            for align in [512usize, 4096] {
                let mut out = Vec::new();
                if pre >= RECORD_HEADER_BYTES {
                    encode_record(
                        &mut out,
                        RecordKind::Entries,
                        RegionId(9),
                        &vec![1u8; pre - RECORD_HEADER_BYTES],
                    )
                    .unwrap();
                } else {
                    out.resize(pre, 0);
                }
                let before = out.len();
                encode_padding(&mut out, align);
                assert_eq!(out.len() % align, 0, "pre {pre} align {align}");
                assert_eq!(out.len(), padded_len(before, align));
                let gap = out.len() - before;
                assert!(gap == 0 || gap >= RECORD_HEADER_BYTES);
                assert!(gap < align + RECORD_HEADER_BYTES);
                if pre >= RECORD_HEADER_BYTES {
                    let res = scan(&out);
                    assert_eq!(res.end, Ok(ScanEnd::Clean { end: out.len() }));
                    assert_eq!(res.records.len(), 1);
                }
            }
        }
    }

    #[test]
    fn small_gap_pads_through_one_more_block() {
        let mut out = Vec::new();
        // 496 bytes: the gap to 512 is 16, smaller than a header.
        encode_record(&mut out, RecordKind::Entries, RegionId(1), &[3u8; 472]).unwrap();
        assert_eq!(out.len(), 496);
        encode_padding(&mut out, 512);
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
        let mut buf = encode_all(&sample()[..1]);
        let len = (RECORD_PAYLOAD_BYTES_MAX as u32) + 1;
        buf[4..8].copy_from_slice(&len.to_le_bytes());
        let res = scan(&buf);
        assert!(res.records.is_empty());
        assert!(matches!(
            res.end,
            Ok(ScanEnd::TornTail {
                offset: 0,
                reason: BadRecord::PayloadTooLarge { .. },
                ..
            })
        ));
        // u32::MAX as well.
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            scan(&buf).end,
            Ok(ScanEnd::TornTail {
                reason: BadRecord::PayloadTooLarge { .. },
                ..
            })
        ));
    }

    #[test]
    fn torn_last_record_is_a_torn_tail() {
        let recs = sample();
        let buf = encode_all(&recs);
        let last = scan(&buf).records.last().unwrap().offset;
        // Cut inside the last record's payload.
        let cut = &buf[..last + RECORD_HEADER_BYTES + 5];
        let res = scan(cut);
        assert_eq!(decoded(cut, &res), recs[..3].to_vec());
        match res.end {
            Ok(ScanEnd::TornTail {
                offset,
                reason: BadRecord::PastEnd { .. },
                ..
            }) => assert_eq!(offset, last),
            other => panic!("unexpected end {other:?}"),
        }
        // Cut inside the header.
        let cut = &buf[..last + 10];
        let res = scan(cut);
        assert_eq!(res.records.len(), 3);
        assert!(matches!(
            res.end,
            Ok(ScanEnd::TornTail {
                reason: BadRecord::TruncatedHeader { available: 10 },
                ..
            })
        ));
        // Last record zeroed half-way, then zeros: payload checksum fails.
        let mut z = buf.clone();
        let n = z.len();
        z[last + 12..n].fill(0);
        z.resize(n + 1024, 0);
        let res = scan(&z);
        assert_eq!(res.records.len(), 3);
        match res.end {
            Ok(ScanEnd::TornTail {
                offset,
                reason: BadRecord::ChecksumMismatch { .. },
                nonzero_end,
            }) => {
                assert_eq!(offset, last);
                assert!(nonzero_end <= last + 12);
            }
            other => panic!("unexpected end {other:?}"),
        }
    }

    #[test]
    fn a_bad_record_before_a_valid_one_is_corrupt() {
        let recs = sample();
        let mut buf = encode_all(&recs);
        // Flip a payload byte of the second record.
        let second = scan(&buf).records[1].clone();
        buf[second.payload.start + 3] ^= 0x40;
        let res = scan(&buf);
        assert_eq!(res.records.len(), 1);
        match res.end {
            Err(CorruptRecord {
                offset,
                reason: BadRecord::ChecksumMismatch { .. },
                next_valid,
            }) => {
                assert_eq!(offset, second.offset);
                assert!(next_valid > offset);
            }
            other => panic!("unexpected end {other:?}"),
        }
    }

    #[test]
    fn a_zeroed_record_before_a_valid_one_is_corrupt() {
        let recs = sample();
        let mut buf = encode_all(&recs);
        let first = scan(&buf).records[0].clone();
        buf[first.offset..first.payload.end].fill(0);
        let res = scan(&buf);
        assert!(res.records.is_empty());
        assert!(matches!(
            res.end,
            Err(CorruptRecord {
                offset: 0,
                reason: BadRecord::ZeroHeader,
                ..
            })
        ));
    }

    #[test]
    fn bad_kinds_and_reserved_bytes_are_bad_records() {
        let mut buf = encode_all(&sample()[..1]);
        buf[8] = 0x77;
        assert!(matches!(
            scan(&buf).end,
            Ok(ScanEnd::TornTail {
                reason: BadRecord::UnknownKind { kind: 0x77 },
                ..
            })
        ));
        let mut buf = encode_all(&sample()[..1]);
        buf[12] = 1;
        assert!(matches!(
            scan(&buf).end,
            Ok(ScanEnd::TornTail {
                reason: BadRecord::NonzeroReserved,
                ..
            })
        ));
        // A segment header in the middle of a segment.
        let mut buf = Vec::new();
        encode_segment_header(
            &mut buf,
            &SegmentHeader {
                seq: 1,
                prev_log_end: 0,
            },
        );
        assert!(matches!(
            scan(&buf).end,
            Ok(ScanEnd::TornTail {
                reason: BadRecord::UnexpectedSegmentHeader,
                ..
            })
        ));
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
        assert!(matches!(
            decode_segment_header(&[0u8; 64]),
            Err(BadRecord::UnknownKind { kind: 0 })
        ));
        assert!(matches!(
            decode_segment_header(&buf[..30]),
            Err(BadRecord::PastEnd { .. })
        ));
        let data = encode_all(&sample()[..1]);
        assert!(matches!(
            decode_segment_header(&data),
            Err(BadRecord::NotSegmentHeader { kind: 1 })
        ));
        let mut bad = buf.clone();
        bad[RECORD_HEADER_BYTES + 8] = 9; // version
        let crc = crc32c::crc32c(&bad[4..]);
        bad[0..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_segment_header(&bad),
            Err(BadRecord::UnsupportedVersion { version: 9 })
        );
        let mut bad = buf.clone();
        bad[RECORD_HEADER_BYTES] = b'X'; // magic
        let crc = crc32c::crc32c(&bad[4..]);
        bad[0..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&bad), Err(BadRecord::SegmentMagic));
    }

    #[test]
    fn find_data_record_sees_data_records_anywhere() {
        let mut buf = vec![0u8; 4096];
        assert_eq!(find_data_record(&buf, 0), None);
        // Padding and segment headers are not data.
        let mut pad = Vec::new();
        encode_segment_header(
            &mut pad,
            &SegmentHeader {
                seq: 1,
                prev_log_end: 0,
            },
        );
        encode_padding(&mut pad, 512);
        buf[..512].copy_from_slice(&pad);
        assert_eq!(find_data_record(&buf, 0), None);
        let rec = encode_all(&sample()[..1]);
        buf[1024..1024 + rec.len()].copy_from_slice(&rec);
        assert_eq!(find_data_record(&buf, 0), Some(1024));
        assert_eq!(find_data_record(&buf, 1024), Some(1024));
        assert_eq!(find_data_record(&buf, 1032), None);
        assert_eq!(find_data_record(&buf, usize::MAX - 3), None);
    }

    #[test]
    fn zero_header_then_garbage_or_padding_is_a_torn_tail() {
        let recs = sample();
        let mut buf = encode_all(&recs);
        let end = buf.len();
        // A hole, then a stray padding record (the end of a batch whose data
        // never reached the disk).
        buf.resize(end + 64, 0);
        encode_padding(&mut buf, 512);
        let res = scan(&buf);
        assert_eq!(decoded(&buf, &res), recs);
        match res.end {
            Ok(ScanEnd::TornTail {
                offset,
                reason: BadRecord::ZeroHeader,
                nonzero_end,
            }) => {
                assert_eq!(offset, end);
                assert!(nonzero_end > end + 64);
            }
            other => panic!("unexpected end {other:?}"),
        }
        // A hole, then garbage that is no record.
        let mut buf = encode_all(&recs);
        buf.resize(end + 100, 0);
        buf.extend_from_slice(&[0xAB; 50]);
        assert!(matches!(
            scan(&buf).end,
            Ok(ScanEnd::TornTail {
                reason: BadRecord::ZeroHeader,
                ..
            })
        ));
    }

    #[test]
    fn a_bad_record_followed_only_by_padding_is_a_torn_tail() {
        let recs = sample();
        let mut buf = encode_all(&recs);
        encode_padding(&mut buf, 512);
        let last = scan(&buf).records.last().unwrap().clone();
        buf[last.offset] ^= 1; // its crc
        let res = scan(&buf);
        assert_eq!(res.records.len(), recs.len() - 1);
        assert!(matches!(
            res.end,
            Ok(ScanEnd::TornTail {
                reason: BadRecord::ChecksumMismatch { .. },
                ..
            })
        ));
    }

    fn arb_records() -> impl Strategy<Value = Vec<(RecordKind, u64, Vec<u8>)>> {
        proptest::collection::vec(
            (
                prop_oneof![
                    Just(RecordKind::RegionMeta),
                    Just(RecordKind::Entries),
                    Just(RecordKind::HardState)
                ],
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..300),
            ),
            0..12,
        )
    }

    proptest! {
        #[test]
        fn prop_round_trip(recs in arb_records(), align_shift in 9u32..13, batches in 1usize..4) {
            // Split into batches, each padded to the alignment like a sync.
            let align = 1usize << align_shift;
            let mut buf = Vec::new();
            let per = recs.len().div_ceil(batches).max(1);
            for chunk in recs.chunks(per) {
                for (k, r, p) in chunk {
                    encode_record(&mut buf, *k, RegionId(*r), p).unwrap();
                }
                encode_padding(&mut buf, align);
                prop_assert_eq!(buf.len() % align, 0);
            }
            let end = buf.len();
            buf.resize(end + align, 0);
            let res = scan(&buf);
            prop_assert_eq!(res.end.clone(), Ok(ScanEnd::Clean { end }));
            prop_assert_eq!(decoded(&buf, &res), recs);
        }

        #[test]
        fn prop_random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let res = scan(&buf);
            for r in &res.records {
                prop_assert!(r.payload.end <= buf.len());
            }
            let _ = decode_segment_header(&buf);
            let _ = find_data_record(&buf, 0);
            let _ = find_data_record(&buf, 3);
        }

        #[test]
        fn prop_mutations_never_panic_or_invent_records(
            recs in arb_records(),
            mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            truncate in proptest::option::of(any::<usize>()),
        ) {
            let mut buf = encode_all(&recs);
            encode_padding(&mut buf, 512);
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
            let got = decoded(&buf, &res);
            for r in &res.records {
                prop_assert!(r.payload.end <= buf.len());
            }
            // Whatever the scan accepts is a prefix of what was written
            // (crc32c catches every burst of up to 32 bits, and a single
            // mutation is such a burst); corruption is never silently skipped.
            if mutations.len() == 1 {
                prop_assert!(got.len() <= recs.len());
                prop_assert_eq!(&got[..], &recs[..got.len()]);
            }
        }

        #[test]
        fn prop_single_flip_is_detected(recs in arb_records(), at in any::<usize>(), bit in 0u8..8) {
            prop_assume!(!recs.is_empty());
            let mut buf = encode_all(&recs);
            let clean = scan(&buf);
            // Flip a bit inside some record's checksummed bytes.
            let r = &clean.records[at % clean.records.len()];
            let span = r.payload.end - r.offset;
            let i = r.offset + (at / 7) % span;
            buf[i] ^= 1 << bit;
            let res = scan(&buf);
            let idx = clean.records.iter().position(|x| x.offset == r.offset).unwrap();
            prop_assert_eq!(res.records.len(), idx);
            let is_last = idx + 1 == clean.records.len();
            match res.end {
                Ok(ScanEnd::TornTail { offset, .. }) => {
                    prop_assert!(is_last);
                    prop_assert_eq!(offset, r.offset);
                }
                Err(CorruptRecord { offset, .. }) => {
                    prop_assert!(!is_last);
                    prop_assert_eq!(offset, r.offset);
                }
                Ok(ScanEnd::Clean { .. }) => prop_assert!(false, "flip not detected"),
            }
        }
    }
}
