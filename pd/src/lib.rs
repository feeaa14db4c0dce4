//! golem-pd: the Placement Driver.
//!
//! The PD bootstraps the cluster, allocates ids, takes heartbeats, keeps the
//! routing table and schedules splits, merges, repairs and balancing. It is
//! built in issue #4 (state, RPCs, Raft replication) and #6 (scheduling).
//! Until then a node creates its own identity and hosts one region
//! covering the whole key space (see docs/ARCHITECTURE.md).
//!
//! Dependency rule: this crate never links the engine's crates.
