//! `SimNode`: one simulated node — one shard holding replicas of regions,
//! its WAL and its store — driven the way the shard's raft loop drives the
//! real one (`engine/src/shard/raft_loop.rs`).
//!
//! Owns the node's region peers (a dynamic set: replicas are created by a
//! leader's message, installed by snapshot, removed with a tombstone),
//! `SimWal`, `SimStore`, the `Ready`s collected and not yet persisted, the
//! ones parked while their snapshot's data is put into the store, the
//! snapshot data it prepared as a leader (`prepared`: the store view the
//! shell streams) and received as a follower (`snap_files`: durable, like
//! the shell's `region-R-I-T.seg` files), the sync in flight, the
//! proposals waiting for an answer, and the reads waiting for a ReadIndex
//! round (batched per region exactly as
//! `engine/src/shard/region_handle.rs` does). The simulator decides *when*
//! things happen (passes, sync completions, snapshot installs, crashes);
//! this type does each of them.
//!
//! Invariants: at most one sync is in flight, and while it is no new pass
//! collects (one batch per sync, as the WAL does); every `PendingReady` is
//! given back to its peer by `persisted` (or, with a snapshot, by
//! `install_done` once its data is durable in the store) before its
//! region collects again; a crash drops every peer, pending `Ready`,
//! waiter, prepared view and waiting read, and keeps only what the WAL,
//! the store and the received snapshot files made durable (plus the torn
//! prefix the simulator chose); a checkpoint is written only between
//! passes; a removed replica is dropped at once and its `Tombstone`
//! record rides on the next sync (if a crash loses it, recovery replays
//! the removal and writes it again, as the shell does).

use crate::config::SimConfig;
use crate::store::SimStore;
use crate::wal::SimWal;
use golem_core::raft_log::FetchRequest;
use golem_core::region::records::decode_log_start;
use golem_core::region::records::{decode_tombstone, encode_tombstone, Tombstone};
use golem_core::region::{
    PeerConfig, PeerMeta, PendingReady, ProposalToken, RegionMeta, RegionPeer,
};
use golem_core::store::{KvStore, WriteBatch};
use golem_core::wal_record::{RecordKind, WalSink};
use golem_wire::{
    GolemError, LogIndex, PeerId, RegionId, RequestBody, ResponseBody, ShardId, StoreId,
};
use raft::eraftpb::{Message, MessageType};
use std::collections::{BTreeMap, BTreeSet};

/// Slots per peer id for the node number (nodes are at most 7).
pub const NODE_SLOTS: u64 = 8;
/// Generations of replicas per (region, node): each replica added to a
/// node gets a fresh peer id, as the PD allocates them.
pub const GENERATIONS_MAX: u64 = 1 << 20;

/// The raft peer id of generation `gen` of `node`'s replica of `region`
/// (unique cluster-wide; the node is `id - 1` modulo `NODE_SLOTS`).
pub fn peer_id(region: RegionId, node: usize, gen: u64) -> PeerId {
    assert!(gen < GENERATIONS_MAX && (node as u64) < NODE_SLOTS);
    PeerId((region.get() * GENERATIONS_MAX + gen) * NODE_SLOTS + node as u64 + 1)
}

/// The store of `node`.
pub fn store_of(node: usize) -> StoreId {
    StoreId(node as u64 + 1)
}

/// Generation `gen` of `node`'s replica of `region`: its peer id, on store
/// `node + 1`, shard 0.
pub fn peer_meta(region: RegionId, node: usize, gen: u64) -> PeerMeta {
    PeerMeta::new(peer_id(region, node, gen), store_of(node), ShardId(0))
}

/// The node hosting raft peer `peer`.
pub fn node_of(peer: u64) -> usize {
    ((peer - 1) % NODE_SLOTS) as usize
}

/// Key-value pairs of a region's range: a snapshot's data.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// How many prepared snapshot views a leader keeps per region (a
/// `MsgSnapshot` names the index of the one it carries).
const PREPARED_PER_REGION_MAX: usize = 4;

/// Who waits for a request's answer.
#[derive(Clone, Debug)]
pub struct Waiter {
    pub client: usize,
    pub op: u64,
    /// The unique value a write carries (for the refused-writes checker).
    pub value: Option<Vec<u8>>,
}

/// An answer for a client.
pub type Answer = (Waiter, Result<ResponseBody, GolemError>);

/// What one persisted pass hands out.
#[derive(Debug, Default)]
pub struct PassOutput {
    pub messages: Vec<(RegionId, Message)>,
    /// Answers to proposals (they reached the log).
    pub finished: Vec<Answer>,
    /// Answers to reads released (or failed) by a ReadIndex round.
    pub reads: Vec<Answer>,
    pub fetches: Vec<(RegionId, FetchRequest)>,
    /// Regions whose received snapshot now waits for its data to be put
    /// into the store (`install_done`): `(region, index, term)`.
    pub installs: Vec<(RegionId, u64, u64)>,
    /// Snapshots whose data went into the store: `(region, index)` (the
    /// replica's applied index jumped there).
    pub installed: Vec<(RegionId, u64)>,
    /// Replicas that applied their own removal and were dropped (their
    /// tombstone was appended): `(region, peer)`.
    pub removed: Vec<(RegionId, PeerId)>,
    /// The `conf_ver` of a replica removed in this pass, for its last
    /// messages (the shell sends them with the metadata it had then).
    pub removed_conf_vers: BTreeMap<RegionId, u64>,
    /// Snapshots prepared as a leader: `(region, index)`.
    pub prepared: Vec<(RegionId, u64)>,
    /// New regions of applied splits whose replica this pass created here
    /// (their metadata as the split made it).
    pub split_created: Vec<RegionMeta>,
}

/// A region's reads waiting for a ReadIndex round, batched like the
/// shell's `RegionHandle`: new reads join the open batch; a pass asks raft
/// to confirm it and opens the next.
#[derive(Debug)]
struct Reads {
    batch: u64,
    batch_used: bool,
    waiting: Vec<(u64, Waiter, RequestBody)>,
    /// When each requested batch was asked of raft (virtual ms).
    batch_started: Vec<(u64, u64)>,
    /// Leader lease `(term, until_ms)`: reads are served at once until
    /// then, in that term (`RegionHandle::lease`).
    lease: Option<(u64, u64)>,
}

impl Default for Reads {
    fn default() -> Self {
        Reads {
            batch: 1,
            batch_used: false,
            waiting: Vec::new(),
            batch_started: Vec::new(),
            lease: None,
        }
    }
}

/// The knobs every replica's `PeerConfig` takes from the run's config.
#[derive(Clone, Copy, Debug)]
struct PeerKnobs {
    election_ticks: usize,
    heartbeat_ticks: usize,
    entry_cache_entries_max: usize,
    log_retain_entries_min: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct SimNode {
    pub id: usize,
    pub up: bool,
    /// Bumped by every crash; events of an older incarnation are void.
    pub incarnation: u64,
    pub wal: SimWal,
    pub store: SimStore,
    /// Empty while the node is down.
    pub peers: BTreeMap<RegionId, RegionPeer>,
    knobs: PeerKnobs,
    pending: Vec<(RegionId, PendingReady)>,
    /// `Ready`s whose snapshot data is being put into the store (the
    /// shell's `installing`): their regions collect nothing meanwhile.
    installing: BTreeMap<RegionId, PendingReady>,
    /// Received snapshot data by `(region, index, term)`, durable (the
    /// shell writes the whole stream to a file before stepping the
    /// `MsgSnapshot`); ingested again at start when a crash came between
    /// the snapshot's WAL records and the store.
    pub snap_files: BTreeMap<(RegionId, u64, u64), Pairs>,
    /// A leader's store views taken by `prepare_snapshot`, by `(region,
    /// index)`: what the shell streams with the `MsgSnapshot` at that
    /// index. Lost in a crash.
    prepared: BTreeMap<(RegionId, u64), Pairs>,
    /// Peer ids of replicas removed from this node, with their regions and
    /// the entries that removed them (if they applied one): their messages
    /// are dropped, and answered with that entry (`removal_notice`);
    /// rebuilt from the WAL's tombstones at start; the tombstones are
    /// written again at each checkpoint, like the shell's
    /// `collect_wal_garbage`, so they outlive their segments.
    pub tombstoned: BTreeMap<PeerId, (RegionId, Option<(u64, u64)>)>,
    reads: BTreeMap<RegionId, Reads>,
    /// `Some(n)`: a sync covering `wal` records `[..n]` is in flight.
    pub sync_in_flight: Option<usize>,
    pub pass_scheduled: bool,
    /// This node's time between ticks (clock skew).
    pub tick_ms: u64,
    /// The leader lease, 0 when leases are off: `tick_ms * (election_ticks
    /// - 2)` of the nominal tick, as the shell's `lease_duration`.
    pub lease_ms: u64,
    /// Virtual time of the last start: for one lease the node grants no
    /// vote (it may have acknowledged a lease round before a crash).
    pub started_ms: u64,
    waiters: BTreeMap<ProposalToken, Waiter>,
    next_token: ProposalToken,
    /// New regions held back after a restart: new region → (parent, split
    /// index). The new region collects no `Ready` until its parent here has
    /// applied the split again or is gone (the shell's `SplitBook::gate`).
    gates: BTreeMap<RegionId, (RegionId, u64)>,
    /// New regions of splits applied in this pass, created once every
    /// collected `Ready` is persisted: `(metadata, the parent's replica
    /// here leads)`.
    split_queue: Vec<(RegionMeta, bool)>,
    /// Replicas a member told they are no longer members (a `Gc`
    /// notice): destroyed by the next pass (the shell's `Shard::doomed`).
    doomed: BTreeSet<RegionId>,
}

/// The peer on `store` named by the latest `RegionMeta` record after the
/// last tombstone (what the shell's `peer_of` reads).
fn peer_of(records: &[(RecordKind, Vec<u8>)], store: StoreId) -> Option<PeerId> {
    let from = records
        .iter()
        .rposition(|(k, _)| *k == RecordKind::Tombstone)
        .map_or(0, |i| i + 1);
    let (_, payload) = records[from..]
        .iter()
        .rev()
        .find(|(k, _)| *k == RecordKind::RegionMeta)?;
    let (meta, _) = RegionMeta::decode_at(payload).ok()?;
    meta.peer_on(store).map(|p| p.id)
}

/// The removed replica: what the last tombstone names, else the peer the
/// last `RegionMeta` record before it named on `store`.
fn tombstoned_peer(records: &[(RecordKind, Vec<u8>)], store: StoreId) -> Option<Tombstone> {
    let at = records
        .iter()
        .rposition(|(k, _)| *k == RecordKind::Tombstone)?;
    decode_tombstone(&records[at].1).or_else(|| {
        peer_of(&records[..at], store).map(|peer| Tombstone {
            peer,
            removed_by: None,
        })
    })
}

/// The latest log start a region's records name after their last
/// tombstone (the shell's `log_start_of`).
fn log_start_of(records: &[(RecordKind, Vec<u8>)]) -> Option<(u64, u64)> {
    let from = records
        .iter()
        .rposition(|(k, _)| *k == RecordKind::Tombstone)
        .map_or(0, |i| i + 1);
    records[from..]
        .iter()
        .filter(|(k, _)| *k == RecordKind::LogStart)
        .filter_map(|(_, p)| decode_log_start(p).ok())
        .max()
}

impl SimNode {
    /// A node whose WAL holds its replicas of `metas` (those naming its
    /// store) as `RegionPeer::bootstrap` writes them (durable), and whose
    /// peers are recovered from them, like a shard that just created its
    /// replicas.
    pub fn new(id: usize, metas: &[RegionMeta], cfg: &SimConfig) -> Result<SimNode, String> {
        let knobs = PeerKnobs {
            election_ticks: cfg.election_ticks,
            heartbeat_ticks: cfg.heartbeat_ticks,
            entry_cache_entries_max: cfg.entry_cache_entries_max,
            log_retain_entries_min: cfg.log_retain_entries_min,
        };
        let mut node = SimNode {
            id,
            up: false,
            incarnation: 0,
            wal: SimWal::default(),
            store: SimStore::default(),
            peers: BTreeMap::new(),
            knobs,
            pending: Vec::new(),
            installing: BTreeMap::new(),
            snap_files: BTreeMap::new(),
            prepared: BTreeMap::new(),
            tombstoned: BTreeMap::new(),
            reads: BTreeMap::new(),
            sync_in_flight: None,
            pass_scheduled: false,
            tick_ms: cfg.tick_ms,
            lease_ms: 0,
            started_ms: 0,
            waiters: BTreeMap::new(),
            next_token: 1,
            gates: BTreeMap::new(),
            split_queue: Vec::new(),
            doomed: BTreeSet::new(),
        };
        for meta in metas {
            let Some(me) = meta.peer_on(store_of(id)) else {
                continue;
            };
            let pc = node.peer_config(meta.id, me.id);
            RegionPeer::bootstrap(pc, meta.clone(), &mut node.wal)
                .map_err(|e| format!("node {id} region {}: bootstrap: {e}", meta.id))?;
        }
        node.wal.mark_durable(node.wal.len());
        node.start()?;
        Ok(node)
    }

    /// The `PeerConfig` of this node's replica `peer` of `region`.
    fn peer_config(&self, region: RegionId, peer: PeerId) -> PeerConfig {
        let mut pc = PeerConfig::new(region, peer);
        pc.election_ticks = self.knobs.election_ticks;
        // raft-rs draws election timeouts from a thread-local generator
        // unless the range is one tick wide; the simulator's tick timing
        // supplies the randomness instead.
        pc.election_jitter_ticks = 1;
        pc.heartbeat_ticks = self.knobs.heartbeat_ticks;
        pc.entry_cache_entries_max = self.knobs.entry_cache_entries_max;
        pc.log_retain_entries_min = self.knobs.log_retain_entries_min;
        pc
    }

    /// Recovers every region the WAL holds records of, as the shard does
    /// at start: a tombstoned replica stays removed; a snapshot install a
    /// crash interrupted is finished first from its received data (the
    /// shell's `recover_files`); a replica whose recovery replays its own
    /// removal gets its tombstone now. An error is a recovery failure (a
    /// finding).
    pub fn start(&mut self) -> Result<(), String> {
        assert!(!self.up, "node {} started twice", self.id);
        let store = store_of(self.id);
        for region in self.wal.regions() {
            let records = self.wal.region_records(region);
            if RegionPeer::is_tombstoned(&records) {
                if let Some(t) = tombstoned_peer(&records, store) {
                    self.tombstoned.insert(t.peer, (region, t.removed_by));
                }
                continue;
            }
            let Some(peer_id) = peer_of(&records, store) else {
                return Err(format!(
                    "node {} region {region}: no metadata record names this store\nthe region's WAL records:\n{}",
                    self.id,
                    self.wal.describe_region(region)
                ));
            };
            if let Some((start, term)) = log_start_of(&records) {
                if self.store.mem.clone().persisted_applied(region).get() < start {
                    if let Some(pairs) = self.snap_files.get(&(region, start, term)).cloned() {
                        self.ingest(region, &records, start, &pairs);
                    }
                }
            }
            let pc = self.peer_config(region, peer_id);
            let peer = RegionPeer::recover(pc, records, &mut self.store).map_err(|e| {
                let durable = self.store.mem.clone().persisted_applied(region);
                format!(
                    "node {} region {region}: recovery failed: {e}\nstore durable applied index: {}\nreceived snapshots: {:?}\nthe region's WAL records:\n{}",
                    self.id,
                    durable,
                    self.snap_files.keys().filter(|k| k.0 == region).collect::<Vec<_>>(),
                    self.wal.describe_region(region)
                )
            })?;
            if peer.is_removed() {
                // Removed before the crash, its tombstone lost.
                self.tombstone(region, peer_id, peer.removed_by());
                continue;
            }
            self.peers.insert(region, peer);
        }
        // The shell's `split::after_recovery`: new regions of splits that
        // recovery applied again (their records were lost) are created,
        // and new regions whose parent's split the store does not hold
        // durably wait for the parent to replay it.
        let parents: Vec<RegionId> = self.peers.keys().copied().collect();
        for parent in parents {
            let peer = self.peers.get_mut(&parent).expect("recovered");
            let created = peer.take_split_regions();
            for (child, index) in peer.take_split_replay_gates() {
                self.gates.insert(child, (parent, index));
            }
            for meta in created {
                self.split_queue.push((meta, false));
            }
        }
        let mut created = Vec::new();
        self.create_split_regions(&mut created);
        // The shell syncs what recovery appended before serving.
        self.wal.mark_durable(self.wal.len());
        // Received snapshots the store holds (or that lost to a newer
        // state) are deleted.
        let mem = &mut self.store.mem;
        self.snap_files
            .retain(|(region, index, _), _| mem.persisted_applied(*region).get() < *index);
        self.up = true;
        Ok(())
    }

    /// Puts a snapshot's data into the store as one batch at its index
    /// (the region's range deleted, then the pairs), durably: what the
    /// shell's ingest of the received segment does. The range comes from
    /// the snapshot's metadata record (the latest `RegionMeta` record).
    fn ingest(
        &mut self,
        region: RegionId,
        records: &[(RecordKind, Vec<u8>)],
        index: u64,
        pairs: &Pairs,
    ) {
        let meta = records
            .iter()
            .rev()
            .find(|(k, _)| *k == RecordKind::RegionMeta)
            .and_then(|(_, p)| RegionMeta::decode_at(p).ok())
            .map(|(m, _)| m)
            .expect("a snapshot's records start with its metadata");
        self.write_snapshot(region, &meta.start, &meta.end, index, pairs);
    }

    fn write_snapshot(
        &mut self,
        region: RegionId,
        start: &[u8],
        end: &[u8],
        index: u64,
        pairs: &Pairs,
    ) {
        let mut batch = WriteBatch::new();
        batch.delete_range(start.to_vec(), end.to_vec());
        for (k, v) in pairs {
            batch.put(k.clone(), v.clone());
        }
        // Straight into the MemStore: not an applied entry (the
        // applied-entries checker is told the index jumped).
        self.store
            .mem
            .write(batch, region, LogIndex(index))
            .expect("the simulated store never stalls");
        self.store.mem.flush();
    }

    /// A process crash: everything not durable is lost, except the first
    /// `wal_tail` unsynced WAL records.
    pub fn crash(&mut self, wal_tail: usize) {
        self.up = false;
        self.incarnation += 1;
        self.peers.clear();
        self.pending.clear();
        self.installing.clear();
        self.prepared.clear();
        self.tombstoned.clear();
        self.reads.clear();
        self.sync_in_flight = None;
        self.pass_scheduled = false;
        self.waiters.clear();
        self.gates.clear();
        self.split_queue.clear();
        self.doomed.clear();
        self.wal.crash(wal_tail);
        self.store.mem.crash();
    }

    /// Whether a pass has work: a peer's `Ready` (not one installing a
    /// snapshot), or reads to confirm.
    pub fn has_work(&self) -> bool {
        self.peers
            .iter()
            .any(|(r, p)| !self.installing.contains_key(r) && !self.is_gated(*r) && p.has_ready())
            || self.reads.values().any(|r| r.batch_used)
            // A doomed replica installing a snapshot waits for the install
            // (its end kicks a pass), as the shell's loop waits.
            || self.doomed.iter().any(|r| !self.installing.contains_key(r))
    }

    /// Marks `region`'s replica for destruction by the next pass.
    pub fn doom(&mut self, region: RegionId) {
        self.doomed.insert(region);
    }

    /// Destroys the doomed replicas not installing a snapshot (the raft
    /// loop's `doomed` handling): the range's data deleted (for an
    /// initialized replica), a tombstone appended (riding on the next
    /// sync), the replica dropped.
    fn destroy_doomed(&mut self, out: &mut PassOutput) {
        for region in std::mem::take(&mut self.doomed) {
            if self.installing.contains_key(&region) {
                self.doomed.insert(region);
                continue;
            }
            let Some(peer) = self.peers.get(&region) else {
                continue;
            };
            let id = peer.config().peer;
            if peer.is_initialized() {
                // Like the shell: what it applied is made durable before
                // its tombstone hides its log from recovery (FINDINGS #12).
                // The simulated flush completes at once.
                if self.store.mem.persisted_applied(region) < peer.applied_index() {
                    self.store.mem.flush();
                }
                let meta = peer.meta();
                let mut batch = WriteBatch::new();
                batch.delete_range(meta.start.clone(), meta.end.clone());
                let at = peer.applied_index();
                self.store
                    .mem
                    .write(batch, region, at)
                    .expect("the simulated store never stalls");
            }
            self.peers.remove(&region);
            self.reads.remove(&region);
            self.prepared.retain(|(r, _), _| *r != region);
            self.gates.remove(&region);
            self.tombstone(region, id, None);
            out.removed.push((region, id));
        }
    }

    /// Whether `region` is a new region held back until its parent here
    /// has applied its split again (or is gone).
    pub fn is_gated(&self, region: RegionId) -> bool {
        let Some(&(parent, index)) = self.gates.get(&region) else {
            return false;
        };
        self.peers
            .get(&parent)
            .is_some_and(|p| p.applied_index().get() < index)
    }

    /// Creates this node's replica of each new region in `split_queue`
    /// (the shell's `split::create_regions`): never a region hosted here
    /// initialized already (a replayed split), never a replica removed
    /// from here (tombstoned); an uninitialized replica a faster new
    /// leader's heartbeat made is replaced. The replica is bootstrapped
    /// into the WAL (synced by the next pass, before it sends anything)
    /// and campaigns at once if its parent here leads (or it is alone).
    fn create_split_regions(&mut self, out: &mut Vec<RegionMeta>) {
        for (meta, parent_leads) in std::mem::take(&mut self.split_queue) {
            let id = meta.id;
            if self.peers.get(&id).is_some_and(|p| p.is_initialized()) {
                continue;
            }
            let me = *meta.peer_on(store_of(self.id)).unwrap_or_else(|| {
                panic!(
                    "node {}: split region {id} has no replica on this store: {meta:?}",
                    self.id
                )
            });
            if self.tombstoned.contains_key(&me.id) {
                continue;
            }
            if self.peers.remove(&id).is_some() {
                self.reads.remove(&id);
                self.installing.remove(&id);
                self.prepared.retain(|(r, _), _| *r != id);
            }
            let pc = self.peer_config(id, me.id);
            let mut peer = RegionPeer::bootstrap(pc, meta.clone(), &mut self.wal)
                .unwrap_or_else(|e| panic!("node {} region {id}: bootstrap: {e}", self.id));
            if parent_leads || !meta.is_replicated() {
                peer.campaign();
            }
            self.peers.insert(id, peer);
            out.push(meta);
        }
    }

    /// Whether a snapshot install is under way (for targeted crashes).
    pub fn is_installing(&self) -> bool {
        !self.installing.is_empty()
    }

    /// The first half of a pass: asks raft to confirm each region's open
    /// read batch, then every peer's `Ready` into the WAL. Returns whether
    /// the records must be synced before `persisted`.
    pub fn collect(&mut self, now_ms: u64) -> bool {
        assert!(self.pending.is_empty() && self.sync_in_flight.is_none());
        let mut must_sync = false;
        let gated: Vec<RegionId> = self
            .gates
            .keys()
            .copied()
            .filter(|&r| self.is_gated(r))
            .collect();
        self.gates.retain(|r, _| gated.contains(r));
        for (region, peer) in self.peers.iter_mut() {
            if self.installing.contains_key(region) || gated.contains(region) {
                continue;
            }
            if let Some(r) = self.reads.get_mut(region) {
                if std::mem::take(&mut r.batch_used) {
                    r.batch_started.push((r.batch, now_ms));
                    peer.request_read(r.batch);
                    r.batch += 1;
                }
            }
            if let Some(p) = peer.collect_ready(&mut self.wal, &mut self.store) {
                must_sync |= p.must_sync();
                self.pending.push((*region, p));
            }
        }
        must_sync
    }

    /// The second half: every collected `Ready` persisted; answers,
    /// messages and fetches out. A `Ready` that installs a snapshot is
    /// parked until `install_done`.
    pub fn persisted(&mut self) -> PassOutput {
        let mut out = PassOutput::default();
        let pending = std::mem::take(&mut self.pending);
        let mut regions: Vec<RegionId> = Vec::new();
        for (region, p) in pending {
            if let Some((index, term)) = p.snapshot() {
                // Its records are durable; now its data goes into the store.
                self.installing.insert(region, p);
                out.installs.push((region, index, term));
                continue;
            }
            regions.push(region);
            self.finish(region, p, &mut out);
        }
        let mut created = Vec::new();
        self.create_split_regions(&mut created);
        out.split_created = created;
        self.destroy_doomed(&mut out);
        for region in regions {
            if self.peers.contains_key(&region) {
                self.release_reads(region, &mut out.reads);
            }
        }
        out
    }

    /// The snapshot `region` is installing has its data durable in the
    /// store now: finishes its `Ready`.
    pub fn install_done(&mut self, region: RegionId) -> PassOutput {
        let mut out = PassOutput::default();
        let Some(p) = self.installing.remove(&region) else {
            return out;
        };
        let (index, term) = p.snapshot().expect("a parked Ready installs a snapshot");
        let pairs = self
            .snap_files
            .remove(&(region, index, term))
            .expect("a snapshot is installed from its received data");
        let meta = self.peers[&region].meta().clone();
        self.write_snapshot(region, &meta.start, &meta.end, index, &pairs);
        out.installed.push((region, index));
        self.finish(region, p, &mut out);
        let mut created = Vec::new();
        self.create_split_regions(&mut created);
        out.split_created = created;
        if self.peers.contains_key(&region) {
            self.release_reads(region, &mut out.reads);
        }
        out
    }

    /// `on_persisted` for one region, then what the shell does after it:
    /// fetches, a snapshot to prepare (with its store view, in the same
    /// call), a removed replica dropped with a tombstone.
    fn finish(&mut self, region: RegionId, p: PendingReady, out: &mut PassOutput) {
        let peer = self.peers.get_mut(&region).expect("a peer of this node");
        let o = peer.on_persisted(p, &mut self.store);
        out.messages
            .extend(o.messages.into_iter().map(|m| (region, m)));
        for (token, result) in o.finished {
            if let Some(w) = self.waiters.remove(&token) {
                out.finished.push((w, result));
            }
        }
        out.fetches
            .extend(peer.take_fetch_requests().into_iter().map(|r| (region, r)));
        let leads = peer.is_leader();
        for meta in peer.take_split_regions() {
            self.split_queue.push((meta, leads));
        }
        if peer.take_snapshot_request() {
            if let Some((index, _term)) = peer.prepare_snapshot() {
                let meta = peer.meta();
                let pairs = self.store.pairs_in(&meta.start, &meta.end);
                self.prepared.insert((region, index), pairs);
                let ours: Vec<u64> = self
                    .prepared
                    .keys()
                    .filter(|(r, _)| *r == region)
                    .map(|(_, i)| *i)
                    .collect();
                if ours.len() > PREPARED_PER_REGION_MAX {
                    self.prepared.remove(&(region, ours[0]));
                }
                out.prepared.push((region, index));
            }
        }
        if peer.is_removed() {
            let id = peer.config().peer;
            let removed_by = peer.removed_by();
            out.removed_conf_vers
                .insert(region, peer.meta().epoch.conf_ver);
            self.peers.remove(&region);
            self.reads.remove(&region);
            self.prepared.retain(|(r, _), _| *r != region);
            self.tombstone(region, id, removed_by);
            out.removed.push((region, id));
        }
    }

    /// Appends the `Tombstone` record of the replica `peer` of `region`
    /// (riding on the next sync) and remembers it.
    fn tombstone(&mut self, region: RegionId, peer: PeerId, removed_by: Option<(u64, u64)>) {
        let t = Tombstone { peer, removed_by };
        self.wal
            .append(RecordKind::Tombstone, region, &encode_tombstone(&t));
        self.tombstoned.insert(peer, (region, removed_by));
    }

    /// The entry that removed this node's replica `to` of `region`, if the
    /// replica applied it and the node does not host the region again: a
    /// message to it is answered with that entry (the shell's
    /// `transport::deliver`, golem-sim FINDINGS.md #9).
    pub fn removal_notice(&self, region: RegionId, to: PeerId) -> Option<(u64, u64)> {
        match self.tombstoned.get(&to) {
            Some((r, removed_by)) if *r == region && !self.peers.contains_key(&region) => {
                *removed_by
            }
            _ => None,
        }
    }

    /// The data of the snapshot at `index` this node prepared for
    /// `region`, if it still has it (what the shell streams).
    pub fn prepared_data(&self, region: RegionId, index: u64) -> Option<&Pairs> {
        self.prepared.get(&(region, index))
    }

    /// A message for this node's replica `to` of `region`: the peer to step
    /// it, created uninitialized if the node has none and the message is
    /// one a leader sends a replica it has not replicated to (the shell's
    /// `transport::deliver`). None: dropped (a removed replica, another
    /// generation, or a message that creates nothing).
    pub fn peer_for(
        &mut self,
        region: RegionId,
        to: PeerId,
        msg: &Message,
    ) -> Option<&mut RegionPeer> {
        if self.tombstoned.contains_key(&to) {
            return None;
        }
        match self.peers.get(&region) {
            Some(p) if p.config().peer == to => {}
            Some(_) => return None,
            None => {
                let creates = msg.get_msg_type() == MessageType::MsgSnapshot
                    || (msg.get_msg_type() == MessageType::MsgHeartbeat && msg.commit == 0);
                if !creates {
                    return None;
                }
                let peer = RegionPeer::uninitialized(self.peer_config(region, to))
                    .expect("a valid peer config");
                self.peers.insert(region, peer);
            }
        }
        self.peers.get_mut(&region)
    }

    /// After a pass: serves the reads whose batch raft confirmed (and
    /// whose index is applied), or fails them all with `NotLeader` if this
    /// peer no longer leads (`RegionHandle::release_reads`).
    fn release_reads(&mut self, region: RegionId, out: &mut Vec<Answer>) {
        let Some(reads) = self.reads.get_mut(&region) else {
            return;
        };
        if reads.waiting.is_empty() && reads.batch_started.is_empty() {
            return;
        }
        let peer = self.peers.get_mut(&region).expect("a peer of this node");
        let ready = peer.take_ready_reads();
        let (leader, term) = (peer.is_leader(), peer.term().get());
        // A confirmed round renews the lease from when it was requested.
        if let Some(&upto) = ready.iter().max() {
            let at = reads
                .batch_started
                .iter()
                .filter(|(b, _)| *b <= upto)
                .map(|(_, t)| *t)
                .max();
            if let (Some(at), true) = (at, self.lease_ms > 0) {
                let until = at + self.lease_ms;
                let keep = reads.lease.is_some_and(|(t, u)| t == term && u >= until);
                if leader && !keep {
                    reads.lease = Some((term, until));
                }
            }
            reads.batch_started.retain(|(b, _)| *b > upto);
        }
        if !leader {
            reads.lease = None;
            reads.batch_started.clear();
            let err = GolemError::NotLeader {
                region,
                leader: None,
            };
            out.extend(
                reads
                    .waiting
                    .drain(..)
                    .map(|(_, w, _)| (w, Err(err.clone()))),
            );
            return;
        }
        // Batches are confirmed in order: the highest ready one releases
        // every batch up to it.
        if let Some(&upto) = ready.iter().max() {
            let (done, rest): (Vec<_>, Vec<_>) =
                reads.waiting.drain(..).partition(|(b, _, _)| *b <= upto);
            reads.waiting = rest;
            for (_, w, body) in done {
                out.push((w, peer.read(&body, &mut self.store)));
            }
        }
    }

    /// Whether `region`'s peer leads under a valid lease (a read may be
    /// served at once); asks for a renewal round when half of it is spent
    /// (`RegionHandle::has_lease`).
    fn has_lease(&mut self, region: RegionId, now_ms: u64) -> bool {
        let peer = &self.peers[&region];
        let Some(reads) = self.reads.get_mut(&region) else {
            return false;
        };
        let Some((term, until)) = reads.lease else {
            return false;
        };
        if !peer.is_leader() || peer.term().get() != term || now_ms >= until {
            return false;
        }
        if until - now_ms < self.lease_ms / 2 && !reads.batch_used {
            reads.batch_used = true;
        }
        true
    }

    /// A read at this node: answered now (`Some`), or queued for the next
    /// ReadIndex round (`None`) when the region has other voters and this
    /// peer leads (`RegionHandle::read_barrier`). `barrier: false` serves
    /// at once whatever the region (the `NoBarrier` planted bug).
    pub fn read(
        &mut self,
        region: RegionId,
        body: RequestBody,
        waiter: Waiter,
        barrier: bool,
        now_ms: u64,
    ) -> Option<Result<ResponseBody, GolemError>> {
        if barrier && self.has_lease(region, now_ms) {
            let peer = &self.peers[&region];
            return Some(peer.read(&body, &mut self.store));
        }
        let peer = self.peers.get(&region).expect("a peer of this node");
        if !barrier || !peer.needs_read_index() {
            return Some(peer.read(&body, &mut self.store));
        }
        if !peer.is_leader() {
            return Some(Err(GolemError::NotLeader {
                region,
                leader: None,
            }));
        }
        let reads = self.reads.entry(region).or_default();
        reads.waiting.push((reads.batch, waiter, body));
        reads.batch_used = true;
        None
    }

    /// Proposes a write for `waiter`; Err: nothing was proposed.
    pub fn propose(
        &mut self,
        region: RegionId,
        body: RequestBody,
        waiter: Waiter,
    ) -> Result<(), GolemError> {
        let token = self.next_token;
        self.next_token += 1;
        let peer = self.peers.get_mut(&region).expect("a peer of this node");
        peer.propose(body, token)?;
        self.waiters.insert(token, waiter);
        Ok(())
    }

    /// Whether a checkpoint may be written now (between passes).
    pub fn between_passes(&self) -> bool {
        self.up && self.pending.is_empty() && self.sync_in_flight.is_none()
    }

    /// Whether `region`'s replica here is initialized and not installing
    /// a snapshot (it has a log start to checkpoint).
    pub fn checkpointable(&self, region: RegionId) -> bool {
        !self.installing.contains_key(&region)
            && self.peers.get(&region).is_some_and(|p| p.is_initialized())
    }

    /// What the shell's WAL garbage collection does
    /// (`collect_wal_garbage`): a checkpoint of every region in
    /// `log_start` at its log start, synced, then the records it makes
    /// useless deleted: those before the first one holding an entry a
    /// region still needs — past its log start; for a region installing a
    /// snapshot, past what the store holds; for a region not hosted any
    /// more, none. Returns the number of records deleted.
    pub fn checkpoint(&mut self, log_start: &BTreeMap<RegionId, u64>) -> usize {
        assert!(self.between_passes(), "checkpoint between passes only");
        let before = self.wal.len();
        for (region, peer) in self.peers.iter_mut() {
            if let Some(at) = log_start.get(region) {
                peer.write_checkpoint(LogIndex(*at), &mut self.wal);
            }
        }
        // Not for a region hosted here again (re-added under a new peer id):
        // a tombstone after its records would hide them from recovery.
        for (peer, (region, removed_by)) in &self.tombstoned {
            if self.peers.contains_key(region) {
                continue;
            }
            let t = Tombstone {
                peer: *peer,
                removed_by: *removed_by,
            };
            self.wal
                .append(RecordKind::Tombstone, *region, &encode_tombstone(&t));
        }
        self.wal.mark_durable(self.wal.len());
        let mut keep = log_start.clone();
        for region in self.wal.regions() {
            if keep.contains_key(&region) {
                continue;
            }
            let at = if self.peers.contains_key(&region) {
                self.store.persisted_applied(region).get()
            } else {
                u64::MAX
            };
            keep.insert(region, at);
        }
        self.wal.cut_before_needed(before, &keep)
    }

    /// The region ids this node hosts a replica of.
    pub fn regions(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.peers.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_map_back_to_nodes() {
        for r in 1..5 {
            for n in 0..7 {
                for gen in [0, 1, 7, GENERATIONS_MAX - 1] {
                    assert_eq!(node_of(peer_id(RegionId(r), n, gen).get()), n);
                }
            }
        }
        assert_ne!(peer_id(RegionId(1), 0, 1), peer_id(RegionId(2), 0, 0));
    }

    #[test]
    fn a_single_node_region_writes_survive_a_crash_after_the_sync() {
        let cfg = SimConfig::default();
        let meta = RegionMeta::whole_key_space(RegionId(1), vec![peer_meta(RegionId(1), 0, 0)]);
        let mut n = SimNode::new(0, &[meta], &cfg).unwrap();
        n.peers.get_mut(&RegionId(1)).unwrap().campaign();
        let drive = |n: &mut SimNode| {
            while n.has_work() {
                n.collect(0);
                n.wal.mark_durable(n.wal.len());
                n.persisted();
            }
        };
        drive(&mut n);
        let body = RequestBody::Put {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        };
        let w = Waiter {
            client: 0,
            op: 1,
            value: None,
        };
        n.propose(RegionId(1), body, w).unwrap();
        n.collect(0);
        n.wal.mark_durable(n.wal.len());
        let out = n.persisted();
        assert_eq!(out.finished.len(), 1);
        assert!(out.finished[0].1.is_ok());
        n.crash(0);
        n.start().unwrap();
        // The commit index may not be durable: leading again commits it.
        n.peers.get_mut(&RegionId(1)).unwrap().campaign();
        drive(&mut n);
        assert_eq!(n.store.pairs_in(b"", b"").len(), 1);
        // A checkpoint after a flush deletes the records before it.
        n.store.mem.flush();
        let applied = n.peers[&RegionId(1)].applied_index().get();
        assert!(n.checkpoint(&BTreeMap::from([(RegionId(1), applied)])) > 0);
        n.crash(0);
        n.start().unwrap();
        assert_eq!(n.store.pairs_in(b"", b"").len(), 1);
    }
}
