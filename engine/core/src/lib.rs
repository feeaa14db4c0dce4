//! golem-core: the node's logic with no I/O.
//!
//! Region peers (raft-rs groups), the state machine, the command codec and
//! the WAL record codec. Disk, network, clock and randomness come in through
//! small traits; this crate never depends on glommio, sockets or files, so a
//! deterministic simulator can drive it.

pub mod command;
pub mod kv;
pub mod raft_convert;
pub mod raft_log;
pub mod region;
pub mod store;
pub mod term_runs;
#[cfg(test)]
pub(crate) mod test_model;
pub mod wal_index;
pub mod wal_record;

pub use region::CoreError;
