//! golem-lsm: the per-shard LSM state machine of GolemDB.
//!
//! A shard owns one [`Lsm`]. Applied Raft writes go into a size-limited
//! memtable; full memtables are frozen and flushed by a background thread to
//! immutable, sorted, checksummed segment files that are read through
//! `memmap2` (block index, bloom filter, per-region applied indexes in the
//! footer). Reads merge the memtables and segments, newest first, with
//! tombstones and range tombstones. Size-tiered compaction merges segments
//! in the background; snapshots are reference-counted layer stacks.
//!
//! The Raft log is this store's write-ahead log: nothing is logged here.
//! After a crash, [`Lsm::persisted_applied`] says where each region's WAL
//! replay starts. The format and invariants are specified in
//! docs/storage.md, section "LSM".
//!
//! Modules: `batch` (writes), `memtable`, `range` (range tombstones),
//! `segment` (file format, writer, mapped reader), `bloom`, `manifest`
//! (live segment set), `view` (merge, snapshots), `compaction` (policy and
//! merge), `background` (the file-writing thread), `lsm` (the owner's API).
//! No glommio: the crate is plain std + memmap2.
//!
//! # Using it from a shard (integration notes)
//!
//! - Open one `Lsm` per shard at start, before replaying the WAL; for each
//!   region replay entries after `persisted_applied(region)`.
//! - Apply each committed entry as one `WriteBatch` with
//!   `(region, entry index)`; a CAS reads with `get` first (the shard is
//!   single-threaded, so read-then-write is atomic). On `WriteStall`, stop
//!   applying (keep the entries) and retry on a later loop pass; on
//!   `Background`, fail-stop like an fsync error.
//! - Region removal: `delete_range(region.start, region.end)`.
//! - Raft snapshot, sending: `snapshot()` then `chunks(start, end, …)`.
//!   Receiving: stream pairs into a `SegmentWriter` (with a range tombstone
//!   over the region and `set_applied(region, snapshot index)`), then
//!   `ingest`; check `take_ingest_failures`.
//! - WAL segment deletion: a WAL segment can go once every region's
//!   entries in it are `<= persisted_applied(region)`.
//! - Region size for split decisions: `approximate_bytes(start, end)`,
//!   `approximate_keys`, or both with a middle key (a split key) from
//!   `estimate_range`, recomputed only when `segments_generation` moves;
//!   health: `stats()` (frozen memtables, segments, write amplification).
//! - Only `open`, `wait_idle` and `Drop` block; call them off the request
//!   path (start-up, tests, shutdown).

mod background;
mod batch;
mod bloom;
mod codec;
mod compaction;
mod error;
mod lsm;
mod manifest;
mod memtable;
mod options;
mod range;
mod segment;
mod view;

pub use batch::{WriteBatch, WriteOp};
pub use error::LsmError;
pub use golem_wire::{LogIndex, RegionId};
pub use lsm::{Lsm, LsmStats, RangeEstimate};
pub use options::{CrashPoint, LsmOptions, KEY_BYTES_MAX, VALUE_BYTES_MAX};
pub use segment::{Segment, SegmentInfo, SegmentWriter};
pub use view::{Chunks, LsmSnapshot, ScanPage};

// The owner moves an `Lsm` to its shard thread, and snapshots may be read
// from another thread (a Raft snapshot sender).
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<Lsm>();
    send_sync::<LsmSnapshot>();
    send_sync::<Segment>();
};
