//! One invocation: resolve the backend, connect, run the phases, build the
//! report and write the requested outputs.
//!
//! Owns the order of things. Invariants: the run phase starts only after
//! the load phase finished; the run phase's insert sequence continues from
//! `recordcount`; outputs are written only for phases that ran.

use crate::args::Args;
use crate::backend::{self, BackendKind, ConnectSpec};
use crate::driver::{run_phase, Phase, PhaseOutcome, PhasePlan, Progress};
use crate::error::LoadgenError;
use crate::keyspace::InsertSequence;
use crate::progress::{Bar, Goal};
use crate::report::Report;
use crate::workload::Workload;
use std::sync::Arc;
use std::time::Duration;

/// Fewest workers of a raw mode's load phase: that phase only prepares the
/// keys for the measured run (100,000 keys one at a time by a single worker
/// would take longer than the run itself).
pub const RAW_LOAD_WORKERS_MIN: usize = 64;

/// A finished run: the report and every phase's histograms.
pub struct Finished {
    pub report: Report,
    pub phases: Vec<PhaseOutcome>,
}

/// Runs `args` against `endpoints` (described as `target` in the report).
pub async fn run(
    args: &Args,
    endpoints: Vec<String>,
    target: String,
) -> Result<Finished, LoadgenError> {
    let workload = args.workload()?;
    let workers = workload
        .threadcount
        .unwrap_or(args.connections * args.in_flight);
    let connections = args.connections.min(workers);
    let spec = ConnectSpec {
        kind: args.backend,
        endpoints,
        connections,
        request_timeout: Duration::from_millis(args.timeout_ms),
    };
    let conns = backend::connect(&spec).await?;
    let mut phases = Vec::new();
    if args.runs_load() {
        let load_workers = match args.mode {
            Some(_) => workers.max(RAW_LOAD_WORKERS_MIN),
            None => workers,
        };
        let plan = PhasePlan {
            phase: Phase::Load,
            workers: load_workers,
            ops_max: Some(workload.recordcount),
            duration: None,
            warmup: Duration::ZERO,
            target_ops_per_s: workload.target,
            seed: args.seed,
        };
        let inserts = Arc::new(InsertSequence::new(0));
        phases.push(
            phase(
                &conns,
                &workload,
                plan,
                inserts,
                Goal::Ops(workload.recordcount),
            )
            .await?,
        );
    }
    if args.runs_run() {
        let duration_s = args.run_duration_s();
        let plan = PhasePlan {
            phase: Phase::Run,
            workers,
            ops_max: workload.operationcount,
            duration: duration_s.map(Duration::from_secs),
            warmup: Duration::from_secs(args.warmup_s),
            target_ops_per_s: workload.target,
            seed: args.seed,
        };
        let goal = match (workload.operationcount, duration_s) {
            (Some(n), None) => Goal::Ops(n),
            (_, Some(s)) => Goal::Seconds(args.warmup_s + s),
            (None, None) => Goal::Ops(0),
        };
        let inserts = Arc::new(InsertSequence::new(workload.recordcount));
        phases.push(phase(&conns, &workload, plan, inserts, goal).await?);
    }
    let last = phases.last().map(|p| &p.report);
    let report = Report {
        target,
        backend: args.backend.name(),
        mode: args.mode_name(),
        connections,
        workers,
        in_flight_per_connection: workers.div_ceil(connections),
        value_bytes: workload.value_bytes().unwrap_or(0),
        keys: workload.recordcount,
        driver: if workload.target > 0 {
            "open"
        } else {
            "closed"
        },
        warmup_s: args.warmup_s as f64,
        duration_s: last.map_or(0.0, |p| p.takes_s),
        total_ops_per_s: last.map_or(0.0, |p| p.total_ops_per_s),
        ops: last.map(|p| p.ops.clone()).unwrap_or_default(),
        phases: phases.iter().map(|p| p.report.clone()).collect(),
        workload,
    };
    Ok(Finished { report, phases })
}

async fn phase(
    conns: &[backend::Conn],
    workload: &Workload,
    plan: PhasePlan,
    inserts: Arc<InsertSequence>,
    goal: Goal,
) -> Result<PhaseOutcome, LoadgenError> {
    let progress = Arc::new(Progress::default());
    let bar = Bar::start(plan.phase.name(), goal, progress.clone());
    let outcome = run_phase(conns, workload, plan, inserts, progress).await;
    bar.finish();
    outcome
}

/// Checks that no phase failed entirely.
pub fn check_failures(f: &Finished) -> Result<(), LoadgenError> {
    for p in &f.report.phases {
        let ok: u64 = p
            .ops
            .iter()
            .filter(|o| !o.op.ends_with("-SERVICE"))
            .map(|o| o.latency.count)
            .sum();
        let errors: u64 = p.ops.iter().map(|o| o.errors).sum();
        if ok == 0 && errors > 0 {
            let first = p
                .ops
                .iter()
                .find_map(|o| o.first_error.clone())
                .unwrap_or_default();
            return Err(LoadgenError::AllFailed {
                phase: p.phase,
                count: errors,
                first,
            });
        }
    }
    Ok(())
}

/// The endpoints of the backend and a description, starting a playground
/// for GolemDB when no address is given (kept alive by the returned guard).
pub fn resolve(
    args: &Args,
) -> Result<(Vec<String>, String, Option<crate::target::Target>), LoadgenError> {
    match args.backend {
        BackendKind::Golem if args.endpoints.is_empty() => {
            let t = crate::target::Target::resolve(args.addr, args.golem_bin.clone())
                .map_err(LoadgenError::Target)?;
            Ok((vec![t.addr.to_string()], t.describe(), Some(t)))
        }
        _ => {
            let e = args.peer_endpoints();
            let d = e.join(",");
            Ok((e, d, None))
        }
    }
}
