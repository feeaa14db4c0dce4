//! The rkyv messages of the client protocol.
//!
//! Owns the request and response types. Invariants: messages are plain data
//! (no behaviour beyond validation helpers); every request names the region
//! and epoch it was routed with; a response carries exactly one
//! `ResponseBody` or one `GolemError`.

use crate::error::GolemError;
use crate::ids::{ClusterId, PeerId, RegionEpoch, RegionId, ShardId, StoreId};
use crate::limits::*;
use crate::RegionInfo;
use rkyv::{Archive, Deserialize, Serialize};

/// First frame of a connection, client → server.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Hello {
    /// The protocol version the client speaks.
    pub protocol_version: u32,
    /// The cluster the client expects; `ClusterId(0)` accepts any.
    pub cluster_id: ClusterId,
    /// Free text for logs, at most `CLIENT_NAME_BYTES_MAX` bytes.
    pub client_name: String,
}

/// Server → client answer to `Hello`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct HelloOk {
    pub protocol_version: u32,
    pub cluster_id: ClusterId,
    pub store: StoreId,
    /// The shard this connection landed on.
    pub shard: ShardId,
    /// How many shards the node runs; shard `i` listens on `base port + i`.
    pub shard_count: u16,
}

/// A key-value pair.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct KvPair {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// One write of a `BatchWrite`.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum WriteOp {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl WriteOp {
    /// The key this operation writes.
    pub fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } => key,
        }
    }
}

/// A client request: routing context and operation.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Request {
    /// The region the client routed the request to.
    pub region: RegionId,
    /// The region epoch the client's route was built with.
    pub epoch: RegionEpoch,
    /// How long the client will wait, in milliseconds; 0 means no deadline.
    /// The server may drop work whose deadline has passed.
    pub timeout_ms: u32,
    pub body: RequestBody,
}

/// The operation of a request.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum RequestBody {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Pairs with `start <= key < end` in key order (`reverse`: descending).
    /// An empty `end` means the end of the key space. `limit` must be ≥ 1;
    /// it is clamped to `SCAN_PAIRS_MAX`.
    Scan {
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
        reverse: bool,
    },
    BatchGet {
        keys: Vec<Vec<u8>>,
    },
    /// Applied atomically (all keys must lie in the request's region).
    BatchWrite {
        ops: Vec<WriteOp>,
    },
    /// Sets `key` to `new_value` (None: deletes it) if its current value is
    /// `expected` (None: the key is absent).
    CompareAndSwap {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new_value: Option<Vec<u8>>,
    },
    /// Admin: moves the leadership of the region holding `key` to its
    /// replica on store `to_store`. Answered once that replica leads.
    TransferLeader {
        key: Vec<u8>,
        to_store: StoreId,
    },
    /// Admin: changes the replicas of the region holding `key` (one Raft
    /// membership change; several changes go through joint consensus).
    /// Answered once the leader applied the change's entry (for several
    /// changes: the entry entering the joint configuration, which raft
    /// leaves by itself right after). At most `PEER_CHANGES_MAX` changes.
    ChangePeers {
        key: Vec<u8>,
        changes: Vec<PeerChange>,
    },
    /// Admin: splits the region holding `key` at `split_key` (which must lie
    /// strictly inside it): the region keeps `[start, split_key)` and a new
    /// region `new_region` takes `[split_key, end)`, with one new peer per
    /// existing replica (`new_peers[i]` on the store of the region's i-th
    /// peer, in the order `RegionInfo`/the leader reports them). Ids come
    /// from the PD. Answered once the leader applied the split.
    Split {
        key: Vec<u8>,
        split_key: Vec<u8>,
        new_region: RegionId,
        new_peers: Vec<PeerId>,
    },
}

/// What a `ChangePeers` change does to one replica.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum PeerChangeKind {
    /// A new replica that receives the log but does not vote.
    AddLearner,
    /// A new voter, or the promotion of a learner (refused while the
    /// learner lags behind the leader: retry later).
    AddVoter,
    /// Removes the replica (its data on its store is deleted).
    Remove,
}

/// One replica change of a `ChangePeers` request: the peer and where it
/// lives (store and shard).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PeerChange {
    pub kind: PeerChangeKind,
    pub peer: PeerId,
    pub store: StoreId,
    pub shard: ShardId,
}

impl RequestBody {
    /// Whether this operation writes (goes through the Raft log).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            RequestBody::Put { .. }
                | RequestBody::Delete { .. }
                | RequestBody::BatchWrite { .. }
                | RequestBody::CompareAndSwap { .. }
        )
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            RequestBody::Get { .. } => "get",
            RequestBody::Put { .. } => "put",
            RequestBody::Delete { .. } => "delete",
            RequestBody::Scan { .. } => "scan",
            RequestBody::BatchGet { .. } => "batch_get",
            RequestBody::BatchWrite { .. } => "batch_write",
            RequestBody::CompareAndSwap { .. } => "cas",
            RequestBody::TransferLeader { .. } => "transfer_leader",
            RequestBody::ChangePeers { .. } => "change_peers",
            RequestBody::Split { .. } => "split",
        }
    }

    /// Checks every limit of `limits.rs` that applies to this request.
    /// Servers call it on every request; clients call it before sending.
    pub fn validate(&self) -> Result<(), GolemError> {
        match self {
            RequestBody::Get { key }
            | RequestBody::Delete { key }
            | RequestBody::TransferLeader { key, .. } => check_key(key),
            RequestBody::ChangePeers { key, changes } => {
                check_key(key)?;
                if changes.is_empty() || changes.len() > PEER_CHANGES_MAX {
                    return Err(GolemError::invalid(format!(
                        "{} peer changes (must be 1..={PEER_CHANGES_MAX})",
                        changes.len()
                    )));
                }
                if changes.iter().any(|c| c.peer.get() == 0) {
                    return Err(GolemError::invalid("peer id 0"));
                }
                Ok(())
            }
            RequestBody::Split {
                key,
                split_key,
                new_region,
                new_peers,
            } => {
                check_key(key)?;
                check_key(split_key)?;
                if new_region.get() == 0 {
                    return Err(GolemError::invalid("region id 0"));
                }
                if new_peers.is_empty() || new_peers.len() > PEER_CHANGES_MAX {
                    return Err(GolemError::invalid(format!(
                        "{} new peers (must be 1..={PEER_CHANGES_MAX})",
                        new_peers.len()
                    )));
                }
                if new_peers.iter().any(|p| p.get() == 0) {
                    return Err(GolemError::invalid("peer id 0"));
                }
                Ok(())
            }
            RequestBody::Put { key, value } => {
                check_key(key)?;
                check_value(value)
            }
            RequestBody::Scan {
                start, end, limit, ..
            } => {
                if start.len() > KEY_BYTES_MAX || end.len() > KEY_BYTES_MAX {
                    return Err(GolemError::KeyTooLarge {
                        len: start.len().max(end.len()) as u32,
                        max: KEY_BYTES_MAX as u32,
                    });
                }
                if *limit == 0 {
                    return Err(GolemError::invalid("scan limit must be at least 1"));
                }
                if !end.is_empty() && start > end {
                    return Err(GolemError::invalid("scan start is after its end"));
                }
                Ok(())
            }
            RequestBody::BatchGet { keys } => {
                check_batch_len(keys.len())?;
                keys.iter().try_for_each(|k| check_key(k))
            }
            RequestBody::BatchWrite { ops } => {
                check_batch_len(ops.len())?;
                let mut bytes = 0usize;
                for op in ops {
                    check_key(op.key())?;
                    bytes += op.key().len();
                    if let WriteOp::Put { value, .. } = op {
                        check_value(value)?;
                        bytes += value.len();
                    }
                }
                if bytes > BATCH_BYTES_MAX {
                    return Err(GolemError::BatchTooLarge {
                        len: bytes as u32,
                        max: BATCH_BYTES_MAX as u32,
                    });
                }
                Ok(())
            }
            RequestBody::CompareAndSwap {
                key,
                expected,
                new_value,
            } => {
                check_key(key)?;
                expected.as_deref().map_or(Ok(()), check_value)?;
                new_value.as_deref().map_or(Ok(()), check_value)
            }
        }
    }
}

fn check_key(key: &[u8]) -> Result<(), GolemError> {
    if key.is_empty() {
        return Err(GolemError::EmptyKey);
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(GolemError::KeyTooLarge {
            len: key.len() as u32,
            max: KEY_BYTES_MAX as u32,
        });
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), GolemError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(GolemError::ValueTooLarge {
            len: value.len() as u32,
            max: VALUE_BYTES_MAX as u32,
        });
    }
    Ok(())
}

fn check_batch_len(len: usize) -> Result<(), GolemError> {
    if len == 0 {
        return Err(GolemError::invalid("empty batch"));
    }
    if len > BATCH_OPS_MAX {
        return Err(GolemError::BatchTooLarge {
            len: len as u32,
            max: BATCH_OPS_MAX as u32,
        });
    }
    Ok(())
}

/// The successful result of a request; the variant matches the request's.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum ResponseBody {
    Get {
        value: Option<Vec<u8>>,
    },
    Put,
    Delete,
    Scan {
        pairs: Vec<KvPair>,
        /// True when the scan stopped at a limit and more pairs may follow.
        more: bool,
    },
    BatchGet {
        /// One entry per requested key, in request order.
        values: Vec<Option<Vec<u8>>>,
    },
    BatchWrite,
    CompareAndSwap {
        /// Whether the new value was written.
        swapped: bool,
        /// The value before the operation (None: absent).
        previous: Option<Vec<u8>>,
    },
    /// The replica on the requested store leads the region now.
    TransferLeader,
    /// The membership change is applied; the region's new epoch.
    ChangePeers {
        epoch: RegionEpoch,
    },
    /// The split is applied: `[left, right]`, the region as it is now (the
    /// left part) and the new region (the right part).
    Split {
        regions: Vec<RegionInfo>,
    },
}

/// A server's answer to one request.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Response {
    Ok(ResponseBody),
    Err(GolemError),
}

impl From<Result<ResponseBody, GolemError>> for Response {
    fn from(r: Result<ResponseBody, GolemError>) -> Self {
        match r {
            Ok(b) => Response::Ok(b),
            Err(e) => Response::Err(e),
        }
    }
}

impl From<Response> for Result<ResponseBody, GolemError> {
    fn from(r: Response) -> Self {
        match r {
            Response::Ok(b) => Ok(b),
            Response::Err(e) => Err(e),
        }
    }
}
