//! `golem-sim`: runs the deterministic simulator over a range of seeds.
//!
//! `cargo run -p golem-sim --release -- --seeds 1000 --from 0` runs seeds
//! 0..1000; `--seed S` runs one seed (what a failure's replay command
//! says). Every other flag is a `SimConfig` knob (`--help`). Seeds run on
//! `--jobs` threads (each run is single-threaded and independent, so the
//! result of a seed never depends on the thread count). Exits 1 if any
//! seed failed, after printing each failure with its replay command.

use clap::Parser;
use golem_sim::{run, SimArgs, SimConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "GolemDB deterministic simulator")]
struct Cli {
    /// Run only this seed (overrides --seeds/--from).
    #[arg(long)]
    seed: Option<u64>,
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Threads (default: available cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print one line per seed.
    #[arg(long, short)]
    verbose: bool,
    #[command(flatten)]
    sim: SimArgs,
}

fn main() {
    let cli = Cli::parse();
    let cfg: SimConfig = cli.sim.into();
    if cfg.trace {
        // golem-core's and raft-rs's logs (RUST_LOG, default debug),
        // interleaved with the simulator's trace on stderr. No timestamps:
        // the trace's times are virtual.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .with_target(false)
            .init();
    }
    let (from, count) = match cli.seed {
        Some(s) => (s, 1),
        None => (cli.from, cli.seeds),
    };
    let jobs = cli
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let next = AtomicU64::new(from);
    let failures = Mutex::new(Vec::new());
    let events = AtomicU64::new(0);
    let (changes, installs, removals) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= from + count {
                    break;
                }
                let t = Instant::now();
                match run(seed, &cfg) {
                    Ok(r) => {
                        events.fetch_add(r.events, Ordering::Relaxed);
                        changes.fetch_add(r.changes_ok, Ordering::Relaxed);
                        installs.fetch_add(r.snapshots_installed, Ordering::Relaxed);
                        removals.fetch_add(r.replicas_removed, Ordering::Relaxed);
                        if cli.verbose || count == 1 {
                            println!(
                                "seed {seed} ok in {:.2?}: {} events, {} virtual ms, ops ok/unknown/refused {}/{}/{}, {} crashes ({} aimed), {} partitions, {} elections, {} checkpoints, {} fetches, {} membership changes ({} conf_vers), snapshots sent/installed {}/{}, {} replicas removed ({} removal notices used), digest {:016x}",
                                t.elapsed(),
                                r.events,
                                r.virtual_ms,
                                r.ops_ok,
                                r.ops_unknown,
                                r.ops_refused,
                                r.crashes,
                                r.targeted_crashes,
                                r.partitions,
                                r.elections,
                                r.checkpoints,
                                r.fetches,
                                r.changes_ok,
                                r.conf_vers,
                                r.snapshots_sent,
                                r.snapshots_installed,
                                r.replicas_removed,
                                r.removal_notices_used,
                                r.digest
                            );
                            if r.regions > 1 || !r.pd_operators_ended.is_empty() {
                                println!(
                                    "seed {seed}: {} regions ({} split replicas created), replicas per node {:?}, leaders per node {:?}, split latencies ms {:?}, repair ms {:?}, PD operators ended {:?}",
                                    r.regions,
                                    r.split_replicas_created,
                                    r.replicas_per_node,
                                    r.leaders_per_node,
                                    r.split_latencies_ms,
                                    r.repair_ms,
                                    r.pd_operators_ended
                                );
                            }
                            if r.keys_inconclusive > 0 {
                                println!("seed {seed}: {} keys inconclusive", r.keys_inconclusive);
                            }
                        }
                    }
                    Err(f) => {
                        eprintln!("{f}\n");
                        failures.lock().expect("not poisoned").push(seed);
                    }
                }
            });
        }
    });
    let failed = failures.into_inner().expect("not poisoned");
    println!(
        "{} seeds from {from} in {:.1?} ({} events; passing seeds: {} membership changes, {} snapshots installed, {} replicas removed): {} passed, {} failed",
        count,
        started.elapsed(),
        events.load(Ordering::Relaxed),
        changes.load(Ordering::Relaxed),
        installs.load(Ordering::Relaxed),
        removals.load(Ordering::Relaxed),
        count - failed.len() as u64,
        failed.len()
    );
    if !failed.is_empty() {
        let mut failed = failed;
        failed.sort_unstable();
        println!("failing seeds: {failed:?}");
        std::process::exit(1);
    }
}
