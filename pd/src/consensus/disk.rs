//! `DurableLog`: the PD member's Raft log, hard state and snapshot on disk.
//!
//! Owns two files in the data directory (byte layout in docs/pd.md):
//! - `raft.log`: an 8-byte magic, then records `[len u32][crc32c u32][kind
//!   u8][payload]`, payload an rkyv archive of entries (`kind 1`) or a hard
//!   state (`kind 2`). Appended in batches, one `fdatasync` per batch.
//! - `snapshot`: an 8-byte magic, `[len u32][crc32c u32]`, then an rkyv
//!   `RaftSnapshot` (state machine bytes, index, term, conf state). Replaced
//!   atomically (write to a temporary file, fsync, rename, fsync the
//!   directory).
//!
//! Invariants:
//! - nothing is acknowledged to raft-rs before `sync` returned;
//! - a torn tail (an incomplete or checksum-failing *last* record) is cut at
//!   recovery; a bad record followed by more data is corruption and the
//!   member refuses to start rather than silently lose acknowledged entries;
//! - after `install_snapshot` the log holds only the hard state and the
//!   entries after the snapshot (log compaction). A crash between the two
//!   renames leaves a newer snapshot and an older log whose covered entries
//!   recovery skips.

use golem_wire::raft::{RaftEntry, RaftHardState, RaftSnapshot};
use rkyv::util::AlignedVec;
use rkyv::{rancor, Archive, Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const LOG_MAGIC: &[u8; 8] = b"GPDLOG01";
const SNAP_MAGIC: &[u8; 8] = b"GPDSNP01";
const RECORD_HEADER_BYTES: usize = 9;
/// Largest record or snapshot accepted, in bytes.
pub const RECORD_BYTES_MAX: usize = 256 * 1024 * 1024;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;

/// Why the log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("raft log I/O on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a PD raft log (bad magic)")]
    BadMagic { path: PathBuf },
    #[error("corrupt snapshot {path}: {reason}")]
    CorruptSnapshot { path: PathBuf, reason: String },
    #[error("corrupt raft log {path} at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// The entries record payload.
#[derive(Archive, Serialize, Deserialize, Debug)]
struct EntriesRecord {
    entries: Vec<RaftEntry>,
}

/// What recovery found.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub snapshot: Option<RaftSnapshot>,
    pub hard_state: RaftHardState,
    /// Contiguous entries after the snapshot's index.
    pub entries: Vec<RaftEntry>,
    /// Bytes of torn tail cut from `raft.log`.
    pub cut_bytes: u64,
}

/// The open log.
#[derive(Debug)]
pub struct DurableLog {
    dir: PathBuf,
    file: File,
    /// Records appended since the last `sync`.
    buf: Vec<u8>,
    /// Bytes in `raft.log` (for compaction decisions and metrics).
    bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn encode_record(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    assert!(payload.len() <= RECORD_BYTES_MAX, "record over the limit");
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
}

fn aligned(bytes: &[u8]) -> AlignedVec<16> {
    let mut v = AlignedVec::<16>::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

impl DurableLog {
    /// Opens (or creates) the log in `dir` and recovers its contents.
    pub fn open(dir: &Path) -> Result<(DurableLog, Recovered), LogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let snapshot = read_snapshot(dir)?;
        let path = dir.join("raft.log");
        let mut rec = Recovered {
            snapshot,
            ..Default::default()
        };
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io_err(&path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        let good = if bytes.len() < LOG_MAGIC.len() {
            // Missing, or torn while being created: start afresh.
            if LOG_MAGIC.starts_with(&bytes) {
                write_fresh_log(dir, &[])?;
                bytes = LOG_MAGIC.to_vec();
                LOG_MAGIC.len()
            } else {
                return Err(LogError::BadMagic { path });
            }
        } else if &bytes[..8] != LOG_MAGIC {
            return Err(LogError::BadMagic { path });
        } else {
            replay(&path, &bytes, &mut rec)?
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if good < bytes.len() {
            rec.cut_bytes = (bytes.len() - good) as u64;
            file.set_len(good as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        if let Some(s) = &rec.snapshot {
            rec.hard_state.commit = rec.hard_state.commit.max(s.index);
            rec.hard_state.term = rec.hard_state.term.max(s.term);
        }
        Ok((
            DurableLog {
                dir: dir.to_path_buf(),
                file,
                buf: Vec::new(),
                bytes: good as u64,
            },
            rec,
        ))
    }

    /// Bytes in the log file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Queues entries for the next `sync`.
    pub fn append_entries(&mut self, entries: &[RaftEntry]) {
        if entries.is_empty() {
            return;
        }
        let rec = EntriesRecord {
            entries: entries.to_vec(),
        };
        let payload = rkyv::to_bytes::<rancor::Error>(&rec).expect("entries serialize");
        encode_record(KIND_ENTRIES, &payload, &mut self.buf);
    }

    /// Queues a hard state for the next `sync`.
    pub fn append_hard_state(&mut self, hs: RaftHardState) {
        let payload = rkyv::to_bytes::<rancor::Error>(&hs).expect("hard state serializes");
        encode_record(KIND_HARD_STATE, &payload, &mut self.buf);
    }

    /// Writes everything queued and makes it durable (one fdatasync).
    /// An error here is fatal to the caller (fail-stop: never retried).
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("raft.log");
        self.file.write_all(&self.buf).map_err(io_err(&path))?;
        self.file.sync_data().map_err(io_err(&path))?;
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Makes `snapshot` the durable snapshot and rewrites the log to hold
    /// only `hard_state` and `entries_after` (those after the snapshot).
    pub fn install_snapshot(
        &mut self,
        snapshot: &RaftSnapshot,
        hard_state: RaftHardState,
        entries_after: &[RaftEntry],
    ) -> Result<(), LogError> {
        debug_assert!(self.buf.is_empty(), "sync before installing a snapshot");
        let payload = rkyv::to_bytes::<rancor::Error>(snapshot).expect("snapshot serializes");
        let mut out = Vec::with_capacity(payload.len() + 16);
        out.extend_from_slice(SNAP_MAGIC);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        let tmp = self.dir.join("snapshot.tmp");
        write_synced(&tmp, &out)?;
        let dst = self.dir.join("snapshot");
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        sync_dir(&self.dir)?;

        let mut records = Vec::new();
        encode_record(
            KIND_HARD_STATE,
            &rkyv::to_bytes::<rancor::Error>(&hard_state).expect("hard state serializes"),
            &mut records,
        );
        if !entries_after.is_empty() {
            let rec = EntriesRecord {
                entries: entries_after.to_vec(),
            };
            encode_record(
                KIND_ENTRIES,
                &rkyv::to_bytes::<rancor::Error>(&rec).expect("entries serialize"),
                &mut records,
            );
        }
        write_fresh_log(&self.dir, &records)?;
        let path = self.dir.join("raft.log");
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        self.bytes = (LOG_MAGIC.len() + records.len()) as u64;
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Atomically replaces `raft.log` with the magic followed by `records`.
fn write_fresh_log(dir: &Path, records: &[u8]) -> Result<(), LogError> {
    let tmp = dir.join("raft.log.tmp");
    let mut bytes = LOG_MAGIC.to_vec();
    bytes.extend_from_slice(records);
    write_synced(&tmp, &bytes)?;
    let dst = dir.join("raft.log");
    fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
    sync_dir(dir)
}

fn read_snapshot(dir: &Path) -> Result<Option<RaftSnapshot>, LogError> {
    let path = dir.join("snapshot");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let corrupt = |reason: &str| LogError::CorruptSnapshot {
        path: path.clone(),
        reason: reason.to_string(),
    };
    if bytes.len() < 16 || &bytes[..8] != SNAP_MAGIC {
        return Err(corrupt("bad header"));
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if len > RECORD_BYTES_MAX || bytes.len() != 16 + len {
        return Err(corrupt("bad length"));
    }
    let payload = &bytes[16..];
    if crc32c::crc32c(payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    rkyv::from_bytes::<RaftSnapshot, rancor::BoxedError>(&aligned(payload))
        .map(Some)
        .map_err(|e| corrupt(&e.to_string()))
}

/// Replays records into `rec`; returns the length of the good prefix.
fn replay(path: &Path, bytes: &[u8], rec: &mut Recovered) -> Result<usize, LogError> {
    let snap_index = rec.snapshot.as_ref().map_or(0, |s| s.index);
    let mut off = LOG_MAGIC.len();
    while off < bytes.len() {
        let rest = &bytes[off..];
        if rest.len() < RECORD_HEADER_BYTES {
            return Ok(off); // torn header at the tail
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let kind = rest[8];
        let end = RECORD_HEADER_BYTES + len;
        if len > RECORD_BYTES_MAX {
            return Err(corrupt(path, off, "record length over the limit"));
        }
        if end > rest.len() {
            return Ok(off); // the last record runs past the end: torn tail
        }
        let payload = &rest[RECORD_HEADER_BYTES..end];
        let actual = crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload);
        let is_last = end == rest.len();
        if actual != crc {
            if is_last {
                return Ok(off); // torn write of the last batch
            }
            return Err(corrupt(path, off, "checksum mismatch before the tail"));
        }
        let payload = aligned(payload);
        match kind {
            KIND_ENTRIES => {
                let r = rkyv::from_bytes::<EntriesRecord, rancor::BoxedError>(&payload)
                    .map_err(|e| corrupt(path, off, &e.to_string()))?;
                for e in r.entries {
                    if e.index <= snap_index {
                        continue;
                    }
                    let next = snap_index + rec.entries.len() as u64 + 1;
                    if e.index > next {
                        return Err(corrupt(path, off, "gap between entries"));
                    }
                    rec.entries.truncate((e.index - snap_index - 1) as usize);
                    rec.entries.push(e);
                }
            }
            KIND_HARD_STATE => {
                rec.hard_state = rkyv::from_bytes::<RaftHardState, rancor::BoxedError>(&payload)
                    .map_err(|e| corrupt(path, off, &e.to_string()))?;
            }
            other => return Err(corrupt(path, off, &format!("unknown record kind {other}"))),
        }
        off += end;
    }
    Ok(off)
}

fn corrupt(path: &Path, offset: usize, reason: &str) -> LogError {
    LogError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
