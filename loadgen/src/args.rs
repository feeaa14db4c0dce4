//! Command-line arguments of golem-loadgen, and how they become a workload
//! and phase plans.
//!
//! Owns the knobs of a run and their validation. Invariant: every count,
//! size and duration has an upper bound so a typo cannot exhaust the
//! machine; a validated `Args` always yields a valid `Workload`.

use crate::backend::BackendKind;
use crate::error::LoadgenError;
use crate::workload::{InsertOrder, Workload, RECORDS_MAX};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Most connections one run may open.
pub const CONNECTIONS_MAX: usize = 1024;
/// Most requests in flight per connection (the protocol's own cap).
pub const IN_FLIGHT_PER_CONNECTION_MAX: usize = golem_wire::limits::IN_FLIGHT_REQUESTS_MAX;
/// Longest measured duration, in seconds.
pub const DURATION_S_MAX: u64 = 86_400;
/// Longest warm-up, in seconds.
pub const WARMUP_S_MAX: u64 = 3_600;
/// Most tokio worker threads.
pub const THREADS_MAX: usize = 64;
/// Longest per-request deadline, in milliseconds.
pub const TIMEOUT_MS_MAX: u64 = 600_000;
/// Most peer endpoints.
pub const ENDPOINTS_MAX: usize = 16;

/// The raw (non-YCSB) workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Only puts, to uniformly chosen keys (no load phase).
    Put,
    /// Only gets, of keys written by a load phase first.
    Get,
    /// Gets and puts, by --read-percent, after a load phase.
    Mixed,
}

/// Which phases of a workload to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    /// Insert the records only.
    Load,
    /// Run the operations only (the records must exist).
    Run,
    /// Load, then run.
    All,
}

/// golem-loadgen: YCSB-style workloads and raw put/get/mixed load against
/// GolemDB (through its client SDK), etcd or redis, with hdrhistogram
/// latencies.
///
/// Examples:
///   golem-loadgen                               # workload A against a playground it starts
///   golem-loadgen -P workloadb -p recordcount=100000 -p operationcount=200000
///   golem-loadgen -P loadgen/workloads/workloadd --phase run -p target=5000
///   golem-loadgen --mode put --connections 4 --in-flight 32 --duration-s 10
///   golem-loadgen --backend redis --endpoints 127.0.0.1:6379 -P workloada
#[derive(Clone, Debug, Parser)]
#[command(name = "golem-loadgen", version, about, verbatim_doc_comment)]
pub struct Args {
    /// System under load.
    #[arg(long, value_enum, default_value = "golem")]
    pub backend: BackendKind,
    /// GolemDB: address of a node's first shard. Default: the default
    /// playground address if something listens there, else a playground
    /// started for this run.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// etcd/redis (or golem) endpoints, comma-separated ip:port. Defaults:
    /// etcd 127.0.0.1:2379, redis 127.0.0.1:6379.
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// YCSB workload: a properties file, or a built-in name (workloada …
    /// workloadf, or a … f). Default when no --mode: workloada.
    #[arg(short = 'P', long, conflicts_with = "mode")]
    pub workload: Option<String>,
    /// Override a workload property (go-ycsb style), e.g. -p recordcount=100000.
    /// Also: operationcount, threadcount, target (ops/s: open loop),
    /// fieldcount, fieldlength, requestdistribution, …
    #[arg(short = 'p', long = "prop", value_name = "KEY=VALUE")]
    pub props: Vec<String>,
    /// Phases to run.
    #[arg(long, value_enum, default_value = "all")]
    pub phase: PhaseArg,
    /// A raw workload instead of a YCSB one.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Share of gets in --mode mixed, in percent.
    #[arg(long, default_value_t = 50)]
    pub read_percent: u8,
    /// Raw modes: value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Raw modes: number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Client connections (one per connection for every backend).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Requests in flight per connection: workers = connections × this,
    /// unless -p threadcount=N sets the workers.
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Measured duration of the run phase, in seconds. Default: raw modes
    /// 10; YCSB workloads until operationcount is done.
    #[arg(long)]
    pub duration_s: Option<u64>,
    /// Warm-up of the run phase, in seconds (operations intended during it
    /// are neither recorded nor counted).
    #[arg(long, default_value_t = 1)]
    pub warmup_s: u64,
    /// Client threads (tokio workers).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Per-request deadline, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Write one HdrHistogram percentile file (<phase>-<OP>.hgrm) per row
    /// into this directory.
    #[arg(long)]
    pub hgrm_dir: Option<PathBuf>,
    /// Write an SVG plot of the run phase's latency by percentile.
    #[arg(long)]
    pub svg_out: Option<PathBuf>,
    /// The `golem` binary used to start a playground (default: next to this one).
    #[arg(long)]
    pub golem_bin: Option<PathBuf>,
    /// Seed of the key and operation choosers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Args {
    /// Checks bounds; returns what is wrong.
    pub fn validate(&self) -> Result<(), LoadgenError> {
        let bad = |s: String| Err(LoadgenError::Args(s));
        if self.connections == 0 || self.connections > CONNECTIONS_MAX {
            return bad(format!("--connections must be 1..={CONNECTIONS_MAX}"));
        }
        if self.in_flight == 0 || self.in_flight > IN_FLIGHT_PER_CONNECTION_MAX {
            return bad(format!(
                "--in-flight must be 1..={IN_FLIGHT_PER_CONNECTION_MAX}"
            ));
        }
        if self.value_bytes > golem_wire::limits::VALUE_BYTES_MAX {
            return bad("--value-bytes exceeds the protocol's value limit".into());
        }
        if self.keys == 0 || self.keys > RECORDS_MAX {
            return bad(format!("--keys must be 1..={RECORDS_MAX}"));
        }
        if self.duration_s == Some(0) || self.duration_s.is_some_and(|d| d > DURATION_S_MAX) {
            return bad(format!("--duration-s must be 1..={DURATION_S_MAX}"));
        }
        if self.warmup_s > WARMUP_S_MAX {
            return bad(format!("--warmup-s must be 0..={WARMUP_S_MAX}"));
        }
        if self.read_percent > 100 {
            return bad("--read-percent must be 0..=100".into());
        }
        if self.threads == 0 || self.threads > THREADS_MAX {
            return bad(format!("--threads must be 1..={THREADS_MAX}"));
        }
        if self.timeout_ms == 0 || self.timeout_ms > TIMEOUT_MS_MAX {
            return bad(format!("--timeout-ms must be 1..={TIMEOUT_MS_MAX}"));
        }
        if self.endpoints.len() > ENDPOINTS_MAX {
            return bad(format!("at most {ENDPOINTS_MAX} --endpoints"));
        }
        if self.addr.is_some() && self.backend != BackendKind::Golem {
            return bad("--addr is for --backend golem; use --endpoints".into());
        }
        Ok(())
    }

    /// The mode's name for the report.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            None => "ycsb",
            Some(Mode::Put) => "put",
            Some(Mode::Get) => "get",
            Some(Mode::Mixed) => "mixed",
        }
    }

    /// The workload this run executes, overrides applied and validated.
    pub fn workload(&self) -> Result<Workload, LoadgenError> {
        let mut w = match self.mode {
            None => Workload::load(self.workload.as_deref().unwrap_or("workloada"))?,
            Some(mode) => {
                let read = match mode {
                    Mode::Put => 0.0,
                    Mode::Get => 1.0,
                    Mode::Mixed => f64::from(self.read_percent) / 100.0,
                };
                Workload {
                    name: format!("raw-{}", self.mode_name()),
                    recordcount: self.keys,
                    operationcount: None,
                    fieldcount: 1,
                    fieldlength: self.value_bytes,
                    readproportion: read,
                    updateproportion: 1.0 - read,
                    insertorder: InsertOrder::Ordered,
                    zeropadding: 12,
                    keyprefix: "key".into(),
                    ..Workload::default()
                }
            }
        };
        w.apply_overrides(&self.props)?;
        Ok(w)
    }

    /// Whether to run the load phase.
    pub fn runs_load(&self) -> bool {
        match self.mode {
            Some(Mode::Put) => false,
            Some(_) => true,
            None => self.phase != PhaseArg::Run,
        }
    }

    /// Whether to run the run phase.
    pub fn runs_run(&self) -> bool {
        self.mode.is_some() || self.phase != PhaseArg::Load
    }

    /// The run phase's measured duration, in seconds.
    pub fn run_duration_s(&self) -> Option<u64> {
        match (self.duration_s, self.mode) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => Some(10),
            (None, None) => None,
        }
    }

    /// Endpoints of the chosen backend (GolemDB's come from `target`).
    pub fn peer_endpoints(&self) -> Vec<String> {
        if !self.endpoints.is_empty() {
            return self.endpoints.clone();
        }
        match self.backend {
            BackendKind::Etcd => vec!["127.0.0.1:2379".into()],
            BackendKind::Redis => vec!["127.0.0.1:6379".into()],
            BackendKind::Golem => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("golem-loadgen").chain(args.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn default_is_workload_a_load_and_run() {
        let a = parse(&[]);
        a.validate().expect("valid");
        let w = a.workload().expect("workload");
        assert_eq!(w.name, "workloada");
        assert!(a.runs_load() && a.runs_run());
        assert_eq!(a.run_duration_s(), None);
    }

    #[test]
    fn raw_modes_map_onto_workloads() {
        let a = parse(&["--mode", "put", "--keys", "10", "--value-bytes", "64"]);
        let w = a.workload().expect("workload");
        assert_eq!(
            (w.recordcount, w.value_bytes(), w.updateproportion),
            (10, Some(64), 1.0)
        );
        assert!(!a.runs_load());
        assert_eq!(a.run_duration_s(), Some(10));
        let a = parse(&[
            "--mode",
            "mixed",
            "--read-percent",
            "90",
            "-p",
            "requestdistribution=zipfian",
        ]);
        let w = a.workload().expect("workload");
        assert!((w.readproportion - 0.9).abs() < 1e-9);
        assert!(a.runs_load());
    }

    #[test]
    fn out_of_bounds_flags_are_rejected() {
        assert!(parse(&["--connections", "0"]).validate().is_err());
        assert!(parse(&["--duration-s", "0"]).validate().is_err());
        assert!(parse(&["--backend", "redis", "--addr", "127.0.0.1:1"])
            .validate()
            .is_err());
        assert!(parse(&["-p", "threadcount=0"]).workload().is_err());
        assert!(
            Args::try_parse_from(["golem-loadgen", "--mode", "put", "-P", "workloada"]).is_err(),
            "a raw mode and a workload conflict"
        );
    }
}
