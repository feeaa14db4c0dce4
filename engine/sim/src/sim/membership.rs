//! The simulated operator: membership changes during the fault phase.
//!
//! Every `membership_interval_ms_mean` (on average) the operator picks a
//! region, reads its leader's metadata (the operator sees the whole
//! cluster, as `golem ctl` sees the PD's view) and sends the leader one
//! `ChangePeers` request over the lossy network, like a client:
//! - a learner present: once its replica holds the region (its snapshot
//!   is installed; the PD learns it from heartbeats), promote it
//!   (`AddVoter`; `ServerBusy` while it catches up → retry after
//!   `retry_after_ms`), alone or, as a joint
//!   change, together with the `Remove` of a follower in one request; or
//!   remove it when the region has its most voters;
//! - otherwise one of: add a learner on a node with no replica of the
//!   region (a fresh peer id: it is created by the leader's heartbeat and
//!   caught up by snapshot); remove a follower voter (never the leader);
//!   move leadership to a follower (`transfer_leadership_to`); and with
//!   `membership_new_voters`, a joint change adding a brand-new peer as a
//!   voter (`AddVoter` + `Remove`), and learners promoted before they hold
//!   anything, which FINDINGS.md #5 shows can leave a region without a
//!   leader for good.
//!
//! Voters stay within `replicas - 1 ..= replicas + 1` (and at most the
//! node count), and a voter is removed only from 3 voters or more
//! (FINDINGS.md #8). Invariants: one request in flight at a time; a request
//! gets a fresh peer id for every replica it adds (never reused); an
//! answer or a timeout ends it; nothing is started outside the fault
//! phase, so the cluster can settle.

use super::{Phase, Sim};
use crate::event::Event;
use crate::faults::around;
use crate::node::{node_of, peer_meta, store_of};
use golem_core::region::PeerRole;
use golem_wire::{GolemError, PeerChange, PeerChangeKind, PeerId, RegionId, RequestBody};
use golem_wire::{ResponseBody, ShardId};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::BTreeMap;

/// The client id of the operator's requests (answers come back as
/// `Response`s to it).
pub const OPERATOR: usize = usize::MAX;
/// A voter is removed (alone or in a joint change) only from this many
/// voters: removing one of two can lose the region for good when the
/// leader fails before it applies the removal the removed replica already
/// applied (FINDINGS.md #8).
const VOTERS_TO_REMOVE_MIN: usize = 3;
/// Wait before looking again when no change can be made now.
const REPLAN_MS: u64 = 100;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Operator {
    /// The request in flight.
    in_flight: Option<u64>,
    next_op: u64,
    /// Next replica generation per (region, node) (0 is the initial one).
    gens: BTreeMap<(RegionId, usize), u64>,
    /// Requests answered Ok (the change is applied or was in effect).
    pub changes_ok: u64,
}

fn change(kind: PeerChangeKind, peer: PeerId) -> PeerChange {
    PeerChange {
        kind,
        peer,
        store: store_of(node_of(peer.get())),
        shard: ShardId(0),
    }
}

impl Sim {
    /// Queues the operator's next step `delay_ms` from now.
    fn operator_after(&mut self, delay_ms: u64) {
        self.q.after(delay_ms, Event::Operator);
    }

    /// The first step, if membership changes are on.
    pub(super) fn start_operator(&mut self) {
        let mean = self.cfg.membership_interval_ms_mean;
        // With the simulated PD, membership is the PD's alone.
        if mean > 0 && !self.cfg.pd {
            let first = around(&mut self.rng, mean);
            self.operator_after(first);
        }
    }

    fn operator_next(&mut self) {
        let mean = self.cfg.membership_interval_ms_mean;
        let next = around(&mut self.rng, mean);
        self.operator_after(next);
    }

    /// A fresh peer id for a replica of `region` on `node`.
    fn fresh_peer(&mut self, region: RegionId, node: usize) -> PeerId {
        let gen = self.operator.gens.entry((region, node)).or_insert(1);
        let id = peer_meta(region, node, *gen).id;
        *gen += 1;
        id
    }

    pub(super) fn on_operator(&mut self) {
        if self.phase != Phase::Faults || self.operator.in_flight.is_some() {
            return;
        }
        let region = self.regions[self.rng.gen_range(0..self.regions.len())];
        // The leader of the highest term among live initialized replicas.
        let leader = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| n.peers.get(&region).map(|p| (n.id, p)))
            .filter(|(_, p)| p.is_leader() && p.is_initialized())
            .max_by_key(|(_, p)| p.term())
            .map(|(n, p)| (n, p.config().peer, p.meta().clone()));
        let Some((leader_node, leader_peer, meta)) = leader else {
            self.operator_after(REPLAN_MS);
            return;
        };
        if meta
            .peers
            .iter()
            .any(|p| matches!(p.role, PeerRole::IncomingVoter | PeerRole::DemotingVoter))
        {
            self.operator_after(REPLAN_MS); // raft-rs leaves it on its own
            return;
        }
        let voters: Vec<PeerId> = meta
            .peers
            .iter()
            .filter(|p| p.role == PeerRole::Voter)
            .map(|p| p.id)
            .collect();
        let followers: Vec<PeerId> = voters
            .iter()
            .copied()
            .filter(|&p| p != leader_peer)
            .collect();
        let learners: Vec<PeerId> = meta
            .peers
            .iter()
            .filter(|p| p.role == PeerRole::Learner)
            .map(|p| p.id)
            .collect();
        let free: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| {
                let node = &self.nodes[n];
                node.up && !node.peers.contains_key(&region) && meta.peer_on(store_of(n)).is_none()
            })
            .collect();
        let voters_min = (self.cfg.replicas - 1).max(1);
        let voters_max = (self.cfg.replicas + 1).min(self.nodes.len());
        let changes = if let Some(&learner) = learners.first() {
            // Like the PD, wait until the learner holds the region (its
            // snapshot is in): golem-core would promote one that holds
            // nothing yet (FINDINGS.md #5).
            let node = &self.nodes[self.node_of_peer(learner)];
            let ready = node.up
                && node.peers.get(&region).is_some_and(|p| {
                    p.config().peer == learner
                        && p.is_initialized()
                        && p.applying_snapshot().is_none()
                });
            if !ready && !self.cfg.membership_new_voters {
                self.operator_after(REPLAN_MS);
                return;
            }
            let follower = followers.choose(&mut self.rng).copied();
            match follower {
                // A joint change: the caught-up learner in, a follower out.
                Some(f) if voters.len() >= VOTERS_TO_REMOVE_MIN && self.rng.gen_bool(0.3) => vec![
                    change(PeerChangeKind::AddVoter, learner),
                    change(PeerChangeKind::Remove, f),
                ],
                _ if voters.len() < voters_max => {
                    vec![change(PeerChangeKind::AddVoter, learner)]
                }
                _ => vec![change(PeerChangeKind::Remove, learner)],
            }
        } else {
            // (weight, kind): 0 add a learner, 1 remove a follower, 2 joint
            // with a brand-new voter (FINDINGS.md #5: off by default), 3
            // move leadership.
            let mut options: Vec<(u32, u8)> = Vec::new();
            if !free.is_empty() && voters.len() < voters_max {
                options.push((4, 0));
            }
            if !followers.is_empty()
                && voters.len() > voters_min
                && voters.len() >= VOTERS_TO_REMOVE_MIN
            {
                options.push((3, 1));
            }
            if self.cfg.membership_new_voters
                && !free.is_empty()
                && voters.len() >= VOTERS_TO_REMOVE_MIN
            {
                options.push((2, 2));
            }
            if !followers.is_empty() {
                options.push((1, 3));
            }
            let Ok(&(_, kind)) = options.choose_weighted(&mut self.rng, |o| o.0) else {
                self.operator_after(REPLAN_MS);
                return;
            };
            let node = free.choose(&mut self.rng).copied();
            let follower = followers.choose(&mut self.rng).copied();
            match kind {
                0 => {
                    let n = node.expect("a free node");
                    vec![change(
                        PeerChangeKind::AddLearner,
                        self.fresh_peer(region, n),
                    )]
                }
                1 => vec![change(
                    PeerChangeKind::Remove,
                    follower.expect("a follower"),
                )],
                2 => {
                    let n = node.expect("a free node");
                    vec![
                        change(PeerChangeKind::AddVoter, self.fresh_peer(region, n)),
                        change(PeerChangeKind::Remove, follower.expect("a follower")),
                    ]
                }
                _ => {
                    let to = follower.expect("a follower");
                    self.trace(|| {
                        format!(
                            "operator: region {region} leadership to node {}",
                            self.node_of_peer(to)
                        )
                    });
                    let peer = self.nodes[leader_node]
                        .peers
                        .get_mut(&region)
                        .expect("the leader's peer");
                    peer.transfer_leadership_to(to);
                    self.kick(leader_node);
                    self.operator_next();
                    return;
                }
            }
        };
        let Some(key) = (0..self.keys.len()).find(|&k| self.region_of_key(k) == region) else {
            self.operator_after(REPLAN_MS);
            return;
        };
        self.operator.next_op += 1;
        let op = self.operator.next_op;
        self.operator.in_flight = Some(op);
        self.trace(|| {
            format!("operator #{op}: region {region} at node {leader_node}: {changes:?}")
        });
        let body = RequestBody::ChangePeers {
            key: self.keys[key].clone(),
            changes,
        };
        if self.rng.gen_range(0..100) >= self.net.drop_percent {
            let delay = self.net.delay_ms(&mut self.rng);
            self.q.after(
                delay,
                Event::Request {
                    node: leader_node,
                    client: OPERATOR,
                    op,
                    key,
                    body,
                },
            );
        }
        self.q
            .after(self.cfg.client_timeout_ms, Event::OperatorTimeout { op });
    }

    /// The answer to the operator's request `op`.
    pub(super) fn on_operator_answer(
        &mut self,
        op: u64,
        node: usize,
        result: Result<ResponseBody, GolemError>,
    ) {
        if self.operator.in_flight != Some(op) {
            return;
        }
        self.operator.in_flight = None;
        self.trace(|| format!("operator #{op}: node {node} answered {result:?}"));
        match result {
            Ok(_) => {
                self.operator.changes_ok += 1;
                self.operator_next();
            }
            Err(GolemError::ServerBusy { retry_after_ms }) => {
                self.operator_after(u64::from(retry_after_ms).max(1));
            }
            Err(_) => self.operator_after(REPLAN_MS),
        }
    }

    pub(super) fn on_operator_timeout(&mut self, op: u64) {
        if self.operator.in_flight == Some(op) {
            self.operator.in_flight = None;
            self.operator_after(REPLAN_MS);
        }
    }
}
