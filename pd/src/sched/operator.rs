//! The operator model: the steps of one region's change and when each is done.
//!
//! Owns `PendingOp` (a running operator: its steps, the current one, the
//! epoch that step is valid at, its deadline) and the rules that tell from
//! a region heartbeat whether a step took effect (`step_done`). Invariants:
//! a step counts as done only on what the region's leader reports (a peer
//! present, a voter, gone, the leader, the split range); the epoch an
//! operator is valid at moves only when one of its own steps is observed.

use super::config::SchedConfig;
use golem_wire::pd::{Operator, OperatorInfo, OperatorStep, PeerRole, Region};
use golem_wire::{PeerId, RegionEpoch, RegionId, StoreId};

/// Who made an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpSource {
    Admin,
    Replica,
    Split,
    BalanceRegion,
    BalanceLeader,
    BalanceHotLeader,
    BalanceHotPeer,
    BalanceShard,
    Merge,
}

impl OpSource {
    /// The name `ctl operator list` shows.
    pub fn name(self) -> &'static str {
        match self {
            OpSource::Admin => "admin",
            OpSource::Replica => "replica",
            OpSource::Split => "split",
            OpSource::BalanceRegion => "balance-region",
            OpSource::BalanceLeader => "balance-leader",
            OpSource::BalanceHotLeader => "balance-hot-leader",
            OpSource::BalanceHotPeer => "balance-hot-peer",
            OpSource::BalanceShard => "balance-shard",
            OpSource::Merge => "merge",
        }
    }
}

/// What an operator will change in the per-store counts once done, so that
/// schedulers count running operators as if they had finished (and do not
/// schedule the same imbalance twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Influence {
    pub store: StoreId,
    pub regions: i64,
    pub leaders: i64,
}

/// An operator a checker or an admin asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOp {
    pub region: RegionId,
    /// The region's epoch the first step is valid at.
    pub epoch: RegionEpoch,
    pub source: OpSource,
    pub steps: Vec<OperatorStep>,
    pub influence: Vec<Influence>,
}

/// A running operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOp {
    pub id: u64,
    pub region: RegionId,
    pub source: OpSource,
    pub steps: Vec<OperatorStep>,
    /// Index of the step being executed.
    pub current: usize,
    /// The epoch the current step is valid at (the region's epoch when the
    /// previous step was observed done).
    pub epoch: RegionEpoch,
    pub influence: Vec<Influence>,
    pub created_ms: u64,
    pub step_started_ms: u64,
}

impl PendingOp {
    /// Whether every step is done.
    pub fn is_finished(&self) -> bool {
        self.current >= self.steps.len()
    }

    /// The current step's deadline, ms.
    pub fn step_deadline_ms(&self, cfg: &SchedConfig) -> u64 {
        let budget = match self.steps.get(self.current) {
            Some(OperatorStep::AddLearner { .. }) => cfg.add_learner_timeout_ms,
            _ => cfg.step_timeout_ms,
        };
        self.step_started_ms.saturating_add(budget)
    }

    /// Stores that the steps from the current one on add a replica to.
    pub fn pending_adds(&self) -> impl Iterator<Item = StoreId> + '_ {
        self.steps[self.current.min(self.steps.len())..]
            .iter()
            .filter_map(|s| match s {
                OperatorStep::AddLearner { peer } => Some(peer.store),
                _ => None,
            })
    }

    /// Stores the steps from the current one on move something *to*: a
    /// new learner's store, a promoted learner's, a new leader's (as
    /// `region` places its peers). Removals are not targets.
    pub fn targets<'a>(&'a self, region: &'a Region) -> impl Iterator<Item = StoreId> + 'a {
        let store_of = |id: PeerId| region.peers.iter().find(|p| p.id == id).map(|p| p.store);
        self.steps[self.current.min(self.steps.len())..]
            .iter()
            .filter_map(move |s| match s {
                OperatorStep::AddLearner { peer } => Some(peer.store),
                OperatorStep::PromoteLearner { peer } => store_of(*peer),
                OperatorStep::ReplacePeer { add, .. } => store_of(*add),
                OperatorStep::TransferLeader { to } => store_of(*to),
                _ => None,
            })
    }

    /// What to hand the region's leader now. A `RemovePeer` or
    /// `ReplacePeer` of the leader itself is handed out as a
    /// `TransferLeader` to another voter first (a leader never removes
    /// itself); the step stays current until the peer is gone.
    pub fn wire(&self, region: &Region, leader: PeerId) -> Option<Operator> {
        let step = self.steps.get(self.current)?;
        let step = match step {
            OperatorStep::RemovePeer { peer } | OperatorStep::ReplacePeer { remove: peer, .. }
                if *peer == leader =>
            {
                let to = region
                    .peers
                    .iter()
                    .filter(|p| p.id != leader && p.role == PeerRole::Voter)
                    .max_by_key(|p| p.id)?; // the newest voter: usually the one just added
                OperatorStep::TransferLeader { to: to.id }
            }
            s => s.clone(),
        };
        Some(Operator {
            id: self.id,
            region: self.region,
            epoch: self.epoch,
            step,
        })
    }

    /// The operator as `ctl operator list` shows it.
    pub fn info(&self) -> OperatorInfo {
        OperatorInfo {
            id: self.id,
            region: self.region,
            source: self.source.name().into(),
            steps: self.steps.clone(),
            current: self.current as u32,
            epoch: self.epoch,
            created_ms: self.created_ms,
        }
    }
}

/// Whether `step`, handed out at `epoch`, took effect in `region` (as its
/// leader `leader` reports it).
pub fn step_done(step: &OperatorStep, epoch: RegionEpoch, region: &Region, leader: PeerId) -> bool {
    let peer = |id: PeerId| region.peers.iter().find(|p| p.id == id);
    match step {
        OperatorStep::AddLearner { peer: p } => peer(p.id).is_some(),
        OperatorStep::PromoteLearner { peer: id } => {
            peer(*id).is_some_and(|p| p.role == PeerRole::Voter)
        }
        OperatorStep::RemovePeer { peer: id } => peer(*id).is_none(),
        OperatorStep::ReplacePeer { add, remove } => {
            peer(*add).is_some_and(|p| p.role == PeerRole::Voter) && peer(*remove).is_none()
        }
        OperatorStep::TransferLeader { to } => leader == *to,
        OperatorStep::Split { key, .. } => {
            region.end == *key && region.epoch.version > epoch.version
        }
        // Prepared: the source's epoch grew in both parts (the node's merge
        // driver commits or rolls back on its own).
        OperatorStep::Merge { .. } => {
            region.epoch.version > epoch.version && region.epoch.conf_ver > epoch.conf_ver
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golem_wire::pd::Peer;
    use golem_wire::ShardId;

    fn p(id: u64, store: u64, role: PeerRole) -> Peer {
        Peer {
            id: PeerId(id),
            store: StoreId(store),
            shard: ShardId(0),
            role,
        }
    }

    fn region(peers: Vec<Peer>, end: &[u8], conf_ver: u64, version: u64) -> Region {
        Region {
            id: RegionId(1),
            start: vec![],
            end: end.to_vec(),
            epoch: RegionEpoch { conf_ver, version },
            peers,
        }
    }

    #[test]
    fn steps_are_done_by_what_the_leader_reports() {
        use PeerRole::*;
        let e = RegionEpoch {
            conf_ver: 1,
            version: 1,
        };
        let before = region(vec![p(1, 1, Voter), p(2, 2, Voter)], b"", 1, 1);
        let added = region(
            vec![p(1, 1, Voter), p(2, 2, Voter), p(3, 3, Learner)],
            b"",
            2,
            1,
        );
        let promoted = region(
            vec![p(1, 1, Voter), p(2, 2, Voter), p(3, 3, Voter)],
            b"",
            3,
            1,
        );
        let removed = region(vec![p(1, 1, Voter), p(3, 3, Voter)], b"", 4, 1);
        let split = region(vec![p(1, 1, Voter), p(2, 2, Voter)], b"m", 1, 2);
        let add = OperatorStep::AddLearner {
            peer: p(3, 3, Learner),
        };
        let promote = OperatorStep::PromoteLearner { peer: PeerId(3) };
        let remove = OperatorStep::RemovePeer { peer: PeerId(2) };
        let transfer = OperatorStep::TransferLeader { to: PeerId(2) };
        let splitting = OperatorStep::Split {
            key: b"m".to_vec(),
            new_region: RegionId(9),
            new_peers: vec![PeerId(10), PeerId(11)],
        };
        // (step, region, leader, done)
        let table: Vec<(&OperatorStep, &Region, u64, bool)> = vec![
            (&add, &before, 1, false),
            (&add, &added, 1, true),
            (&promote, &added, 1, false),
            (&promote, &promoted, 1, true),
            (&remove, &promoted, 1, false),
            (&remove, &removed, 1, true),
            (&transfer, &before, 1, false),
            (&transfer, &before, 2, true),
            (&splitting, &before, 1, false),
            (&splitting, &split, 1, true),
        ];
        for (i, (step, r, leader, want)) in table.into_iter().enumerate() {
            assert_eq!(
                step_done(step, e, r, PeerId(leader)),
                want,
                "case {i}: {step:?}"
            );
        }
    }

    #[test]
    fn removing_the_leader_transfers_first() {
        use PeerRole::*;
        let r = region(
            vec![p(1, 1, Voter), p(2, 2, Voter), p(3, 3, Voter)],
            b"",
            3,
            1,
        );
        let op = PendingOp {
            id: 7,
            region: RegionId(1),
            source: OpSource::Admin,
            steps: vec![OperatorStep::RemovePeer { peer: PeerId(1) }],
            current: 0,
            epoch: r.epoch,
            influence: vec![],
            created_ms: 0,
            step_started_ms: 0,
        };
        assert_eq!(
            op.wire(&r, PeerId(1)).unwrap().step,
            OperatorStep::TransferLeader { to: PeerId(3) }
        );
        assert_eq!(
            op.wire(&r, PeerId(2)).unwrap().step,
            OperatorStep::RemovePeer { peer: PeerId(1) }
        );
        // A replace of the leader (balance-shard) hands over to a voter,
        // never to the learner that replaces it.
        let mut moving = r.clone();
        moving.peers.push(Peer {
            shard: ShardId(1),
            ..p(4, 1, Learner)
        });
        let replace = OperatorStep::ReplacePeer {
            add: PeerId(4),
            remove: PeerId(1),
        };
        let op = PendingOp {
            steps: vec![replace.clone()],
            ..op
        };
        assert_eq!(
            op.wire(&moving, PeerId(1)).unwrap().step,
            OperatorStep::TransferLeader { to: PeerId(3) }
        );
        assert_eq!(op.wire(&moving, PeerId(2)).unwrap().step, replace);
    }

    #[test]
    fn a_replace_is_done_when_the_new_peer_votes_and_the_old_is_gone() {
        use PeerRole::*;
        let e = RegionEpoch {
            conf_ver: 1,
            version: 1,
        };
        let on1 = |id, shard, role| Peer {
            shard: ShardId(shard),
            ..p(id, 1, role)
        };
        let replace = OperatorStep::ReplacePeer {
            add: PeerId(4),
            remove: PeerId(1),
        };
        // (peers of store 1 beside voters 2 and 3, done)
        let table = vec![
            (vec![on1(1, 0, Voter)], false),
            (vec![on1(1, 0, Voter), on1(4, 1, Learner)], false),
            // Joint: the node reports both as voters.
            (vec![on1(1, 0, Voter), on1(4, 1, Voter)], false),
            (vec![on1(4, 1, Voter)], true),
            (vec![on1(4, 1, Learner)], false),
        ];
        for (i, (mut peers, want)) in table.into_iter().enumerate() {
            peers.extend([p(2, 2, Voter), p(3, 3, Voter)]);
            let r = region(peers, b"", 2, 1);
            assert_eq!(step_done(&replace, e, &r, PeerId(2)), want, "case {i}");
        }
    }
}
