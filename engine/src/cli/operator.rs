//! `golem ctl operator list|add|cancel` and `golem ctl store delete`: the
//! PD's scheduling operators from the command line.
//!
//! Owns these subcommands and their text and JSON output. They are plain
//! PD requests (`OperatorList`, `OperatorAdd`, `OperatorCancel`,
//! `DeleteStore`, docs/pd.md); the PD turns an added operator into steps
//! and hands them to the region's leader in heartbeat answers
//! (docs/scheduling.md). JSON shapes: an operator is `{id, region, source,
//! current, steps: [text], epoch: {conf_ver, version}, created_ms}`.

use super::ctl::Codec;
use clap::Subcommand;
use golem_pd::client::PdClient;
use golem_wire::pd::{AdminOperator, OperatorInfo, OperatorStep, PdRequestBody, PdResponseBody};
use golem_wire::{RegionId, StoreId};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// List the operators running on the PD leader.
    List,
    /// Add an operator for region ID (fails if it has one).
    Add {
        #[command(subcommand)]
        op: AddCommand,
    },
    /// Cancel region ID's operator (exit code 1 if it had none).
    Cancel {
        /// The region id.
        region: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AddCommand {
    /// Move the region's leadership to its voter on STORE.
    TransferLeader { region: u64, store: u64 },
    /// Add a replica on STORE (learner, then voter).
    AddPeer { region: u64, store: u64 },
    /// Remove the replica on STORE (leadership moves away first).
    RemovePeer { region: u64, store: u64 },
    /// Split the region at KEY.
    Split { region: u64, key: String },
    /// Merge the region into TARGET (adjacent, replicas aligned).
    Merge { region: u64, target: u64 },
}

/// One step as text.
fn step_text(c: &Codec, s: &OperatorStep) -> String {
    match s {
        OperatorStep::AddLearner { peer } => format!(
            "add learner {} on store {} shard {}",
            peer.id, peer.store, peer.shard
        ),
        OperatorStep::PromoteLearner { peer } => format!("promote learner {peer}"),
        OperatorStep::RemovePeer { peer } => format!("remove peer {peer}"),
        OperatorStep::TransferLeader { to } => format!("transfer leader to {to}"),
        OperatorStep::Split {
            key, new_region, ..
        } => format!("split at {} into region {new_region}", c.show(key)),
        OperatorStep::Merge { target } => format!("merge into region {target}"),
        OperatorStep::ReplacePeer { add, remove } => {
            format!("replace peer {remove} by {add} (one joint change)")
        }
    }
}

fn operator_json(c: &Codec, o: &OperatorInfo) -> Value {
    json!({
        "id": o.id,
        "region": o.region.0,
        "source": o.source,
        "current": o.current,
        "steps": o.steps.iter().map(|s| step_text(c, s)).collect::<Vec<_>>(),
        "epoch": { "conf_ver": o.epoch.conf_ver, "version": o.epoch.version },
        "created_ms": o.created_ms,
    })
}

fn operator_line(c: &Codec, o: &OperatorInfo) -> String {
    let steps: Vec<String> = o
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mark = if i as u32 == o.current { "*" } else { "" };
            format!("{mark}{}", step_text(c, s))
        })
        .collect();
    format!(
        "{}\tregion {}\t{}\t{}",
        o.id,
        o.region,
        o.source,
        steps.join(" → ")
    )
}

/// Runs an operator command.
pub async fn run_operator(
    pd: &PdClient,
    c: &Codec,
    json_out: bool,
    cmd: &OperatorCommand,
) -> Result<ExitCode, String> {
    let call = |body| async { pd.call(body).await.map_err(|e| e.to_string()) };
    match cmd {
        OperatorCommand::List => {
            let PdResponseBody::Operators { operators } = call(PdRequestBody::OperatorList).await?
            else {
                return Err("unexpected answer to OperatorList".into());
            };
            if json_out {
                let ops: Vec<Value> = operators.iter().map(|o| operator_json(c, o)).collect();
                println!("{}", json!({ "operators": ops }));
            } else {
                for o in &operators {
                    println!("{}", operator_line(c, o));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        OperatorCommand::Add { op } => {
            let (region, op) = match op {
                AddCommand::TransferLeader { region, store } => (
                    *region,
                    AdminOperator::TransferLeader {
                        store: StoreId(*store),
                    },
                ),
                AddCommand::AddPeer { region, store } => (
                    *region,
                    AdminOperator::AddPeer {
                        store: StoreId(*store),
                    },
                ),
                AddCommand::RemovePeer { region, store } => (
                    *region,
                    AdminOperator::RemovePeer {
                        store: StoreId(*store),
                    },
                ),
                AddCommand::Split { region, key } => {
                    (*region, AdminOperator::Split { key: c.parse(key)? })
                }
                AddCommand::Merge { region, target } => (
                    *region,
                    AdminOperator::Merge {
                        target: RegionId(*target),
                    },
                ),
            };
            let body = PdRequestBody::OperatorAdd {
                region: RegionId(region),
                op,
            };
            let PdResponseBody::OperatorAdded { operator } = call(body).await? else {
                return Err("unexpected answer to OperatorAdd".into());
            };
            if json_out {
                println!("{}", operator_json(c, &operator));
            } else {
                println!("{}", operator_line(c, &operator));
            }
            Ok(ExitCode::SUCCESS)
        }
        OperatorCommand::Cancel { region } => {
            let body = PdRequestBody::OperatorCancel {
                region: RegionId(*region),
            };
            let PdResponseBody::OperatorCancelled { cancelled } = call(body).await? else {
                return Err("unexpected answer to OperatorCancel".into());
            };
            if json_out {
                println!("{}", json!({ "cancelled": cancelled }));
            } else if cancelled {
                println!("OK");
            } else {
                eprintln!("(region {region} had no operator)");
            }
            Ok(if cancelled {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `golem ctl store delete ID`: the store goes Offline (its replicas move
/// elsewhere), then Tombstone.
pub async fn delete_store(pd: &PdClient, json_out: bool, store: u64) -> Result<ExitCode, String> {
    let body = PdRequestBody::DeleteStore {
        store: StoreId(store),
    };
    let PdResponseBody::StoreDeleted { state } = pd.call(body).await.map_err(|e| e.to_string())?
    else {
        return Err("unexpected answer to DeleteStore".into());
    };
    if json_out {
        println!(
            "{}",
            json!({ "store": store, "state": format!("{state:?}") })
        );
    } else {
        println!("store {store}: {state:?}");
    }
    Ok(ExitCode::SUCCESS)
}
