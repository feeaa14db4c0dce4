//! `SimNode`: one simulated node — one shard holding a replica of every
//! region, its WAL and its store — driven the way the shard's raft loop
//! drives the real one (`engine/src/shard/raft_loop.rs`).
//!
//! Owns the node's region peers, `SimWal`, `SimStore`, the `Ready`s
//! collected and not yet persisted, the sync in flight, the proposals
//! waiting for an answer, and the reads waiting for a ReadIndex round
//! (batched per region exactly as `engine/src/shard/region_handle.rs`
//! does). The simulator decides *when* things happen (passes, sync
//! completions, crashes); this type does each of them.
//!
//! Invariants: at most one sync is in flight, and while it is no new pass
//! collects (one batch per sync, as the WAL does); every `PendingReady` is
//! given back to its peer by `persisted` before the next `collect`; a
//! crash drops every peer, pending `Ready`, waiter and waiting read, and
//! keeps only what the WAL and the store made durable (plus the torn
//! prefix the simulator chose); a checkpoint is written only between
//! passes.

use crate::config::SimConfig;
use crate::store::SimStore;
use crate::wal::SimWal;
use golem_core::raft_log::FetchRequest;
use golem_core::region::{
    PeerConfig, PeerMeta, PendingReady, ProposalToken, RegionMeta, RegionPeer,
};
use golem_core::store::KvStore;
use golem_core::wal_record::{RecordKind, WalSink};
use golem_wire::{
    GolemError, LogIndex, PeerId, RegionId, RequestBody, ResponseBody, ShardId, StoreId,
};
use raft::eraftpb::Message;
use std::collections::BTreeMap;

/// Peer ids of different nodes never collide within a region; this many
/// ids are reserved per region.
pub const PEERS_PER_REGION_MAX: u64 = 16;

/// The raft peer id of `node`'s replica of `region` (unique cluster-wide,
/// as the PD allocates them).
pub fn peer_id(region: RegionId, node: usize) -> PeerId {
    PeerId(region.get() * PEERS_PER_REGION_MAX + node as u64 + 1)
}

/// `node`'s replica of `region`: its peer id, on store `node + 1`, shard 0.
pub fn peer_meta(region: RegionId, node: usize) -> PeerMeta {
    PeerMeta::new(peer_id(region, node), StoreId(node as u64 + 1), ShardId(0))
}

/// The node hosting raft peer `peer`.
pub fn node_of(peer: u64) -> usize {
    ((peer - 1) % PEERS_PER_REGION_MAX) as usize
}

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
    cfgs: BTreeMap<RegionId, PeerConfig>,
    pending: Vec<(RegionId, PendingReady)>,
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
}

impl SimNode {
    /// A node whose WAL holds each region's `RegionMeta` (durable), and
    /// whose peers are recovered from it, like a shard that just created
    /// its replicas.
    pub fn new(id: usize, metas: &[RegionMeta], cfg: &SimConfig) -> Result<SimNode, String> {
        let mut wal = SimWal::default();
        let mut cfgs = BTreeMap::new();
        for meta in metas {
            wal.append(RecordKind::RegionMeta, meta.id, &meta.encode());
            let mut pc = PeerConfig::new(meta.id, peer_id(meta.id, id));
            pc.election_ticks = cfg.election_ticks;
            // raft-rs draws election timeouts from a thread-local generator
            // unless the range is one tick wide; the simulator's tick
            // timing supplies the randomness instead.
            pc.election_jitter_ticks = 1;
            pc.heartbeat_ticks = cfg.heartbeat_ticks;
            pc.entry_cache_entries_max = cfg.entry_cache_entries_max;
            pc.log_retain_entries_min = cfg.log_retain_entries_min;
            cfgs.insert(meta.id, pc);
        }
        wal.mark_durable(wal.len());
        let mut node = SimNode {
            id,
            up: false,
            incarnation: 0,
            wal,
            store: SimStore::default(),
            peers: BTreeMap::new(),
            cfgs,
            pending: Vec::new(),
            reads: BTreeMap::new(),
            sync_in_flight: None,
            pass_scheduled: false,
            tick_ms: cfg.tick_ms,
            lease_ms: 0,
            started_ms: 0,
            waiters: BTreeMap::new(),
            next_token: 1,
        };
        node.start()?;
        Ok(node)
    }

    /// Recovers every region from the WAL's records and the store, as the
    /// shard does at start. An error is a recovery failure (a finding).
    pub fn start(&mut self) -> Result<(), String> {
        assert!(!self.up, "node {} started twice", self.id);
        for (region, pc) in &self.cfgs {
            let records = self.wal.region_records(*region);
            let peer = RegionPeer::recover(pc.clone(), records, &mut self.store).map_err(|e| {
                let durable = self.store.mem.clone().persisted_applied(*region);
                format!(
                    "node {} region {region}: recovery failed: {e}\nstore durable applied index: {}\nthe region's WAL records:\n{}",
                    self.id,
                    durable,
                    self.wal.describe_region(*region)
                )
            })?;
            self.peers.insert(*region, peer);
        }
        self.up = true;
        Ok(())
    }

    /// A process crash: everything not durable is lost, except the first
    /// `wal_tail` unsynced WAL records.
    pub fn crash(&mut self, wal_tail: usize) {
        self.up = false;
        self.incarnation += 1;
        self.peers.clear();
        self.pending.clear();
        self.reads.clear();
        self.sync_in_flight = None;
        self.pass_scheduled = false;
        self.waiters.clear();
        self.wal.crash(wal_tail);
        self.store.mem.crash();
    }

    /// Whether a pass has work: a peer's `Ready`, or reads to confirm.
    pub fn has_work(&self) -> bool {
        self.peers.values().any(|p| p.has_ready()) || self.reads.values().any(|r| r.batch_used)
    }

    /// The first half of a pass: asks raft to confirm each region's open
    /// read batch, then every peer's `Ready` into the WAL. Returns whether
    /// the records must be synced before `persisted`.
    pub fn collect(&mut self, now_ms: u64) -> bool {
        assert!(self.pending.is_empty() && self.sync_in_flight.is_none());
        let mut must_sync = false;
        for (region, peer) in self.peers.iter_mut() {
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
    /// messages and fetches out.
    pub fn persisted(&mut self) -> PassOutput {
        let mut out = PassOutput::default();
        let pending = std::mem::take(&mut self.pending);
        let regions: Vec<RegionId> = pending.iter().map(|(r, _)| *r).collect();
        for (region, p) in pending {
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
        }
        for region in regions {
            self.release_reads(region, &mut out.reads);
        }
        out
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

    /// What the shell's WAL garbage collection does: a checkpoint of every
    /// region at `log_start[region]`, synced, then the records it makes
    /// useless deleted. Returns the number of records deleted.
    pub fn checkpoint(&mut self, log_start: &BTreeMap<RegionId, u64>) -> usize {
        assert!(self.between_passes(), "checkpoint between passes only");
        let before = self.wal.len();
        for (region, peer) in self.peers.iter_mut() {
            peer.write_checkpoint(LogIndex(log_start[region]), &mut self.wal);
        }
        self.wal.mark_durable(self.wal.len());
        self.wal.cut_before_needed(before, log_start)
    }

    /// The region ids this node hosts.
    pub fn regions(&self) -> impl Iterator<Item = RegionId> + '_ {
        self.cfgs.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_map_back_to_nodes() {
        for r in 1..5 {
            for n in 0..7 {
                assert_eq!(node_of(peer_id(RegionId(r), n).get()), n);
            }
        }
    }

    #[test]
    fn a_single_node_region_writes_survive_a_crash_after_the_sync() {
        let cfg = SimConfig::default();
        let meta = RegionMeta::whole_key_space(RegionId(1), vec![peer_meta(RegionId(1), 0)]);
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
