//! The PD server: one member of the PD's Raft group, on tokio.
//!
//! Owns the process-level pieces: the data-directory lock, the TCP listener
//! (clients and peers share it), the peer senders and the Raft driver
//! thread.
//!
//! - [`driver`]: the Raft driver thread (state, log, proposals, TSO).
//! - [`conn`]: one inbound connection (handshake, limits, timeouts).
//! - [`transport`]: outbound Raft messages to one peer, batched.
//!
//! Invariants: a second member cannot run on the same data directory (an
//! exclusive lock, held for the process's life); connections beyond
//! `connections_max` are refused at accept; one bad connection never affects
//! another or the driver.

pub mod conn;
pub mod driver;
pub mod transport;

use crate::config::{ConfigError, PdConfig};
use crate::consensus::disk::LogError;
use driver::{Driver, DriverMsg};
use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

/// Messages the driver's inbox holds, at most; more are refused with `ServerBusy`.
pub const DRIVER_INBOX_MAX: usize = 16 * 1024;
/// Raft messages queued for one peer, at most; more are dropped (Raft retries).
pub const PEER_QUEUE_MAX: usize = 4096;

/// State the driver publishes to connections.
#[derive(Debug, Default)]
pub struct Shared {
    /// The cluster id (0 until bootstrapped), for handshakes.
    pub cluster: AtomicU64,
    /// The Raft leader this member knows (0: none).
    pub leader: AtomicU64,
}

/// Why a PD member could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("data directory {path} is locked by another PD member")]
    Locked { path: String },
    #[error("I/O on {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("bad snapshot: {0}")]
    Snapshot(String),
    #[error("raft: {0}")]
    Raft(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Takes the data directory's exclusive lock (released when the file closes).
fn lock_data_dir(cfg: &PdConfig) -> Result<File, ServerError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(io(cfg.data_dir.display().to_string()))?;
    let path = cfg.data_dir.join("LOCK");
    let f = File::create(&path).map_err(io(path.display().to_string()))?;
    f.try_lock().map_err(|_| ServerError::Locked {
        path: cfg.data_dir.display().to_string(),
    })?;
    Ok(f)
}

/// Runs one member until `shutdown` completes.
pub async fn serve(cfg: PdConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    cfg.validate()?;
    let _lock = lock_data_dir(&cfg)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(io(format!("listen {}", cfg.listen)))?;
    let shared = Arc::new(Shared::default());
    let (inbox, rx) = std::sync::mpsc::sync_channel::<DriverMsg>(DRIVER_INBOX_MAX);
    let mut peers_out = HashMap::new();
    for (id, addr) in &cfg.peers {
        if *id == cfg.id {
            continue;
        }
        let (tx, prx) = mpsc::channel(PEER_QUEUE_MAX);
        peers_out.insert(id.0, tx);
        tokio::spawn(transport::peer_sender(cfg.clone(), *id, *addr, prx));
    }
    let driver = Driver::open(cfg.clone(), peers_out, shared.clone())?;
    let thread = std::thread::Builder::new()
        .name("pd-raft".into())
        .spawn(move || {
            // A broken invariant in the driver stops the whole member
            // (fail-stop) instead of leaving a listener without a Raft node.
            let run = std::panic::AssertUnwindSafe(move || driver.run(rx));
            if std::panic::catch_unwind(run).is_err() {
                eprintln!("golem-pd: the raft driver panicked; stopping");
                std::process::exit(70);
            }
        })
        .map_err(io("spawn the raft thread"))?;
    tracing::info!(id = %cfg.id, listen = %cfg.listen, members = cfg.peers.len(), "PD member serving");

    let ctx = Arc::new(conn::ConnCtx {
        cfg: cfg.clone(),
        inbox: inbox.clone(),
        shared,
    });
    let slots = Arc::new(Semaphore::new(cfg.connections_max));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, say: do not spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection refused: connections-max reached");
                    continue;
                };
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    conn::serve(stream, ctx).await;
                    drop(permit);
                });
            }
        }
    }
    tracing::info!("PD member stopping");
    let _ = inbox.send(DriverMsg::Stop);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    Ok(())
}

/// Runs one member on its own tokio runtime until SIGINT or SIGTERM.
pub fn run(cfg: PdConfig) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pd-io")
        .enable_all()
        .build()
        .map_err(io("tokio runtime"))?;
    rt.block_on(serve(cfg, shutdown_signal()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
