//! `SchedConfig`: the scheduler's thresholds and limits, with units last.
//!
//! Owns every knob of the checkers, schedulers and the operator controller.
//! Invariant: a config that passed `validate` has nonzero limits and
//! timeouts (a zero would stall or disable a component silently; turning
//! scheduling off is `enabled = false`).

/// Largest `hot_region_cache_hits_threshold` (reports come every 2 s while
/// a region is loaded: 100 is over three minutes).
pub const HOT_HITS_THRESHOLD_MAX: u32 = 100;

/// Thresholds and limits of the PD's scheduling (`pd/src/sched`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedConfig {
    /// Checkers and schedulers create operators (admin operators work
    /// either way).
    pub enabled: bool,
    /// Replicas (voters) every region should have.
    pub max_replicas: usize,
    /// A region whose approximate size exceeds this is split.
    pub split_region_bytes: u64,
    /// A region whose approximate key count exceeds this is split.
    pub split_region_keys: u64,
    /// A region serving at least this many requests per second (reads and
    /// writes, from its leader's last report) is split at a key dividing
    /// its sampled request keys evenly; 0: no load-based split.
    pub split_region_qps: u64,
    /// A region serving at least this many bytes per second (read plus
    /// written, from its leader's last report) is split the same way
    /// (TiKV's `split.byte-threshold`); 0: no byte-based split.
    pub split_region_bytes_per_sec: u64,
    /// A store silent this long has its replicas recreated elsewhere.
    pub max_store_down_time_ms: u64,
    /// A store silent this long gets no new replicas or leaders.
    pub store_disconnected_after_ms: u64,
    /// Balance schedulers and the offline-store check run this often.
    pub schedule_interval_ms: u64,
    /// Operators adding a replica on one store (snapshots it receives), at most.
    pub store_limit_add_peer: usize,
    /// Running balance-leader operators, at most.
    pub leader_schedule_limit: usize,
    /// Running balance-region operators, at most.
    pub region_schedule_limit: usize,
    /// Running balance-shard operators (replica moves between the shards
    /// of a store), at most; 0: no balance across shards.
    pub shard_schedule_limit: usize,
    /// Running balance-shard moves into one store, at most (each costs the
    /// store a snapshot and a transient second replica).
    pub shard_moves_per_store_max: usize,
    /// Budget of a step that needs no snapshot (leader transfer, promote,
    /// remove, split), from the step's start.
    pub step_timeout_ms: u64,
    /// Budget of an `AddLearner` step (the learner's snapshot included).
    pub add_learner_timeout_ms: u64,
    /// Balance moves only when the score spread exceeds this share of the
    /// mean score, in percent (and at least two moved units).
    pub balance_tolerance_pct: u64,
    /// A region at most this large may merge into a neighbour; 0: no merges.
    pub max_merge_region_bytes: u64,
    /// A region with at most this many keys may merge.
    pub max_merge_region_keys: u64,
    /// Only regions (and targets) serving fewer requests per second merge.
    pub max_merge_region_qps: u64,
    /// No merge of a region, or into one, whose version changed more
    /// recently than this (a region just split is not merged back).
    pub split_merge_interval_ms: u64,
    /// Operators adding a replica on one store for the replica checker
    /// (repair), at most; counts every pending add on the store, so repair
    /// can use the slots above `store_limit_add_peer` that balance cannot.
    pub store_limit_repair_add_peer: usize,
    /// A region report with at least this many bytes per second (read, or
    /// written) counts as hot for that kind of flow.
    pub hot_region_bytes_per_sec: u64,
    /// A region report with at least this many keys per second (read, or
    /// written) counts as hot for that kind of flow.
    pub hot_region_keys_per_sec: u64,
    /// Consecutive hot reports before a region counts as hot (TiKV's
    /// `hot-region-cache-hits-threshold`).
    pub hot_region_cache_hits_threshold: u32,
    /// Running balance-hot-region operators, at most.
    pub hot_region_schedule_limit: usize,
    /// Hot flow moves only from a store above the mean by this share, in
    /// percent, to a store below the mean by as much.
    pub hot_region_tolerance_pct: u64,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            enabled: true,
            max_replicas: 3,
            split_region_bytes: 96 * 1024 * 1024,
            split_region_keys: 960_000,
            split_region_qps: 3000,
            split_region_bytes_per_sec: 30 * 1024 * 1024,
            max_store_down_time_ms: 30 * 60 * 1000,
            store_disconnected_after_ms: 20_000,
            schedule_interval_ms: 1000,
            store_limit_add_peer: 4,
            leader_schedule_limit: 4,
            region_schedule_limit: 8,
            shard_schedule_limit: 4,
            shard_moves_per_store_max: 2,
            step_timeout_ms: 30_000,
            add_learner_timeout_ms: 10 * 60 * 1000,
            balance_tolerance_pct: 5,
            max_merge_region_bytes: 20 * 1024 * 1024,
            max_merge_region_keys: 200_000,
            max_merge_region_qps: 100,
            split_merge_interval_ms: 60 * 60 * 1000,
            store_limit_repair_add_peer: 16,
            hot_region_bytes_per_sec: 64 * 1024,
            hot_region_keys_per_sec: 256,
            hot_region_cache_hits_threshold: 3,
            hot_region_schedule_limit: 4,
            hot_region_tolerance_pct: 5,
        }
    }
}

impl SchedConfig {
    /// Checks the module invariant; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(&str, u64); 16] = [
            ("max-replicas", self.max_replicas as u64),
            ("split-region-bytes", self.split_region_bytes),
            ("split-region-keys", self.split_region_keys),
            ("max-store-down-time-ms", self.max_store_down_time_ms),
            ("schedule-interval-ms", self.schedule_interval_ms),
            ("store-limit-add-peer", self.store_limit_add_peer as u64),
            ("leader-schedule-limit", self.leader_schedule_limit as u64),
            ("region-schedule-limit", self.region_schedule_limit as u64),
            (
                "shard-moves-per-store-max",
                self.shard_moves_per_store_max as u64,
            ),
            ("step-timeout-ms", self.step_timeout_ms),
            ("add-learner-timeout-ms", self.add_learner_timeout_ms),
            (
                "store-limit-repair-add-peer",
                self.store_limit_repair_add_peer as u64,
            ),
            ("hot-region-bytes-per-sec", self.hot_region_bytes_per_sec),
            ("hot-region-keys-per-sec", self.hot_region_keys_per_sec),
            (
                "hot-region-cache-hits-threshold",
                self.hot_region_cache_hits_threshold.into(),
            ),
            (
                "hot-region-schedule-limit",
                self.hot_region_schedule_limit as u64,
            ),
        ];
        for (name, v) in checks {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if self.store_limit_repair_add_peer < self.store_limit_add_peer {
            return Err(format!(
                "store-limit-repair-add-peer ({}) must be at least store-limit-add-peer ({})",
                self.store_limit_repair_add_peer, self.store_limit_add_peer
            ));
        }
        if self.hot_region_cache_hits_threshold > HOT_HITS_THRESHOLD_MAX {
            return Err(format!(
                "hot-region-cache-hits-threshold must be at most {HOT_HITS_THRESHOLD_MAX}"
            ));
        }
        if self.max_replicas > golem_wire::pd::PD_REGION_PEERS_MAX / 2 {
            return Err(format!(
                "max-replicas must be at most {}",
                golem_wire::pd::PD_REGION_PEERS_MAX / 2
            ));
        }
        Ok(())
    }
}
