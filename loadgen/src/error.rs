//! The loadgen's typed errors.
//!
//! Owns the distinction between bad input (workload files, `-p` overrides,
//! flags: exit code 2 before any load is sent) and failures of a run
//! (connecting, a worker dying, writing an output file).

use std::path::PathBuf;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// A flag or a combination of flags is out of bounds.
    #[error("invalid arguments: {0}")]
    Args(String),
    /// A workload file or a `-p` property is malformed or out of bounds.
    #[error("workload {source_name}: {reason}")]
    Workload { source_name: String, reason: String },
    /// The workload file could not be read.
    #[error("cannot read workload {path}: {source}")]
    WorkloadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The cluster under load could not be found or started.
    #[error("target: {0}")]
    Target(String),
    /// Connecting to the backend failed.
    #[error("connect to {backend} at {endpoint}: {reason}")]
    Connect {
        backend: &'static str,
        endpoint: String,
        reason: String,
    },
    /// A worker task panicked or was cancelled.
    #[error("worker failed: {0}")]
    Worker(String),
    /// Every operation of a phase failed: the numbers would mean nothing.
    #[error("{phase} phase: all {count} operations failed; first error: {first}")]
    AllFailed {
        phase: &'static str,
        count: u64,
        first: String,
    },
    /// Interrupted by Ctrl-C (SIGINT) before the run finished.
    #[error("interrupted")]
    Interrupted,
    /// An output file could not be written.
    #[error("cannot write {path}: {reason}")]
    Output { path: PathBuf, reason: String },
}
