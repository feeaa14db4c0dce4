//! What a run returns: `SimReport` when every checker passed,
//! `SimFailure` (with the command that replays it) when one did not.
//!
//! Owns the result types and their printed form. Invariant: a failure's
//! `Display` always ends with the exact replay command, so any failing
//! seed printed anywhere (test output, the runner) can be rerun as is.

use crate::faults::FaultPlan;

/// Counters of a passing run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReport {
    pub seed: u64,
    pub plan: FaultPlan,
    /// Events processed.
    pub events: u64,
    /// Virtual time at the end.
    pub virtual_ms: u64,
    /// Client operations answered, unknown, and refused before proposing.
    pub ops_ok: u64,
    pub ops_unknown: u64,
    pub ops_refused: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub elections: usize,
    pub applies: u64,
    pub checkpoints: u64,
    pub fetches: u64,
    /// Membership changes the operator saw answered (applied), and the
    /// distinct (region, conf_ver) pairs replicas went through.
    pub changes_ok: u64,
    pub conf_vers: u64,
    /// Snapshots sent (data attached to a `MsgSnapshot`), installed by
    /// followers, and replicas that applied their own removal.
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    pub replicas_removed: u64,
    /// Members that learned a commit index from a removed replica's notice
    /// (`RegionPeer::learn_removal_committed`).
    pub removal_notices_used: u64,
    /// Crashes aimed mid snapshot install or right after a removal.
    pub targeted_crashes: u64,
    pub keys_inconclusive: usize,
    /// Regions at the end (the initial ones and those splits made), and
    /// replicas of split-made regions created on nodes.
    pub regions: usize,
    pub split_replicas_created: u64,
    /// Per node at the end (0 for a node that is down): replicas that are
    /// current members of their region, and region leaders.
    pub replicas_per_node: Vec<usize>,
    pub leaders_per_node: Vec<usize>,
    /// With the simulated PD: time from a region's first report over the
    /// split threshold to its split, per split; time from the node's
    /// death to every region having its voters on live nodes; operators
    /// ended by outcome.
    pub split_latencies_ms: Vec<u64>,
    pub repair_ms: Option<u64>,
    pub pd_operators_ended: Vec<(String, u64)>,
    /// A hash of every event: two runs of one seed and config agree.
    pub digest: u64,
}

/// Which checker failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Two leaders of one region in one term.
    TwoLeaders,
    /// An applied (so committed) entry changed or was skipped.
    AppliedEntry,
    /// A write answered `NotLeader` after proposing was applied anyway.
    RefusedApplied,
    /// A client history is not linearizable.
    NotLinearizable,
    /// Replicas hold different data after healing.
    Diverged,
    /// The cluster did not converge, or clients could not finish, in time.
    Liveness,
    /// A replica's epoch went back, replicas at one `conf_ver` disagree on
    /// the members, or region ranges overlap.
    Metadata,
    /// A node could not recover from its WAL and store.
    Recovery,
    /// A raft message was refused, or an answer did not fit its request.
    Protocol,
    /// golem-core (or the simulator) panicked.
    Panic,
    /// The configuration is unusable.
    Config,
}

/// A failed run.
#[derive(Clone, Debug)]
pub struct SimFailure {
    pub seed: u64,
    pub kind: FailureKind,
    pub message: String,
    /// Virtual time and event number of the failure.
    pub at_ms: u64,
    pub event: u64,
    /// The command that replays this run.
    pub replay: String,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {} failed: {:?} at {} ms (event {})",
            self.seed, self.kind, self.at_ms, self.event
        )?;
        writeln!(f, "{}", self.message.trim_end())?;
        write!(f, "replay: {}", self.replay)
    }
}

impl std::error::Error for SimFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_prints_its_replay_command_last() {
        let f = SimFailure {
            seed: 9,
            kind: FailureKind::Diverged,
            message: "region 1 differs\n".into(),
            at_ms: 10,
            event: 20,
            replay: "cargo run -p golem-sim --release -- --seed 9".into(),
        };
        let s = f.to_string();
        assert!(s.starts_with("seed 9 failed: Diverged"), "{s}");
        assert!(
            s.ends_with("replay: cargo run -p golem-sim --release -- --seed 9"),
            "{s}"
        );
    }
}
