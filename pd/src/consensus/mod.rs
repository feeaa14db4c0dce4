//! The PD's Raft plumbing: raft-rs storage, durable log, conversions.
//!
//! - [`storage`]: `PdStorage`, raft-rs's view of the log (in memory).
//! - [`disk`]: `DurableLog`, the append-only crc-framed log file, hard
//!   states and snapshots on disk, with torn-tail recovery.
//! - [`convert`]: `eraftpb` ⇄ rkyv mirrors (protobuf never decodes input).
//! - [`log_bridge`]: raft-rs's slog output → tracing.

/// `eraftpb` ⇄ rkyv conversion, shared with the nodes (golem-core).
pub use golem_core::raft_convert as convert;
pub mod disk;
pub mod log_bridge;
pub mod storage;
