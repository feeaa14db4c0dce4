//! The simulated PD: golem-pd's state machine (`PdState`) and scheduler
//! (`sched::Scheduler`) driven at simulated time, as the PD's driver
//! drives them (`pd/src/server/driver`), with its operator steps carried
//! out on region leaders as the node does (`engine/src/shard/operator.rs`).
//!
//! Every `PD_TICK_MS`: each live node sends a store heartbeat; each
//! region's leader (highest term among live initialized replicas) sends a
//! region heartbeat with its metadata and statistics computed from its
//! node's store (keys, bytes, and the middle key as the split key: what
//! the LSM's block indexes estimate in the product); the PD answers it
//! with the region's current operator step, if any (a metadata change is
//! applied to the routing table as the PD's log would); then the
//! scheduler's tick runs (balance, the id pool's refills).
//!
//! The PD is one reliable member with no network between it and the nodes
//! (its own faults are golem-pd's tests' business); the nodes' side is
//! what is under test: steps become the same proposals and leadership
//! transfers the shell makes, through `SimNode::propose`.
//!
//! Invariants (the node's contract, docs/scheduling.md): a step runs only
//! on the region's leader and only at the operator's epoch exactly; at
//! most one step per region runs on a node (until its answer, a crash of
//! the node, or `STEP_TIMEOUT_MS`); nothing here is durable. The PD runs
//! until the final reads (through the drain: an operator cut short there
//! could leave a learner on a dead node, which only the PD removes); its
//! balance schedulers come to rest, so the drain still converges.

use super::{Phase, Sim};
use crate::event::Event;
use crate::node::{store_of, Waiter};
use golem_core::region::{PeerRole as CoreRole, RegionMeta};
use golem_pd::sched::{SchedConfig, Scheduler};
use golem_pd::state::{HeartbeatEffect, PdCommand, PdState, StoreTimeouts};
use golem_wire::pd::{
    Operator, OperatorStep, PdResponseBody, Peer, PeerRole, Region, RegionHeartbeat, RegionStats,
    Store, StoreState, StoreStats,
};
use golem_wire::{ClusterId, PeerChange, PeerChangeKind, PeerId, RegionId, RequestBody};
use std::collections::BTreeMap;

/// The client id of the PD's step proposals (answers come back to it).
pub const PD_CLIENT: usize = usize::MAX - 1;
/// Heartbeat round and scheduler tick interval.
const PD_TICK_MS: u64 = 100;
/// Longest a step occupies its region's slot on a node.
const STEP_TIMEOUT_MS: u64 = 3_000;

/// A step proposed on a region's leader, waiting for its answer.
#[derive(Debug)]
struct Running {
    req: u64,
    /// The node's incarnation: a crash forgets the step.
    inc: u64,
    deadline_ms: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct SimPd {
    state: PdState,
    sched: Scheduler,
    split_keys: u64,
    /// Steps running by (region, leader node).
    running: BTreeMap<(RegionId, usize), Running>,
    next_req: u64,
    /// When each region was first reported over the split threshold.
    split_due_since: BTreeMap<RegionId, u64>,
    /// Scenario timings, virtual ms.
    pub killed_at_ms: Option<u64>,
    pub repaired_at_ms: Option<u64>,
    /// Time from a region's first report over the split threshold to its
    /// first report under it, per split.
    pub split_latencies_ms: Vec<u64>,
    pub steps_started: u64,
}

fn store(node: usize) -> Store {
    Store {
        id: store_of(node),
        addr: format!("127.0.0.1:{}", 20_000 + node),
        shard_count: 1,
    }
}

/// A region's metadata as a node reports it (`pd_link::region_heartbeat`).
fn pd_region(meta: &RegionMeta) -> Region {
    Region {
        id: meta.id,
        start: meta.start.clone(),
        end: meta.end.clone(),
        epoch: meta.epoch,
        peers: meta
            .peers
            .iter()
            .map(|p| Peer {
                id: p.id,
                store: p.store,
                shard: p.shard,
                role: if p.role == CoreRole::Learner {
                    PeerRole::Learner
                } else {
                    PeerRole::Voter
                },
            })
            .collect(),
    }
}

/// What a leader does for a step (`shard::operator::Action`).
#[derive(Debug)]
enum Action {
    Propose(RequestBody),
    TransferLeader(PeerId),
}

/// A key inside the region to route an admin request by.
fn region_key(meta: &RegionMeta) -> Vec<u8> {
    if meta.start.is_empty() {
        vec![0]
    } else {
        meta.start.clone()
    }
}

fn change(meta: &RegionMeta, kind: PeerChangeKind, p: &golem_core::region::PeerMeta) -> Action {
    Action::Propose(RequestBody::ChangePeers {
        key: region_key(meta),
        changes: vec![PeerChange {
            kind,
            peer: p.id,
            store: p.store,
            shard: p.shard,
        }],
    })
}

/// What leader `me` of `meta` does for `op` (`shard::operator::plan`):
/// None for a stale, done, invalid or unsupported step.
fn plan(op: &Operator, meta: &RegionMeta, me: PeerId) -> Option<Action> {
    if op.region != meta.id || op.epoch != meta.epoch {
        return None;
    }
    match &op.step {
        OperatorStep::AddLearner { peer } => {
            if meta.peer(peer.id).is_some() {
                return None;
            }
            let p = golem_core::region::PeerMeta::new(peer.id, peer.store, peer.shard);
            Some(change(meta, PeerChangeKind::AddLearner, &p))
        }
        OperatorStep::PromoteLearner { peer } => {
            let p = meta.peer(*peer)?;
            (p.role != CoreRole::Voter).then(|| change(meta, PeerChangeKind::AddVoter, p))
        }
        OperatorStep::RemovePeer { peer } => {
            let p = meta.peer(*peer)?;
            if *peer != me {
                return Some(change(meta, PeerChangeKind::Remove, p));
            }
            meta.peers
                .iter()
                .find(|q| q.id != me && q.role == CoreRole::Voter)
                .map(|q| Action::TransferLeader(q.id))
        }
        OperatorStep::TransferLeader { to } => {
            let p = meta.peer(*to)?;
            (*to != me && p.role == CoreRole::Voter).then_some(Action::TransferLeader(*to))
        }
        OperatorStep::Split {
            key,
            new_region,
            new_peers,
        } => (meta.contains(key) && key.as_slice() != meta.start.as_slice()).then(|| {
            Action::Propose(RequestBody::Split {
                key: key.clone(),
                split_key: key.clone(),
                new_region: *new_region,
                new_peers: new_peers.clone(),
            })
        }),
        OperatorStep::Merge { .. } => None,
        // Balance-shard's move (the simulated nodes have one shard each,
        // so the PD never makes one; translated as the node does).
        OperatorStep::ReplacePeer { add, remove } => {
            let new = meta.peer(*add)?;
            if *remove == me {
                return meta
                    .peers
                    .iter()
                    .find(|q| q.id != me && q.role == CoreRole::Voter)
                    .map(|q| Action::TransferLeader(q.id));
            }
            let mut changes = Vec::new();
            if new.role == CoreRole::Learner {
                changes.push(PeerChange {
                    kind: PeerChangeKind::AddVoter,
                    peer: new.id,
                    store: new.store,
                    shard: new.shard,
                });
            }
            if let Some(old) = meta.peer(*remove) {
                changes.push(PeerChange {
                    kind: PeerChangeKind::Remove,
                    peer: old.id,
                    store: old.store,
                    shard: old.shard,
                });
            }
            (!changes.is_empty()).then(|| {
                Action::Propose(RequestBody::ChangePeers {
                    key: region_key(meta),
                    changes,
                })
            })
        }
    }
}

impl SimPd {
    /// A PD bootstrapped with `first` (on node 0's store) and every store
    /// present from the start.
    fn new(first: &RegionMeta, stores: &[usize], sched: SchedConfig) -> SimPd {
        let timeouts = StoreTimeouts {
            disconnected_after_ms: sched.store_disconnected_after_ms,
            down_after_ms: sched.max_store_down_time_ms,
        };
        let mut state = PdState::new(timeouts);
        let boot = PdCommand::Bootstrap {
            cluster: ClusterId(1),
            store: store(stores[0]),
            region: pd_region(first),
        };
        state.apply(&boot).expect("bootstrap");
        for &n in &stores[1..] {
            state
                .apply(&PdCommand::PutStore { store: store(n) })
                .expect("put store");
        }
        SimPd {
            state,
            split_keys: sched.split_region_keys,
            sched: Scheduler::new(sched, 0),
            running: BTreeMap::new(),
            next_req: 0,
            split_due_since: BTreeMap::new(),
            killed_at_ms: None,
            repaired_at_ms: None,
            split_latencies_ms: Vec::new(),
            steps_started: 0,
        }
    }

    /// `node` joins: its store is registered.
    pub fn join(&mut self, node: usize, _now_ms: u64) {
        self.state
            .apply(&PdCommand::PutStore { store: store(node) })
            .expect("put store");
    }

    /// Operators ended, by outcome.
    pub fn ended(&self) -> Vec<(String, u64)> {
        self.sched
            .controller()
            .ended
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    }
}

impl Sim {
    /// Starts the PD with the first region and every node present now.
    pub(super) fn start_pd(&mut self, first: &RegionMeta) {
        let stores: Vec<usize> = (0..self.nodes.len()).filter(|&n| !self.absent[n]).collect();
        let sched = SchedConfig {
            max_replicas: self.cfg.replicas,
            split_region_keys: self.cfg.pd_split_keys,
            split_region_bytes: u64::MAX / 2,
            max_store_down_time_ms: self.cfg.pd_down_ms,
            store_disconnected_after_ms: (self.cfg.pd_down_ms / 2).clamp(1, 1_000),
            schedule_interval_ms: 200,
            step_timeout_ms: 5_000,
            add_learner_timeout_ms: 20_000,
            ..SchedConfig::default()
        };
        self.pd = Some(SimPd::new(first, &stores, sched));
        self.q.after(PD_TICK_MS, Event::PdTick);
    }

    /// One heartbeat round and scheduler tick.
    pub(super) fn on_pd_tick(&mut self) {
        let Some(mut pd) = self.pd.take() else {
            return;
        };
        if matches!(self.phase, Phase::Faults | Phase::Tail | Phase::Drain) {
            self.pd_round(&mut pd);
        }
        self.pd = Some(pd);
        if self.phase != Phase::Done {
            self.q.after(PD_TICK_MS, Event::PdTick);
        }
    }

    fn pd_round(&mut self, pd: &mut SimPd) {
        let now = self.q.now_ms();
        for n in 0..self.nodes.len() {
            if !self.nodes[n].up {
                continue;
            }
            let stats = StoreStats {
                region_count: self.nodes[n].peers.len() as u32,
                leader_count: self.nodes[n]
                    .peers
                    .values()
                    .filter(|p| p.is_leader())
                    .count() as u32,
                ..StoreStats::default()
            };
            pd.state
                .store_heartbeat(store_of(n), stats, now)
                .expect("a registered store");
        }
        for region in self.regions.clone() {
            let Some((node, peer)) = self.leader_of(region) else {
                continue;
            };
            let meta = peer.meta().clone();
            let hb = RegionHeartbeat {
                region: pd_region(&meta),
                leader: peer.config().peer,
                term: peer.term().get(),
                stats: self.region_stats(node, &meta),
            };
            self.note_split_due(pd, &hb, now);
            // The driver's `RegionHeartbeat` request (`requests.rs`).
            let stale_leader = pd
                .state
                .routing()
                .get(region)
                .is_some_and(|r| r.term > hb.term);
            let Ok(effect) = pd.state.region_heartbeat_local(&hb) else {
                continue; // stale: the PD knows newer metadata
            };
            let op = if stale_leader {
                None
            } else {
                pd.sched.on_region_heartbeat(&hb, now)
            };
            if effect == HeartbeatEffect::Meta {
                let cmd = PdCommand::RegionHeartbeat {
                    heartbeat: (&hb).into(),
                };
                if let Err(e) = pd.state.apply(&cmd) {
                    self.trace(|| format!("pd: heartbeat of region {region} refused: {e}"));
                }
            }
            if let Some(op) = op {
                self.pd_execute(pd, node, op);
            }
        }
        let actions = pd.sched.tick(&pd.state, now);
        if let Some(count) = actions.alloc_ids {
            if let Ok(Some(PdResponseBody::AllocIds { first, count })) =
                pd.state.apply(&PdCommand::AllocIds { count })
            {
                pd.sched.on_ids(first, count);
            }
        }
        for store in actions.tombstones {
            let cmd = PdCommand::SetStoreState {
                store,
                state: StoreState::Tombstone,
            };
            let _ = pd.state.apply(&cmd);
        }
        if pd.killed_at_ms.is_some() && pd.repaired_at_ms.is_none() && self.repaired() {
            pd.repaired_at_ms = Some(now);
            self.trace(|| "pd: every region has its voters on live nodes again".into());
        }
    }

    /// Every region led, with `replicas` voters, all on live nodes.
    fn repaired(&self) -> bool {
        self.regions.iter().all(|&r| {
            self.leader_of(r).is_some_and(|(_, p)| {
                let voters: Vec<_> = p
                    .meta()
                    .peers
                    .iter()
                    .filter(|q| q.role == CoreRole::Voter)
                    .collect();
                voters.len() == self.cfg.replicas
                    && voters.iter().all(|q| {
                        let n = q.store.get() as usize - 1;
                        self.nodes[n].up && !self.absent[n]
                    })
            })
        })
    }

    /// Records the time from a region's first report over the split
    /// threshold to its first report under it (its split applied).
    fn note_split_due(&mut self, pd: &mut SimPd, hb: &RegionHeartbeat, now: u64) {
        let id = hb.region.id;
        if hb.stats.approximate_keys > pd.split_keys {
            pd.split_due_since.entry(id).or_insert(now);
        } else if let Some(since) = pd.split_due_since.remove(&id) {
            pd.split_latencies_ms.push(now - since);
        }
    }

    /// What the leader on `node` reports of `meta`'s data: keys, bytes,
    /// and the middle key as the split key (strictly inside the range).
    fn region_stats(&self, node: usize, meta: &RegionMeta) -> RegionStats {
        let pairs = self.nodes[node].store.pairs_in(&meta.start, &meta.end);
        let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        let split_key = pairs
            .get(pairs.len() / 2)
            .map(|(k, _)| k.clone())
            .filter(|k| k.as_slice() > meta.start.as_slice());
        RegionStats {
            approximate_size_bytes: bytes as u64,
            approximate_keys: pairs.len() as u64,
            split_key,
            ..RegionStats::default()
        }
    }

    /// Runs `op` on its region's leader at `node` if the region has no
    /// step running there (`shard::operator::start`).
    fn pd_execute(&mut self, pd: &mut SimPd, node: usize, op: Operator) {
        let now = self.q.now_ms();
        let inc = self.nodes[node].incarnation;
        let key = (op.region, node);
        if pd
            .running
            .get(&key)
            .is_some_and(|r| r.inc == inc && now < r.deadline_ms)
        {
            return;
        }
        let Some(peer) = self.nodes[node].peers.get_mut(&op.region) else {
            return;
        };
        if !peer.is_leader() {
            return;
        }
        let Some(action) = plan(&op, peer.meta(), peer.config().peer) else {
            return;
        };
        self.trace(|| format!("pd: operator {} on node {node}: {:?}", op.id, op.step));
        match &op.step {
            OperatorStep::AddLearner { peer } => {
                self.peer_nodes
                    .insert(peer.id, peer.store.get() as usize - 1);
            }
            OperatorStep::Split { new_peers, .. } => {
                let meta = self.nodes[node].peers[&op.region].meta();
                for (id, p) in new_peers.iter().zip(&meta.peers) {
                    self.peer_nodes.insert(*id, p.store.get() as usize - 1);
                }
            }
            _ => {}
        }
        pd.steps_started += 1;
        match action {
            Action::TransferLeader(to) => {
                let peer = self.nodes[node]
                    .peers
                    .get_mut(&op.region)
                    .expect("checked above");
                peer.transfer_leadership_to(to);
            }
            Action::Propose(body) => {
                pd.next_req += 1;
                let req = pd.next_req;
                let w = Waiter {
                    client: PD_CLIENT,
                    op: req,
                    value: None,
                };
                if self.nodes[node].propose(op.region, body, w).is_ok() {
                    pd.running.insert(
                        key,
                        Running {
                            req,
                            inc,
                            deadline_ms: now + STEP_TIMEOUT_MS,
                        },
                    );
                }
            }
        }
        self.kick(node);
    }

    /// The answer to the PD step proposal `req`: its slot is free.
    pub(super) fn on_pd_answer(&mut self, req: u64) {
        if let Some(pd) = self.pd.as_mut() {
            pd.running.retain(|_, r| r.req != req);
        }
    }
}
