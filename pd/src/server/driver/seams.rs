//! The driver's seams: where disk, network, clock and randomness enter.
//!
//! Owns three small traits and their real implementations — `LogSink`
//! (`DurableLog`), `Outbox` (the peers' bounded tokio queues), `Env` (system
//! clock and entropy) — plus `MemLog`, an in-memory sink that keeps only
//! what was synced, so that tests and the simulator (#5) can drive members
//! in one thread and "crash" them by rebuilding from `MemLog::recovered`.
//! Invariant: the driver reaches the outside world only through these.

use crate::consensus::disk::{DurableLog, LogError, Recovered};
use golem_wire::raft::{RaftEntry, RaftHardState, RaftMessage, RaftSnapshot};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Where the Raft log goes. Nothing appended is durable before `sync`
/// returns; an error is fatal to the member.
pub trait LogSink {
    fn append_entries(&mut self, entries: &[RaftEntry]);
    fn append_hard_state(&mut self, hs: RaftHardState);
    fn sync(&mut self) -> Result<(), LogError>;
    fn install_snapshot(
        &mut self,
        snapshot: &RaftSnapshot,
        hard_state: RaftHardState,
        entries_after: &[RaftEntry],
    ) -> Result<(), LogError>;
}

impl LogSink for DurableLog {
    fn append_entries(&mut self, entries: &[RaftEntry]) {
        DurableLog::append_entries(self, entries)
    }
    fn append_hard_state(&mut self, hs: RaftHardState) {
        DurableLog::append_hard_state(self, hs)
    }
    fn sync(&mut self) -> Result<(), LogError> {
        DurableLog::sync(self)
    }
    fn install_snapshot(
        &mut self,
        snapshot: &RaftSnapshot,
        hard_state: RaftHardState,
        entries_after: &[RaftEntry],
    ) -> Result<(), LogError> {
        DurableLog::install_snapshot(self, snapshot, hard_state, entries_after)
    }
}

/// Where Raft messages to other members go. `false`: dropped (Raft retries).
pub trait Outbox {
    fn send(&mut self, to: u64, msg: RaftMessage) -> bool;
}

impl Outbox for HashMap<u64, mpsc::Sender<RaftMessage>> {
    fn send(&mut self, to: u64, msg: RaftMessage) -> bool {
        self.get(&to).is_some_and(|tx| tx.try_send(msg).is_ok())
    }
}

/// Messages kept in order for the caller to deliver (tests, simulator).
#[derive(Debug, Default)]
pub struct VecOutbox(pub Vec<(u64, RaftMessage)>);

impl Outbox for VecOutbox {
    fn send(&mut self, to: u64, msg: RaftMessage) -> bool {
        self.0.push((to, msg));
        true
    }
}

/// Clock and entropy.
pub trait Env {
    /// Milliseconds since the Unix epoch (may jump; the TSO copes).
    fn now_ms(&self) -> u64;
    /// A random number (the cluster id at bootstrap).
    fn random_u64(&mut self) -> u64;
}

/// The system clock and the thread's RNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEnv;

/// Milliseconds since the Unix epoch by the system clock.
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Env for SystemEnv {
    fn now_ms(&self) -> u64 {
        system_now_ms()
    }
    fn random_u64(&mut self) -> u64 {
        rand::random()
    }
}

/// An in-memory log that keeps what was synced, as a disk would.
#[derive(Debug, Default)]
pub struct MemLog {
    durable: Recovered,
    unsynced: Vec<Unsynced>,
}

#[derive(Debug)]
enum Unsynced {
    Entries(Vec<RaftEntry>),
    Hard(RaftHardState),
}

impl MemLog {
    /// A log that recovered `durable` (for a restart).
    pub fn from_recovered(durable: Recovered) -> MemLog {
        MemLog {
            durable,
            unsynced: Vec::new(),
        }
    }

    /// What a restart would recover: only what was synced.
    pub fn recovered(&self) -> Recovered {
        let mut r = self.durable.clone();
        if let Some(s) = &r.snapshot {
            r.hard_state.commit = r.hard_state.commit.max(s.index);
            r.hard_state.term = r.hard_state.term.max(s.term);
        }
        r
    }
}

impl LogSink for MemLog {
    fn append_entries(&mut self, entries: &[RaftEntry]) {
        self.unsynced.push(Unsynced::Entries(entries.to_vec()));
    }
    fn append_hard_state(&mut self, hs: RaftHardState) {
        self.unsynced.push(Unsynced::Hard(hs));
    }
    fn sync(&mut self) -> Result<(), LogError> {
        let base = self.durable.snapshot.as_ref().map_or(0, |s| s.index);
        for u in self.unsynced.drain(..) {
            match u {
                Unsynced::Hard(hs) => self.durable.hard_state = hs,
                Unsynced::Entries(es) => {
                    for e in es {
                        if e.index <= base {
                            continue;
                        }
                        self.durable.entries.truncate((e.index - base - 1) as usize);
                        self.durable.entries.push(e);
                    }
                }
            }
        }
        Ok(())
    }
    fn install_snapshot(
        &mut self,
        snapshot: &RaftSnapshot,
        hard_state: RaftHardState,
        entries_after: &[RaftEntry],
    ) -> Result<(), LogError> {
        self.durable = Recovered {
            snapshot: Some(snapshot.clone()),
            hard_state,
            entries: entries_after.to_vec(),
            cut_bytes: 0,
        };
        Ok(())
    }
}
