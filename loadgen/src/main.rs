//! golem-loadgen: closed-loop put/get/mixed load against GolemDB, with
//! per-worker hdrhistograms merged into one report (text and JSON).
//!
//! It talks to GolemDB only through the client SDK (golem-client).

mod args;
mod report;
mod run;
mod target;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = args::Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("golem-loadgen: {e}");
        return ExitCode::from(2);
    }
    let target = match target::Target::resolve(args.addr, args.golem_bin.clone()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("golem-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let json_out = args.json_out.clone();
    let result = rt.block_on(run::run(target.addr, target.describe(), args));
    drop(target);
    match result {
        Ok(report) => {
            print!("{}", report.to_text());
            if let Some(path) = json_out {
                let json = serde_json::to_string_pretty(&report).expect("serializable report");
                if let Err(e) = std::fs::write(&path, json + "\n") {
                    eprintln!("golem-loadgen: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("golem-loadgen: {e}");
            ExitCode::from(2)
        }
    }
}
