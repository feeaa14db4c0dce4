//! The Placement Driver protocol: rkyv messages, limits and codecs.
//!
//! Owns the PD's requests and responses (nodes, clients and `golem ctl` → PD)
//! and the PD members' Raft batches (PD ↔ PD). They use the same framing as
//! the client protocol (docs/wire.md) with their own frame kinds
//! (`PdRequest`, `PdResponse`, `PdRaft`); a connection starts with the usual
//! `Hello`/`HelloOk`. The byte-level description is docs/pd.md.
//!
//! Invariants: every request is validated against the limits below
//! ([`PdRequestBody::validate`]) by the server before it is used; errors are
//! `GolemError`s (the PD-specific ones have codes 300–399).

use crate::codec::codec;
use crate::error::GolemError;
use crate::frame::{encode_frame, FrameKind};
use crate::ids::{
    ClusterId, PdMemberId, PeerId, RegionEpoch, RegionId, RequestId, ShardId, StoreId,
};
use crate::limits::{FRAME_PAYLOAD_BYTES_MAX, KEY_BYTES_MAX};
use crate::raft::RaftMessage;
use rkyv::{rancor, Archive, Deserialize, Serialize};

/// Most ids one `AllocIds` hands out.
pub const PD_ALLOC_IDS_MAX: u32 = 100_000;
/// Most timestamps one `Tso` hands out (a quarter of the logical space of one
/// millisecond).
pub const PD_TSO_COUNT_MAX: u32 = 1 << 16;
/// Most regions one `ScanRegions` returns; larger limits are clamped.
pub const PD_SCAN_REGIONS_MAX: u32 = 10_000;
/// Most peers of one region.
pub const PD_REGION_PEERS_MAX: usize = 16;
/// Most peers of one region on one store: two while a replica moves
/// between the store's shards (balance-shard), each on its own shard.
pub const PD_REGION_PEERS_PER_STORE_MAX: usize = 2;
/// Most shards of one store.
pub const PD_STORE_SHARDS_MAX: u16 = 1024;
/// A node sends a store heartbeat this often, in ms (the PD refuses a
/// `--max-store-down-time-ms` below two of these: a live store would look
/// down between its heartbeats).
pub const PD_STORE_HEARTBEAT_MS: u64 = 5_000;
/// Longest store or member address (`ip:port`), in bytes.
pub const PD_ADDR_BYTES_MAX: usize = 256;
/// Most Raft messages in one PD ↔ PD frame.
pub const PD_RAFT_BATCH_MESSAGES_MAX: usize = 4096;

/// Bits of a timestamp's logical part: a timestamp is
/// `physical_ms << TSO_LOGICAL_BITS | logical`.
pub const TSO_LOGICAL_BITS: u32 = 18;

/// A timestamp from the PD's oracle: strictly increasing over the cluster's life.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
#[rkyv(derive(Debug))]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Composes a timestamp. `logical` must be below `1 << TSO_LOGICAL_BITS`.
    pub fn compose(physical_ms: u64, logical: u64) -> Timestamp {
        debug_assert!(logical < 1 << TSO_LOGICAL_BITS);
        Timestamp(physical_ms << TSO_LOGICAL_BITS | logical)
    }
    /// Milliseconds since the Unix epoch.
    pub fn physical_ms(self) -> u64 {
        self.0 >> TSO_LOGICAL_BITS
    }
    /// The logical counter within the millisecond.
    pub fn logical(self) -> u64 {
        self.0 & ((1 << TSO_LOGICAL_BITS) - 1)
    }
}

/// A peer's role in its region's Raft group.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
pub enum PeerRole {
    Voter,
    Learner,
}

/// One replica of a region: its Raft id and the core that owns it.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
pub struct Peer {
    pub id: PeerId,
    pub store: StoreId,
    pub shard: ShardId,
    pub role: PeerRole,
}

/// A region's durable metadata: id, range, epoch and replicas.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Region {
    pub id: RegionId,
    /// Inclusive start key; empty is the start of the key space.
    pub start: Vec<u8>,
    /// Exclusive end key; empty is the end of the key space.
    pub end: Vec<u8>,
    pub epoch: RegionEpoch,
    pub peers: Vec<Peer>,
}

impl Region {
    /// Whether `key` lies in `[start, end)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// Checks the limits and the shape: start < end (unless end is empty),
    /// keys within `KEY_BYTES_MAX`, 1..=`PD_REGION_PEERS_MAX` peers with
    /// distinct ids and (store, shard) places, at most
    /// `PD_REGION_PEERS_PER_STORE_MAX` on one store, ids nonzero.
    pub fn validate(&self) -> Result<(), GolemError> {
        if self.id.0 == 0 {
            return Err(GolemError::invalid("region id 0"));
        }
        if self.start.len() > KEY_BYTES_MAX || self.end.len() > KEY_BYTES_MAX {
            return Err(GolemError::KeyTooLarge {
                len: self.start.len().max(self.end.len()) as u32,
                max: KEY_BYTES_MAX as u32,
            });
        }
        if !self.end.is_empty() && self.start >= self.end {
            return Err(GolemError::invalid("region start is not before its end"));
        }
        if self.peers.is_empty() || self.peers.len() > PD_REGION_PEERS_MAX {
            return Err(GolemError::invalid(format!(
                "region has {} peers (1..={PD_REGION_PEERS_MAX})",
                self.peers.len()
            )));
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.id.0 == 0 || p.store.0 == 0 {
                return Err(GolemError::invalid("peer or store id 0"));
            }
            if self.peers[..i]
                .iter()
                .any(|q| q.id == p.id || (q.store == p.store && q.shard == p.shard))
            {
                return Err(GolemError::invalid(
                    "two peers share an id or a store's shard",
                ));
            }
            if self.peers.iter().filter(|q| q.store == p.store).count()
                > PD_REGION_PEERS_PER_STORE_MAX
            {
                return Err(GolemError::invalid(format!(
                    "more than {PD_REGION_PEERS_PER_STORE_MAX} peers on store {}",
                    p.store
                )));
            }
        }
        Ok(())
    }
}

/// Approximate size and recent load of a region, reported by its leader.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RegionStats {
    pub approximate_size_bytes: u64,
    pub approximate_keys: u64,
    /// Load over the last `interval_ms`.
    pub read_bytes: u64,
    pub read_keys: u64,
    pub written_bytes: u64,
    pub written_keys: u64,
    pub interval_ms: u32,
    /// A key near the middle of the region's data (by size), strictly
    /// inside the region, if the node knows one cheaply (from the LSM's
    /// block indexes, never by scanning). The PD's split checker splits
    /// an oversized region only at a key reported here; a region reported
    /// without one is not split by size. At most `KEY_BYTES_MAX` bytes.
    pub split_key: Option<Vec<u8>>,
    /// Keys of requests served since the last report, sampled uniformly
    /// (reservoir), at most `PD_SAMPLED_KEYS_MAX`: the PD's load-based
    /// split picks a key that divides them evenly.
    pub sampled_keys: Vec<Vec<u8>>,
}

/// Most sampled keys in one `RegionStats`.
pub const PD_SAMPLED_KEYS_MAX: usize = 32;

/// A region leader's report.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RegionHeartbeat {
    pub region: Region,
    /// The reporting leader; must be one of `region.peers`.
    pub leader: PeerId,
    /// The leader's Raft term: a report from an older term never overrides
    /// the leader learnt from a newer one.
    pub term: u64,
    pub stats: RegionStats,
}

/// A region as the PD knows it: metadata, leader and stats.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RegionRoute {
    pub region: Region,
    pub leader: Option<Peer>,
    /// The term the leader was reported in.
    pub term: u64,
    pub stats: RegionStats,
}

/// A storage node's identity and address.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Store {
    pub id: StoreId,
    /// `ip:port` of shard 0; shard `i` listens on `port + i`.
    pub addr: String,
    pub shard_count: u16,
}

impl Store {
    /// Checks the limits: nonzero id, an `ip:port` address of at most
    /// `PD_ADDR_BYTES_MAX` bytes, 1..=`PD_STORE_SHARDS_MAX` shards.
    pub fn validate(&self) -> Result<(), GolemError> {
        if self.id.0 == 0 {
            return Err(GolemError::invalid("store id 0"));
        }
        check_addr(&self.addr)?;
        if self.shard_count == 0 || self.shard_count > PD_STORE_SHARDS_MAX {
            return Err(GolemError::invalid(format!(
                "shard count {} (1..={PD_STORE_SHARDS_MAX})",
                self.shard_count
            )));
        }
        Ok(())
    }
}

/// A store address is `ip:port` (nodes and clients connect by IP, never
/// by host name: no DNS lookups on shard threads).
fn check_addr(addr: &str) -> Result<(), GolemError> {
    if addr.is_empty() || addr.len() > PD_ADDR_BYTES_MAX {
        return Err(GolemError::invalid(format!(
            "address of {} bytes (1..={PD_ADDR_BYTES_MAX})",
            addr.len()
        )));
    }
    if addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(GolemError::invalid("store address must be ip:port"));
    }
    Ok(())
}

/// A store's life cycle. `Up`, `Disconnected` and `Down` follow from the
/// time since its last heartbeat; `Offline` (draining) and `Tombstone`
/// (removed; its id is never reused) are set by an operator.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
pub enum StoreState {
    Up,
    Disconnected,
    Down,
    Offline,
    Tombstone,
}

/// Load of one shard (core) of a store.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ShardLoad {
    pub shard: ShardId,
    pub region_count: u32,
    pub leader_count: u32,
    /// Busy time of the core, in thousandths.
    pub busy_permille: u16,
}

/// A store's report.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct StoreStats {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub region_count: u32,
    pub leader_count: u32,
    pub read_bytes_per_sec: u64,
    pub written_bytes_per_sec: u64,
    /// At most `PD_STORE_SHARDS_MAX` entries.
    pub shards: Vec<ShardLoad>,
}

/// A store as the PD knows it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct StoreInfo {
    pub store: Store,
    pub state: StoreState,
    pub stats: StoreStats,
    /// PD leader's clock at the last heartbeat, ms since the Unix epoch (0: never).
    pub last_heartbeat_ms: u64,
}

/// One member of the PD's Raft group.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PdMember {
    pub id: PdMemberId,
    /// `ip:port` clients and members connect to.
    pub addr: String,
}

/// One step a region leader should take, handed out in a heartbeat
/// response (the PD's operator controller, `pd/src/sched`; the contract
/// is docs/scheduling.md "The node's side"). The PD counts a step done
/// when a later heartbeat of the region shows its effect: the peer present
/// (`AddLearner`), a voter (`PromoteLearner`), gone (`RemovePeer`), the
/// leader (`TransferLeader`), the region ending at `key` with a newer
/// `version` (`Split`), or `add` a voter with `remove` gone (`ReplacePeer`).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum OperatorStep {
    AddLearner {
        peer: Peer,
    },
    PromoteLearner {
        peer: PeerId,
    },
    RemovePeer {
        peer: PeerId,
    },
    TransferLeader {
        to: PeerId,
    },
    /// Split at `key` (strictly inside the region); the new region
    /// `[key, end)` gets `new_region` and one new peer per current peer, in
    /// the region's peer order (ids allocated by the PD).
    Split {
        key: Vec<u8>,
        new_region: RegionId,
        new_peers: Vec<PeerId>,
    },
    Merge {
        target: RegionId,
    },
    /// One joint membership change: promote the learner `add` and remove
    /// `remove` together (protocol version 3). Used to move a replica
    /// between the shards of its store: losing that store during the move
    /// costs at most one vote in either configuration. Done when `add` is
    /// a voter and `remove` is gone.
    ReplacePeer {
        add: PeerId,
        remove: PeerId,
    },
}

/// A scheduling operator for one region, valid only at `epoch`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Operator {
    pub id: u64,
    pub region: RegionId,
    pub epoch: RegionEpoch,
    pub step: OperatorStep,
}

/// What `golem ctl operator add` asks for; the PD turns it into an
/// operator's steps (allocating peer and region ids itself).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum AdminOperator {
    /// Move the leadership to the region's voter on `store`.
    TransferLeader { store: StoreId },
    /// Add a replica on `store` (a learner, then promoted to voter).
    AddPeer { store: StoreId },
    /// Remove the replica on `store` (the leadership moves first if it leads).
    RemovePeer { store: StoreId },
    /// Split the region at `key` (strictly inside it).
    Split { key: Vec<u8> },
    /// Merge the region into `target` (adjacent, replicas on the same
    /// stores and shards, all voters).
    Merge { target: RegionId },
}

/// A running operator as `OperatorList` shows it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct OperatorInfo {
    pub id: u64,
    pub region: RegionId,
    /// Who made it: `admin`, `replica`, `split`, `balance-region`, `balance-leader`.
    pub source: String,
    /// Every step, in order.
    pub steps: Vec<OperatorStep>,
    /// Index in `steps` of the step being executed.
    pub current: u32,
    /// The region's epoch the current step is valid at.
    pub epoch: RegionEpoch,
    /// PD leader's clock when it was created, ms since the Unix epoch.
    pub created_ms: u64,
}

/// A request to the PD.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PdRequest {
    /// How long the client waits, in ms; 0: the server's default.
    pub timeout_ms: u32,
    pub body: PdRequestBody,
}

/// The operation of a PD request.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum PdRequestBody {
    /// Creates the cluster's first store and first region (once).
    Bootstrap {
        store: Store,
        region: Region,
    },
    IsBootstrapped,
    /// Registers a store or updates its shard count (same address only).
    PutStore {
        store: Store,
    },
    StoreHeartbeat {
        store: StoreId,
        stats: StoreStats,
    },
    RegionHeartbeat {
        heartbeat: RegionHeartbeat,
    },
    /// `count` fresh ids, never handed out before.
    AllocIds {
        count: u32,
    },
    /// `count` fresh timestamps, all above every one handed out before.
    Tso {
        count: u32,
    },
    /// The region containing `key`.
    GetRegion {
        key: Vec<u8>,
    },
    GetRegionById {
        region: RegionId,
    },
    /// Regions overlapping `[start, end)` in key order (empty end: to the end).
    ScanRegions {
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    },
    GetStore {
        store: StoreId,
    },
    GetStores {
        include_tombstones: bool,
    },
    GetMembers,
    /// A node's start: registers `store` as a bootstrap candidate while
    /// the cluster does not exist (the PD bootstraps it once it knows
    /// `--initial-replicas` candidates), else registers it as a store.
    /// Idempotent per store id; answered with where the cluster stands.
    /// Appended last: variant indexes of the enum never change.
    JoinCluster {
        store: Store,
    },
    /// The operators running on the PD leader (leader-local soft state).
    OperatorList,
    /// Adds an operator for `region` (fails if the region has one).
    OperatorAdd {
        region: RegionId,
        op: AdminOperator,
    },
    /// Cancels the region's operator, if any.
    OperatorCancel {
        region: RegionId,
    },
    /// Marks a store `Offline`: its replicas are moved elsewhere, then it
    /// becomes a `Tombstone` (its id is never reused).
    DeleteStore {
        store: StoreId,
    },
}

impl PdRequestBody {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            PdRequestBody::Bootstrap { .. } => "bootstrap",
            PdRequestBody::IsBootstrapped => "is_bootstrapped",
            PdRequestBody::PutStore { .. } => "put_store",
            PdRequestBody::StoreHeartbeat { .. } => "store_heartbeat",
            PdRequestBody::RegionHeartbeat { .. } => "region_heartbeat",
            PdRequestBody::AllocIds { .. } => "alloc_ids",
            PdRequestBody::Tso { .. } => "tso",
            PdRequestBody::GetRegion { .. } => "get_region",
            PdRequestBody::GetRegionById { .. } => "get_region_by_id",
            PdRequestBody::ScanRegions { .. } => "scan_regions",
            PdRequestBody::GetStore { .. } => "get_store",
            PdRequestBody::GetStores { .. } => "get_stores",
            PdRequestBody::GetMembers => "get_members",
            PdRequestBody::JoinCluster { .. } => "join_cluster",
            PdRequestBody::OperatorList => "operator_list",
            PdRequestBody::OperatorAdd { .. } => "operator_add",
            PdRequestBody::OperatorCancel { .. } => "operator_cancel",
            PdRequestBody::DeleteStore { .. } => "delete_store",
        }
    }

    /// Checks every limit of this module that applies.
    pub fn validate(&self) -> Result<(), GolemError> {
        match self {
            PdRequestBody::Bootstrap { store, region } => {
                store.validate()?;
                region.validate()?;
                if !region.start.is_empty() || !region.end.is_empty() {
                    return Err(GolemError::invalid(
                        "the first region must cover the whole key space",
                    ));
                }
                if !region.peers.iter().any(|p| p.store == store.id) {
                    return Err(GolemError::invalid(
                        "the first region must have a peer on the bootstrapping store",
                    ));
                }
                Ok(())
            }
            PdRequestBody::PutStore { store } | PdRequestBody::JoinCluster { store } => {
                store.validate()
            }
            PdRequestBody::StoreHeartbeat { store, stats } => {
                if store.0 == 0 {
                    return Err(GolemError::invalid("store id 0"));
                }
                if stats.shards.len() > PD_STORE_SHARDS_MAX as usize {
                    return Err(GolemError::BatchTooLarge {
                        len: stats.shards.len() as u32,
                        max: PD_STORE_SHARDS_MAX.into(),
                    });
                }
                Ok(())
            }
            PdRequestBody::RegionHeartbeat { heartbeat } => {
                heartbeat.region.validate()?;
                if !heartbeat
                    .region
                    .peers
                    .iter()
                    .any(|p| p.id == heartbeat.leader)
                {
                    return Err(GolemError::invalid(
                        "the leader is not a peer of the region",
                    ));
                }
                if let Some(key) = &heartbeat.stats.split_key {
                    check_key_len(key)?;
                }
                if heartbeat.stats.sampled_keys.len() > PD_SAMPLED_KEYS_MAX {
                    return Err(GolemError::invalid("too many sampled keys"));
                }
                heartbeat
                    .stats
                    .sampled_keys
                    .iter()
                    .try_for_each(|k| check_key_len(k))?;
                Ok(())
            }
            PdRequestBody::OperatorAdd { region, op } => {
                if region.0 == 0 {
                    return Err(GolemError::invalid("region id 0"));
                }
                match op {
                    AdminOperator::TransferLeader { store }
                    | AdminOperator::AddPeer { store }
                    | AdminOperator::RemovePeer { store } => {
                        if store.0 == 0 {
                            return Err(GolemError::invalid("store id 0"));
                        }
                        Ok(())
                    }
                    AdminOperator::Split { key } => {
                        if key.is_empty() {
                            return Err(GolemError::EmptyKey);
                        }
                        check_key_len(key)
                    }
                    AdminOperator::Merge { target } => {
                        if target.0 == 0 || target == region {
                            return Err(GolemError::invalid("bad merge target"));
                        }
                        Ok(())
                    }
                }
            }
            PdRequestBody::OperatorCancel { region } => {
                if region.0 == 0 {
                    return Err(GolemError::invalid("region id 0"));
                }
                Ok(())
            }
            PdRequestBody::DeleteStore { store } => {
                if store.0 == 0 {
                    return Err(GolemError::invalid("store id 0"));
                }
                Ok(())
            }
            PdRequestBody::AllocIds { count } => check_count(*count, PD_ALLOC_IDS_MAX),
            PdRequestBody::Tso { count } => check_count(*count, PD_TSO_COUNT_MAX),
            PdRequestBody::GetRegion { key } => check_key_len(key),
            PdRequestBody::ScanRegions { start, end, limit } => {
                check_key_len(start)?;
                check_key_len(end)?;
                if *limit == 0 {
                    return Err(GolemError::invalid("scan limit must be at least 1"));
                }
                if !end.is_empty() && start > end {
                    return Err(GolemError::invalid("scan start is after its end"));
                }
                Ok(())
            }
            PdRequestBody::IsBootstrapped
            | PdRequestBody::GetRegionById { .. }
            | PdRequestBody::GetStore { .. }
            | PdRequestBody::GetStores { .. }
            | PdRequestBody::GetMembers
            | PdRequestBody::OperatorList => Ok(()),
        }
    }
}

fn check_count(count: u32, max: u32) -> Result<(), GolemError> {
    if count == 0 {
        return Err(GolemError::invalid("count must be at least 1"));
    }
    if count > max {
        return Err(GolemError::BatchTooLarge { len: count, max });
    }
    Ok(())
}

fn check_key_len(key: &[u8]) -> Result<(), GolemError> {
    if key.len() > KEY_BYTES_MAX {
        return Err(GolemError::KeyTooLarge {
            len: key.len() as u32,
            max: KEY_BYTES_MAX as u32,
        });
    }
    Ok(())
}

/// The successful result of a PD request; the variant matches the request's.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum PdResponseBody {
    Bootstrap {
        cluster: ClusterId,
    },
    IsBootstrapped {
        bootstrapped: bool,
    },
    PutStore,
    StoreHeartbeat,
    RegionHeartbeat {
        operator: Option<Operator>,
    },
    /// Ids `first .. first + count`.
    AllocIds {
        first: u64,
        count: u32,
    },
    /// Timestamps `last - count + 1 ..= last`.
    Tso {
        last: Timestamp,
        count: u32,
    },
    /// `None` when no region covers the key (not bootstrapped, or a gap
    /// while a split is being reported).
    Region {
        route: Option<RegionRoute>,
    },
    Regions {
        routes: Vec<RegionRoute>,
    },
    Store {
        store: StoreInfo,
    },
    Stores {
        stores: Vec<StoreInfo>,
    },
    Members {
        members: Vec<PdMember>,
        leader: Option<PdMemberId>,
    },
    /// Where the cluster stands for a joining store. `cluster` is `None`
    /// until the cluster is bootstrapped (the store is then a candidate:
    /// ask again). Once it exists, `region` is the first region if the
    /// store holds one of its peers (the node must create that replica),
    /// else `None` (a registered store that hosts nothing yet).
    JoinCluster {
        cluster: Option<ClusterId>,
        region: Option<Region>,
        /// Stores known to the PD (before the bootstrap: the candidates).
        stores: u32,
        /// Replicas of the first region: the candidates the PD waits for
        /// (the answering leader's `--initial-replicas`).
        initial_replicas: u32,
    },
    /// Appended after `JoinCluster`: variant indexes never change.
    Operators {
        operators: Vec<OperatorInfo>,
    },
    /// The operator `OperatorAdd` created.
    OperatorAdded {
        operator: OperatorInfo,
    },
    /// Whether the region had an operator (now cancelled).
    OperatorCancelled {
        cancelled: bool,
    },
    /// The store's state after `DeleteStore` (`Offline`, or `Tombstone`
    /// if it was already).
    StoreDeleted {
        state: StoreState,
    },
}

/// The PD's answer to one request.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum PdResponse {
    Ok(PdResponseBody),
    Err(GolemError),
}

impl From<Result<PdResponseBody, GolemError>> for PdResponse {
    fn from(r: Result<PdResponseBody, GolemError>) -> Self {
        match r {
            Ok(b) => PdResponse::Ok(b),
            Err(e) => PdResponse::Err(e),
        }
    }
}

impl From<PdResponse> for Result<PdResponseBody, GolemError> {
    fn from(r: PdResponse) -> Self {
        match r {
            PdResponse::Ok(b) => Ok(b),
            PdResponse::Err(e) => Err(e),
        }
    }
}

/// Raft messages from one PD member to another, batched per send.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PdRaftBatch {
    pub from: PdMemberId,
    pub to: PdMemberId,
    /// At most `PD_RAFT_BATCH_MESSAGES_MAX`.
    pub messages: Vec<RaftMessage>,
}

codec!(
    PdRequest,
    ArchivedPdRequest,
    FrameKind::PdRequest,
    encode_pd_request,
    access_pd_request,
    decode_pd_request
);
codec!(
    PdResponse,
    ArchivedPdResponse,
    FrameKind::PdResponse,
    encode_pd_response,
    access_pd_response,
    decode_pd_response
);
codec!(
    PdRaftBatch,
    ArchivedPdRaftBatch,
    FrameKind::PdRaft,
    encode_pd_raft,
    access_pd_raft,
    decode_pd_raft
);

#[cfg(test)]
mod tests;
