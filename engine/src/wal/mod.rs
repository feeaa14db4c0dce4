//! The per-shard write-ahead log (the Raft log): glommio `O_DIRECT` I/O
//! around the pure record codec in `golem_core::wal_record`.
//!
//! Owns one directory of segment files (`{seq:020}.wal`), written by exactly
//! one `Wal` (one per shard; an exclusive `flock` on `LOCK` in the directory
//! enforces it, also against a second process). The byte format is in
//! docs/storage.md.
//!
//! Write path: the first `append` after a sync reserves a batch header in a
//! memory buffer, and every `append` encodes its record behind it; `sync`
//! (group commit) pads the batch with one padding record to the write
//! alignment, seals the batch header (its length and record count) in place,
//! writes the batch with one `O_DIRECT` write at the end of the active
//! segment, and calls `fdatasync` once. When the batch does not fit in the
//! active segment it goes, whole, into a new segment behind the segment
//! header (create, preallocate, fsync the directory, then the same one write
//! and one fdatasync).
//!
//! Invariants:
//! - Every batch starts on a write-alignment boundary and ends on one, so a
//!   block (of the write alignment, ≥ the device's logical block size and by
//!   default 4 KiB, the physical sector size of common disks) holds records
//!   of one batch only, and no block that holds synced records is ever
//!   written again. The log is append-only; a torn write can only damage the
//!   batch being written, which was not acknowledged yet, in any of its
//!   blocks and in any order.
//! - One batch per sync, and a batch is only written after the previous one
//!   is durable. So a valid batch header after a damaged batch proves the
//!   damaged batch was acknowledged (corruption), and its absence proves the
//!   damaged batch is the interrupted last write (a torn tail, cut whole).
//! - `sync` returns only after the data is durable. Any write, short write,
//!   fdatasync, create, preallocate or directory-fsync error is fatal
//!   (`crate::fatal::fail_stop`): never retried, never reported as success.
//! - Every segment starts with a header record naming its sequence number and
//!   where the previous segment's log ends. Recovery reads a non-last segment
//!   only up to that point, and it must be intact up to exactly there. A
//!   torn tail can thus only be in the last segment; after cutting one,
//!   writing continues in a new segment, so the cut bytes are never followed
//!   by new records in the same file (which would make them look like
//!   corruption on the next recovery).
//! - Recovery never drops a record that might have been acknowledged without
//!   saying so: a damaged batch followed by a valid batch header, a gap in the
//!   segment numbers, a bad header on any segment but a trailing one whose
//!   first write never completed (no valid batch header after its first
//!   batch), are typed `WalError`s. Recovery never returns a record of a
//!   damaged batch.
//! - Only a prefix of the log is ever deleted (`delete_segments_before`),
//!   oldest segment first, and only after a durable `WalStart` record names
//!   the first segment kept. Recovery accepts a missing prefix only up to
//!   the latest `WalStart` it reads: a log whose first segment is past it
//!   (or past 1 with no `WalStart`) is a `MissingSegment` error. The caller
//!   (the shard) decides what may go: segments whose entries are all
//!   durably applied in the store, after checkpoint records that make the
//!   deleted ones unnecessary (golem_core::wal_retention).
//!
//! `Wal` is used from a single glommio task on its shard's thread (it is not
//! `Send`); every glommio I/O call panics outside a glommio executor.
//! `Wal::open` uses `std::fs` for listing, locking and creating the directory:
//! it runs once at start, never on the hot path.

#[cfg(test)]
mod crash_tests;
mod segment;
#[cfg(test)]
mod tests;

use crate::fatal::fail_stop;
use glommio::io::{Directory, DmaFile};
use golem_core::wal_record::{
    decode_segment_header, encode_record, encode_segment_header, find_batch_header_after,
    padded_len, reserve_batch_header, scan, seal_batch, BadRecord, CorruptRecord, EncodeError,
    RecordKind, ScanEnd, SegmentHeader, WalSink, BATCH_RECORDS_MAX, RECORD_ALIGN,
    SEGMENT_HEADER_BYTES,
};
use golem_wire::RegionId;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub use segment::{segment_file_name, segment_path};

/// Name of the lock file in a WAL directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Capacity kept in the append buffer between syncs; more is released.
const PENDING_CAPACITY_KEEP_BYTES: usize = 16 * 1024 * 1024;

/// How a WAL is laid out on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Size a new segment file is preallocated to. A batch larger than this
    /// gets a segment of its own, sized to fit. Default 64 MiB.
    pub segment_bytes: u64,
    /// Smallest unit of one write, and what every batch is padded to. The
    /// effective alignment is the larger of this and the device's logical
    /// block size (`DmaFile::alignment`). Default 4096: on disks that report
    /// 512-byte logical but 4 KiB physical sectors, a 512-aligned write would
    /// make the device read-modify-write a physical sector that holds synced
    /// records. A power of two in 512 ..= 1 MiB.
    pub write_alignment_bytes: u64,
    /// Open segments with `O_DSYNC`: each write is durable when it completes
    /// (the kernel issues it with FUA, or follows it with a cache flush), so
    /// `sync` needs no separate fdatasync — one io_uring round trip instead
    /// of two. The durability guarantee is the same. Default false: measured
    /// 5× slower for a single writer on this project's virtio disks
    /// (perf/results/ab-20261124T184246Z); devices with cheap FUA may differ.
    pub dsync_writes: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 * 1024 * 1024,
            write_alignment_bytes: 4096,
            dsync_writes: false,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<(), WalError> {
        let a = self.write_alignment_bytes;
        if !a.is_power_of_two() || !(512..=1024 * 1024).contains(&a) {
            return Err(WalError::InvalidOptions(format!(
                "write_alignment_bytes {a} must be a power of two in 512..=1048576"
            )));
        }
        if self.segment_bytes < 4 * a || self.segment_bytes > 1 << 40 {
            return Err(WalError::InvalidOptions(format!(
                "segment_bytes {} must be in {}..=2^40 (at least 4 write alignments)",
                self.segment_bytes,
                4 * a
            )));
        }
        Ok(())
    }
}

/// One record read back by `Wal::open`, in write order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredRecord {
    pub kind: RecordKind,
    pub region: RegionId,
    pub payload: Vec<u8>,
    /// Sequence number of the segment holding it.
    pub segment: u64,
    /// Byte offset of the record's header in that segment.
    pub offset: u64,
}

/// What is wrong with a segment that makes its log untrustworthy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// A damaged batch followed by a valid batch header (offsets in the file).
    #[error("{0}")]
    Record(CorruptRecord),
    /// The segment's header record is bad (and the segment is not a trailing
    /// one whose first write never completed).
    #[error("bad segment header: {0}")]
    SegmentHeader(BadRecord),
    /// The header names another sequence number than the file name.
    #[error("segment header says sequence number {header_seq}")]
    SegmentSeq { header_seq: u64 },
    /// The next segment's header says this segment's log ends at `expected`,
    /// but its valid records end at `valid_end` (why, if a bad record).
    #[error("valid log ends at {valid_end}, but the next segment says it ends at {expected}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    LogEnd {
        valid_end: u64,
        expected: u64,
        reason: Option<BadRecord>,
    },
    /// The record at a location the index gave is not the one expected.
    #[error("record read back by location: {0}")]
    Located(BadRecord),
    /// A `WalStart` record whose payload is not one u64.
    #[error("WalStart record of {payload_bytes} bytes (expected 8)")]
    WalStart { payload_bytes: usize },
    /// The next segment's header names an end this segment cannot have.
    #[error("the next segment says this log ends at {prev_log_end}, impossible for a file of {file_bytes} bytes")]
    PrevLogEnd { prev_log_end: u64, file_bytes: u64 },
}

/// Why a WAL could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
    #[error("WAL directory {} is in use by another owner (lock file held)", dir.display())]
    Locked { dir: PathBuf },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("WAL file {} is named like a segment but is not one: {why}", path.display())]
    BadSegmentName { path: PathBuf, why: &'static str },
    #[error("WAL directory {}: segment {} is missing (found {found} after {after})", dir.display(), after + 1)]
    MissingSegment {
        dir: PathBuf,
        after: u64,
        found: u64,
    },
    #[error("corrupt WAL segment {} at offset {offset}: {what}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: Corruption,
    },
}

impl WalError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    fn corrupt(path: &Path, offset: u64, what: Corruption) -> WalError {
        WalError::Corrupt {
            path: path.to_path_buf(),
            offset,
            what,
        }
    }
}

/// The segment being appended to.
struct Active {
    file: DmaFile,
    path: PathBuf,
    seq: u64,
    /// Where the next batch goes; always a multiple of `align`.
    pos: u64,
    /// The file's size: a batch must end at or before it.
    capacity: u64,
    /// Effective write alignment for this file.
    align: u64,
}

/// The segment the next sync creates when there is no active one.
#[derive(Clone, Copy, Debug)]
struct NextSegment {
    seq: u64,
    prev_log_end: u64,
    /// The file exists but its creation never completed: recreate it.
    recreate: bool,
}

/// A shard's write-ahead log. See the module documentation.
pub struct Wal {
    dir: PathBuf,
    dir_handle: Directory,
    opts: WalOptions,
    active: Option<Active>,
    /// Used when `active` is `None`.
    next: NextSegment,
    /// The batch being built since the last sync: a reserved batch header,
    /// then the encoded records. Empty (or only the reservation) when
    /// `pending_records` is 0.
    pending: Vec<u8>,
    /// Data records in `pending`.
    pending_records: u32,
    /// The oldest segment on disk (or the next one, when there is none).
    first_seq: u64,
    /// Where the last sync put byte 0 of its batch: (segment, offset).
    last_batch: Option<(u64, u64)>,
    /// Holds the directory's exclusive flock while open.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("active_seq", &self.active.as_ref().map(|a| a.seq))
            .field("active_pos", &self.active.as_ref().map(|a| a.pos))
            .field("pending_bytes", &self.pending.len())
            .field("pending_records", &self.pending_records)
            .finish()
    }
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, replays every segment in
    /// order, cuts a torn tail (logging what was cut), and returns the records
    /// in write order. A corrupt record before the tail is an Err (typed
    /// WalError), never silently skipped.
    pub async fn open(
        dir: &Path,
        opts: WalOptions,
    ) -> Result<(Wal, Vec<RecoveredRecord>), WalError> {
        opts.validate()?;
        ensure_dir(dir).await?;
        let lock = lock_dir(dir)?;
        let dir_handle = Directory::open(dir)
            .await
            .map_err(|e| WalError::io("opening directory", dir, e.into()))?;
        let segs = segment::list_segments(dir)?;
        let (mut records, tail) = recover(&segs).await?;
        let wal_start = take_wal_starts(&mut records, dir)?;
        let first_seq = segs.first().map_or(1, |(seq, _)| *seq);
        if first_seq > wal_start.unwrap_or(1) {
            tracing::error!(dir = %dir.display(), first_seq, wal_start, "the WAL's first segments are missing");
            return Err(WalError::MissingSegment {
                dir: dir.to_path_buf(),
                after: wal_start.unwrap_or(1).saturating_sub(1),
                found: first_seq,
            });
        }

        let mut active = None;
        let next = match tail {
            Tail::Empty => NextSegment {
                seq: 1,
                prev_log_end: 0,
                recreate: false,
            },
            Tail::Dead { seq, prev_log_end } => NextSegment {
                seq,
                prev_log_end,
                recreate: true,
            },
            Tail::Torn { seq, log_end } => NextSegment {
                seq: seq + 1,
                prev_log_end: log_end,
                recreate: false,
            },
            Tail::Clean { seq, log_end } => {
                let path = segment_path(dir, seq);
                let file = segment::open_write(&path, &opts).await?;
                let capacity = segment::file_len(&file, &path).await?;
                let align = effective_alignment(&file, &opts);
                if log_end.is_multiple_of(align) {
                    active = Some(Active {
                        file,
                        path,
                        seq,
                        pos: log_end,
                        capacity,
                        align,
                    });
                } else {
                    // Written with a smaller alignment than we now use:
                    // never share a block with synced records.
                    segment::close_quietly(file, &path).await;
                }
                NextSegment {
                    seq: seq + 1,
                    prev_log_end: log_end,
                    recreate: false,
                }
            }
        };
        tracing::info!(
            dir = %dir.display(),
            segments = segs.len(),
            records = records.len(),
            "WAL recovered"
        );
        let wal = Wal {
            dir: dir.to_path_buf(),
            dir_handle,
            opts,
            active,
            next,
            pending: Vec::new(),
            pending_records: 0,
            first_seq: if segs.is_empty() { next.seq } else { first_seq },
            last_batch: None,
            _lock: lock,
        };
        Ok((wal, records))
    }

    /// Buffers a record for the next sync (implements
    /// `golem_core::wal_record::WalSink` too).
    ///
    /// # Panics
    /// If `payload` is longer than `RECORD_PAYLOAD_BYTES_MAX` (64 MiB): a
    /// caller bug (split long runs of entries into several records). Use
    /// `try_append` to get an error instead.
    ///
    /// Returns the record's offset in the pending batch: after the next
    /// `sync`, it lies at `last_batch()`'s offset plus this.
    pub fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]) -> u64 {
        match self.try_append(kind, region, payload) {
            Ok(at) => at,
            Err(e) => panic!("WAL append for region {region}: {e}"),
        }
    }

    /// `append`, with an error for an oversized payload or a batch that
    /// already holds `BATCH_RECORDS_MAX` records (nothing is buffered then).
    pub fn try_append(
        &mut self,
        kind: RecordKind,
        region: RegionId,
        payload: &[u8],
    ) -> Result<u64, EncodeError> {
        if self.pending_records == BATCH_RECORDS_MAX {
            return Err(EncodeError::BatchFull {
                max: BATCH_RECORDS_MAX,
            });
        }
        if self.pending_records == 0 {
            self.pending.clear();
            reserve_batch_header(&mut self.pending);
        }
        let at = self.pending.len() as u64;
        encode_record(&mut self.pending, kind, region, payload)?;
        self.pending_records += 1;
        Ok(at)
    }

    /// Whether anything is buffered.
    pub fn has_pending(&self) -> bool {
        self.pending_records > 0
    }

    /// Bytes buffered for the next sync (encoded, with the batch header,
    /// before padding); 0 when nothing is buffered.
    pub fn pending_bytes(&self) -> usize {
        if self.has_pending() {
            self.pending.len()
        } else {
            0
        }
    }

    /// The WAL's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Group commit: writes everything buffered since the last sync with one
    /// (or, across a segment boundary, a few) O_DIRECT writes and ONE
    /// fdatasync, and returns once it is durable. Does nothing if nothing is
    /// buffered. On any write or fdatasync error it calls
    /// `crate::fatal::fail_stop` (never retries).
    pub async fn sync(&mut self) {
        if !self.has_pending() {
            return;
        }
        let fits = self.active.as_ref().is_some_and(|a| {
            a.pos + padded_len(self.pending.len(), a.align as usize) as u64 <= a.capacity
        });
        match self.active.as_mut() {
            Some(a) if fits => {
                seal_batch(&mut self.pending, 0, self.pending_records, a.align as usize);
                write_durably(
                    &a.file,
                    &a.path,
                    a.pos,
                    &self.pending,
                    !self.opts.dsync_writes,
                )
                .await;
                self.last_batch = Some((a.seq, a.pos));
                a.pos += self.pending.len() as u64;
            }
            _ => {
                self.sync_into_new_segment().await;
                let seq = self.active.as_ref().expect("a new segment").seq;
                self.last_batch = Some((seq, SEGMENT_HEADER_BYTES as u64));
            }
        }
        self.pending.clear();
        self.pending_records = 0;
        if self.pending.capacity() > PENDING_CAPACITY_KEEP_BYTES {
            self.pending.shrink_to(PENDING_CAPACITY_KEEP_BYTES / 16);
        }
    }

    /// Starts the next segment with everything pending as its first batch.
    async fn sync_into_new_segment(&mut self) {
        let next = match self.active.take() {
            Some(old) => {
                segment::close_quietly(old.file, &old.path).await;
                NextSegment {
                    seq: old.seq + 1,
                    prev_log_end: old.pos,
                    recreate: false,
                }
            }
            None => self.next,
        };
        let mut batch = Vec::with_capacity(SEGMENT_HEADER_BYTES + self.pending.len());
        encode_segment_header(
            &mut batch,
            &SegmentHeader {
                seq: next.seq,
                prev_log_end: next.prev_log_end,
            },
        );
        batch.extend_from_slice(&self.pending);
        let (file, align, capacity) = segment::create(
            &self.dir_handle,
            &self.dir,
            next.seq,
            batch.len() as u64,
            &self.opts,
            next.recreate,
        )
        .await;
        seal_batch(
            &mut batch,
            SEGMENT_HEADER_BYTES,
            self.pending_records,
            align as usize,
        );
        let path = segment_path(&self.dir, next.seq);
        write_durably(&file, &path, 0, &batch, !self.opts.dsync_writes).await;
        self.active = Some(Active {
            file,
            path,
            seq: next.seq,
            pos: batch.len() as u64,
            capacity,
            align,
        });
    }

    /// The segment the last `sync` wrote into (where every record synced
    /// by it lies), or the one the next sync will create.
    pub fn active_segment(&self) -> u64 {
        self.active.as_ref().map_or(self.next.seq, |a| a.seq)
    }

    /// Where the last `sync` wrote byte 0 of its batch: (segment, offset).
    /// A record appended at pending offset `o` before that sync lies at
    /// this offset plus `o`. None before the first sync.
    pub fn last_batch(&self) -> Option<(u64, u64)> {
        self.last_batch
    }

    /// The oldest segment still on disk (the active one when all older
    /// ones are deleted).
    pub fn first_segment(&self) -> u64 {
        self.first_seq
    }

    /// Deletes the segments numbered below `seq` (at most the active
    /// segment). First makes a `WalStart` record naming `seq` durable,
    /// together with everything appended before (the caller's checkpoint
    /// records), then unlinks the files oldest first on a helper thread
    /// (unlinking a large file can take milliseconds; a crash part way
    /// leaves a shorter prefix missing, which recovery accepts). No-op when
    /// nothing is below `seq`.
    pub async fn delete_segments_before(&mut self, seq: u64) {
        let seq = seq.min(self.active_segment());
        if seq <= self.first_seq {
            self.sync().await;
            return;
        }
        self.append(RecordKind::WalStart, RegionId(0), &seq.to_le_bytes());
        self.sync().await;
        // The sync may have started a new segment; `seq` is still below it.
        let doomed: Vec<PathBuf> = (self.first_seq..seq)
            .map(|s| segment_path(&self.dir, s))
            .collect();
        tracing::info!(dir = %self.dir.display(), from = self.first_seq, to = seq - 1, "deleting WAL segments whose entries are durable in the store");
        self.first_seq = seq;
        let spawned = std::thread::Builder::new()
            .name("golem-wal-unlink".into())
            .spawn(move || {
                for path in doomed {
                    if let Err(e) = std::fs::remove_file(&path) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(segment = %path.display(), error = %e, "could not delete a WAL segment; it is ignored and deleted again later");
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the WAL unlink thread; segments stay until the next deletion");
        }
    }

    /// Closes the WAL. Anything appended but not synced is dropped (it was
    /// never acknowledged). Also happens on drop, less gracefully.
    pub async fn close(mut self) {
        if let Some(a) = self.active.take() {
            segment::close_quietly(a.file, &a.path).await;
        }
    }
}

impl WalSink for Wal {
    fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]) {
        Wal::append(self, kind, region, payload);
    }
}

/// Reads back the data record at `offset` of segment `seq` in the WAL
/// directory `dir`, whose payload is `payload_bytes` long (as located by
/// `golem_core::wal_index`), and checks it: its checksum, and that it is a
/// data record of that size. Runs beside the writer (a separate read-only
/// file handle); the segment may have been deleted meanwhile (an `Io`
/// error).
pub async fn read_record(
    dir: &Path,
    seq: u64,
    offset: u64,
    payload_bytes: u32,
) -> Result<(RecordKind, RegionId, Vec<u8>), WalError> {
    let path = segment_path(dir, seq);
    let len = golem_core::wal_record::record_bytes(payload_bytes as usize);
    let file = segment::open_read(&path).await?;
    let read = file.read_at(offset, len).await;
    segment::close_quietly(file, &path).await;
    let buf = read.map_err(|e| WalError::io("reading a record", &path, e.into()))?;
    let rec = golem_core::wal_record::decode_data_record(&buf)
        .map_err(|bad| WalError::corrupt(&path, offset, Corruption::Located(bad)))?;
    if rec.payload.len() != payload_bytes as usize {
        return Err(WalError::corrupt(
            &path,
            offset,
            Corruption::Located(BadRecord::PastEnd {
                len: rec.payload.len() as u64,
                available: payload_bytes as usize,
            }),
        ));
    }
    Ok((rec.kind, rec.region, buf[rec.payload].to_vec()))
}

/// Removes the WAL's own `WalStart` records from `records` and returns the
/// highest segment number they name (None: no segment was ever deleted).
fn take_wal_starts(
    records: &mut Vec<RecoveredRecord>,
    dir: &Path,
) -> Result<Option<u64>, WalError> {
    let mut start = None;
    for r in records.iter().filter(|r| r.kind == RecordKind::WalStart) {
        let seq = <[u8; 8]>::try_from(r.payload.as_slice())
            .map(u64::from_le_bytes)
            .map_err(|_| {
                WalError::corrupt(
                    &segment_path(dir, r.segment),
                    0,
                    Corruption::WalStart {
                        payload_bytes: r.payload.len(),
                    },
                )
            })?;
        start = start.max(Some(seq));
    }
    records.retain(|r| r.kind != RecordKind::WalStart);
    Ok(start)
}

/// The write alignment used for `file`.
fn effective_alignment(file: &DmaFile, opts: &WalOptions) -> u64 {
    file.alignment().max(opts.write_alignment_bytes)
}

/// Writes `bytes` at `pos` with one O_DIRECT write, then fdatasyncs unless
/// the file was opened `O_DSYNC` (`fdatasync == false`), in which case the
/// completed write is already durable. `pos` and `bytes.len()` are multiples
/// of the file's alignment. Fail-stop on error.
async fn write_durably(file: &DmaFile, path: &Path, pos: u64, bytes: &[u8], fdatasync: bool) {
    let mut buf = file.alloc_dma_buffer(bytes.len());
    buf.as_bytes_mut().copy_from_slice(bytes);
    match file.write_at(buf, pos).await {
        Ok(n) if n == bytes.len() => {}
        Ok(n) => fail_stop(
            "writing the WAL",
            &format!(
                "short write to {} at {pos}: {n} of {} bytes",
                path.display(),
                bytes.len()
            ),
        ),
        Err(e) => fail_stop("writing the WAL", &e),
    }
    if fdatasync {
        if let Err(e) = file.fdatasync().await {
            fail_stop("fdatasync of the WAL", &e);
        }
    }
}

/// Creates `dir` if missing, making its directory entry durable.
async fn ensure_dir(dir: &Path) -> Result<(), WalError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| WalError::io("creating directory", dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        let d = Directory::open(parent)
            .await
            .map_err(|e| WalError::io("opening directory", parent, e.into()))?;
        d.sync()
            .await
            .map_err(|e| WalError::io("fsyncing directory", parent, e.into()))?;
        if let Err(e) = d.close().await {
            tracing::warn!(dir = %parent.display(), error = %e, "closing directory");
        }
    }
    Ok(())
}

/// Takes an exclusive, non-blocking flock on `dir/LOCK`, held as long as the
/// returned file is open. flock locks belong to the open file description, so
/// a second `Wal` on the same directory fails even within one process.
fn lock_dir(dir: &Path) -> Result<std::fs::File, WalError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| WalError::io("opening lock file", &path, e))?;
    // SAFETY: flock only reads its two integer arguments; the descriptor is
    // owned by `file`, which is alive for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(if err.kind() == std::io::ErrorKind::WouldBlock {
            WalError::Locked {
                dir: dir.to_path_buf(),
            }
        } else {
            WalError::io("locking", &path, err)
        });
    }
    Ok(file)
}

/// Where the log ends after recovery, and so where writing continues.
#[derive(Debug)]
enum Tail {
    /// No segments.
    Empty,
    /// The last segment ends cleanly at `log_end`.
    Clean { seq: u64, log_end: u64 },
    /// The last segment's torn tail was cut at `log_end`.
    Torn { seq: u64, log_end: u64 },
    /// Segment `seq` (the last) has a bad header and no valid batch header
    /// after its first batch: its creation or its first write did not
    /// complete, so nothing in it was acknowledged. The log before it ends at
    /// `prev_log_end` (in segment `seq - 1`, or 0).
    Dead { seq: u64, prev_log_end: u64 },
}

/// Header of one segment, read in a first pass.
struct Head {
    seq: u64,
    path: PathBuf,
    len: u64,
    header: Result<SegmentHeader, BadRecord>,
}

/// Replays `segs` (sorted, contiguous): the records in order, and the tail.
async fn recover(segs: &[(u64, PathBuf)]) -> Result<(Vec<RecoveredRecord>, Tail), WalError> {
    let mut heads = read_heads(segs).await?;

    // A trailing segment whose creation or first write did not complete
    // holds nothing that was ever acknowledged. It is recreated by the next
    // sync.
    let mut dead = None;
    if let Some(last) = heads.last() {
        if let Err(bad) = &last.header {
            check_unfinished(last, bad).await?;
            tracing::warn!(segment = %last.path.display(), reason = %bad, "WAL segment's first write never completed (bad header, no later batch); it will be recreated");
            dead = Some(last.seq);
            heads.pop();
        }
    }

    let mut records = Vec::new();
    let mut tail = Tail::Empty;
    for (i, h) in heads.iter().enumerate() {
        let next_says = next_says_log_end(h, heads.get(i + 1))?;
        tail = replay_segment(h, next_says, &mut records).await?;
    }

    if let Some(seq) = dead {
        let prev_log_end = match tail {
            Tail::Clean { log_end, .. } | Tail::Torn { log_end, .. } => log_end,
            Tail::Empty | Tail::Dead { .. } => 0,
        };
        tail = Tail::Dead { seq, prev_log_end };
    }
    Ok((records, tail))
}

/// Pass 1: every segment's header (one aligned read each).
async fn read_heads(segs: &[(u64, PathBuf)]) -> Result<Vec<Head>, WalError> {
    let mut heads = Vec::with_capacity(segs.len());
    for (seq, path) in segs {
        let file = segment::open_read(path).await?;
        let len = segment::file_len(&file, path).await?;
        let first = segment::read_prefix(&file, path, SEGMENT_HEADER_BYTES as u64).await?;
        segment::close_quietly(file, path).await;
        heads.push(Head {
            seq: *seq,
            path: path.clone(),
            len,
            header: decode_segment_header(&first),
        });
    }
    Ok(heads)
}

/// Checks that the trailing segment `last`, whose header is `bad`, is one
/// whose first write never completed: the segment header and the first
/// batch were written together, so a bad header is a torn first write
/// unless a later batch (written only after the first was synced) exists.
/// A well-formed header of another format version is never torn.
async fn check_unfinished(last: &Head, bad: &BadRecord) -> Result<(), WalError> {
    let corrupt = || WalError::corrupt(&last.path, 0, Corruption::SegmentHeader(bad.clone()));
    if matches!(bad, BadRecord::UnsupportedVersion { .. }) {
        tracing::error!(segment = %last.path.display(), reason = %bad, "WAL segment of another format version");
        return Err(corrupt());
    }
    let file = segment::open_read(&last.path).await?;
    let buf = segment::read_prefix(&file, &last.path, last.len).await?;
    segment::close_quietly(file, &last.path).await;
    if let Some(at) = find_batch_header_after(&buf, SEGMENT_HEADER_BYTES) {
        tracing::error!(segment = %last.path.display(), later_batch = at, reason = %bad, "WAL segment header is bad but a later batch exists");
        return Err(corrupt());
    }
    Ok(())
}

/// Where the segment after `h` says `h`'s log ends (`None` if `h` is the
/// last segment, or the next one's header is bad: reported in its turn).
fn next_says_log_end(h: &Head, next: Option<&Head>) -> Result<Option<u64>, WalError> {
    let Some(Ok(next)) = next.map(|n| &n.header) else {
        return Ok(None);
    };
    let p = next.prev_log_end;
    if p < SEGMENT_HEADER_BYTES as u64 || p > h.len || !p.is_multiple_of(RECORD_ALIGN as u64) {
        return Err(WalError::corrupt(
            &h.path,
            p,
            Corruption::PrevLogEnd {
                prev_log_end: p,
                file_bytes: h.len,
            },
        ));
    }
    Ok(Some(p))
}

/// Pass 2, one segment: reads it up to `next_says` (or whole, if last),
/// appends the records of its valid batches to `records`, and says how its
/// log ends. A non-last segment must be valid up to exactly `next_says`.
async fn replay_segment(
    h: &Head,
    next_says: Option<u64>,
    records: &mut Vec<RecoveredRecord>,
) -> Result<Tail, WalError> {
    let header = match &h.header {
        Ok(header) => *header,
        Err(bad) => {
            return Err(WalError::corrupt(
                &h.path,
                0,
                Corruption::SegmentHeader(bad.clone()),
            ))
        }
    };
    if header.seq != h.seq {
        return Err(WalError::corrupt(
            &h.path,
            0,
            Corruption::SegmentSeq {
                header_seq: header.seq,
            },
        ));
    }
    let file = segment::open_read(&h.path).await?;
    // The last segment is read up to where its data ends (not its whole
    // preallocated size): a restart reads what was written, not 64 MiB.
    let read_len = next_says.unwrap_or_else(|| segment::data_end(&h.path, h.len));
    let buf = segment::read_prefix(&file, &h.path, read_len).await?;
    segment::close_quietly(file, &h.path).await;
    let Some(body) = buf.get(SEGMENT_HEADER_BYTES..) else {
        // The header decoded from this file, so it is at least this long.
        return Err(WalError::io(
            "reading",
            &h.path,
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "segment shrank"),
        ));
    };
    let res = scan(body);
    records.extend(res.records.iter().map(|r| RecoveredRecord {
        kind: r.kind,
        region: r.region,
        payload: body[r.payload.clone()].to_vec(),
        segment: h.seq,
        offset: (SEGMENT_HEADER_BYTES + r.offset) as u64,
    }));
    let end = res.end.map_err(|c| corrupt_batch(&h.path, c))?;
    let log_end = (SEGMENT_HEADER_BYTES + end.log_end()) as u64;
    match (next_says, end) {
        (Some(expected), ScanEnd::Clean { .. }) if log_end == expected => Ok(Tail::Clean {
            seq: h.seq,
            log_end,
        }),
        (Some(expected), end) => {
            let reason = match end {
                ScanEnd::TornTail { reason, .. } => Some(reason),
                ScanEnd::Clean { .. } => None,
            };
            Err(WalError::corrupt(
                &h.path,
                log_end,
                Corruption::LogEnd {
                    valid_end: log_end,
                    expected,
                    reason,
                },
            ))
        }
        (None, ScanEnd::Clean { .. }) => Ok(Tail::Clean {
            seq: h.seq,
            log_end,
        }),
        (
            None,
            ScanEnd::TornTail {
                offset,
                damage_offset,
                reason,
                nonzero_end,
            },
        ) => {
            tracing::warn!(
                segment = %h.path.display(),
                offset = log_end,
                damage_offset = SEGMENT_HEADER_BYTES + damage_offset,
                cut_bytes = nonzero_end.saturating_sub(offset),
                reason = %reason,
                "cut torn WAL tail (the last batch's write was interrupted; it was never acknowledged)"
            );
            Ok(Tail::Torn {
                seq: h.seq,
                log_end,
            })
        }
    }
}

/// The typed error for a damaged batch followed by a valid one, with the
/// scanner's offsets (relative to the first batch) made file offsets.
fn corrupt_batch(path: &Path, c: CorruptRecord) -> WalError {
    let c = CorruptRecord {
        offset: SEGMENT_HEADER_BYTES + c.offset,
        damage_offset: SEGMENT_HEADER_BYTES + c.damage_offset,
        reason: c.reason,
        next_valid: SEGMENT_HEADER_BYTES + c.next_valid,
    };
    tracing::error!(segment = %path.display(), offset = c.offset, damage_offset = c.damage_offset, next_valid = c.next_valid, reason = %c.reason, "damaged WAL batch before a later batch: acknowledged data is damaged");
    WalError::corrupt(path, c.offset as u64, Corruption::Record(c))
}
