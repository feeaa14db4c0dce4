//! Region snapshot data: streaming it to a follower and installing it.
//!
//! Owns the key-value side of Raft snapshots (golem-core handles the Raft
//! side, `golem_core::region::snapshot`). Leader: when raft-rs wants a
//! snapshot the raft loop calls `prepare` — the peer describes its applied
//! state and, in the same call, the shard takes a consistent view of its
//! LSM (`LsmSnapshot`: immutable memtables and segments). When raft-rs then
//! emits the `MsgSnapshot`, the transport hands it to `send`, which streams
//! the region's range from that view in chunks of at most
//! `SNAPSHOT_CHUNK_BYTES_MAX` over its own connection, one chunk in flight
//! (each waits for its `SnapshotAck`), the `MsgSnapshot` riding on the last
//! chunk; then it reports the outcome to raft-rs.
//!
//! Follower: `on_chunk` feeds each chunk to a writer thread building a
//! segment file (range tombstone over the region, the pairs, the region's
//! applied index = the snapshot's index) under `<data>/snap/shard-N/`; the
//! shard thread never touches the file. Once the last chunk is durable the
//! `MsgSnapshot` is stepped (creating an uninitialized replica if needed).
//! When raft-rs accepts it, the raft loop `start_install`s it: a hard link
//! of the file is ingested into the LSM (the ingested segment shadows
//! everything older in the region's range), and the region waits until the
//! store's durable applied index reaches the snapshot (`install_done`).
//!
//! Crash safety: the complete file stays (`region-R-I-T.seg`) until the
//! store holds the snapshot durably; at start-up, `recover_files` ingests
//! it again when the WAL says the region's log starts at its index but the
//! store is behind (the crash came between the WAL records and the LSM's
//! manifest), and deletes it otherwise.
//!
//! A snapshot whose range overlaps another initialized region of the shard
//! is refused (a split's new region reached here before the parent applied
//! the split; the split creates the replica).
//!
//! Invariants: memory per stream is bounded by one chunk on each side plus
//! the writer thread's buffer; a stream's keys strictly increase and lie in
//! the region's range (checked before the file is used); at most one
//! outgoing stream per (region, follower) and one incoming per region.

use super::pacer::Pacer;
use super::{RegionHandle, Shard};
use crate::runtime::{sleep, spawn_local, timeout};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use golem_core::raft_convert::message_to_wire;
use golem_core::region::{PeerMeta, RegionMeta};
use golem_lsm::{Lsm, LsmSnapshot, SegmentWriter};
use golem_wire::limits::FRAME_PAYLOAD_BYTES_MAX;
use golem_wire::raft::{
    decode_snapshot_ack, encode_snapshot_chunk, RegionMessage, SnapshotAck, SnapshotChunk,
    SNAPSHOT_CHUNK_BYTES_MAX,
};
use golem_wire::{FrameDecoder, FrameKind, KvPair, PeerId, RegionId, RequestId};
use raft::eraftpb::Message;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Pairs per chunk at most (bytes are bounded by `SNAPSHOT_CHUNK_BYTES_MAX`).
const CHUNK_PAIRS_MAX: usize = 65_536;
/// How long a sender waits for a chunk's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// An incoming stream with no chunk for this long is abandoned.
const INCOMING_IDLE_MAX: Duration = Duration::from_secs(60);

/// A snapshot: its region, Raft index and term.
pub type SnapshotKey = (RegionId, u64, u64);

/// What the writer thread is asked to do.
enum WriterCmd {
    Pairs(Vec<KvPair>, oneshot::Sender<Result<(), String>>),
    /// Finish with the region's range: returns the durable file.
    Finish {
        start: Vec<u8>,
        end: Vec<u8>,
        reply: oneshot::Sender<Result<PathBuf, String>>,
    },
}

/// One snapshot being received.
struct Incoming {
    key: SnapshotKey,
    next_seq: u32,
    tx: std::sync::mpsc::SyncSender<WriterCmd>,
    last_chunk: Instant,
}

/// A received snapshot being installed by the raft loop.
#[derive(Debug)]
pub struct Install {
    pub key: SnapshotKey,
    file: PathBuf,
    ingested: bool,
}

/// The shard's snapshot state. See the module documentation.
pub struct Snapshots {
    dir: PathBuf,
    /// The latest view prepared per region, with its index and term.
    outgoing: RefCell<HashMap<RegionId, (u64, u64, LsmSnapshot)>>,
    /// Streams being sent: (region, follower).
    sending: RefCell<HashSet<(RegionId, PeerId)>>,
    /// Streams being received, one per region.
    incoming: RefCell<HashMap<RegionId, Incoming>>,
    /// Complete, durable snapshot files not yet installed.
    received: RefCell<HashMap<SnapshotKey, PathBuf>>,
    /// The send rate limit every outgoing stream of the shard shares.
    pacer: RefCell<Pacer>,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("dir", &self.dir)
            .field("outgoing", &self.outgoing.borrow().len())
            .field("incoming", &self.incoming.borrow().len())
            .field("received", &self.received.borrow().len())
            .finish()
    }
}

fn file_name(key: SnapshotKey) -> String {
    format!("region-{}-{}-{}.seg", key.0.get(), key.1, key.2)
}

/// Parses `region-R-I-T.seg`.
fn parse_name(name: &str) -> Option<SnapshotKey> {
    let rest = name.strip_prefix("region-")?.strip_suffix(".seg")?;
    let mut it = rest.split('-').map(|p| p.parse::<u64>().ok());
    let key = (RegionId(it.next()??), it.next()??, it.next()??);
    it.next().is_none().then_some(key)
}

impl Snapshots {
    /// The snapshot directory of a shard: `<data>/snap/shard-N`, created
    /// if missing; temporary and half-ingested files of a previous run are
    /// deleted.
    pub fn open(data_dir: &Path, shard: u16, send_bytes_per_sec: u64) -> Result<Snapshots, String> {
        let dir = data_dir.join("snap").join(format!("shard-{shard}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.starts_with("ingest-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Snapshots {
            dir,
            outgoing: RefCell::new(HashMap::new()),
            sending: RefCell::new(HashSet::new()),
            incoming: RefCell::new(HashMap::new()),
            received: RefCell::new(HashMap::new()),
            pacer: RefCell::new(Pacer::new(
                send_bytes_per_sec,
                SNAPSHOT_CHUNK_BYTES_MAX as u64,
            )),
        })
    }

    /// Start-up: for each complete snapshot file, ingest it (and wait) when
    /// the WAL's log of its region starts at its index (`log_starts`) but
    /// the store is behind; delete it otherwise.
    pub fn recover_files(
        &self,
        store: &mut Lsm,
        log_starts: &HashMap<RegionId, u64>,
    ) -> Result<(), String> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(key) = parse_name(&name) else {
                continue;
            };
            let (region, index, _) = key;
            let behind = store.persisted_applied(region).0 < index;
            if behind && log_starts.get(&region) == Some(&index) {
                tracing::info!(%region, index, "re-installing a snapshot interrupted by a crash");
                let link = self.dir.join(format!("ingest-{name}"));
                std::fs::hard_link(entry.path(), &link)
                    .map_err(|e| format!("{}: {e}", link.display()))?;
                store
                    .ingest(&link)
                    .and_then(|()| store.wait_idle())
                    .map_err(|e| format!("ingesting snapshot {name}: {e}"))?;
                if let Some((path, e)) = store.take_ingest_failures().into_iter().next() {
                    return Err(format!("snapshot {} refused: {e}", path.display()));
                }
            }
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(())
    }

    /// Leader: prepares a snapshot of `region`'s applied state and keeps a
    /// view of the store taken at the same moment.
    pub fn prepare(&self, region: &RegionHandle, store: &mut Lsm) {
        let mut peer = region.peer.borrow_mut();
        if let Some((index, term)) = peer.prepare_snapshot() {
            let view = store.snapshot();
            self.outgoing
                .borrow_mut()
                .insert(peer.meta().id, (index, term, view));
        }
    }

    /// Forgets everything about a region that left this shard.
    pub fn forget(&self, region: RegionId) {
        self.outgoing.borrow_mut().remove(&region);
        self.incoming.borrow_mut().remove(&region);
        let mut received = self.received.borrow_mut();
        received.retain(|k, path| {
            let keep = k.0 != region;
            if !keep {
                let _ = std::fs::remove_file(path.as_path());
            }
            keep
        });
    }

    /// Raft loop: starts installing the accepted snapshot `key`.
    ///
    /// # Panics
    /// If no complete file of it was received: raft-rs only sees a
    /// `MsgSnapshot` once its data is durable here.
    pub fn start_install(&self, key: SnapshotKey) -> Install {
        let file = self
            .received
            .borrow_mut()
            .remove(&key)
            .unwrap_or_else(|| panic!("snapshot {key:?} accepted without its data"));
        Install {
            key,
            file,
            ingested: false,
        }
    }

    /// Raft loop: advances an install; true once the store holds the
    /// snapshot durably (the file is then deleted). An LSM write stall
    /// leaves it for a later pass; a refused file stops the node.
    pub fn poll_install(&self, install: &mut Install, store: &mut Lsm) -> bool {
        let (region, index, _) = install.key;
        if !install.ingested {
            let link = self.dir.join(format!("ingest-{}", file_name(install.key)));
            let _ = std::fs::remove_file(&link);
            if let Err(e) = std::fs::hard_link(&install.file, &link) {
                crate::fatal::fail_stop("linking a snapshot file for ingestion", &e.to_string());
            }
            match store.ingest(&link) {
                Ok(()) => install.ingested = true,
                Err(golem_lsm::LsmError::WriteStall { .. }) => return false,
                Err(e) => crate::fatal::fail_stop("ingesting a snapshot", &e.to_string()),
            }
        }
        if let Some((path, e)) = store.take_ingest_failures().into_iter().next() {
            crate::fatal::fail_stop(
                "ingesting a snapshot",
                &format!("{} refused: {e}", path.display()),
            );
        }
        if store.persisted_applied(region).0 >= index {
            let _ = std::fs::remove_file(&install.file);
            return true;
        }
        false
    }

    /// Once a second: drops incoming streams that went silent, and received
    /// files raft never installed (the region is already past them).
    pub fn collect_garbage(&self, applied: impl Fn(RegionId) -> Option<u64>) {
        let now = Instant::now();
        self.incoming
            .borrow_mut()
            .retain(|_, inc| now.duration_since(inc.last_chunk) < INCOMING_IDLE_MAX);
        self.received.borrow_mut().retain(|key, path| {
            let stale = applied(key.0).is_some_and(|a| a >= key.1);
            if stale {
                let _ = std::fs::remove_file(path.as_path());
            }
            !stale
        });
    }
}

/// The writer thread of one incoming snapshot: builds the segment file
/// from the chunks it is given, in order.
fn run_writer(
    key: SnapshotKey,
    tmp: PathBuf,
    done: PathBuf,
    dir: PathBuf,
    cmds: std::sync::mpsc::Receiver<WriterCmd>,
) {
    let defaults = golem_lsm::LsmOptions::default();
    let mut writer =
        match SegmentWriter::create(&tmp, defaults.block_bytes, defaults.bloom_bits_per_key) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(region = %key.0, error = %e, "cannot create a snapshot file");
                None
            }
        };
    let mut first: Option<Vec<u8>> = None;
    let mut last: Option<Vec<u8>> = None;
    while let Ok(cmd) = cmds.recv() {
        match cmd {
            WriterCmd::Pairs(pairs, reply) => {
                let r = match writer.as_mut() {
                    None => Err("no snapshot file".to_string()),
                    Some(w) => pairs
                        .iter()
                        .try_for_each(|p| w.add(&p.key, Some(&p.value)).map_err(|e| e.to_string())),
                };
                if r.is_ok() {
                    if first.is_none() {
                        first = pairs.first().map(|p| p.key.clone());
                    }
                    if let Some(p) = pairs.last() {
                        last = Some(p.key.clone());
                    }
                }
                let failed = r.is_err();
                let _ = reply.send(r);
                if failed {
                    break;
                }
            }
            WriterCmd::Finish { start, end, reply } => {
                let r = (|| {
                    let mut w = writer.take().ok_or("no snapshot file")?;
                    let inside =
                        |k: &[u8]| k >= start.as_slice() && (end.is_empty() || k < end.as_slice());
                    if first.as_deref().is_some_and(|k| !inside(k))
                        || last.as_deref().is_some_and(|k| !inside(k))
                    {
                        return Err("snapshot keys outside the region's range".to_string());
                    }
                    w.add_range_tombstone(&start, &end)
                        .map_err(|e| e.to_string())?;
                    w.set_applied(key.0, golem_wire::LogIndex(key.1));
                    w.finish().map_err(|e| e.to_string())?;
                    std::fs::rename(&tmp, &done).map_err(|e| e.to_string())?;
                    std::fs::File::open(&dir)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| e.to_string())?;
                    Ok(done.clone())
                })();
                let _ = reply.send(r);
                return;
            }
        }
    }
    // Abandoned or failed: nothing of it may be used.
    drop(writer);
    let _ = std::fs::remove_file(&tmp);
}

/// Follower: handles one chunk (the connection spawns this per chunk and
/// sends back the returned ack).
pub async fn on_chunk(shard: &Rc<Shard>, chunk: SnapshotChunk) -> SnapshotAck {
    let key = (chunk.region, chunk.index, chunk.term);
    let ack = |ok: bool, reason: String| SnapshotAck {
        region: chunk.region,
        index: chunk.index,
        seq: chunk.seq,
        ok,
        reason,
    };
    match receive(shard, chunk.clone()).await {
        Ok(()) => ack(true, String::new()),
        Err(reason) => {
            tracing::debug!(region = %key.0, index = key.1, %reason, "snapshot chunk refused");
            shard.snapshots.incoming.borrow_mut().remove(&key.0);
            ack(false, reason)
        }
    }
}

async fn receive(shard: &Rc<Shard>, chunk: SnapshotChunk) -> Result<(), String> {
    let key = (chunk.region, chunk.index, chunk.term);
    if chunk.to_shard != shard.id {
        return Err(format!(
            "chunk for shard {} reached shard {}",
            chunk.to_shard, shard.id
        ));
    }
    let bytes: usize = chunk
        .pairs
        .iter()
        .map(|p| p.key.len() + p.value.len())
        .sum();
    if chunk.pairs.len() > 1 && bytes > SNAPSHOT_CHUNK_BYTES_MAX {
        return Err(format!("chunk of {bytes} bytes"));
    }
    let snaps = &shard.snapshots;
    if chunk.seq == 0 {
        // A new stream replaces any earlier one of the region.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let name = file_name(key);
        let tmp = snaps.dir.join(format!("{name}.tmp"));
        let done = snaps.dir.join(&name);
        let dir = snaps.dir.clone();
        std::thread::Builder::new()
            .name(format!("golem-snap-{}", key.0))
            .spawn(move || run_writer(key, tmp, done, dir, rx))
            .map_err(|e| format!("cannot start a snapshot writer: {e}"))?;
        snaps.incoming.borrow_mut().insert(
            key.0,
            Incoming {
                key,
                next_seq: 0,
                tx,
                last_chunk: Instant::now(),
            },
        );
    }
    let tx = {
        let mut incoming = snaps.incoming.borrow_mut();
        let inc = incoming
            .get_mut(&key.0)
            .filter(|i| i.key == key)
            .ok_or("no stream open for this snapshot")?;
        if inc.next_seq != chunk.seq {
            return Err(format!(
                "chunk {} where {} was expected",
                chunk.seq, inc.next_seq
            ));
        }
        inc.next_seq += 1;
        inc.last_chunk = Instant::now();
        inc.tx.clone()
    };
    let (reply, rx) = oneshot::channel();
    tx.try_send(WriterCmd::Pairs(chunk.pairs, reply))
        .map_err(|_| "the snapshot writer is gone")?;
    rx.await.map_err(|_| "the snapshot writer is gone")??;
    let Some(last) = chunk.last else {
        return Ok(());
    };
    // The last chunk: finish the file with the region's range from the
    // snapshot's metadata, then let raft see the message.
    let msg =
        golem_core::raft_convert::message_from_wire(&last.message).map_err(|e| e.to_string())?;
    let meta = RegionMeta::decode(&msg.get_snapshot().data).map_err(|e| e.to_string())?;
    if meta.id != key.0
        || last.region != key.0
        || msg.get_snapshot().get_metadata().index != key.1
        || msg.get_snapshot().get_metadata().term != key.2
    {
        return Err("the snapshot message does not match its stream".into());
    }
    if let Some(other) = overlapping_region(shard, &meta) {
        // A prepared source of a merge into this region, which the
        // snapshot's range has taken, goes first (`merge.rs`); the leader
        // re-sends the snapshot.
        super::merge::on_overlapping_snapshot(shard, &meta, other);
        // A split's new region whose parent here has not applied the split
        // yet (TiKV refuses such snapshots too): the parent still serves
        // that range, and its replay of older writes would land on top of
        // the snapshot. The parent's split creates the replica instead.
        return Err(format!(
            "the snapshot's range overlaps region {other} of this shard"
        ));
    }
    let (reply, rx) = oneshot::channel();
    tx.try_send(WriterCmd::Finish {
        start: meta.start.clone(),
        end: meta.end.clone(),
        reply,
    })
    .map_err(|_| "the snapshot writer is gone")?;
    let path = rx.await.map_err(|_| "the snapshot writer is gone")??;
    snaps.incoming.borrow_mut().remove(&key.0);
    if let Some(old) = snaps.received.borrow_mut().insert(key, path.clone()) {
        if old != path {
            let _ = std::fs::remove_file(old);
        }
    }
    super::transport::deliver(shard, vec![last]);
    Ok(())
}

/// Another initialized region of this shard whose range overlaps `meta`'s.
fn overlapping_region(shard: &Shard, meta: &RegionMeta) -> Option<RegionId> {
    let overlaps = |m: &RegionMeta| {
        (meta.end.is_empty() || m.start < meta.end) && (m.end.is_empty() || meta.start < m.end)
    };
    shard
        .regions
        .borrow()
        .iter()
        .filter(|(id, _)| **id != meta.id)
        .find(|(_, r)| {
            let p = r.peer.borrow();
            p.is_initialized() && overlaps(p.meta())
        })
        .map(|(id, _)| *id)
}

/// Leader: streams the snapshot in `msg` (a `MsgSnapshot` of region
/// `meta`) to peer `to`, then reports the outcome to raft-rs.
pub fn send(shard: &Rc<Shard>, meta: &RegionMeta, to: PeerMeta, msg: Message) {
    let region = meta.id;
    if !shard.snapshots.sending.borrow_mut().insert((region, to.id)) {
        return; // Already streaming to it; raft-rs will hear from that one.
    }
    let md = msg.get_snapshot().get_metadata();
    let (index, term) = (md.index, md.term);
    let view = shard
        .snapshots
        .outgoing
        .borrow()
        .get(&region)
        .filter(|(i, t, _)| *i == index && *t == term)
        .map(|(_, _, v)| v.clone());
    let shard = shard.clone();
    let meta = meta.clone();
    spawn_local(async move {
        let result = match &view {
            Some(view) => stream(&shard, &meta, to, &msg, view).await,
            None => Err(format!("no view of the store for the snapshot at {index}")),
        };
        shard.snapshots.sending.borrow_mut().remove(&(region, to.id));
        let handle = shard.regions.borrow().get(&region).cloned();
        if let Some(handle) = handle {
            let mut peer = handle.peer.borrow_mut();
            match &result {
                Ok(bytes) => {
                    tracing::info!(%region, to = %to.id, store = %to.store, bytes, "snapshot sent");
                    peer.report_snapshot(to.id, true);
                }
                Err(e) => {
                    tracing::warn!(%region, to = %to.id, store = %to.store, error = %e, "sending a snapshot failed");
                    peer.report_snapshot(to.id, false);
                    if view.is_none() {
                        // The prepared snapshot lost its view (a restart or
                        // a newer snapshot): raft-rs must ask for a new one.
                        peer.forget_prepared_snapshot();
                    }
                }
            }
            drop(peer);
            handle.wake_raft_loop();
        }
    })
    .detach();
}

/// Sends the chunks; returns the key-value bytes sent.
async fn stream(
    shard: &Rc<Shard>,
    meta: &RegionMeta,
    to: PeerMeta,
    msg: &Message,
    view: &LsmSnapshot,
) -> Result<u64, String> {
    let (region, epoch) = (meta.id, meta.epoch);
    let (start, end) = (&meta.start[..], &meta.end[..]);
    let md = msg.get_snapshot().get_metadata();
    let (index, term) = (md.index, md.term);
    let mut conn = super::transport::connect(shard, to.store, to.shard).await?;
    let mut decoder = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let mut buf = vec![0u8; 4096];
    let mut next = Some(start.to_vec());
    let mut seq = 0u32;
    let mut sent = 0u64;
    while let Some(from) = next.take() {
        let page = view
            .scan(&from, end, false, CHUNK_PAIRS_MAX, SNAPSHOT_CHUNK_BYTES_MAX)
            .map_err(|e| e.to_string())?;
        if page.more {
            let mut after = page.pairs.last().expect("more implies pairs").0.clone();
            after.push(0);
            next = Some(after);
        }
        let pairs: Vec<KvPair> = page
            .pairs
            .into_iter()
            .map(|(key, value)| KvPair { key, value })
            .collect();
        sent += pairs
            .iter()
            .map(|p| (p.key.len() + p.value.len()) as u64)
            .sum::<u64>();
        let last = next.is_none().then(|| RegionMessage {
            region,
            epoch,
            to_shard: to.shard,
            from_store: shard.identity.store,
            from_shard: shard.id,
            gc: false,
            removed_by: None,
            from_peer: PeerId(msg.from),
            to_peer: to.id,
            message: message_to_wire(msg),
        });
        let chunk = SnapshotChunk {
            from_store: shard.identity.store,
            region,
            to_shard: to.shard,
            to_peer: to.id,
            index,
            term,
            seq,
            pairs,
            last,
        };
        let frame = encode_snapshot_chunk(RequestId(seq + 1), &chunk).map_err(|e| e.to_string())?;
        drop(chunk);
        let wait = shard
            .snapshots
            .pacer
            .borrow_mut()
            .reserve(frame.len() as u64, std::time::Instant::now());
        if !wait.is_zero() {
            sleep(wait).await;
        }
        timeout(ACK_TIMEOUT, conn.write_all(&frame))
            .await
            .ok_or("write timed out")?
            .map_err(|e| e.to_string())?;
        let ack = timeout(ACK_TIMEOUT, read_ack(&mut conn, &mut decoder, &mut buf))
            .await
            .ok_or("no acknowledgement in time")??;
        if !ack.ok || ack.seq != seq {
            return Err(format!("chunk {seq} refused: {}", ack.reason));
        }
        seq += 1;
    }
    Ok(sent)
}

async fn read_ack(
    conn: &mut glommio::net::TcpStream,
    decoder: &mut FrameDecoder,
    buf: &mut [u8],
) -> Result<SnapshotAck, String> {
    loop {
        let n = conn.read(buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        let mut input = &buf[..n];
        while !input.is_empty() {
            let (used, frame) = decoder.push(input).map_err(|e| e.to_string())?;
            input = &input[used..];
            if let Some(frame) = frame {
                return match frame.header.kind {
                    FrameKind::SnapshotAck => {
                        decode_snapshot_ack(&frame.payload).map_err(|e| e.to_string())
                    }
                    FrameKind::Goodbye => Err(golem_wire::codec::decode_goodbye(&frame.payload)
                        .map_or_else(|e| e.to_string(), |g| g.to_string())),
                    other => Err(format!("{other:?} instead of SnapshotAck")),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_roundtrip() {
        let key = (RegionId(12), 340, 7);
        assert_eq!(parse_name(&file_name(key)), Some(key));
        assert_eq!(parse_name("region-1-2.seg"), None);
        assert_eq!(parse_name("region-1-2-3-4.seg"), None);
        assert_eq!(parse_name("region-x-2-3.seg"), None);
        assert_eq!(parse_name("ingest-region-1-2-3.seg"), None);
    }
}
