//! `golem ctl member|store|region`: admin commands answered by the PD (and
//! `region add-peer|remove-peer|split`, sent to the region's leader).
//!
//! Owns the admin subcommands and their text and JSON output. It is a plain
//! client of the PD (`PdClient`, any member; followers redirect to the
//! leader). The JSON shapes are stable: a region is `{id, start, end,
//! epoch: {conf_ver, version}, peers: [{id, store, shard, role}], leader:
//! {id, store, shard} | null, term, approximate_keys,
//! approximate_size_bytes}`; a store is `{id, addr, shard_count, state,
//! capacity_bytes, used_bytes, region_count, leader_count,
//! read_bytes_per_sec, written_bytes_per_sec, last_heartbeat_ms, shards: [{shard, region_count, leader_count,
//! busy_permille}]}` (shards as the node last reported them). Keys are
//! shown as text, or hex with `--hex`.

use super::ctl::{Codec, CtlArgs, CtlCommand, DEFAULT_PD};
use clap::Subcommand;
use golem_pd::client::{PdClient, PdClientConfig, PdClientError};
use golem_wire::pd::{PeerRole, RegionRoute, StoreInfo};
use golem_wire::{GolemError, RegionId, StoreId};
use serde_json::{json, Value};
use std::process::ExitCode;

/// Most regions `region list` prints by default.
const REGION_LIST_DEFAULT: u32 = 100;

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List the PD members and the leader.
    List,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List every store (tombstones excluded).
    List,
    /// Show one store (exit code 1 if unknown).
    Get {
        /// The store id.
        id: u64,
    },
    /// Drain a store: it goes Offline, the PD moves its replicas to other
    /// stores, then it becomes a Tombstone.
    Delete {
        /// The store id.
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegionCommand {
    /// Show one region by id (exit code 1 if unknown).
    Get {
        /// The region id.
        id: u64,
    },
    /// Show the region containing a key (exit code 1 if none).
    Key {
        /// The key.
        key: String,
    },
    /// Add a replica of region ID on STORE: a learner that catches up (by
    /// snapshot), then a voter. Waits until done or --wait-s.
    AddPeer {
        /// The region id.
        id: u64,
        /// The store (node) to place the replica on.
        store: u64,
        /// The store's shard (core) to own it [default: region id mod the
        /// store's shard count].
        #[arg(long)]
        shard: Option<u16>,
        /// Keep it a learner (no vote).
        #[arg(long)]
        learner: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        wait_s: u64,
    },
    /// Remove the replica of region ID on STORE (its data there is
    /// deleted); moves the leadership first if that replica leads.
    RemovePeer {
        /// The region id.
        id: u64,
        /// The store whose replica goes.
        store: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        wait_s: u64,
    },
    /// Split region ID at KEY: the region keeps [start, KEY), a new region
    /// (ids from the PD) takes [KEY, end), with a replica beside each of
    /// the region's. Prints both regions. Waits until done or --wait-s.
    Split {
        /// The region id.
        id: u64,
        /// The split key (strictly inside the region; hex with --hex).
        key: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        wait_s: u64,
    },
    /// Merge region SOURCE into TARGET (adjacent, replicas on the same
    /// stores and shards): the PD runs it as an operator. Prints the
    /// merged region. Waits until done or --wait-s.
    Merge {
        /// The region that goes away.
        source: u64,
        /// The region that takes its range.
        target: u64,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        wait_s: u64,
    },
    /// List regions overlapping [start, end) in key order.
    List {
        /// First key (inclusive); default: the start of the key space.
        #[arg(long, default_value = "")]
        start: String,
        /// End key (exclusive); default: the end of the key space.
        #[arg(long, default_value = "")]
        end: String,
        /// Most regions to list.
        #[arg(long, default_value_t = REGION_LIST_DEFAULT)]
        limit: u32,
    },
}

/// Runs an admin command; `None` for a data command.
pub async fn run(args: &CtlArgs, c: &Codec) -> Result<Option<ExitCode>, String> {
    if !matches!(
        args.command,
        CtlCommand::Member(_)
            | CtlCommand::Store(_)
            | CtlCommand::Region(_)
            | CtlCommand::Operator(_)
    ) {
        return Ok(None);
    }
    let endpoints = args
        .pd
        .clone()
        .unwrap_or_else(|| vec![DEFAULT_PD.parse().expect("valid default")]);
    let pd = PdClient::new(
        endpoints.clone(),
        PdClientConfig {
            request_timeout_ms: args.timeout_ms,
            client_name: "golem-ctl".into(),
            ..PdClientConfig::default()
        },
    );
    let err = |e: PdClientError| match e {
        PdClientError::Unavailable { .. } => format!(
            "cannot reach the PD at {}: {e}",
            endpoints
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        e => e.to_string(),
    };
    let code = match &args.command {
        CtlCommand::Operator(cmd) => super::operator::run_operator(&pd, c, args.json, cmd).await?,
        CtlCommand::Store(StoreCommand::Delete { id }) => {
            super::operator::delete_store(&pd, args.json, *id).await?
        }
        CtlCommand::Member(MemberCommand::List) => {
            let (members, leader) = pd.get_members().await.map_err(err)?;
            if args.json {
                let ms: Vec<Value> = members
                    .iter()
                    .map(
                        |m| json!({ "id": m.id.0, "addr": m.addr, "leader": Some(m.id) == leader }),
                    )
                    .collect();
                println!(
                    "{}",
                    json!({ "members": ms, "leader": leader.map(|l| l.0) })
                );
            } else {
                for m in &members {
                    let tag = if Some(m.id) == leader { "\tleader" } else { "" };
                    println!("{}\t{}{tag}", m.id, m.addr);
                }
            }
            ExitCode::SUCCESS
        }
        CtlCommand::Store(StoreCommand::List) => {
            let stores = pd.get_stores(false).await.map_err(err)?;
            if args.json {
                let ss: Vec<Value> = stores.iter().map(store_json).collect();
                println!("{}", json!({ "stores": ss }));
            } else {
                for s in &stores {
                    println!("{}", store_line(s));
                }
            }
            ExitCode::SUCCESS
        }
        CtlCommand::Store(StoreCommand::Get { id }) => match pd.get_store(StoreId(*id)).await {
            Ok(s) => {
                if args.json {
                    println!("{}", store_json(&s));
                } else {
                    println!("{}", store_line(&s));
                }
                ExitCode::SUCCESS
            }
            Err(PdClientError::Server(GolemError::UnknownStore { .. })) => {
                not_found(args.json, "store")
            }
            Err(e) => return Err(err(e)),
        },
        CtlCommand::Region(RegionCommand::Get { id }) => {
            match pd.get_region_by_id(RegionId(*id)).await {
                Ok(r) => {
                    print_region(args.json, c, &r);
                    ExitCode::SUCCESS
                }
                Err(PdClientError::Server(GolemError::UnknownRegion { .. })) => {
                    not_found(args.json, "region")
                }
                Err(e) => return Err(err(e)),
            }
        }
        CtlCommand::Region(RegionCommand::Key { key }) => {
            match pd.get_region(&c.parse(key)?).await.map_err(err)? {
                Some(r) => {
                    print_region(args.json, c, &r);
                    ExitCode::SUCCESS
                }
                None => not_found(args.json, "region"),
            }
        }
        CtlCommand::Region(RegionCommand::Split { id, key, wait_s }) => {
            let client = data_client(args, &endpoints).await?;
            let regions = super::split::split(
                &pd,
                &client,
                RegionId(*id),
                c.parse(key)?,
                std::time::Duration::from_secs(*wait_s),
            )
            .await?;
            let info_json = |r: &golem_wire::RegionInfo| {
                json!({
                    "id": r.id.0,
                    "start": c.show(&r.start),
                    "end": c.show(&r.end),
                    "epoch": { "conf_ver": r.epoch.conf_ver, "version": r.epoch.version },
                })
            };
            if args.json {
                let rs: Vec<Value> = regions.iter().map(info_json).collect();
                println!("{}", json!({ "regions": rs }));
            } else {
                for r in &regions {
                    println!(
                        "{}\t[{:?}, {:?})\tepoch {}",
                        r.id,
                        c.show(&r.start),
                        c.show(&r.end),
                        super::split::show_epoch(r.epoch)
                    );
                }
            }
            ExitCode::SUCCESS
        }
        CtlCommand::Region(RegionCommand::Merge {
            source,
            target,
            wait_s,
        }) => {
            let r = super::merge::merge(
                &pd,
                RegionId(*source),
                RegionId(*target),
                std::time::Duration::from_secs(*wait_s),
            )
            .await?;
            print_region(args.json, c, &r);
            ExitCode::SUCCESS
        }
        CtlCommand::Region(
            cmd @ (RegionCommand::AddPeer { .. } | RegionCommand::RemovePeer { .. }),
        ) => {
            let client = data_client(args, &endpoints).await?;
            let outcome = match cmd {
                RegionCommand::AddPeer {
                    id,
                    store,
                    shard,
                    learner,
                    wait_s,
                } => {
                    super::membership::add_peer(
                        &pd,
                        &client,
                        RegionId(*id),
                        StoreId(*store),
                        *shard,
                        *learner,
                        std::time::Duration::from_secs(*wait_s),
                    )
                    .await?
                }
                RegionCommand::RemovePeer { id, store, wait_s } => {
                    super::membership::remove_peer(
                        &pd,
                        &client,
                        RegionId(*id),
                        StoreId(*store),
                        std::time::Duration::from_secs(*wait_s),
                    )
                    .await?
                }
                _ => unreachable!("matched above"),
            };
            if args.json {
                println!(
                    "{}",
                    json!({ "peer": outcome.peer.0, "store": outcome.store.0, "shard": outcome.shard.0, "conf_ver": outcome.conf_ver })
                );
            } else {
                println!(
                    "OK: peer {} on store {} shard {}, conf_ver {}",
                    outcome.peer, outcome.store, outcome.shard, outcome.conf_ver
                );
            }
            ExitCode::SUCCESS
        }
        CtlCommand::Region(RegionCommand::List { start, end, limit }) => {
            let routes = pd
                .scan_regions(&c.parse(start)?, &c.parse(end)?, (*limit).max(1))
                .await
                .map_err(err)?;
            if args.json {
                let rs: Vec<Value> = routes.iter().map(|r| region_json(c, r)).collect();
                println!("{}", json!({ "regions": rs }));
            } else {
                for r in &routes {
                    println!("{}", region_line(c, r));
                }
            }
            ExitCode::SUCCESS
        }
        _ => return Ok(None),
    };
    Ok(Some(code))
}

/// A data client routed through the PD (admin requests go to leaders).
async fn data_client(
    args: &CtlArgs,
    endpoints: &[std::net::SocketAddr],
) -> Result<golem_client::Client, String> {
    let mut cfg = golem_client::ClientConfig::with_pd(endpoints.to_vec());
    cfg.client_name = "golem-ctl".into();
    cfg.request_timeout_ms = args.timeout_ms;
    cfg.connect_timeout_ms = args.timeout_ms;
    golem_client::Client::connect(cfg)
        .await
        .map_err(|e| format!("cannot reach the cluster through the PD: {e}"))
}

fn not_found(json: bool, what: &str) -> ExitCode {
    if json {
        println!("{}", json!({ "found": false }));
    } else {
        eprintln!("({what} not found)");
    }
    ExitCode::from(1)
}

fn store_json(s: &StoreInfo) -> Value {
    json!({
        "id": s.store.id.0,
        "addr": s.store.addr,
        "shard_count": s.store.shard_count,
        "state": format!("{:?}", s.state),
        "capacity_bytes": s.stats.capacity_bytes,
        "used_bytes": s.stats.used_bytes,
        "region_count": s.stats.region_count,
        "leader_count": s.stats.leader_count,
        "read_bytes_per_sec": s.stats.read_bytes_per_sec,
        "written_bytes_per_sec": s.stats.written_bytes_per_sec,
        "last_heartbeat_ms": s.last_heartbeat_ms,
        "shards": s.stats.shards.iter().map(|l| json!({
            "shard": l.shard.0,
            "region_count": l.region_count,
            "leader_count": l.leader_count,
            "busy_permille": l.busy_permille,
        })).collect::<Vec<_>>(),
    })
}

fn store_line(s: &StoreInfo) -> String {
    format!(
        "{}\t{}\tshards={}\t{:?}\tregions={}\tleaders={}",
        s.store.id,
        s.store.addr,
        s.store.shard_count,
        s.state,
        s.stats.region_count,
        s.stats.leader_count
    )
}

fn region_json(c: &Codec, r: &RegionRoute) -> Value {
    let peers: Vec<Value> = r
        .region
        .peers
        .iter()
        .map(|p| {
            json!({
                "id": p.id.0,
                "store": p.store.0,
                "shard": p.shard.0,
                "role": match p.role { PeerRole::Voter => "voter", PeerRole::Learner => "learner" },
            })
        })
        .collect();
    json!({
        "id": r.region.id.0,
        "start": c.show(&r.region.start),
        "end": c.show(&r.region.end),
        "epoch": { "conf_ver": r.region.epoch.conf_ver, "version": r.region.epoch.version },
        "peers": peers,
        "leader": r.leader.map(|l| json!({ "id": l.id.0, "store": l.store.0, "shard": l.shard.0 })),
        "term": r.term,
        "approximate_keys": r.stats.approximate_keys,
        "approximate_size_bytes": r.stats.approximate_size_bytes,
    })
}

fn region_line(c: &Codec, r: &RegionRoute) -> String {
    let leader = r.leader.map_or_else(
        || "none".to_string(),
        |l| format!("store {} shard {}", l.store, l.shard),
    );
    format!(
        "{}\t[{:?}, {:?})\tepoch {}/{}\tpeers {}\tleader {leader}\tkeys ~{}",
        r.region.id,
        c.show(&r.region.start),
        c.show(&r.region.end),
        r.region.epoch.conf_ver,
        r.region.epoch.version,
        r.region.peers.len(),
        r.stats.approximate_keys
    )
}

fn print_region(json: bool, c: &Codec, r: &RegionRoute) {
    if json {
        println!("{}", region_json(c, r));
    } else {
        println!("{}", region_line(c, r));
    }
}
