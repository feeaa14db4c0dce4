//! golem-pd: the Placement Driver.
//!
//! The PD bootstraps the cluster, allocates ids, serves timestamps, takes
//! store and region heartbeats and keeps the routing table; its state is
//! replicated by one raft-rs group of 1 or 3 members (docs/pd.md).
//! Scheduling (#6) builds on it.
//!
//! - [`state`]: the state machine — no I/O, no clock, no randomness.
//! - [`consensus`]: raft-rs storage, the durable log, rkyv conversions.
//! - [`server`]: a member on tokio: listener, connections, Raft driver, peers.
//! - [`client`]: `PdClient`, leader-following and retrying.
//! - [`config`], [`cli`]: `PdConfig` (validated) and `golem pd`'s `PdArgs`.
//!
//! Dependency rule: this crate never links the engine's crates.

pub mod cli;
pub mod client;
pub mod config;
pub mod consensus;
pub mod sched;
pub mod server;
pub mod state;
