//! The Ready cycle: send, persist (one fdatasync), apply, reply; snapshots
//! received from the leader and taken locally (log compaction).

use super::*;

impl<L: LogSink, O: Outbox, E: Env> Driver<L, O, E> {
    /// One Ready cycle. Invariant: nothing is proposed between `ready()` and
    /// `advance()` (raft-rs would find unstable entries it did not hand out).
    pub(super) fn handle_ready(&mut self) {
        if !self.node.has_ready() {
            return;
        }
        let mut rd = self.node.ready();
        self.send(rd.take_messages());
        let confirmed = rd.take_read_states();
        self.serve_confirmed_tso(confirmed);
        if !rd.snapshot().is_empty() {
            self.install_received_snapshot(rd.snapshot().clone());
        }
        let committed = rd.take_committed_entries();
        self.apply(committed);
        if !rd.entries().is_empty() {
            let wire: Vec<_> = rd.entries().iter().map(convert::entry_to_wire).collect();
            self.log.append_entries(&wire);
        }
        if let Some(hs) = rd.hs() {
            self.log.append_hard_state(convert::hard_state_to_wire(hs));
        }
        if let Err(e) = self.log.sync() {
            fatal("raft log sync", e);
        }
        let store = self.node.mut_store();
        store.append(rd.entries());
        if let Some(hs) = rd.hs() {
            store.set_hard_state(hs.clone());
        }
        self.send(rd.take_persisted_messages());
        let mut light = self.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit);
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed);
        self.node.advance_apply();
        self.maybe_compact();
    }

    pub(super) fn install_received_snapshot(&mut self, snap: Snapshot) {
        let timeouts = StoreTimeouts {
            disconnected_after_ms: self.cfg.store_disconnected_after_ms,
            down_after_ms: self.cfg.store_down_after_ms,
        };
        let state = match PdState::decode_snapshot(&snap.data, timeouts) {
            Ok(s) => s,
            Err(e) => fatal("snapshot from the leader", e),
        };
        let meta = snap.get_metadata().clone();
        let mut hs = self.node.store().hard_state().clone();
        hs.commit = hs.commit.max(meta.index);
        hs.term = hs.term.max(meta.term);
        if let Err(e) = self.log.install_snapshot(
            &convert::snapshot_to_wire(&snap),
            convert::hard_state_to_wire(&hs),
            &[],
        ) {
            fatal("installing a snapshot", e);
        }
        self.node.mut_store().apply_snapshot(snap);
        self.state = state;
        self.applied_index = meta.index;
        self.applied_term = meta.term;
        self.oracle
            .on_window_committed(self.state.tso_window_end_ms());
        self.publish_cluster();
        tracing::info!(index = meta.index, "installed a snapshot from the leader");
    }

    pub(super) fn publish_cluster(&self) {
        self.shared
            .cluster
            .store(self.state.cluster().map_or(0, |c| c.0), Ordering::Release);
    }

    pub(super) fn apply(&mut self, entries: Vec<Entry>) {
        for e in entries {
            self.applied_index = e.index;
            self.applied_term = e.term;
            if e.data.is_empty() || e.get_entry_type() != EntryType::EntryNormal {
                continue; // a new leader's empty entry; no conf changes yet
            }
            let result = match PdCommand::decode(&e.data) {
                Ok(cmd) => self.state.apply(&cmd),
                Err(err) => {
                    // Every member skips the same entry: state stays identical.
                    tracing::error!(index = e.index, "undecodable PD command skipped: {err}");
                    Err(GolemError::Internal {
                        reason: err.to_string(),
                    })
                }
            };
            self.oracle
                .on_window_committed(self.state.tso_window_end_ms());
            // Before answering: a client that reconnects right after its
            // Bootstrap returns must get the new cluster id in its handshake.
            self.publish_cluster();
            if let Some((member, token)) = parse_context(&e.context) {
                if member == self.cfg.id.0 && token == ID_POOL_TOKEN {
                    if let Ok(Some(PdResponseBody::AllocIds { first, count })) = &result {
                        self.sched.on_ids(*first, *count);
                    }
                } else if member == self.cfg.id.0 && token != 0 {
                    if let Some(p) = self.pending.remove(&token) {
                        let resp = match result {
                            Ok(Some(PdResponseBody::RegionHeartbeat { .. })) => {
                                PdResponse::Ok(PdResponseBody::RegionHeartbeat {
                                    operator: p.operator,
                                })
                            }
                            Ok(Some(body)) => PdResponse::Ok(body),
                            Ok(None) => PdResponse::Err(GolemError::Internal {
                                reason: "command without an answer".into(),
                            }),
                            Err(e) => PdResponse::Err(e),
                        };
                        let _ = p.reply.send(resp);
                    }
                }
            }
        }
    }

    pub(super) fn maybe_compact(&mut self) {
        let store = self.node.store();
        let snap_index = store.snapshot_ref().get_metadata().index;
        if self.applied_index < snap_index + self.cfg.snapshot_entries {
            return;
        }
        let index = self.applied_index;
        let Some(term) = store.term_of(index) else {
            return;
        };
        let mut snap = Snapshot {
            data: self.state.encode_snapshot().into(),
            ..Default::default()
        };
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata()
            .set_conf_state(store.conf_state().clone());
        let after: Vec<_> = store
            .entries_after_snapshot()
            .iter()
            .filter(|e| e.index > index)
            .map(convert::entry_to_wire)
            .collect();
        let hs = convert::hard_state_to_wire(store.hard_state());
        if let Err(e) = self
            .log
            .install_snapshot(&convert::snapshot_to_wire(&snap), hs, &after)
        {
            fatal("writing a snapshot", e);
        }
        self.node.mut_store().compact_to(snap);
        tracing::info!(index, "snapshot taken, raft log compacted");
    }
}
