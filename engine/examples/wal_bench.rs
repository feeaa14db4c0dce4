//! WAL write benchmark: appends/s and MB/s of the shard write-ahead log
//! (`golem_engine::wal::Wal`) with group commit versus one fdatasync per
//! write.
//!
//! Every case opens a fresh WAL in its own directory under `--dir` (default
//! `/var/tmp`; the real disk, never tmpfs — the filesystem is printed), on
//! one glommio executor started like a node's shard
//! (`golem_engine::runtime::spawn_shard`, unpinned, 2 MiB of I/O memory),
//! writes one warm-up batch (which creates the first segment), measures for
//! `--duration-s`, then closes the WAL and deletes the directory. For each
//! record payload size (`--sizes`, default 128 B, 1 KiB and 16 KiB):
//!
//! - `fsync/write`: one task appends one record and calls `sync()` (one
//!   O_DIRECT write + one fdatasync), repeated: the floor, one record per
//!   fdatasync.
//! - `group N`: N writer tasks (`--writers`, default 1, 8, 64, 256) each
//!   queue one record, wake the syncer and wait for the sync that covers it,
//!   repeated; ONE syncer loop, as the shard raft loop
//!   (engine/src/shard/raft_loop.rs) does, appends every queued record to
//!   the WAL and calls `sync()` whenever records are pending. Records queued
//!   during a sync ride on the next one.
//! - the same with `dsync_writes: true` (segments opened `O_DSYNC`: the
//!   write itself is durable, no separate fdatasync), for `fsync/write` and
//!   for `group N` with N in `--dsync-writers` (default 64).
//!
//! Reported per case: appends/s, payload MB/s (10^6 B/s of record
//! payloads), written MB/s (the batches as written: records with their
//! headers, padded to the 4 KiB write alignment; segment headers left out),
//! syncs/s, records per sync, and per-append latency p50/p99/p99.9/max (from
//! queueing the record to the wake-up after its sync; percentiles from the
//! sorted samples), and the ratio of appends/s to `fsync/write` (fdatasync)
//! of the same size in the same round. With `--rounds R` the whole list of
//! cases runs R times, interleaved (so load from other processes hits all
//! cases alike), and the table shows medians over the rounds. A text table
//! goes to stdout, progress to stderr, and JSON (every round's figures and
//! the medians) to `--json-out`.
//!
//! ```sh
//! cargo run --release -p golem-engine --example wal_bench -- \
//!     --duration-s 5 --rounds 1 --json-out wal.json
//! ```

use clap::Parser;
use golem_core::wal_record::{padded_len, RecordKind};
use golem_engine::runtime::{self, LocalNotify, Pinning};
use golem_engine::wal::{Wal, WalOptions};
use golem_wire::RegionId;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Write alignment of every case (the WAL's default).
const WRITE_ALIGNMENT_BYTES: u64 = 4096;
/// I/O memory of the executor: the node's default (`io_memory_mib = 2`).
const IO_MEMORY_BYTES: usize = 2 << 20;

#[derive(Parser, Debug)]
#[command(about = "WAL appends/s and MB/s: group commit versus one fdatasync per write")]
struct Args {
    /// Parent directory of the WAL directories (a temporary directory is
    /// created in it and removed at the end). Must be on the disk under
    /// test, not tmpfs.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Measured seconds per case and round.
    #[arg(long, default_value_t = 5.0)]
    duration_s: f64,
    /// Record payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "128,1024,16384")]
    sizes: Vec<usize>,
    /// Writer counts of the group-commit cases (fdatasync).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    writers: Vec<usize>,
    /// Writer counts of the group-commit cases with O_DSYNC writes.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    dsync_writers: Vec<usize>,
    /// Times the whole list of cases runs, interleaved; the table shows
    /// medians over the rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Segment file size in MiB (the WAL's default is 64).
    #[arg(long, default_value_t = 64)]
    segment_mib: u64,
    /// Writes the JSON report here.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One task: append one record, sync, repeat.
    PerWrite,
    /// N writer tasks and one syncer loop.
    Group { writers: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Case {
    payload_bytes: usize,
    mode: Mode,
    dsync: bool,
}

impl Case {
    fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::PerWrite => "fsync_per_write",
            Mode::Group { .. } => "group_commit",
        }
    }

    fn label(&self) -> String {
        match self.mode {
            Mode::PerWrite => "fsync/write".to_string(),
            Mode::Group { writers } => format!("group {writers}"),
        }
    }

    fn writers(&self) -> usize {
        match self.mode {
            Mode::PerWrite => 1,
            Mode::Group { writers } => writers,
        }
    }

    fn sync_name(&self) -> &'static str {
        if self.dsync {
            "o_dsync"
        } else {
            "fdatasync"
        }
    }
}

/// Raw figures of one case in one round.
#[derive(Debug)]
struct Measured {
    appends: u64,
    syncs: u64,
    elapsed: Duration,
    /// Bytes of the batches as written (padded to the write alignment).
    written_bytes: u64,
    /// Segment files at the end (including the first one).
    segments: usize,
    /// Per-append latencies in nanoseconds, sorted.
    latencies_ns: Vec<u64>,
}

/// Derived figures of one case in one round.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    appends_per_s: f64,
    payload_mb_per_s: f64,
    written_mb_per_s: f64,
    syncs_per_s: f64,
    records_per_sync: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// appends/s ÷ appends/s of fsync-per-write (fdatasync), same size and
    /// round.
    ratio_vs_fsync_per_write: f64,
}

impl Stats {
    fn of(m: &Measured, payload_bytes: usize) -> Stats {
        let secs = m.elapsed.as_secs_f64();
        Stats {
            appends_per_s: m.appends as f64 / secs,
            payload_mb_per_s: (m.appends * payload_bytes as u64) as f64 / secs / 1e6,
            written_mb_per_s: m.written_bytes as f64 / secs / 1e6,
            syncs_per_s: m.syncs as f64 / secs,
            records_per_sync: m.appends as f64 / m.syncs.max(1) as f64,
            p50_us: percentile_us(&m.latencies_ns, 0.50),
            p99_us: percentile_us(&m.latencies_ns, 0.99),
            p999_us: percentile_us(&m.latencies_ns, 0.999),
            max_us: m.latencies_ns.last().copied().unwrap_or(0) as f64 / 1e3,
            ratio_vs_fsync_per_write: f64::NAN,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "appends_per_s": self.appends_per_s,
            "payload_mb_per_s": self.payload_mb_per_s,
            "written_mb_per_s": self.written_mb_per_s,
            "syncs_per_s": self.syncs_per_s,
            "records_per_sync": self.records_per_sync,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "max_us": self.max_us,
            "ratio_vs_fsync_per_write": self.ratio_vs_fsync_per_write,
        })
    }

    /// The median of every field over `rounds`.
    fn median(rounds: &[Stats]) -> Stats {
        let med = |f: fn(&Stats) -> f64| median(rounds.iter().map(f).collect());
        Stats {
            appends_per_s: med(|s| s.appends_per_s),
            payload_mb_per_s: med(|s| s.payload_mb_per_s),
            written_mb_per_s: med(|s| s.written_mb_per_s),
            syncs_per_s: med(|s| s.syncs_per_s),
            records_per_sync: med(|s| s.records_per_sync),
            p50_us: med(|s| s.p50_us),
            p99_us: med(|s| s.p99_us),
            p999_us: med(|s| s.p999_us),
            max_us: med(|s| s.max_us),
            ratio_vs_fsync_per_write: med(|s| s.ratio_vs_fsync_per_write),
        }
    }
}

/// Nearest-rank percentile of sorted nanosecond samples, in µs.
fn percentile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_ns.len() as f64).ceil() as usize;
    sorted_ns[rank.clamp(1, sorted_ns.len()) - 1] as f64 / 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The batch about to be synced as it will be written: padded to the
/// write alignment.
fn batch_bytes(wal: &Wal) -> u64 {
    padded_len(wal.pending_bytes(), WRITE_ALIGNMENT_BYTES as usize) as u64
}

/// A payload of `len` pseudo-random bytes (xorshift; content is irrelevant
/// to O_DIRECT writes, but avoid all-zero pages anyway).
fn payload(len: usize, seed: u64) -> Rc<[u8]> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// (a) One task: append one record, sync, repeat until `deadline`.
async fn run_per_write(wal: &mut Wal, payload_bytes: usize, dur: Duration) -> Measured {
    let payload = payload(payload_bytes, 1);
    let mut latencies_ns = Vec::with_capacity(1 << 16);
    let mut written_bytes = 0u64;
    let start = Instant::now();
    let deadline = start + dur;
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        wal.append(RecordKind::Entries, RegionId(1), &payload);
        written_bytes += batch_bytes(wal);
        wal.sync().await;
        latencies_ns.push(nanos(t0.elapsed()));
    }
    let elapsed = start.elapsed();
    let appends = latencies_ns.len() as u64;
    Measured {
        appends,
        syncs: appends,
        elapsed,
        written_bytes,
        segments: 0,
        latencies_ns,
    }
}

/// State shared by the writers and the syncer of one group-commit case.
struct Group {
    /// Records waiting for the next sync: (writer, payload).
    queue: RefCell<Vec<(u64, Rc<[u8]>)>>,
    /// Number of the sync the queued records will be in.
    next_sync: Cell<u64>,
    /// Every sync up to this number is durable.
    durable: Cell<u64>,
    /// Writers waiting for `durable` to advance.
    waiters: RefCell<Vec<Waker>>,
    /// Writers still running.
    live: Cell<usize>,
    /// Wakes the syncer (a record was queued, or a writer finished).
    kick: Rc<LocalNotify>,
}

impl Group {
    /// Waits until sync number `n` is durable.
    async fn wait_durable(&self, n: u64) {
        std::future::poll_fn(|cx| {
            if self.durable.get() >= n {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    fn set_durable(&self, n: u64) {
        self.durable.set(n);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// One writer: queue a record, wake the syncer, wait for the sync that
/// covers it; repeat until `deadline`. Returns its latencies.
async fn writer(g: Rc<Group>, id: u64, payload: Rc<[u8]>, deadline: Instant) -> Vec<u64> {
    let mut latencies_ns = Vec::with_capacity(1 << 12);
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        g.queue.borrow_mut().push((id, payload.clone()));
        let n = g.next_sync.get();
        g.kick.notify();
        g.wait_durable(n).await;
        latencies_ns.push(nanos(t0.elapsed()));
    }
    g.live.set(g.live.get() - 1);
    g.kick.notify();
    latencies_ns
}

/// (b) `writers` writer tasks and one syncer loop (this task) that appends
/// every queued record and syncs whenever records are pending.
async fn run_group(wal: &mut Wal, payload_bytes: usize, writers: usize, dur: Duration) -> Measured {
    let g = Rc::new(Group {
        queue: RefCell::new(Vec::with_capacity(writers)),
        next_sync: Cell::new(1),
        durable: Cell::new(0),
        waiters: RefCell::new(Vec::with_capacity(writers)),
        live: Cell::new(writers),
        kick: LocalNotify::new(),
    });
    let start = Instant::now();
    let deadline = start + dur;
    let tasks: Vec<_> = (0..writers as u64)
        .map(|id| {
            runtime::spawn_local(writer(
                g.clone(),
                id,
                payload(payload_bytes, id + 1),
                deadline,
            ))
        })
        .collect();
    let mut syncs = 0u64;
    let mut written_bytes = 0u64;
    let mut batch = Vec::with_capacity(writers);
    loop {
        if g.queue.borrow().is_empty() {
            if g.live.get() == 0 {
                break;
            }
            g.kick.wait().await;
            continue;
        }
        let n = g.next_sync.get();
        g.next_sync.set(n + 1);
        std::mem::swap(&mut batch, &mut *g.queue.borrow_mut());
        for (id, p) in batch.drain(..) {
            wal.append(RecordKind::Entries, RegionId(id + 1), &p);
        }
        written_bytes += batch_bytes(wal);
        wal.sync().await;
        syncs += 1;
        g.set_durable(n);
    }
    let elapsed = start.elapsed();
    let mut latencies_ns = Vec::new();
    for t in tasks {
        latencies_ns.extend(t.await);
    }
    Measured {
        appends: latencies_ns.len() as u64,
        syncs,
        elapsed,
        written_bytes,
        segments: 0,
        latencies_ns,
    }
}

/// Runs one case in a fresh WAL directory `dir`, removed afterwards.
async fn run_case(dir: &Path, case: Case, dur: Duration, segment_bytes: u64) -> Measured {
    let opts = WalOptions {
        segment_bytes,
        write_alignment_bytes: WRITE_ALIGNMENT_BYTES,
        dsync_writes: case.dsync,
    };
    let (mut wal, recovered) = Wal::open(dir, opts).await.expect("open WAL");
    assert!(recovered.is_empty(), "{} is not empty", dir.display());
    // Warm-up: creates the first segment outside the measurement.
    wal.append(
        RecordKind::Entries,
        RegionId(1),
        &payload(case.payload_bytes, 0),
    );
    wal.sync().await;
    let mut m = match case.mode {
        Mode::PerWrite => run_per_write(&mut wal, case.payload_bytes, dur).await,
        Mode::Group { writers } => run_group(&mut wal, case.payload_bytes, writers, dur).await,
    };
    wal.close().await;
    m.segments = std::fs::read_dir(dir)
        .expect("list WAL directory")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        })
        .count();
    std::fs::remove_dir_all(dir).expect("remove WAL directory");
    m.latencies_ns.sort_unstable();
    m
}

/// The cases of one round, in run order.
fn cases(args: &Args) -> Vec<Case> {
    let mut out = Vec::new();
    for &payload_bytes in &args.sizes {
        let case = |mode, dsync| Case {
            payload_bytes,
            mode,
            dsync,
        };
        out.push(case(Mode::PerWrite, false));
        out.extend(
            args.writers
                .iter()
                .map(|&w| case(Mode::Group { writers: w }, false)),
        );
        out.push(case(Mode::PerWrite, true));
        out.extend(
            args.dsync_writers
                .iter()
                .map(|&w| case(Mode::Group { writers: w }, true)),
        );
    }
    out
}

/// The type of the filesystem `path` is on, from /proc/self/mounts (the
/// longest mount point that is a prefix of it).
fn filesystem_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "unknown".to_string();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "unknown".to_string();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            let mnt = mnt.replace("\\040", " ");
            path.starts_with(&mnt)
                .then(|| (mnt.len(), format!("{fstype} ({dev} on {mnt})")))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, s)| s)
        .unwrap_or_else(|| "unknown".to_string())
}

fn fmt_size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn print_table(cases: &[Case], medians: &[Stats]) {
    println!(
        "{:>8}  {:<12} {:<9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "payload",
        "case",
        "sync",
        "appends/s",
        "MB/s",
        "wr MB/s",
        "syncs/s",
        "rec/sync",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "×floor"
    );
    for (c, s) in cases.iter().zip(medians) {
        println!(
            "{:>8}  {:<12} {:<9} {:>11.0} {:>9.1} {:>9.1} {:>9.0} {:>9.1} {:>9.0} {:>9.0} {:>9.0} {:>9.2}",
            fmt_size(c.payload_bytes),
            c.label(),
            c.sync_name(),
            s.appends_per_s,
            s.payload_mb_per_s,
            s.written_mb_per_s,
            s.syncs_per_s,
            s.records_per_sync,
            s.p50_us,
            s.p99_us,
            s.p999_us,
            s.ratio_vs_fsync_per_write
        );
    }
}

fn main() {
    let args = Args::parse();
    assert!(args.rounds >= 1, "--rounds must be at least 1");
    assert!(
        args.duration_s > 0.0 && args.duration_s.is_finite(),
        "--duration-s must be positive"
    );
    let cases = cases(&args);
    let base = tempfile::Builder::new()
        .prefix("golem-wal-bench-")
        .tempdir_in(&args.dir)
        .expect("create a temporary directory under --dir");
    let fs = filesystem_of(base.path());
    if fs.starts_with("tmpfs") || fs.starts_with("ramfs") {
        eprintln!(
            "warning: {} is on {fs}: fdatasync costs nothing there",
            base.path().display()
        );
    }
    let dur = Duration::from_secs_f64(args.duration_s);
    let segment_bytes = args.segment_mib << 20;
    println!(
        "# WAL bench: {} cases × {} round(s), {} s each, segments {} MiB, write alignment {} B",
        cases.len(),
        args.rounds,
        args.duration_s,
        args.segment_mib,
        WRITE_ALIGNMENT_BYTES
    );
    println!("# dir {} on {fs}", base.path().display());

    let (tx, rx) = std::sync::mpsc::channel();
    let base_path = base.path().to_path_buf();
    let run_cases = cases.clone();
    let rounds = args.rounds;
    let handle = runtime::spawn_shard(0, Pinning::Unpinned, IO_MEMORY_BYTES, move || async move {
        let total = run_cases.len() * rounds;
        for r in 0..rounds {
            for (i, &case) in run_cases.iter().enumerate() {
                let done = r * run_cases.len() + i + 1;
                let dir = base_path.join(format!("r{r}-c{i:02}"));
                let m = run_case(&dir, case, dur, segment_bytes).await;
                eprintln!(
                    "[{done}/{total}] round {} {} {} {}: {:.0} appends/s, {:.1} rec/sync, {} segment(s)",
                    r + 1,
                    fmt_size(case.payload_bytes),
                    case.label(),
                    case.sync_name(),
                    m.appends as f64 / m.elapsed.as_secs_f64(),
                    m.appends as f64 / m.syncs.max(1) as f64,
                    m.segments
                );
                tx.send((r, i, m)).expect("main thread gone");
            }
        }
    })
    .expect("start the glommio executor");
    handle.join().expect("benchmark executor panicked");

    // per_round[r][i]: case i in round r.
    let mut per_round: Vec<Vec<Option<(Stats, Measured)>>> = (0..rounds)
        .map(|_| (0..cases.len()).map(|_| None).collect())
        .collect();
    for (r, i, m) in rx.try_iter() {
        per_round[r][i] = Some((Stats::of(&m, cases[i].payload_bytes), m));
    }
    for row in &mut per_round {
        for i in 0..cases.len() {
            let floor = cases
                .iter()
                .position(|c| {
                    c.payload_bytes == cases[i].payload_bytes
                        && c.mode == Mode::PerWrite
                        && !c.dsync
                })
                .and_then(|f| row[f].as_ref().map(|(s, _)| s.appends_per_s));
            if let (Some(floor), Some((s, _))) = (floor, row[i].as_mut()) {
                s.ratio_vs_fsync_per_write = s.appends_per_s / floor;
            }
        }
    }
    let stats_of = |i: usize| -> Vec<Stats> {
        per_round
            .iter()
            .map(|row| row[i].as_ref().expect("every case ran").0)
            .collect()
    };
    let medians: Vec<Stats> = (0..cases.len())
        .map(|i| Stats::median(&stats_of(i)))
        .collect();
    print_table(&cases, &medians);

    if let Some(path) = &args.json_out {
        let cases_json: Vec<Value> = cases
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let rounds: Vec<Value> = per_round
                    .iter()
                    .map(|row| {
                        let (s, m) = row[i].as_ref().expect("every case ran");
                        let mut v = s.to_json();
                        v["appends"] = json!(m.appends);
                        v["syncs"] = json!(m.syncs);
                        v["elapsed_s"] = json!(m.elapsed.as_secs_f64());
                        v["written_bytes"] = json!(m.written_bytes);
                        v["segments"] = json!(m.segments);
                        v
                    })
                    .collect();
                json!({
                    "payload_bytes": c.payload_bytes,
                    "mode": c.mode_name(),
                    "sync": c.sync_name(),
                    "writers": c.writers(),
                    "median": medians[i].to_json(),
                    "rounds": rounds,
                })
            })
            .collect();
        let report = json!({
            "dir": args.dir,
            "filesystem": fs,
            "duration_s": args.duration_s,
            "rounds": args.rounds,
            "segment_bytes": segment_bytes,
            "write_alignment_bytes": WRITE_ALIGNMENT_BYTES,
            "io_memory_bytes": IO_MEMORY_BYTES,
            "mb": "10^6 bytes",
            "latency": "from queueing the record to the wake-up after the sync that covers it",
            "ratio_vs_fsync_per_write": "appends/s over fsync_per_write with fdatasync, same payload size, same round",
            "cases": cases_json,
        });
        let text = serde_json::to_string_pretty(&report).expect("serialize JSON");
        std::fs::write(path, text + "\n").expect("write --json-out");
    }
}
