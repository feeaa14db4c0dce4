//! Region peers: one raft-rs group per region, with no I/O.
//!
//! Owns the life of a region replica on this node: creation (`bootstrap`),
//! rebuild from the WAL (`recover`), proposals and reads, and the `Ready`
//! cycle that tells the shell what to persist and what to send.
//!
//! The shell drives each peer with one loop per shard:
//!
//! ```text
//! tick() every tick; propose()/read() as requests arrive (any time, even
//! while a sync is in flight);
//! pass: p = collect_ready(&mut wal)  -> records appended to the WAL buffer
//!       wal sync (one for all regions)
//!       out = on_persisted(p)        -> finished proposals, messages to send
//! ```
//!
//! Module map: [`peer`] (the type, proposals, reads), [`ready`] (the Ready
//! cycle and apply), [`recover`] (bootstrap and WAL replay), [`membership`]
//! [`split`] and [`merge`] (admin commands applied through the log),
//! [`removal`] (a removed replica's notice that its removal is committed,
//! and a silent learner's membership question), [`config`],
//! [`meta`], [`records`] (WAL payload codecs), [`log_bridge`] (slog →
//! tracing), [`error`].

pub mod config;
pub mod error;
pub mod hibernate;
pub mod log_bridge;
pub mod membership;
pub mod merge;
pub mod meta;
pub mod peer;
pub mod ready;
pub mod records;
pub mod recover;
pub mod removal;
pub mod snapshot;
pub mod split;

#[cfg(test)]
mod fetch_tests;
#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod merge_tests;
#[cfg(test)]
mod removal_tests;
#[cfg(test)]
mod split_tests;
#[cfg(test)]
mod tests;

pub use config::PeerConfig;
pub use error::CoreError;
pub use meta::{PeerMeta, PeerRole, RegionMeta};
pub use peer::{ProposalToken, RegionPeer};
pub use ready::{PendingReady, PersistedOutput};
pub use snapshot::{RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
