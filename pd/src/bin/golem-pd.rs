//! `golem-pd`: a PD member as its own binary (the same code as `golem pd`).

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "golem-pd", about = "GolemDB Placement Driver member")]
struct Cli {
    #[command(flatten)]
    args: golem_pd::cli::PdArgs,
}

fn main() -> std::process::ExitCode {
    golem_pd::cli::run(Cli::parse().args)
}
