//! golem-engine: the glommio shell of a GolemDB node.
//!
//! The logic lives in golem-core (no I/O); this crate owns the threads,
//! sockets, files and timers around it, and the `golem` binary.

pub mod cli;
pub mod config;
pub mod fatal;
pub mod node;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod signals;
pub mod wal;
