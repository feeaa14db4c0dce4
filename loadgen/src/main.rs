//! golem-loadgen: YCSB-style workloads (load and run phases, workloads A–F,
//! uniform/zipfian/latest) and raw put/get/mixed modes, closed or open loop,
//! against GolemDB (through the client SDK only), etcd or redis; per-worker
//! hdrhistograms merged into a go-ycsb table, JSON, `.hgrm` files and an SVG
//! plot.
//!
//! Module map: `args` (flags) → `workload` (properties) → `run` (phases)
//! → `driver` (workers; `schedule` paces the open loop, `dist` and
//! `keyspace` choose keys and operations, `backend` sends) → `report`,
//! `hgrm`, `plot` (outputs); `target` starts a playground when needed.

mod args;
mod backend;
mod dist;
mod driver;
mod error;
mod hgrm;
mod keyspace;
mod plot;
mod progress;
mod report;
mod run;
mod schedule;
mod target;
mod workload;

use clap::Parser;
use error::LoadgenError;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = args::Args::parse();
    match real_main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("golem-loadgen: {e}");
            ExitCode::from(match e {
                LoadgenError::Args(_)
                | LoadgenError::Workload { .. }
                | LoadgenError::WorkloadFile { .. } => 2,
                _ => 1,
            })
        }
    }
}

fn real_main(args: &args::Args) -> Result<(), LoadgenError> {
    args.validate()?;
    args.workload()?;
    let (endpoints, target_desc, target) = run::resolve(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .map_err(|e| LoadgenError::Worker(format!("tokio runtime: {e}")))?;
    // Ctrl-C ends the run early but still stops a playground we started.
    let result = rt.block_on(async {
        tokio::select! {
            r = run::run(args, endpoints, target_desc) => r,
            _ = tokio::signal::ctrl_c() => Err(LoadgenError::Interrupted),
        }
    });
    drop(rt);
    drop(target);
    let finished = result?;
    print!("{}", finished.report.to_text());
    write_outputs(args, &finished)?;
    run::check_failures(&finished)
}

fn write_outputs(args: &args::Args, f: &run::Finished) -> Result<(), LoadgenError> {
    let fail = |path: &std::path::Path, reason: String| LoadgenError::Output {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(path) = &args.json_out {
        let json =
            serde_json::to_string_pretty(&f.report).map_err(|e| fail(path, e.to_string()))?;
        std::fs::write(path, json + "\n").map_err(|e| fail(path, e.to_string()))?;
    }
    if let Some(dir) = &args.hgrm_dir {
        std::fs::create_dir_all(dir).map_err(|e| fail(dir, e.to_string()))?;
        for p in &f.phases {
            for (name, h) in &p.histograms {
                let path = dir.join(format!("{}-{name}.hgrm", p.report.phase));
                std::fs::write(&path, hgrm::percentile_distribution(h))
                    .map_err(|e| fail(&path, e.to_string()))?;
            }
        }
    }
    if let Some(path) = &args.svg_out {
        if let Some(p) = f.phases.last() {
            let title = format!(
                "{} {} ({}) — {} phase, latency by percentile",
                f.report.backend, f.report.workload.name, f.report.driver, p.report.phase
            );
            plot::write_svg(path, &title, &p.histograms).map_err(|e| fail(path, e))?;
        }
    }
    Ok(())
}
