//! Raft messages between region peers on different shards and nodes.
//!
//! Owns the node-to-node Raft traffic of one shard. Outbound: after each
//! raft-loop pass (after the WAL sync, so every message may be sent), the
//! loop hands each region's messages to `Transport::send`; a message for a
//! peer on this shard is stepped at once, one for another shard of this
//! node goes through that shard's inbox, and one for another node is queued
//! for that (store, shard). One sender task per destination drains its
//! queue into `RaftBatch` frames on one TCP connection (after a `Hello`),
//! reconnecting with a doubling backoff. Inbound: the connection code
//! (`server/conn.rs`) decodes `Raft` frames and calls `deliver`.
//!
//! Invariants: queues are bounded (`QUEUE_MESSAGES_MAX` per destination):
//! when full, or when the destination is unreachable, messages are dropped,
//! never buffered without bound (Raft retries: heartbeats and appends are
//! re-sent); raft-rs's protobuf decoder never sees network bytes (messages
//! travel as validated rkyv and are converted field by field); a message is
//! stepped only into the peer it names (region and peer id both match); no
//! region borrow is held across an `.await`.

use super::{Shard, ShardMsg};
use crate::runtime::{sleep, spawn_local, timeout, LocalNotify};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use golem_core::raft_convert::{message_from_wire, message_to_wire};
use golem_core::region::{PeerMeta, RegionMeta, RegionPeer};
use golem_wire::codec::{decode_hello_ok, encode_hello};
use golem_wire::limits::FRAME_PAYLOAD_BYTES_MAX;
use golem_wire::raft::{
    encode_raft_batch, RaftBatch, RaftEntryId, RegionMessage, RAFT_BATCH_MESSAGES_MAX,
};
use golem_wire::{
    FrameDecoder, FrameKind, Hello, PeerId, RequestId, ShardId, StoreId, PROTOCOL_VERSION,
};
use raft::eraftpb::Message;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Regions (initialized or not) one shard hosts at most: a message for a
/// new region beyond it creates nothing.
pub const REGIONS_PER_SHARD_MAX: usize = 1_000_000;
/// Stale-replica notices queued per raft-loop pass at most (stale peers
/// retry, so dropping more is harmless).
pub const GC_NOTICES_MAX: usize = 1024;
/// Messages queued for one destination shard at most; more are dropped.
pub const QUEUE_MESSAGES_MAX: usize = 8192;
/// Encoded message bytes per `RaftBatch` frame at most (one message may
/// exceed it alone; the frame limit still applies).
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// One destination shard's queue and its sender's wake-up.
#[derive(Debug, Default)]
struct Destination {
    queue: RefCell<VecDeque<RegionMessage>>,
    wake: Rc<LocalNotify>,
    dropped: Cell<u64>,
}

/// A shard's outbound Raft traffic. See the module documentation.
#[derive(Debug)]
pub struct Transport {
    shard: Rc<Shard>,
    destinations: RefCell<HashMap<(StoreId, ShardId), Rc<Destination>>>,
}

impl Transport {
    pub fn new(shard: Rc<Shard>) -> Rc<Transport> {
        Rc::new(Transport {
            shard,
            destinations: RefCell::new(HashMap::new()),
        })
    }

    /// Sends `msgs` of the region `meta` to their peers. A snapshot goes
    /// with its data, streamed on its own connection (`snapshot::send`).
    /// `learned`: where peers that are not in `meta` live (an uninitialized
    /// replica answers the leader that contacted it).
    pub fn send(
        self: &Rc<Self>,
        meta: &RegionMeta,
        learned: &HashMap<PeerId, PeerMeta>,
        msgs: Vec<Message>,
    ) {
        let me = self.shard.identity.store;
        let mut local: Vec<RegionMessage> = Vec::new();
        let mut other_shards: HashMap<ShardId, Vec<RegionMessage>> = HashMap::new();
        for m in msgs {
            let found = meta
                .peer(PeerId(m.to))
                .or_else(|| learned.get(&PeerId(m.to)))
                .copied();
            let Some(to) = found else {
                tracing::debug!(region = %meta.id, to = m.to, "raft message to a non-member dropped");
                continue;
            };
            if m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                super::snapshot::send(&self.shard, meta, to, m);
                continue;
            }
            let rm = RegionMessage {
                region: meta.id,
                epoch: meta.epoch,
                to_shard: to.shard,
                from_store: me,
                from_shard: self.shard.id,
                gc: false,
                removed_by: None,
                from_peer: PeerId(m.from),
                to_peer: to.id,
                message: message_to_wire(&m),
            };
            if to.store != me {
                self.enqueue(to.store, to.shard, rm);
            } else if to.shard == self.shard.id {
                local.push(rm);
            } else {
                other_shards.entry(to.shard).or_default().push(rm);
            }
        }
        if !local.is_empty() {
            deliver(&self.shard, local);
        }
        for (shard, batch) in other_shards {
            forward(&self.shard, shard, batch);
        }
    }

    /// Sends the stale-replica notices `deliver` queued (see `deliver`).
    pub fn send_gc_notices(self: &Rc<Self>) {
        let notices = std::mem::take(&mut *self.shard.gc_notices.borrow_mut());
        for (store, to_shard, rm) in notices {
            if store != self.shard.identity.store {
                self.enqueue(store, to_shard, rm);
            } else if to_shard == self.shard.id {
                deliver(&self.shard, vec![rm]);
            } else {
                forward(&self.shard, to_shard, vec![rm]);
            }
        }
    }

    fn enqueue(self: &Rc<Self>, store: StoreId, shard: ShardId, rm: RegionMessage) {
        let dest = self
            .destinations
            .borrow_mut()
            .entry((store, shard))
            .or_insert_with(|| {
                let dest = Rc::new(Destination::default());
                spawn_local(run_sender(self.shard.clone(), store, shard, dest.clone())).detach();
                dest
            })
            .clone();
        let mut q = dest.queue.borrow_mut();
        if q.len() >= QUEUE_MESSAGES_MAX {
            dest.dropped.set(dest.dropped.get() + 1);
            return;
        }
        q.push_back(rm);
        drop(q);
        dest.wake.notify();
    }
}

/// Steps messages addressed to this shard's peers. A message from a peer
/// that is no longer a member (its epoch's `conf_ver` is older than ours
/// and our metadata does not list it) is answered with a `gc` notice
/// (TiKV's tombstone message): a removed replica that never applied its
/// removal learns it and destroys itself. A `gc` notice from a member at a
/// newer `conf_ver` marks the addressed replica for destruction (the raft
/// loop deletes its data and writes its tombstone). A message to a peer id
/// this shard removed (a tombstone) never re-creates it; if that replica
/// applied its own removal, the sender is told the entry that removed it
/// (a `removed_by` notice), which the sender commits if its log holds it
/// (`RegionPeer::learn_removal_committed`): a member that missed the new
/// commit index can leave the old configuration (golem-sim FINDINGS.md
/// #9). A leader's message to a region this shard does not host yet (a
/// heartbeat of a peer it has not replicated anything to, or a snapshot)
/// creates an uninitialized replica (`RegionPeer::uninitialized`), which
/// then receives a snapshot; other messages for unknown regions are
/// dropped.
pub fn deliver(shard: &Shard, msgs: Vec<RegionMessage>) {
    use raft::eraftpb::MessageType as T;
    for rm in msgs {
        let msg = match message_from_wire(&rm.message) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(region = %rm.region, error = %e, "bad raft message dropped");
                continue;
            }
        };
        if let Some(entry) = rm.removed_by {
            // A removed replica's store: the entry that removed it is
            // committed. A member whose log holds it commits up to it.
            let region = shard.regions.borrow().get(&rm.region).cloned();
            if let Some(r) = region {
                let mut p = r.peer.borrow_mut();
                if p.config().peer == rm.to_peer
                    && p.learn_removal_committed(entry.index, entry.term)
                {
                    drop(p);
                    r.poke();
                }
            }
            continue;
        }
        let tombstone = shard.tombstones.borrow().get(&rm.region).copied();
        if let Some(t) = tombstone
            .filter(|t| t.peer == rm.to_peer && !shard.regions.borrow().contains_key(&rm.region))
        {
            // A removed replica is never re-created under its old id (a
            // lagging leader may still count it): golem-sim FINDINGS.md #7.
            // The sender still counts it: it may not know that the entry
            // that removed it is committed, and without this replica it may
            // have no quorum of its old configuration (FINDINGS.md #9).
            tracing::debug!(region = %rm.region, peer = %rm.to_peer, "raft message to a removed replica dropped");
            if let (Some((index, term)), false) = (t.removed_by, rm.gc) {
                let notice = RegionMessage {
                    region: rm.region,
                    epoch: Default::default(),
                    to_shard: rm.from_shard,
                    from_store: shard.identity.store,
                    from_shard: shard.id,
                    from_peer: t.peer,
                    to_peer: rm.from_peer,
                    message: Default::default(),
                    gc: false,
                    removed_by: Some(RaftEntryId { index, term }),
                };
                queue_notice(shard, rm.from_store, rm.from_shard, notice);
            }
            continue;
        }
        if rm.gc {
            let doomed = shard.regions.borrow().get(&rm.region).is_some_and(|r| {
                let p = r.peer.borrow();
                p.config().peer == rm.to_peer
                    && (!p.is_initialized() || p.meta().epoch.conf_ver < rm.epoch.conf_ver)
            });
            if doomed {
                tracing::info!(region = %rm.region, peer = %rm.to_peer, from = %rm.from_peer, conf_ver = rm.epoch.conf_ver, "this replica is no longer a member: destroying it");
                shard.doomed.borrow_mut().insert(rm.region);
                shard.notify.notify();
            }
            continue;
        }
        let region = shard.regions.borrow().get(&rm.region).cloned();
        if let Some(r) = &region {
            let p = r.peer.borrow();
            if p.is_initialized()
                && p.meta().peer(rm.from_peer).is_none()
                && rm.epoch.conf_ver < p.meta().epoch.conf_ver
            {
                // A stale peer of a removed replica: tell it.
                let notice = RegionMessage {
                    region: rm.region,
                    epoch: p.meta().epoch,
                    to_shard: rm.from_shard,
                    from_store: shard.identity.store,
                    from_shard: shard.id,
                    from_peer: p.config().peer,
                    to_peer: rm.from_peer,
                    message: Default::default(),
                    gc: true,
                    removed_by: None,
                };
                drop(p);
                queue_notice(shard, rm.from_store, rm.from_shard, notice);
                continue;
            }
        }
        let region = match region {
            Some(r) => r,
            None if rm.to_shard == shard.id
                && !shard.stopping.get()
                && shard.regions.borrow().len() < REGIONS_PER_SHARD_MAX
                && (msg.get_msg_type() == T::MsgSnapshot
                    || (msg.get_msg_type() == T::MsgHeartbeat && msg.commit == 0)) =>
            {
                match RegionPeer::uninitialized(shard.peer_config(rm.region, rm.to_peer)) {
                    Ok(peer) => {
                        tracing::info!(region = %rm.region, peer = %rm.to_peer, "replica created by its leader; waiting for a snapshot");
                        let handle = shard.handle(peer);
                        handle.allow_votes_now();
                        shard.insert_region(handle.clone());
                        handle
                    }
                    Err(e) => {
                        tracing::debug!(region = %rm.region, error = %e, "cannot create a replica");
                        continue;
                    }
                }
            }
            None if rm.to_shard == shard.id
                && matches!(msg.get_msg_type(), T::MsgRequestPreVote | T::MsgRequestVote) =>
            {
                // Likely a split's new region electing before this replica
                // applied the split: kept briefly, stepped once the split
                // creates the region here (`Shard::insert_region`).
                shard.stash_vote(rm);
                continue;
            }
            None => {
                tracing::debug!(region = %rm.region, "raft message for a region not hosted here dropped");
                continue;
            }
        };
        region.learn_peer(PeerMeta::new(rm.from_peer, rm.from_store, rm.from_shard));
        region.step(rm.to_peer, msg);
    }
}

/// Queues a notice for `send_gc_notices` (dropped beyond `GC_NOTICES_MAX`
/// per pass: the stale side retries).
fn queue_notice(shard: &Shard, store: StoreId, to_shard: ShardId, notice: RegionMessage) {
    let mut notices = shard.gc_notices.borrow_mut();
    if notices.len() < GC_NOTICES_MAX {
        notices.push((store, to_shard, notice));
    }
    drop(notices);
    shard.notify.notify();
}

/// Hands messages for another shard of this node to its inbox (dropped if
/// the inbox is full: Raft retries).
pub fn forward(shard: &Shard, to: ShardId, msgs: Vec<RegionMessage>) {
    let Some(inbox) = shard.inboxes.get(to.get() as usize) else {
        tracing::debug!(shard = %to, "raft messages for a shard this node does not have dropped");
        return;
    };
    let _ = inbox.try_send(ShardMsg::Raft(msgs));
}

/// The address of `store`'s shard `shard`, from the store book (this
/// store's own from its configuration).
fn address(shard: &Shard, store: StoreId, to: ShardId) -> Option<SocketAddr> {
    if store == shard.identity.store {
        return Some(shard.cfg.shard_advertise(to.get()));
    }
    let book = shard.stores.borrow();
    let base = book.get(&store)?;
    let port = base.port().checked_add(to.get())?;
    Some(SocketAddr::new(base.ip(), port))
}

/// Drains one destination's queue into frames over one connection.
async fn run_sender(shard: Rc<Shard>, store: StoreId, to: ShardId, dest: Rc<Destination>) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = BACKOFF_MIN;
    // Runs until the shard's executor ends (it keeps sending while a
    // stopping shard hands its leaderships over).
    loop {
        if dest.queue.borrow().is_empty() {
            dest.wake.wait().await;
            continue;
        }
        if conn.is_none() {
            match connect(&shard, store, to).await {
                Ok(c) => {
                    backoff = BACKOFF_MIN;
                    conn = Some(c);
                }
                Err(e) => {
                    let n = dest.queue.borrow().len();
                    dest.queue.borrow_mut().clear();
                    dest.dropped.set(dest.dropped.get() + n as u64);
                    tracing::debug!(%store, shard = %to, error = %e, dropped = n, "raft peer unreachable");
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        let frame = {
            let mut q = dest.queue.borrow_mut();
            let mut messages = Vec::new();
            let mut bytes = 0usize;
            while let Some(rm) = q.front() {
                let size = approx_bytes(rm);
                if messages.len() >= RAFT_BATCH_MESSAGES_MAX
                    || (!messages.is_empty() && bytes + size > BATCH_BYTES_MAX)
                {
                    break;
                }
                bytes += size;
                messages.push(q.pop_front().expect("front exists"));
            }
            let batch = RaftBatch {
                from_store: shard.identity.store,
                messages,
            };
            encode_raft_batch(RequestId(0), &batch)
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%store, shard = %to, error = %e, "raft batch too large to encode; dropped");
                continue;
            }
        };
        let stream = conn.as_mut().expect("connected");
        match timeout(WRITE_TIMEOUT, stream.write_all(&frame)).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::debug!(%store, shard = %to, error = %e, "raft connection lost");
                conn = None;
            }
            None => {
                tracing::debug!(%store, shard = %to, "raft connection write timed out");
                conn = None;
            }
        }
    }
}

/// Rough encoded size of a message (for batching; the frame limit is
/// checked exactly by the encoder).
fn approx_bytes(rm: &RegionMessage) -> usize {
    128 + rm
        .message
        .entries
        .iter()
        .map(|e| 48 + e.data.len() + e.context.len())
        .sum::<usize>()
        + rm.message.snapshot.as_ref().map_or(0, |s| s.data.len())
}

/// Connects to `store`'s shard `to` and completes the handshake.
pub(crate) async fn connect(
    shard: &Shard,
    store: StoreId,
    to: ShardId,
) -> Result<TcpStream, String> {
    let addr = address(shard, store, to).ok_or_else(|| format!("store {store} address unknown"))?;
    let mut stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .ok_or("connect timed out")?
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION as u32,
        cluster_id: shard.identity.cluster,
        client_name: format!(
            "golem-node store {} shard {}",
            shard.identity.store, shard.id
        ),
    };
    let frame = encode_hello(RequestId(0), &hello).map_err(|e| e.to_string())?;
    let handshake = async {
        stream.write_all(&frame).await.map_err(|e| e.to_string())?;
        let mut decoder = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
        let mut buf = vec![0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during the handshake".to_string());
            }
            let (_, frame) = decoder.push(&buf[..n]).map_err(|e| e.to_string())?;
            if let Some(frame) = frame {
                if frame.header.kind != FrameKind::HelloOk {
                    return Err(format!("{:?} instead of HelloOk", frame.header.kind));
                }
                let ok = decode_hello_ok(&frame.payload).map_err(|e| e.to_string())?;
                if ok.store != store || ok.shard != to {
                    return Err(format!(
                        "{addr} is store {} shard {}, not store {store} shard {to}",
                        ok.store, ok.shard
                    ));
                }
                return Ok(());
            }
        }
    };
    timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .ok_or("handshake timed out")??;
    Ok(stream)
}
