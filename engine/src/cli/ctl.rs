//! `golem ctl`: data and admin commands against a running cluster.
//!
//! Owns parsing the subcommands and printing their results as text or
//! JSON. Data commands (`get`, `put`, …) are a plain client of the SDK
//! (golem-client) through `--addr`; admin commands (`member`, `store`,
//! `region`) ask the Placement Driver at `--pd` (`admin.rs`). Exit codes:
//! 0 success, 1 "not found" (get, region key, store get) or "not swapped"
//! (cas), 2 an error.

use clap::{Args, Subcommand};
use golem_client::{Client, ClientConfig};
use serde_json::json;
use std::net::SocketAddr;
use std::process::ExitCode;

/// The address a default `golem playground` listens on.
pub const DEFAULT_ADDR: &str = crate::config::DEFAULT_LISTEN;
/// The address a default `golem pd` (and playground PD) listens on.
pub const DEFAULT_PD: &str = "127.0.0.1:7300";

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Address of any shard of a node (IP:port).
    #[arg(long, global = true, default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    /// PD members (ip:port,…) for admin commands [default: 127.0.0.1:7300];
    /// given to a data command, it routes through the PD instead of --addr.
    #[arg(long, global = true, value_delimiter = ',')]
    pub pd: Option<Vec<SocketAddr>>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Keys and values are hex on the command line and in the output.
    #[arg(long, global = true)]
    pub hex: bool,
    /// Give up after this long, in milliseconds.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub timeout_ms: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Print the value of a key (exit code 1 if absent).
    Get {
        /// The key.
        key: String,
    },
    /// Set a key to a value.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key (succeeds whether or not it existed).
    Delete {
        /// The key.
        key: String,
    },
    /// List pairs in key order within [start, end).
    Scan {
        /// First key (inclusive); default: the start of the key space.
        #[arg(long, default_value = "")]
        start: String,
        /// End key (exclusive); default: the end of the key space.
        #[arg(long, default_value = "")]
        end: String,
        /// Most pairs to print.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Descending order.
        #[arg(long)]
        reverse: bool,
    },
    /// Compare-and-swap: write only if the current value is as expected
    /// (exit code 1 if it was not).
    Cas {
        /// The key.
        key: String,
        /// The value the key must have now.
        #[arg(long, conflicts_with = "expect_absent")]
        expect: Option<String>,
        /// The key must be absent now.
        #[arg(long)]
        expect_absent: bool,
        /// The value to write.
        #[arg(long, conflicts_with = "delete")]
        new: Option<String>,
        /// Delete the key instead of writing a value.
        #[arg(long)]
        delete: bool,
    },
    /// Move the leadership of the region holding KEY to its replica on
    /// STORE (admin; waits until that replica leads).
    TransferLeader {
        /// Any key of the region.
        key: String,
        /// The store (node) whose replica should lead.
        store: u64,
    },
    /// PD members (admin; asks the PD at --pd).
    #[command(subcommand)]
    Member(super::admin::MemberCommand),
    /// Stores (nodes) as the PD knows them.
    #[command(subcommand)]
    Store(super::admin::StoreCommand),
    /// Regions as the PD knows them (range, epoch, peers, leader).
    #[command(subcommand)]
    Region(super::admin::RegionCommand),
    /// The PD's scheduling operators (admin).
    #[command(subcommand)]
    Operator(super::operator::OperatorCommand),
}

/// Runs a ctl command.
pub fn run(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("golem ctl: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run_async(&args)) {
        Ok(code) => code,
        Err(e) => {
            if args.json {
                println!("{}", json!({ "error": e }));
            } else {
                eprintln!("golem ctl: {e}");
            }
            ExitCode::from(2)
        }
    }
}

/// Keys and values on the command line and in the output: text or hex.
pub struct Codec {
    pub hex: bool,
}

impl Codec {
    /// A command-line key or value as bytes.
    pub fn parse(&self, s: &str) -> Result<Vec<u8>, String> {
        if !self.hex {
            return Ok(s.as_bytes().to_vec());
        }
        if !s.len().is_multiple_of(2) {
            return Err(format!("{s:?} is not hex (odd length)"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("{s:?} is not hex")))
            .collect()
    }

    /// Bytes as printed.
    pub fn show(&self, b: &[u8]) -> String {
        if self.hex {
            b.iter().map(|x| format!("{x:02x}")).collect()
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    }
}

async fn run_async(args: &CtlArgs) -> Result<ExitCode, String> {
    let c = Codec { hex: args.hex };
    if let Some(code) = super::admin::run(args, &c).await? {
        return Ok(code);
    }
    let mut cfg = match &args.pd {
        Some(pd) => ClientConfig::with_pd(pd.clone()),
        None => ClientConfig::new(vec![args.addr]),
    };
    cfg.client_name = "golem-ctl".into();
    cfg.request_timeout_ms = args.timeout_ms;
    cfg.connect_timeout_ms = args.timeout_ms;
    let client = Client::connect(cfg).await.map_err(|e| match &args.pd {
        Some(_) => format!("cannot reach the cluster through the PD: {e}"),
        None => format!("cannot connect to {}: {e}", args.addr),
    })?;
    let err = |e: golem_client::ClientError| e.to_string();
    match &args.command {
        CtlCommand::Get { key } => {
            let k = c.parse(key)?;
            let v = client.get(k).await.map_err(err)?;
            if args.json {
                println!(
                    "{}",
                    json!({ "key": key, "found": v.is_some(), "value": v.as_deref().map(|v| c.show(v)) })
                );
            } else if let Some(v) = &v {
                println!("{}", c.show(v));
            } else {
                eprintln!("(not found)");
            }
            Ok(if v.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        CtlCommand::Put { key, value } => {
            client
                .put(c.parse(key)?, c.parse(value)?)
                .await
                .map_err(err)?;
            print_ok(args.json);
            Ok(ExitCode::SUCCESS)
        }
        CtlCommand::Delete { key } => {
            client.delete(c.parse(key)?).await.map_err(err)?;
            print_ok(args.json);
            Ok(ExitCode::SUCCESS)
        }
        CtlCommand::Scan {
            start,
            end,
            limit,
            reverse,
        } => {
            let r = client
                .scan(c.parse(start)?, c.parse(end)?, *limit, *reverse)
                .await
                .map_err(err)?;
            if args.json {
                let pairs: Vec<_> = r
                    .pairs
                    .iter()
                    .map(|p| json!({ "key": c.show(&p.key), "value": c.show(&p.value) }))
                    .collect();
                println!("{}", json!({ "pairs": pairs, "more": r.more }));
            } else {
                for p in &r.pairs {
                    println!("{}\t{}", c.show(&p.key), c.show(&p.value));
                }
                if r.more {
                    eprintln!("(more pairs follow; raise --limit or scan from the last key)");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CtlCommand::Cas {
            key,
            expect,
            expect_absent,
            new,
            delete,
        } => {
            if expect.is_none() && !expect_absent {
                return Err("cas needs --expect VALUE or --expect-absent".into());
            }
            if new.is_none() && !delete {
                return Err("cas needs --new VALUE or --delete".into());
            }
            let expected = expect.as_deref().map(|v| c.parse(v)).transpose()?;
            let new_value = new.as_deref().map(|v| c.parse(v)).transpose()?;
            let r = client
                .compare_and_swap(c.parse(key)?, expected.as_deref(), new_value.as_deref())
                .await
                .map_err(err)?;
            let previous = r.previous.as_deref().map(|v| c.show(v));
            if args.json {
                println!("{}", json!({ "swapped": r.swapped, "previous": previous }));
            } else if r.swapped {
                println!("OK");
            } else {
                println!(
                    "NOT SWAPPED (current: {})",
                    previous.unwrap_or_else(|| "absent".into())
                );
            }
            Ok(if r.swapped {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        CtlCommand::TransferLeader { key, store } => {
            let body = golem_wire::RequestBody::TransferLeader {
                key: c.parse(key)?,
                to_store: golem_wire::StoreId(*store),
            };
            client
                .execute(body, client.config().request_timeout())
                .await
                .map_err(err)?;
            print_ok(args.json);
            Ok(ExitCode::SUCCESS)
        }
        CtlCommand::Member(_)
        | CtlCommand::Store(_)
        | CtlCommand::Region(_)
        | CtlCommand::Operator(_) => {
            unreachable!("admin commands are run by admin::run")
        }
    }
}

fn print_ok(json: bool) {
    if json {
        println!("{}", json!({ "ok": true }));
    } else {
        println!("OK");
    }
}
