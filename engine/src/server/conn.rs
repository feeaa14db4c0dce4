//! One client connection: handshake, frame decoding, dispatch, responses.
//!
//! Owns a connection's lifecycle. Invariants:
//! - the first frame must be a valid `Hello`; requests before it close the
//!   connection with `HandshakeRequired`;
//! - any framing or payload error closes this connection (after a
//!   `Goodbye` frame saying why, sent once the requests already accepted
//!   have been answered or a frame timeout has passed) and nothing else: no
//!   panic, no effect on other connections;
//! - at most `IN_FLIGHT_REQUESTS_MAX` requests run at once; one more gets
//!   `TooManyInFlight`; a request id already in flight is a protocol
//!   violation (`DuplicateRequestId`, connection closed);
//! - a started frame must complete within the frame timeout, and an idle
//!   connection is closed after the idle timeout (slow senders, half-open
//!   sockets);
//! - queued response bytes are bounded: a client that does not read its
//!   responses is disconnected rather than grow the server's memory.

use super::outbox::Outbox;
use super::split::{split, ReadHalf};
use crate::runtime::{spawn_local, timeout, LocalNotify};
use crate::shard::{exec, Shard};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use golem_wire::codec::{decode_hello, decode_request, encode_goodbye, encode_hello_ok};
use golem_wire::limits::{CLIENT_NAME_BYTES_MAX, FRAME_PAYLOAD_BYTES_MAX, IN_FLIGHT_REQUESTS_MAX};
use golem_wire::{
    ClusterId, Frame, FrameDecoder, FrameKind, GolemError, HelloOk, RequestId, PROTOCOL_VERSION,
};
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes read from the socket per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Serves one accepted connection until it closes.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = split(stream);
    let out = Outbox::new();
    let writer = {
        let out = out.clone();
        spawn_local(async move {
            out.drain_into(&mut wr).await;
            let _ = wr.close().await;
        })
    };
    let mut conn = Conn {
        shard,
        out: out.clone(),
        in_flight: Rc::new(RefCell::new(HashSet::new())),
        answered: LocalNotify::new(),
        handshaken: false,
    };
    let goodbye = conn.read_loop(&mut rd).await;
    // Let requests already accepted finish, so their clients learn the
    // outcome, but never wait on them longer than a frame timeout.
    let deadline = Instant::now() + Duration::from_millis(conn.shard.cfg.frame_timeout_ms);
    while !conn.in_flight.borrow().is_empty() && !out.is_broken() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        timeout(left, conn.answered.wait()).await;
    }
    if let Some(err) = goodbye {
        tracing::debug!(?peer, code = err.code(), %err, "closing connection");
        if let Ok(frame) = encode_goodbye(RequestId(0), &err) {
            out.push(&frame);
        }
    }
    out.close();
    writer.await;
}

struct Conn {
    shard: Rc<Shard>,
    out: Rc<Outbox>,
    /// Request ids of this connection whose response has not been queued yet.
    in_flight: Rc<RefCell<HashSet<u32>>>,
    /// Signalled whenever an in-flight request's response is queued.
    answered: Rc<LocalNotify>,
    handshaken: bool,
}

impl Conn {
    /// Reads and dispatches frames; returns the error to send before closing,
    /// or None for a clean or silent close (EOF, reset, write failure).
    async fn read_loop(&mut self, rd: &mut ReadHalf<TcpStream>) -> Option<GolemError> {
        let cfg = self.shard.cfg.clone();
        let frame_timeout = Duration::from_millis(cfg.frame_timeout_ms);
        let idle_timeout = Duration::from_millis(cfg.idle_timeout_ms);
        let mut decoder = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        let opened = Instant::now();
        let mut frame_started: Option<Instant> = None;
        loop {
            if self.out.is_broken() {
                return None;
            }
            let now = Instant::now();
            let wait = if !self.handshaken {
                (opened + frame_timeout).saturating_duration_since(now)
            } else if let Some(started) = frame_started {
                (started + frame_timeout).saturating_duration_since(now)
            } else {
                idle_timeout
            };
            let n = match timeout(wait, rd.read(&mut buf)).await {
                None => return Some(GolemError::Timeout),
                Some(Ok(0)) | Some(Err(_)) => return None,
                Some(Ok(n)) => n,
            };
            let mut input = &buf[..n];
            while !input.is_empty() {
                let (used, frame) = match decoder.push(input) {
                    Ok(r) => r,
                    Err(e) => return Some(e.into()),
                };
                input = &input[used..];
                if let Some(frame) = frame {
                    if let Err(e) = self.on_frame(frame) {
                        return Some(e);
                    }
                }
            }
            frame_started = match (decoder.is_mid_frame(), frame_started) {
                (false, _) => None,
                (true, Some(t)) => Some(t),
                (true, None) => Some(Instant::now()),
            };
        }
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), GolemError> {
        match frame.header.kind {
            FrameKind::Hello => self.on_hello(frame),
            FrameKind::Request => self.on_request(frame),
            FrameKind::Raft => self.on_raft(frame),
            FrameKind::SnapshotChunk => self.on_snapshot_chunk(frame),
            other => Err(GolemError::malformed(format!(
                "a client may not send {other:?} frames"
            ))),
        }
    }

    fn on_hello(&mut self, frame: Frame) -> Result<(), GolemError> {
        if self.handshaken {
            return Err(GolemError::malformed("second Hello on one connection"));
        }
        let hello = decode_hello(&frame.payload)?;
        if hello.protocol_version != PROTOCOL_VERSION as u32 {
            return Err(GolemError::UnsupportedVersion {
                got: hello.protocol_version,
                supported: PROTOCOL_VERSION as u32,
            });
        }
        if hello.client_name.len() > CLIENT_NAME_BYTES_MAX {
            return Err(GolemError::invalid("client name too long"));
        }
        let cluster = self.shard.identity.cluster;
        if hello.cluster_id != ClusterId(0) && hello.cluster_id != cluster {
            return Err(GolemError::ClusterMismatch {
                server: cluster.get(),
                client: hello.cluster_id.get(),
            });
        }
        let ok = HelloOk {
            protocol_version: PROTOCOL_VERSION as u32,
            cluster_id: cluster,
            store: self.shard.identity.store,
            shard: self.shard.id,
            shard_count: self.shard.cfg.shards,
        };
        self.out
            .push(&encode_hello_ok(frame.header.request_id, &ok)?);
        self.handshaken = true;
        Ok(())
    }

    /// Raft messages from a peer node's shard: stepped into this shard's
    /// regions, or handed to the shard that owns them.
    fn on_raft(&mut self, frame: Frame) -> Result<(), GolemError> {
        if !self.handshaken {
            return Err(GolemError::HandshakeRequired);
        }
        let batch = golem_wire::raft::decode_raft_batch(&frame.payload)?;
        if batch.messages.len() > golem_wire::raft::RAFT_BATCH_MESSAGES_MAX {
            return Err(GolemError::malformed("too many messages in a raft batch"));
        }
        let mut here = Vec::new();
        let mut elsewhere: std::collections::HashMap<golem_wire::ShardId, Vec<_>> =
            std::collections::HashMap::new();
        for rm in batch.messages {
            if rm.to_shard == self.shard.id {
                here.push(rm);
            } else {
                elsewhere.entry(rm.to_shard).or_default().push(rm);
            }
        }
        if !here.is_empty() {
            crate::shard::transport::deliver(&self.shard, here);
        }
        for (to, msgs) in elsewhere {
            crate::shard::transport::forward(&self.shard, to, msgs);
        }
        Ok(())
    }

    /// A chunk of a region snapshot from a leader's shard: written by the
    /// snapshot receiver, then acknowledged with the same request id (the
    /// sender waits for it before the next chunk: one in flight).
    fn on_snapshot_chunk(&mut self, frame: Frame) -> Result<(), GolemError> {
        if !self.handshaken {
            return Err(GolemError::HandshakeRequired);
        }
        let id = frame.header.request_id;
        let chunk = golem_wire::raft::decode_snapshot_chunk(&frame.payload)?;
        let shard = self.shard.clone();
        let out = self.out.clone();
        spawn_local(async move {
            let _guard = shard.request_started();
            let ack = crate::shard::snapshot::on_chunk(&shard, chunk).await;
            match golem_wire::raft::encode_snapshot_ack(id, &ack) {
                Ok(frame) => out.push(&frame),
                Err(e) => tracing::warn!(error = %e, "cannot encode a snapshot ack"),
            }
        })
        .detach();
        Ok(())
    }

    fn on_request(&mut self, frame: Frame) -> Result<(), GolemError> {
        if !self.handshaken {
            return Err(GolemError::HandshakeRequired);
        }
        let id = frame.header.request_id;
        let req = decode_request(&frame.payload)?;
        if self.in_flight.borrow().contains(&id.0) {
            return Err(GolemError::DuplicateRequestId { id });
        }
        // Reads of this shard's regions, and requests that fail validation
        // or routing, are answered at once: no task, no in-flight slot.
        if let Some(resp) = exec::execute_now(&self.shard, &req) {
            self.out.push_response(id, resp.into());
            return Ok(());
        }
        if self.in_flight.borrow().len() >= IN_FLIGHT_REQUESTS_MAX {
            self.out.push_response(
                id,
                Err(GolemError::TooManyInFlight {
                    max: IN_FLIGHT_REQUESTS_MAX as u32,
                }),
            );
            return Ok(());
        }
        self.in_flight.borrow_mut().insert(id.0);
        let shard = self.shard.clone();
        let out = self.out.clone();
        let in_flight = self.in_flight.clone();
        let answered = self.answered.clone();
        spawn_local(async move {
            let _guard = shard.request_started();
            let deadline = req.timeout_ms;
            let resp = if deadline == 0 {
                exec::execute(&shard, req).await
            } else {
                timeout(
                    Duration::from_millis(deadline.into()),
                    exec::execute(&shard, req),
                )
                .await
                .unwrap_or(golem_wire::Response::Err(GolemError::DeadlineExceeded))
            };
            in_flight.borrow_mut().remove(&id.0);
            out.push_response(id, resp.into());
            answered.notify();
        })
        .detach();
        Ok(())
    }
}
