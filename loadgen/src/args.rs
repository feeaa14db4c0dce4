//! Command-line arguments of golem-loadgen.
//!
//! Owns the knobs of a run and their validation. Invariant: every count and
//! size has an upper bound so a typo cannot exhaust the machine.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Most connections one run may open.
pub const CONNECTIONS_MAX: usize = 1024;
/// Most requests in flight per connection (the protocol's own cap).
pub const IN_FLIGHT_PER_CONNECTION_MAX: usize = golem_wire::limits::IN_FLIGHT_REQUESTS_MAX;

/// What the workers do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only puts.
    Put,
    /// Only gets (of preloaded keys).
    Get,
    /// Gets and puts, by --read-percent.
    Mixed,
}

/// golem-loadgen: a closed-loop load generator for GolemDB.
#[derive(Clone, Debug, Parser)]
#[command(name = "golem-loadgen", version, about)]
pub struct Args {
    /// Address of a node's first shard. Default: the default playground
    /// address if something listens there, else a playground started for
    /// this run.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// Workload.
    #[arg(long, value_enum, default_value = "mixed")]
    pub mode: Mode,
    /// Share of gets in --mode mixed, in percent.
    #[arg(long, default_value_t = 50)]
    pub read_percent: u8,
    /// Client connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection (closed loop: each waits for its answer).
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Number of distinct keys (uniformly chosen).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Measured duration, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Warm-up before measuring, in seconds (not counted).
    #[arg(long, default_value_t = 1)]
    pub warmup_s: u64,
    /// Client threads (tokio workers).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Per-request deadline, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// The `golem` binary used to start a playground (default: next to this one).
    #[arg(long)]
    pub golem_bin: Option<PathBuf>,
    /// Seed of the key chooser.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Args {
    /// Checks bounds; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.connections > CONNECTIONS_MAX {
            return Err(format!("--connections must be 1..={CONNECTIONS_MAX}"));
        }
        if self.in_flight == 0 || self.in_flight > IN_FLIGHT_PER_CONNECTION_MAX {
            return Err(format!(
                "--in-flight must be 1..={IN_FLIGHT_PER_CONNECTION_MAX}"
            ));
        }
        if self.value_bytes > golem_wire::limits::VALUE_BYTES_MAX {
            return Err("--value-bytes exceeds the protocol's value limit".into());
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if self.duration_s == 0 {
            return Err("--duration-s must be at least 1".into());
        }
        if self.read_percent > 100 {
            return Err("--read-percent must be 0..=100".into());
        }
        if self.threads == 0 || self.threads > 64 {
            return Err("--threads must be 1..=64".into());
        }
        Ok(())
    }
}
