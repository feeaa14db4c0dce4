//! WAL segment files: naming, listing, whole-file reads, creation.
//!
//! Owns the mapping between a segment's sequence number and its file
//! (`{seq:020}.wal` in the WAL directory) and the few file operations the
//! WAL needs beyond a write and an fdatasync.
//!
//! Invariants:
//! - Segment sequence numbers are contiguous (and start at 1 while the WAL
//!   is never truncated); a gap is an error (a segment went missing), never
//!   skipped.
//! - A segment file is only created with `O_CREAT | O_EXCL`, except when a
//!   trailing segment whose creation or first write never completed (a bad
//!   header and no valid batch header after its first batch) is recreated in
//!   place.
//! - A file is created, preallocated (so that its tail reads as zeros) and
//!   its directory entry fsynced before a byte of log is written to it.
//! - Reads are large, aligned `O_DIRECT` reads; listing uses `std::fs`,
//!   which is fine because it only runs in `Wal::open`, never on the hot path.

use super::{WalError, WalOptions};
use crate::fatal::fail_stop;
use glommio::io::{Directory, DmaFile, OpenOptions};
use golem_core::wal_record::padded_len;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Size of one recovery read. Large and aligned: recovery streams the log.
pub(super) const READ_CHUNK_BYTES: u64 = 1024 * 1024;

/// File name of segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// Path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// Parses a segment file name; `None` for any other file.
pub(super) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, sorted by sequence number and checked contiguous.
/// Files that are not segments are ignored (with a warning if they look
/// like a misnamed one).
pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let rd = std::fs::read_dir(dir).map_err(|e| WalError::io("listing", dir, e))?;
    let mut segs = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| WalError::io("listing", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_segment_file_name(name) {
            Some(0) => {
                return Err(WalError::BadSegmentName {
                    path: ent.path(),
                    why: "sequence number 0 is never used",
                })
            }
            Some(seq) => segs.push((seq, ent.path())),
            None if name.ends_with(".wal") => {
                tracing::warn!(file = %ent.path().display(), "ignoring a .wal file that is not named like a WAL segment");
            }
            None => {}
        }
    }
    segs.sort_unstable_by_key(|(seq, _)| *seq);
    for w in segs.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(WalError::MissingSegment {
                dir: dir.to_path_buf(),
                after: w[0].0,
                found: w[1].0,
            });
        }
    }
    Ok(segs)
}

/// Where the written data of the segment at `path` (of `len` bytes) ends,
/// as the file system reports it: its first hole (`SEEK_HOLE`), rounded up
/// to 4 KiB, at most `len`. Preallocated space that was never written is a
/// hole on ext4 and xfs (unwritten extents, and O_DIRECT leaves no dirty
/// page cache over them), so recovery need not read the empty part of the
/// active segment. Every acknowledged batch is on written extents (its
/// fdatasync completed), so a hole can only follow them (or split the
/// torn last write, which is cut either way). A file system that reports
/// no hole, or any error, gives `len`: everything is read, as before.
pub(super) fn data_end(path: &Path, len: u64) -> u64 {
    let Ok(file) = std::fs::File::open(path) else {
        return len;
    };
    // SAFETY: lseek on a file descriptor this function owns (`file` lives
    // across the call); it touches no memory.
    let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    match u64::try_from(hole) {
        Ok(h) => h.next_multiple_of(4096).min(len),
        Err(_) => len,
    }
}

/// Opens an existing segment for reading.
pub(super) async fn open_read(path: &Path) -> Result<DmaFile, WalError> {
    OpenOptions::new()
        .read(true)
        .dma_open(path)
        .await
        .map_err(|e| WalError::io("opening", path, e.into()))
}

/// Opens an existing segment for reading and writing (to continue its log).
pub(super) async fn open_write(path: &Path, opts: &WalOptions) -> Result<DmaFile, WalError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(write_flags(opts))
        .dma_open(path)
        .await
        .map_err(|e| WalError::io("opening", path, e.into()))
}

/// The file's size in bytes.
pub(super) async fn file_len(file: &DmaFile, path: &Path) -> Result<u64, WalError> {
    file.file_size()
        .await
        .map_err(|e| WalError::io("stat", path, e.into()))
}

/// Reads `[0, len)` of `file` (fewer bytes if the file is shorter) with
/// aligned reads of `READ_CHUNK_BYTES`.
pub(super) async fn read_prefix(
    file: &DmaFile,
    path: &Path,
    len: u64,
) -> Result<Vec<u8>, WalError> {
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    let mut pos = 0u64;
    while pos < len {
        let want = file.align_up((len - pos).min(READ_CHUNK_BYTES));
        let got = file
            .read_at_aligned(pos, want as usize)
            .await
            .map_err(|e| WalError::io("reading", path, e.into()))?;
        let take = (got.len() as u64).min(len - pos) as usize;
        out.extend_from_slice(&got[..take]);
        pos += got.len() as u64;
        if (got.len() as u64) < want {
            break; // end of file
        }
    }
    Ok(out)
}

/// Closes a file that was only read. A close error after reads loses
/// nothing, so it is logged, not returned.
pub(super) async fn close_quietly(file: DmaFile, path: &Path) {
    if let Err(e) = file.close().await {
        tracing::warn!(file = %path.display(), error = %e, "closing WAL segment");
    }
}

/// Extra open flags of a segment opened for writing.
fn write_flags(opts: &WalOptions) -> i32 {
    if opts.dsync_writes {
        libc::O_DSYNC
    } else {
        0
    }
}

/// Creates segment `seq` (or recreates it if `recreate`: its previous
/// creation never completed), preallocates it to hold at least `log_bytes`
/// (before padding) and `opts.segment_bytes`, and fsyncs the directory.
/// Returns the file, its effective write alignment and its size. Any error is
/// fatal: the caller is a sync, which cannot fail.
pub(super) async fn create(
    dir: &Directory,
    dir_path: &Path,
    seq: u64,
    log_bytes: u64,
    opts: &WalOptions,
    recreate: bool,
) -> (DmaFile, u64, u64) {
    let path = segment_path(dir_path, seq);
    let mut o = OpenOptions::new();
    o.read(true).write(true).custom_flags(write_flags(opts));
    if recreate {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let file = match o.dma_open(&path).await {
        Ok(f) => f,
        Err(e) => fail_stop("creating a WAL segment", &e),
    };
    let align = super::effective_alignment(&file, opts);
    let needed = padded_len(log_bytes as usize, align as usize) as u64;
    let bytes = opts.segment_bytes.max(needed).next_multiple_of(align);
    if let Err(e) = file.pre_allocate(bytes, false).await {
        fail_stop("preallocating a WAL segment", &e);
    }
    if let Err(e) = dir.sync().await {
        fail_stop("fsyncing the WAL directory", &e);
    }
    tracing::info!(segment = %path.display(), bytes, align, "created WAL segment");
    (file, align, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(1), "00000000000000000001.wal");
        assert_eq!(parse_segment_file_name("00000000000000000001.wal"), Some(1));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("1.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000a.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000001.log"), None);
        assert_eq!(parse_segment_file_name("+0000000000000000001.wal"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.wal"), None);
    }

    #[test]
    fn listing_sorts_and_rejects_gaps() {
        let d = tempfile::tempdir().unwrap();
        for s in [3u64, 1, 2] {
            std::fs::write(segment_path(d.path(), s), b"").unwrap();
        }
        std::fs::write(d.path().join("LOCK"), b"").unwrap();
        let segs = list_segments(d.path()).unwrap();
        assert_eq!(segs.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        std::fs::remove_file(segment_path(d.path(), 2)).unwrap();
        assert!(matches!(
            list_segments(d.path()),
            Err(WalError::MissingSegment {
                after: 1,
                found: 3,
                ..
            })
        ));
    }
}
