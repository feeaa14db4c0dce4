//! Client requests on the driver: local answers, proposals, and the Tso
//! batches confirmed by ReadIndex.

use super::*;

impl<L: LogSink, O: Outbox, E: Env> Driver<L, O, E> {
    pub fn on_client(
        &mut self,
        body: PdRequestBody,
        deadline_ms: u64,
        reply: oneshot::Sender<PdResponse>,
    ) {
        if let PdRequestBody::GetMembers = body {
            let _ = reply.send(PdResponse::Ok(self.members()));
            return;
        }
        if !self.is_ready_leader() {
            let _ = reply.send(PdResponse::Err(self.redirect()));
            return;
        }
        let now = self.env.now_ms();
        let step = self.local_step(body, now);
        let (cmd, operator) = match step {
            Step::Reply(r) => {
                let _ = reply.send(r.into());
                return;
            }
            Step::Propose(cmd) => (cmd, None),
            Step::ProposeHeartbeat(cmd, op) => (cmd, op),
            Step::Tso { count } => {
                self.tso_queue.push(TsoWait {
                    count,
                    reply,
                    deadline_ms,
                });
                return;
            }
        };
        if let Err(e) = self.state.precheck(&cmd) {
            let _ = reply.send(PdResponse::Err(e));
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        match self
            .node
            .propose(proposal_context(self.cfg.id, token), cmd.encode())
        {
            Ok(()) => {
                self.pending.insert(
                    token,
                    Pending {
                        reply,
                        deadline_ms,
                        operator,
                    },
                );
            }
            Err(_) => {
                let e = self.redirect();
                let _ = reply.send(PdResponse::Err(e));
            }
        }
    }

    /// Serves a request from local state, or says what to propose.
    pub(super) fn local_step(&mut self, body: PdRequestBody, now: u64) -> Step {
        let s = &mut self.state;
        match body {
            PdRequestBody::GetMembers => unreachable!("answered above"),
            PdRequestBody::IsBootstrapped => Step::Reply(Ok(PdResponseBody::IsBootstrapped {
                bootstrapped: s.cluster().is_some(),
            })),
            PdRequestBody::GetRegion { key } => Step::Reply(
                s.get_region(&key)
                    .map(|route| PdResponseBody::Region { route }),
            ),
            PdRequestBody::GetRegionById { region } => Step::Reply(
                s.get_region_by_id(region)
                    .map(|r| PdResponseBody::Region { route: Some(r) }),
            ),
            PdRequestBody::ScanRegions { start, end, limit } => Step::Reply(
                s.scan_regions(&start, &end, limit)
                    .map(|routes| PdResponseBody::Regions { routes }),
            ),
            PdRequestBody::GetStore { store } => Step::Reply(
                s.get_store(store, now)
                    .map(|store| PdResponseBody::Store { store }),
            ),
            PdRequestBody::GetStores { include_tombstones } => Step::Reply(
                s.get_stores(include_tombstones, now)
                    .map(|stores| PdResponseBody::Stores { stores }),
            ),
            PdRequestBody::StoreHeartbeat { store, stats } => Step::Reply(
                s.store_heartbeat(store, stats, now)
                    .map(|()| PdResponseBody::StoreHeartbeat),
            ),
            PdRequestBody::Tso { count } => Step::Tso { count },
            PdRequestBody::RegionHeartbeat { heartbeat } => {
                // A report from an older term than the known leader's
                // gets no operator (its sender no longer leads).
                let stale_leader = s
                    .routing()
                    .get(heartbeat.region.id)
                    .is_some_and(|r| r.term > heartbeat.term);
                match s.region_heartbeat_local(&heartbeat) {
                    Err(e) => Step::Reply(Err(e)),
                    Ok(effect) => {
                        let operator = if stale_leader {
                            None
                        } else {
                            self.sched.on_region_heartbeat(&heartbeat, now)
                        };
                        match effect {
                            HeartbeatEffect::StatsOnly => {
                                Step::Reply(Ok(PdResponseBody::RegionHeartbeat { operator }))
                            }
                            HeartbeatEffect::Meta => Step::ProposeHeartbeat(
                                PdCommand::RegionHeartbeat {
                                    heartbeat: (&heartbeat).into(),
                                },
                                operator,
                            ),
                        }
                    }
                }
            }
            PdRequestBody::OperatorList => {
                Step::Reply(s.require_cluster().map(|_| PdResponseBody::Operators {
                    operators: self.sched.list(),
                }))
            }
            PdRequestBody::OperatorAdd { region, op } => Step::Reply(
                self.sched
                    .admin_add(s, region, op, now)
                    .map(|operator| PdResponseBody::OperatorAdded { operator }),
            ),
            PdRequestBody::OperatorCancel { region } => Step::Reply(
                s.get_region_by_id(region)
                    .map(|_| PdResponseBody::OperatorCancelled {
                        cancelled: self.sched.cancel(region),
                    }),
            ),
            PdRequestBody::DeleteStore { store } => match s.get_store(store, now) {
                Err(e) => Step::Reply(Err(e)),
                Ok(info) if matches!(info.state, StoreState::Offline | StoreState::Tombstone) => {
                    Step::Reply(Ok(PdResponseBody::StoreDeleted { state: info.state }))
                }
                Ok(_) => match self.sched.check_delete(s, store, now) {
                    Err(e) => Step::Reply(Err(e)),
                    Ok(()) => Step::Propose(PdCommand::SetStoreState {
                        store,
                        state: StoreState::Offline,
                    }),
                },
            },
            PdRequestBody::Bootstrap { store, region } => Step::Propose(PdCommand::Bootstrap {
                cluster: ClusterId(self.env.random_u64() | 1),
                store,
                region,
            }),
            PdRequestBody::PutStore { store } => Step::Propose(PdCommand::PutStore { store }),
            PdRequestBody::AllocIds { count } => Step::Propose(PdCommand::AllocIds { count }),
            PdRequestBody::JoinCluster { store } => {
                let n = self.cfg.initial_replicas;
                match s.join_step(&store, n) {
                    Err(e) => Step::Reply(Err(e)),
                    Ok(JoinStep::Reply(answer)) => Step::Reply(Ok(answer)),
                    Ok(JoinStep::Propose) => Step::Propose(PdCommand::JoinCluster {
                        store,
                        cluster: ClusterId(self.env.random_u64() | 1),
                        initial_replicas: n,
                    }),
                }
            }
        }
    }

    pub(super) fn propose_internal(&mut self, cmd: PdCommand) -> bool {
        self.node
            .propose(proposal_context(self.cfg.id, 0), cmd.encode())
            .is_ok()
    }

    pub(super) fn maybe_extend_tso(&mut self, now: u64) {
        if let Some(end_ms) = self.oracle.extension_due(now) {
            if !self.propose_internal(PdCommand::TsoWindow { end_ms }) {
                self.oracle.extension_failed();
            }
        }
    }

    /// Starts one ReadIndex round for the Tso requests of this pass: a
    /// timestamp is served only after a quorum confirmed, after the request
    /// arrived, that this member still leads — so no newer leader can have
    /// served a larger timestamp before it (linearizable TSO).
    pub(super) fn confirm_tso_batch(&mut self) {
        if self.tso_queue.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.tso_queue);
        if !self.is_ready_leader() {
            let e = self.redirect();
            for w in batch {
                let _ = w.reply.send(PdResponse::Err(e.clone()));
            }
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.node.read_index(ctx.to_le_bytes().to_vec());
        self.tso_confirming.insert(ctx, batch);
    }

    /// Serves the Tso batches whose leadership was confirmed (called inside
    /// the Ready cycle: must not propose).
    pub(super) fn serve_confirmed_tso(&mut self, states: Vec<raft::ReadState>) {
        let now = self.env.now_ms();
        for rs in states {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            let Some(batch) = self.tso_confirming.remove(&u64::from_le_bytes(ctx)) else {
                continue;
            };
            for w in batch {
                let r = match self.oracle.next(w.count, now) {
                    Ok(last) => Ok(PdResponseBody::Tso {
                        last,
                        count: w.count,
                    }),
                    Err(TsoError::NotReady | TsoError::WindowExhausted) => {
                        Err(GolemError::ServerBusy {
                            retry_after_ms: NOT_READY_RETRY_MS,
                        })
                    }
                };
                let _ = w.reply.send(r.into());
            }
        }
        // No proposal here: this runs between `ready()` and `advance()`,
        // where raft-rs forbids new entries. The window is extended by
        // `leadership_changes` at the end of the pass.
    }
}
