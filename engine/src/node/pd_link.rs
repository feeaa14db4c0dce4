//! The node's link to the Placement Driver (`--pd`).
//!
//! Owns joining the cluster at start and the heartbeats afterwards. At start
//! (on the main thread, before any shard serves): a new data directory gets
//! a store id from the PD (`AllocIds`, kept in `JOINING` until `IDENTITY`
//! is written), then calls `JoinCluster` until the cluster exists — the PD
//! bootstraps it once `--initial-replicas` stores have joined — and either
//! hosts a peer of the first region the PD created (all its ids from the
//! PD) or is a registered store hosting nothing; a known directory
//! re-registers its persisted store (`PutStore`), must belong to the PD's
//! cluster, and fetches the PD's view of its region. Either way the node
//! starts its shards with that region (`JoinedNode::initial_region`, the
//! replica to create if the WAL does not have it) and the store address
//! book (`GetStores`). After start, one thread (`pd-link`, a
//! current-thread tokio runtime) refreshes the book every `STORE_BOOK_MS`
//! (and at once) and hands a changed one to every shard
//! (`ShardMsg::Stores`), asks every shard what it hosts over the shard
//! inboxes, sends a store heartbeat every `STORE_HEARTBEAT_MS` (with each
//! shard's region and leader counts and busy time) and region heartbeats
//! for the regions led here (size, keys and a split key from the LSM's
//! block indexes; load since the region's last report). A region is
//! reported at the next poll when its epoch or term changed, every
//! `REGION_OPERATOR_HEARTBEAT_MS` while the PD hands it operator steps or
//! one of its peers is on a store the PD sees down or offline (repair
//! starts within a second of the PD's verdict, not at the next periodic
//! report), every `REGION_STATS_HEARTBEAT_MS` while its load or size changes, and
//! every `REGION_HEARTBEAT_MS` otherwise; at most
//! `REGION_HEARTBEATS_PER_POLL_MAX` per poll, most urgent first (many
//! regions never flood the PD: past the cap, reports only come later). An
//! operator in a heartbeat's answer goes to the shard hosting the region
//! (`ShardMsg::Operator`, never waiting: a full inbox drops it and the PD
//! sends it again).
//!
//! Invariants: no shard thread ever waits on the PD (shards answer a
//! `ShardMsg::Report` from memory and receive the book with `try_send`; the
//! PD's latency is this thread's); while the PD is unreachable the node
//! keeps serving and this thread retries with a doubling backoff; the
//! cluster id of a PD-mode directory always comes from the PD, and a
//! directory of another cluster is refused; a stop signal ends the wait for
//! a forming cluster.

use super::identity::{self, HostedRegion, Identity};
use crate::config::NodeConfig;
use crate::shard::region_handle::RegionLoad;
use crate::shard::{Inbox, RegionReport, ShardMsg, ShardReport, StoreBook};
use golem_core::region::{PeerMeta, RegionMeta};
use golem_pd::client::{JoinProgress, Joined, PdClient, PdClientConfig, PdClientError};
use golem_wire::pd::{
    Peer, PeerRole, Region, RegionHeartbeat, RegionStats, ShardLoad, Store, StoreInfo, StoreStats,
};
use golem_wire::{ClusterId, GolemError, RegionEpoch, RegionId, ShardId, StoreId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interval of store heartbeats, in ms (the PD marks a store Disconnected
/// after 20 s of silence, and refuses a down time below two of these).
pub const STORE_HEARTBEAT_MS: u64 = golem_wire::pd::PD_STORE_HEARTBEAT_MS;
/// A region led here is reported at least this often, in ms.
pub const REGION_HEARTBEAT_MS: u64 = 10_000;
/// A region whose load or approximate size changed is reported this often,
/// in ms (the PD's load and size views lag by about this much).
pub const REGION_STATS_HEARTBEAT_MS: u64 = 2_000;
/// A region the PD answered with an operator step is reported this often
/// until it answers without one, in ms: the PD sees a step done (and hands
/// out the next) or re-sends a busy one at this pace.
pub const REGION_OPERATOR_HEARTBEAT_MS: u64 = 1_000;
/// Most region heartbeats per poll (each is one PD round trip; at
/// `POLL_MS` = 500 that is at most 512 per second from one node).
pub const REGION_HEARTBEATS_PER_POLL_MAX: usize = 256;
/// How often the link looks for changed regions, in ms.
pub const POLL_MS: u64 = 500;
/// Budget of one PD call from the link, retries included, in ms.
const CALL_TIMEOUT_MS: u64 = 3_000;
/// Backoff between failed joins at start, in ms.
const JOIN_BACKOFF_MIN_MS: u64 = 100;
const JOIN_BACKOFF_MAX_MS: u64 = 5_000;
/// Polls of a forming cluster (fewer stores than the PD's initial
/// replicas so far), in ms: doubling from the first to the second.
const JOIN_POLL_MIN_MS: u64 = 100;
const JOIN_POLL_MAX_MS: u64 = 1_000;
/// How often the link refreshes the store address book, in ms.
pub const STORE_BOOK_MS: u64 = 2_000;
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

/// What a node knows once it has joined: its identity, its link to the
/// PD, the PD's view of the region it hosts (the replica to create if the
/// WAL does not have it yet) and where the cluster's stores listen.
#[derive(Debug)]
pub struct JoinedNode {
    pub identity: Identity,
    pub link: PdLink,
    /// The hosted region with all its peers (`None`: hosts none, or the PD
    /// no longer knows it — then the WAL must have it).
    pub initial_region: Option<RegionMeta>,
    pub stores: Arc<StoreBook>,
}

/// Where one join attempt left the node.
enum Progress {
    /// No cluster yet: `stores` of `initial_replicas` candidates known.
    Waiting { stores: u32, initial_replicas: u32 },
    Done {
        identity: Identity,
        region: Option<Region>,
        stores: StoreBook,
    },
}

/// Joins the PD's cluster, waiting while it forms and retrying while the
/// PD is unreachable. Returns `Ok(None)` if a stop signal arrived first.
pub fn join(cfg: &NodeConfig, signals: &libc::sigset_t) -> Result<Option<JoinedNode>, JoinError> {
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
    let mut poll = JOIN_POLL_MIN_MS;
    let mut last_waiting = None;
    loop {
        let attempt = rt.block_on(try_join(cfg, &client, known, &mut new_store));
        let pause = match attempt {
            Ok(Progress::Done {
                identity,
                region,
                stores,
            }) => {
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
                    identity::remove_joining(&cfg.data_dir)?;
                }
                return Ok(Some(JoinedNode {
                    identity,
                    link: PdLink { rt, client },
                    initial_region: region.as_ref().map(region_meta),
                    stores: Arc::new(stores),
                }));
            }
            Ok(Progress::Waiting {
                stores,
                initial_replicas,
            }) => {
                backoff = JOIN_BACKOFF_MIN_MS;
                if last_waiting != Some(stores) {
                    tracing::info!(
                        stores,
                        initial_replicas,
                        "waiting for the cluster to form ({stores} of {initial_replicas} stores joined)"
                    );
                    last_waiting = Some(stores);
                }
                let p = poll;
                poll = (poll * 2).min(JOIN_POLL_MAX_MS);
                p
            }
            Err(AttemptError::Io(e)) => return Err(JoinError::Io(e)),
            Err(AttemptError::Pd(PdClientError::Server(e))) => return Err(JoinError::Refused(e)),
            Err(AttemptError::Pd(e)) => {
                tracing::warn!(error = %e, retry_in_ms = backoff, "cannot reach the PD; retrying");
                let b = backoff;
                backoff = (backoff * 2).min(JOIN_BACKOFF_MAX_MS);
                b
            }
        };
        if crate::signals::wait_timeout(signals, Duration::from_millis(pause))?.is_some() {
            return Ok(None);
        }
    }
}

/// One attempt: registers the store (a new directory: joins), fetches the
/// hosted region and the store book. Idempotent: every step may be
/// repeated by the next attempt.
async fn try_join(
    cfg: &NodeConfig,
    client: &PdClient,
    known: Option<Identity>,
    new_store: &mut Option<StoreId>,
) -> Result<Progress, AttemptError> {
    let (identity, region) = match known {
        Some(id) => {
            // The cluster is checked by the caller, from the handshake.
            client.put_store(store_of(cfg, id.store)).await?;
            let region = match id.region {
                None => None,
                Some(h) => match client.get_region_by_id(h.region).await {
                    Ok(route) => Some(route.region),
                    Err(PdClientError::Server(GolemError::UnknownRegion { .. })) => {
                        tracing::warn!(region = %h.region, "the PD does not know this node's region; recovering it from the WAL only");
                        None
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            (id, region)
        }
        None => {
            let store = match *new_store {
                Some(s) => s,
                None => {
                    let s = match identity::load_joining(&cfg.data_dir).map_err(AttemptError::Io)? {
                        Some(s) => s,
                        None => {
                            let s = StoreId(client.alloc_ids(1).await?.start);
                            identity::save_joining(&cfg.data_dir, s).map_err(AttemptError::Io)?;
                            s
                        }
                    };
                    *new_store = Some(s);
                    s
                }
            };
            match client.join_once(store_of(cfg, store)).await? {
                JoinProgress::Waiting {
                    stores,
                    initial_replicas,
                } => {
                    return Ok(Progress::Waiting {
                        stores,
                        initial_replicas,
                    })
                }
                JoinProgress::Joined(Joined::Bootstrapped { cluster, region }) => {
                    let peer = region
                        .peers
                        .iter()
                        .find(|p| p.store == store)
                        .map(|p| p.id)
                        .ok_or_else(|| {
                            PdClientError::Unexpected("the first region has no peer here".into())
                        })?;
                    tracing::info!(%store, %cluster, region = %region.id, %peer, voters = region.peers.len(), "joined the cluster with a peer of its first region");
                    let identity = Identity {
                        cluster,
                        store,
                        pd: true,
                        region: Some(HostedRegion {
                            region: region.id,
                            peer,
                        }),
                    };
                    (identity, Some(region))
                }
                JoinProgress::Joined(Joined::Registered { cluster }) => {
                    tracing::info!(%store, %cluster, "joined the cluster");
                    let identity = Identity {
                        cluster,
                        store,
                        pd: true,
                        region: None,
                    };
                    (identity, None)
                }
            }
        }
    };
    let stores = store_book(&client.get_stores(false).await?);
    Ok(Progress::Done {
        identity,
        region,
        stores,
    })
}

/// Why one join attempt failed: the PD (retried unless it refused), or
/// the data directory (fatal).
enum AttemptError {
    Pd(PdClientError),
    Io(std::io::Error),
}

impl From<PdClientError> for AttemptError {
    fn from(e: PdClientError) -> Self {
        AttemptError::Pd(e)
    }
}

/// The PD's region as a region peer's metadata: its voters and where they
/// live (learners are not peers of a new replica's configuration).
pub fn region_meta(r: &Region) -> RegionMeta {
    RegionMeta {
        id: r.id,
        start: r.start.clone(),
        end: r.end.clone(),
        epoch: r.epoch,
        peers: r
            .peers
            .iter()
            .filter(|p| p.role == PeerRole::Voter)
            .map(|p| PeerMeta::new(p.id, p.store, p.shard))
            .collect(),
    }
}

/// Store id → shard-0 address, from the PD's store list (an address that
/// does not parse is left out; the PD accepts only `ip:port`).
pub fn store_book(stores: &[StoreInfo]) -> StoreBook {
    stores
        .iter()
        .filter_map(|s| Some((s.store.id, s.store.addr.parse().ok()?)))
        .collect()
}

/// What was last reported for a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reported {
    epoch: RegionEpoch,
    term: u64,
    at: Instant,
    /// The region's cumulative load then (the next report sends the
    /// difference).
    load: RegionLoad,
    /// Approximate bytes and keys then.
    size: (u64, u64),
    /// Whether the PD answered with an operator step.
    operator: bool,
}

impl Reported {
    fn of(r: &RegionReport, at: Instant, operator: bool) -> Reported {
        Reported {
            epoch: r.meta.epoch,
            term: r.term,
            at,
            load: r.load,
            size: size_of(r),
            operator,
        }
    }
}

fn size_of(r: &RegionReport) -> (u64, u64) {
    r.estimate.as_ref().map_or((0, 0), |e| (e.bytes, e.keys))
}

/// Why a region's heartbeat is due, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// Never reported by this link, or a new epoch or term.
    Changed,
    /// The PD is handing out operator steps for it.
    Operator,
    /// A peer of it is on a store the PD sees down or offline: the PD's
    /// replica checker acts on its next report (repair waits for no
    /// periodic heartbeat).
    Repair,
    /// Its load or approximate size changed.
    Stats,
    /// `REGION_HEARTBEAT_MS` without a report.
    Periodic,
}

/// Whether leader report `r` is due at `now`, given the last report.
fn due(prev: Option<&Reported>, r: &RegionReport, now: Instant) -> Option<Due> {
    let Some(p) = prev else {
        return Some(Due::Changed);
    };
    if p.epoch != r.meta.epoch || p.term != r.term {
        return Some(Due::Changed);
    }
    let since = now.saturating_duration_since(p.at);
    if p.operator && since >= Duration::from_millis(REGION_OPERATOR_HEARTBEAT_MS) {
        return Some(Due::Operator);
    }
    if since >= Duration::from_millis(REGION_STATS_HEARTBEAT_MS)
        && (p.load != r.load || p.size != size_of(r))
    {
        return Some(Due::Stats);
    }
    (since >= Duration::from_millis(REGION_HEARTBEAT_MS)).then_some(Due::Periodic)
}

/// `due`, or `Due::Repair` every `REGION_OPERATOR_HEARTBEAT_MS` while a
/// peer of the region is on a store in `evacuating` (down or offline, as
/// the PD last said), whichever is more urgent.
fn due_or_repair(
    prev: Option<&Reported>,
    r: &RegionReport,
    now: Instant,
    evacuating: &HashSet<StoreId>,
) -> Option<Due> {
    let d = due(prev, r, now);
    let repair = prev.is_some_and(|p| {
        now.saturating_duration_since(p.at) >= Duration::from_millis(REGION_OPERATOR_HEARTBEAT_MS)
    }) && r.meta.peers.iter().any(|p| evacuating.contains(&p.store));
    match d {
        Some(d) if !repair || d <= Due::Repair => Some(d),
        _ if repair => Some(Due::Repair),
        d => d,
    }
}

/// The leader reports due at `now`, most urgent (then least recently
/// reported) first, at most `REGION_HEARTBEATS_PER_POLL_MAX`; `evacuating`:
/// stores the PD sees down or offline.
fn due_reports<'a>(
    reports: &'a [ShardReport],
    reported: &HashMap<RegionId, Reported>,
    now: Instant,
    evacuating: &HashSet<StoreId>,
) -> Vec<(ShardId, &'a RegionReport)> {
    let mut due_now: Vec<(Due, Option<Instant>, ShardId, &RegionReport)> = reports
        .iter()
        .flat_map(|s| s.regions.iter().map(move |r| (s.shard, r)))
        .filter(|(_, r)| r.is_leader)
        .filter_map(|(shard, r)| {
            let prev = reported.get(&r.meta.id);
            due_or_repair(prev, r, now, evacuating).map(|d| (d, prev.map(|p| p.at), shard, r))
        })
        .collect();
    due_now.sort_by_key(|(d, at, _, _)| (*d, *at));
    due_now.truncate(REGION_HEARTBEATS_PER_POLL_MAX);
    due_now.into_iter().map(|(_, _, s, r)| (s, r)).collect()
}

impl PdLink {
    /// Starts the heartbeat thread; it stops soon after `stop` is set.
    /// `stores` is the book every shard started with.
    pub fn spawn(
        self,
        cfg: Arc<NodeConfig>,
        identity: Identity,
        inboxes: Vec<Inbox>,
        stores: Arc<StoreBook>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("pd-link".into())
            .spawn(move || {
                let PdLink { rt, client } = self;
                let mut books = BookSender::new(inboxes.len(), stores);
                rt.block_on(heartbeats(
                    &client, &cfg, identity, &inboxes, &mut books, &stop,
                ));
            })
    }
}

/// The store book each shard was last given, and the current one.
struct BookSender {
    current: Arc<StoreBook>,
    /// Per shard: whether it holds `current` (a full inbox skipped it).
    delivered: Vec<bool>,
}

impl BookSender {
    fn new(shards: usize, start: Arc<StoreBook>) -> BookSender {
        BookSender {
            current: start,
            delivered: vec![true; shards],
        }
    }

    /// Takes a freshly fetched book; a changed one is owed to every shard.
    fn update(&mut self, book: StoreBook) {
        if *self.current != book {
            tracing::info!(stores = book.len(), "the store address book changed");
            self.current = Arc::new(book);
            self.delivered.iter_mut().for_each(|d| *d = false);
        }
    }

    /// Sends the current book to every shard that does not hold it yet
    /// (never waits: a full inbox gets it at the next call).
    fn deliver(&mut self, inboxes: &[Inbox]) {
        for (inbox, done) in inboxes.iter().zip(self.delivered.iter_mut()) {
            if !*done {
                *done = inbox
                    .try_send(ShardMsg::Stores(self.current.clone()))
                    .is_ok();
            }
        }
    }
}

async fn heartbeats(
    client: &PdClient,
    cfg: &NodeConfig,
    identity: Identity,
    inboxes: &[Inbox],
    books: &mut BookSender,
    stop: &AtomicBool,
) {
    let mut reported: HashMap<RegionId, Reported> = HashMap::new();
    // Stores the PD sees down or offline (from the last store book fetch).
    let mut evacuating: HashSet<StoreId> = HashSet::new();
    let mut last_store_hb = StoreHbState::default();
    let mut next_store_hb = Instant::now();
    let mut next_book = Instant::now();
    let mut failing = false;
    let mut backoff_until = Instant::now();
    let mut backoff = Duration::from_millis(POLL_MS);
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !first {
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        first = false;
        books.deliver(inboxes);
        let now = Instant::now();
        if now < backoff_until {
            continue;
        }
        let mut result = Ok(());
        if now >= next_book {
            match client.get_stores(false).await {
                Ok(stores) => {
                    books.update(store_book(&stores));
                    books.deliver(inboxes);
                    // Regions asleep under a leader on a silent store elect
                    // no new leader by themselves (hibernation): wake them.
                    let silent: std::collections::HashSet<StoreId> = stores
                        .iter()
                        .filter(|s| {
                            s.store.id != identity.store
                                && matches!(
                                    s.state,
                                    golem_wire::pd::StoreState::Disconnected
                                        | golem_wire::pd::StoreState::Down
                                )
                        })
                        .map(|s| s.store.id)
                        .collect();
                    evacuating = stores
                        .iter()
                        .filter(|s| {
                            matches!(
                                s.state,
                                golem_wire::pd::StoreState::Down
                                    | golem_wire::pd::StoreState::Offline
                            )
                        })
                        .map(|s| s.store.id)
                        .collect();
                    if !silent.is_empty() {
                        let silent = Arc::new(silent);
                        for inbox in inboxes {
                            // A full inbox gets it at the next refresh.
                            let _ = inbox.try_send(ShardMsg::WakeLedBy(silent.clone()));
                        }
                    }
                    next_book = now + Duration::from_millis(STORE_BOOK_MS);
                }
                Err(e) => result = Err(e),
            }
        }
        let reports = if result.is_ok() {
            collect(inboxes).await
        } else {
            Vec::new()
        };
        if result.is_ok() && now >= next_store_hb {
            let stats = store_stats(cfg, &reports, &mut last_store_hb);
            result = client.store_heartbeat(identity.store, stats).await;
            if result.is_ok() {
                next_store_hb = now + Duration::from_millis(STORE_HEARTBEAT_MS);
            }
        }
        if result.is_ok() {
            for (shard, r) in due_reports(&reports, &reported, now, &evacuating) {
                let hb = region_heartbeat(r, reported.get(&r.meta.id), now);
                match client.region_heartbeat(hb).await {
                    Ok(operator) => {
                        let has_operator = operator.is_some();
                        if let Some(op) = operator {
                            deliver_operator(inboxes, shard, op);
                        }
                        reported.insert(r.meta.id, Reported::of(r, now, has_operator));
                    }
                    Err(PdClientError::Server(e)) => {
                        // A stale epoch or a refused report: log, try later.
                        tracing::warn!(region = %r.meta.id, error = %e, "region heartbeat refused");
                        reported.insert(r.meta.id, Reported::of(r, now, false));
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            // Forget regions no longer led here (all shards answered).
            if reports.len() == inboxes.len() && reported.len() > REGION_HEARTBEATS_PER_POLL_MAX {
                let led: std::collections::HashSet<RegionId> = reports
                    .iter()
                    .flat_map(|s| s.regions.iter())
                    .filter(|r| r.is_leader)
                    .map(|r| r.meta.id)
                    .collect();
                reported.retain(|id, _| led.contains(id));
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

/// Asks every shard what it hosts (shards answer from memory and the
/// LSM's block indexes).
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

/// Hands an operator to the shard hosting its region, never waiting: a
/// full or closed inbox drops it (the PD sends it again).
fn deliver_operator(inboxes: &[Inbox], shard: ShardId, op: golem_wire::pd::Operator) {
    let Some(inbox) = inboxes.get(shard.get() as usize) else {
        return;
    };
    let (id, region) = (op.id, op.region);
    if inbox.try_send(ShardMsg::Operator(op)).is_err() {
        tracing::debug!(operator = id, %region, %shard, "shard inbox full; operator dropped (the PD re-sends it)");
    }
}

fn region_heartbeat(r: &RegionReport, prev: Option<&Reported>, now: Instant) -> RegionHeartbeat {
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
                // A joint configuration's incoming voter already votes;
                // a demoting one still does until the joint state is left.
                role: if p.role == golem_core::region::PeerRole::Learner {
                    PeerRole::Learner
                } else {
                    PeerRole::Voter
                },
            })
            .collect(),
    };
    RegionHeartbeat {
        region,
        leader: r.peer,
        term: r.term,
        stats: region_stats(r, prev, now),
    }
}

/// A region's stats: its size estimate, and its load since the previous
/// report (none in a first report: `interval_ms` 0).
fn region_stats(r: &RegionReport, prev: Option<&Reported>, now: Instant) -> RegionStats {
    let (load, interval_ms) = match prev {
        Some(p) => (
            r.load.since(&p.load),
            now.saturating_duration_since(p.at)
                .as_millis()
                .min(u32::MAX as u128) as u32,
        ),
        None => (RegionLoad::default(), 0),
    };
    let (approximate_size_bytes, approximate_keys) = size_of(r);
    RegionStats {
        approximate_size_bytes,
        approximate_keys,
        read_bytes: load.read_bytes,
        read_keys: load.read_keys,
        written_bytes: load.written_bytes,
        written_keys: load.written_keys,
        interval_ms,
        split_key: r.estimate.as_ref().and_then(|e| e.middle_key.clone()),
        sampled_keys: r.sampled_keys.clone(),
    }
}

/// What the previous store heartbeat saw: each shard's CPU time, and the
/// store's total load.
#[derive(Default)]
struct StoreHbState {
    cpu: HashMap<ShardId, (u64, Instant)>,
    load: Option<(RegionLoad, Instant)>,
}

/// Busy time in thousandths of the wall time between two CPU readings.
fn busy_permille(before: (u64, Instant), after: (u64, Instant)) -> u16 {
    let wall = after.1.saturating_duration_since(before.1).as_nanos();
    if wall == 0 {
        return 0;
    }
    let busy = u128::from(after.0.saturating_sub(before.0));
    (busy * 1000 / wall).min(1000) as u16
}

fn store_stats(cfg: &NodeConfig, reports: &[ShardReport], last: &mut StoreHbState) -> StoreStats {
    let shards: Vec<ShardLoad> = reports
        .iter()
        .map(|s| {
            let now = (s.cpu_ns, s.at);
            let busy = last
                .cpu
                .insert(s.shard, now)
                .map_or(0, |before| busy_permille(before, now));
            ShardLoad {
                shard: s.shard,
                region_count: s.regions.len() as u32,
                leader_count: s.regions.iter().filter(|r| r.is_leader).count() as u32,
                busy_permille: busy,
            }
        })
        .collect();
    // The store's load: the sum over its regions' counters (a region that
    // left takes its counts with it; the difference then undercounts).
    let total =
        reports
            .iter()
            .flat_map(|s| s.regions.iter())
            .fold(RegionLoad::default(), |mut t, r| {
                t.read_bytes += r.load.read_bytes;
                t.written_bytes += r.load.written_bytes;
                t
            });
    let now = Instant::now();
    let (read_bytes_per_sec, written_bytes_per_sec) = match last.load.replace((total, now)) {
        Some((before, at)) => {
            let ms = now.saturating_duration_since(at).as_millis().max(1) as u64;
            let per_sec = |now: u64, then: u64| now.saturating_sub(then).saturating_mul(1000) / ms;
            (
                per_sec(total.read_bytes, before.read_bytes),
                per_sec(total.written_bytes, before.written_bytes),
            )
        }
        None => (0, 0),
    };
    let (capacity_bytes, available) = disk_space(&cfg.data_dir).unwrap_or((0, 0));
    StoreStats {
        capacity_bytes,
        used_bytes: capacity_bytes.saturating_sub(available),
        region_count: shards.iter().map(|s| s.region_count).sum(),
        leader_count: shards.iter().map(|s| s.leader_count).sum(),
        read_bytes_per_sec,
        written_bytes_per_sec,
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

#[cfg(test)]
mod tests;
