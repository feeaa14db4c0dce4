//! Cluster formation: bootstrap candidates and the first region.
//!
//! Owns the decisions of `JoinCluster`, as pure functions of the state:
//! whether a joining store needs a Raft entry or can be answered from the
//! applied state (`join_step`), when the candidates suffice to bootstrap
//! (`bootstrap_due`), and the shape of the first region (`first_region`).
//! `PdState::apply` runs them for `PdCommand::JoinCluster`.
//!
//! Invariants: before the bootstrap every registered store is a candidate
//! (only `JoinCluster` registers a store then); the first region covers the
//! whole key space at epoch `{1, 1}` with one voter on shard 0 of each of
//! the first `initial_replicas` candidates by store id, its region and
//! peer ids taken from the id allocator when the entry applies (so no id
//! is handed out twice, whatever was allocated since it was proposed); a
//! candidate registered twice with the same store is one candidate.

use super::PdState;
use golem_wire::pd::{PdResponseBody, Peer, PeerRole, Region, RegionRoute, Store, StoreState};
use golem_wire::{ClusterId, GolemError, PeerId, RegionEpoch, RegionId, ShardId, StoreId};

/// Most replicas of the first region (`golem pd --initial-replicas`).
pub const INITIAL_REPLICAS_MAX: u8 = 5;

/// What the leader does with a `JoinCluster` request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived, once per join
pub enum JoinStep {
    /// Nothing to change: answer from the applied state.
    Reply(PdResponseBody),
    /// Propose `PdCommand::JoinCluster` (a new or changed store, or the
    /// candidates suffice and the cluster must be bootstrapped).
    Propose,
}

/// Checks an `--initial-replicas` value carried by a command.
pub fn check_initial_replicas(n: u8) -> Result<(), GolemError> {
    if n == 0 || n > INITIAL_REPLICAS_MAX {
        return Err(GolemError::invalid(format!(
            "initial replicas {n} (1..={INITIAL_REPLICAS_MAX})"
        )));
    }
    Ok(())
}

/// The first region: ids `first_id` (region) and `first_id + 1 ..` (peers,
/// in the order of `stores`), the whole key space, epoch `{1, 1}`, one voter
/// on shard 0 of each store. `None` without stores.
pub fn first_region(stores: &[StoreId], first_id: u64) -> Option<Region> {
    if stores.is_empty() {
        return None;
    }
    Some(Region {
        id: RegionId(first_id),
        start: Vec::new(),
        end: Vec::new(),
        epoch: RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
        peers: stores
            .iter()
            .zip(first_id + 1..)
            .map(|(store, id)| Peer {
                id: PeerId(id),
                store: *store,
                shard: ShardId(0),
                role: PeerRole::Voter,
            })
            .collect(),
    })
}

impl PdState {
    /// Stores that may hold a replica of the first region: before the
    /// bootstrap, every registered store (by id).
    fn candidates(&self) -> impl Iterator<Item = StoreId> + '_ {
        self.stores
            .iter()
            .filter(|s| s.state != StoreState::Tombstone)
            .map(|s| s.store.id)
    }

    /// Whether the cluster does not exist yet and `initial_replicas`
    /// candidates are known.
    pub fn bootstrap_due(&self, initial_replicas: u8) -> bool {
        self.cluster.is_none() && self.candidates().count() >= usize::from(initial_replicas)
    }

    /// The region with a peer on `store` (the lowest id if several).
    fn region_of(&self, store: StoreId) -> Option<&RegionRoute> {
        self.routing
            .iter()
            .find(|r| r.region.peers.iter().any(|p| p.store == store))
    }

    /// The answer to `JoinCluster` from `store` in the current state.
    pub fn join_answer(&self, store: StoreId, initial_replicas: u8) -> PdResponseBody {
        let cluster = self.cluster;
        PdResponseBody::JoinCluster {
            cluster,
            region: cluster
                .and_then(|_| self.region_of(store))
                .map(|r| r.region.clone()),
            stores: self.stores.iter().count() as u32,
            initial_replicas: initial_replicas.into(),
        }
    }

    /// Decides what a `JoinCluster` request needs (see `JoinStep`);
    /// `DuplicateStore`/`StoreTombstone` if the store cannot register.
    pub fn join_step(&self, store: &Store, initial_replicas: u8) -> Result<JoinStep, GolemError> {
        check_initial_replicas(initial_replicas)?;
        self.stores.check_put(store)?;
        let known = self.stores.get(store.id).is_some_and(|s| s.store == *store);
        if known && !self.bootstrap_due(initial_replicas) {
            Ok(JoinStep::Reply(
                self.join_answer(store.id, initial_replicas),
            ))
        } else {
            Ok(JoinStep::Propose)
        }
    }

    /// Applies `PdCommand::JoinCluster`: registers the store, bootstraps
    /// the cluster if the candidates now suffice, answers.
    pub(super) fn apply_join(
        &mut self,
        store: &Store,
        cluster: ClusterId,
        initial_replicas: u8,
    ) -> Result<PdResponseBody, GolemError> {
        check_initial_replicas(initial_replicas)?;
        if cluster.0 == 0 {
            return Err(GolemError::invalid("cluster id 0"));
        }
        self.stores.put(store)?;
        self.ids.observe(store.id.get());
        if self.bootstrap_due(initial_replicas) {
            let stores: Vec<StoreId> = self
                .candidates()
                .take(usize::from(initial_replicas))
                .collect();
            let first = self.ids.alloc(u32::from(initial_replicas) + 1);
            let region = first_region(&stores, first).expect("at least one candidate");
            // One voter leads from the start (as a one-node bootstrap
            // always did); several elect a leader and report it.
            let leader = (region.peers.len() == 1).then(|| region.peers[0]);
            self.routing.insert_unchecked(RegionRoute {
                region,
                leader,
                term: 0,
                stats: Default::default(),
            });
            self.cluster = Some(cluster);
        }
        Ok(self.join_answer(store.id, initial_replicas))
    }
}

#[cfg(test)]
mod tests;
