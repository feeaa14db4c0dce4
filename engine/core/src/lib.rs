//! golem-core: the node's logic with no I/O.
//!
//! Region peers (raft-rs groups), the state machine, the command codec and
//! the WAL record codec. Disk, network, clock and randomness come in through
//! small traits; this crate never depends on glommio, sockets or files, so a
//! deterministic simulator can drive it.

pub mod wal_record;
