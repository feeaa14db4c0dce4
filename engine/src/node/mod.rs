//! Running a storage node: the process around the shards.
//!
//! Owns start-up and shutdown of `golem node`: the data-directory lock, the
//! port probe, one executor thread per shard, and the signal handling that
//! stops them; with `--pd`, joining the cluster before serving (every
//! shard starts with the PD's view of the hosted region and the store
//! address book) and the heartbeat thread afterwards (`pd_link.rs`).
//! Invariants: the process holds its data directory's lock for
//! its whole life; SIGINT/SIGTERM are delivered only to the signal thread
//! (blocked everywhere else), and lead to a clean stop in which every shard
//! answers or refuses its in-flight requests and syncs its WAL.

pub mod identity;
pub mod lockfile;
pub mod pd_link;

use crate::config::NodeConfig;
use crate::runtime::{self, Pinning};
use crate::shard::{self, ShardStart};
use golem_wire::ShardId;
use identity::Identity;
use lockfile::{probe_ports_free, DataDirLock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("shard {shard} failed to start: {reason}")]
    ShardStart { shard: ShardId, reason: String },
    #[error("shard {0} stopped unexpectedly")]
    ShardDied(ShardId),
    #[error("joining the cluster: {0}")]
    Join(#[from] pd_link::JoinError),
}

/// Events the node's main thread waits for.
enum Event {
    Signal(i32),
    ShardExited(ShardId),
}

/// Runs a node until SIGINT/SIGTERM; returns once every shard has stopped.
pub fn run(cfg: NodeConfig) -> Result<(), NodeError> {
    let _lock = DataDirLock::acquire(&cfg.data_dir)?;
    let addrs: Vec<_> = (0..cfg.shards).map(|s| cfg.shard_listen(s)).collect();
    probe_ports_free(&addrs)?;
    let signals = crate::signals::block_stop_signals()?;
    let (identity, pd_link, initial_region, stores) = if cfg.pd_endpoints.is_empty() {
        let identity = Identity::load_or_create(&cfg.data_dir)?;
        (identity, None, None, Arc::new(shard::StoreBook::new()))
    } else {
        match pd_link::join(&cfg, &signals)? {
            Some(j) => (j.identity, Some(j.link), j.initial_region, j.stores),
            None => {
                tracing::info!("stopped before joining the cluster");
                return Ok(());
            }
        }
    };

    let cfg = Arc::new(cfg);
    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, events) = std::sync::mpsc::channel::<Event>();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..cfg.shards {
        let (tx, rx) = tokio::sync::mpsc::channel(shard::INBOX_MESSAGES_MAX);
        senders.push(tx);
        receivers.push(rx);
    }
    let pinning = if cfg.pin {
        Pinning::Pinned
    } else {
        Pinning::Unpinned
    };
    let mut handles = Vec::new();
    for (i, inbox) in receivers.into_iter().enumerate() {
        let id = ShardId(i as u16);
        let start = ShardStart {
            id,
            cfg: cfg.clone(),
            identity,
            inbox,
            inboxes: senders.clone(),
            stop: stop.clone(),
            ready: ready_tx.clone(),
            initial_region: initial_region.clone(),
            stores: stores.clone(),
        };
        let exited = events_tx.clone();
        let handle =
            runtime::spawn_shard(id.get(), pinning, cfg.io_memory_bytes, move || async move {
                shard::run(start).await;
                let _ = exited.send(Event::ShardExited(id));
            })?;
        handles.push(handle);
    }
    let link_inboxes = pd_link.as_ref().map(|_| senders.clone());
    drop(senders);
    drop(ready_tx);

    let mut failure = None;
    for _ in 0..cfg.shards {
        match ready.recv() {
            Ok((_, Ok(()))) => {}
            Ok((shard, Err(reason))) => {
                failure.get_or_insert(NodeError::ShardStart { shard, reason });
            }
            Err(_) => break,
        }
    }
    if failure.is_none() {
        tracing::info!(
            store = %identity.store,
            cluster = %identity.cluster,
            shards = cfg.shards,
            first = %cfg.shard_advertise(0),
            "node ready"
        );
        if let (Some(link), Some(inboxes)) = (pd_link, link_inboxes) {
            link.spawn(cfg.clone(), identity, inboxes, stores, stop.clone())?;
        }
        {
            let events_tx = events_tx.clone();
            std::thread::Builder::new()
                .name("signals".into())
                .spawn(move || {
                    if let Ok(sig) = crate::signals::wait(&signals) {
                        let _ = events_tx.send(Event::Signal(sig));
                    }
                })?;
        }
        match events.recv() {
            Ok(Event::Signal(sig)) => tracing::info!(signal = sig, "stopping"),
            Ok(Event::ShardExited(shard)) => failure = Some(NodeError::ShardDied(shard)),
            Err(_) => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        if let Err(e) = h.join() {
            tracing::error!(error = %e, "shard thread failed");
        }
    }
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("node stopped");
            Ok(())
        }
    }
}
