//! PD scheduling: operators, checkers and schedulers. No I/O, no clock:
//! time comes in as arguments, ids from a pool the driver fills through
//! the log.
//!
//! Owns `Scheduler`, the PD leader's scheduling soft state (a new leader
//! starts with none: running operators are not replicated, as region
//! statistics are not): the operator controller, the id pool and the
//! cluster view, and the order in which checkers run:
//! - on each region heartbeat (`on_region_heartbeat`): an operator moving
//!   something to a store that is down or offline ends; the controller advances or
//!   ends the region's operator and hands out its current step;
//!   with none running, the replica checker, balance-shard's leftover
//!   check, the split checker, then balance-shard for that region alone
//!   may create one;
//! - every `schedule_interval_ms` (`tick`): operators past their budget are
//!   cancelled, the cluster view is rebuilt, balance-hot-region, then
//!   balance-region and balance-leader (over regions that are not hot)
//!   create operators up to their limits, and offline stores left with no
//!   replica are due to become tombstones. Every region heartbeat feeds the
//!   hot cache (`hot`).
//!
//! One concern per file: `operator` (the model), `controller` (running
//! operators, limits), `ids` (the id pool), `cluster` (store health and
//! scores), `split`, `replica`, `balance`, `balance_region`,
//! `balance_leader`, `hot` (hot statistics), `balance_hot`, `balance_shard`. The contract with the nodes is docs/scheduling.md.

pub mod balance;
pub mod balance_hot;
pub mod balance_leader;
pub mod balance_region;
pub mod balance_shard;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod hot;
pub mod ids;
pub mod merge;
pub mod operator;
pub mod replica;
pub mod split;

#[cfg(test)]
mod tests;

pub use config::SchedConfig;

use crate::state::PdState;
use cluster::{ClusterView, Health};
use controller::{AddError, Controller};
use golem_wire::pd::{
    AdminOperator, Operator, OperatorInfo, OperatorStep, Peer, PeerRole, Region, RegionHeartbeat,
    RegionRoute,
};
use golem_wire::{GolemError, PeerId, RegionId, StoreId};
use hot::{FlowKind, HotCache};
use ids::IdPool;
use operator::{NewOp, OpSource};

/// Retry hint when the id pool is empty, in ms.
const IDS_RETRY_MS: u32 = 50;

/// What the driver must do after a tick.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickActions {
    /// Propose `AllocIds { count }` and hand the result to `on_ids`.
    pub alloc_ids: Option<u32>,
    /// Propose `SetStoreState { Tombstone }` for these offline, empty stores.
    pub tombstones: Vec<StoreId>,
}

/// The PD leader's scheduler.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedConfig,
    ctl: Controller,
    ids: IdPool,
    view: ClusterView,
    /// When this member became leader: stores it never heard from count
    /// as last heard then.
    leader_since_ms: u64,
    /// Last balance run (0: never).
    last_run_ms: u64,
    /// Hot flow per region, from every region heartbeat.
    hot: HotCache,
    /// The balance-hot-region scheduler's memory.
    hot_sched: balance_hot::HotScheduler,
    /// Each region's version and since when (the merge checker's
    /// split-merge interval).
    versions: std::collections::HashMap<RegionId, (u64, u64)>,
}

impl Scheduler {
    /// A scheduler with nothing running.
    pub fn new(cfg: SchedConfig, now_ms: u64) -> Scheduler {
        Scheduler {
            cfg,
            ctl: Controller::new(now_ms << 12),
            ids: IdPool::default(),
            view: ClusterView::default(),
            leader_since_ms: now_ms,
            last_run_ms: 0,
            hot: HotCache::default(),
            hot_sched: balance_hot::HotScheduler::default(),
            versions: std::collections::HashMap::new(),
        }
    }

    /// Forgets everything (this member became, or stopped being, leader).
    pub fn reset(&mut self, now_ms: u64) {
        *self = Scheduler::new(self.cfg.clone(), now_ms);
    }

    /// The configuration.
    pub fn config(&self) -> &SchedConfig {
        &self.cfg
    }

    /// The operator controller (tests, metrics).
    pub fn controller(&self) -> &Controller {
        &self.ctl
    }

    /// Ids applied from an `AllocIds` the driver proposed for the pool.
    pub fn on_ids(&mut self, first: u64, count: u32) {
        self.ids.refill(first, count);
    }

    /// A region heartbeat (already checked against the routing table): the
    /// operator step for its leader, if any.
    pub fn on_region_heartbeat(&mut self, hb: &RegionHeartbeat, now_ms: u64) -> Option<Operator> {
        let region = &hb.region;
        self.hot.observe(region.id, &hb.stats, now_ms, &self.cfg);
        let view = &self.view;
        // An operator moving something to a down or offline store ends now
        // (the checkers below plan again), not at its timeout. Not for a
        // store merely disconnected: ending on that broke golem-sim's
        // pd_splits_repairs_and_rebalances (seed 4), where silences are
        // short and frequent.
        let down = |s| view.stores.get(&s).is_some_and(|v| v.health.evacuate());
        self.ctl.end_if_target_down(region, down);
        if let Some(running) = self.ctl.get(region.id).map(|o| o.source) {
            let step = self.ctl.on_heartbeat(region, hb.leader, now_ms, &self.cfg);
            if step.is_some()
                || self.ctl.get(region.id).is_some()
                || !self.cfg.enabled
                || running == OpSource::Merge
            {
                return step;
            }
            // It just ended: balance-shard may move one of the region's
            // replicas at once (else it would wait for the region's next
            // heartbeat, up to 10 s when idle). Not after a merge's
            // alignment (it would undo it before the merge), and the other
            // checkers wait for that heartbeat, as before.
            let op = self.shard_move(hb)?;
            self.admit(op, region, now_ms).ok()?;
            return self.ctl.on_heartbeat(region, hb.leader, now_ms, &self.cfg);
        }
        if !self.cfg.enabled || self.view.stores.is_empty() {
            return None;
        }
        let op = if let Some(plan) = replica::check(region, hb.leader, &self.view, &self.cfg) {
            let needs_id = matches!(plan, replica::ReplicaPlan::Add { .. });
            let id = if needs_id {
                Some(self.ids.take(1)?[0])
            } else {
                None
            };
            replica::operator(region, &plan, id)?
        } else if let Some(op) = balance_shard::leftover(region, hb.leader, &self.ctl) {
            op
        } else if let Some(key) = split::check(region, &hb.stats, &self.cfg) {
            let ids = self.ids.take(1 + region.peers.len())?;
            NewOp {
                region: region.id,
                epoch: region.epoch,
                source: OpSource::Split,
                steps: vec![OperatorStep::Split {
                    key,
                    new_region: RegionId(ids[0]),
                    new_peers: ids[1..].iter().map(|&i| PeerId(i)).collect(),
                }],
                influence: vec![],
            }
        } else {
            self.shard_move(hb)?
        };
        self.admit(op, region, now_ms).ok()?;
        self.ctl.on_heartbeat(region, hb.leader, now_ms, &self.cfg)
    }

    /// Balance-shard for the reporting region alone: a move created here
    /// is handed out in this very answer (one made by `tick` waits for the
    /// region's next heartbeat, up to 10 s for an idle region).
    fn shard_move(&mut self, hb: &RegionHeartbeat) -> Option<NewOp> {
        if self.ctl.count(OpSource::BalanceShard) >= self.cfg.shard_schedule_limit {
            return None;
        }
        let route = RegionRoute {
            region: hb.region.clone(),
            leader: hb.region.peers.iter().find(|p| p.id == hb.leader).copied(),
            term: hb.term,
            stats: hb.stats.clone(),
        };
        // Peeked, not taken: an id is spent only on a move.
        let id = self.ids.peek()?;
        let op = balance_shard::schedule(&[&route], &self.view, &self.ctl, &self.cfg, id)?;
        assert_eq!(
            self.ids.take(1),
            Some(vec![id]),
            "the peeked id is the next"
        );
        Some(op)
    }

    /// Admits `op` on `region` and counts it in the view as done.
    fn admit(&mut self, op: NewOp, region: &Region, now_ms: u64) -> Result<OperatorInfo, AddError> {
        let influence = op.influence.clone();
        let steps = op.steps.clone();
        let info = self.ctl.add(op, &self.cfg, now_ms)?.info();
        self.view.apply(&influence, 1);
        self.view.apply_steps(region, &steps);
        Ok(info)
    }

    /// Periodic work (call every driver tick; runs every
    /// `schedule_interval_ms`).
    pub fn tick(&mut self, state: &PdState, now_ms: u64) -> TickActions {
        let mut out = TickActions {
            alloc_ids: self.ids.want(now_ms),
            ..TickActions::default()
        };
        if now_ms < self.last_run_ms + self.cfg.schedule_interval_ms {
            return out;
        }
        self.last_run_ms = now_ms;
        self.ctl.expire(now_ms, &self.cfg);
        self.view = ClusterView::build(state, &self.ctl, now_ms, self.leader_since_ms, &self.cfg);
        let mut raw = ClusterView {
            stores: self.view.stores.clone(),
        };
        for s in raw.stores.values_mut() {
            (s.regions, s.leaders, s.weight) = (0, 0, 0);
        }
        raw.count(state.routing().iter(), &Controller::new(1), &self.cfg);
        out.tombstones = raw
            .stores
            .values()
            .filter(|s| s.health == Health::Offline && s.regions == 0)
            .map(|s| s.id)
            .collect();
        if self.cfg.enabled {
            let routes: Vec<&RegionRoute> = state.routing().iter().collect();
            self.balance(&routes, now_ms);
            self.merge(&routes, now_ms);
        }
        out
    }

    /// Runs the merge checker over `routes` (in key order), up to
    /// `merge::MERGE_OPERATORS_MAX` running merge operators.
    pub fn merge(&mut self, routes: &[&RegionRoute], now_ms: u64) {
        let live: std::collections::HashSet<RegionId> =
            routes.iter().map(|r| r.region.id).collect();
        self.versions.retain(|id, _| live.contains(id));
        for r in routes {
            let v = r.region.epoch.version;
            let e = self.versions.entry(r.region.id).or_insert((v, now_ms));
            if e.0 != v {
                *e = (v, now_ms);
            }
        }
        let interval = self.cfg.split_merge_interval_ms;
        let versions = &self.versions;
        let settled = |id: RegionId| {
            versions
                .get(&id)
                .is_some_and(|&(_, since)| now_ms >= since + interval)
        };
        let mut plans = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let adjacent =
                |n: &&RegionRoute| n.region.end == r.region.start || n.region.start == r.region.end;
            let left = i
                .checked_sub(1)
                .map(|j| routes[j])
                .filter(|n| !r.region.start.is_empty() && adjacent(n));
            let right = routes
                .get(i + 1)
                .copied()
                .filter(|n| !r.region.end.is_empty() && adjacent(n));
            if let Some(plan) = merge::check(r, left, right, settled, &self.cfg) {
                plans.push((*r, plan));
            }
        }
        let mut busy = std::collections::HashSet::new();
        for (r, plan) in plans {
            if self.ctl.count(OpSource::Merge) >= merge::MERGE_OPERATORS_MAX {
                break;
            }
            let target = match &plan {
                merge::MergePlan::Merge { target } | merge::MergePlan::Align { target, .. } => {
                    *target
                }
            };
            let id = r.region.id;
            if busy.contains(&id)
                || busy.contains(&target)
                || self.ctl.get(id).is_some()
                || self.ctl.get(target).is_some()
            {
                continue;
            }
            let steps = match plan {
                merge::MergePlan::Merge { target } => vec![OperatorStep::Merge { target }],
                merge::MergePlan::Align { adds, removes, .. } => {
                    let Some(ids) = self.ids.take(adds.len()) else {
                        break;
                    };
                    let mut steps = Vec::new();
                    for ((add, remove), id) in adds.iter().zip(&removes).zip(ids) {
                        let peer = Peer {
                            id: PeerId(id),
                            ..*add
                        };
                        steps.push(OperatorStep::AddLearner { peer });
                        let same_store = r
                            .region
                            .peers
                            .iter()
                            .any(|p| p.id == *remove && p.store == peer.store);
                        if same_store {
                            // Another shard of the same store: one joint
                            // change, as balance-shard moves a replica.
                            steps.push(OperatorStep::ReplacePeer {
                                add: peer.id,
                                remove: *remove,
                            });
                        } else {
                            steps.push(OperatorStep::PromoteLearner { peer: peer.id });
                            steps.push(OperatorStep::RemovePeer { peer: *remove });
                        }
                    }
                    steps
                }
            };
            let op = NewOp {
                region: id,
                epoch: r.region.epoch,
                source: OpSource::Merge,
                steps,
                influence: vec![],
            };
            if self.admit(op, &r.region, now_ms).is_ok() {
                busy.insert(id);
                busy.insert(target);
            }
        }
    }

    /// Runs the balance schedulers up to their limits: hot regions first
    /// (balance-hot-region), then balance-region and balance-leader over
    /// the regions that are not hot (they would undo hot moves).
    pub fn balance(&mut self, routes: &[&RegionRoute], now_ms: u64) {
        self.balance_hot(routes, now_ms);
        let cold: Vec<&RegionRoute> = routes
            .iter()
            .filter(|r| !self.hot.is_hot(r.region.id, &self.cfg))
            .copied()
            .collect();
        let routes = &cold[..];
        while self.ctl.count(OpSource::BalanceRegion) < self.cfg.region_schedule_limit {
            let Some(&id) = self.ids.take(1).as_ref().and_then(|v| v.first()) else {
                break;
            };
            let Some(op) = balance_region::schedule(routes, &self.view, &self.ctl, &self.cfg, id)
            else {
                break; // the id is skipped, never reused
            };
            if self.admit_on(op, routes, now_ms).is_err() {
                break;
            }
        }
        while self.ctl.count(OpSource::BalanceLeader) < self.cfg.leader_schedule_limit {
            let Some(op) = balance_leader::schedule(routes, &self.view, &self.ctl, &self.cfg)
            else {
                break;
            };
            if self.admit_on(op, routes, now_ms).is_err() {
                break;
            }
        }
    }

    /// `admit` for an operator on one of `routes`.
    fn admit_on(
        &mut self,
        op: NewOp,
        routes: &[&RegionRoute],
        now_ms: u64,
    ) -> Result<OperatorInfo, AddError> {
        let Some(route) = routes.iter().find(|r| r.region.id == op.region) else {
            panic!(
                "a scheduler planned region {} outside the routes it was given",
                op.region
            );
        };
        let region = route.region.clone();
        self.admit(op, &region, now_ms)
    }

    /// Runs balance-hot-region (writes, then reads) up to its limit.
    fn balance_hot(&mut self, routes: &[&RegionRoute], now_ms: u64) {
        self.hot.expire(now_ms);
        self.hot_sched.prune(&self.ctl, now_ms);
        for kind in [FlowKind::Write, FlowKind::Read] {
            while self.hot_sched.running() < self.cfg.hot_region_schedule_limit {
                let new_peer = self.ids.peek().map(PeerId);
                let Some(plan) = self.hot_sched.schedule(
                    kind, routes, &self.view, &self.ctl, &self.hot, &self.cfg, now_ms, new_peer,
                ) else {
                    break;
                };
                if plan.op.steps.len() > 1 && self.ids.take(1).is_none() {
                    break; // a peer move uses the peeked id
                }
                let Ok(info) = self.admit_on(plan.op.clone(), routes, now_ms) else {
                    break;
                };
                self.hot_sched.record(info.id, &plan, now_ms);
            }
        }
    }

    /// The hot cache (tests, metrics).
    pub fn hot_cache(&self) -> &HotCache {
        &self.hot
    }

    /// The running operators.
    pub fn list(&self) -> Vec<OperatorInfo> {
        self.ctl.iter().map(|o| o.info()).collect()
    }

    /// Cancels the region's operator; whether it had one.
    pub fn cancel(&mut self, region: RegionId) -> bool {
        self.ctl.cancel(region)
    }

    /// An operator asked for by `golem ctl operator add`.
    pub fn admin_add(
        &mut self,
        state: &PdState,
        region: RegionId,
        op: AdminOperator,
        now_ms: u64,
    ) -> Result<OperatorInfo, GolemError> {
        let route = state.get_region_by_id(region)?;
        let r = &route.region;
        let on = |store: StoreId| r.peers.iter().find(|p| p.store == store).copied();
        let steps = match op {
            AdminOperator::TransferLeader { store } => match on(store) {
                Some(p) if p.role == PeerRole::Voter => {
                    vec![OperatorStep::TransferLeader { to: p.id }]
                }
                _ => return Err(GolemError::invalid("the region has no voter on that store")),
            },
            AdminOperator::RemovePeer { store } => {
                let p = on(store).ok_or_else(|| {
                    GolemError::invalid("the region has no replica on that store")
                })?;
                let voters = r.peers.iter().filter(|q| q.role == PeerRole::Voter).count();
                if p.role == PeerRole::Voter && voters <= 1 {
                    return Err(GolemError::invalid("cannot remove the region's last voter"));
                }
                vec![OperatorStep::RemovePeer { peer: p.id }]
            }
            AdminOperator::AddPeer { store } => {
                if on(store).is_some() {
                    return Err(GolemError::invalid(
                        "the region already has a replica on that store",
                    ));
                }
                let info = state.get_store(store, now_ms)?;
                if matches!(
                    info.state,
                    golem_wire::pd::StoreState::Offline | golem_wire::pd::StoreState::Tombstone
                ) {
                    return Err(GolemError::invalid("the store is offline or a tombstone"));
                }
                let id = self.take_ids(1)?[0];
                let peer = Peer {
                    id: PeerId(id),
                    store,
                    shard: self.view.least_loaded_shard(store),
                    role: PeerRole::Learner,
                };
                vec![
                    OperatorStep::AddLearner { peer },
                    OperatorStep::PromoteLearner { peer: peer.id },
                ]
            }
            AdminOperator::Split { key } => {
                let inside = key.as_slice() > r.start.as_slice()
                    && (r.end.is_empty() || key.as_slice() < r.end.as_slice());
                if !inside {
                    return Err(GolemError::invalid(
                        "the split key is not strictly inside the region",
                    ));
                }
                let ids = self.take_ids(1 + r.peers.len())?;
                vec![OperatorStep::Split {
                    key,
                    new_region: RegionId(ids[0]),
                    new_peers: ids[1..].iter().map(|&i| PeerId(i)).collect(),
                }]
            }
            AdminOperator::Merge { target } => {
                let t = state.get_region_by_id(target)?;
                if let Some(why) = merge::refusal(r, &t.region) {
                    return Err(GolemError::invalid(why));
                }
                vec![OperatorStep::Merge { target }]
            }
        };
        let op = NewOp {
            region,
            epoch: r.epoch,
            source: OpSource::Admin,
            steps,
            influence: vec![],
        };
        self.admit(op, &route.region, now_ms).map_err(|e| match e {
            AddError::RegionBusy { id } => GolemError::invalid(format!(
                "region {region} already has operator {id} (cancel it first)"
            )),
            AddError::StoreLimit { store } => GolemError::invalid(format!(
                "store {store} already receives {} replicas (store-limit-add-peer)",
                self.cfg.store_limit_add_peer
            )),
        })
    }

    fn take_ids(&mut self, n: usize) -> Result<Vec<u64>, GolemError> {
        self.ids.take(n).ok_or(GolemError::ServerBusy {
            retry_after_ms: IDS_RETRY_MS,
        })
    }

    /// Whether deleting `store` leaves enough stores for `max_replicas`
    /// (a store holding no replica can always go).
    pub fn check_delete(
        &self,
        state: &PdState,
        store: StoreId,
        now_ms: u64,
    ) -> Result<(), GolemError> {
        let holds = state.routing().peers().any(|p| p.store == store);
        if !holds {
            return Ok(());
        }
        let others = state
            .get_stores(false, now_ms)?
            .iter()
            .filter(|s| s.store.id != store && s.state != golem_wire::pd::StoreState::Offline)
            .count();
        if others < self.cfg.max_replicas {
            return Err(GolemError::invalid(format!(
                "deleting store {store} would leave {others} stores for {} replicas",
                self.cfg.max_replicas
            )));
        }
        Ok(())
    }
}
