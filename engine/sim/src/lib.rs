//! golem-sim: GolemDB's deterministic simulator.
//!
//! Drives whole clusters of golem-core region peers in one thread from one
//! `u64` seed: N nodes, each one shard hosting replicas of regions, a WAL
//! and a store with explicit durability; an operator changing membership
//! (learners caught up by snapshots streamed through the network,
//! promotions, removals with tombstones, joint changes, leadership
//! moves); a network that delays, drops,
//! duplicates and reorders messages and partitions; crashes that lose
//! whatever was not synced (optionally keeping a prefix of the unsynced
//! WAL tail); restarts through `RegionPeer::recover`; skewed clocks; store
//! flushes and WAL checkpoints with truncation; clients issuing
//! Put/Get/Delete/CAS with timeouts; crashes aimed mid snapshot install
//! and around removals; region splits (new replicas created when the
//! parent applies the split, restart gates) and stale replicas told of
//! their removal (gc notices); a simulated PD (`--pd`: golem-pd's state
//! machine and scheduler at simulated time, its operator steps run on
//! region leaders) with scripted node loss and join. Checkers: one leader per (region, term), applied
//! entries never change, epochs only grow, replicas agree at equal
//! `conf_ver`, ranges never overlap, current members converge, and
//! per-key linearizability. A failing seed prints the command that replays it.
//!
//! Owns nothing of the product: golem-core is used through its public API
//! only. Invariants: no I/O, no clock, no randomness but the run's
//! ChaCha8 generator, no iteration over hashed collections — so a run is a
//! pure function of (seed, `SimConfig`) (`SimReport::digest` shows it).
//!
//! Module map: [`sim`] (the event loop and phases), [`node`] (a node as
//! the shard's raft loop drives it), [`wal`], [`store`], [`network`],
//! [`client`], [`history`], [`check`] (the checkers), [`faults`] (the
//! per-seed fault plan), [`event`], [`config`], [`report`], [`hash`].

pub mod check;
pub mod client;
pub mod config;
pub mod event;
pub mod faults;
pub mod hash;
pub mod history;
pub mod network;
pub mod node;
pub mod report;
pub mod sim;
pub mod store;
pub mod wal;

pub use config::{PlantedBug, ReadMode, SimArgs, SimConfig, TornTail, TruncatePolicy};
pub use report::{FailureKind, SimFailure, SimReport};
pub use sim::run;
