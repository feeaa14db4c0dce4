//! A region hosted by this shard: its peer and the requests waiting on it.
//!
//! Owns the link between request tasks and the raft loop. Invariants: the
//! `RefCell` borrows are never held across an `.await` (the raft loop and
//! request tasks interleave on one thread); every proposal's waiter is
//! answered exactly once (by the raft loop, or dropped with the region,
//! which the waiting task reports as `DeadlineExceeded`: the write was
//! proposed, its outcome is unknown).

use crate::runtime::LocalNotify;
use golem_core::region::{ProposalToken, RegionPeer};
use golem_lsm::Lsm;
use golem_wire::{GolemError, RequestBody, ResponseBody};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Regions the raft loop must visit on its next pass (by id).
pub type ActiveSet = RefCell<HashSet<golem_wire::RegionId>>;

/// Result of a request against a region.
pub type RegionResult = Result<ResponseBody, GolemError>;

/// Load a leader served for the PD's schedulers: cumulative since the
/// handle was created (the PD link reports differences).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionLoad {
    pub read_bytes: u64,
    pub read_keys: u64,
    pub written_bytes: u64,
    pub written_keys: u64,
}

impl RegionLoad {
    /// The load since `earlier` (a counter below its earlier value comes
    /// from a new handle: all of it is new).
    pub fn since(&self, earlier: &RegionLoad) -> RegionLoad {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        RegionLoad {
            read_bytes: d(self.read_bytes, earlier.read_bytes),
            read_keys: d(self.read_keys, earlier.read_keys),
            written_bytes: d(self.written_bytes, earlier.written_bytes),
            written_keys: d(self.written_keys, earlier.written_keys),
        }
    }
}

/// A size estimate of the region's data, valid while the LSM's segment
/// set and the region's range are what they were: `(segments generation,
/// epoch version, estimate)`.
type CachedEstimate = (u64, u64, std::sync::Arc<golem_lsm::RangeEstimate>);

/// A read waiting for its batch's read-index round.
type ReadWaiter = (u64, oneshot::Sender<Result<(), GolemError>>);

/// One region on this shard.
pub struct RegionHandle {
    pub peer: RefCell<RegionPeer>,
    waiters: RefCell<HashMap<ProposalToken, oneshot::Sender<RegionResult>>>,
    next_token: Cell<ProposalToken>,
    /// Wakes the shard's raft loop when a proposal is made.
    raft_loop: Rc<LocalNotify>,
    /// The shard's set of regions the raft loop must visit (awake or
    /// touched since its last pass); see `poke`.
    active: Rc<ActiveSet>,
    /// This region's id (the key in `active`).
    id: golem_wire::RegionId,
    /// The shard's store, which reads are served from.
    store: Rc<RefCell<Lsm>>,
    /// Reads waiting for a read-index round, by batch id.
    read_waiters: RefCell<Vec<ReadWaiter>>,
    /// The batch new reads join; the raft loop asks raft to confirm it and
    /// opens the next one.
    read_batch: Cell<u64>,
    /// Whether the open batch has reads (so the loop must request it).
    read_batch_used: Cell<bool>,
    /// When each requested read batch was asked of raft (its heartbeat
    /// round started then or later).
    batch_started: RefCell<Vec<(u64, Instant)>>,
    /// Leader lease: reads are served without a round until this instant,
    /// in this term.
    lease: Cell<Option<(u64, Instant)>>,
    /// How long a confirmed round keeps the lease, counted from when the
    /// round was requested. Shorter than the election timeout (followers
    /// that acknowledged the round vote for no one else within it).
    lease_duration: Duration,
    /// Where peers that are not (yet) in this replica's metadata live,
    /// learned from their messages: an uninitialized replica answers its
    /// leader there. At most `LEARNED_PEERS_MAX`, only while uninitialized.
    learned: RefCell<HashMap<golem_wire::PeerId, golem_core::region::PeerMeta>>,
    /// When this replica started on this process: for one lease duration it
    /// grants no vote, since it may have acknowledged a leader's lease
    /// round before a crash and no longer remembers it.
    started: Cell<Instant>,
    /// Reads served and writes proposed here (a few adds per request).
    load: Cell<RegionLoad>,
    /// Keys of requests served since the last report (load-based split).
    samples: RefCell<KeySampler>,
    /// The last size estimate (see `estimate`).
    estimate: RefCell<Option<CachedEstimate>>,
}

impl std::fmt::Debug for RegionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionHandle")
            .field("region", &self.peer.borrow().meta().id)
            .field("waiters", &self.waiters.borrow().len())
            .finish()
    }
}

impl RegionHandle {
    pub fn new(
        peer: RegionPeer,
        raft_loop: Rc<LocalNotify>,
        active: Rc<ActiveSet>,
        store: Rc<RefCell<Lsm>>,
        lease_duration: Duration,
    ) -> Rc<RegionHandle> {
        let id = peer.meta().id;
        active.borrow_mut().insert(id);
        Rc::new(RegionHandle {
            id,
            active,
            peer: RefCell::new(peer),
            waiters: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            raft_loop,
            store,
            read_waiters: RefCell::new(Vec::new()),
            read_batch: Cell::new(1),
            read_batch_used: Cell::new(false),
            batch_started: RefCell::new(Vec::new()),
            lease: Cell::new(None),
            lease_duration,
            learned: RefCell::new(HashMap::new()),
            started: Cell::new(Instant::now()),
            load: Cell::new(RegionLoad::default()),
            samples: RefCell::new(KeySampler::new(id.get())),
            estimate: RefCell::new(None),
        })
    }

    /// For a replica created while the node runs (by a split or by its
    /// leader's message): it never acknowledged a lease round in an earlier
    /// life, so it may vote at once (a split's new region elects its first
    /// leader without waiting a lease).
    pub fn allow_votes_now(&self) {
        // `started` only gates votes: move it back by one lease.
        self.started.set(Instant::now() - self.lease_duration);
    }

    /// Notes where the sender of a message lives, while this replica does
    /// not know its region's members.
    pub fn learn_peer(&self, peer: golem_core::region::PeerMeta) {
        const LEARNED_PEERS_MAX: usize = 16;
        if self.peer.borrow().is_initialized() {
            if !self.learned.borrow().is_empty() {
                self.learned.borrow_mut().clear();
            }
            return;
        }
        let mut learned = self.learned.borrow_mut();
        if learned.len() < LEARNED_PEERS_MAX || learned.contains_key(&peer.id) {
            learned.insert(peer.id, peer);
        }
    }

    /// Where peers outside this replica's metadata live (see `learn_peer`).
    pub fn learned_peers(
        &self,
    ) -> std::cell::Ref<'_, HashMap<golem_wire::PeerId, golem_core::region::PeerMeta>> {
        self.learned.borrow()
    }

    /// Whether this peer leads under a valid lease: a read may be served at
    /// once. Renews the lease in the background when it is half spent.
    pub fn has_lease(&self) -> bool {
        let Some((term, until)) = self.lease.get() else {
            return false;
        };
        let peer = self.peer.borrow();
        let now = Instant::now();
        // No lease while this leader's split is in flight (the new region
        // may take writes elsewhere once the split commits).
        if !peer.is_leader() || peer.term().get() != term || now >= until || peer.is_splitting() {
            return false;
        }
        if until - now < self.lease_duration / 2 && !self.read_batch_used.get() {
            // Keep the lease warm: the next raft-loop pass asks for a round.
            self.read_batch_used.set(true);
            self.poke();
        }
        true
    }

    /// Whether reads must wait for a read-index round (several voters).
    pub fn needs_read_barrier(&self) -> bool {
        self.peer.borrow().needs_read_index()
    }

    /// Waits until this peer is confirmed leader by a quorum after the call
    /// and has applied everything committed before it (ReadIndex), so a
    /// read served next is linearizable; at once under a valid lease.
    /// `NotLeader` when this peer does not lead, or loses leadership first.
    pub async fn read_barrier(&self) -> Result<(), GolemError> {
        if self.has_lease() {
            return Ok(());
        }
        {
            let peer = self.peer.borrow();
            if !peer.needs_read_index() {
                return Ok(());
            }
            if !peer.is_leader() {
                let region = peer.meta().id;
                drop(peer);
                // A client came here: a sleeping follower resumes its clock
                // (its leader may be gone).
                self.wake();
                return Err(GolemError::NotLeader {
                    region,
                    leader: None,
                });
            }
        }
        let (tx, rx) = oneshot::channel();
        self.read_waiters
            .borrow_mut()
            .push((self.read_batch.get(), tx));
        self.read_batch_used.set(true);
        self.poke();
        rx.await.unwrap_or(Err(GolemError::ShuttingDown))
    }

    /// The raft loop, before collecting `Ready`: asks raft to confirm the
    /// open read batch, if it has reads, and opens the next one.
    pub fn request_reads(&self) {
        if self.read_batch_used.replace(false) {
            let batch = self.read_batch.get();
            self.read_batch.set(batch + 1);
            self.batch_started
                .borrow_mut()
                .push((batch, Instant::now()));
            self.peer.borrow_mut().request_read(batch);
        }
    }

    /// The raft loop, after a pass: releases the reads whose batch raft
    /// confirmed and whose index is applied; fails every waiting read with
    /// `NotLeader` if this peer no longer leads.
    pub fn release_reads(&self) {
        if self.read_waiters.borrow().is_empty() && self.batch_started.borrow().is_empty() {
            return;
        }
        let (ready, leader, region, term) = {
            let mut peer = self.peer.borrow_mut();
            (
                peer.take_ready_reads(),
                peer.is_leader(),
                peer.meta().id,
                peer.term().get(),
            )
        };
        // A confirmed round renews the lease from when it was requested.
        if let Some(&upto) = ready.iter().max() {
            let mut started = self.batch_started.borrow_mut();
            if let Some(at) = started
                .iter()
                .filter(|(b, _)| *b <= upto)
                .map(|(_, t)| *t)
                .max()
            {
                let until = at + self.lease_duration;
                let keep = self
                    .lease
                    .get()
                    .is_some_and(|(t, u)| t == term && u >= until);
                if leader && !keep {
                    self.lease.set(Some((term, until)));
                }
            }
            started.retain(|(b, _)| *b > upto);
        }
        if !leader {
            self.lease.set(None);
            self.batch_started.borrow_mut().clear();
        }
        let mut waiters = self.read_waiters.borrow_mut();
        if !leader {
            for (_, tx) in waiters.drain(..) {
                let _ = tx.send(Err(GolemError::NotLeader {
                    region,
                    leader: None,
                }));
            }
            return;
        }
        // Batches are confirmed in order: the highest ready one releases
        // every batch up to it.
        if let Some(&upto) = ready.iter().max() {
            let (done, rest): (Vec<_>, Vec<_>) = waiters.drain(..).partition(|(b, _)| *b <= upto);
            *waiters = rest;
            for (_, tx) in done {
                let _ = tx.send(Ok(()));
            }
        }
    }

    /// Restarts a hibernating region's clock (a request arrived).
    pub fn wake(&self) {
        let mut peer = self.peer.borrow_mut();
        if peer.is_hibernating() {
            peer.wake();
            drop(peer);
            self.poke();
        }
    }

    /// Wakes the shard's raft loop (something changed for this region).
    pub fn wake_raft_loop(&self) {
        self.poke();
    }

    /// Marks this region for the raft loop's next pass and wakes the loop:
    /// every change made to the peer outside the loop goes through here
    /// (the loop visits only marked and awake regions, plus every region
    /// once per sweep interval).
    pub fn poke(&self) {
        self.active.borrow_mut().insert(self.id);
        self.raft_loop.notify();
    }

    /// Load counted since this handle was created.
    pub fn load(&self) -> RegionLoad {
        self.load.get()
    }

    /// Bytes, keys and a middle key of the region's data in the shard's
    /// segments (`Lsm::estimate_range`: block indexes only), recomputed
    /// only when the segment set or the region's range changed.
    pub fn estimate(&self, store: &mut Lsm) -> std::sync::Arc<golem_lsm::RangeEstimate> {
        let generation = store.segments_generation();
        let peer = self.peer.borrow();
        let meta = peer.meta();
        let version = meta.epoch.version;
        if let Some((g, v, e)) = &*self.estimate.borrow() {
            if *g == generation && *v == version {
                return e.clone();
            }
        }
        let e = std::sync::Arc::new(store.estimate_range(&meta.start, &meta.end));
        *self.estimate.borrow_mut() = Some((generation, version, e.clone()));
        e
    }

    /// The keys sampled since the last call (see `KeySampler`).
    pub fn take_sampled_keys(&self) -> Vec<Vec<u8>> {
        self.samples.borrow_mut().take()
    }

    /// Proposes a write and waits until it is durable and applied.
    pub async fn write(&self, body: RequestBody) -> RegionResult {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let (tx, rx) = oneshot::channel();
        let (keys, bytes) = written(&body);
        if let Some(k) = sample_key(&body) {
            self.samples.borrow_mut().offer(k);
        }
        self.peer.borrow_mut().propose(body, token)?;
        let mut load = self.load.get();
        load.written_keys += keys;
        load.written_bytes += bytes;
        self.load.set(load);
        self.waiters.borrow_mut().insert(token, tx);
        self.poke();
        // Dropped unanswered (the shard stopped): the entry was proposed
        // and may still commit, so this is not `ShuttingDown` (which says
        // nothing happened and invites a retry) but an unknown outcome.
        rx.await.unwrap_or(Err(GolemError::DeadlineExceeded))
    }

    /// Proposes an admin command through `propose` (given the peer and a
    /// fresh token; it returns the entry's index) and waits until it
    /// applied (merge commands: `shard/merge.rs`).
    pub async fn propose_with(
        &self,
        propose: impl FnOnce(
            &mut golem_core::region::RegionPeer,
            ProposalToken,
        ) -> Result<u64, GolemError>,
    ) -> RegionResult {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let (tx, rx) = oneshot::channel();
        propose(&mut self.peer.borrow_mut(), token)?;
        self.waiters.borrow_mut().insert(token, tx);
        self.poke();
        rx.await.unwrap_or(Err(GolemError::DeadlineExceeded))
    }

    /// Serves a read from the applied state.
    pub fn read(&self, body: &RequestBody) -> RegionResult {
        let result = self.peer.borrow().read(body, &mut *self.store.borrow_mut());
        if let Ok(resp) = &result {
            let (keys, bytes) = read(body, resp);
            if let Some(k) = sample_key(body) {
                self.samples.borrow_mut().offer(k);
            }
            let mut load = self.load.get();
            load.read_keys += keys;
            load.read_bytes += bytes;
            self.load.set(load);
        }
        result
    }

    /// Steps a Raft message from another peer into this region's peer, if
    /// it is addressed to it, and wakes the raft loop.
    pub fn step(&self, to: golem_wire::PeerId, msg: raft::eraftpb::Message) {
        use raft::eraftpb::MessageType::{MsgRequestPreVote, MsgRequestVote};
        if matches!(msg.get_msg_type(), MsgRequestVote | MsgRequestPreVote)
            && self.started.get().elapsed() < self.lease_duration
        {
            // Might be inside a lease this replica granted before a
            // restart: no vote until any such lease has run out.
            return;
        }
        let mut peer = self.peer.borrow_mut();
        if peer.config().peer != to {
            tracing::debug!(region = %peer.meta().id, %to, "raft message for another peer id dropped");
            return;
        }
        if let Err(e) = peer.step(msg) {
            tracing::debug!(region = %peer.meta().id, error = %e, "raft message refused");
            return;
        }
        drop(peer);
        self.poke();
    }

    /// Moves the region's leadership to its replica on `store` and waits
    /// (up to `TRANSFER_WAIT`) until that replica leads. Only the leader can
    /// do it (`NotLeader` otherwise); a store without a replica is
    /// `InvalidArgument`; a transfer that does not complete in time (the
    /// target lags or is down) is `ServerBusy`.
    pub async fn transfer_leader(
        &self,
        store: golem_wire::StoreId,
    ) -> Result<ResponseBody, GolemError> {
        let target = {
            let peer = self.peer.borrow();
            let region = peer.meta().id;
            // A store holds two peers of a region only while one moves
            // between its shards: the voter is the one to lead.
            let on_store = || peer.meta().peers.iter().filter(move |p| p.store == store);
            let found = on_store()
                .find(|p| p.is_voter())
                .or_else(|| on_store().next());
            let Some(target) = found.map(|p| p.id) else {
                return Err(GolemError::invalid(format!(
                    "region {region} has no replica on store {store}"
                )));
            };
            target
        };
        self.transfer_leader_to(target).await
    }

    /// Moves the region's leadership to its peer `target` (see
    /// `transfer_leader`).
    pub async fn transfer_leader_to(
        &self,
        target: golem_wire::PeerId,
    ) -> Result<ResponseBody, GolemError> {
        const TRANSFER_WAIT: Duration = Duration::from_secs(5);
        let target = {
            let mut peer = self.peer.borrow_mut();
            let region = peer.meta().id;
            if peer.meta().peer(target).is_none() {
                return Err(GolemError::invalid(format!(
                    "peer {target} is not a member of region {region}"
                )));
            }
            if peer.leader_id() == Some(target) && peer.is_leader() {
                return Ok(ResponseBody::TransferLeader);
            }
            if !peer.is_leader() {
                return Err(GolemError::NotLeader {
                    region,
                    leader: None,
                });
            }
            peer.transfer_leadership_to(target);
            target
        };
        self.poke();
        let deadline = Instant::now() + TRANSFER_WAIT;
        while Instant::now() < deadline {
            crate::runtime::sleep(Duration::from_millis(10)).await;
            if self.peer.borrow().leader_id() == Some(target) {
                return Ok(ResponseBody::TransferLeader);
            }
        }
        Err(GolemError::ServerBusy {
            retry_after_ms: 100,
        })
    }

    /// Answers the waiter of `token` (the raft loop calls this).
    pub fn finish(&self, token: ProposalToken, result: RegionResult) {
        if let Some(tx) = self.waiters.borrow_mut().remove(&token) {
            // The requester may have gone (connection closed): nothing to do.
            let _ = tx.send(result);
        }
    }
}

/// Keys and bytes (keys and values) a write request writes.
fn written(body: &RequestBody) -> (u64, u64) {
    let len = |v: &[u8]| v.len() as u64;
    match body {
        RequestBody::Put { key, value } => (1, len(key) + len(value)),
        RequestBody::Delete { key } => (1, len(key)),
        RequestBody::CompareAndSwap { key, new_value, .. } => {
            (1, len(key) + new_value.as_deref().map_or(0, len))
        }
        RequestBody::BatchWrite { ops } => (
            ops.len() as u64,
            ops.iter()
                .map(|op| match op {
                    golem_wire::WriteOp::Put { key, value } => len(key) + len(value),
                    golem_wire::WriteOp::Delete { key } => len(key),
                })
                .sum(),
        ),
        _ => (0, 0),
    }
}

/// Keys and bytes (keys and values) a read returned.
fn read(body: &RequestBody, resp: &ResponseBody) -> (u64, u64) {
    let len = |v: &[u8]| v.len() as u64;
    match (body, resp) {
        (RequestBody::Get { key }, ResponseBody::Get { value }) => {
            (1, len(key) + value.as_deref().map_or(0, len))
        }
        (RequestBody::Scan { .. }, ResponseBody::Scan { pairs, .. }) => (
            pairs.len() as u64,
            pairs.iter().map(|p| len(&p.key) + len(&p.value)).sum(),
        ),
        (RequestBody::BatchGet { keys }, ResponseBody::BatchGet { values }) => (
            keys.len() as u64,
            keys.iter().map(|k| len(k)).sum::<u64>()
                + values.iter().flatten().map(|v| len(v)).sum::<u64>(),
        ),
        _ => (0, 0),
    }
}

/// The key a request is routed by (what a load-based split divides).
fn sample_key(body: &RequestBody) -> Option<&[u8]> {
    match body {
        RequestBody::Get { key }
        | RequestBody::Put { key, .. }
        | RequestBody::Delete { key }
        | RequestBody::CompareAndSwap { key, .. } => Some(key),
        RequestBody::Scan { start, .. } => Some(start),
        RequestBody::BatchGet { keys } => keys.first().map(Vec::as_slice),
        RequestBody::BatchWrite { ops } => ops.first().map(|o| o.key()),
        _ => None,
    }
}

/// A uniform sample of at most `PD_SAMPLED_KEYS_MAX` request keys since
/// the last `take` (reservoir sampling, Algorithm R; xorshift randomness
/// seeded by the region id: a few integer operations per request, a key
/// copy only when it is kept).
#[derive(Debug)]
pub struct KeySampler {
    seen: u64,
    keys: Vec<Vec<u8>>,
    rng: u64,
}

impl KeySampler {
    pub fn new(seed: u64) -> KeySampler {
        KeySampler {
            seen: 0,
            keys: Vec::new(),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// Considers one request's key.
    pub fn offer(&mut self, key: &[u8]) {
        let max = golem_wire::pd::PD_SAMPLED_KEYS_MAX;
        self.seen += 1;
        if self.keys.len() < max {
            self.keys.push(key.to_vec());
            return;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = self.rng % self.seen;
        if (slot as usize) < max {
            self.keys[slot as usize] = key.to_vec();
        }
    }

    /// The sample so far; starts a new one.
    pub fn take(&mut self) -> Vec<Vec<u8>> {
        self.seen = 0;
        std::mem::take(&mut self.keys)
    }
}

#[cfg(test)]
mod sampler_tests {
    use super::KeySampler;

    #[test]
    fn the_sample_is_bounded_and_roughly_uniform() {
        let mut s = KeySampler::new(7);
        let mut low = 0;
        for round in 0..200 {
            for i in 0..1000u32 {
                s.offer(&i.to_be_bytes());
            }
            let keys = s.take();
            assert_eq!(
                keys.len(),
                golem_wire::pd::PD_SAMPLED_KEYS_MAX,
                "round {round}"
            );
            low += keys
                .iter()
                .filter(|k| u32::from_be_bytes(k.as_slice().try_into().unwrap()) < 500)
                .count();
        }
        // Half the keys are below 500: about half the samples too.
        let share = low as f64 / (200.0 * golem_wire::pd::PD_SAMPLED_KEYS_MAX as f64);
        assert!((0.45..0.55).contains(&share), "share {share}");
        assert!(s.take().is_empty());
    }
}
