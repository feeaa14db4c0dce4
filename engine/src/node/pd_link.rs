//! The node's link to the Placement Driver (`--pd`).
//!
//! Owns joining the cluster at start and the heartbeats afterwards. At start
//! (on the main thread, before any shard serves): a new data directory gets
//! a store id from the PD (`AllocIds`), then `PdClient::join` either
//! bootstraps the cluster — the node then hosts the first region with the
//! ids the PD handed out — or registers the store; a known directory
//! re-registers its persisted store (`PutStore`) and must belong to the
//! PD's cluster. After start, one thread (`pd-link`, a current-thread tokio
//! runtime) asks every shard what it hosts over the shard inboxes, sends a
//! store heartbeat every `STORE_HEARTBEAT_MS` and a region heartbeat for
//! every region led here when it changes or every `REGION_HEARTBEAT_MS`.
//!
//! Invariants: no shard thread ever waits on the PD (shards answer a
//! `ShardMsg::Report` from memory; the PD's latency is this thread's);
//! while the PD is unreachable the node keeps serving and this thread
//! retries with a doubling backoff; the cluster id of a PD-mode directory
//! always comes from the PD, and a directory of another cluster is refused.

use super::identity::{HostedRegion, Identity};
use crate::config::NodeConfig;
use crate::shard::{Inbox, ShardMsg, ShardReport};
use golem_pd::client::{Joined, PdClient, PdClientConfig, PdClientError};
use golem_wire::pd::ShardLoad;
use golem_wire::pd::{Peer, PeerRole, Region, RegionHeartbeat, RegionStats, Store, StoreStats};
use golem_wire::{ClusterId, GolemError, RegionEpoch, RegionId, StoreId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interval of store heartbeats, in ms (the PD marks a store Disconnected
/// after 20 s of silence).
pub const STORE_HEARTBEAT_MS: u64 = 5_000;
/// A region led here is reported at least this often, in ms.
pub const REGION_HEARTBEAT_MS: u64 = 10_000;
/// How often the link looks for changed regions, in ms.
pub const POLL_MS: u64 = 500;
/// Budget of one PD call from the link, retries included, in ms.
const CALL_TIMEOUT_MS: u64 = 3_000;
/// Backoff between failed joins at start, in ms.
const JOIN_BACKOFF_MIN_MS: u64 = 100;
const JOIN_BACKOFF_MAX_MS: u64 = 5_000;
/// How long a shard may take to answer a report request, in ms.
const REPORT_TIMEOUT_MS: u64 = 1_000;

/// Why the node could not join the PD's cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the data directory belongs to cluster {ours}, but the PD serves cluster {pd}: refusing to start"
    )]
    ClusterMismatch { ours: ClusterId, pd: ClusterId },
    #[error("the data directory belongs to stand-alone cluster {0}: start without --pd or use a new directory")]
    StandaloneDir(ClusterId),
    #[error("the PD refused this store: {0}")]
    Refused(GolemError),
}

/// A joined node's PD client and the runtime its connection lives on.
pub struct PdLink {
    rt: tokio::runtime::Runtime,
    client: PdClient,
}

impl std::fmt::Debug for PdLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PdLink").finish_non_exhaustive()
    }
}

fn store_of(cfg: &NodeConfig, id: StoreId) -> Store {
    Store {
        id,
        addr: cfg.shard_advertise(0).to_string(),
        shard_count: cfg.shards,
    }
}

/// Joins the PD's cluster, retrying while the PD is unreachable. Returns
/// `Ok(None)` if a stop signal arrived first.
pub fn join(
    cfg: &NodeConfig,
    signals: &libc::sigset_t,
) -> Result<Option<(Identity, PdLink)>, JoinError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = PdClient::new(
        cfg.pd_endpoints.clone(),
        PdClientConfig {
            request_timeout_ms: CALL_TIMEOUT_MS,
            client_name: "golem-node".into(),
            ..PdClientConfig::default()
        },
    );
    let known = Identity::load(&cfg.data_dir)?;
    if let Some(id) = known.filter(|id| !id.pd) {
        return Err(JoinError::StandaloneDir(id.cluster));
    }
    let mut new_store = None;
    let mut backoff = JOIN_BACKOFF_MIN_MS;
    loop {
        let attempt = rt.block_on(try_join(cfg, &client, known, &mut new_store));
        match attempt {
            Ok(identity) => {
                if known.is_some() {
                    let pd = rt.block_on(client.cluster());
                    if pd != identity.cluster {
                        return Err(JoinError::ClusterMismatch {
                            ours: identity.cluster,
                            pd,
                        });
                    }
                    tracing::info!(store = %identity.store, cluster = %pd, "re-registered with the PD");
                } else {
                    identity.save(&cfg.data_dir)?;
                }
                return Ok(Some((identity, PdLink { rt, client })));
            }
            Err(PdClientError::Server(e)) => return Err(JoinError::Refused(e)),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff, "cannot reach the PD; retrying");
                if crate::signals::wait_timeout(signals, Duration::from_millis(backoff))?.is_some()
                {
                    return Ok(None);
                }
                backoff = (backoff * 2).min(JOIN_BACKOFF_MAX_MS);
            }
        }
    }
}

async fn try_join(
    cfg: &NodeConfig,
    client: &PdClient,
    known: Option<Identity>,
    new_store: &mut Option<StoreId>,
) -> Result<Identity, PdClientError> {
    if let Some(id) = known {
        // The cluster is checked by the caller, from the handshake.
        client.put_store(store_of(cfg, id.store)).await?;
        return Ok(id);
    }
    let store = match *new_store {
        Some(s) => s,
        None => {
            let s = StoreId(client.alloc_ids(1).await?.start);
            *new_store = Some(s);
            s
        }
    };
    let identity = match client.join(store_of(cfg, store)).await? {
        Joined::Bootstrapped { cluster, region } => {
            let peer = region.peers.first().map(|p| p.id).ok_or_else(|| {
                PdClientError::Unexpected("bootstrap region without a peer".into())
            })?;
            tracing::info!(%store, %cluster, region = %region.id, "bootstrapped the cluster");
            Identity {
                cluster,
                store,
                pd: true,
                region: Some(HostedRegion {
                    region: region.id,
                    peer,
                }),
            }
        }
        Joined::Registered { cluster } => {
            tracing::info!(%store, %cluster, "joined the cluster");
            Identity {
                cluster,
                store,
                pd: true,
                region: None,
            }
        }
    };
    Ok(identity)
}

/// What was last reported for a region.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Reported {
    epoch: RegionEpoch,
    term: u64,
    at: Instant,
}

impl PdLink {
    /// Starts the heartbeat thread; it stops soon after `stop` is set.
    pub fn spawn(
        self,
        cfg: Arc<NodeConfig>,
        identity: Identity,
        inboxes: Vec<Inbox>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("pd-link".into())
            .spawn(move || {
                let PdLink { rt, client } = self;
                rt.block_on(heartbeats(&client, &cfg, identity, &inboxes, &stop));
            })
    }
}

async fn heartbeats(
    client: &PdClient,
    cfg: &NodeConfig,
    identity: Identity,
    inboxes: &[Inbox],
    stop: &AtomicBool,
) {
    let mut reported: HashMap<RegionId, Reported> = HashMap::new();
    let mut next_store_hb = Instant::now();
    let mut failing = false;
    let mut backoff_until = Instant::now();
    let mut backoff = Duration::from_millis(POLL_MS);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        let now = Instant::now();
        if now < backoff_until {
            continue;
        }
        let reports = collect(inboxes).await;
        let mut result = Ok(());
        if now >= next_store_hb {
            let stats = store_stats(cfg, &reports);
            result = client.store_heartbeat(identity.store, stats).await;
            if result.is_ok() {
                next_store_hb = now + Duration::from_millis(STORE_HEARTBEAT_MS);
            }
        }
        for shard in &reports {
            if result.is_err() {
                break;
            }
            for r in shard.regions.iter().filter(|r| r.is_leader) {
                let due = reported.get(&r.meta.id).is_none_or(|p| {
                    p.epoch != r.meta.epoch
                        || p.term != r.term
                        || now.duration_since(p.at) >= Duration::from_millis(REGION_HEARTBEAT_MS)
                });
                if !due {
                    continue;
                }
                let hb = region_heartbeat(r);
                match client.region_heartbeat(hb).await {
                    Ok(_operator) => {
                        reported.insert(
                            r.meta.id,
                            Reported {
                                epoch: r.meta.epoch,
                                term: r.term,
                                at: now,
                            },
                        );
                    }
                    Err(PdClientError::Server(e)) => {
                        // A stale epoch or a refused report: log, try later.
                        tracing::warn!(region = %r.meta.id, error = %e, "region heartbeat refused");
                        reported.insert(
                            r.meta.id,
                            Reported {
                                epoch: r.meta.epoch,
                                term: r.term,
                                at: now,
                            },
                        );
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        match result {
            Ok(()) => {
                if failing {
                    tracing::info!("the PD is reachable again");
                }
                failing = false;
                backoff = Duration::from_millis(POLL_MS);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot reach the PD; still serving, retrying");
                }
                failing = true;
                backoff_until = Instant::now() + backoff;
                backoff = (backoff * 2).min(Duration::from_millis(STORE_HEARTBEAT_MS));
            }
        }
    }
}

/// Asks every shard what it hosts (shards answer from memory).
async fn collect(inboxes: &[Inbox]) -> Vec<ShardReport> {
    let mut out = Vec::with_capacity(inboxes.len());
    for inbox in inboxes {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if inbox.try_send(ShardMsg::Report { reply: tx }).is_err() {
            continue; // full (busy) or stopping: skip this round
        }
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(REPORT_TIMEOUT_MS), rx).await
        {
            out.push(r);
        }
    }
    out
}

fn region_heartbeat(r: &crate::shard::RegionReport) -> RegionHeartbeat {
    let region = Region {
        id: r.meta.id,
        start: r.meta.start.clone(),
        end: r.meta.end.clone(),
        epoch: r.meta.epoch,
        peers: r
            .meta
            .peers
            .iter()
            .map(|p| Peer {
                id: p.id,
                store: p.store,
                shard: p.shard,
                role: PeerRole::Voter,
            })
            .collect(),
    };
    RegionHeartbeat {
        region,
        leader: r.peer,
        term: r.term,
        stats: RegionStats {
            approximate_size_bytes: r.bytes,
            ..RegionStats::default()
        },
    }
}

fn store_stats(cfg: &NodeConfig, reports: &[ShardReport]) -> StoreStats {
    let shards: Vec<ShardLoad> = reports
        .iter()
        .map(|s| ShardLoad {
            shard: s.shard,
            region_count: s.regions.len() as u32,
            leader_count: s.regions.iter().filter(|r| r.is_leader).count() as u32,
            busy_permille: 0,
        })
        .collect();
    let (capacity_bytes, available) = disk_space(&cfg.data_dir).unwrap_or((0, 0));
    StoreStats {
        capacity_bytes,
        used_bytes: capacity_bytes.saturating_sub(available),
        region_count: shards.iter().map(|s| s.region_count).sum(),
        leader_count: shards.iter().map(|s| s.leader_count).sum(),
        read_bytes_per_sec: 0,
        written_bytes_per_sec: 0,
        shards,
    }
}

/// Total and available bytes of the file system holding `dir` (statvfs;
/// called on the link's thread, never on a shard).
fn disk_space(dir: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data; zeroed is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string; `st` a valid out pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}
