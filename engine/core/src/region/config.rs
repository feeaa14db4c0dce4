//! `PeerConfig`: the tunables of one region peer, and their raft-rs mapping.
//!
//! Owns the defaults and the validation of every knob a region peer has.
//! Invariants kept by `validate`: `heartbeat_ticks > 0`,
//! `election_ticks > heartbeat_ticks`, every limit is at least 1, the peer id
//! is not 0 (raft-rs reserves it). `pre_vote` and `check_quorum` are always
//! on and not configurable. Time is counted in ticks; the shell decides how
//! long a tick is.

use super::CoreError;
use golem_wire::{PeerId, RegionId};

/// Configuration of one region peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub region: RegionId,
    pub peer: PeerId,
    /// Ticks without hearing from a leader before a follower campaigns (the
    /// low end of the randomized election timeout).
    pub election_ticks: usize,
    /// Width of the election timeout's random range: a follower campaigns
    /// after a timeout drawn from `[election_ticks, election_ticks +
    /// election_jitter_ticks)`. 1 makes it deterministic (for the
    /// simulator); the default is `election_ticks`, as in raft-rs.
    pub election_jitter_ticks: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied entries kept in memory after apply (unapplied entries are
    /// always kept), for followers that lag slightly.
    pub entry_cache_entries_max: usize,
    /// Applied entries a voter of a multi-voter region keeps in its WAL
    /// whatever its role, for replicas that were down when leadership
    /// moved (they catch up from the log if not further behind).
    pub log_retain_entries_min: u64,
    /// Largest append message to a follower (at least one entry is sent).
    pub append_msg_bytes_max: u64,
    /// Append messages in flight to one follower.
    pub inflight_msgs_max: usize,
    /// Proposed but uncommitted entry bytes; beyond it proposals get
    /// `ServerBusy`.
    pub uncommitted_bytes_max: u64,
    /// Committed entry bytes handed to apply per `Ready` (at least one
    /// entry).
    pub apply_batch_bytes_max: u64,
    /// A leader whose region stays quiet this many ticks hibernates
    /// (`hibernate.rs`); 0 never.
    pub hibernate_after_ticks: usize,
}

impl PeerConfig {
    pub const ELECTION_TICKS_DEFAULT: usize = 10;
    pub const HEARTBEAT_TICKS_DEFAULT: usize = 2;
    pub const ENTRY_CACHE_ENTRIES_MAX_DEFAULT: usize = 1024;
    pub const LOG_RETAIN_ENTRIES_MIN_DEFAULT: u64 = 10_000;
    pub const APPEND_MSG_BYTES_MAX_DEFAULT: u64 = 1024 * 1024;
    pub const INFLIGHT_MSGS_MAX_DEFAULT: usize = 256;
    pub const UNCOMMITTED_BYTES_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
    pub const APPLY_BATCH_BYTES_MAX_DEFAULT: u64 = 16 * 1024 * 1024;
    /// Two election timeouts of quiet before a leader hibernates.
    pub const HIBERNATE_AFTER_TICKS_DEFAULT: usize = 2 * Self::ELECTION_TICKS_DEFAULT;

    /// The defaults for `peer` of `region`.
    pub fn new(region: RegionId, peer: PeerId) -> PeerConfig {
        PeerConfig {
            region,
            peer,
            election_ticks: Self::ELECTION_TICKS_DEFAULT,
            election_jitter_ticks: Self::ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: Self::HEARTBEAT_TICKS_DEFAULT,
            entry_cache_entries_max: Self::ENTRY_CACHE_ENTRIES_MAX_DEFAULT,
            log_retain_entries_min: Self::LOG_RETAIN_ENTRIES_MIN_DEFAULT,
            append_msg_bytes_max: Self::APPEND_MSG_BYTES_MAX_DEFAULT,
            inflight_msgs_max: Self::INFLIGHT_MSGS_MAX_DEFAULT,
            uncommitted_bytes_max: Self::UNCOMMITTED_BYTES_MAX_DEFAULT,
            apply_batch_bytes_max: Self::APPLY_BATCH_BYTES_MAX_DEFAULT,
            hibernate_after_ticks: Self::HIBERNATE_AFTER_TICKS_DEFAULT,
        }
    }

    /// Checks every value; the first problem found is returned.
    pub fn validate(&self) -> Result<(), CoreError> {
        let fail = |reason: &str| {
            Err(CoreError::InvalidConfig {
                region: self.region,
                reason: reason.to_owned(),
            })
        };
        if self.peer.get() == 0 {
            return fail("peer id 0 is reserved by raft");
        }
        if self.heartbeat_ticks == 0 {
            return fail("heartbeat_ticks must be at least 1");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return fail("election_ticks must exceed heartbeat_ticks");
        }
        if self.election_jitter_ticks == 0 {
            return fail("election_jitter_ticks must be at least 1");
        }
        if self.inflight_msgs_max == 0 {
            return fail("inflight_msgs_max must be at least 1");
        }
        if self.append_msg_bytes_max == 0 || self.apply_batch_bytes_max == 0 {
            return fail("byte limits must be at least 1");
        }
        if self.uncommitted_bytes_max < self.append_msg_bytes_max {
            return fail("uncommitted_bytes_max must be at least append_msg_bytes_max");
        }
        Ok(())
    }

    /// The raft-rs configuration, for a node that has applied `applied`.
    pub(crate) fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.peer.get(),
            election_tick: self.election_ticks,
            heartbeat_tick: self.heartbeat_ticks,
            min_election_tick: self.election_ticks,
            max_election_tick: self.election_ticks + self.election_jitter_ticks,
            applied,
            max_size_per_msg: self.append_msg_bytes_max,
            max_inflight_msgs: self.inflight_msgs_max,
            max_uncommitted_size: self.uncommitted_bytes_max,
            max_committed_size_per_ready: self.apply_batch_bytes_max,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_raft_accepts_them() {
        let cfg = PeerConfig::new(RegionId(1), PeerId(1));
        cfg.validate().unwrap();
        cfg.raft_config(0).validate().unwrap();
        let mut det = cfg.clone();
        det.election_jitter_ticks = 1;
        det.raft_config(0).validate().unwrap();
    }

    #[test]
    fn bad_values_are_rejected() {
        let base = PeerConfig::new(RegionId(1), PeerId(1));
        let cases: Vec<fn(&mut PeerConfig)> = vec![
            |c| c.peer = PeerId(0),
            |c| c.heartbeat_ticks = 0,
            |c| c.election_ticks = c.heartbeat_ticks,
            |c| c.election_jitter_ticks = 0,
            |c| c.inflight_msgs_max = 0,
            |c| c.apply_batch_bytes_max = 0,
            |c| c.uncommitted_bytes_max = c.append_msg_bytes_max - 1,
        ];
        for change in cases {
            let mut cfg = base.clone();
            change(&mut cfg);
            assert!(matches!(
                cfg.validate(),
                Err(CoreError::InvalidConfig { .. })
            ));
        }
    }
}
