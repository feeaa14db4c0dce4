//! `Lsm`: the per-shard state machine store. The owner (a shard thread)
//! applies writes into the active memtable and reads from memtables and
//! mapped segments; file writing (flush, ingest, compaction, deletion) runs
//! on the background thread (`background`), so no call here touches the
//! file system after `open` (except `wait_idle`, for tests and shutdown;
//! dropping the last reference to a segment unmaps it, a syscall but no
//! I/O).
//!
//! Invariants: the active memtable is never shared (a snapshot freezes or
//! copies it), so it is mutated in place; `layers` holds the frozen
//! memtables and segments sorted by seq, newest first, and a frozen
//! memtable leaves it only when the segment holding its data is published
//! (the manifest naming it is durable); memory is bounded by
//! `(frozen_memtables_max + 1) * memtable_bytes_max` plus one batch, plus
//! one memtable copy per snapshot taken under a write stall.

use crate::background::{Background, Job, Shared, Update};
use crate::batch::WriteBatch;
use crate::error::LsmError;
use crate::manifest::{segment_path, Manifest};
use crate::memtable::Memtable;
use crate::options::LsmOptions;
use crate::segment::Segment;
use crate::view::{self, Layer, LayerKind, LsmSnapshot, ScanPage};
use golem_wire::{LogIndex, RegionId};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The name of the lock file that makes one `Lsm` the owner of a directory.
const LOCK_NAME: &str = "LOCK";

/// A log-structured merge store over one directory.
pub struct Lsm {
    dir: PathBuf,
    options: LsmOptions,
    /// The active memtable, as a layer with seq `u64::MAX` (the newest);
    /// it gets a real seq when it is frozen.
    active: Layer,
    /// Frozen memtables and segments, newest (highest seq) first.
    layers: Vec<Layer>,
    frozen_count: usize,
    /// The seq the next frozen memtable or ingested segment gets.
    next_seq: u64,
    /// Highest applied index per region over the live segments.
    persisted: BTreeMap<RegionId, LogIndex>,
    /// Bumped whenever the live segment set changes (flush, compaction,
    /// ingest): estimates from segment metadata are unchanged while it is.
    segments_generation: u64,
    ingest_failures: Vec<(PathBuf, LsmError)>,
    jobs: Sender<Job>,
    updates: Receiver<Update>,
    shared: Arc<Shared>,
    jobs_sent: u64,
    thread: Option<JoinHandle<()>>,
    /// Holds the directory's flock while the `Lsm` lives.
    _lock: File,
}

impl std::fmt::Debug for Lsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lsm")
            .field("dir", &self.dir)
            .field("layers", &self.layers.len())
            .field("active_bytes", &self.active().bytes())
            .finish()
    }
}

impl Lsm {
    /// Opens (creating if needed) the LSM in `dir`: takes the directory
    /// lock, loads the manifest, deletes files it does not name (leftovers
    /// of an interrupted flush or compaction), maps and validates every
    /// live segment, and starts the background thread.
    pub fn open(dir: &Path, options: LsmOptions) -> Result<Lsm, LsmError> {
        options.validate()?;
        fs::create_dir_all(dir).map_err(|e| LsmError::io("create dir", dir, e))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LsmError::io("open", &lock_path, e))?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => LsmError::Locked {
                path: lock_path.clone(),
            },
            fs::TryLockError::Error(e) => LsmError::io("flock", &lock_path, e),
        })?;
        let manifest = Manifest::load(dir)?;
        remove_unnamed_files(dir, &manifest)?;
        let mut segments = Vec::with_capacity(manifest.segments.len());
        for r in &manifest.segments {
            let path = segment_path(dir, r.file_id);
            if !path.exists() {
                return Err(LsmError::MissingSegment { path });
            }
            segments.push((r.seq, Arc::new(Segment::open(&path)?)));
        }
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let (updates_tx, updates_rx) = mpsc::channel();
        let (deleter, deletions) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let mut lsm = Lsm {
            dir: dir.to_path_buf(),
            options: options.clone(),
            active: new_active(),
            layers: Vec::new(),
            frozen_count: 0,
            next_seq: manifest.next_seq,
            persisted: BTreeMap::new(),
            segments_generation: 0,
            ingest_failures: Vec::new(),
            jobs: jobs_tx,
            updates: updates_rx,
            shared: shared.clone(),
            jobs_sent: 0,
            thread: None,
            _lock: lock,
        };
        lsm.install_segments(segments.clone());
        let options_skip = options.crash_point_skip;
        let bg = Background {
            dir: dir.to_path_buf(),
            options,
            manifest,
            segments,
            jobs: jobs_rx,
            updates: updates_tx,
            deletions,
            deleter,
            shared,
            deferred: None,
            crash_skip: options_skip,
        };
        let thread = std::thread::Builder::new()
            .name("golem-lsm-bg".into())
            .spawn(move || bg.run())
            .map_err(|e| LsmError::io("spawn thread", dir, e))?;
        lsm.thread = Some(thread);
        Ok(lsm)
    }

    /// Applies `batch` atomically into the memtable and records that
    /// `applied.0`'s writes up to `applied.1` are in. Freezes the memtable
    /// (and queues its flush) when it reaches `memtable_bytes_max`.
    ///
    /// `WriteStall` (nothing applied) when the memtable is full and
    /// `frozen_memtables_max` memtables already wait for flush;
    /// `Background` once the background thread failed.
    pub fn apply(
        &mut self,
        batch: WriteBatch,
        applied: (RegionId, LogIndex),
    ) -> Result<(), LsmError> {
        self.poll()?;
        batch.validate()?;
        if self.active().bytes() >= self.options.memtable_bytes_max {
            self.check_frozen_room()?;
            self.freeze();
        }
        match &mut self.active.kind {
            LayerKind::Mem(m) => Arc::get_mut(m)
                .expect("the active memtable is never shared")
                .apply(batch, applied),
            LayerKind::Seg(_) => unreachable!("the active layer is a memtable"),
        }
        if self.active().bytes() >= self.options.memtable_bytes_max
            && self.frozen_count < self.options.frozen_memtables_max
        {
            self.freeze();
        }
        Ok(())
    }

    /// The value of `key`.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, LsmError> {
        self.poll_quiet();
        view::get(self.all_layers(), key)
    }

    /// Pairs with `start <= key < end` (empty `end`: unbounded), ascending
    /// or (`reverse`) descending, at most `pairs_max` pairs and `bytes_max`
    /// key+value bytes (at least one pair when one exists).
    pub fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        pairs_max: usize,
        bytes_max: usize,
    ) -> Result<ScanPage, LsmError> {
        self.poll_quiet();
        let refs: Vec<&Layer> = self.all_layers().collect();
        view::scan(&refs, start, end, reverse, pairs_max, bytes_max)
    }

    /// A consistent view that stays readable while writes, flushes and
    /// compactions go on. Freezes the active memtable (queuing its flush,
    /// O(1)) so that every layer of the view is immutable: take snapshots
    /// for long reads (Raft snapshots), not per request. When the frozen
    /// queue is full it copies the active memtable instead (bounded by
    /// `memtable_bytes_max`), so a snapshot never fails.
    pub fn snapshot(&mut self) -> LsmSnapshot {
        self.poll_quiet();
        if !self.active().is_empty() {
            if self.frozen_count < self.options.frozen_memtables_max {
                self.freeze();
            } else {
                let copy = Layer {
                    seq: u64::MAX,
                    kind: LayerKind::Mem(Arc::new(self.active().clone())),
                };
                let mut layers = Vec::with_capacity(self.layers.len() + 1);
                layers.push(copy);
                layers.extend(self.layers.iter().cloned());
                return LsmSnapshot { layers };
            }
        }
        LsmSnapshot {
            layers: self.layers.clone(),
        }
    }

    /// The highest applied index of `region` whose writes are all in
    /// durable segments: after a crash, replay the WAL from the next one.
    /// `LogIndex(0)` when none is.
    pub fn persisted_applied(&mut self, region: RegionId) -> LogIndex {
        self.poll_quiet();
        self.persisted.get(&region).copied().unwrap_or_default()
    }

    /// `persisted_applied` of every region the live segments cover (for
    /// deciding which WAL segments may be deleted). A removed region keeps
    /// its entry: its writes up to there are durable (deleted) too.
    pub fn persisted_applied_all(&mut self) -> &BTreeMap<RegionId, LogIndex> {
        self.poll_quiet();
        &self.persisted
    }

    /// Freezes the active memtable and queues its flush (no-op if empty).
    /// `WriteStall` when `frozen_memtables_max` memtables already wait.
    pub fn flush(&mut self) -> Result<(), LsmError> {
        self.poll()?;
        if !self.active().is_empty() {
            self.check_frozen_room()?;
            self.freeze();
        }
        Ok(())
    }

    /// Queues a full compaction of every segment into one (dropping all
    /// tombstones). Size-tiered compaction also runs by itself.
    pub fn compact(&mut self) -> Result<(), LsmError> {
        self.poll()?;
        self.send(Job::CompactAll);
        Ok(())
    }

    /// Queues the ingestion of the segment file at `path` (built with
    /// `SegmentWriter`) as the newest layer: it shadows everything written
    /// before this call. The active memtable is frozen first. The file is
    /// moved into the LSM's directory once fully validated; a refused file
    /// is left in place and reported by `take_ingest_failures`. Build the
    /// file outside the LSM's directory: `open` deletes `*.seg` and `*.tmp`
    /// files there that the manifest does not name.
    ///
    /// `WriteStall` (nothing queued) when the memtable must be frozen and
    /// `frozen_memtables_max` memtables already wait.
    pub fn ingest(&mut self, path: &Path) -> Result<(), LsmError> {
        self.poll()?;
        if !self.active().is_empty() {
            self.check_frozen_room()?;
            self.freeze();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.send(Job::Ingest {
            path: path.to_path_buf(),
            seq,
        });
        Ok(())
    }

    /// Ingests that were refused since the last call, with their errors.
    pub fn take_ingest_failures(&mut self) -> Vec<(PathBuf, LsmError)> {
        self.poll_quiet();
        std::mem::take(&mut self.ingest_failures)
    }

    /// Blocks until the background thread has finished every queued job.
    /// For tests and shutdown only: never call it on a shard's request path.
    pub fn wait_idle(&mut self) -> Result<(), LsmError> {
        loop {
            self.poll()?;
            if self.shared.done.load(Ordering::Acquire) == self.jobs_sent {
                self.poll()?;
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Test hook: while `paused`, the background thread takes no new job
    /// (to test backpressure deterministically).
    #[doc(hidden)]
    pub fn set_background_paused(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Release);
    }

    /// Counts for monitoring and tests.
    pub fn stats(&mut self) -> LsmStats {
        self.poll_quiet();
        let segments: Vec<&Arc<Segment>> = self
            .layers
            .iter()
            .filter_map(|l| match &l.kind {
                LayerKind::Seg(s) => Some(s),
                LayerKind::Mem(_) => None,
            })
            .collect();
        LsmStats {
            active_memtable_bytes: self.active().bytes(),
            frozen_memtables: self.frozen_count,
            segments: segments.len(),
            segment_bytes: segments.iter().map(|s| s.file_bytes()).sum(),
            flushed_bytes: self.shared.flushed_bytes.load(Ordering::Relaxed),
            compacted_bytes: self.shared.compacted_bytes.load(Ordering::Relaxed),
        }
    }

    /// Approximate bytes of segment data with keys in `[start, end)` (empty
    /// `end`: unbounded), from the block indexes: whole blocks whose key
    /// span overlaps the range, over all live segments (memtables not
    /// counted; shadowed versions counted). For size-based region splits.
    pub fn approximate_bytes(&mut self, start: &[u8], end: &[u8]) -> u64 {
        self.poll_quiet();
        self.segments()
            .map(|s| s.approximate_bytes(start, end))
            .sum()
    }

    /// Approximate point entries with keys in `[start, end)`: per live
    /// segment, its entry count (footer) scaled by the share of its data
    /// bytes the range's blocks hold. Memtables are not counted; shadowed
    /// versions and tombstones are. For key-count-based region splits.
    pub fn approximate_keys(&mut self, start: &[u8], end: &[u8]) -> u64 {
        self.poll_quiet();
        self.segments()
            .map(|s| s.approximate_keys(start, end))
            .sum()
    }

    /// Bytes, keys and a middle key of `[start, end)` in one pass over the
    /// block indexes (no data block is read). The middle key is the last
    /// key of the block at which half of the range's bytes are reached,
    /// sorted over all segments' blocks (at most
    /// `MIDDLE_KEY_SAMPLES_PER_SEGMENT` sampled runs of blocks per
    /// segment); it lies strictly inside the range, and is `None` when no
    /// block boundary does (less than about two blocks of data). A split
    /// key that halves the region by size.
    pub fn estimate_range(&mut self, start: &[u8], end: &[u8]) -> RangeEstimate {
        /// Samples per segment: bounds the sort at a few thousand keys
        /// (with about as many segments as a size-tiered LSM keeps).
        const MIDDLE_KEY_SAMPLES_PER_SEGMENT: usize = 128;
        self.poll_quiet();
        let mut keys = 0;
        let mut samples: Vec<(&[u8], u64)> = Vec::new();
        for s in self.segments() {
            keys += s.approximate_keys(start, end);
            s.sample_blocks(start, end, MIDDLE_KEY_SAMPLES_PER_SEGMENT, &mut samples);
        }
        let bytes: u64 = samples.iter().map(|(_, b)| b).sum();
        samples.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let inside = |k: &[u8]| k > start && (end.is_empty() || k < end);
        let mut middle_key = None;
        let mut seen = 0u64;
        for (k, b) in samples {
            seen += b;
            if inside(k) {
                middle_key = Some(k);
                if seen * 2 >= bytes {
                    break;
                }
            }
        }
        RangeEstimate {
            bytes,
            keys,
            middle_key: middle_key.map(<[u8]>::to_vec),
        }
    }

    /// Changes whenever the live segment set changes: an estimate of
    /// `estimate_range` stays valid while this and its range do.
    pub fn segments_generation(&mut self) -> u64 {
        self.poll_quiet();
        self.segments_generation
    }

    fn segments(&self) -> impl Iterator<Item = &Arc<Segment>> + '_ {
        self.layers.iter().filter_map(|l| match &l.kind {
            LayerKind::Seg(s) => Some(s),
            LayerKind::Mem(_) => None,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn all_layers(&self) -> impl Iterator<Item = &Layer> + '_ {
        std::iter::once(&self.active).chain(self.layers.iter())
    }

    fn active(&self) -> &Memtable {
        match &self.active.kind {
            LayerKind::Mem(m) => m,
            LayerKind::Seg(_) => unreachable!("the active layer is a memtable"),
        }
    }

    /// `WriteStall` when no more memtables may be frozen.
    fn check_frozen_room(&self) -> Result<(), LsmError> {
        if self.frozen_count >= self.options.frozen_memtables_max {
            return Err(LsmError::WriteStall {
                frozen: self.frozen_count,
                max: self.options.frozen_memtables_max,
            });
        }
        Ok(())
    }

    fn send(&mut self, job: Job) {
        // A send fails only when the thread has exited, which `poll`
        // reports as `Background`.
        if self.jobs.send(job).is_ok() {
            self.jobs_sent += 1;
        }
    }

    fn freeze(&mut self) {
        let LayerKind::Mem(mem) = std::mem::replace(&mut self.active, new_active()).kind else {
            unreachable!("the active layer is a memtable")
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.layers.insert(
            0,
            Layer {
                seq,
                kind: LayerKind::Mem(mem.clone()),
            },
        );
        self.frozen_count += 1;
        self.send(Job::Flush { mem, seq });
    }

    /// Installs background updates; `Background` if the thread failed.
    fn poll(&mut self) -> Result<(), LsmError> {
        self.poll_quiet();
        if let Some(msg) = self
            .shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(LsmError::Background(msg));
        }
        Ok(())
    }

    fn poll_quiet(&mut self) {
        while let Ok(update) = self.updates.try_recv() {
            match update {
                Update::Segments {
                    segments,
                    flushed_seq,
                } => {
                    if let Some(seq) = flushed_seq {
                        let before = self.layers.len();
                        self.layers
                            .retain(|l| !(l.seq == seq && matches!(l.kind, LayerKind::Mem(_))));
                        self.frozen_count -= before - self.layers.len();
                    }
                    self.install_segments(segments);
                }
                Update::IngestFailed { path, error } => self.ingest_failures.push((path, error)),
            }
        }
    }

    fn install_segments(&mut self, segments: Vec<(u64, Arc<Segment>)>) {
        self.segments_generation += 1;
        self.persisted.clear();
        for (_, s) in &segments {
            for (r, i) in s.applied() {
                let slot = self.persisted.entry(*r).or_default();
                *slot = (*slot).max(*i);
            }
        }
        self.layers.retain(|l| matches!(l.kind, LayerKind::Mem(_)));
        self.layers
            .extend(segments.into_iter().map(|(seq, s)| Layer {
                seq,
                kind: LayerKind::Seg(s),
            }));
        self.layers.sort_by_key(|l| std::cmp::Reverse(l.seq));
    }
}

impl Drop for Lsm {
    fn drop(&mut self) {
        // Unflushed memtables are dropped (the WAL holds their writes); a
        // running compaction is abandoned at its next yield point.
        self.shared.stopping.store(true, Ordering::Release);
        let _ = self.jobs.send(Job::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Size estimates of a key range from segment metadata (see
/// [`Lsm::estimate_range`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeEstimate {
    /// As [`Lsm::approximate_bytes`].
    pub bytes: u64,
    /// As [`Lsm::approximate_keys`].
    pub keys: u64,
    /// A key strictly inside the range near its middle by bytes.
    pub middle_key: Option<Vec<u8>>,
}

/// Counters of an `Lsm`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LsmStats {
    /// Bytes in the active memtable.
    pub active_memtable_bytes: usize,
    /// Frozen memtables waiting for flush.
    pub frozen_memtables: usize,
    /// Live segment files.
    pub segments: usize,
    /// Their total size.
    pub segment_bytes: u64,
    /// Segment bytes written by flushes since open.
    pub flushed_bytes: u64,
    /// Segment bytes written by compactions since open; with
    /// `flushed_bytes`, the write amplification of compaction is
    /// `(flushed + compacted) / flushed`.
    pub compacted_bytes: u64,
}

fn new_active() -> Layer {
    Layer {
        seq: u64::MAX,
        kind: LayerKind::Mem(Arc::new(Memtable::default())),
    }
}

/// Deletes temp files and segment files the manifest does not name.
fn remove_unnamed_files(dir: &Path, manifest: &Manifest) -> Result<(), LsmError> {
    let named: std::collections::BTreeSet<PathBuf> = manifest
        .segments
        .iter()
        .map(|r| segment_path(dir, r.file_id))
        .collect();
    let entries = fs::read_dir(dir).map_err(|e| LsmError::io("read dir", dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| LsmError::io("read dir", dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let garbage = name.ends_with(".tmp") || (name.ends_with(".seg") && !named.contains(&path));
        if garbage {
            tracing::info!(path = %path.display(), "removing a file left by an interrupted flush or compaction");
            fs::remove_file(&path).map_err(|e| LsmError::io("remove", &path, e))?;
        }
    }
    Ok(())
}
