//! The simulation: a whole cluster in one thread, from one seed.
//!
//! Owns the run's state (nodes, network, clients, history, checkers, the
//! event queue and the one random generator) and the run's phases:
//!
//! 1. **faults** (`fault_phase_ms`): clients run; the network drops,
//!    duplicates, delays and reorders messages and partitions; nodes crash
//!    (alone or several at once, or aimed mid snapshot install or right
//!    after a replica's removal), restart, and tick at skewed rates; the
//!    operator changes regions' membership (`membership.rs`);
//! 2. **tail** (`client_tail_ms`): faults stop, links heal, down nodes
//!    restart; clients go on;
//! 3. **drain**: clients start nothing new; the run waits until every
//!    client is idle and every current member of every region (as its
//!    leader's metadata names them, out of any joint configuration) has
//!    the leader's metadata and has applied its whole log, then compares
//!    those replicas (convergence; removed replicas that never learned of
//!    their removal are left out);
//! 4. **final reads**: one client reads every key (the last word on lost
//!    writes), then every key's history is checked for linearizability.
//!
//! Leadership and region metadata are checked after every event and every
//! applied entry as it is applied, so a violation stops the run where it
//! happens. Phases 2–4
//! must finish within `quiesce_ms_max` (liveness).
//!
//! Invariants: nothing here reads a clock, does I/O or draws randomness
//! except from `rng` (seeded from the seed alone); collections that are
//! iterated are ordered (`BTreeMap`, `Vec`), never hashed; node, client,
//! fault and operator handling live in `nodes.rs`, `clients.rs`,
//! `faulting.rs` and `membership.rs`.

mod clients;
mod faulting;
mod membership;
mod nodes;
mod pd;

use crate::check::applied::AppliedChecker;
use crate::check::converge::{compare, Replica};
use crate::check::epochs::MetaChecker;
use crate::check::leaders::LeaderChecker;
use crate::check::refused::RefusedChecker;
use crate::client::Client;
use crate::config::SimConfig;
use crate::event::{Event, Queue};
use crate::faults::{around, FaultPlan};
use crate::hash::Fnv;
use crate::history::History;
use crate::network::Network;
use crate::node::{node_of, peer_meta, SimNode};
use crate::report::{FailureKind, SimFailure, SimReport};
use golem_core::region::{PeerRole, RegionMeta, RegionPeer};
use golem_wire::{PeerId, RegionEpoch, RegionId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Longest time a read of old entries from a node's WAL takes.
const FETCH_MS_MAX: u64 = 5;
/// Injected failure rate of WAL reads for fetches.
const FETCH_FAIL_PERCENT: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Faults,
    Tail,
    Drain,
    FinalReads,
    Done,
}

#[derive(Debug, Default)]
struct Stats {
    snapshots_sent: u64,
    snapshots_installed: u64,
    replicas_removed: u64,
    /// Commit indexes learned from a removed replica's notice.
    removal_notices_used: u64,
    targeted_crashes: u64,
    ops_ok: u64,
    ops_unknown: u64,
    ops_refused: u64,
    crashes: u64,
    partitions: u64,
    checkpoints: u64,
    fetches: u64,
    /// Replicas of split-made regions created.
    splits_created: u64,
}

/// Runs one seed. See the module documentation.
pub fn run(seed: u64, cfg: &SimConfig) -> Result<SimReport, SimFailure> {
    if let Err(reason) = cfg.validate() {
        return Err(SimFailure {
            seed,
            kind: FailureKind::Config,
            message: reason,
            at_ms: 0,
            event: 0,
            replay: cfg.replay_command(seed),
        });
    }
    let mut sim = match catch_unwind(AssertUnwindSafe(|| Sim::new(seed, cfg))) {
        Ok(Ok(sim)) => sim,
        Ok(Err(f)) => return Err(f),
        Err(payload) => return Err(panic_failure(seed, cfg, payload, 0, 0)),
    };
    match catch_unwind(AssertUnwindSafe(|| sim.run())) {
        Ok(result) => result,
        Err(payload) => {
            let (at, ev) = (sim.q.now_ms(), sim.event_no);
            Err(panic_failure(seed, cfg, payload, at, ev))
        }
    }
}

fn panic_failure(
    seed: u64,
    cfg: &SimConfig,
    payload: Box<dyn std::any::Any + Send>,
    at_ms: u64,
    event: u64,
) -> SimFailure {
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    };
    SimFailure {
        seed,
        kind: FailureKind::Panic,
        message: format!("panic: {message}"),
        at_ms,
        event,
        replay: cfg.replay_command(seed),
    }
}

pub(crate) struct Sim {
    seed: u64,
    cfg: SimConfig,
    plan: FaultPlan,
    rng: ChaCha8Rng,
    q: Queue,
    /// Events processed; also the history's clock.
    event_no: u64,
    nodes: Vec<SimNode>,
    /// Every region known so far (the initial ones, then those splits
    /// made), ascending.
    regions: Vec<RegionId>,
    /// The newest metadata of each region seen on any replica (highest
    /// `(version, conf_ver)`): their ranges never overlap (`check::epochs`),
    /// so a key's region is the one whose range holds it.
    routes: BTreeMap<RegionId, RegionMeta>,
    /// The node of every peer id not minted by `peer_id` (the PD's ids:
    /// split regions' peers and the replicas it adds).
    peer_nodes: BTreeMap<PeerId, usize>,
    /// Nodes never restarted: killed for good, or not joined yet.
    absent: Vec<bool>,
    /// The simulated PD, with `cfg.pd`.
    pd: Option<pd::SimPd>,
    keys: Vec<Vec<u8>>,
    net: Network,
    clients: Vec<Client>,
    history: History,
    leaders: LeaderChecker,
    applied: AppliedChecker,
    refused: RefusedChecker,
    metas_seen: MetaChecker,
    operator: membership::Operator,
    phase: Phase,
    /// Id of the current partition (a heal names the one it ends).
    partition_id: u64,
    /// Keys the final-read client has yet to read.
    final_reads: VecDeque<usize>,
    stats: Stats,
    digest: Fnv,
}

/// The regions splitting `keys` into `count` disjoint ranges covering the
/// whole key space; region `r` (from 0) has `replicas` voters on nodes
/// `r, r + 1, …` (modulo `nodes`).
fn region_metas(keys: &[Vec<u8>], count: usize, nodes: usize, replicas: usize) -> Vec<RegionMeta> {
    (0..count)
        .map(|r| {
            let id = RegionId(r as u64 + 1);
            let bound = |i: usize| keys[i * keys.len() / count].clone();
            RegionMeta {
                id,
                start: if r == 0 { Vec::new() } else { bound(r) },
                end: if r + 1 == count {
                    Vec::new()
                } else {
                    bound(r + 1)
                },
                epoch: RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                },
                peers: (0..replicas)
                    .map(|i| peer_meta(id, (r + i) % nodes, 0))
                    .collect(),
            }
        })
        .collect()
}

impl Sim {
    fn new(seed: u64, cfg: &SimConfig) -> Result<Sim, SimFailure> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let plan = if cfg.swarm {
            FaultPlan::draw(&mut rng)
        } else {
            FaultPlan::middle()
        };
        let keys: Vec<Vec<u8>> = (0..cfg.keys)
            .map(|i| format!("k{i:03}").into_bytes())
            .collect();
        let mut plan = plan;
        if cfg.calm {
            plan.crash_weight = 0;
            plan.crash_many_weight = 0;
            plan.isolate_weight = 0;
            plan.split_weight = 0;
            plan.skew_weight = 0;
        }
        let metas = region_metas(&keys, cfg.regions, cfg.nodes, cfg.replicas);
        let mut sim = Sim {
            seed,
            cfg: cfg.clone(),
            net: Network::new(plan.drop_percent, plan.dup_percent, 1, plan.delay_ms_max),
            plan,
            rng,
            q: Queue::default(),
            event_no: 0,
            nodes: Vec::new(),
            regions: metas.iter().map(|m| m.id).collect(),
            routes: metas.iter().map(|m| (m.id, m.clone())).collect(),
            peer_nodes: BTreeMap::new(),
            absent: vec![false; cfg.nodes],
            pd: None,
            keys,
            clients: (0..cfg.clients).map(Client::new).collect(),
            history: History::default(),
            leaders: LeaderChecker::default(),
            applied: AppliedChecker::default(),
            refused: RefusedChecker::default(),
            metas_seen: MetaChecker::default(),
            operator: membership::Operator::default(),
            phase: Phase::Faults,
            partition_id: 0,
            final_reads: (0..cfg.keys).collect(),
            stats: Stats::default(),
            digest: Fnv::default(),
        };
        for n in 0..cfg.nodes {
            let node =
                SimNode::new(n, &metas, cfg).map_err(|m| sim.failure(FailureKind::Recovery, m))?;
            sim.nodes.push(node);
            sim.note_recovered(n);
            sim.nodes[n].tick_ms = sim.skewed_tick_ms();
            if cfg.reads == crate::config::ReadMode::Lease {
                sim.nodes[n].lease_ms = cfg.tick_ms * cfg.election_ticks.saturating_sub(2) as u64;
            }
            let first_tick = sim.rng.gen_range(0..cfg.tick_ms);
            sim.q.after(first_tick, Event::Tick { node: n, inc: 0 });
            let flush = around(&mut sim.rng, sim.plan.flush_interval_ms_mean);
            sim.q.after(flush, Event::Flush { node: n });
            let cp = around(&mut sim.rng, sim.plan.checkpoint_interval_ms_mean);
            sim.q.after(cp, Event::Checkpoint { node: n });
        }
        for c in 0..cfg.clients {
            let start = sim.rng.gen_range(0..=20);
            sim.q.after(start, Event::ClientNext { client: c });
        }
        if sim.plan.weight_total() > 0 {
            let first = around(&mut sim.rng, sim.plan.fault_interval_ms_mean);
            sim.q.after(first, Event::Fault);
        }
        if cfg.join_at_ms > 0 {
            // The last node is not part of the cluster until it joins.
            let last = cfg.nodes - 1;
            sim.nodes[last].crash(0);
            sim.absent[last] = true;
            sim.q.after(cfg.join_at_ms, Event::Join { node: last });
        }
        if cfg.kill_at_ms > 0 {
            sim.q.after(cfg.kill_at_ms, Event::Kill { node: 0 });
        }
        if cfg.pd {
            sim.start_pd(&metas[0]);
        }
        sim.start_operator();
        sim.q.after(cfg.fault_phase_ms, Event::EndFaults);
        sim.q
            .after(cfg.fault_phase_ms + cfg.client_tail_ms, Event::EndClients);
        Ok(sim)
    }

    fn failure(&self, kind: FailureKind, message: String) -> SimFailure {
        SimFailure {
            seed: self.seed,
            kind,
            message,
            at_ms: self.q.now_ms(),
            event: self.event_no,
            replay: self.cfg.replay_command(self.seed),
        }
    }

    /// A tick interval for one node: the nominal one, skewed.
    fn skewed_tick_ms(&mut self) -> u64 {
        let skew = i64::from(self.plan.clock_skew_percent);
        let pct = 100 + self.rng.gen_range(-skew..=skew);
        (self.cfg.tick_ms as i64 * pct / 100).max(1) as u64
    }

    fn run(&mut self) -> Result<SimReport, SimFailure> {
        let deadline_ms =
            self.cfg.fault_phase_ms + self.cfg.client_tail_ms + self.cfg.quiesce_ms_max;
        while self.phase != Phase::Done {
            let Some(ev) = self.q.pop() else {
                return Err(self.failure(FailureKind::Liveness, "no event left".into()));
            };
            self.event_no += 1;
            if self.event_no > self.cfg.events_max || self.q.now_ms() > deadline_ms {
                let msg = format!(
                    "the run did not finish (phase {:?}, {} events):\n{}",
                    self.phase,
                    self.event_no,
                    self.describe_cluster()
                );
                return Err(self.failure(FailureKind::Liveness, msg));
            }
            self.note(&ev);
            self.handle(ev)?;
            self.check_leaders()?;
            self.check_metas()?;
            if self.phase == Phase::Drain && self.clients_idle() && self.converged() {
                self.check_convergence()?;
                self.phase = Phase::FinalReads;
                self.q.after(0, Event::ClientNext { client: 0 });
            }
        }
        let stats = self
            .history
            .check(self.cfg.lin_steps_max)
            .map_err(|m| self.failure(FailureKind::NotLinearizable, m))?;
        let (replicas_per_node, leaders_per_node) = self.placement();
        let pd = self.pd.as_ref();
        Ok(SimReport {
            regions: self.regions.len(),
            split_replicas_created: self.stats.splits_created,
            replicas_per_node,
            leaders_per_node,
            split_latencies_ms: pd.map(|p| p.split_latencies_ms.clone()).unwrap_or_default(),
            repair_ms: pd.and_then(|p| Some(p.repaired_at_ms? - p.killed_at_ms?)),
            pd_operators_ended: pd.map(|p| p.ended()).unwrap_or_default(),
            seed: self.seed,
            plan: self.plan.clone(),
            events: self.event_no,
            virtual_ms: self.q.now_ms(),
            ops_ok: self.stats.ops_ok,
            ops_unknown: self.stats.ops_unknown,
            ops_refused: self.stats.ops_refused,
            crashes: self.stats.crashes,
            partitions: self.stats.partitions,
            elections: self.leaders.elections(),
            applies: self.applied.applies(),
            checkpoints: self.stats.checkpoints,
            fetches: self.stats.fetches,
            changes_ok: self.operator.changes_ok,
            conf_vers: self.metas_seen.conf_vers(),
            snapshots_sent: self.stats.snapshots_sent,
            snapshots_installed: self.stats.snapshots_installed,
            replicas_removed: self.stats.replicas_removed,
            removal_notices_used: self.stats.removal_notices_used,
            targeted_crashes: self.stats.targeted_crashes,
            keys_inconclusive: stats.inconclusive,
            digest: self.digest.finish(),
        })
    }

    fn handle(&mut self, ev: Event) -> Result<(), SimFailure> {
        match ev {
            Event::Tick { node, inc } => self.on_tick(node, inc),
            Event::Pass { node, inc } => self.on_pass(node, inc)?,
            Event::SyncDone { node, inc, upto } => self.on_sync_done(node, inc, upto)?,
            Event::Raft {
                from,
                to,
                region,
                msg,
                snap,
                conf_ver,
            } => self.on_raft(from, to, region, msg, snap, conf_ver)?,
            Event::Gc {
                from,
                to,
                region,
                to_peer,
                conf_ver,
            } => self.on_gc(from, to, region, to_peer, conf_ver),
            Event::Removed {
                from,
                to,
                region,
                from_peer,
                to_peer,
                index,
                term,
            } => self.on_removed(from, to, region, (from_peer, to_peer), (index, term)),
            Event::SnapshotInstalled { node, inc, region } => {
                self.on_snapshot_installed(node, inc, region)?
            }
            Event::SnapshotStatus {
                node,
                inc,
                region,
                to,
                ok,
            } => self.on_snapshot_status(node, inc, region, to, ok),
            Event::Operator => self.on_operator(),
            Event::OperatorTimeout { op } => self.on_operator_timeout(op),
            Event::CrashNode { node, inc } => self.on_crash_node(node, inc),
            Event::Fetched {
                node,
                inc,
                region,
                req,
            } => self.on_fetched(node, inc, region, req),
            Event::Request {
                node,
                client,
                op,
                key,
                body,
            } => self.on_request(node, client, op, key, body),
            Event::Response {
                client,
                op,
                node,
                result,
                proposed,
                hint,
            } => self.on_response(client, op, node, result, proposed, hint)?,
            Event::ClientTimeout { client, op } => self.on_timeout(client, op),
            Event::ClientNext { client } => self.on_client_next(client),
            Event::ClientRetry { client, op } => self.on_retry(client, op),
            Event::Fault => self.on_fault(),
            Event::Restart { node } => self.on_restart(node)?,
            Event::HealPartition { id } => {
                if id == self.partition_id {
                    self.net.heal();
                }
            }
            Event::Flush { node } => self.on_flush(node),
            Event::Checkpoint { node } => self.on_checkpoint(node),
            Event::EndFaults => self.on_end_faults(),
            Event::PdTick => self.on_pd_tick(),
            Event::Kill { node } => self.on_kill(node),
            Event::Join { node } => self.on_join(node)?,
            Event::EndClients => self.phase = Phase::Drain,
        }
        Ok(())
    }

    /// Feeds the event to the digest and, with `trace`, prints it.
    fn note(&mut self, ev: &Event) {
        let t = self.q.now_ms();
        self.digest.write_u64(t);
        self.digest.write(ev.name().as_bytes());
        let line = match ev {
            Event::Raft {
                from,
                to,
                region,
                msg,
                ..
            } => {
                for v in [
                    msg.term,
                    msg.index,
                    msg.log_term,
                    msg.commit,
                    msg.entries.len() as u64,
                ] {
                    self.digest.write_u64(v);
                }
                self.digest.write_u64(msg.get_msg_type() as u64);
                format!(
                    "raft n{from}→n{to} r{region} {:?} term={} index={} log_term={} commit={} entries={} reject={}",
                    msg.get_msg_type(),
                    msg.term,
                    msg.index,
                    msg.log_term,
                    msg.commit,
                    msg.entries.len(),
                    msg.reject
                )
            }
            Event::Fetched {
                node, region, req, ..
            } => format!("fetched n{node} r{region} [{}, {})", req.low, req.high),
            Event::Request {
                node,
                client,
                op,
                body,
                ..
            } => format!("request c{client}#{op} → n{node}: {body:?}"),
            other => format!("{other:?}"),
        };
        if self.cfg.trace {
            eprintln!("{t:>7}ms #{:<8} {line}", self.event_no);
        }
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.cfg.trace {
            eprintln!("{:>7}ms           {}", self.q.now_ms(), what());
        }
    }

    /// One leader per (region, term): every live peer, after every event.
    fn check_leaders(&mut self) -> Result<(), SimFailure> {
        for n in &self.nodes {
            if !n.up {
                continue;
            }
            for (region, peer) in &n.peers {
                if peer.is_leader() {
                    match self.leaders.observe(*region, peer.term().get(), n.id) {
                        Ok(true) => self.trace(|| {
                            format!(
                                "node {} leads region {region} in term {}",
                                n.id,
                                peer.term()
                            )
                        }),
                        Ok(false) => {}
                        Err(m) => return Err(self.failure(FailureKind::TwoLeaders, m)),
                    }
                }
            }
        }
        Ok(())
    }

    fn clients_idle(&self) -> bool {
        self.clients.iter().all(|c| c.in_flight.is_none())
    }

    /// Region metadata after every event: every initialized replica not
    /// installing a snapshot (`check::epochs`).
    fn check_metas(&mut self) -> Result<(), SimFailure> {
        for n in &self.nodes {
            if !n.up {
                continue;
            }
            for peer in n.peers.values() {
                if !peer.is_initialized() || peer.applying_snapshot().is_some() {
                    continue;
                }
                let (id, applied) = (peer.config().peer, peer.applied_index().get());
                if let Err(m) = self.metas_seen.observe(n.id, id, applied, peer.meta()) {
                    return Err(self.failure(FailureKind::Metadata, m));
                }
                let meta = peer.meta();
                let newer = self.routes.get(&meta.id).is_none_or(|r| {
                    (meta.epoch.version, meta.epoch.conf_ver) > (r.epoch.version, r.epoch.conf_ver)
                });
                if newer {
                    self.routes.insert(meta.id, meta.clone());
                }
            }
        }
        Ok(())
    }

    /// The leader of `region` (the highest term among live replicas) and
    /// its node.
    fn leader_of(&self, region: RegionId) -> Option<(usize, &RegionPeer)> {
        self.nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| n.peers.get(&region).map(|p| (n.id, p)))
            .filter(|(_, p)| p.is_leader() && p.is_initialized())
            .max_by_key(|(_, p)| p.term())
    }

    /// The current members' replicas of `region` per its leader's
    /// metadata, each `(node, peer)`; None if a member is down, missing,
    /// or not at the leader's epoch yet, or the region is in a joint
    /// configuration.
    fn members(&self, region: RegionId) -> Option<Vec<(usize, &RegionPeer)>> {
        let (_, leader) = self.leader_of(region)?;
        let meta = leader.meta();
        let mut out = Vec::new();
        for p in &meta.peers {
            if !matches!(p.role, PeerRole::Voter | PeerRole::Learner) {
                return None;
            }
            let n = self.node_of_peer(p.id);
            let node = &self.nodes[n];
            let peer = node.peers.get(&region).filter(|q| {
                node.up
                    && q.config().peer == p.id
                    && q.is_initialized()
                    && q.applying_snapshot().is_none()
                    && q.meta().epoch == meta.epoch
            })?;
            out.push((n, peer));
        }
        Some(out)
    }

    /// Whether, in every region, one leader's whole log is committed and
    /// applied by every current member.
    fn converged(&self) -> bool {
        self.regions.iter().all(|&region| {
            let Some((_, leader)) = self.leader_of(region) else {
                return false;
            };
            let leaders = self
                .nodes
                .iter()
                .filter(|n| n.up && n.peers.get(&region).is_some_and(|p| p.is_leader()))
                .count();
            let last = leader.last_index();
            leaders == 1
                && leader.commit_index() == last
                && self.members(region).is_some_and(|members| {
                    members
                        .iter()
                        .all(|(_, p)| p.last_index() == last && p.applied_index() == last)
                })
        })
    }

    fn check_convergence(&mut self) -> Result<(), SimFailure> {
        for &region in &self.regions {
            let m = self.leader_of(region).expect("converged").1.meta().clone();
            let members = self.members(region).expect("converged");
            let replicas: Vec<Replica> = members
                .iter()
                .map(|(n, p)| Replica {
                    node: *n,
                    applied: p.applied_index().get(),
                    pairs: self.nodes[*n].store.pairs_in(&m.start, &m.end),
                })
                .collect();
            compare(m.id, &replicas).map_err(|msg| self.failure(FailureKind::Diverged, msg))?;
        }
        Ok(())
    }

    /// Every replica's state, for liveness reports.
    fn describe_cluster(&self) -> String {
        let mut s = String::new();
        for &id in &self.regions {
            let m = &self.routes[&id];
            let leader = self
                .nodes
                .iter()
                .filter_map(|n| n.peers.get(&m.id))
                .find(|p| p.is_leader());
            if let Some(l) = leader {
                for n in &self.nodes {
                    if let Some(p) = n.peers.get(&m.id) {
                        if p.last_index() < l.log_start() {
                            s.push_str(&format!(
                                "  region {}: node {} has entries up to {} but the leader's log starts after {}: only a snapshot can catch it up\n",
                                m.id,
                                n.id,
                                p.last_index(),
                                l.log_start()
                            ));
                        }
                    }
                }
            }
            for n in &self.nodes {
                let Some(p) = n.peers.get(&m.id) else {
                    let why = if n.up { "no replica" } else { "down" };
                    s.push_str(&format!("  region {} node {}: {why}\n", m.id, n.id));
                    continue;
                };
                s.push_str(&format!(
                    "  region {} node {}: peer={} conf_ver={} peers={:?} initialized={} installing={:?} leader={} known_leader={:?} term={} commit={} applied={} last={} log_start={} pending={}\n",
                    m.id,
                    n.id,
                    p.config().peer,
                    p.meta().epoch.conf_ver,
                    p.meta().peers.iter().map(|q| (q.id.get(), q.role)).collect::<Vec<_>>(),
                    p.is_initialized(),
                    p.applying_snapshot(),
                    p.is_leader(),
                    p.leader_id().map(|l| self.node_of_peer(l)),
                    p.term(),
                    p.commit_index(),
                    p.applied_index(),
                    p.last_index(),
                    p.log_start(),
                    p.pending_proposals(),
                ));
            }
        }
        let busy: Vec<usize> = self
            .clients
            .iter()
            .filter(|c| c.in_flight.is_some())
            .map(|c| c.id)
            .collect();
        s.push_str(&format!(
            "  clients in flight: {busy:?}; partitioned: {}\n",
            self.net.is_partitioned()
        ));
        s
    }

    fn on_end_faults(&mut self) {
        self.phase = Phase::Tail;
        self.net.heal();
        self.net.drop_percent = 0;
        self.net.dup_percent = 0;
        for n in 0..self.nodes.len() {
            if !self.nodes[n].up {
                self.q.after(0, Event::Restart { node: n });
            }
        }
    }

    /// Per node: replicas that are current members of their region (per
    /// its leader), and region leaders.
    fn placement(&self) -> (Vec<usize>, Vec<usize>) {
        let mut replicas = vec![0; self.nodes.len()];
        let mut leaders = vec![0; self.nodes.len()];
        for &r in &self.regions {
            if let Some((n, p)) = self.leader_of(r) {
                leaders[n] += 1;
                for q in &p.meta().peers {
                    replicas[q.store.get() as usize - 1] += 1;
                }
            }
        }
        (replicas, leaders)
    }

    /// The node hosting peer `id`.
    fn node_of_peer(&self, id: PeerId) -> usize {
        self.peer_nodes
            .get(&id)
            .copied()
            .unwrap_or_else(|| node_of(id.get()))
    }

    /// Notes where the peers of `meta` live (a split's new region, or a
    /// replica the PD adds).
    fn note_peers(&mut self, meta: &RegionMeta) {
        for p in &meta.peers {
            self.peer_nodes.insert(p.id, p.store.get() as usize - 1);
        }
    }

    /// The region whose newest range holds key `key`, or `RegionId(0)`
    /// (no region) in the window where a split's parent has applied it
    /// but its new region is not created yet (the shell creates it after
    /// the pass's sync, as the simulator does): clients then route at
    /// random and the nodes route by key.
    fn region_of_key(&self, key: usize) -> RegionId {
        let k = &self.keys[key];
        self.routes
            .values()
            .find(|m| m.contains(k))
            .map_or(RegionId(0), |m| m.id)
    }

    /// Node 0 dies for good (the scenario's node loss).
    fn on_kill(&mut self, node: usize) {
        self.absent[node] = true;
        if self.nodes[node].up {
            self.trace(|| format!("node {node} dies for good"));
            self.nodes[node].crash(0);
            self.stats.crashes += 1;
        }
        if let Some(pd) = self.pd.as_mut() {
            pd.killed_at_ms = Some(self.q.now_ms());
        }
    }

    /// `node` joins the cluster, empty.
    fn on_join(&mut self, node: usize) -> Result<(), SimFailure> {
        self.absent[node] = false;
        self.trace(|| format!("node {node} joins"));
        self.on_restart(node)?;
        if let Some(pd) = self.pd.as_mut() {
            pd.join(node, self.q.now_ms());
        }
        Ok(())
    }

    fn on_flush(&mut self, node: usize) {
        if self.nodes[node].up {
            self.nodes[node].store.mem.flush();
        }
        let next = around(&mut self.rng, self.plan.flush_interval_ms_mean);
        self.q.after(next, Event::Flush { node });
    }

    /// Whether this fetch's WAL read fails (injected).
    fn fetch_fails(&mut self) -> bool {
        self.rng.gen_range(0..100) < FETCH_FAIL_PERCENT
    }
}
