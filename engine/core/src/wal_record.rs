//! WAL record kinds, the sink that region logic writes records into, and the
//! byte-level codec of records and batches (pure: no I/O).
//!
//! Owns the vocabulary shared by the region logic (which decides *what* to
//! persist) and the WAL (which decides *how*), and the on-disk framing
//! (docs/storage.md, format version 2). One record:
//!
//! ```text
//! offset size field
//!      0    4 crc32c    Castagnoli, over bytes 4..24+len (len, kind, reserved, region, payload)
//!      4    4 len       u32, payload length in bytes, ≤ RECORD_PAYLOAD_BYTES_MAX
//!      8    1 kind      RecordKind, BATCH_HEADER_KIND, SEGMENT_HEADER_KIND or PADDING_KIND
//!      9    7 reserved  zero
//!     16    8 region    u64 (0 for batch headers, segment headers and padding)
//!     24  len payload
//!         pad zero bytes up to the next multiple of 8 (not covered by the crc)
//! ```
//! All integers are little endian. Records are grouped in **batches**, one
//! batch per `Wal::sync` (one write, one fdatasync):
//!
//! ```text
//! batch header (kind 0xFC): batch_bytes u64, record_count u32, reserved u32 = 0
//! record_count data records (any padding records between them are skipped)
//! one padding record up to the write alignment
//! ```
//! `batch_bytes` runs from the batch header's first byte through the end of
//! the batch's padding; the next batch (or the end of the log) starts there.
//!
//! Invariants:
//! - A `RecordKind`'s numeric value never changes; it is part of the on-disk
//!   format.
//! - Every record starts at a multiple of `RECORD_ALIGN` (8) from the start of
//!   the buffer it was encoded into, and its encoded length is a multiple of 8.
//! - An all-zero record header is never a valid record (kind 0 does not
//!   exist), so a preallocated, zero-filled area reads as the end of the log.
//! - Decoding never panics and never allocates in proportion to a length read
//!   from the input: every length is bounded by `RECORD_PAYLOAD_BYTES_MAX` or
//!   by the buffer before it is used. Bad input gets a typed `BadRecord`.
//! - `scan` returns the records of whole, valid batches only. A batch is
//!   valid when its header is, every record lies exactly inside it, none is a
//!   batch or segment header, and the data-record count matches. A damaged
//!   batch followed by a valid batch header (searched after the damaged
//!   batch's declared end if its header is valid, else after its start) is
//!   `CorruptRecord`: that later batch was only written after the damaged one
//!   had been synced and acknowledged. Without one, it is a torn tail cut at
//!   the damaged batch's start: the last batch's write was interrupted, in
//!   any block order, and was never acknowledged.

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
    /// Where a region's log starts: `(index, term)` of the last entry whose
    /// record may be gone (its WAL segment deleted). Entries at or below
    /// `index` are applied and durable in the state machine store.
    LogStart = 4,
    /// Written by the WAL itself (region 0): segments numbered below the
    /// payload's sequence number may have been deleted.
    WalStart = 5,
    /// The region's replica on this shard was removed (its data deleted):
    /// recovery ignores the region's earlier records. Empty payload.
    Tombstone = 6,
}

impl RecordKind {
    /// Parses a kind byte.
    pub fn from_u8(b: u8) -> Option<RecordKind> {
        Some(match b {
            1 => RecordKind::RegionMeta,
            2 => RecordKind::Entries,
            3 => RecordKind::HardState,
            4 => RecordKind::LogStart,
            5 => RecordKind::WalStart,
            6 => RecordKind::Tombstone,
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
/// Kind byte of a batch header record: the first record of every batch, and
/// only there.
pub const BATCH_HEADER_KIND: u8 = 0xFC;
/// Magic at the start of a segment header's payload.
pub const SEGMENT_MAGIC: [u8; 8] = *b"GOLEMWAL";
/// Version of the WAL format written (and the only one read) by this build.
pub const WAL_FORMAT_VERSION: u32 = 2;
/// Payload length of a segment header record.
pub const SEGMENT_HEADER_PAYLOAD_BYTES: usize = 32;
/// Encoded size of a segment header record (header + payload).
pub const SEGMENT_HEADER_BYTES: usize = RECORD_HEADER_BYTES + SEGMENT_HEADER_PAYLOAD_BYTES;
/// Payload length of a batch header record.
pub const BATCH_HEADER_PAYLOAD_BYTES: usize = 16;
/// Encoded size of a batch header record (header + payload).
pub const BATCH_HEADER_BYTES: usize = RECORD_HEADER_BYTES + BATCH_HEADER_PAYLOAD_BYTES;
/// Most data records in one batch (the header's count is a u32).
pub const BATCH_RECORDS_MAX: u32 = u32::MAX;
/// Smallest alignment `encode_padding` accepts (the O_DIRECT minimum).
pub const PADDING_ALIGNMENT_MIN: usize = 512;

const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(BATCH_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX <= u32::MAX as usize);
// The segment header and the first batch header share the first block.
const _: () = assert!(SEGMENT_HEADER_BYTES + BATCH_HEADER_BYTES <= PADDING_ALIGNMENT_MIN);

/// Why a record or a batch could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("record payload of {len} bytes is over the limit of {max} bytes")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("batch already holds the most records one batch can count ({max})")]
    BatchFull { max: u32 },
}

/// Why the bytes at some offset are not a valid record, or not a valid batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    #[error("truncated record header: {available} of {RECORD_HEADER_BYTES} bytes")]
    TruncatedHeader { available: usize },
    #[error("all-zero record header (a hole) before later nonzero bytes")]
    ZeroHeader,
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
    #[error("expected a batch header record, found kind {kind:#04x}")]
    NotBatchHeader { kind: u8 },
    #[error("batch header payload has {len} bytes, expected {BATCH_HEADER_PAYLOAD_BYTES}")]
    BatchHeaderLength { len: u64 },
    #[error("nonzero reserved batch header field")]
    BatchReserved,
    #[error("batch length {batch_bytes} is not a multiple of {RECORD_ALIGN} of at least {BATCH_HEADER_BYTES} bytes")]
    BatchLength { batch_bytes: u64 },
    #[error("batch of {batch_bytes} bytes runs past the end of the data ({available} bytes left)")]
    BatchPastEnd { batch_bytes: u64, available: usize },
    #[error("batch header record inside a batch")]
    UnexpectedBatchHeader,
    #[error("batch header counts {declared} data records, the batch holds {found}")]
    RecordCount { declared: u32, found: u64 },
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

// ---------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------

/// The record that starts every batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// From the batch header's first byte through the end of the batch's
    /// padding: the next batch starts this many bytes after this header.
    pub batch_bytes: u64,
    /// Number of data records (`RecordKind`s) in the batch.
    pub record_count: u32,
}

/// Starts a batch in `out`: appends `BATCH_HEADER_BYTES` zero bytes that
/// `seal_batch` later fills in, so records are never moved.
pub fn reserve_batch_header(out: &mut Vec<u8>) {
    debug_assert!(out.len().is_multiple_of(RECORD_ALIGN));
    out.resize(out.len() + BATCH_HEADER_BYTES, 0);
}

/// The encoded batch header record.
pub fn encode_batch_header(header: &BatchHeader) -> [u8; BATCH_HEADER_BYTES] {
    let mut payload = [0u8; BATCH_HEADER_PAYLOAD_BYTES];
    payload[0..8].copy_from_slice(&header.batch_bytes.to_le_bytes());
    payload[8..12].copy_from_slice(&header.record_count.to_le_bytes());
    // 12..16 reserved, zero.
    let mut rec = Vec::with_capacity(BATCH_HEADER_BYTES);
    encode_raw(&mut rec, BATCH_HEADER_KIND, 0, &payload);
    let mut out = [0u8; BATCH_HEADER_BYTES];
    out.copy_from_slice(&rec);
    out
}

/// Ends the batch that starts at `batch_start` in `out` (where
/// `reserve_batch_header` reserved its header): appends padding so that
/// `out.len()` becomes a multiple of `alignment`, then writes the batch
/// header, with `record_count` data records, into the reserved bytes.
///
/// `out[0]` must go to a file offset that is a multiple of `alignment`, so
/// that the batch ends on an alignment boundary in the file.
///
/// # Panics
/// If `batch_start` is not 8-aligned or leaves no room for the header, or on
/// a bad alignment (see `encode_padding`): caller bugs, never input-dependent.
pub fn seal_batch(out: &mut Vec<u8>, batch_start: usize, record_count: u32, alignment: usize) {
    assert!(
        batch_start.is_multiple_of(RECORD_ALIGN) && batch_start + BATCH_HEADER_BYTES <= out.len(),
        "no batch header reserved at {batch_start} in {} bytes",
        out.len()
    );
    encode_padding(out, alignment);
    let header = BatchHeader {
        batch_bytes: (out.len() - batch_start) as u64,
        record_count,
    };
    out[batch_start..batch_start + BATCH_HEADER_BYTES]
        .copy_from_slice(&encode_batch_header(&header));
}

/// Decodes the batch header record at `off`. Does not check that the batch
/// fits in `buf` (`scan` does).
pub fn decode_batch_header(buf: &[u8], off: usize) -> Result<BatchHeader, BadRecord> {
    let rec = check_record(buf, off)?;
    if rec.kind != BATCH_HEADER_KIND {
        return Err(BadRecord::NotBatchHeader { kind: rec.kind });
    }
    let payload = &buf[rec.payload.clone()];
    if payload.len() != BATCH_HEADER_PAYLOAD_BYTES {
        return Err(BadRecord::BatchHeaderLength {
            len: payload.len() as u64,
        });
    }
    if read_u32(payload, 12) != 0 {
        return Err(BadRecord::BatchReserved);
    }
    let batch_bytes = read_u64(payload, 0);
    if batch_bytes < BATCH_HEADER_BYTES as u64 || !batch_bytes.is_multiple_of(RECORD_ALIGN as u64) {
        return Err(BadRecord::BatchLength { batch_bytes });
    }
    Ok(BatchHeader {
        batch_bytes,
        record_count: read_u32(payload, 8),
    })
}

// ---------------------------------------------------------------------------
// Segment header
// ---------------------------------------------------------------------------

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
/// first batch starts at `SEGMENT_HEADER_BYTES`.
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

// ---------------------------------------------------------------------------
// Scanning
// ---------------------------------------------------------------------------

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
    /// header, where a batch would start, with only zero bytes after it.
    Clean { end: usize },
    /// The batch starting at `offset` is damaged (first found at
    /// `damage_offset`, for `reason`), and no valid batch header follows it:
    /// the last batch's write was interrupted and never acknowledged. The log
    /// ends at `offset`; recovery cuts `offset..nonzero_end` (the last
    /// nonzero byte of the buffer is at `nonzero_end - 1`).
    TornTail {
        offset: usize,
        damage_offset: usize,
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

/// The batch starting at `offset` is damaged (first found at
/// `damage_offset`, for `reason`), and a valid batch header follows it at
/// `next_valid`. That later batch was only written after the damaged one had
/// been synced, so acknowledged data is damaged: it must not be dropped
/// silently, and the shard must not serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("damaged WAL batch at offset {offset} ({reason} at offset {damage_offset}), followed by a valid batch at offset {next_valid}")]
pub struct CorruptRecord {
    pub offset: usize,
    pub damage_offset: usize,
    pub reason: BadRecord,
    pub next_valid: usize,
}

/// The result of scanning a buffer of batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// Every data record of the valid batches before the end (or before the
    /// damaged batch), in order. Padding and batch headers are not included.
    pub records: Vec<ScannedRecord>,
    pub end: Result<ScanEnd, CorruptRecord>,
}

/// Walks the batches of `buf` from offset 0 (which must be where a batch
/// starts), collecting the data records of valid batches and classifying how
/// the log ends (see the module documentation). Never panics.
pub fn scan(buf: &[u8]) -> ScanResult {
    let mut records = Vec::new();
    let mut off = 0usize;
    let end = loop {
        if off >= buf.len() {
            break Ok(ScanEnd::Clean { end: buf.len() });
        }
        // Short-circuits at the first nonzero byte: cheap at a valid header.
        if buf[off..].iter().all(|&b| b == 0) {
            break Ok(ScanEnd::Clean { end: off });
        }
        match check_batch(buf, off, &mut records) {
            Ok(next) => off = next,
            Err(damage) => break classify_damage(buf, off, damage),
        }
    };
    ScanResult { records, end }
}

/// What is wrong with a batch.
struct Damage {
    /// Where the damage was found.
    at: usize,
    reason: BadRecord,
    /// Where the batch ends according to its (valid) header; `None` when the
    /// header itself is bad. May lie past the end of the buffer.
    declared_end: Option<usize>,
}

/// Torn tail or corruption, for the damaged batch at `batch_start`.
fn classify_damage(
    buf: &[u8],
    batch_start: usize,
    damage: Damage,
) -> Result<ScanEnd, CorruptRecord> {
    let from = damage
        .declared_end
        .unwrap_or(batch_start.saturating_add(RECORD_ALIGN));
    match find_batch_header(buf, from) {
        Some(next_valid) => Err(CorruptRecord {
            offset: batch_start,
            damage_offset: damage.at,
            reason: damage.reason,
            next_valid,
        }),
        None => Ok(ScanEnd::TornTail {
            offset: batch_start,
            damage_offset: damage.at,
            reason: damage.reason,
            nonzero_end: buf
                .iter()
                .rposition(|&b| b != 0)
                .map_or(batch_start, |i| (i + 1).max(batch_start)),
        }),
    }
}

/// Validates the batch at `start` and appends its data records to `records`
/// (nothing is appended if the batch is damaged). Returns where the next
/// batch starts.
fn check_batch(
    buf: &[u8],
    start: usize,
    records: &mut Vec<ScannedRecord>,
) -> Result<usize, Damage> {
    let header = decode_batch_header(buf, start).map_err(|reason| Damage {
        at: start,
        reason,
        declared_end: None,
    })?;
    let available = buf.len() - start;
    let declared_end = usize::try_from(header.batch_bytes)
        .ok()
        .and_then(|n| start.checked_add(n));
    let end = match declared_end {
        Some(end) if end <= buf.len() => end,
        _ => {
            return Err(Damage {
                at: start,
                reason: BadRecord::BatchPastEnd {
                    batch_bytes: header.batch_bytes,
                    available,
                },
                declared_end: Some(declared_end.unwrap_or(usize::MAX)),
            })
        }
    };
    let first = records.len();
    let damage = match check_batch_records(&buf[..end], start + BATCH_HEADER_BYTES, records) {
        Ok(found) if found == u64::from(header.record_count) => return Ok(end),
        Ok(found) => Damage {
            at: end,
            reason: BadRecord::RecordCount {
                declared: header.record_count,
                found,
            },
            declared_end: Some(end),
        },
        Err((at, reason)) => Damage {
            at,
            reason,
            declared_end: Some(end),
        },
    };
    records.truncate(first);
    Err(damage)
}

/// Walks the records of one batch body, from `off` to exactly the end of
/// `batch` (which ends where the batch does), appending data records.
/// Returns how many data records it found, or where and why a record is bad.
fn check_batch_records(
    batch: &[u8],
    mut off: usize,
    records: &mut Vec<ScannedRecord>,
) -> Result<u64, (usize, BadRecord)> {
    let mut found = 0u64;
    while off < batch.len() {
        let rec = check_record(batch, off).map_err(|bad| (off, bad))?;
        match rec.kind {
            PADDING_KIND => {}
            SEGMENT_HEADER_KIND => return Err((off, BadRecord::UnexpectedSegmentHeader)),
            BATCH_HEADER_KIND => return Err((off, BadRecord::UnexpectedBatchHeader)),
            k => {
                // check_record only accepts known kinds.
                let kind =
                    RecordKind::from_u8(k).ok_or((off, BadRecord::UnknownKind { kind: k }))?;
                records.push(ScannedRecord {
                    offset: off,
                    kind,
                    region: RegionId(rec.region),
                    payload: rec.payload,
                });
                found += 1;
            }
        }
        off = rec.next;
    }
    Ok(found)
}

/// The first offset at or after `from`, in steps of `RECORD_ALIGN`, where a
/// valid batch header starts (whether or not its batch fits in `buf`).
/// Decides torn tail versus corruption after a damaged batch: a later batch
/// is only ever written after the earlier one was synced.
pub fn find_batch_header(buf: &[u8], from: usize) -> Option<usize> {
    let from = from.checked_next_multiple_of(RECORD_ALIGN)?;
    (from..buf.len()).step_by(RECORD_ALIGN).find(|&o| {
        // Cheap pre-check on the kind byte before the full check (this runs
        // at every offset of what may be a large, mostly zero area).
        buf.get(o + 8) == Some(&BATCH_HEADER_KIND) && decode_batch_header(buf, o).is_ok()
    })
}

/// `find_batch_header` after a damaged batch that starts at `batch_start`:
/// from its declared end if its header is valid, else from just after
/// `batch_start`. `Some` means the damaged batch was acknowledged.
pub fn find_batch_header_after(buf: &[u8], batch_start: usize) -> Option<usize> {
    let from = decode_batch_header(buf, batch_start)
        .ok()
        .and_then(|h| usize::try_from(h.batch_bytes).ok())
        .map_or(batch_start.saturating_add(RECORD_ALIGN), |n| {
            batch_start.saturating_add(n)
        });
    find_batch_header(buf, from)
}

/// A record that passed every check, with a kind byte that is a known data
/// kind, padding, a batch header or a segment header.
struct CheckedRecord {
    kind: u8,
    region: u64,
    payload: Range<usize>,
    /// Offset of the next record.
    next: usize,
}

/// Validates the record at `off`. Cheap checks first (this also runs at
/// every offset when looking for a valid batch header after a damaged batch).
fn check_record(buf: &[u8], off: usize) -> Result<CheckedRecord, BadRecord> {
    let available = buf.len().saturating_sub(off);
    if available < RECORD_HEADER_BYTES {
        return Err(BadRecord::TruncatedHeader { available });
    }
    let h = &buf[off..off + RECORD_HEADER_BYTES];
    let kind = h[8];
    if !is_known_kind(kind) {
        if h.iter().all(|&b| b == 0) {
            return Err(BadRecord::ZeroHeader);
        }
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

/// Decodes the one data record at the start of `buf` (read back from a
/// known location, e.g. to fetch old Raft entries): its kind, region and
/// where its payload lies in `buf`. Every check of `scan` applies; a
/// padding, batch or segment header record is `UnexpectedBatchHeader`,
/// `UnexpectedSegmentHeader` or `UnknownKind`.
pub fn decode_data_record(buf: &[u8]) -> Result<ScannedRecord, BadRecord> {
    let rec = check_record(buf, 0)?;
    let kind = match rec.kind {
        SEGMENT_HEADER_KIND => return Err(BadRecord::UnexpectedSegmentHeader),
        BATCH_HEADER_KIND => return Err(BadRecord::UnexpectedBatchHeader),
        k => RecordKind::from_u8(k).ok_or(BadRecord::UnknownKind { kind: k })?,
    };
    Ok(ScannedRecord {
        offset: 0,
        kind,
        region: RegionId(rec.region),
        payload: rec.payload,
    })
}

/// A data kind, padding, a batch header or a segment header.
fn is_known_kind(kind: u8) -> bool {
    matches!(kind, PADDING_KIND | SEGMENT_HEADER_KIND | BATCH_HEADER_KIND)
        || RecordKind::from_u8(kind).is_some()
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
mod tests;
