//! Node-side events: ticks, raft-loop passes and WAL syncs, raft messages
//! (snapshots with their data), snapshot installs and their outcome
//! reports, fetches of old entries, client and operator requests at a
//! node, restarts, store flushes and WAL checkpoints.
//!
//! Owns the shell's schedule: a pass is queued whenever a node may have
//! work and none is queued or syncing (`kick`); a pass collects every
//! region's `Ready`, and if anything must be durable, the sync completes
//! after a random latency and only then are the `Ready`s persisted
//! (answers, acknowledgements, applies) — unless the planted bug
//! `AckBeforeSync` persists them first. Every entry a node applies is
//! checked as it is applied.
//!
//! Snapshots: a leader's `MsgSnapshot` carries the store view prepared
//! with it and is delayed, dropped or cut like any message; a copy that
//! does not arrive is reported to the leader as failed
//! (`report_snapshot(false)`), one that arrives is kept durably by the
//! receiver (the shell's received file) and stepped, and the outcome is
//! reported. An accepted snapshot's `Ready` is parked after its sync until
//! its data is in the store (`SnapshotInstalled`, 1..`INSTALL_MS_MAX` ms
//! later). A message for a replica a node does not have creates it
//! uninitialized (the shell's `transport::deliver` rule); one for a
//! removed replica is dropped; a removed replica's messages that members
//! refuse (`StepPeerNotFound`) are expected.
//!
//! Invariant: events of a crashed incarnation do nothing (`live`).

use super::{Phase, Sim, FETCH_MS_MAX};
use crate::config::{PlantedBug, ReadMode, TruncatePolicy};
use crate::event::{Event, SnapshotData};
use crate::faults::around;
use crate::node::{PassOutput, Waiter};
use crate::report::{FailureKind, SimFailure};
use crate::wal::entry_id;
use golem_core::command::Command;
use golem_core::raft_log::FetchRequest;
use golem_core::region::CoreError;
use golem_core::store::KvStore;
use golem_wire::{GolemError, PeerId, RegionId, RequestBody};
use raft::eraftpb::{EntryType, Message, MessageType};
use rand::Rng;
use std::collections::BTreeMap;

/// Longest time putting a snapshot's data into the store takes.
const INSTALL_MS_MAX: u64 = 30;
/// In runs with crashes, the share of snapshot installs and removals at
/// which a crash is aimed (before the install finishes; before or after
/// the tombstone is synced).
const TARGETED_CRASH_PERCENT: u32 = 20;

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
        let inc = self.nodes[node].incarnation;
        for (region, msg) in out.messages {
            let to = self.node_of_peer(PeerId(msg.to));
            let snap = if msg.get_msg_type() == MessageType::MsgSnapshot {
                let index = msg.get_snapshot().get_metadata().index;
                let Some(pairs) = self.nodes[node].prepared_data(region, index) else {
                    let m = format!(
                        "node {node} region {region} sent a snapshot at {index} it prepared no store view for"
                    );
                    return Err(self.failure(FailureKind::Protocol, m));
                };
                self.stats.snapshots_sent += 1;
                Some(SnapshotData {
                    from_inc: inc,
                    pairs: pairs.clone(),
                })
            } else {
                None
            };
            let copies = self.net.plan(&mut self.rng, node, to);
            if copies.is_empty() && snap.is_some() {
                // The stream failed: the leader learns it.
                let delay = self.net.delay_ms(&mut self.rng);
                self.q.after(
                    delay,
                    Event::SnapshotStatus {
                        node,
                        inc,
                        region,
                        to: PeerId(msg.to),
                        ok: false,
                    },
                );
            }
            let conf_ver = self.nodes[node].peers.get(&region).map_or_else(
                || out.removed_conf_vers.get(&region).copied().unwrap_or(0),
                |p| p.meta().epoch.conf_ver,
            );
            for delay in copies {
                let ev = Event::Raft {
                    from: node,
                    to,
                    region,
                    msg: msg.clone(),
                    snap: snap.clone(),
                    conf_ver,
                };
                self.q.after(delay, ev);
            }
        }
        for meta in out.split_created {
            self.stats.splits_created += 1;
            self.trace(|| {
                format!(
                    "node {node} created region {} {:?}..{:?} of a split",
                    meta.id, meta.start, meta.end
                )
            });
            self.note_peers(&meta);
            // The new replica starts at its bootstrap index.
            let applied = self.nodes[node].peers[&meta.id].applied_index().get();
            self.applied.restarted(node, meta.id, applied);
            if let Err(at) = self.regions.binary_search(&meta.id) {
                self.regions.insert(at, meta.id);
            }
            self.routes.entry(meta.id).or_insert(meta);
        }
        for (region, index, term) in out.installs {
            let delay = self.rng.gen_range(1..=INSTALL_MS_MAX);
            self.trace(|| {
                format!("node {node} region {region} installs the snapshot at ({index}, {term}) in {delay} ms")
            });
            self.q
                .after(delay, Event::SnapshotInstalled { node, inc, region });
            self.maybe_aim_crash(node, delay + 1);
        }
        for (region, index) in out.installed {
            self.stats.snapshots_installed += 1;
            self.applied.restarted(node, region, index);
            self.trace(|| format!("node {node} region {region} installed the snapshot at {index}"));
        }
        for (region, index) in out.prepared {
            self.trace(|| format!("node {node} region {region} prepared a snapshot at {index}"));
        }
        for (region, peer) in out.removed {
            self.stats.replicas_removed += 1;
            self.trace(|| {
                format!("node {node} region {region}: replica {peer} removed, tombstone appended")
            });
            let window = 2 * self.plan.sync_ms_max;
            self.maybe_aim_crash(node, window);
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

    /// In the fault phase of a run with crashes, aims a crash at `node`
    /// within `window_ms` in `TARGETED_CRASH_PERCENT` of the calls.
    fn maybe_aim_crash(&mut self, node: usize, window_ms: u64) {
        if self.phase != Phase::Faults || self.plan.crash_weight == 0 {
            return;
        }
        if self.rng.gen_range(0..100) < TARGETED_CRASH_PERCENT {
            let inc = self.nodes[node].incarnation;
            let at = self.rng.gen_range(0..=window_ms);
            self.q.after(at, Event::CrashNode { node, inc });
        }
    }

    pub(super) fn on_raft(
        &mut self,
        from: usize,
        to: usize,
        region: RegionId,
        msg: Message,
        snap: Option<SnapshotData>,
        conf_ver: u64,
    ) -> Result<(), SimFailure> {
        let (from_peer, to_peer) = (PeerId(msg.from), PeerId(msg.to));
        let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        let report = |sim: &mut Sim, ok: bool| {
            if let Some(d) = &snap {
                let delay = sim.net.delay_ms(&mut sim.rng);
                let ev = Event::SnapshotStatus {
                    node: from,
                    inc: d.from_inc,
                    region,
                    to: to_peer,
                    ok,
                };
                sim.q.after(delay, ev);
            }
        };
        if self.net.is_cut(from, to) || !self.nodes[to].up {
            report(self, false);
            return Ok(());
        }
        if let Some(p) = self.nodes[to].peers.get(&region) {
            if p.is_initialized()
                && p.meta().peer(from_peer).is_none()
                && conf_ver < p.meta().epoch.conf_ver
            {
                // A stale peer of a removed replica: tell it (the shell's
                // `transport::deliver`).
                let at = p.meta().epoch.conf_ver;
                self.trace(|| {
                    format!("node {to} region {region}: gc notice to non-member {from_peer} at conf_ver {conf_ver}")
                });
                report(self, false);
                for delay in self.net.plan(&mut self.rng, to, from) {
                    let ev = Event::Gc {
                        from: to,
                        to: from,
                        region,
                        to_peer: from_peer,
                        conf_ver: at,
                    };
                    self.q.after(delay, ev);
                }
                return Ok(());
            }
        }
        if let Some((index, term)) = self.nodes[to].removal_notice(region, to_peer) {
            // A removed replica's node answers for it with the entry that
            // removed it (the shell's `transport::deliver`).
            report(self, false);
            self.trace(|| {
                format!("node {to} region {region}: removed peer {to_peer} tells {from_peer} its removal {index}/{term} is committed")
            });
            for delay in self.net.plan(&mut self.rng, to, from) {
                let ev = Event::Removed {
                    from: to,
                    to: from,
                    region,
                    from_peer: to_peer,
                    to_peer: from_peer,
                    index,
                    term,
                };
                self.q.after(delay, ev);
            }
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
        if is_snapshot {
            // A snapshot overlapping another initialized region of the
            // node is refused (the shell's `snapshot::receive`): a split's
            // new region reached here before the parent applied the split,
            // or a stale parent's snapshot over a new region's range.
            let meta = golem_core::region::RegionMeta::decode(&msg.get_snapshot().data)
                .expect("a snapshot carries its region's metadata");
            let overlapping = self.nodes[to].peers.iter().any(|(id, p)| {
                *id != region
                    && p.is_initialized()
                    && crate::check::epochs::overlaps(
                        &meta.start,
                        &meta.end,
                        &p.meta().start,
                        &p.meta().end,
                    )
            });
            if overlapping {
                self.trace(|| {
                    format!(
                        "node {to} region {region}: snapshot overlaps another region here; refused"
                    )
                });
                report(self, false);
                return Ok(());
            }
            // The stream is complete and durable before the message is
            // stepped (the shell's received file).
            let md = msg.get_snapshot().get_metadata();
            let key = (region, md.index, md.term);
            let pairs = snap
                .as_ref()
                .expect("a snapshot carries its data")
                .pairs
                .clone();
            self.nodes[to].snap_files.insert(key, pairs);
        }
        let created = !self.nodes[to].peers.contains_key(&region);
        let Some(peer) = self.nodes[to].peer_for(region, to_peer, &msg) else {
            self.trace(|| format!("node {to} region {region}: message for peer {to_peer} dropped"));
            report(self, false);
            return Ok(());
        };
        let result = peer.step(msg);
        let from_is_member = peer.meta().peer(from_peer).is_some();
        if created {
            self.trace(|| {
                format!("node {to} region {region}: replica {to_peer} created by a message")
            });
        }
        match result {
            Ok(()) => report(self, true),
            // A removed replica that does not know it yet (its removal is
            // applied without it): members refuse its messages.
            Err(CoreError::Raft {
                source: raft::Error::StepPeerNotFound,
                ..
            }) if !from_is_member => {
                report(self, false);
                self.trace(|| {
                    format!("node {to} region {region}: message from non-member peer {from_peer} refused")
                });
            }
            Err(e) => {
                let msg =
                    format!("node {to} region {region} refused a message from node {from}: {e}");
                return Err(self.failure(FailureKind::Protocol, msg));
            }
        }
        self.kick(to);
        Ok(())
    }

    /// A member's notice that `to_peer` is no longer a member: the
    /// replica is destroyed by its node's next pass if it is that peer and
    /// older (or uninitialized).
    pub(super) fn on_gc(
        &mut self,
        from: usize,
        to: usize,
        region: RegionId,
        to_peer: PeerId,
        conf_ver: u64,
    ) {
        if self.net.is_cut(from, to) || !self.nodes[to].up {
            return;
        }
        let doomed = self.nodes[to].peers.get(&region).is_some_and(|p| {
            p.config().peer == to_peer
                && (!p.is_initialized() || p.meta().epoch.conf_ver < conf_ver)
        });
        if doomed {
            self.trace(|| format!("node {to} region {region}: replica {to_peer} is no longer a member; destroying it"));
            self.nodes[to].doom(region);
            self.kick(to);
        }
    }

    /// A removed replica's notice that the entry `(index, term)` that
    /// removed it is committed: the member commits up to it if its log
    /// holds it (`RegionPeer::learn_removal_committed`).
    pub(super) fn on_removed(
        &mut self,
        from: usize,
        to: usize,
        region: RegionId,
        (from_peer, to_peer): (PeerId, PeerId),
        (index, term): (u64, u64),
    ) {
        if self.net.is_cut(from, to) || !self.nodes[to].up {
            return;
        }
        let Some(p) = self.nodes[to].peers.get_mut(&region) else {
            return;
        };
        if p.config().peer == to_peer && p.learn_removal_committed(index, term) {
            self.stats.removal_notices_used += 1;
            self.trace(|| format!("node {to} region {region}: committed {index}/{term} on removed peer {from_peer}'s word"));
            self.kick(to);
        }
    }

    pub(super) fn on_snapshot_installed(
        &mut self,
        node: usize,
        inc: u64,
        region: RegionId,
    ) -> Result<(), SimFailure> {
        if !self.live(node, inc) {
            return Ok(());
        }
        let out = self.nodes[node].install_done(region);
        self.record_applied(node)?;
        self.emit(node, out)?;
        self.kick(node);
        Ok(())
    }

    pub(super) fn on_snapshot_status(
        &mut self,
        node: usize,
        inc: u64,
        region: RegionId,
        to: PeerId,
        ok: bool,
    ) {
        if !self.live(node, inc) {
            return;
        }
        if let Some(peer) = self.nodes[node].peers.get_mut(&region) {
            peer.report_snapshot(to, ok);
            self.kick(node);
        }
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
        let Some(peer) = self.nodes[node].peers.get_mut(&region) else {
            return; // removed meanwhile
        };
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
        if client == super::pd::PD_CLIENT {
            // A PD step runs on the node itself: no network in between.
            self.on_pd_answer(op);
            return;
        }
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
        if !self.nodes[node].up {
            // Connection refused: certainly not proposed.
            self.respond(node, client, op, Err(GolemError::ShuttingDown), false, None);
            return;
        }
        // The node routes by key among its initialized replicas (the
        // newest metadata wins while a restarted parent replays a split).
        let k = &self.keys[key];
        let found = self.nodes[node]
            .peers
            .values()
            .filter(|p| p.is_initialized() && p.meta().contains(k))
            .max_by_key(|p| p.meta().epoch.version);
        let Some(peer) = found else {
            let region = self.region_of_key(key);
            let err = GolemError::RegionNotFound { region };
            self.respond(node, client, op, Err(err), false, None);
            return;
        };
        let region = peer.meta().id;
        let hint = peer.leader_id().map(|p| self.node_of_peer(p));
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
        if self.nodes[node].up || self.absent[node] {
            return Ok(());
        }
        self.trace(|| format!("node {node} restarts"));
        if let Err(m) = self.nodes[node].start() {
            return Err(self.failure(FailureKind::Recovery, m));
        }
        self.note_recovered(node);
        self.nodes[node].started_ms = self.q.now_ms();
        let inc = self.nodes[node].incarnation;
        let first = self.rng.gen_range(0..self.nodes[node].tick_ms.max(1));
        self.q.after(first, Event::Tick { node, inc });
        self.kick(node);
        Ok(())
    }

    /// `node` (re)started: each replica's next apply follows its recovered
    /// applied index (the store's durable one, or the region's initial
    /// index).
    pub(super) fn note_recovered(&mut self, node: usize) {
        for (region, peer) in &self.nodes[node].peers {
            self.applied
                .restarted(node, *region, peer.applied_index().get());
        }
    }

    /// The `GlobalMin` policy's log start for `region`: the lowest durable
    /// applied index over all nodes, and the current leader's retention
    /// floor (its view of its followers can lag what they hold, and it
    /// probes from that view: a follower's durable state alone is not
    /// enough).
    fn global_log_floor(&mut self, region: RegionId) -> golem_wire::LogIndex {
        // Over the nodes hosting an initialized replica (a replica added
        // later comes up by snapshot; a down node counts by its store).
        let mut at = self
            .nodes
            .iter_mut()
            .filter(|n| !n.up || n.peers.get(&region).is_some_and(|p| p.is_initialized()))
            .filter(|n| n.up || !n.wal.region_records(region).is_empty())
            .map(|n| n.store.persisted_applied(region))
            .min()
            .unwrap_or(golem_wire::LogIndex(u64::MAX));
        for n in &self.nodes {
            if let Some(floor) = n.peers.get(&region).and_then(|p| p.log_retention_floor()) {
                at = at.min(golem_wire::LogIndex(floor));
            }
        }
        at
    }

    pub(super) fn on_checkpoint(&mut self, node: usize) {
        // Like the shell's raft loop: no WAL garbage collection while a
        // snapshot installs (its region's only metadata records may lie
        // before every needed entry, and it writes no checkpoint).
        if self.nodes[node].between_passes() && !self.nodes[node].is_installing() {
            let regions: Vec<RegionId> = self.nodes[node]
                .regions()
                .filter(|&r| self.nodes[node].checkpointable(r))
                .collect();
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
                    TruncatePolicy::GlobalMin => {
                        let own = self.nodes[node].store.persisted_applied(region);
                        self.global_log_floor(region).min(own)
                    }
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
