//! Node-side events: ticks, raft-loop passes and WAL syncs, raft messages,
//! fetches of old entries, client requests at a node, restarts, store
//! flushes and WAL checkpoints.
//!
//! Owns the shell's schedule: a pass is queued whenever a node may have
//! work and none is queued or syncing (`kick`); a pass collects every
//! region's `Ready`, and if anything must be durable, the sync completes
//! after a random latency and only then are the `Ready`s persisted
//! (answers, acknowledgements, applies) — unless the planted bug
//! `AckBeforeSync` persists them first. Every entry a node applies is
//! checked as it is applied.
//!
//! Invariant: events of a crashed incarnation do nothing (`live`).

use super::{Sim, FETCH_MS_MAX};
use crate::config::{PlantedBug, ReadMode, TruncatePolicy};
use crate::event::Event;
use crate::faults::around;
use crate::node::{node_of, PassOutput, Waiter};
use crate::report::{FailureKind, SimFailure};
use crate::wal::entry_id;
use golem_core::command::Command;
use golem_core::raft_log::FetchRequest;
use golem_core::store::KvStore;
use golem_wire::{GolemError, RegionId, RequestBody};
use raft::eraftpb::{EntryType, Message, MessageType};
use rand::Rng;
use std::collections::BTreeMap;

impl Sim {
    /// Whether `node` is up in incarnation `inc`.
    fn live(&self, node: usize, inc: u64) -> bool {
        let n = &self.nodes[node];
        n.up && n.incarnation == inc
    }

    fn ack_before_sync(&self) -> bool {
        self.cfg.planted_bug == Some(PlantedBug::AckBeforeSync)
    }

    /// Queues a pass if `node` may have work and none is queued or syncing.
    pub(super) fn kick(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if n.up && !n.pass_scheduled && n.sync_in_flight.is_none() && n.has_work() {
            n.pass_scheduled = true;
            let inc = n.incarnation;
            self.q.after(0, Event::Pass { node, inc });
        }
    }

    pub(super) fn on_tick(&mut self, node: usize, inc: u64) {
        if !self.live(node, inc) {
            return;
        }
        for peer in self.nodes[node].peers.values_mut() {
            peer.tick();
        }
        self.kick(node);
        let base = self.nodes[node].tick_ms;
        let jitter = (base / 10).max(1);
        let next = self
            .rng
            .gen_range(base.saturating_sub(jitter).max(1)..=base + jitter);
        self.q.after(next, Event::Tick { node, inc });
    }

    pub(super) fn on_pass(&mut self, node: usize, inc: u64) -> Result<(), SimFailure> {
        if !self.live(node, inc) {
            return Ok(());
        }
        self.nodes[node].pass_scheduled = false;
        if self.nodes[node].sync_in_flight.is_some() || !self.nodes[node].has_work() {
            return Ok(());
        }
        let now = self.q.now_ms();
        let must_sync = self.nodes[node].collect(now);
        self.record_applied(node)?;
        let early = self.ack_before_sync();
        if early {
            // The planted bug: everything a sync should guard goes out now.
            let out = self.nodes[node].persisted();
            self.record_applied(node)?;
            self.emit(node, out)?;
        }
        if must_sync {
            let upto = self.nodes[node].wal.len();
            self.nodes[node].sync_in_flight = Some(upto);
            let latency = self.rng.gen_range(1..=self.plan.sync_ms_max);
            self.q.after(latency, Event::SyncDone { node, inc, upto });
        } else {
            // Only a commit index changed: no sync (it rides on the next).
            if !early {
                let out = self.nodes[node].persisted();
                self.record_applied(node)?;
                self.emit(node, out)?;
            }
            self.kick(node);
        }
        Ok(())
    }

    pub(super) fn on_sync_done(
        &mut self,
        node: usize,
        inc: u64,
        upto: usize,
    ) -> Result<(), SimFailure> {
        if !self.live(node, inc) {
            return Ok(());
        }
        let n = &mut self.nodes[node];
        n.wal.mark_durable(upto);
        n.sync_in_flight = None;
        if !self.ack_before_sync() {
            let out = self.nodes[node].persisted();
            self.record_applied(node)?;
            self.emit(node, out)?;
        }
        self.kick(node);
        Ok(())
    }

    /// Checks every entry `node` applied since the last call.
    fn record_applied(&mut self, node: usize) -> Result<(), SimFailure> {
        for (region, index) in self.nodes[node].store.take_applied() {
            let Some(entry) = self.nodes[node].wal.entry(region, index) else {
                let msg = format!(
                    "node {node} applied index {index} of region {region}, which its WAL does not hold"
                );
                return Err(self.failure(FailureKind::AppliedEntry, msg));
            };
            let id = entry_id(entry);
            let cmd = (entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty())
                .then(|| Command::decode(&entry.data));
            if let Err(m) = self.applied.applied(node, region, index, id) {
                let m = format!(
                    "{m}\nnode {node}'s WAL records of region {region}:\n{}",
                    self.nodes[node].wal.describe_region(region)
                );
                return Err(self.failure(FailureKind::AppliedEntry, m));
            }
            match cmd {
                Some(Ok(cmd)) => {
                    if let Err(m) = self.refused.applied(node, region, index, &cmd) {
                        return Err(self.failure(FailureKind::RefusedApplied, m));
                    }
                }
                Some(Err(e)) => {
                    let m = format!(
                        "node {node} applied region {region} index {index}, not a command: {e}"
                    );
                    return Err(self.failure(FailureKind::AppliedEntry, m));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Sends what a persisted pass handed out.
    fn emit(&mut self, node: usize, out: PassOutput) -> Result<(), SimFailure> {
        for (region, msg) in out.messages {
            let to = node_of(msg.to);
            for delay in self.net.plan(&mut self.rng, node, to) {
                let ev = Event::Raft {
                    from: node,
                    to,
                    region,
                    msg: msg.clone(),
                };
                self.q.after(delay, ev);
            }
        }
        for (w, result) in out.finished {
            if let (Err(GolemError::NotLeader { .. }), Some(v)) = (&result, &w.value) {
                // golem-core's promise: this write never takes effect.
                if let Err(m) = self.refused.refused(node, v) {
                    return Err(self.failure(FailureKind::RefusedApplied, m));
                }
            }
            self.respond(node, w.client, w.op, result, true, None);
        }
        for (w, result) in out.reads {
            self.respond(node, w.client, w.op, result, false, None);
        }
        let inc = self.nodes[node].incarnation;
        for (region, req) in out.fetches {
            self.stats.fetches += 1;
            self.trace(|| {
                format!(
                    "node {node} region {region} fetches [{}, {})",
                    req.low, req.high
                )
            });
            let delay = self.rng.gen_range(1..=FETCH_MS_MAX);
            self.q.after(
                delay,
                Event::Fetched {
                    node,
                    inc,
                    region,
                    req,
                },
            );
        }
        Ok(())
    }

    pub(super) fn on_raft(
        &mut self,
        from: usize,
        to: usize,
        region: RegionId,
        msg: Message,
    ) -> Result<(), SimFailure> {
        if self.net.is_cut(from, to) || !self.nodes[to].up {
            return Ok(());
        }
        let n = &self.nodes[to];
        if matches!(
            msg.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && self.q.now_ms() < n.started_ms + n.lease_ms
        {
            // Might be inside a lease it granted before a restart: no vote
            // until any such lease has run out (`RegionHandle::step`).
            return Ok(());
        }
        let peer = self.nodes[to]
            .peers
            .get_mut(&region)
            .expect("every node hosts every region");
        if let Err(e) = peer.step(msg) {
            let msg = format!("node {to} region {region} refused a message from node {from}: {e}");
            return Err(self.failure(FailureKind::Protocol, msg));
        }
        self.kick(to);
        Ok(())
    }

    pub(super) fn on_fetched(
        &mut self,
        node: usize,
        inc: u64,
        region: RegionId,
        req: FetchRequest,
    ) {
        if !self.live(node, inc) {
            return;
        }
        let result = if self.fetch_fails() {
            Err("injected WAL read failure".to_owned())
        } else {
            Ok(self.nodes[node].wal.read_entries(region, req.low, req.high))
        };
        let peer = self.nodes[node].peers.get_mut(&region).expect("hosted");
        peer.on_entries_fetched(req, result);
        self.kick(node);
    }

    /// A node's answer to a client, over the (lossy) network.
    /// `proposed`: the request reached the log; `hint`: the leader the
    /// node knows of.
    pub(super) fn respond(
        &mut self,
        node: usize,
        client: usize,
        op: u64,
        result: Result<golem_wire::ResponseBody, GolemError>,
        proposed: bool,
        hint: Option<usize>,
    ) {
        if self.rng.gen_range(0..100) < self.net.drop_percent {
            return;
        }
        let delay = self.net.delay_ms(&mut self.rng);
        self.q.after(
            delay,
            Event::Response {
                client,
                op,
                node,
                result,
                proposed,
                hint,
            },
        );
    }

    pub(super) fn on_request(
        &mut self,
        node: usize,
        client: usize,
        op: u64,
        key: usize,
        body: RequestBody,
    ) {
        let region = self.key_region[key];
        if !self.nodes[node].up {
            // Connection refused: certainly not proposed.
            self.respond(node, client, op, Err(GolemError::ShuttingDown), false, None);
            return;
        }
        let hint = self.nodes[node].peers[&region]
            .leader_id()
            .map(|p| node_of(p.get()));
        let value = match &body {
            RequestBody::Put { value, .. } => Some(value.clone()),
            RequestBody::CompareAndSwap { new_value, .. } => new_value.clone(),
            _ => None,
        };
        let waiter = Waiter { client, op, value };
        if matches!(body, RequestBody::Get { .. }) {
            let barrier = self.cfg.reads != ReadMode::NoBarrier;
            let now = self.q.now_ms();
            match self.nodes[node].read(region, body, waiter, barrier, now) {
                Some(result) => self.respond(node, client, op, result, false, hint),
                None => self.kick(node),
            }
            return;
        }
        match self.nodes[node].propose(region, body, waiter) {
            Ok(()) => self.kick(node),
            Err(e) => self.respond(node, client, op, Err(e), false, hint),
        }
    }

    pub(super) fn on_restart(&mut self, node: usize) -> Result<(), SimFailure> {
        if self.nodes[node].up {
            return Ok(());
        }
        self.trace(|| format!("node {node} restarts"));
        if let Err(m) = self.nodes[node].start() {
            return Err(self.failure(FailureKind::Recovery, m));
        }
        let regions: Vec<RegionId> = self.nodes[node].regions().collect();
        for region in regions {
            let from = self.nodes[node].store.persisted_applied(region).get();
            self.applied.restarted(node, region, from);
        }
        self.nodes[node].started_ms = self.q.now_ms();
        let inc = self.nodes[node].incarnation;
        let first = self.rng.gen_range(0..self.nodes[node].tick_ms.max(1));
        self.q.after(first, Event::Tick { node, inc });
        self.kick(node);
        Ok(())
    }

    /// The `GlobalMin` policy's log start for `region`: the lowest durable
    /// applied index over all nodes, and the current leader's retention
    /// floor (its view of its followers can lag what they hold, and it
    /// probes from that view: a follower's durable state alone is not
    /// enough).
    fn global_log_floor(&mut self, region: RegionId) -> golem_wire::LogIndex {
        let mut at = self
            .nodes
            .iter_mut()
            .map(|n| n.store.persisted_applied(region))
            .min()
            .expect("nodes");
        for n in &self.nodes {
            if let Some(floor) = n.peers.get(&region).and_then(|p| p.log_retention_floor()) {
                at = at.min(golem_wire::LogIndex(floor));
            }
        }
        at
    }

    pub(super) fn on_checkpoint(&mut self, node: usize) {
        if self.nodes[node].between_passes() {
            let regions: Vec<RegionId> = self.nodes[node].regions().collect();
            let mut log_start = BTreeMap::new();
            for region in regions {
                let at = match self.cfg.truncate {
                    TruncatePolicy::Shell => {
                        let n = &mut self.nodes[node];
                        let persisted = n.store.persisted_applied(region);
                        match n.peers[&region].log_retention_floor() {
                            Some(floor) => persisted.min(golem_wire::LogIndex(floor)),
                            None => persisted,
                        }
                    }
                    TruncatePolicy::GlobalMin => self.global_log_floor(region),
                };
                log_start.insert(region, at.get());
            }
            let cut = self.nodes[node].checkpoint(&log_start);
            self.stats.checkpoints += 1;
            self.trace(|| {
                format!("node {node} checkpoint at {log_start:?}: {cut} records deleted")
            });
        }
        let next = around(&mut self.rng, self.plan.checkpoint_interval_ms_mean);
        self.q.after(next, Event::Checkpoint { node });
    }
}
