//! The drivers: one phase (`load` or `run`) of a workload, by `workers`
//! concurrent workers spread over the backend's connections, in closed
//! loop (each worker sends when its previous answer came) or open loop (a
//! fixed total rate; see `schedule`).
//!
//! Owns the measurement. Invariants: each worker records into its own
//! histograms (the only shared state on the hot path is a few relaxed
//! atomic counters: tickets, progress, the insert sequence),
//! merged at the end; operations *intended* before the warm-up ends are
//! neither recorded nor counted against `operationcount`; no operation is
//! sent at or after the phase's deadline; the load phase sends each record
//! number `0..recordcount` exactly once (a failed insert is counted as an
//! error, not retried: the SDK already retried it within its deadline).

use crate::backend::{Conn, OpError};
use crate::dist::{KeyChooser, LengthChooser};
use crate::error::LoadgenError;
use crate::keyspace::{InsertSequence, KeySpace, OpChooser, OpKind};
use crate::report::{merge, new_histogram, record, Latency, OpReport, PhaseReport};
use crate::schedule::{measure, Schedule};
use crate::workload::Workload;
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The two phases of a YCSB run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Inserts records `0..recordcount`.
    Load,
    /// Runs the operation mix.
    Run,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Load => "load",
            Phase::Run => "run",
        }
    }
}

/// How one phase is driven.
#[derive(Clone, Debug)]
pub struct PhasePlan {
    pub phase: Phase,
    pub workers: usize,
    /// Stop after this many measured operations (the load phase stops
    /// after `recordcount` inserts regardless).
    pub ops_max: Option<u64>,
    /// Stop sending after warm-up + this long.
    pub duration: Option<Duration>,
    pub warmup: Duration,
    /// Open-loop total rate in ops/s; 0: closed loop.
    pub target_ops_per_s: u64,
    pub seed: u64,
}

/// Counters a progress display may read while the phase runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Measured operations completed.
    pub done: AtomicU64,
}

/// A finished phase: its report rows and the merged histograms behind them.
pub struct PhaseOutcome {
    pub report: PhaseReport,
    /// (row name, histogram), in report order.
    pub histograms: Vec<(String, Histogram<u64>)>,
}

/// What every worker of a phase shares (read-only but for the counters).
struct Ctx {
    plan: PhasePlan,
    keys: KeySpace,
    ops: OpChooser,
    chooser: KeyChooser,
    lengths: LengthChooser,
    value_bytes: usize,
    recordcount: u64,
    inserts: Arc<InsertSequence>,
    tickets: AtomicU64,
    progress: Arc<Progress>,
    start: Instant,
    warmup_end: Instant,
    end: Option<Instant>,
}

const KINDS: usize = OpKind::ALL.len();

struct WorkerOut {
    corrected: Vec<Histogram<u64>>,
    service: Vec<Histogram<u64>>,
    errors: [u64; KINDS],
    first_error: [Option<String>; KINDS],
    /// Reads and updates recorded inside read-modify-writes (also in their
    /// own rows, as YCSB does, but not operations of their own).
    inner: u64,
    last_done: Option<Instant>,
}

impl WorkerOut {
    fn new() -> WorkerOut {
        WorkerOut {
            corrected: (0..KINDS).map(|_| new_histogram()).collect(),
            service: (0..KINDS).map(|_| new_histogram()).collect(),
            errors: [0; KINDS],
            first_error: Default::default(),
            inner: 0,
            last_done: None,
        }
    }

    /// Records a success; `free_at`: when the worker's previous operation
    /// completed (see `schedule::measure`).
    fn ok(
        &mut self,
        kind: OpKind,
        intended: Instant,
        sent: Instant,
        done: Instant,
        free_at: Instant,
    ) {
        let base = intended.min(sent).min(free_at);
        let m = measure(intended - base, sent - base, done - base, free_at - base);
        record(
            &mut self.corrected[kind.index()],
            m.corrected.as_micros() as u64,
        );
        record(
            &mut self.service[kind.index()],
            m.service.as_micros() as u64,
        );
    }

    fn err(&mut self, kind: OpKind, e: &OpError) {
        self.errors[kind.index()] += 1;
        self.first_error[kind.index()].get_or_insert_with(|| e.to_string());
    }
}

/// Runs one phase of `workload` over `conns`; `inserts` carries the insert
/// sequence from the load phase to the run phase.
pub async fn run_phase(
    conns: &[Conn],
    workload: &Workload,
    plan: PhasePlan,
    inserts: Arc<InsertSequence>,
    progress: Arc<Progress>,
) -> Result<PhaseOutcome, LoadgenError> {
    let value_bytes = workload.value_bytes().unwrap_or(0);
    let start = Instant::now();
    let warmup_end = start + plan.warmup;
    let ctx = Arc::new(Ctx {
        keys: KeySpace::new(workload),
        ops: OpChooser::new(workload),
        chooser: KeyChooser::new(
            workload.requestdistribution,
            workload.recordcount,
            workload.expected_inserts(),
        ),
        lengths: LengthChooser::new(workload.scanlengthdistribution, workload.maxscanlength),
        value_bytes,
        recordcount: workload.recordcount,
        inserts,
        tickets: AtomicU64::new(0),
        progress,
        start,
        warmup_end,
        end: plan.duration.map(|d| warmup_end + d),
        plan: plan.clone(),
    });
    let mut tasks = Vec::with_capacity(plan.workers);
    for w in 0..plan.workers {
        let conn = conns[w % conns.len()].clone();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(worker(conn, ctx, w)));
    }
    let mut outs = Vec::with_capacity(tasks.len());
    for t in tasks {
        outs.push(t.await.map_err(|e| LoadgenError::Worker(e.to_string()))?);
    }
    Ok(summarize(&ctx, outs))
}

fn summarize(ctx: &Ctx, outs: Vec<WorkerOut>) -> PhaseOutcome {
    let mut corrected: Vec<Histogram<u64>> = (0..KINDS).map(|_| new_histogram()).collect();
    let mut service: Vec<Histogram<u64>> = (0..KINDS).map(|_| new_histogram()).collect();
    let mut errors = [0u64; KINDS];
    let mut first_error: [Option<String>; KINDS] = Default::default();
    let mut last_done = ctx.warmup_end;
    let mut inner = 0;
    for o in outs {
        inner += o.inner;
        for k in 0..KINDS {
            merge(&mut corrected[k], &o.corrected[k]);
            merge(&mut service[k], &o.service[k]);
            errors[k] += o.errors[k];
            if first_error[k].is_none() {
                first_error[k] = o.first_error[k].clone();
            }
        }
        if let Some(t) = o.last_done {
            last_done = last_done.max(t);
        }
    }
    let takes_s = last_done
        .saturating_duration_since(ctx.warmup_end)
        .as_secs_f64()
        .max(1e-6);
    let open = ctx.plan.target_ops_per_s > 0;
    let mut rows = Vec::new();
    let mut histograms = Vec::new();
    let mut total = 0;
    for kind in OpKind::ALL {
        let k = kind.index();
        if corrected[k].is_empty() && errors[k] == 0 {
            continue;
        }
        total += corrected[k].len();
        let mut push = |name: String, h: &Histogram<u64>, errors: u64, first: Option<String>| {
            rows.push(OpReport {
                op: name.clone(),
                takes_s,
                ops_per_s: h.len() as f64 / takes_s,
                errors,
                first_error: first,
                latency: Latency::of(h),
            });
            histograms.push((name, h.clone()));
        };
        push(
            kind.name().to_string(),
            &corrected[k],
            errors[k],
            first_error[k].clone(),
        );
        if open {
            push(format!("{}-SERVICE", kind.name()), &service[k], 0, None);
        }
    }
    PhaseOutcome {
        report: PhaseReport {
            phase: ctx.plan.phase.name(),
            takes_s,
            total_ops_per_s: total.saturating_sub(inner) as f64 / takes_s,
            ops: rows,
        },
        histograms,
    }
}

async fn worker(mut conn: Conn, ctx: Arc<Ctx>, index: usize) -> WorkerOut {
    let plan = &ctx.plan;
    let mut rng =
        SmallRng::seed_from_u64(plan.seed ^ ((index as u64) << 20) ^ ((plan.phase as u64) << 56));
    let mut chooser = ctx.chooser.clone();
    let mut lengths = ctx.lengths.clone();
    let value: Vec<u8> = (0..ctx.value_bytes)
        .map(|_| rng.gen_range(b'a'..=b'z'))
        .collect();
    let mut schedule = (plan.target_ops_per_s > 0)
        .then(|| Schedule::new(plan.target_ops_per_s, plan.workers, index));
    let mut out = WorkerOut::new();
    let mut previous_done = ctx.start;
    loop {
        let intended = match schedule.as_mut() {
            Some(s) => {
                let t = ctx.start + s.next_intended();
                if ctx.end.is_some_and(|end| t >= end) {
                    break;
                }
                if t > Instant::now() {
                    tokio::time::sleep_until(t.into()).await;
                }
                t
            }
            None => Instant::now(),
        };
        if ctx.end.is_some_and(|end| intended >= end) {
            break;
        }
        let measuring = intended >= ctx.warmup_end;
        let kind = match plan.phase {
            Phase::Load => OpKind::Insert,
            Phase::Run => ctx.ops.next(&mut rng),
        };
        if measuring && plan.phase == Phase::Run {
            if let Some(max) = plan.ops_max {
                if ctx.tickets.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
            }
        }
        let sent = Instant::now();
        let result = match kind {
            OpKind::Insert => {
                let n = ctx.inserts.take();
                if plan.phase == Phase::Load && n >= ctx.recordcount {
                    break;
                }
                let r = conn.write(ctx.keys.key(n), value.clone()).await;
                if r.is_ok() {
                    ctx.inserts.acknowledge(n);
                }
                r
            }
            OpKind::Read => {
                let n = chooser.next(&mut rng, ctx.inserts.existing());
                conn.read(ctx.keys.key(n)).await.map(drop)
            }
            OpKind::Update => {
                let n = chooser.next(&mut rng, ctx.inserts.existing());
                conn.write(ctx.keys.key(n), value.clone()).await
            }
            OpKind::Scan => {
                let n = chooser.next(&mut rng, ctx.inserts.existing());
                let len = lengths.next(&mut rng);
                conn.scan(ctx.keys.key(n), len).await.map(drop)
            }
            OpKind::ReadModifyWrite => {
                let n = chooser.next(&mut rng, ctx.inserts.existing());
                let key = ctx.keys.key(n);
                match conn.read(key.clone()).await {
                    Err(e) => Err(e),
                    Ok(_) => {
                        let read_done = Instant::now();
                        if measuring {
                            out.ok(OpKind::Read, sent, sent, read_done, sent);
                            out.inner += 1;
                        }
                        let r = conn.write(key, value.clone()).await;
                        if measuring && r.is_ok() {
                            out.ok(
                                OpKind::Update,
                                read_done,
                                read_done,
                                Instant::now(),
                                read_done,
                            );
                            out.inner += 1;
                        }
                        r
                    }
                }
            }
        };
        let done = Instant::now();
        let free_at = std::mem::replace(&mut previous_done, done);
        if !measuring {
            continue;
        }
        match result {
            Ok(()) => out.ok(kind, intended, sent, done, free_at),
            Err(e) => out.err(kind, &e),
        }
        out.last_done = Some(done);
        ctx.progress.done.fetch_add(1, Ordering::Relaxed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mem::MemConn;

    fn plan(
        phase: Phase,
        ops_max: Option<u64>,
        warmup_ms: u64,
        duration_ms: Option<u64>,
    ) -> PhasePlan {
        PhasePlan {
            phase,
            workers: 8,
            ops_max,
            duration: duration_ms.map(Duration::from_millis),
            warmup: Duration::from_millis(warmup_ms),
            target_ops_per_s: 0,
            seed: 1,
        }
    }

    fn workload() -> Workload {
        let mut w = Workload::load("workloadd").expect("d");
        w.recordcount = 500;
        w
    }

    async fn go(
        mem: &MemConn,
        w: &Workload,
        p: PhasePlan,
        inserts: Arc<InsertSequence>,
    ) -> PhaseOutcome {
        let conns = vec![Conn::Mem(mem.clone()), Conn::Mem(mem.clone())];
        run_phase(&conns, w, p, inserts, Arc::new(Progress::default()))
            .await
            .expect("phase")
    }

    #[tokio::test]
    async fn load_inserts_every_record_once_then_run_counts_exactly() {
        let mem = MemConn::default();
        let w = workload();
        let load = go(
            &mem,
            &w,
            plan(Phase::Load, Some(500), 0, None),
            Arc::new(InsertSequence::new(0)),
        )
        .await;
        assert_eq!(load.report.ops.len(), 1);
        assert_eq!(load.report.ops[0].latency.count, 500);
        {
            let m = mem.map.lock().expect("map");
            assert_eq!(m.len(), 500);
            assert!(m
                .values()
                .all(|(v, writes)| *writes == 1 && v.len() == 1000));
        }
        let inserts = Arc::new(InsertSequence::new(w.recordcount));
        let run = go(
            &mem,
            &w,
            plan(Phase::Run, Some(2000), 0, None),
            inserts.clone(),
        )
        .await;
        let count: u64 = run.report.ops.iter().map(|o| o.latency.count).sum();
        assert_eq!(count, 2000, "operationcount is exact");
        // Workload D: ~5% inserts, each a new record after the loaded ones.
        let inserted = mem.map.lock().expect("map").len() as u64 - 500;
        assert!((50..=150).contains(&inserted), "{inserted} inserts");
        assert_eq!(inserts.existing(), 500 + inserted);
    }

    #[tokio::test]
    async fn warm_up_operations_are_not_recorded() {
        let mem = MemConn::default();
        let w = workload();
        go(
            &mem,
            &w,
            plan(Phase::Load, Some(500), 0, None),
            Arc::new(InsertSequence::new(0)),
        )
        .await;
        let writes_before: u64 = mem.map.lock().expect("map").values().map(|v| v.1).sum();
        let run = go(
            &mem,
            &w,
            plan(Phase::Run, Some(100), 200, None),
            Arc::new(InsertSequence::new(500)),
        )
        .await;
        let count: u64 = run.report.ops.iter().map(|o| o.latency.count).sum();
        assert_eq!(count, 100);
        // Reads and inserts ran during the 200 ms warm-up too, unrecorded.
        let inserted: u64 = mem
            .map
            .lock()
            .expect("map")
            .values()
            .map(|v| v.1)
            .sum::<u64>()
            - writes_before;
        let recorded_inserts = run
            .report
            .ops
            .iter()
            .find(|o| o.op == "INSERT")
            .map_or(0, |o| o.latency.count);
        assert!(
            inserted > recorded_inserts,
            "warm-up inserts happened but were not recorded"
        );
    }

    #[tokio::test]
    async fn open_loop_holds_its_rate_and_reports_service_rows() {
        let mem = MemConn::default();
        let mut w = workload();
        w.target = 2000;
        let mut p = plan(Phase::Run, None, 0, Some(500));
        p.target_ops_per_s = 2000;
        let run = go(&mem, &w, p, Arc::new(InsertSequence::new(500))).await;
        let count: u64 = run
            .report
            .ops
            .iter()
            .filter(|o| !o.op.ends_with("-SERVICE"))
            .map(|o| o.latency.count)
            .sum();
        // 2,000 ops/s for 0.5 s.
        assert!((900..=1001).contains(&count), "{count} ops");
        assert!(run.report.ops.iter().any(|o| o.op == "READ-SERVICE"));
    }
}
