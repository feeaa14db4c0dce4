//! Node configuration: defaults, an optional TOML file, command-line flags.
//!
//! Owns `NodeConfig` and its validation. Precedence: a flag beats the file,
//! the file beats the default. Invariant: a `NodeConfig` that exists has been
//! validated (bad values are a typed error at start, never a panic later).

use clap::Args;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Default base address: shard `i` of a node listens on port `7400 + i`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
/// Most regions `--initial-regions` creates.
pub const INITIAL_REGIONS_MAX: u32 = 1_000_000;
/// Most shards one node may run.
pub const SHARDS_MAX: u16 = 256;
/// Highest `--snapshot-send-mib-per-sec` (1 TiB/s: no limit in practice, and
/// the byte rate cannot overflow).
pub const SNAPSHOT_SEND_MIB_PER_SEC_MAX: u64 = 1024 * 1024;

/// How shard threads are placed on CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PinMode {
    /// Pin when the machine has at least 4 CPUs and one per shard.
    Auto,
    /// Always pin shard `i` to CPU `i`.
    On,
    /// Never pin.
    Off,
}

/// How WAL writes are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WalSyncMode {
    /// Segments opened O_DSYNC: each write is durable when it completes.
    Dsync,
    /// A write, then an fdatasync.
    Fdatasync,
}

/// Every node setting as an optional value: the shape of both the TOML file
/// and the command-line flags, merged by [`NodeSettings::or`].
#[derive(Clone, Debug, Default, Deserialize, Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeSettings {
    /// Directory for the node's WAL, lock file and identity.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Base listen address (IP:port); shard i listens on port+i [default: 127.0.0.1:7400].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// IP that clients should connect to, when --listen is a wildcard address.
    #[arg(long)]
    pub advertise_ip: Option<IpAddr>,
    /// Number of shards (one executor thread each). Default: number of CPUs.
    #[arg(long)]
    pub shards: Option<u16>,
    /// CPU pinning of shard threads [default: auto].
    #[arg(long, value_enum)]
    pub pin: Option<PinMode>,
    /// Memory each shard pins for io_uring buffers, in MiB [default: 2].
    #[arg(long)]
    pub io_memory_mib: Option<usize>,
    /// Raft tick interval, in milliseconds [default: 100].
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Raft election timeout, in ticks; must exceed heartbeat-ticks [default: 10].
    #[arg(long)]
    pub election_ticks: Option<usize>,
    /// Raft heartbeat interval, in ticks [default: 2].
    #[arg(long)]
    pub heartbeat_ticks: Option<usize>,
    /// Most open client connections per shard; more are refused [default: 10000].
    #[arg(long)]
    pub connections_per_shard_max: Option<usize>,
    /// A connection with no frame in progress is closed after this long, in ms [default: 600000].
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// A started frame (or the handshake) must complete within this long, in ms [default: 10000].
    #[arg(long)]
    pub frame_timeout_ms: Option<u64>,
    /// Size of each preallocated WAL segment file, in MiB [default: 64].
    #[arg(long)]
    pub wal_segment_mib: Option<u64>,
    /// How WAL writes are made durable [default: fdatasync].
    #[arg(long, value_enum)]
    pub wal_sync: Option<WalSyncMode>,
    /// Size at which a shard's memtable is frozen and flushed to a segment
    /// file, in KiB [default: 65536]. Each shard holds up to 5 memtables
    /// (one active, four waiting for flush).
    #[arg(long)]
    pub memtable_kib: Option<usize>,
    /// Applied Raft entries every replica keeps in its WAL for followers
    /// that fall behind, at least (a follower further behind gets a
    /// snapshot) [default: 10000].
    #[arg(long)]
    pub raft_log_retain_entries: Option<u64>,
    /// Bytes per second each shard may send in snapshots to new or lagging
    /// replicas, all its streams together, in MiB; 0: unlimited
    /// [default: 100].
    #[arg(long)]
    pub snapshot_send_mib_per_sec: Option<u64>,
    /// Stand-alone only, first start: split the key space into this many
    /// regions (by their first 4 key bytes), spread over the shards (region
    /// i on shard (i-1) mod shards). For benchmarks of many regions
    /// [default: 1].
    #[arg(long)]
    pub initial_regions: Option<u32>,
    /// Idle regions stop ticking and heartbeating until traffic arrives
    /// [default: true].
    #[arg(long)]
    pub hibernate_regions: Option<bool>,
    /// Placement Driver members (ip:port,…): register with the PD and report
    /// to it. Without it the node runs stand-alone (one region, no PD).
    #[arg(long, value_delimiter = ',')]
    pub pd: Option<Vec<SocketAddr>>,
}

impl NodeSettings {
    /// Field by field: `self` where set, else `other`.
    pub fn or(self, other: NodeSettings) -> NodeSettings {
        NodeSettings {
            data_dir: self.data_dir.or(other.data_dir),
            listen: self.listen.or(other.listen),
            advertise_ip: self.advertise_ip.or(other.advertise_ip),
            shards: self.shards.or(other.shards),
            pin: self.pin.or(other.pin),
            io_memory_mib: self.io_memory_mib.or(other.io_memory_mib),
            tick_ms: self.tick_ms.or(other.tick_ms),
            election_ticks: self.election_ticks.or(other.election_ticks),
            heartbeat_ticks: self.heartbeat_ticks.or(other.heartbeat_ticks),
            connections_per_shard_max: self
                .connections_per_shard_max
                .or(other.connections_per_shard_max),
            idle_timeout_ms: self.idle_timeout_ms.or(other.idle_timeout_ms),
            frame_timeout_ms: self.frame_timeout_ms.or(other.frame_timeout_ms),
            wal_segment_mib: self.wal_segment_mib.or(other.wal_segment_mib),
            wal_sync: self.wal_sync.or(other.wal_sync),
            memtable_kib: self.memtable_kib.or(other.memtable_kib),
            raft_log_retain_entries: self
                .raft_log_retain_entries
                .or(other.raft_log_retain_entries),
            snapshot_send_mib_per_sec: self
                .snapshot_send_mib_per_sec
                .or(other.snapshot_send_mib_per_sec),
            hibernate_regions: self.hibernate_regions.or(other.hibernate_regions),
            initial_regions: self.initial_regions.or(other.initial_regions),
            pd: self.pd.or(other.pd),
        }
    }

    /// Reads a TOML file of settings (unknown keys are an error).
    pub fn from_file(path: &Path) -> Result<NodeSettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }
}

/// A bad configuration, reported at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("bad config file {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("missing setting: {0}")]
    Missing(&'static str),
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A validated node configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertise_ip: IpAddr,
    pub shards: u16,
    pub pin: bool,
    pub io_memory_bytes: usize,
    pub tick_ms: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    pub connections_per_shard_max: usize,
    pub idle_timeout_ms: u64,
    pub frame_timeout_ms: u64,
    pub wal_segment_bytes: u64,
    pub wal_sync: WalSyncMode,
    /// Memtable size of each shard's LSM.
    pub memtable_bytes: usize,
    /// Applied entries each replica keeps for lagging followers.
    pub raft_log_retain_entries: u64,
    /// Snapshot send rate per shard, bytes per second (0: unlimited).
    pub snapshot_send_bytes_per_sec: u64,
    /// Whether idle regions hibernate.
    pub hibernate_regions: bool,
    /// Regions a stand-alone node creates at its first start.
    pub initial_regions: u32,
    /// PD members; empty: stand-alone mode.
    pub pd_endpoints: Vec<SocketAddr>,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

impl NodeConfig {
    /// Applies defaults and validates.
    pub fn resolve(s: NodeSettings) -> Result<NodeConfig, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let data_dir = s.data_dir.ok_or(ConfigError::Missing("data-dir"))?;
        // Made absolute once, here: glommio opens a relative directory path
        // without a base descriptor and fails with EBADF, and an absolute
        // path also keeps the data dir fixed if the working directory moves.
        let data_dir = std::path::absolute(&data_dir)
            .map_err(|e| invalid("data-dir", format!("{}: {e}", data_dir.display())))?;
        let listen = s
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let shards = s.shards.unwrap_or(cpus.min(SHARDS_MAX as usize) as u16);
        if shards == 0 || shards > SHARDS_MAX {
            return Err(invalid("shards", format!("must be 1..={SHARDS_MAX}")));
        }
        if listen.port() == 0 {
            return Err(invalid(
                "listen",
                "a fixed port is required (shard i uses port+i)",
            ));
        }
        if listen.port() as u32 + shards as u32 - 1 > u16::MAX as u32 {
            return Err(invalid("listen", "port + shards exceeds 65535"));
        }
        let advertise_ip = match s.advertise_ip {
            Some(ip) if ip.is_unspecified() => {
                return Err(invalid("advertise-ip", "must be a concrete address"))
            }
            Some(ip) => ip,
            None if listen.ip().is_unspecified() => {
                return Err(invalid(
                    "advertise-ip",
                    "required when listening on a wildcard address",
                ))
            }
            None => listen.ip(),
        };
        let pin = match s.pin.unwrap_or(PinMode::Auto) {
            PinMode::On => true,
            PinMode::Off => false,
            PinMode::Auto => cpus >= 4 && shards as usize <= cpus,
        };
        let io_memory_mib = s.io_memory_mib.unwrap_or(2);
        if !(1..=1024).contains(&io_memory_mib) {
            return Err(invalid("io-memory-mib", "must be 1..=1024"));
        }
        let tick_ms = s.tick_ms.unwrap_or(100);
        if !(1..=10_000).contains(&tick_ms) {
            return Err(invalid("tick-ms", "must be 1..=10000"));
        }
        let heartbeat_ticks = s.heartbeat_ticks.unwrap_or(2);
        let election_ticks = s.election_ticks.unwrap_or(10);
        if heartbeat_ticks == 0 {
            return Err(invalid("heartbeat-ticks", "must be at least 1"));
        }
        if election_ticks <= heartbeat_ticks {
            return Err(invalid("election-ticks", "must exceed heartbeat-ticks"));
        }
        let connections_per_shard_max = s.connections_per_shard_max.unwrap_or(10_000);
        if connections_per_shard_max == 0 {
            return Err(invalid("connections-per-shard-max", "must be at least 1"));
        }
        let idle_timeout_ms = s.idle_timeout_ms.unwrap_or(600_000);
        let frame_timeout_ms = s.frame_timeout_ms.unwrap_or(10_000);
        if idle_timeout_ms == 0 || frame_timeout_ms == 0 {
            return Err(invalid(
                "timeouts",
                "idle and frame timeouts must be positive",
            ));
        }
        if let Some(pd) = &s.pd {
            if pd.is_empty() || pd.iter().any(|a| a.ip().is_unspecified() || a.port() == 0) {
                return Err(invalid(
                    "pd",
                    "needs one or more concrete ip:port addresses",
                ));
            }
        }
        let wal_segment_mib = s.wal_segment_mib.unwrap_or(64);
        if !(1..=4096).contains(&wal_segment_mib) {
            return Err(invalid("wal-segment-mib", "must be 1..=4096"));
        }
        let memtable_kib = s.memtable_kib.unwrap_or(64 * 1024);
        if !(1..=4 * 1024 * 1024).contains(&memtable_kib) {
            return Err(invalid("memtable-kib", "must be 1..=4194304"));
        }
        let raft_log_retain_entries = s.raft_log_retain_entries.unwrap_or(10_000);
        if !(1..=10_000_000).contains(&raft_log_retain_entries) {
            return Err(invalid("raft-log-retain-entries", "must be 1..=10000000"));
        }
        let snapshot_send_mib_per_sec = s.snapshot_send_mib_per_sec.unwrap_or(100);
        if snapshot_send_mib_per_sec > SNAPSHOT_SEND_MIB_PER_SEC_MAX {
            return Err(invalid(
                "snapshot-send-mib-per-sec",
                format!("must be 0 (unlimited) ..= {SNAPSHOT_SEND_MIB_PER_SEC_MAX}"),
            ));
        }
        let initial_regions = s.initial_regions.unwrap_or(1);
        if !(1..=INITIAL_REGIONS_MAX).contains(&initial_regions) {
            return Err(invalid(
                "initial-regions",
                format!("must be 1..={INITIAL_REGIONS_MAX}"),
            ));
        }
        if initial_regions > 1 && s.pd.is_some() {
            return Err(invalid(
                "initial-regions",
                "only for a stand-alone node (with --pd the PD creates regions)",
            ));
        }
        Ok(NodeConfig {
            data_dir,
            listen,
            advertise_ip,
            shards,
            pin,
            io_memory_bytes: io_memory_mib << 20,
            tick_ms,
            election_ticks,
            heartbeat_ticks,
            connections_per_shard_max,
            idle_timeout_ms,
            frame_timeout_ms,
            wal_segment_bytes: wal_segment_mib << 20,
            wal_sync: s.wal_sync.unwrap_or(WalSyncMode::Fdatasync),
            memtable_bytes: memtable_kib << 10,
            raft_log_retain_entries,
            snapshot_send_bytes_per_sec: snapshot_send_mib_per_sec * 1024 * 1024,
            hibernate_regions: s.hibernate_regions.unwrap_or(true),
            initial_regions,
            pd_endpoints: s.pd.unwrap_or_default(),
        })
    }

    /// The listen address of shard `shard`.
    pub fn shard_listen(&self, shard: u16) -> SocketAddr {
        SocketAddr::new(self.listen.ip(), self.listen.port() + shard)
    }

    /// The address clients use to reach shard `shard`.
    pub fn shard_advertise(&self, shard: u16) -> SocketAddr {
        SocketAddr::new(self.advertise_ip, self.listen.port() + shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> NodeSettings {
        NodeSettings {
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_resolve() {
        let c = NodeConfig::resolve(base()).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse::<SocketAddr>().unwrap());
        assert!(c.election_ticks > c.heartbeat_ticks);
        assert_eq!(c.shard_listen(1).port(), 7401);
    }

    #[test]
    fn relative_data_dir_becomes_absolute() {
        let s = NodeSettings {
            data_dir: Some("rel/data".into()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(s).unwrap();
        assert!(c.data_dir.is_absolute());
        assert_eq!(
            c.data_dir,
            std::env::current_dir().unwrap().join("rel/data")
        );
    }

    #[test]
    fn flags_beat_file() {
        let flags = NodeSettings {
            shards: Some(3),
            ..Default::default()
        };
        let file: NodeSettings =
            toml::from_str("shards = 1\ntick-ms = 50\npd = [\"127.0.0.1:7300\"]\n").unwrap();
        let s = flags.or(file).or(base());
        let c = NodeConfig::resolve(s).unwrap();
        assert_eq!(c.shards, 3);
        assert_eq!(c.tick_ms, 50);
        assert_eq!(
            c.pd_endpoints,
            vec!["127.0.0.1:7300".parse::<SocketAddr>().unwrap()]
        );
        assert!(NodeConfig::resolve(base()).unwrap().pd_endpoints.is_empty());
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<NodeSettings>("shardz = 1\n").is_err());
    }

    #[test]
    fn bad_values_are_typed_errors() {
        for (s, name) in [
            (
                NodeSettings {
                    tick_ms: Some(0),
                    ..base()
                },
                "tick-ms",
            ),
            (
                NodeSettings {
                    shards: Some(0),
                    ..base()
                },
                "shards",
            ),
            (
                NodeSettings {
                    election_ticks: Some(2),
                    heartbeat_ticks: Some(2),
                    ..base()
                },
                "election-ticks",
            ),
            (
                NodeSettings {
                    listen: Some("0.0.0.0:7400".parse().unwrap()),
                    ..base()
                },
                "advertise-ip",
            ),
        ] {
            match NodeConfig::resolve(s) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name),
                other => panic!("expected invalid {name}, got {other:?}"),
            }
        }
        assert!(matches!(
            NodeConfig::resolve(NodeSettings::default()),
            Err(ConfigError::Missing("data-dir"))
        ));
    }
}
