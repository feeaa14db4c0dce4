//! Turns a fresh cluster's single region into N regions quickly, for
//! benchmarks of many replicated regions (`perf/replicated_regions.sh`).
//!
//! The key space is cut at N − 1 evenly spaced 4-byte big-endian keys
//! (`⌊i · 2^32 / N⌋` for i in 1..N). A region standing for the target
//! slots `[a, b)` is split at slot `(a + b) / 2` (so each split halves a
//! region's key span) and its two halves are queued again until each
//! stands for one slot: N − 1 splits, a binary tree of depth ⌈log2 N⌉.
//! `--concurrency` workers take regions from one FIFO queue, so up to that
//! many splits are in flight at once, each on a different region.
//!
//! Each split is what `golem ctl region split` does
//! (`golem_engine::cli::split`), minus its PD lookup of the parent: the
//! parent's range is known from the answer that created it, and the PD
//! learns a new region only from its leader's next heartbeat poll. So the
//! ids come from the PD (`alloc_ids`: the new region and one peer per
//! replica), the `Split` goes to the region's leader through the data
//! client (routed by the region's start key), `ServerBusy` is retried with
//! the same ids, and an answer lost after the request may have reached the
//! leader is settled by polling the PD for the new region (as the ctl
//! does; a second copy of a split would be refused, never applied twice).
//!
//! ```sh
//! cargo run --release -p golem-engine --example split_many -- --pd 127.0.0.1:7490 --regions 10000
//! cargo run --release -p golem-engine --example split_many -- --pd 127.0.0.1:7490 --wait 10000 --wait-s 300
//! cargo run --release -p golem-engine --example split_many -- --pd 127.0.0.1:7490 --count
//! ```
//!
//! Prints one summary line (`key=value` pairs) on stdout, progress on
//! stderr.

use clap::Parser;
use golem_client::{Client, ClientConfig, ClientError};
use golem_pd::client::{PdClient, PdClientConfig};
use golem_wire::{GolemError, PeerId, RegionId, RequestBody, ResponseBody};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

#[derive(Debug, Parser)]
#[command(about = "Split a cluster's single region into N regions (benchmark set-up)")]
struct Args {
    /// PD members (ip:port,…).
    #[arg(long, value_delimiter = ',', required = true)]
    pd: Vec<SocketAddr>,
    /// Target number of regions (N − 1 splits of the fresh cluster's region).
    #[arg(long)]
    regions: Option<u64>,
    /// Splits in flight at once (each on a different region).
    #[arg(long, default_value_t = 48)]
    concurrency: usize,
    /// Deadline of one split, retries included, in seconds.
    #[arg(long, default_value_t = 60)]
    split_timeout_s: u64,
    /// Only print how many regions the PD lists.
    #[arg(long)]
    count: bool,
    /// Poll the PD until it lists at least this many regions (after the
    /// splits when --regions is given too).
    #[arg(long)]
    wait: Option<u64>,
    /// Deadline of --wait, in seconds.
    #[arg(long, default_value_t = 600)]
    wait_s: u64,
}

/// One region to split further: it stands for the target slots `[a, b)`.
#[derive(Clone, Debug)]
struct Work {
    region: RegionId,
    a: u64,
    b: u64,
}

/// The boundary key of slot `i` (slot 0 starts at the empty key).
fn slot_key(i: u64, n: u64) -> Vec<u8> {
    if i == 0 {
        return Vec::new();
    }
    let k = ((u128::from(i) << 32) / u128::from(n)) as u32;
    k.to_be_bytes().to_vec()
}

/// A key inside the region starting at `start` (requests route by key).
fn routing_key(start: &[u8]) -> Vec<u8> {
    if start.is_empty() {
        vec![0]
    } else {
        start.to_vec()
    }
}

#[derive(Default)]
struct Counters {
    splits_done: AtomicU64,
    splits_failed: AtomicU64,
    busy_retries: AtomicU64,
    settled_by_pd: AtomicU64,
    /// Every successful split's latency, in µs (from alloc_ids to answer).
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

struct Ctx {
    pd: PdClient,
    client: Client,
    replicas: u32,
    n: u64,
    split_timeout: Duration,
    counters: Counters,
}

/// Splits `w`'s region at its middle slot; returns the two halves' work.
async fn split_one(ctx: &Ctx, w: &Work) -> Result<[Work; 2], String> {
    let m = (w.a + w.b) / 2;
    let split_key = slot_key(m, ctx.n);
    let ids = ctx
        .pd
        .alloc_ids(1 + ctx.replicas)
        .await
        .map_err(|e| format!("alloc_ids: {e}"))?;
    let new_region = RegionId(ids.start);
    let new_peers: Vec<PeerId> = (ids.start + 1..ids.end).map(PeerId).collect();
    let body = RequestBody::Split {
        key: routing_key(&slot_key(w.a, ctx.n)),
        split_key: split_key.clone(),
        new_region,
        new_peers,
    };
    let deadline = Instant::now() + ctx.split_timeout;
    let halves = [
        Work {
            region: w.region,
            a: w.a,
            b: m,
        },
        Work {
            region: new_region,
            a: m,
            b: w.b,
        },
    ];
    let mut sent = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match ctx
            .client
            .execute(body.clone(), left.max(Duration::from_millis(1)))
            .await
        {
            Ok(ResponseBody::Split { regions }) => {
                if !regions
                    .iter()
                    .any(|r| r.id == new_region && r.start == split_key)
                {
                    return Err(format!(
                        "split answered without the new region: {regions:?}"
                    ));
                }
                return Ok(halves);
            }
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(ClientError::Server(GolemError::ServerBusy { retry_after_ms }))
                if Instant::now() + Duration::from_millis(retry_after_ms.into()) < deadline =>
            {
                sent = true;
                ctx.counters.busy_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(retry_after_ms.max(20).into())).await;
            }
            Err(e) => {
                let maybe = sent
                    || e.is_outcome_unknown()
                    || matches!(
                        e,
                        ClientError::Server(
                            GolemError::InvalidArgument { .. } | GolemError::EpochNotMatch { .. }
                        ) | ClientError::Timeout { .. }
                    );
                if maybe && applied(ctx, new_region, &split_key).await {
                    ctx.counters.settled_by_pd.fetch_add(1, Ordering::Relaxed);
                    return Ok(halves);
                }
                return Err(format!("split of {} at {split_key:02x?}: {e}", w.region));
            }
        }
    }
}

/// Whether the PD learns of `new_region` starting at `split_key` within
/// 30 s (its leader reports it within a heartbeat poll or two).
async fn applied(ctx: &Ctx, new_region: RegionId, split_key: &[u8]) -> bool {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(r) = ctx.pd.get_region_by_id(new_region).await {
            if r.region.start == split_key {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// How many regions the PD lists (paged scans of the whole key space).
async fn pd_count(pd: &PdClient) -> Result<u64, String> {
    Ok(pd_scan(pd).await?.0)
}

/// How many regions the PD lists, and how many it names a leader for on
/// each store (`store:count`, in store order).
async fn pd_scan(pd: &PdClient) -> Result<(u64, String), String> {
    let page = golem_wire::pd::PD_SCAN_REGIONS_MAX;
    let mut start: Vec<u8> = Vec::new();
    let mut total = 0u64;
    let mut leaders: std::collections::BTreeMap<u64, u64> = Default::default();
    loop {
        let routes = pd
            .scan_regions(&start, &[], page)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = routes.last() else {
            return Ok((total, show(&leaders)));
        };
        for r in routes.iter().filter(|r| r.region.start >= start) {
            let store = r.leader.as_ref().map_or(0, |p| p.store.0);
            *leaders.entry(store).or_default() += 1;
        }
        // A page may start with the region holding `start` again: count
        // only regions starting at or after it (the first page starts at
        // the empty key, which every first region starts at).
        total += routes.iter().filter(|r| r.region.start >= start).count() as u64;
        // Pages may also be cut short by the PD's response size limit, so
        // only the key space's end ends the scan.
        if last.region.end.is_empty() || last.region.end <= start {
            return Ok((total, show(&leaders)));
        }
        start = last.region.end.clone();
    }
}

fn show(leaders: &std::collections::BTreeMap<u64, u64>) -> String {
    let v: Vec<String> = leaders.iter().map(|(s, c)| format!("{s}:{c}")).collect();
    v.join(",")
}

async fn wait_for(pd: &PdClient, want: u64, wait: Duration) -> Result<(u64, Duration), String> {
    let t0 = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let have = pd_count(pd).await.unwrap_or(0);
        if have >= want {
            return Ok((have, t0.elapsed()));
        }
        if t0.elapsed() >= wait {
            return Err(format!(
                "the PD lists {have} regions after {:.1} s, not {want}",
                t0.elapsed().as_secs_f64()
            ));
        }
        if last_print.elapsed() >= Duration::from_secs(5) {
            eprintln!("pd lists {have}/{want} regions");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run(args: Args) -> Result<(), String> {
    let pd = PdClient::new(
        args.pd.clone(),
        PdClientConfig {
            client_name: "split-many".into(),
            ..PdClientConfig::default()
        },
    );
    if args.count {
        let (n, leaders) = pd_scan(&pd).await?;
        println!("regions={n} leaders_by_store={leaders}");
        return Ok(());
    }
    if let Some(n) = args.regions {
        if n < 1 || n > u64::from(u32::MAX) {
            return Err("--regions must be in 1..=2^32-1".into());
        }
        let first = pd
            .get_region(&[0])
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the PD knows no region")?;
        if !first.region.start.is_empty() || !first.region.end.is_empty() {
            return Err(format!(
                "expected a fresh cluster with one region over the whole key space, got {:?}",
                first.region
            ));
        }
        let mut cfg = ClientConfig::with_pd(args.pd.clone());
        cfg.client_name = "split-many".into();
        let client = Client::connect(cfg).await.map_err(|e| e.to_string())?;
        let ctx = Arc::new(Ctx {
            pd,
            client,
            replicas: first.region.peers.len() as u32,
            n,
            split_timeout: Duration::from_secs(args.split_timeout_s),
            counters: Counters::default(),
        });
        let t0 = Instant::now();
        let (tx, rx) = mpsc::unbounded_channel::<Work>();
        let rx = Arc::new(Mutex::new(rx));
        // Regions queued or being split; the queue closes at zero.
        let outstanding = Arc::new(AtomicUsize::new(0));
        if n > 1 {
            outstanding.store(1, Ordering::SeqCst);
            tx.send(Work {
                region: first.region.id,
                a: 0,
                b: n,
            })
            .expect("receiver alive");
        }
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let progress = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    eprintln!(
                        "{:.1} s: {} splits done, {} failed, {} busy retries",
                        t0.elapsed().as_secs_f64(),
                        ctx.counters.splits_done.load(Ordering::Relaxed),
                        ctx.counters.splits_failed.load(Ordering::Relaxed),
                        ctx.counters.busy_retries.load(Ordering::Relaxed)
                    );
                }
            })
        };
        let mut workers = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let (ctx, rx, tx, outstanding) =
                (ctx.clone(), rx.clone(), tx.clone(), outstanding.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let w = { rx.lock().await.recv().await };
                    let Some(w) = w else { return };
                    let started = Instant::now();
                    match split_one(&ctx, &w).await {
                        Ok(halves) => {
                            ctx.counters
                                .latencies_us
                                .lock()
                                .expect("not poisoned")
                                .push(started.elapsed().as_micros() as u64);
                            ctx.counters.splits_done.fetch_add(1, Ordering::Relaxed);
                            let more: Vec<Work> =
                                halves.into_iter().filter(|h| h.b - h.a > 1).collect();
                            outstanding.fetch_add(more.len(), Ordering::SeqCst);
                            if let Some(tx) = tx.lock().expect("not poisoned").as_ref() {
                                for h in more {
                                    let _ = tx.send(h);
                                }
                            }
                        }
                        Err(e) => {
                            ctx.counters.splits_failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("split failed: {e}");
                        }
                    }
                    if outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
                        tx.lock().expect("not poisoned").take();
                    }
                }
            }));
        }
        if n <= 1 {
            tx.lock().expect("not poisoned").take();
        }
        for w in workers {
            w.await.map_err(|e| e.to_string())?;
        }
        progress.abort();
        let took = t0.elapsed().as_secs_f64();
        let c = &ctx.counters;
        let done = c.splits_done.load(Ordering::Relaxed);
        let mut lat = c.latencies_us.lock().expect("not poisoned").clone();
        lat.sort_unstable();
        let pct = |q: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 - 1.0) * q).round() as usize;
            lat[i] as f64 / 1000.0
        };
        println!(
            "split_latency_ms p50={:.1} p90={:.1} p99={:.1} max={:.1}",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
        println!(
            "target={n} splits_done={done} splits_failed={} busy_retries={} settled_by_pd={} \
             regions={} split_s={took:.2} splits_per_s={:.1} concurrency={}",
            c.splits_failed.load(Ordering::Relaxed),
            c.busy_retries.load(Ordering::Relaxed),
            c.settled_by_pd.load(Ordering::Relaxed),
            done + 1,
            done as f64 / took.max(1e-9),
            args.concurrency
        );
        if let Some(want) = args.wait {
            let (have, waited) = wait_for(&ctx.pd, want, Duration::from_secs(args.wait_s)).await?;
            println!(
                "pd_regions={have} pd_wait_s={:.2} total_s={:.2}",
                waited.as_secs_f64(),
                t0.elapsed().as_secs_f64()
            );
        }
        return Ok(());
    }
    if let Some(want) = args.wait {
        let (have, waited) = wait_for(&pd, want, Duration::from_secs(args.wait_s)).await?;
        println!("pd_regions={have} pd_wait_s={:.2}", waited.as_secs_f64());
        return Ok(());
    }
    Err("give --regions N, --wait N or --count".into())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("split_many: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
