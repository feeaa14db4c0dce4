//! `PdConfig`: one PD member's settings, validated before anything starts.
//!
//! Owns every knob and limit of a PD member, with its unit last. Invariant:
//! a `PdConfig` that passed `validate` describes a runnable member (its id
//! is among the peers, election timeout above the heartbeat, no zero
//! intervals, 1, 3 or 5 members with distinct ids and addresses, 1..=5
//! initial replicas, a store down time of at least two store heartbeats).

use crate::state::INITIAL_REPLICAS_MAX;
use golem_wire::pd::PD_STORE_HEARTBEAT_MS;
use golem_wire::PdMemberId;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything a PD member needs to run.
#[derive(Clone, Debug)]
pub struct PdConfig {
    /// This member's Raft id (nonzero, one of `peers`).
    pub id: PdMemberId,
    /// Raft log, snapshots and the lock file live here.
    pub data_dir: PathBuf,
    /// Address to bind (may be 0.0.0.0); `peers[id]` is the advertised one.
    pub listen: SocketAddr,
    /// Every member of the group, this one included: id → `ip:port`.
    pub peers: Vec<(PdMemberId, SocketAddr)>,
    /// One Raft tick, in ms.
    pub tick_ms: u64,
    /// Ticks without a leader before a follower campaigns (randomized up to 2×).
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// Length of a committed timestamp window, in ms.
    pub tso_window_ms: u64,
    /// Applied entries after which the state is snapshotted and the log compacted.
    pub snapshot_entries: u64,
    /// Default and largest wait for one request, in ms.
    pub request_timeout_ms: u32,
    /// Open client and peer connections, at most.
    pub connections_max: usize,
    /// A handshake or a started frame must complete within this, in ms.
    pub frame_timeout_ms: u64,
    /// An idle connection is closed after this, in ms.
    pub idle_timeout_ms: u64,
    /// Heartbeat age after which a store counts as disconnected, in ms.
    pub store_disconnected_after_ms: u64,
    /// Heartbeat age after which a store counts as down, in ms.
    pub store_down_after_ms: u64,
    /// Replicas of the cluster's first region: the PD bootstraps the cluster
    /// once this many stores have joined (1..=`INITIAL_REPLICAS_MAX`).
    pub initial_replicas: u8,
    /// Scheduling thresholds and limits (`--max-replicas`,
    /// `--split-region-bytes`, …).
    pub sched: crate::sched::SchedConfig,
}

/// Largest group.
pub const PD_MEMBERS_MAX: usize = 5;

/// A configuration that cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("member id must be nonzero")]
    ZeroId,
    #[error("member {0} is not in the peer list")]
    NotAPeer(PdMemberId),
    #[error("the group must have 1, 3 or 5 members, not {0}")]
    GroupSize(usize),
    #[error("member id {0} appears twice in the peer list")]
    DuplicateId(PdMemberId),
    #[error("address {0} appears twice in the peer list")]
    DuplicateAddr(SocketAddr),
    #[error("{name} must be at least {min}, got {got}")]
    TooSmall {
        name: &'static str,
        min: u64,
        got: u64,
    },
    #[error("election ticks ({election}) must exceed heartbeat ticks ({heartbeat})")]
    ElectionNotAboveHeartbeat { election: usize, heartbeat: usize },
    #[error("bad peer entry {0:?}: expected id=ip:port")]
    BadPeer(String),
    #[error("initial-replicas must be 1..={max}, got {got}")]
    InitialReplicas { got: u8, max: u8 },
    #[error(
        "max-store-down-time-ms must be at least {min} (two store heartbeats of {heartbeat} ms: \
         a shorter one makes live stores look down between heartbeats and moves replicas off \
         them), got {got}"
    )]
    DownTimeTooShort { got: u64, min: u64, heartbeat: u64 },
    #[error("{0}")]
    Sched(String),
}

impl PdConfig {
    /// A single-member configuration with the defaults.
    pub fn single(data_dir: PathBuf, listen: SocketAddr) -> PdConfig {
        PdConfig {
            id: PdMemberId(1),
            data_dir,
            listen,
            peers: vec![(PdMemberId(1), listen)],
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            tso_window_ms: 3000,
            snapshot_entries: 10_000,
            request_timeout_ms: 3000,
            connections_max: 1024,
            frame_timeout_ms: 10_000,
            idle_timeout_ms: 600_000,
            store_disconnected_after_ms: 20_000,
            store_down_after_ms: 30 * 60 * 1000,
            initial_replicas: 1,
            sched: crate::sched::SchedConfig::default(),
        }
    }

    /// Checks the invariants of the module doc.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.0 == 0 {
            return Err(ConfigError::ZeroId);
        }
        if ![1, 3, 5].contains(&self.peers.len()) {
            return Err(ConfigError::GroupSize(self.peers.len()));
        }
        for (i, (id, addr)) in self.peers.iter().enumerate() {
            if id.0 == 0 {
                return Err(ConfigError::ZeroId);
            }
            if self.peers[..i].iter().any(|(o, _)| o == id) {
                return Err(ConfigError::DuplicateId(*id));
            }
            if self.peers[..i].iter().any(|(_, a)| a == addr) {
                return Err(ConfigError::DuplicateAddr(*addr));
            }
        }
        if !self.peers.iter().any(|(id, _)| *id == self.id) {
            return Err(ConfigError::NotAPeer(self.id));
        }
        let min = |name, min: u64, got: u64| {
            if got < min {
                Err(ConfigError::TooSmall { name, min, got })
            } else {
                Ok(())
            }
        };
        min("tick-ms", 1, self.tick_ms)?;
        min("heartbeat-ticks", 1, self.heartbeat_ticks as u64)?;
        min("tso-window-ms", 10, self.tso_window_ms)?;
        min("snapshot-entries", 16, self.snapshot_entries)?;
        min("request-timeout-ms", 1, self.request_timeout_ms.into())?;
        min("connections-max", 1, self.connections_max as u64)?;
        min("frame-timeout-ms", 1, self.frame_timeout_ms)?;
        min("idle-timeout-ms", 1, self.idle_timeout_ms)?;
        if self.initial_replicas == 0 || self.initial_replicas > INITIAL_REPLICAS_MAX {
            return Err(ConfigError::InitialReplicas {
                got: self.initial_replicas,
                max: INITIAL_REPLICAS_MAX,
            });
        }
        let down_min = 2 * PD_STORE_HEARTBEAT_MS;
        for got in [self.store_down_after_ms, self.sched.max_store_down_time_ms] {
            if got < down_min {
                return Err(ConfigError::DownTimeTooShort {
                    got,
                    min: down_min,
                    heartbeat: PD_STORE_HEARTBEAT_MS,
                });
            }
        }
        self.sched.validate().map_err(ConfigError::Sched)?;
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::ElectionNotAboveHeartbeat {
                election: self.election_ticks,
                heartbeat: self.heartbeat_ticks,
            });
        }
        Ok(())
    }

    /// The advertised address of member `id`.
    pub fn addr_of(&self, id: PdMemberId) -> Option<SocketAddr> {
        self.peers.iter().find(|(p, _)| *p == id).map(|(_, a)| *a)
    }
}

/// Parses `1=127.0.0.1:2379,2=127.0.0.1:2380`.
pub fn parse_peers(s: &str) -> Result<Vec<(PdMemberId, SocketAddr)>, ConfigError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (id, addr) = p
                .trim()
                .split_once('=')
                .ok_or_else(|| ConfigError::BadPeer(p.into()))?;
            let id: u64 = id.parse().map_err(|_| ConfigError::BadPeer(p.into()))?;
            let addr: SocketAddr = addr.parse().map_err(|_| ConfigError::BadPeer(p.into()))?;
            Ok((PdMemberId(id), addr))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PdConfig {
        PdConfig::single("/tmp/x".into(), "127.0.0.1:2379".parse().unwrap())
    }

    #[test]
    fn bad_configs_are_typed() {
        let three = parse_peers("1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3").unwrap();
        type Edit = Box<dyn Fn(&mut PdConfig)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|c| c.tick_ms = 0), "tick-ms"),
            (Box::new(|c| c.election_ticks = 2), "exceed"),
            (Box::new(|c| c.heartbeat_ticks = 0), "heartbeat-ticks"),
            (Box::new(|c| c.id = PdMemberId(0)), "nonzero"),
            (Box::new(|c| c.initial_replicas = 0), "initial-replicas"),
            (Box::new(|c| c.initial_replicas = 6), "initial-replicas"),
            (
                Box::new(|c| c.store_down_after_ms = 2 * PD_STORE_HEARTBEAT_MS - 1),
                "max-store-down-time-ms must be at least 10000",
            ),
            (
                Box::new(|c| c.sched.max_store_down_time_ms = 3000),
                "two store heartbeats",
            ),
            (Box::new(|c| c.id = PdMemberId(9)), "not in the peer list"),
            (
                Box::new(move |c| c.peers = three[..2].to_vec()),
                "1, 3 or 5",
            ),
            (
                Box::new(|c| {
                    c.peers = parse_peers("1=127.0.0.1:1,1=127.0.0.1:2,3=127.0.0.1:3").unwrap()
                }),
                "twice",
            ),
            (
                Box::new(|c| {
                    c.peers = parse_peers("1=127.0.0.1:1,2=127.0.0.1:1,3=127.0.0.1:3").unwrap()
                }),
                "twice",
            ),
        ];
        base().validate().unwrap();
        for (edit, want) in cases {
            let mut c = base();
            edit(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} does not mention {want}");
        }
        assert!(parse_peers("1=nothost").is_err());
        assert!(parse_peers("x=127.0.0.1:1").is_err());
    }
}
