//! The `golem` command line: `node`, `pd`, `playground`, `ctl`.
//!
//! Owns argument parsing and the mapping of each subcommand to the code that
//! runs it. Invariant: every flag has help text; exit codes are 0 (success),
//! 1 (not found / condition false, for `ctl`), 2 (usage or runtime error).

pub mod admin;
pub mod ctl;
pub mod membership;
pub mod merge;
pub mod operator;
pub mod playground;
pub mod split;

use crate::config::{NodeConfig, NodeSettings};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// GolemDB: a distributed, range-sharded, multi-Raft key-value database.
#[derive(Debug, Parser)]
#[command(name = "golem", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a storage node (one shard per core, each on base port + shard).
    Node(NodeArgs),
    /// Run a Placement Driver member (1 or 3 per cluster; Raft-replicated).
    Pd(golem_pd::cli::PdArgs),
    /// Run a whole local cluster in the foreground; Ctrl-C stops it.
    Playground(playground::PlaygroundArgs),
    /// Data and admin commands against a running cluster.
    Ctl(ctl::CtlArgs),
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// A TOML file of node settings (flags override it; unknown keys are errors).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: NodeSettings,
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => {
            init_logging();
            match run_node(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("golem node: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Pd(args) => {
            init_logging();
            golem_pd::cli::run(args)
        }
        Command::Playground(args) => {
            init_logging();
            playground::run(args)
        }
        Command::Ctl(args) => ctl::run(args),
    }
}

fn run_node(args: NodeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let file = match &args.config {
        Some(path) => NodeSettings::from_file(path)?,
        None => NodeSettings::default(),
    };
    let cfg = NodeConfig::resolve(args.settings.or(file))?;
    crate::node::run(cfg)?;
    Ok(())
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
