//! Raft snapshots of a region, without their data: preparing one for
//! followers (leader side), checking and installing a received one
//! (follower side), and replicas created empty by a message
//! (`uninitialized`) that wait for their first snapshot.
//!
//! A snapshot's Raft metadata is `(index, term, conf_state)` and its
//! `data` is the region's `RegionMeta` record as of `index`. The key-value
//! data is not in the Raft message: the shell streams it from a consistent
//! view of the leader's store and installs it in the follower's store
//! (`PendingReady::snapshot`) before `on_persisted`, which then marks the
//! snapshot applied.
//!
//! Invariants: a prepared snapshot describes exactly the applied state at
//! its index (metadata and configuration as of that index, which is the
//! store's state when the shell takes its view in the same call); a
//! replica installs a snapshot only after raft-rs accepted it (`restore`),
//! writing its metadata and log start before its hard state; nothing after
//! the snapshot is applied until the store holds the snapshot's data.

use super::peer::RegionPeer;
use super::records::encode_log_start;
use super::{CoreError, PeerConfig, RegionMeta};
use crate::raft_log::RegionStorage;
use crate::store::KvStore;
use crate::wal_record::{RecordKind, WalSink};
use golem_wire::RegionEpoch;
use raft::eraftpb::{ConfState, HardState, Snapshot};

/// The first index of every region's log: entries up to it are virtual (an
/// empty region at term `RAFT_INIT_LOG_TERM`). A replica created by a
/// message has an empty log below it, so the leader can only bring it up
/// to date with a snapshot (TiKV's `RAFT_INIT_LOG_INDEX`).
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// The term of the virtual entry at `RAFT_INIT_LOG_INDEX`.
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// Sorted copies of a configuration's id lists, for comparing two.
fn normalized(cs: &ConfState) -> [Vec<u64>; 4] {
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    [
        sorted(&cs.voters),
        sorted(&cs.learners),
        sorted(&cs.voters_outgoing),
        sorted(&cs.learners_next),
    ]
}

impl RegionPeer {
    /// A replica of region `cfg.region` created because a leader's message
    /// reached this store before the replica existed here. It knows no
    /// range and no members: it answers heartbeats, rejects appends (its
    /// log is empty below `RAFT_INIT_LOG_INDEX`), so the leader sends a
    /// snapshot, and it votes for no one.
    pub fn uninitialized(cfg: PeerConfig) -> Result<RegionPeer, CoreError> {
        cfg.validate()?;
        let meta = RegionMeta {
            id: cfg.region,
            start: Vec::new(),
            end: Vec::new(),
            epoch: RegionEpoch {
                conf_ver: 0,
                version: 0,
            },
            peers: Vec::new(),
        };
        let storage = RegionStorage::new(HardState::default(), ConfState::default(), 0, 0, vec![]);
        let mut peer = RegionPeer::build(cfg, meta, storage, 0, 0)?;
        peer.initialized = false;
        Ok(peer)
    }

    /// Whether raft-rs asked for a snapshot for a follower that none
    /// prepared serves (call `prepare_snapshot`, with a store view taken
    /// at the same moment).
    pub fn take_snapshot_request(&mut self) -> bool {
        self.raw.mut_store().take_snapshot_request()
    }

    /// Prepares a snapshot of the applied state: returns `(index, term)`,
    /// the applied index and its term. The caller takes its view of the
    /// store in the same call (nothing is applied in between) and streams
    /// the region's range from it. None while nothing can be described
    /// (uninitialized, or a received snapshot is being installed).
    pub fn prepare_snapshot(&mut self) -> Option<(u64, u64)> {
        if !self.initialized || self.applying_snapshot.is_some() {
            return None;
        }
        let index = self.raw.raft.raft_log.applied;
        let term = self.applied_term;
        let mut snap = Snapshot {
            data: self.meta_record(index).into(),
            ..Default::default()
        };
        let md = snap.mut_metadata();
        md.index = index;
        md.term = term;
        md.set_conf_state(self.meta.conf_state());
        self.raw.mut_store().set_prepared_snapshot(snap);
        tracing::info!(region = %self.meta.id, index, term, "prepared a snapshot");
        Some((index, term))
    }

    /// Reports to raft-rs how sending a snapshot to `to` went (a failure
    /// makes it probe the follower again; success waits for its answer).
    pub fn report_snapshot(&mut self, to: golem_wire::PeerId, ok: bool) {
        let status = if ok {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(to.get(), status);
    }

    /// Forgets the prepared snapshot (the shell lost its view of the store,
    /// e.g. it was dropped): raft-rs's next request makes a new one.
    pub fn forget_prepared_snapshot(&mut self) {
        self.raw.mut_store().clear_prepared_snapshot();
    }

    /// The received snapshot this replica is installing, if any.
    pub fn applying_snapshot(&self) -> Option<(u64, u64)> {
        self.applying_snapshot
    }

    /// Checks a received snapshot before raft-rs sees it.
    pub(crate) fn check_snapshot(&self, snap: &Snapshot) -> Result<(), CoreError> {
        let bad = |reason: String| CoreError::BadSnapshot {
            region: self.cfg.region,
            reason,
        };
        let (meta, as_of) =
            RegionMeta::decode_at(&snap.data).map_err(|e| bad(format!("metadata: {e}")))?;
        let md = snap.get_metadata();
        if meta.id != self.cfg.region {
            return Err(bad(format!("metadata of region {}", meta.id)));
        }
        if meta.peer(self.cfg.peer).is_none() {
            return Err(bad(format!("peer {} is not a member", self.cfg.peer)));
        }
        if as_of != md.index || md.index < RAFT_INIT_LOG_INDEX {
            return Err(bad(format!(
                "metadata as of {as_of} for a snapshot at {}",
                md.index
            )));
        }
        if normalized(&meta.conf_state()) != normalized(md.get_conf_state()) {
            return Err(bad("configuration differs from the metadata's".into()));
        }
        if self.initialized && meta.epoch.conf_ver < self.meta.epoch.conf_ver {
            return Err(bad(format!(
                "conf_ver {} is older than this replica's {}",
                meta.epoch.conf_ver, self.meta.epoch.conf_ver
            )));
        }
        Ok(())
    }

    /// Appends the records of an accepted snapshot (metadata and log start;
    /// the hard state follows) and resets the log to start after it.
    /// Returns `(index, term)` for the shell.
    pub(crate) fn install_snapshot_records(
        &mut self,
        snap: &Snapshot,
        wal: &mut dyn WalSink,
    ) -> (u64, u64) {
        let md = snap.get_metadata();
        let (index, term) = (md.index, md.term);
        let (meta, _, merging) = RegionMeta::decode_record(&snap.data)
            .expect("snapshot metadata was checked when the message was stepped");
        let region = self.cfg.region;
        wal.append(
            RecordKind::RegionMeta,
            region,
            &meta.encode_record(index, merging.as_ref()),
        );
        self.set_merge_state(merging);
        wal.append(RecordKind::LogStart, region, &encode_log_start(index, term));
        self.raw
            .mut_store()
            .restore(index, term, md.get_conf_state().clone());
        tracing::info!(%region, index, term, peers = ?meta.peers, "installing a snapshot");
        self.meta = meta;
        self.meta_as_of = index;
        self.meta_unwritten = false;
        self.initialized = true;
        self.unapplied.clear();
        self.stalled = false;
        self.applying_snapshot = Some((index, term));
        (index, term)
    }

    /// Marks the snapshot `(index, term)` applied: the shell installed its
    /// data in `store`.
    ///
    /// # Panics
    /// If the store does not hold the snapshot's data durably.
    pub(crate) fn finish_snapshot(&mut self, index: u64, term: u64, store: &mut dyn KvStore) {
        let region = self.cfg.region;
        let persisted = store.persisted_applied(region).0;
        assert!(
            persisted >= index,
            "region {region}: snapshot at {index} finished but the store holds {persisted}"
        );
        self.raw.advance_apply_to(index);
        self.applied_term = term;
        self.applying_snapshot = None;
        // Proposals the snapshot jumped over: their entries may or may not
        // be among what it holds (this replica never applied them one by
        // one), so their outcome is unknown, never "not applied"
        // (golem-sim seed 66 of the PD scenario: a write answered NotLeader
        // here was applied by the others).
        while self.proposals.front().is_some_and(|p| p.index <= index) {
            let p = self.proposals.pop_front().expect("front exists");
            self.finished
                .push((p.token, Err(golem_wire::GolemError::DeadlineExceeded)));
        }
        tracing::info!(%region, index, term, "snapshot installed");
    }
}
