//! `golem pd`: command-line arguments and entry point of a PD member.
//!
//! Owns `PdArgs` (clap) and `run`, so that the `golem` binary adds the
//! subcommand with one line (`Pd(golem_pd::cli::PdArgs)` →
//! `golem_pd::cli::run(args)`); `golem-pd` (this crate's binary) calls the
//! same function.

use crate::config::{parse_peers, ConfigError, PdConfig};
use golem_wire::PdMemberId;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run one member of the Placement Driver.
#[derive(clap::Args, Debug, Clone)]
pub struct PdArgs {
    /// This member's id in the PD group (1, 2, 3 …); must appear in --peers.
    #[arg(long, default_value_t = 1)]
    pub id: u64,
    /// Directory for the Raft log, snapshots and the lock file.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address to listen on for clients, nodes and peer members (ip:port).
    #[arg(long, default_value = "127.0.0.1:7300")]
    pub listen: SocketAddr,
    /// Every member of the group as id=ip:port, comma-separated (1, 3 or 5
    /// members), e.g. 1=10.0.0.1:7300,2=10.0.0.2:7300,3=10.0.0.3:7300.
    /// Default: this member alone, at --listen.
    #[arg(long)]
    pub peers: Option<String>,
    /// One Raft tick, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub tick_ms: u64,
    /// Ticks without a leader before a member campaigns (election timeout).
    #[arg(long, default_value_t = 10)]
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats (must be below --election-ticks).
    #[arg(long, default_value_t = 2)]
    pub heartbeat_ticks: usize,
    /// Length of a persisted timestamp window, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub tso_window_ms: u64,
    /// Applied entries between snapshots (the log is compacted at each).
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_entries: u64,
    /// Default and largest wait for one request, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub request_timeout_ms: u32,
    /// Open connections, at most.
    #[arg(long, default_value_t = 1024)]
    pub connections_max: usize,
    /// Replicas of the cluster's first region (1..=5): the PD bootstraps
    /// the cluster once this many nodes have joined, with one voter on each
    /// of the first ones (by store id). Give every member the same value.
    #[arg(long, default_value_t = 1)]
    pub initial_replicas: u8,
    /// Replicas (voters) every region should have; the replica checker
    /// adds and replaces replicas to keep it.
    #[arg(long, default_value_t = 3)]
    pub max_replicas: usize,
    /// A region above this approximate size is split (at the key its
    /// leader reports), in bytes.
    #[arg(long, default_value_t = 96 * 1024 * 1024)]
    pub split_region_bytes: u64,
    /// A region above this approximate key count is split.
    #[arg(long, default_value_t = 960_000)]
    pub split_region_keys: u64,
    /// A region serving at least this many requests per second is split
    /// at a key that divides its load (sampled request keys); 0: never.
    #[arg(long, default_value_t = 3000)]
    pub split_region_qps: u64,
    /// A region serving at least this many bytes per second (read plus
    /// written) is split the same way (TiKV's split.byte-threshold); 0: never.
    #[arg(long, default_value_t = 30 * 1024 * 1024)]
    pub split_region_bytes_per_sec: u64,
    /// A store silent this long counts as down: its replicas are recreated
    /// on other stores, in milliseconds. At least two store heartbeats
    /// (10000): a shorter one would make live stores look down.
    #[arg(long, default_value_t = 30 * 60 * 1000)]
    pub max_store_down_time_ms: u64,
    /// How often the balance schedulers run, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub schedule_interval_ms: u64,
    /// Operators adding a replica on one store (snapshots it receives) at once, at most.
    #[arg(long, default_value_t = 4)]
    pub store_limit_add_peer: usize,
    /// Operators adding a replica on one store for repair (the replica
    /// checker) at once, at most: repair may use the slots above
    /// --store-limit-add-peer that balance operators cannot.
    #[arg(long, default_value_t = 16)]
    pub store_limit_repair_add_peer: usize,
    /// A region report reading or writing at least this many bytes per
    /// second counts as hot (balance-hot-region).
    #[arg(long, default_value_t = 64 * 1024)]
    pub hot_region_bytes_per_sec: u64,
    /// A region report reading or writing at least this many keys per
    /// second counts as hot (balance-hot-region).
    #[arg(long, default_value_t = 256)]
    pub hot_region_keys_per_sec: u64,
    /// Consecutive hot reports before a region counts as hot (1..=100).
    #[arg(long, default_value_t = 3)]
    pub hot_region_cache_hits_threshold: u32,
    /// Running balance-hot-region operators, at most.
    #[arg(long, default_value_t = 4)]
    pub hot_region_schedule_limit: usize,
    /// Hot flow moves only from a store this many percent above the mean
    /// to one as far below it.
    #[arg(long, default_value_t = 5)]
    pub hot_region_tolerance_pct: u64,
    /// Replica moves between the shards of stores running at once, at
    /// most (balance-shard); 0: shards are not balanced.
    #[arg(long, default_value_t = 4)]
    pub shard_schedule_limit: usize,
    /// Replica moves between the shards of one store running at once, at
    /// most (each costs the store a snapshot).
    #[arg(long, default_value_t = 2)]
    pub shard_moves_per_store_max: usize,
    /// A region at most this large (approximate) may merge into a
    /// neighbour (TiKV's max-merge-region-size, 20% of the split size);
    /// 0: no merges.
    #[arg(long, default_value_t = 20 * 1024 * 1024)]
    pub max_merge_region_bytes: u64,
    /// A region with at most this many keys (approximate) may merge.
    #[arg(long, default_value_t = 200_000)]
    pub max_merge_region_keys: u64,
    /// Only regions serving fewer requests per second than this merge.
    #[arg(long, default_value_t = 100)]
    pub max_merge_region_qps: u64,
    /// A region whose version changed (split, merge) more recently than
    /// this, or whose neighbour's did, is not merged.
    #[arg(long, default_value_t = 3_600_000)]
    pub split_merge_interval_ms: u64,
    /// Create no operators on our own (admin operators still run).
    #[arg(long)]
    pub no_scheduling: bool,
    /// Log filter (tracing env-filter syntax), e.g. info or golem_pd=debug.
    #[arg(long, default_value = "info", env = "GOLEM_LOG")]
    pub log: String,
}

impl PdArgs {
    /// The validated configuration these arguments describe.
    pub fn to_config(&self) -> Result<PdConfig, ConfigError> {
        let mut cfg = PdConfig::single(self.data_dir.clone(), self.listen);
        cfg.id = PdMemberId(self.id);
        cfg.peers = match &self.peers {
            Some(p) => parse_peers(p)?,
            None => vec![(PdMemberId(self.id), self.listen)],
        };
        cfg.tick_ms = self.tick_ms;
        cfg.election_ticks = self.election_ticks;
        cfg.heartbeat_ticks = self.heartbeat_ticks;
        cfg.tso_window_ms = self.tso_window_ms;
        cfg.snapshot_entries = self.snapshot_entries;
        cfg.request_timeout_ms = self.request_timeout_ms;
        cfg.connections_max = self.connections_max;
        cfg.initial_replicas = self.initial_replicas;
        cfg.store_down_after_ms = self.max_store_down_time_ms;
        cfg.sched.enabled = !self.no_scheduling;
        cfg.sched.max_replicas = self.max_replicas;
        cfg.sched.split_region_bytes = self.split_region_bytes;
        cfg.sched.split_region_keys = self.split_region_keys;
        cfg.sched.split_region_qps = self.split_region_qps;
        cfg.sched.split_region_bytes_per_sec = self.split_region_bytes_per_sec;
        cfg.sched.max_store_down_time_ms = self.max_store_down_time_ms;
        cfg.sched.max_merge_region_bytes = self.max_merge_region_bytes;
        cfg.sched.max_merge_region_keys = self.max_merge_region_keys;
        cfg.sched.max_merge_region_qps = self.max_merge_region_qps;
        cfg.sched.split_merge_interval_ms = self.split_merge_interval_ms;
        cfg.sched.store_disconnected_after_ms = cfg.store_disconnected_after_ms;
        cfg.sched.schedule_interval_ms = self.schedule_interval_ms;
        cfg.sched.store_limit_add_peer = self.store_limit_add_peer;
        cfg.sched.store_limit_repair_add_peer = self.store_limit_repair_add_peer;
        cfg.sched.hot_region_bytes_per_sec = self.hot_region_bytes_per_sec;
        cfg.sched.hot_region_keys_per_sec = self.hot_region_keys_per_sec;
        cfg.sched.hot_region_cache_hits_threshold = self.hot_region_cache_hits_threshold;
        cfg.sched.hot_region_schedule_limit = self.hot_region_schedule_limit;
        cfg.sched.hot_region_tolerance_pct = self.hot_region_tolerance_pct;
        cfg.sched.shard_schedule_limit = self.shard_schedule_limit;
        cfg.sched.shard_moves_per_store_max = self.shard_moves_per_store_max;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs a PD member until SIGINT/SIGTERM. Exit codes: 0 clean stop,
/// 2 bad configuration, 1 any other start or run failure (70: fatal I/O,
/// from the driver).
pub fn run(args: PdArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The `golem` binary may have installed a subscriber already.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("golem pd: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match crate::server::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("golem pd: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: PdArgs,
    }

    fn parse(args: &[&str]) -> Result<PdConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("golem-pd").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.args.to_config().map_err(|e| e.to_string())
    }

    #[test]
    fn flags_become_a_validated_config() {
        let c = parse(&["--data-dir", "/tmp/pd"]).unwrap();
        assert_eq!(c.peers, vec![(PdMemberId(1), c.listen)]);
        let c = parse(&[
            "--data-dir",
            "/tmp/pd",
            "--id",
            "2",
            "--peers",
            "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3",
            "--tick-ms",
            "20",
        ])
        .unwrap();
        assert_eq!(c.id, PdMemberId(2));
        assert_eq!(c.tick_ms, 20);
        assert_eq!(c.initial_replicas, 1);
        let c = parse(&["--data-dir", "/tmp/pd", "--initial-replicas", "3"]).unwrap();
        assert_eq!(c.initial_replicas, 3);
        for bad in ["0", "6"] {
            let e = parse(&["--data-dir", "/tmp/pd", "--initial-replicas", bad]).unwrap_err();
            assert!(e.contains("initial-replicas"), "{e}");
        }
        assert!(parse(&["--data-dir", "/tmp/pd", "--tick-ms", "0"]).is_err());
        // The down time must cover two store heartbeats (5 s each).
        let e = parse(&["--data-dir", "/tmp/pd", "--max-store-down-time-ms", "9999"]).unwrap_err();
        assert!(
            e.contains("max-store-down-time-ms must be at least 10000"),
            "{e}"
        );
        let c = parse(&["--data-dir", "/tmp/pd", "--max-store-down-time-ms", "10000"]).unwrap();
        assert_eq!(c.sched.max_store_down_time_ms, 10_000);
        // Scheduling defaults (TiKV's 30 MiB/s byte split threshold).
        let c = parse(&["--data-dir", "/tmp/pd"]).unwrap();
        assert_eq!(c.sched, crate::sched::SchedConfig::default());
        assert_eq!(c.sched.split_region_bytes_per_sec, 30 << 20);
        let c = parse(&[
            "--data-dir",
            "/tmp/pd",
            "--split-region-bytes-per-sec",
            "1000",
            "--hot-region-bytes-per-sec",
            "2000",
            "--hot-region-cache-hits-threshold",
            "2",
        ])
        .unwrap();
        assert_eq!(c.sched.split_region_bytes_per_sec, 1000);
        assert_eq!(c.sched.hot_region_bytes_per_sec, 2000);
        assert_eq!(c.sched.hot_region_cache_hits_threshold, 2);
        let e = parse(&[
            "--data-dir",
            "/tmp/pd",
            "--store-limit-repair-add-peer",
            "2",
        ])
        .unwrap_err();
        assert!(e.contains("store-limit-repair-add-peer"), "{e}");
        assert!(parse(&["--data-dir", "/tmp/pd", "--peers", "1=nohost"]).is_err());
        assert!(parse(&[]).is_err(), "--data-dir is required");
    }
}
