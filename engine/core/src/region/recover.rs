//! Creating a region peer: `bootstrap` (a brand-new region) and `recover`
//! (rebuild from the region's WAL records).
//!
//! Owns the initial records of a region and their replay. Recovery reads the
//! records in write order: the last `RegionMeta` wins, the last `HardState`
//! wins, an `Entries` run starting at index `i` replaces every entry ≥ `i`.
//! Entries up to the commit index are applied to a fresh `KvState`, and raft
//! starts with `applied = commit` so they are not applied again; only a
//! bounded tail of the log stays cached.
//!
//! Invariants checked (typed errors, never panics, on bad records): at least
//! one `RegionMeta`, naming this region; the log is contiguous from index 1;
//! terms never decrease along the log and never exceed the hard state's
//! term; every committed normal entry decodes as a command. A commit index
//! past the surviving log (a torn tail lost entries that a follower's hard
//! state already counted) is clamped to the log's end: commit need not be
//! durable, and nothing past a durable entry was ever acknowledged here.

use super::peer::RegionPeer;
use super::records::{decode_entries, decode_hard_state};
use super::{CoreError, PeerConfig, RegionMeta};
use crate::command::Command;
use crate::kv::KvState;
use crate::raft_log::RegionStorage;
use crate::wal_record::{RecordKind, WalSink};
use golem_wire::LogIndex;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState};

use super::records::encode_hard_state;

impl RegionPeer {
    /// Creates a brand-new region with this peer as its only voter; appends
    /// the `RegionMeta` and initial `HardState` records to `wal` (they must
    /// be made durable before the region serves). The peer starts as a
    /// follower at term 0 with an empty log: call `campaign` (or tick
    /// `election_ticks`..`election_ticks + election_jitter_ticks` times).
    pub fn bootstrap(
        cfg: PeerConfig,
        meta: RegionMeta,
        wal: &mut dyn WalSink,
    ) -> Result<RegionPeer, CoreError> {
        cfg.validate()?;
        check_meta(&cfg, &meta)?;
        if meta.peers != [cfg.peer] {
            return Err(CoreError::InvalidMeta {
                region: meta.id,
                reason: format!(
                    "a bootstrapped region has this peer ({}) as its only voter, not {:?}",
                    cfg.peer, meta.peers
                ),
            });
        }
        let hs = HardState::default();
        wal.append(RecordKind::RegionMeta, meta.id, &meta.encode());
        wal.append(RecordKind::HardState, meta.id, &encode_hard_state(&hs));
        let storage = RegionStorage::new(hs, conf_state(&meta), 0, 0, Vec::new());
        RegionPeer::build(cfg, meta, storage, KvState::new(), 0, 0)
    }

    /// Rebuilds a region from its WAL records, in write order (`RegionMeta`,
    /// `Entries`, `HardState` records as produced by this type), replaying
    /// committed entries into the state machine. The peer starts as a
    /// follower; a single voter calls `campaign` to lead again.
    pub fn recover(
        cfg: PeerConfig,
        records: impl IntoIterator<Item = (RecordKind, Vec<u8>)>,
    ) -> Result<RegionPeer, CoreError> {
        cfg.validate()?;
        let region = cfg.region;
        let bad = |kind, source| CoreError::BadRecord {
            region,
            kind,
            source,
        };
        let mut meta: Option<RegionMeta> = None;
        let mut hs = HardState::default();
        // log[i] has index i + 1.
        let mut log: Vec<Entry> = Vec::new();
        for (kind, payload) in records {
            match kind {
                RecordKind::RegionMeta => {
                    let m = RegionMeta::decode(&payload).map_err(|e| bad(kind, e))?;
                    check_meta(&cfg, &m)?;
                    meta = Some(m);
                }
                RecordKind::HardState => {
                    hs = decode_hard_state(&payload).map_err(|e| bad(kind, e))?;
                }
                RecordKind::Entries => {
                    let run = decode_entries(&payload).map_err(|e| bad(kind, e))?;
                    let first = run[0].index;
                    let next = log.len() as u64 + 1;
                    if first > next {
                        return Err(CoreError::LogGap {
                            region,
                            expected: LogIndex(next),
                            found: LogIndex(first),
                        });
                    }
                    log.truncate((first - 1) as usize);
                    log.extend(run);
                }
            }
        }
        let meta = meta.ok_or(CoreError::MissingRegionMeta { region })?;
        check_log(&cfg, &log, &hs)?;

        let last = log.len() as u64;
        if hs.commit > last {
            tracing::warn!(
                region = %region,
                commit = hs.commit,
                last_index = last,
                "commit index past the recovered log; clamped"
            );
            hs.commit = last;
        }
        let commit = hs.commit;

        let mut kv = KvState::new();
        let mut conf_changes = Vec::new();
        for e in &log[..commit as usize] {
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {}
                EntryType::EntryNormal => {
                    let cmd = Command::decode(&e.data).map_err(|source| CoreError::BadEntry {
                        region,
                        index: LogIndex(e.index),
                        source,
                    })?;
                    kv.apply(cmd);
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    conf_changes.push(e.clone());
                }
            }
        }
        let applied_term = if commit == 0 {
            0
        } else {
            log[commit as usize - 1].term
        };

        // Keep the unapplied entries and a bounded tail of applied ones.
        let compacted = commit.saturating_sub(cfg.entry_cache_entries_max as u64);
        let compacted_term = if compacted == 0 {
            0
        } else {
            log[compacted as usize - 1].term
        };
        let tail = log.split_off(compacted as usize);
        drop(log);
        let storage = RegionStorage::new(hs, conf_state(&meta), compacted, compacted_term, tail);
        let mut peer = RegionPeer::build(cfg, meta, storage, kv, commit, applied_term)?;
        for e in &conf_changes {
            peer.apply_conf_change(e);
        }
        tracing::info!(
            region = %region,
            commit,
            last_index = last,
            term = peer.raw.raft.term,
            keys = peer.kv.len(),
            "region recovered"
        );
        Ok(peer)
    }
}

fn conf_state(meta: &RegionMeta) -> ConfState {
    ConfState {
        voters: meta.peers.iter().map(|p| p.get()).collect(),
        ..Default::default()
    }
}

fn check_meta(cfg: &PeerConfig, meta: &RegionMeta) -> Result<(), CoreError> {
    let invalid = |reason: String| CoreError::InvalidMeta {
        region: cfg.region,
        reason,
    };
    if meta.id != cfg.region {
        return Err(invalid(format!(
            "metadata of region {} given to region {}",
            meta.id, cfg.region
        )));
    }
    meta.validate().map_err(invalid)?;
    if !meta.peers.contains(&cfg.peer) {
        return Err(invalid(format!("peer {} is not a member", cfg.peer)));
    }
    Ok(())
}

/// Terms never decrease along the log and never pass the hard state's term.
fn check_log(cfg: &PeerConfig, log: &[Entry], hs: &HardState) -> Result<(), CoreError> {
    let corrupt = |reason: String| CoreError::CorruptLog {
        region: cfg.region,
        reason,
    };
    for pair in log.windows(2) {
        if pair[1].term < pair[0].term {
            return Err(corrupt(format!(
                "term decreases at index {} ({} after {})",
                pair[1].index, pair[1].term, pair[0].term
            )));
        }
    }
    if let Some(last) = log.last() {
        if last.term > hs.term {
            return Err(corrupt(format!(
                "entry {} has term {} past the hard state's term {}",
                last.index, last.term, hs.term
            )));
        }
    }
    Ok(())
}
