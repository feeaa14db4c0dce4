//! A shard: one executor thread owning a set of regions, its WAL and its
//! listener.
//!
//! Owns the per-shard state and start-up: open the LSM (the state-machine
//! store), open the WAL, recover (or bootstrap) the regions this shard owns
//! by replaying each region's entries after what the LSM holds durably,
//! listen on `base_port + shard`, serve forwarded requests from other
//! shards, and run the raft loop until the node stops. Invariants: nothing
//! here is shared with another shard except through the inboxes (messages);
//! a shard serves no request before its WAL is recovered and its regions
//! rebuilt; the LSM is opened before the WAL is replayed (the replay starts
//! where the LSM's segments end).

pub mod directory;
pub mod exec;
pub mod fetch;
pub mod merge;
pub mod operator;
pub mod pacer;
pub mod raft_loop;
pub mod region_handle;
pub mod snapshot;
pub mod split;
pub mod transport;

use crate::config::NodeConfig;
use crate::node::identity::Identity;
use crate::runtime::{self, spawn_local, LocalNotify};
use crate::wal::{Wal, WalOptions};
use directory::RegionDirectory;
use golem_core::region::records::{entries_span, Tombstone};
use golem_core::region::{PeerConfig, PeerMeta, RegionMeta, RegionPeer};
use golem_core::wal_index::{RecordLocation, WalIndex};
use golem_core::wal_record::RecordKind;
use golem_lsm::{Lsm, LsmOptions};
use golem_wire::{RegionEpoch, RegionId, Request, Response, ShardId};
use region_handle::RegionHandle;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Capacity of each shard's inbox (messages from other shards).
pub const INBOX_MESSAGES_MAX: usize = 4096;

/// A message from another shard of this node.
#[derive(Debug)]
pub enum ShardMsg {
    /// A client request that landed on the wrong shard.
    Forward {
        req: Request,
        reply: oneshot::Sender<Response>,
    },
    /// The node's PD link asks what this shard hosts (for heartbeats).
    Report { reply: oneshot::Sender<ShardReport> },
    /// Where the cluster's stores listen (from the PD), for sending Raft
    /// messages to peers on other nodes. Replaces the previous book.
    Stores(Arc<StoreBook>),
    /// Raft messages for regions of this shard (from another shard's
    /// connection or raft loop).
    Raft(Vec<golem_wire::raft::RegionMessage>),
    /// Stores the PD sees as silent (disconnected or down): regions asleep
    /// under a leader on one of them wake up and elect a new leader
    /// (hibernating followers never time their leader out by themselves).
    WakeLedBy(Arc<std::collections::HashSet<golem_wire::StoreId>>),
    /// Another shard placed, re-ranged (`Some`) or dropped (`None`) one of
    /// this node's regions.
    Placements(Vec<PlacementChange>),
    /// The PD's operator for a region of this shard (from the PD link,
    /// which got it in a region heartbeat's answer): run its step if this
    /// shard leads the region at the operator's epoch (`operator.rs`).
    Operator(golem_wire::pd::Operator),
}

/// Store id → the address of its shard 0 (shard `j` listens on that port
/// plus `j`).
pub type StoreBook = HashMap<golem_wire::StoreId, std::net::SocketAddr>;

/// What one shard hosts, for the PD's heartbeats.
#[derive(Clone, Debug)]
pub struct ShardReport {
    pub shard: ShardId,
    pub regions: Vec<RegionReport>,
    /// CPU time the shard's thread has used since it started, in ns (its
    /// busy time: the executor parks when idle), and when it was read.
    pub cpu_ns: u64,
    pub at: std::time::Instant,
}

/// One hosted region as its peer sees it.
#[derive(Clone, Debug)]
pub struct RegionReport {
    pub meta: RegionMeta,
    /// This shard's peer of the region.
    pub peer: golem_wire::PeerId,
    pub is_leader: bool,
    pub term: u64,
    /// A leader's size estimate of the region's data in the shard's
    /// segments (block indexes only, cached between segment changes);
    /// `None` for a follower (the PD hears from leaders only).
    pub estimate: Option<Arc<golem_lsm::RangeEstimate>>,
    /// Load served as leader, cumulative (see `RegionLoad`).
    pub load: region_handle::RegionLoad,
    /// Keys of requests served since the last report, sampled (taken).
    pub sampled_keys: Vec<Vec<u8>>,
}

/// How long a vote request for a region not hosted yet is kept.
pub const PENDING_VOTE_TTL: Duration = Duration::from_secs(2);
/// Regions with kept vote requests at most.
pub const PENDING_VOTE_REGIONS_MAX: usize = 4096;

/// Vote requests kept per region until it is created here.
type PendingVotes = HashMap<RegionId, (std::time::Instant, Vec<golem_wire::raft::RegionMessage>)>;

/// A placement change for other shards' directories.
pub type PlacementChange = (RegionId, ShardId, Option<directory::Placement>);

/// Sending side of a shard's inbox.
pub type Inbox = mpsc::Sender<ShardMsg>;

/// The state of one shard, shared by its tasks (never by other threads).
#[derive(Debug)]
pub struct Shard {
    pub id: ShardId,
    pub cfg: Arc<NodeConfig>,
    pub identity: Identity,
    pub directory: RegionDirectory,
    pub regions: RefCell<HashMap<RegionId, Rc<RegionHandle>>>,
    /// The shard's state-machine store (all its regions' applied data).
    /// Borrowed briefly, never across an `.await`.
    pub store: Rc<RefCell<Lsm>>,
    /// Inboxes of all shards, indexed by shard id (this one included).
    pub inboxes: Vec<Inbox>,
    /// Set once the node is stopping: new requests get `ShuttingDown`.
    pub stopping: Cell<bool>,
    /// Where other stores listen (updated by the PD link).
    pub stores: RefCell<Arc<StoreBook>>,
    /// Bumped whenever a region is added to or removed from `regions`
    /// (the raft loop refreshes its list then).
    pub regions_gen: Cell<u64>,
    /// Snapshot streams and installs (`snapshot.rs`).
    pub snapshots: snapshot::Snapshots,
    /// New regions of splits, and their gates after a restart (`split.rs`).
    pub split: split::SplitBook,
    /// Merged sources awaiting their tombstone, merge driver tasks (`merge.rs`).
    pub merge: merge::MergeBook,
    /// Wakes the raft loop.
    pub notify: Rc<LocalNotify>,
    /// Replicas removed from this shard: region → the removed peer id and
    /// the entry that removed it. Messages to that peer never re-create it;
    /// they are answered with that entry (`transport::deliver`); the WAL
    /// keeps a `Tombstone` record of each (re-written before old segments
    /// go).
    pub tombstones: RefCell<HashMap<RegionId, Tombstone>>,
    /// Vote requests for regions not hosted yet, by region: (first seen,
    /// messages). See `stash_vote`.
    pending_votes: RefCell<PendingVotes>,
    /// Stale-replica and removal notices to send (store, shard, message):
    /// see `transport::deliver`.
    pub gc_notices: RefCell<
        Vec<(
            golem_wire::StoreId,
            ShardId,
            golem_wire::raft::RegionMessage,
        )>,
    >,
    /// Replicas told they are no longer members: the raft loop destroys
    /// them (data range deleted, tombstone written).
    pub doomed: RefCell<std::collections::HashSet<RegionId>>,
    /// Regions the raft loop visits next pass (see `RegionHandle::poke`).
    pub active: Rc<region_handle::ActiveSet>,
    /// The PD's operator steps running on this shard's regions.
    pub operators: operator::Operators,
    /// Placement changes not yet sent to each shard (index: shard).
    placement_out: RefCell<Vec<Vec<PlacementChange>>>,
    connections: Cell<usize>,
    requests: Rc<Cell<usize>>,
}

/// Decrements a counter when dropped.
#[derive(Debug)]
pub struct CountGuard(Rc<Cell<usize>>);

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Decrements the shard's connection count when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Rc<Shard>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.set(self.0.connections.get() - 1);
    }
}

impl Shard {
    /// Counts a new connection, or None when the shard is at its limit.
    pub fn connection_opened(self: &Rc<Self>) -> Option<ConnectionGuard> {
        if self.connections.get() >= self.cfg.connections_per_shard_max {
            return None;
        }
        self.connections.set(self.connections.get() + 1);
        Some(ConnectionGuard(self.clone()))
    }

    /// Counts a request in progress until the guard drops.
    pub fn request_started(&self) -> CountGuard {
        self.requests.set(self.requests.get() + 1);
        CountGuard(self.requests.clone())
    }

    /// The configuration of this node's peer `peer` of `region`.
    pub fn peer_config(&self, region: RegionId, peer: golem_wire::PeerId) -> PeerConfig {
        PeerConfig {
            election_ticks: self.cfg.election_ticks,
            heartbeat_ticks: self.cfg.heartbeat_ticks,
            log_retain_entries_min: self.cfg.raft_log_retain_entries,
            hibernate_after_ticks: if self.cfg.hibernate_regions {
                PeerConfig::HIBERNATE_AFTER_TICKS_DEFAULT
            } else {
                0
            },
            ..PeerConfig::new(region, peer)
        }
    }

    /// Wraps a peer of this shard in its handle.
    pub fn handle(&self, peer: RegionPeer) -> Rc<RegionHandle> {
        RegionHandle::new(
            peer,
            self.notify.clone(),
            self.active.clone(),
            self.store.clone(),
            lease_duration(&self.cfg),
        )
    }

    /// Adds a region to this shard (the raft loop picks it up) and, once it
    /// is initialized, tells every shard where it lives.
    pub fn insert_region(&self, handle: Rc<RegionHandle>) {
        let id = handle.peer.borrow().meta().id;
        self.regions.borrow_mut().insert(id, handle);
        self.regions_gen.set(self.regions_gen.get() + 1);
        self.announce(id);
        self.notify.notify();
        let stashed = self.pending_votes.borrow_mut().remove(&id);
        if let Some((at, msgs)) = stashed {
            if at.elapsed() < PENDING_VOTE_TTL {
                transport::deliver(self, msgs);
            }
        }
    }

    /// Keeps a vote request for a region not hosted here yet (bounded:
    /// `PENDING_VOTE_REGIONS_MAX` regions, 4 messages each, dropped after
    /// `PENDING_VOTE_TTL`).
    pub fn stash_vote(&self, rm: golem_wire::raft::RegionMessage) {
        let mut pending = self.pending_votes.borrow_mut();
        if pending.len() >= PENDING_VOTE_REGIONS_MAX {
            pending.retain(|_, (at, _)| at.elapsed() < PENDING_VOTE_TTL);
            if pending.len() >= PENDING_VOTE_REGIONS_MAX {
                return;
            }
        }
        let entry = pending
            .entry(rm.region)
            .or_insert_with(|| (std::time::Instant::now(), Vec::new()));
        if entry.0.elapsed() >= PENDING_VOTE_TTL {
            *entry = (std::time::Instant::now(), Vec::new());
        }
        if entry.1.len() < 4 {
            entry.1.push(rm);
        }
    }

    /// Drops a region from this shard and tells every shard.
    pub fn remove_region(&self, id: RegionId) {
        self.regions.borrow_mut().remove(&id);
        self.regions_gen.set(self.regions_gen.get() + 1);
        self.snapshots.forget(id);
        self.operators.forget(id);
        self.broadcast(id, None);
    }

    /// Tells every shard (this one too) where region `id` lives and its
    /// range, if this shard hosts it initialized.
    pub fn announce(&self, id: RegionId) {
        let placement = self.regions.borrow().get(&id).and_then(|r| {
            let p = r.peer.borrow();
            p.is_initialized().then(|| directory::Placement {
                shard: self.id,
                start: p.meta().start.clone(),
                end: p.meta().end.clone(),
            })
        });
        if placement.is_some() {
            self.broadcast(id, placement);
        }
    }

    /// Tells every shard that region `id` no longer serves here (a merged
    /// source, still hosted until its tombstone).
    pub fn unannounce(&self, id: RegionId) {
        self.broadcast(id, None);
    }

    fn broadcast(&self, id: RegionId, placement: Option<directory::Placement>) {
        self.directory.update(id, self.id, placement.clone());
        let mut out = self.placement_out.borrow_mut();
        for (i, pending) in out.iter_mut().enumerate() {
            if i != self.id.get() as usize {
                pending.push((id, self.id, placement.clone()));
            }
        }
        drop(out);
        self.notify.notify();
    }

    /// Sends the placement changes made since the last call to the other
    /// shards, one message per shard; a full inbox keeps its changes for
    /// the next call (the raft loop calls this every pass), so no update
    /// is lost and the memory is bounded by the number of regions.
    pub fn flush_placements(&self) {
        let mut out = self.placement_out.borrow_mut();
        for (i, pending) in out.iter_mut().enumerate() {
            if pending.is_empty() {
                continue;
            }
            let batch = std::mem::take(pending);
            match self.inboxes[i].try_send(ShardMsg::Placements(batch)) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(ShardMsg::Placements(b))) => {
                    *pending = b;
                }
                Err(_) => {} // That shard stopped.
            }
        }
    }
}

/// What a shard thread needs to start.
#[derive(Debug)]
pub struct ShardStart {
    pub id: ShardId,
    pub cfg: Arc<NodeConfig>,
    pub identity: Identity,
    pub inbox: mpsc::Receiver<ShardMsg>,
    pub inboxes: Vec<Inbox>,
    /// Set by the node when it must stop.
    pub stop: Arc<AtomicBool>,
    /// Reports start-up success or failure to the node.
    pub ready: std::sync::mpsc::Sender<(ShardId, Result<(), String>)>,
    /// The node's region as the PD created it (all its peers), to create
    /// this node's replica on first start. None: a stand-alone node (its
    /// region is the whole key space with this node as the only voter).
    pub initial_region: Option<RegionMeta>,
    /// Where the cluster's stores listen, as known at start.
    pub stores: Arc<StoreBook>,
}

/// The body of a shard thread.
pub async fn run(start: ShardStart) {
    let ShardStart {
        id,
        cfg,
        identity,
        inbox,
        inboxes,
        stop,
        ready,
        initial_region,
        stores,
    } = start;
    let notify = LocalNotify::new();
    let lsm_dir = cfg.data_dir.join("lsm").join(format!("shard-{id}"));
    let lsm_opts = LsmOptions {
        memtable_bytes_max: cfg.memtable_bytes.max(1024),
        ..LsmOptions::default()
    };
    let store = match Lsm::open(&lsm_dir, lsm_opts) {
        Ok(lsm) => Rc::new(RefCell::new(lsm)),
        Err(e) => {
            let _ = ready.send((
                id,
                Err(format!("LSM of shard {id} at {}: {e}", lsm_dir.display())),
            ));
            return;
        }
    };
    let snapshots =
        match snapshot::Snapshots::open(&cfg.data_dir, id.get(), cfg.snapshot_send_bytes_per_sec) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send((id, Err(format!("snapshots of shard {id}: {e}"))));
                return;
            }
        };
    let shard = Rc::new(Shard {
        id,
        cfg: cfg.clone(),
        identity,
        directory: RegionDirectory::new(identity.region, id),
        regions: RefCell::new(HashMap::new()),
        store: store.clone(),
        inboxes,
        stopping: Cell::new(false),
        stores: RefCell::new(stores),
        regions_gen: Cell::new(0),
        snapshots,
        split: split::SplitBook::default(),
        merge: merge::MergeBook::default(),
        notify: notify.clone(),
        placement_out: RefCell::new(vec![Vec::new(); cfg.shards as usize]),
        active: Rc::new(RefCell::new(std::collections::HashSet::new())),
        operators: operator::Operators::default(),
        tombstones: RefCell::new(HashMap::new()),
        gc_notices: RefCell::new(Vec::new()),
        pending_votes: RefCell::new(HashMap::new()),
        doomed: RefCell::new(std::collections::HashSet::new()),
        connections: Cell::new(0),
        requests: Rc::new(Cell::new(0)),
    });
    let (wal, listener, index) = match open(&shard, initial_region).await {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send((id, Err(e)));
            return;
        }
    };
    spawn_local(crate::server::accept_loop(shard.clone(), listener)).detach();
    spawn_local(serve_inbox(shard.clone(), inbox)).detach();
    {
        let shard = shard.clone();
        let notify = notify.clone();
        spawn_local(async move {
            while !stop.load(Ordering::Relaxed) {
                runtime::sleep(Duration::from_millis(20)).await;
            }
            shard.stopping.set(true);
            notify.notify();
        })
        .detach();
    }
    let _ = ready.send((id, Ok(())));
    let stopping = {
        let shard = shard.clone();
        move || shard.stopping.get()
    };
    let tick = Duration::from_millis(cfg.tick_ms);
    let shell = raft_loop::Shell {
        wal,
        store,
        index,
        notify: notify.clone(),
        transport: transport::Transport::new(shard.clone()),
    };
    let _shell = raft_loop::run(shard.clone(), shell, notify, tick, stopping).await;
    // Give responses already computed a moment to reach their sockets.
    for _ in 0..50 {
        if shard.requests.get() == 0 {
            break;
        }
        runtime::sleep(Duration::from_millis(10)).await;
    }
    runtime::sleep(Duration::from_millis(20)).await;
    tracing::info!(shard = %id, "shard stopped");
}

/// Recovers the WAL and regions, and binds the listener. Also returns where
/// each region's entries lie in the WAL (for fetching old entries and
/// deleting segments).
async fn open(
    shard: &Rc<Shard>,
    initial_region: Option<RegionMeta>,
) -> Result<(Wal, glommio::net::TcpListener, WalIndex), String> {
    let cfg = &shard.cfg;
    let dir = cfg.data_dir.join("wal").join(format!("shard-{}", shard.id));
    let opts = WalOptions {
        segment_bytes: cfg.wal_segment_bytes,
        dsync_writes: cfg.wal_sync == crate::config::WalSyncMode::Dsync,
        ..WalOptions::default()
    };
    let (mut wal, records) = Wal::open(&dir, opts)
        .await
        .map_err(|e| format!("WAL of shard {} at {}: {e}", shard.id, dir.display()))?;
    // Only a brand-new WAL bootstraps the first region: a node whose WAL
    // holds nothing of it any more (removed) must not create it again.
    let wal_was_empty = records.iter().all(|r| r.kind == RecordKind::WalStart);
    let mut by_region: HashMap<RegionId, Vec<_>> = HashMap::new();
    let mut index = WalIndex::new();
    for r in records {
        if r.kind == RecordKind::Entries {
            let (first, last) = entries_span(&r.payload).map_err(|e| {
                format!(
                    "WAL segment {} offset {}: bad entries record of region {}: {e}",
                    r.segment, r.offset, r.region
                )
            })?;
            let location = RecordLocation {
                segment: r.segment,
                offset: r.offset,
                payload_bytes: r.payload.len() as u32,
            };
            index.insert(r.region, first, last, location);
        }
        by_region
            .entry(r.region)
            .or_default()
            .push((r.kind, r.payload));
    }
    let hosted = shard.directory.hosted();
    // Snapshot installs a crash interrupted are finished first: recovery
    // needs the store to hold what the WAL's log start says.
    let log_starts: HashMap<RegionId, u64> = by_region
        .iter()
        .filter_map(|(region, records)| log_start_of(records).map(|i| (*region, i)))
        .collect();
    shard
        .snapshots
        .recover_files(&mut shard.store.borrow_mut(), &log_starts)?;
    let mut tombstoned = Vec::new();
    for (region, records) in by_region {
        if RegionPeer::is_tombstoned(&records) {
            if let Some(t) = records
                .iter()
                .rev()
                .find(|(k, _)| *k == RecordKind::Tombstone)
                .and_then(|(_, p)| golem_core::region::records::decode_tombstone(p))
            {
                shard.tombstones.borrow_mut().insert(region, t);
            }
            tombstoned.push(region);
            continue;
        }
        let peer_id = peer_of(&records, shard.identity.store, shard.id).ok_or_else(|| {
            format!("the WAL's metadata of region {region} names no peer on this store")
        })?;
        let peer = RegionPeer::recover(
            shard.peer_config(region, peer_id),
            records,
            &mut *shard.store.borrow_mut(),
        )
        .map_err(|e| format!("recovering region {region}: {e}"))?;
        if peer.is_removed() {
            // Its removal was applied before the crash, its tombstone lost.
            let t = Tombstone {
                peer: peer.config().peer,
                removed_by: peer.removed_by(),
            };
            wal.append(
                RecordKind::Tombstone,
                region,
                &golem_core::region::records::encode_tombstone(&t),
            );
            shard.tombstones.borrow_mut().insert(region, t);
            tombstoned.push(region);
            continue;
        }
        shard.insert_region(shard.handle(peer));
    }
    split::after_recovery(shard, &mut wal, &tombstoned);
    merge::after_recovery(shard);
    if !tombstoned.is_empty() {
        tracing::info!(shard = %shard.id, regions = ?tombstoned, "removed replicas stay removed");
    }
    let presplit = !shard.identity.pd && cfg.initial_regions > 1;
    if presplit && wal_was_empty {
        bootstrap_presplit(shard, &mut wal).await?;
    }
    let first_start = shard.id == directory::HOSTING_SHARD && wal_was_empty && !presplit;
    if let Some(h) = hosted.filter(|_| first_start) {
        let meta = match initial_region {
            Some(meta) => 'pd: {
                let ours = meta
                    .peer(h.peer)
                    .is_some_and(|p| p.store == shard.identity.store && p.shard == shard.id);
                if meta.id != h.region || !ours {
                    return Err(format!(
                        "the PD's region {} does not place peer {} on store {} shard {}",
                        meta.id, h.peer, shard.identity.store, shard.id
                    ));
                }
                // A replica that never existed here is created with the
                // region's first configuration only: at a later epoch its
                // peers have moved on, and its leader creates it (empty)
                // and sends a snapshot, if it is still a member.
                let first = RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                };
                if meta.epoch != first {
                    tracing::info!(
                        region = %meta.id,
                        epoch = ?meta.epoch,
                        "no replica of the node's first region here; waiting for its leader's snapshot"
                    );
                    break 'pd None;
                }
                Some(meta)
            }
            // With a PD the region's voters come from the PD: creating a
            // single-voter region here could make a second leader.
            None if shard.identity.pd => {
                return Err(format!(
                    "this node hosts region {} but its WAL has no replica of it and the PD \
                     did not describe it: refusing to create one",
                    h.region
                ))
            }
            None => Some(RegionMeta {
                id: h.region,
                start: Vec::new(),
                end: Vec::new(),
                epoch: RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                },
                peers: vec![PeerMeta::new(h.peer, shard.identity.store, shard.id)],
            }),
        };
        if let Some(meta) = meta {
            let peer = RegionPeer::bootstrap(shard.peer_config(h.region, h.peer), meta, &mut wal)
                .map_err(|e| format!("bootstrapping region {}: {e}", h.region))?;
            wal.sync().await;
            tracing::info!(shard = %shard.id, region = %h.region, "bootstrapped the first region");
            shard.insert_region(shard.handle(peer));
        }
    }
    if wal.has_pending() {
        wal.sync().await;
    }
    // A single voter leads at once; several elect a leader as they tick.
    for r in shard.regions.borrow().values() {
        let mut peer = r.peer.borrow_mut();
        if !peer.meta().is_replicated() {
            peer.campaign();
        }
    }
    let addr = cfg.shard_listen(shard.id.get());
    let listener = glommio::net::TcpListener::bind(addr)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok((wal, listener, index))
}

/// A stand-alone node's first start with `--initial-regions N`: this shard
/// creates its share of N single-voter regions splitting the key space by
/// the first 4 key bytes (region i covers `[b(i-1), b(i))`, `b(i) = i·2³²/N`
/// big-endian, the first from the start and the last to the end of the key
/// space; region and peer ids are i; region i lives on shard (i-1) mod
/// shards).
async fn bootstrap_presplit(shard: &Rc<Shard>, wal: &mut Wal) -> Result<(), String> {
    let n = shard.cfg.initial_regions as u64;
    let shards = shard.cfg.shards as u64;
    let bound = |i: u64| -> Vec<u8> {
        if i == 0 || i == n {
            Vec::new()
        } else {
            (((i << 32) / n) as u32).to_be_bytes().to_vec()
        }
    };
    let mut created = 0u64;
    for i in (1..=n).filter(|i| (i - 1) % shards == shard.id.get() as u64) {
        let id = RegionId(i);
        let peer = golem_wire::PeerId(i);
        let meta = RegionMeta {
            id,
            start: bound(i - 1),
            end: bound(i),
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            peers: vec![PeerMeta::new(peer, shard.identity.store, shard.id)],
        };
        let p = RegionPeer::bootstrap(shard.peer_config(id, peer), meta, wal)
            .map_err(|e| format!("bootstrapping region {id}: {e}"))?;
        shard.insert_region(shard.handle(p));
        created += 1;
        // Bounded WAL batches.
        if created.is_multiple_of(1024) {
            wal.sync().await;
        }
    }
    wal.sync().await;
    tracing::info!(shard = %shard.id, regions = created, "created the initial regions");
    Ok(())
}

/// The latest log start a region's records name (after its last
/// tombstone), if any.
fn log_start_of(records: &[(RecordKind, Vec<u8>)]) -> Option<u64> {
    let from = records
        .iter()
        .rposition(|(k, _)| *k == RecordKind::Tombstone)
        .map_or(0, |i| i + 1);
    records[from..]
        .iter()
        .filter(|(k, _)| *k == RecordKind::LogStart)
        .filter_map(|(_, p)| golem_core::region::records::decode_log_start(p).ok())
        .map(|(index, _)| index)
        .max()
}

/// This shard's peer in a region's latest metadata record (a store may
/// hold a second peer of the region on another shard while it moves).
fn peer_of(
    records: &[(RecordKind, Vec<u8>)],
    store: golem_wire::StoreId,
    shard: ShardId,
) -> Option<golem_wire::PeerId> {
    let (_, payload) = records
        .iter()
        .rev()
        .find(|(k, _)| *k == RecordKind::RegionMeta)?;
    let meta = RegionMeta::decode(payload).ok()?;
    meta.peer_at(store, shard).map(|p| p.id)
}

/// The leader lease: two ticks less than the shortest election timeout
/// (a follower that acknowledged a round votes for no one else within
/// that timeout; the margin covers tick granularity and clock-rate skew).
fn lease_duration(cfg: &NodeConfig) -> Duration {
    Duration::from_millis(cfg.tick_ms * cfg.election_ticks.saturating_sub(2) as u64)
}

/// Serves requests forwarded by other shards.
async fn serve_inbox(shard: Rc<Shard>, mut inbox: mpsc::Receiver<ShardMsg>) {
    while let Some(msg) = inbox.recv().await {
        match msg {
            ShardMsg::Forward { req, reply } => {
                let shard = shard.clone();
                spawn_local(async move {
                    let _guard = shard.request_started();
                    let resp = exec::execute(&shard, req).await;
                    let _ = reply.send(resp);
                })
                .detach();
            }
            ShardMsg::Report { reply } => {
                let _ = reply.send(report(&shard));
            }
            ShardMsg::Operator(op) => operator::start(&shard, op),
            ShardMsg::Stores(book) => {
                *shard.stores.borrow_mut() = book;
            }
            ShardMsg::WakeLedBy(silent) => {
                let regions: Vec<Rc<RegionHandle>> =
                    shard.regions.borrow().values().cloned().collect();
                let mut woken = 0usize;
                for r in regions {
                    let led_by_silent = {
                        let p = r.peer.borrow();
                        p.is_hibernating()
                            && !p.is_leader()
                            && p.leader_id()
                                .and_then(|l| p.meta().peer(l))
                                .is_some_and(|l| silent.contains(&l.store))
                    };
                    if led_by_silent {
                        r.wake();
                        woken += 1;
                    }
                }
                if woken > 0 {
                    tracing::info!(shard = %shard.id, regions = woken, stores = ?silent, "woke regions whose leader's store is silent");
                }
            }
            ShardMsg::Placements(changes) => {
                for (region, on, placement) in changes {
                    shard.directory.update(region, on, placement);
                }
            }
            ShardMsg::Raft(msgs) => transport::deliver(&shard, msgs),
        }
    }
}

/// What this shard hosts, from memory and the LSM's block indexes (for
/// leaders, recomputed only when its segments or the region changed).
fn report(shard: &Shard) -> ShardReport {
    let mut store = shard.store.borrow_mut();
    let regions = shard
        .regions
        .borrow()
        .values()
        .filter(|r| r.peer.borrow().is_initialized())
        .map(|r| {
            let (meta, peer, is_leader, term) = {
                let p = r.peer.borrow();
                (p.meta().clone(), p.config().peer, p.is_leader(), p.term().0)
            };
            RegionReport {
                meta,
                peer,
                is_leader,
                term,
                estimate: is_leader.then(|| r.estimate(&mut store)),
                load: r.load(),
                sampled_keys: r.take_sampled_keys(),
            }
        })
        .collect();
    ShardReport {
        shard: shard.id,
        regions,
        cpu_ns: thread_cpu_ns(),
        at: std::time::Instant::now(),
    }
}

/// CPU time of the calling thread, in ns (0 if the clock is unavailable).
fn thread_cpu_ns() -> u64 {
    // SAFETY: timespec is plain data; zeroed is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid out pointer for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
