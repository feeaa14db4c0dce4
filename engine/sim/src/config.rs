//! `SimConfig`: what one simulated run looks like, and its command-line
//! form (so that a failing run prints the exact command that replays it).
//!
//! Owns every knob of a run and their defaults. Invariants: a run is a
//! pure function of (seed, `SimConfig`); `SimArgs` parses back exactly what
//! `SimConfig::to_args` prints (tested); `validate` rejects combinations
//! the simulator cannot run (fewer than 3 or more than 7 nodes, no region,
//! more regions than keys, fewer than 2 replicas or more than nodes).

use clap::ValueEnum;

/// How clients' Gets are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadMode {
    /// The product's read path (`engine/src/shard/region_handle.rs`): a
    /// multi-voter region's leader batches reads behind a ReadIndex round
    /// (`request_read` before a pass, `take_ready_reads` after it), then
    /// serves them with `RegionPeer::read`.
    ReadIndex,
    /// The product's read path with leader leases
    /// (`engine/src/shard/region_handle.rs`): a confirmed ReadIndex round
    /// grants the leader a lease of `tick_ms * (election_ticks - 2)`
    /// (virtual ms, from the round's request) during which reads are served
    /// at once, renewed when half spent; a node grants no vote for one
    /// lease after it starts.
    Lease,
    /// Through the Raft log: a compare-and-swap that can never swap
    /// (its expected value is never written) whose answer carries the
    /// value. Linearizable whatever the leader's view.
    Log,
    /// `RegionPeer::read` at once, with no ReadIndex round: a leader cut
    /// off from its quorum serves stale reads. A planted bug, to show the
    /// linearizability checker catches stale reads.
    NoBarrier,
}

/// Up to where a node's WAL checkpoint moves a region's log start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TruncatePolicy {
    /// What the shell does (`engine/src/shard/raft_loop.rs`): the node's
    /// own durable applied index, lowered for a leader to its
    /// `log_retention_floor` (what its followers have replicated).
    Shell,
    /// The lowest durable applied index of the region over all nodes, and
    /// at most the current leader's `log_retention_floor`: no replica ever
    /// needs entries another deleted (snapshots are not implemented yet,
    /// so such a replica could never catch up).
    GlobalMin,
}

/// What of the unsynced WAL tail a crash may keep (when the fault plan
/// says this crash keeps any).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TornTail {
    /// Any prefix of the unsynced records: what golem-core's recovery
    /// documents it tolerates (`region/ready.rs`).
    Records,
    /// All of the unsynced records or none: what the WAL guarantees (one
    /// batch per sync, all or nothing; docs/storage.md).
    Batches,
}

/// A bug planted in the simulator's shell on purpose, to show the
/// checkers catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlantedBug {
    /// Every node calls `on_persisted` (answers clients, applies, sends
    /// acknowledgements) before its WAL sync returns; the records become
    /// durable only when the sync does.
    AckBeforeSync,
}

/// See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Nodes; each region starts with `replicas` voters on consecutive
    /// nodes (region `r` from node `r - 1` on, wrapping).
    pub nodes: usize,
    /// Voters each region starts with. With fewer than `nodes`, some nodes
    /// start without a replica of a region (room to add one).
    pub replicas: usize,
    /// Regions, splitting the key set into disjoint ranges.
    pub regions: usize,
    /// Distinct keys clients use.
    pub keys: usize,
    /// Concurrent clients, one operation in flight each.
    pub clients: usize,
    /// Length of the phase with faults.
    pub fault_phase_ms: u64,
    /// How long clients go on after faults stop.
    pub client_tail_ms: u64,
    /// After that, the longest wait for the cluster to go quiet and
    /// converge (a liveness failure beyond).
    pub quiesce_ms_max: u64,
    /// A node's nominal time between ticks (skew changes it per node).
    pub tick_ms: u64,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Small, so that lagging followers need entries fetched from the WAL.
    pub entry_cache_entries_max: usize,
    /// `PeerConfig::log_retain_entries_min`: applied entries every voter
    /// keeps in its WAL. Small, so that checkpoints move log starts within
    /// a short run (the product's 10,000 would keep everything).
    pub log_retain_entries_min: u64,
    /// A client gives up on an operation after this long: outcome unknown.
    pub client_timeout_ms: u64,
    pub reads: ReadMode,
    pub truncate: TruncatePolicy,
    pub torn_tail: TornTail,
    pub planted_bug: Option<PlantedBug>,
    /// Draw the mix and rates of faults from the seed (swarm testing);
    /// otherwise every fault is on at its middle rate.
    pub swarm: bool,
    /// Print every event to stderr.
    pub trace: bool,
    /// Events after which the run is stopped as a liveness failure.
    pub events_max: u64,
    /// Search steps per key for the linearizability checker.
    pub lin_steps_max: u64,
    /// Mean time between a simulated operator's membership changes (add a
    /// learner on a node without a replica, promote it, remove a
    /// follower, a joint add-and-remove, a leadership move), during the
    /// fault phase; 0: no membership changes.
    pub membership_interval_ms_mean: u64,
    /// The operator may also add voters that hold nothing yet: brand-new
    /// peers as voters (a joint `AddVoter` + `Remove`), and learners
    /// promoted before their snapshot is in. Off by default: FINDINGS.md
    /// #5.
    pub membership_new_voters: bool,
    /// A simulated PD (`src/sim/pd.rs`) takes store and region heartbeats
    /// and runs golem-pd's scheduler (splits by key count, replica repair,
    /// balance); its operator steps run on region leaders.
    pub pd: bool,
    /// The PD splits a region holding more keys than this.
    pub pd_split_keys: u64,
    /// The PD recreates the replicas of a store silent this long.
    pub pd_down_ms: u64,
    /// At this time node 0 dies for good (0: never).
    pub kill_at_ms: u64,
    /// The last node joins the cluster empty at this time (0: it is a
    /// member from the start).
    pub join_at_ms: u64,
    /// No crashes, partitions or clock changes (the network still drops,
    /// duplicates and delays): for scenarios whose faults are scripted.
    pub calm: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            replicas: 3,
            regions: 2,
            keys: 6,
            clients: 4,
            fault_phase_ms: 8_000,
            client_tail_ms: 1_000,
            quiesce_ms_max: 30_000,
            tick_ms: 10,
            election_ticks: 10,
            heartbeat_ticks: 2,
            entry_cache_entries_max: 4,
            log_retain_entries_min: 16,
            client_timeout_ms: 1_000,
            reads: ReadMode::Lease,
            truncate: TruncatePolicy::GlobalMin,
            torn_tail: TornTail::Records,
            planted_bug: None,
            swarm: true,
            trace: false,
            events_max: 20_000_000,
            lin_steps_max: 2_000_000,
            membership_interval_ms_mean: 1_000,
            membership_new_voters: false,
            pd: false,
            pd_split_keys: 1_000_000,
            pd_down_ms: 3_000,
            kill_at_ms: 0,
            join_at_ms: 0,
            calm: false,
        }
    }
}

/// The command-line form of `SimConfig` (defaults equal
/// `SimConfig::default()`).
#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    #[arg(long, default_value_t = SimConfig::default().nodes)]
    pub nodes: usize,
    #[arg(long, default_value_t = SimConfig::default().replicas)]
    pub replicas: usize,
    #[arg(long, default_value_t = SimConfig::default().regions)]
    pub regions: usize,
    #[arg(long, default_value_t = SimConfig::default().keys)]
    pub keys: usize,
    #[arg(long, default_value_t = SimConfig::default().clients)]
    pub clients: usize,
    #[arg(long, default_value_t = SimConfig::default().fault_phase_ms)]
    pub fault_phase_ms: u64,
    #[arg(long, default_value_t = SimConfig::default().client_tail_ms)]
    pub client_tail_ms: u64,
    #[arg(long, default_value_t = SimConfig::default().quiesce_ms_max)]
    pub quiesce_ms_max: u64,
    #[arg(long, default_value_t = SimConfig::default().tick_ms)]
    pub tick_ms: u64,
    #[arg(long, default_value_t = SimConfig::default().election_ticks)]
    pub election_ticks: usize,
    #[arg(long, default_value_t = SimConfig::default().heartbeat_ticks)]
    pub heartbeat_ticks: usize,
    #[arg(long, default_value_t = SimConfig::default().entry_cache_entries_max)]
    pub entry_cache_entries_max: usize,
    #[arg(long, default_value_t = SimConfig::default().log_retain_entries_min)]
    pub log_retain_entries_min: u64,
    #[arg(long, default_value_t = SimConfig::default().client_timeout_ms)]
    pub client_timeout_ms: u64,
    #[arg(long, value_enum, default_value_t = SimConfig::default().reads)]
    pub reads: ReadMode,
    #[arg(long, value_enum, default_value_t = SimConfig::default().truncate)]
    pub truncate: TruncatePolicy,
    #[arg(long, value_enum, default_value_t = SimConfig::default().torn_tail)]
    pub torn_tail: TornTail,
    #[arg(long, value_enum)]
    pub planted_bug: Option<PlantedBug>,
    /// Every fault on at its middle rate instead of a mix drawn per seed.
    #[arg(long)]
    pub no_swarm: bool,
    #[arg(long)]
    pub trace: bool,
    #[arg(long, default_value_t = SimConfig::default().events_max)]
    pub events_max: u64,
    #[arg(long, default_value_t = SimConfig::default().lin_steps_max)]
    pub lin_steps_max: u64,
    /// Mean ms between membership changes (0: none).
    #[arg(long, default_value_t = SimConfig::default().membership_interval_ms_mean)]
    pub membership_interval_ms_mean: u64,
    /// Let the operator add voters that hold nothing yet (FINDINGS.md #5).
    #[arg(long)]
    pub membership_new_voters: bool,
    /// Run the simulated PD's scheduler (splits, repair, balance).
    #[arg(long)]
    pub pd: bool,
    #[arg(long, default_value_t = SimConfig::default().pd_split_keys)]
    pub pd_split_keys: u64,
    #[arg(long, default_value_t = SimConfig::default().pd_down_ms)]
    pub pd_down_ms: u64,
    /// Node 0 dies for good at this time (0: never).
    #[arg(long, default_value_t = SimConfig::default().kill_at_ms)]
    pub kill_at_ms: u64,
    /// The last node joins empty at this time (0: from the start).
    #[arg(long, default_value_t = SimConfig::default().join_at_ms)]
    pub join_at_ms: u64,
    /// No crashes, partitions or clock changes.
    #[arg(long)]
    pub calm: bool,
}

impl From<SimArgs> for SimConfig {
    fn from(a: SimArgs) -> SimConfig {
        SimConfig {
            nodes: a.nodes,
            replicas: a.replicas,
            regions: a.regions,
            keys: a.keys,
            clients: a.clients,
            fault_phase_ms: a.fault_phase_ms,
            client_tail_ms: a.client_tail_ms,
            quiesce_ms_max: a.quiesce_ms_max,
            tick_ms: a.tick_ms,
            election_ticks: a.election_ticks,
            heartbeat_ticks: a.heartbeat_ticks,
            entry_cache_entries_max: a.entry_cache_entries_max,
            log_retain_entries_min: a.log_retain_entries_min,
            client_timeout_ms: a.client_timeout_ms,
            reads: a.reads,
            truncate: a.truncate,
            torn_tail: a.torn_tail,
            planted_bug: a.planted_bug,
            swarm: !a.no_swarm,
            trace: a.trace,
            events_max: a.events_max,
            lin_steps_max: a.lin_steps_max,
            membership_interval_ms_mean: a.membership_interval_ms_mean,
            membership_new_voters: a.membership_new_voters,
            pd: a.pd,
            pd_split_keys: a.pd_split_keys,
            pd_down_ms: a.pd_down_ms,
            kill_at_ms: a.kill_at_ms,
            join_at_ms: a.join_at_ms,
            calm: a.calm,
        }
    }
}

fn value_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .expect("no skipped variants")
        .get_name()
        .to_owned()
}

impl SimConfig {
    /// The flags that differ from the defaults (`--trace` excluded), in
    /// the form `SimArgs` parses.
    pub fn to_args(&self) -> Vec<String> {
        let d = SimConfig::default();
        let mut out = Vec::new();
        let mut num = |name: &str, v: u64, dv: u64| {
            if v != dv {
                out.push(format!("--{name}"));
                out.push(v.to_string());
            }
        };
        num("nodes", self.nodes as u64, d.nodes as u64);
        num("replicas", self.replicas as u64, d.replicas as u64);
        num("regions", self.regions as u64, d.regions as u64);
        num("keys", self.keys as u64, d.keys as u64);
        num("clients", self.clients as u64, d.clients as u64);
        num("fault-phase-ms", self.fault_phase_ms, d.fault_phase_ms);
        num("client-tail-ms", self.client_tail_ms, d.client_tail_ms);
        num("quiesce-ms-max", self.quiesce_ms_max, d.quiesce_ms_max);
        num("tick-ms", self.tick_ms, d.tick_ms);
        num(
            "election-ticks",
            self.election_ticks as u64,
            d.election_ticks as u64,
        );
        num(
            "heartbeat-ticks",
            self.heartbeat_ticks as u64,
            d.heartbeat_ticks as u64,
        );
        num(
            "entry-cache-entries-max",
            self.entry_cache_entries_max as u64,
            d.entry_cache_entries_max as u64,
        );
        num(
            "log-retain-entries-min",
            self.log_retain_entries_min,
            d.log_retain_entries_min,
        );
        num(
            "client-timeout-ms",
            self.client_timeout_ms,
            d.client_timeout_ms,
        );
        num("events-max", self.events_max, d.events_max);
        num("lin-steps-max", self.lin_steps_max, d.lin_steps_max);
        num(
            "membership-interval-ms-mean",
            self.membership_interval_ms_mean,
            d.membership_interval_ms_mean,
        );
        num("pd-split-keys", self.pd_split_keys, d.pd_split_keys);
        num("pd-down-ms", self.pd_down_ms, d.pd_down_ms);
        num("kill-at-ms", self.kill_at_ms, d.kill_at_ms);
        num("join-at-ms", self.join_at_ms, d.join_at_ms);
        if self.reads != d.reads {
            out.extend(["--reads".to_owned(), value_name(self.reads)]);
        }
        if self.truncate != d.truncate {
            out.extend(["--truncate".to_owned(), value_name(self.truncate)]);
        }
        if self.torn_tail != d.torn_tail {
            out.extend(["--torn-tail".to_owned(), value_name(self.torn_tail)]);
        }
        if let Some(bug) = self.planted_bug {
            out.extend(["--planted-bug".to_owned(), value_name(bug)]);
        }
        if !self.swarm {
            out.push("--no-swarm".to_owned());
        }
        if self.membership_new_voters {
            out.push("--membership-new-voters".to_owned());
        }
        if self.pd {
            out.push("--pd".to_owned());
        }
        if self.calm {
            out.push("--calm".to_owned());
        }
        out
    }

    /// The command that replays `seed` with this configuration.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut cmd = format!("cargo run -p golem-sim --release -- --seed {seed}");
        for a in self.to_args() {
            cmd.push(' ');
            cmd.push_str(&a);
        }
        cmd
    }

    /// Checks the knobs the simulator relies on.
    pub fn validate(&self) -> Result<(), String> {
        if !(3..=7).contains(&self.nodes) {
            return Err(format!("{} nodes: 3..=7 supported", self.nodes));
        }
        if self.replicas < 2 || self.replicas > self.nodes {
            return Err(format!(
                "{} replicas on {} nodes: 2..=nodes supported",
                self.replicas, self.nodes
            ));
        }
        if self.regions == 0 || self.regions > self.keys {
            return Err(format!(
                "{} regions for {} keys: each region needs a key",
                self.regions, self.keys
            ));
        }
        if self.keys > 1000 || self.clients == 0 || self.tick_ms == 0 {
            return Err("keys ≤ 1000, at least one client, tick_ms ≥ 1".into());
        }
        if self.pd_split_keys == 0 || self.pd_down_ms == 0 {
            return Err("pd-split-keys and pd-down-ms must be at least 1".into());
        }
        if self.join_at_ms > 0 && self.replicas >= self.nodes {
            return Err("a joining node needs the replicas on the other nodes".into());
        }
        if self.kill_at_ms > 0
            && (!self.pd || self.nodes - 1 - usize::from(self.join_at_ms > 0) < self.replicas)
        {
            return Err(
                "killing a node for good needs --pd and enough other nodes for the replicas".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn parse(args: &[String]) -> SimConfig {
        let argv = std::iter::once("golem-sim".to_owned()).chain(args.iter().cloned());
        Cli::try_parse_from(argv).unwrap().sim.into()
    }

    #[test]
    fn args_round_trip() {
        assert_eq!(parse(&[]), SimConfig::default());
        assert!(SimConfig::default().to_args().is_empty());
        let cfg = SimConfig {
            nodes: 5,
            regions: 4,
            keys: 9,
            fault_phase_ms: 123,
            reads: ReadMode::Log,
            truncate: TruncatePolicy::Shell,
            torn_tail: TornTail::Batches,
            planted_bug: Some(PlantedBug::AckBeforeSync),
            swarm: false,
            lin_steps_max: 7,
            log_retain_entries_min: 10_000,
            replicas: 4,
            membership_interval_ms_mean: 0,
            membership_new_voters: true,
            pd: true,
            pd_split_keys: 9,
            pd_down_ms: 77,
            kill_at_ms: 5,
            join_at_ms: 6,
            calm: true,
            ..SimConfig::default()
        };
        assert_eq!(parse(&cfg.to_args()), cfg);
        let cmd = cfg.replay_command(42);
        assert!(cmd.contains("--seed 42 --nodes 5"), "{cmd}");
        assert!(cmd.contains("--planted-bug ack-before-sync"), "{cmd}");
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(SimConfig::default().validate().is_ok());
        for cfg in [
            SimConfig {
                nodes: 2,
                ..SimConfig::default()
            },
            SimConfig {
                regions: 0,
                ..SimConfig::default()
            },
            SimConfig {
                replicas: 4,
                ..SimConfig::default()
            },
            SimConfig {
                regions: 7,
                keys: 6,
                ..SimConfig::default()
            },
        ] {
            assert!(cfg.validate().is_err(), "{cfg:?}");
        }
    }
}
