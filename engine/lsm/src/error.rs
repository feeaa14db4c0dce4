//! `LsmError`: every way an LSM operation can fail, by kind.
//!
//! Corruption is always a typed error that names the file and the byte
//! offset where the check failed: the LSM never returns wrong data and never
//! panics on bad bytes from the disk. A broken *internal* invariant (a bug)
//! panics instead.

use std::path::PathBuf;

/// An error of the LSM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LsmError {
    /// An I/O call failed. `op` says which (open, write, fsync, rename…).
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file's bytes fail a check (checksum, bounds, ordering, magic…).
    #[error("corrupt {path} at byte {offset}: {what}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the structure that failed the check.
        offset: u64,
        /// Which check failed.
        what: String,
    },
    /// A file was written by a newer (or unknown) format version.
    #[error("{path}: unsupported format version {version}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in it.
        version: u32,
    },
    /// The manifest names a segment whose file is missing.
    #[error("segment {path} named by the manifest is missing")]
    MissingSegment {
        /// The expected path.
        path: PathBuf,
    },
    /// Another `Lsm` owns the directory.
    #[error("{path} is locked by another owner")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An option is out of range.
    #[error("invalid option {name}: {why}")]
    InvalidOption {
        /// The option's field name.
        name: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// An input is over a limit or malformed (key too long, start > end…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Too many frozen memtables wait for the background thread: the batch
    /// was NOT applied. Retry after the background catches up.
    #[error("write stall: {frozen} frozen memtables wait for flush (max {max})")]
    WriteStall {
        /// Frozen memtables waiting.
        frozen: usize,
        /// `LsmOptions::frozen_memtables_max`.
        max: usize,
    },
    /// The background thread failed (an fsync error is fail-stop) or
    /// stopped; the LSM accepts no more writes. Carries the first error.
    #[error("background thread failed: {0}")]
    Background(String),
}

impl LsmError {
    /// An `Io` error for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LsmError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A `Corrupt` error.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        LsmError::Corrupt {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }
}
