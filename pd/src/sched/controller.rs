//! `Controller`: the running operators, at most one per region.
//!
//! Owns every running operator (leader-local soft state: a new PD leader
//! starts with none) and the rules that start, advance and end them:
//! - `add` admits an operator only if its region has none and the per-store
//!   limit holds (at most `store_limit_add_peer` operators with a pending
//!   `AddLearner` on one store: each costs that store a snapshot; a repair
//!   operator of the replica checker may go up to the higher
//!   `store_limit_repair_add_peer`, so repair is never queued behind
//!   balance);
//! - `on_heartbeat` advances past every step the heartbeat shows done,
//!   ends a finished operator, cancels one whose region's epoch moved
//!   without one of its steps being seen (someone else changed the region),
//!   and hands the current step to the leader;
//! - `expire` cancels operators whose current step ran past its budget;
//! - `end_if_target_down` ends one whose remaining steps move a replica
//!   or the leadership to a store that is down or offline (its step would
//!   only time out while the region waits for repair).
//!
//! Invariant: the epoch handed out with a step is the region epoch the PD
//! last saw with every earlier step done, so a node can refuse a step whose
//! epoch is not its region's current one.

use super::config::SchedConfig;
use super::operator::{step_done, NewOp, OpSource, PendingOp};
use golem_wire::pd::{Operator, Region};
use golem_wire::{PeerId, RegionId, StoreId};
use std::collections::BTreeMap;

/// Why an operator ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// The region's epoch moved by something else than its steps.
    EpochChanged,
    Timeout,
    /// `ctl operator cancel`, or a leader change.
    Cancelled,
    /// A store a step moves something to is down, offline or gone (the
    /// step could only time out; the checkers plan again at once).
    TargetDown,
}

/// Why an operator was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddError {
    /// The region already has operator `id`.
    RegionBusy { id: u64 },
    /// The store already receives `store_limit_add_peer` replicas.
    StoreLimit { store: StoreId },
}

/// The running operators by region.
#[derive(Debug)]
pub struct Controller {
    ops: BTreeMap<RegionId, PendingOp>,
    next_id: u64,
    /// Operators ended, by outcome (for tests and logs).
    pub ended: BTreeMap<&'static str, u64>,
}

impl Controller {
    /// No operators; ids start at `first_id` (distinct across leaders when
    /// derived from the clock).
    pub fn new(first_id: u64) -> Controller {
        Controller {
            ops: BTreeMap::new(),
            next_id: first_id.max(1),
            ended: BTreeMap::new(),
        }
    }

    /// The region's operator.
    pub fn get(&self, region: RegionId) -> Option<&PendingOp> {
        self.ops.get(&region)
    }

    /// Every running operator, by region.
    pub fn iter(&self) -> impl Iterator<Item = &PendingOp> {
        self.ops.values()
    }

    /// Running operators made by `source`.
    pub fn count(&self, source: OpSource) -> usize {
        self.ops.values().filter(|o| o.source == source).count()
    }

    /// Running operators that will add a replica on `store`.
    pub fn adds_to(&self, store: StoreId) -> usize {
        self.ops
            .values()
            .filter(|o| o.pending_adds().any(|s| s == store))
            .count()
    }

    /// Whether `op` would be admitted now.
    pub fn check(&self, op: &NewOp, cfg: &SchedConfig) -> Result<(), AddError> {
        if let Some(cur) = self.ops.get(&op.region) {
            return Err(AddError::RegionBusy { id: cur.id });
        }
        // Repair may use the slots above the balance limit.
        let limit = match op.source {
            OpSource::Replica => cfg.store_limit_repair_add_peer,
            _ => cfg.store_limit_add_peer,
        };
        for step in &op.steps {
            if let golem_wire::pd::OperatorStep::AddLearner { peer } = step {
                if self.adds_to(peer.store) >= limit {
                    return Err(AddError::StoreLimit { store: peer.store });
                }
            }
        }
        Ok(())
    }

    /// Admits an operator (see `check`).
    pub fn add(
        &mut self,
        op: NewOp,
        cfg: &SchedConfig,
        now_ms: u64,
    ) -> Result<&PendingOp, AddError> {
        self.check(&op, cfg)?;
        let id = self.next_id;
        self.next_id += 1;
        tracing::info!(id, region = op.region.0, source = op.source.name(), steps = ?op.steps, "operator created");
        let pending = PendingOp {
            id,
            region: op.region,
            source: op.source,
            steps: op.steps,
            current: 0,
            epoch: op.epoch,
            influence: op.influence,
            created_ms: now_ms,
            step_started_ms: now_ms,
        };
        Ok(self.ops.entry(pending.region).or_insert(pending))
    }

    /// A heartbeat of `region` from its leader `leader`: advances, ends or
    /// cancels the region's operator; the step to hand out, if one runs.
    pub fn on_heartbeat(
        &mut self,
        region: &Region,
        leader: PeerId,
        now_ms: u64,
        cfg: &SchedConfig,
    ) -> Option<Operator> {
        let op = self.ops.get_mut(&region.id)?;
        while let Some(step) = op.steps.get(op.current) {
            if !step_done(step, op.epoch, region, leader) {
                break;
            }
            op.current += 1;
            op.epoch = region.epoch;
            op.step_started_ms = now_ms;
        }
        let outcome = if op.is_finished() {
            Some(Outcome::Finished)
        } else if region.epoch != op.epoch {
            Some(Outcome::EpochChanged)
        } else if now_ms >= op.step_deadline_ms(cfg) {
            Some(Outcome::Timeout)
        } else {
            None
        };
        match outcome {
            Some(o) => {
                self.end(region.id, o);
                None
            }
            None => op.wire(region, leader),
        }
    }

    /// Cancels operators whose current step ran out of time.
    pub fn expire(&mut self, now_ms: u64, cfg: &SchedConfig) -> Vec<RegionId> {
        let late: Vec<RegionId> = self
            .ops
            .values()
            .filter(|o| now_ms >= o.step_deadline_ms(cfg))
            .map(|o| o.region)
            .collect();
        for r in &late {
            self.end(*r, Outcome::Timeout);
        }
        late
    }

    /// Cancels the region's operator; whether it had one.
    pub fn cancel(&mut self, region: RegionId) -> bool {
        self.end(region, Outcome::Cancelled)
    }

    /// Ends the region's operator if a store its remaining steps move
    /// something to (as `region` places the peers) is `down`; whether it
    /// ended. A dead store's step could only time out (30 s, or 10 min for
    /// an `AddLearner`), holding the region from repair all that time.
    pub fn end_if_target_down(&mut self, region: &Region, down: impl Fn(StoreId) -> bool) -> bool {
        let stale = self
            .ops
            .get(&region.id)
            .is_some_and(|op| op.targets(region).any(&down));
        stale && self.end(region.id, Outcome::TargetDown)
    }

    /// Drops every operator (a leader change).
    pub fn clear(&mut self) {
        self.ops.clear();
    }

    fn end(&mut self, region: RegionId, outcome: Outcome) -> bool {
        let Some(op) = self.ops.remove(&region) else {
            return false;
        };
        let name = match outcome {
            Outcome::Finished => "finished",
            Outcome::EpochChanged => "epoch-changed",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::TargetDown => "target-down",
        };
        *self.ended.entry(name).or_default() += 1;
        tracing::info!(
            id = op.id,
            region = region.0,
            step = op.current,
            "operator {name}"
        );
        true
    }
}

#[cfg(test)]
mod tests;
