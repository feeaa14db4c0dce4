//! golem-pd: the Placement Driver.
//!
//! The PD bootstraps the cluster, allocates ids, serves timestamps, takes
//! store and region heartbeats and keeps the routing table; its state is
//! replicated by one raft-rs group of 1 or 3 members (docs/pd.md).
//! Scheduling (#6) builds on it.
//!
//! - [`state`]: the state machine — no I/O, no clock, no randomness.
//! - [`consensus`]: raft-rs storage, the durable log, rkyv conversions.
//!
//! Dependency rule: this crate never links the engine's crates.

pub mod config;
pub mod consensus;
pub mod state;
