//! Client-side events: starting an operation, sending attempts, answers,
//! retries after refusals, timeouts, and the final reads.
//!
//! Owns how client outcomes enter the history (see `history.rs` for what
//! is recorded). Invariant: an operation is finished exactly once — by an
//! answer, an error after proposing, a timeout, or running out of time
//! for retries — and only the current operation's events count (a late
//! answer to an operation already given up is ignored).

use super::membership::OPERATOR;
use super::{Phase, Sim};
use crate::client::{output, request};
use crate::event::Event;
use crate::history::{KvInput, Record};
use crate::report::{FailureKind, SimFailure};
use golem_wire::{GolemError, ResponseBody};
use rand::Rng;

/// Pause between a client's operations.
const THINK_MS_MAX: u64 = 20;
/// Backoff range before retrying a refused attempt.
const RETRY_MS_MIN: u64 = 5;
const RETRY_MS_MAX: u64 = 40;

impl Sim {
    pub(super) fn on_client_next(&mut self, client: usize) {
        let final_reads = self.phase == Phase::FinalReads;
        let allowed =
            matches!(self.phase, Phase::Faults | Phase::Tail) || (final_reads && client == 0);
        if !allowed || self.clients[client].in_flight.is_some() {
            return;
        }
        let (key, input) = if final_reads {
            match self.final_reads.front() {
                Some(&k) => (k, KvInput::Get),
                None => {
                    self.phase = Phase::Done;
                    return;
                }
            }
        } else {
            let keys = self.keys.len();
            self.clients[client].draw(&mut self.rng, keys)
        };
        let region = self.region_of_key(key);
        let nodes = self.nodes.len();
        let c = &mut self.clients[client];
        let op = c.next_op_id();
        let node = c.target(&mut self.rng, region, nodes);
        c.in_flight = Some(crate::client::InFlight {
            op,
            key,
            input,
            call: self.event_no,
            deadline_ms: self.q.now_ms() + self.cfg.client_timeout_ms,
            node,
        });
        self.send_attempt(client);
        self.q.after(
            self.cfg.client_timeout_ms,
            Event::ClientTimeout { client, op },
        );
    }

    fn send_attempt(&mut self, client: usize) {
        let f = self.clients[client].in_flight.as_ref().expect("in flight");
        let body = request(&f.input, &self.keys[f.key], self.cfg.reads);
        let (node, op, key) = (f.node, f.op, f.key);
        if self.rng.gen_range(0..100) < self.net.drop_percent {
            return; // lost: the client times out
        }
        let delay = self.net.delay_ms(&mut self.rng);
        self.q.after(
            delay,
            Event::Request {
                node,
                client,
                op,
                key,
                body,
            },
        );
    }

    pub(super) fn on_response(
        &mut self,
        client: usize,
        op: u64,
        node: usize,
        result: Result<ResponseBody, GolemError>,
        proposed: bool,
        hint: Option<usize>,
    ) -> Result<(), SimFailure> {
        if client == OPERATOR {
            self.on_operator_answer(op, node, result);
            return Ok(());
        }
        let Some(f) = self.clients[client].in_flight.clone() else {
            return Ok(());
        };
        if f.op != op {
            return Ok(());
        }
        let region = self.region_of_key(f.key);
        let nodes = self.nodes.len();
        match result {
            Ok(body) => {
                let out = output(&f.input, body).map_err(|m| {
                    self.failure(FailureKind::Protocol, format!("node {node}: {m}"))
                })?;
                let c = &mut self.clients[client];
                c.saw(f.key, &f.input, &out);
                c.learn(&mut self.rng, region, Some(node), nodes);
                self.history.push(Record {
                    key: self.keys[f.key].clone(),
                    client,
                    input: f.input.clone(),
                    call: f.call,
                    ret: Some((self.event_no, out)),
                });
                self.stats.ops_ok += 1;
                if self.phase == Phase::FinalReads && self.final_reads.front() == Some(&f.key) {
                    self.final_reads.pop_front();
                }
                self.finish(client);
            }
            Err(_) if proposed => self.unknown(client),
            Err(e) => {
                self.trace(|| format!("client {client} op {op} refused by node {node}: {e}"));
                self.clients[client].learn(&mut self.rng, region, hint, nodes);
                let backoff = self.rng.gen_range(RETRY_MS_MIN..=RETRY_MS_MAX);
                if self.q.now_ms() + backoff < f.deadline_ms {
                    self.q.after(backoff, Event::ClientRetry { client, op });
                } else {
                    // Every attempt was refused before proposing: no effect.
                    self.stats.ops_refused += 1;
                    self.finish(client);
                }
            }
        }
        Ok(())
    }

    pub(super) fn on_retry(&mut self, client: usize, op: u64) {
        let nodes = self.nodes.len();
        let Some(f) = self.clients[client].in_flight.as_ref() else {
            return;
        };
        if f.op != op {
            return;
        }
        let region = self.region_of_key(f.key);
        let c = &mut self.clients[client];
        let node = c.target(&mut self.rng, region, nodes);
        c.in_flight.as_mut().expect("checked").node = node;
        self.send_attempt(client);
    }

    pub(super) fn on_timeout(&mut self, client: usize, op: u64) {
        if self.clients[client]
            .in_flight
            .as_ref()
            .is_some_and(|f| f.op == op)
        {
            self.unknown(client);
        }
    }

    /// The current operation's outcome is unknown: a write stays open
    /// forever in the history; a read is dropped.
    fn unknown(&mut self, client: usize) {
        let f = self.clients[client].in_flight.clone().expect("in flight");
        if f.input != KvInput::Get {
            self.history.push(Record {
                key: self.keys[f.key].clone(),
                client,
                input: f.input,
                call: f.call,
                ret: None,
            });
        }
        self.stats.ops_unknown += 1;
        self.finish(client);
    }

    fn finish(&mut self, client: usize) {
        self.clients[client].in_flight = None;
        let think = if self.phase == Phase::FinalReads {
            0
        } else {
            self.rng.gen_range(0..=THINK_MS_MAX)
        };
        self.q.after(think, Event::ClientNext { client });
    }
}
