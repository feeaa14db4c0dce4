//! The background thread: the only writer of segment files and of the
//! manifest. It flushes frozen memtables, ingests external segments,
//! compacts, and deletes obsolete files, then publishes each new segment
//! set to the owning `Lsm` through a channel. The `Lsm` (on a shard thread)
//! never touches the file system after `open`.
//!
//! Invariants: jobs run in the order they were sent, so a flushed or
//! ingested segment is always newer (higher seq) than every live segment and
//! compaction runs (which happen between jobs) never straddle a pending
//! layer. A new segment set is published only after the manifest naming it
//! is durable. Any I/O error stops the thread and is reported to the `Lsm`,
//! which then refuses writes (fail-stop: an fsync is never retried).

use crate::compaction;
use crate::error::LsmError;
use crate::manifest::{segment_path, sync_dir, Manifest, SegmentRef, Step};
use crate::memtable::Memtable;
use crate::options::{CrashPoint, LsmOptions};
use crate::segment::{Segment, SegmentWriter};
use crate::view::{Layer, LayerKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Work for the background thread.
pub(crate) enum Job {
    /// Write this frozen memtable as segment `seq`.
    Flush { mem: Arc<Memtable>, seq: u64 },
    /// Move the validated external segment at `path` in as layer `seq`.
    Ingest { path: PathBuf, seq: u64 },
    /// Merge every live segment into one (bottom: drops tombstones).
    CompactAll,
    /// Exit.
    Stop,
}

/// Sent to the `Lsm` after each change of the live segment set.
pub(crate) enum Update {
    /// The live segments (newest first) and, for a flush, the memtable seq
    /// it made durable.
    Segments {
        segments: Vec<(u64, Arc<Segment>)>,
        flushed_seq: Option<u64>,
    },
    /// An ingest was refused (the file is left where it was).
    IngestFailed { path: PathBuf, error: LsmError },
}

/// State shared with the `Lsm`.
#[derive(Default)]
pub(crate) struct Shared {
    /// Jobs finished (flush, ingest, compact), for `wait_idle`.
    pub(crate) done: AtomicU64,
    /// The first fatal error; once set the thread has exited.
    pub(crate) error: Mutex<Option<String>>,
    /// Bytes of segment files written by flushes since open.
    pub(crate) flushed_bytes: AtomicU64,
    /// Bytes of segment files written by compactions since open.
    pub(crate) compacted_bytes: AtomicU64,
    /// Set by `Lsm::drop`: a running compaction is abandoned.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// Test hook: while set, the thread takes no new job.
    pub(crate) paused: std::sync::atomic::AtomicBool,
}

pub(crate) struct Background {
    pub(crate) dir: PathBuf,
    pub(crate) options: LsmOptions,
    pub(crate) manifest: Manifest,
    /// Live segments, newest first, parallel to `manifest.segments`.
    pub(crate) segments: Vec<(u64, Arc<Segment>)>,
    pub(crate) jobs: Receiver<Job>,
    pub(crate) updates: Sender<Update>,
    pub(crate) deletions: Receiver<PathBuf>,
    pub(crate) deleter: Sender<PathBuf>,
    pub(crate) shared: Arc<Shared>,
    /// A non-flush job received while a compaction was flushing in between
    /// (it runs next, in order).
    pub(crate) deferred: Option<Job>,
    /// Crash-hook hits still to let pass (`LsmOptions::crash_point_skip`).
    pub(crate) crash_skip: u32,
}

/// Returned by a step when the crash hook fired: stop dead.
struct Crashed;

enum Stop {
    Crashed,
    /// The owner is dropping the `Lsm`: abandon a running compaction (its
    /// temp file is deleted at the next open) and exit.
    Shutdown,
    Failed(LsmError),
}

impl From<LsmError> for Stop {
    fn from(e: LsmError) -> Self {
        Stop::Failed(e)
    }
}

impl From<Crashed> for Stop {
    fn from(_: Crashed) -> Self {
        Stop::Crashed
    }
}

impl Background {
    pub(crate) fn run(mut self) {
        loop {
            self.delete_obsolete();
            if self.shared.paused.load(Ordering::Acquire) {
                if self.shared.stopping.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let job = match self.deferred.take() {
                Some(job) => job,
                None => match self.jobs.recv_timeout(Duration::from_millis(50)) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let result = match job {
                Job::Stop => break,
                Job::Flush { mem, seq } => self.flush(&mem, seq),
                Job::Ingest { path, seq } => self.ingest(path, seq),
                Job::CompactAll => self.compact_all(),
            };
            // A job counts as done once the compactions it triggered are,
            // so `wait_idle` returns with the background fully idle.
            let result = result.and_then(|()| self.compact_while_needed());
            match result {
                Ok(()) => {
                    self.shared.done.fetch_add(1, Ordering::AcqRel);
                }
                Err(Stop::Shutdown) => return,
                Err(stop) => {
                    let msg = match stop {
                        Stop::Shutdown => unreachable!("handled above"),
                        Stop::Crashed => "stopped at a test crash point".to_string(),
                        Stop::Failed(e) => {
                            tracing::error!(error = %e, dir = %self.dir.display(), "LSM background thread failed");
                            e.to_string()
                        }
                    };
                    *self.shared.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
                    return;
                }
            }
        }
        self.delete_obsolete();
    }

    fn crash(&mut self, at: CrashPoint) -> Result<(), Crashed> {
        if self.should_crash(at) {
            Err(Crashed)
        } else {
            Ok(())
        }
    }

    /// The crash hook: whether to stop dead at `at` (after letting
    /// `crash_point_skip` hits pass).
    fn should_crash(&mut self, at: CrashPoint) -> bool {
        if self.options.crash_point != Some(at) {
            return false;
        }
        if self.crash_skip > 0 {
            self.crash_skip -= 1;
            return false;
        }
        true
    }

    fn delete_obsolete(&self) {
        while let Ok(path) = self.deletions.try_recv() {
            // Not fsynced: a file that survives a crash is not named by the
            // manifest and is deleted at open.
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not delete an obsolete segment");
            }
        }
    }

    fn new_file(&mut self) -> (u64, PathBuf) {
        let id = self.manifest.next_file_id;
        self.manifest.next_file_id += 1;
        (id, segment_path(&self.dir, id))
    }

    /// Renames `tmp` to `path` and fsyncs the directory.
    fn publish_file(&self, tmp: &Path, path: &Path) -> Result<(), LsmError> {
        std::fs::rename(tmp, path).map_err(|e| LsmError::io("rename", tmp, e))?;
        sync_dir(&self.dir)
    }

    /// Makes `self.manifest` durable, then announces the segment set.
    fn commit(&mut self, flushed_seq: Option<u64>) -> Result<(), Stop> {
        self.manifest.segments = self
            .segments
            .iter()
            .map(|(seq, s)| SegmentRef {
                file_id: file_id_of(s.path()),
                seq: *seq,
            })
            .collect();
        let manifest = self.manifest.clone();
        let dir = self.dir.clone();
        let mut crash = |step: Step| {
            self.should_crash(match step {
                Step::TempWritten => CrashPoint::ManifestTempWritten,
                Step::Renamed => CrashPoint::ManifestRenamed,
            })
        };
        if !manifest.store(&dir, &mut crash)? {
            return Err(Stop::Crashed);
        }
        let _ = self.updates.send(Update::Segments {
            segments: self.segments.clone(),
            flushed_seq,
        });
        Ok(())
    }

    fn insert(&mut self, seq: u64, seg: Segment) {
        let at = self.segments.partition_point(|(s, _)| *s > seq);
        self.segments.insert(at, (seq, Arc::new(seg)));
        self.manifest.next_seq = self.manifest.next_seq.max(seq + 1);
    }

    fn flush(&mut self, mem: &Memtable, seq: u64) -> Result<(), Stop> {
        let (_, path) = self.new_file();
        let tmp = path.with_extension("seg.tmp");
        let mut w = SegmentWriter::create(
            &tmp,
            self.options.block_bytes,
            self.options.bloom_bits_per_key,
        )?;
        for (k, v) in mem.range(b"", b"") {
            w.add(k, v)?;
        }
        for (s, e) in mem.ranges.iter() {
            w.add_range_tombstone(s, e)?;
        }
        for (r, i) in &mem.applied {
            w.set_applied(*r, *i);
        }
        let info = w.finish()?;
        self.shared
            .flushed_bytes
            .fetch_add(info.file_bytes, Ordering::Relaxed);
        self.crash(CrashPoint::SegmentTempWritten)?;
        self.publish_file(&tmp, &path)?;
        self.crash(CrashPoint::SegmentRenamed)?;
        let seg = Segment::open(&path)?;
        self.insert(seq, seg);
        self.commit(Some(seq))
    }

    fn ingest(&mut self, src: PathBuf, seq: u64) -> Result<(), Stop> {
        // Validate fully before taking the file: every data block too.
        let checked = Segment::open(&src).and_then(|s| {
            for item in s.iter(b"", b"", false) {
                item?;
            }
            Ok(())
        });
        if let Err(error) = checked {
            let _ = self.updates.send(Update::IngestFailed { path: src, error });
            return Ok(());
        }
        let (_, path) = self.new_file();
        if std::fs::rename(&src, &path).is_err() {
            // Another file system: copy, fsync, then publish.
            let tmp = path.with_extension("seg.tmp");
            std::fs::copy(&src, &tmp).map_err(|e| LsmError::io("copy", &src, e))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| LsmError::io("fsync", &tmp, e))?;
            self.publish_file(&tmp, &path)?;
        } else {
            // The builder may not have fsynced it: do it before the
            // manifest names it.
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| LsmError::io("fsync", &path, e))?;
            sync_dir(&self.dir)?;
        }
        let seg = Segment::open(&path)?;
        self.insert(seq, seg);
        self.commit(None)
    }

    fn compact_while_needed(&mut self) -> Result<(), Stop> {
        loop {
            let sizes: Vec<u64> = self.segments.iter().map(|(_, s)| s.file_bytes()).collect();
            match compaction::pick(&sizes, &self.options) {
                Some(run) => self.compact(run)?,
                None => return Ok(()),
            }
        }
    }

    fn compact_all(&mut self) -> Result<(), Stop> {
        // Even a single segment is rewritten: it may hold tombstones.
        if !self.segments.is_empty() {
            self.compact(0..self.segments.len())?;
        }
        Ok(())
    }

    fn compact(&mut self, run: std::ops::Range<usize>) -> Result<(), Stop> {
        let bottom = run.end == self.segments.len();
        let layers: Vec<Layer> = self.segments[run.clone()]
            .iter()
            .map(|(seq, s)| Layer {
                seq: *seq,
                kind: LayerKind::Seg(s.clone()),
            })
            .collect();
        let seq = layers[0].seq;
        let oldest_seq = layers[layers.len() - 1].seq;
        let (_, path) = self.new_file();
        let tmp = path.with_extension("seg.tmp");
        let options = self.options.clone();
        let mut stopped: Option<Stop> = None;
        let written = compaction::write_merged(&layers, bottom, &tmp, &options, &mut || {
            if self.shared.stopping.load(Ordering::Acquire) {
                stopped = Some(Stop::Shutdown);
                return false;
            }
            match self.flush_waiting() {
                Ok(()) => true,
                Err(stop) => {
                    stopped = Some(stop);
                    false
                }
            }
        })?;
        if let Some(stop) = stopped {
            return Err(stop);
        }
        let info = written.expect("only a stop abandons a merge");
        self.shared
            .compacted_bytes
            .fetch_add(info.file_bytes, Ordering::Relaxed);
        self.publish_file(&tmp, &path)?;
        self.crash(CrashPoint::CompactionSegmentRenamed)?;
        let seg = Segment::open(&path)?;
        // Flushes done meanwhile are newer: the run is still contiguous,
        // found by its seqs.
        let start = self.segments.partition_point(|(s, _)| *s > seq);
        let end = self.segments.partition_point(|(s, _)| *s >= oldest_seq);
        assert_eq!(
            end - start,
            run.len(),
            "the compaction run changed under the merge"
        );
        let old: Vec<(u64, Arc<Segment>)> = self
            .segments
            .splice(start..end, [(seq, Arc::new(seg))])
            .collect();
        self.commit(None)?;
        // Durable: the inputs go when the last reader (a snapshot) drops them.
        for (_, s) in old {
            s.mark_obsolete(self.deleter.clone());
        }
        tracing::debug!(inputs = run.len(), bottom, "LSM compaction done");
        Ok(())
    }

    /// Runs the flush jobs waiting in the queue (called in the middle of a
    /// compaction). Stops at the first other job, which is kept to run next,
    /// so jobs other than flushes keep their order.
    fn flush_waiting(&mut self) -> Result<(), Stop> {
        while self.deferred.is_none() {
            match self.jobs.try_recv() {
                Ok(Job::Flush { mem, seq }) => {
                    self.flush(&mem, seq)?;
                    self.shared.done.fetch_add(1, Ordering::AcqRel);
                }
                Ok(other) => self.deferred = Some(other),
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// The file id in a segment path (`<id:020>.seg`); the paths are ours.
fn file_id_of(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("segment paths are named by their file id")
}
