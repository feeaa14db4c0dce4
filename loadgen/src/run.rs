//! The closed-loop driver: connections × in-flight workers, each issuing
//! one request at a time and recording its latency.
//!
//! Owns the measurement. Invariants: each worker records into its own
//! histograms (no shared state on the hot path), merged at the end;
//! operations completing during warm-up are not recorded; the run stops
//! issuing at its deadline.

use crate::args::{Args, Mode};
use crate::report::{new_histogram, record, Latency, OpReport, Report};
use golem_client::{Client, ClientConfig};
use golem_wire::WriteOp;
use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Keys written per BatchWrite when preloading.
const PRELOAD_BATCH_KEYS: u64 = 256;

/// The key for index `i`: fixed width so keys sort like their indices.
pub fn key_of(i: u64) -> Vec<u8> {
    format!("key{i:012}").into_bytes()
}

struct WorkerResult {
    gets: Histogram<u64>,
    puts: Histogram<u64>,
    get_errors: u64,
    put_errors: u64,
}

async fn connect(addr: SocketAddr, args: &Args) -> Result<Client, String> {
    let mut cfg = ClientConfig::new(vec![addr]);
    cfg.client_name = "golem-loadgen".into();
    cfg.request_timeout_ms = args.timeout_ms;
    Client::connect(cfg)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))
}

/// Writes every key once so that gets find values.
async fn preload(client: &Client, args: &Args) -> Result<(), String> {
    let value = vec![b'v'; args.value_bytes];
    let mut start = 0;
    while start < args.keys {
        let end = (start + PRELOAD_BATCH_KEYS).min(args.keys);
        let ops: Vec<WriteOp> = (start..end)
            .map(|i| WriteOp::Put {
                key: key_of(i),
                value: value.clone(),
            })
            .collect();
        client
            .batch_write(ops)
            .await
            .map_err(|e| format!("preload: {e}"))?;
        start = end;
    }
    Ok(())
}

/// Runs the workload against `addr` and returns the report.
pub async fn run(addr: SocketAddr, target: String, args: Args) -> Result<Report, String> {
    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        clients.push(connect(addr, &args).await?);
    }
    if args.mode != Mode::Put {
        eprintln!("preloading {} keys…", args.keys);
        preload(&clients[0], &args).await?;
    }
    let warmup_end = Instant::now() + Duration::from_secs(args.warmup_s);
    let end = warmup_end + Duration::from_secs(args.duration_s);
    let mut tasks = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        for w in 0..args.in_flight {
            let client = client.clone();
            let args = args.clone();
            let seed = args.seed ^ ((c as u64) << 32 | w as u64);
            tasks.push(tokio::spawn(async move {
                worker(client, args, seed, warmup_end, end).await
            }));
        }
    }
    let mut gets = new_histogram();
    let mut puts = new_histogram();
    let (mut get_errors, mut put_errors) = (0, 0);
    for t in tasks {
        let r = t.await.map_err(|e| format!("worker failed: {e}"))?;
        gets.add(&r.gets).expect("same histogram bounds");
        puts.add(&r.puts).expect("same histogram bounds");
        get_errors += r.get_errors;
        put_errors += r.put_errors;
    }
    let secs = args.duration_s as f64;
    let mut ops = Vec::new();
    for (name, h, errors) in [("get", &gets, get_errors), ("put", &puts, put_errors)] {
        if !h.is_empty() || errors > 0 {
            ops.push(OpReport {
                op: name,
                ops_per_s: h.len() as f64 / secs,
                errors,
                latency: Latency::of(h),
            });
        }
    }
    Ok(Report {
        target,
        mode: args.mode,
        connections: args.connections,
        in_flight_per_connection: args.in_flight,
        value_bytes: args.value_bytes,
        keys: args.keys,
        duration_s: secs,
        total_ops_per_s: (gets.len() + puts.len()) as f64 / secs,
        ops,
    })
}

async fn worker(
    client: Client,
    args: Args,
    seed: u64,
    warmup_end: Instant,
    end: Instant,
) -> WorkerResult {
    let mut rng = SmallRng::seed_from_u64(seed);
    let value = vec![b'x'; args.value_bytes];
    let mut r = WorkerResult {
        gets: new_histogram(),
        puts: new_histogram(),
        get_errors: 0,
        put_errors: 0,
    };
    loop {
        let started = Instant::now();
        if started >= end {
            return r;
        }
        let key = key_of(rng.gen_range(0..args.keys));
        let is_get = match args.mode {
            Mode::Get => true,
            Mode::Put => false,
            Mode::Mixed => rng.gen_range(0..100u8) < args.read_percent,
        };
        let ok = if is_get {
            client.get(key).await.is_ok()
        } else {
            client.put(key, value.clone()).await.is_ok()
        };
        if started < warmup_end {
            continue;
        }
        let micros = started.elapsed().as_micros() as u64;
        match (is_get, ok) {
            (true, true) => record(&mut r.gets, micros),
            (true, false) => r.get_errors += 1,
            (false, true) => record(&mut r.puts, micros),
            (false, false) => r.put_errors += 1,
        }
    }
}
