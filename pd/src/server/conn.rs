//! One inbound connection: a client (node, SDK, ctl) or a peer member.
//!
//! Owns the connection's framing, handshake, limits and timeouts. Every
//! frame is length-checked before allocation, checksummed and validated with
//! bytecheck (`FrameDecoder`, `golem_wire::pd` codecs); any malformed input
//! gets a `Goodbye` with a typed error and closes this connection only.
//! Requests are pipelined: each is handed to the driver and answered when
//! its reply arrives, possibly out of order, at most
//! `IN_FLIGHT_REQUESTS_MAX` at a time; a request id already in flight closes
//! the connection (`DuplicateRequestId`).

use super::driver::DriverMsg;
use super::Shared;
use crate::config::PdConfig;
use crate::consensus::convert::message_from_wire;
use golem_wire::codec::{decode_hello, encode_goodbye, encode_hello_ok};
use golem_wire::limits::{CLIENT_NAME_BYTES_MAX, FRAME_PAYLOAD_BYTES_MAX, IN_FLIGHT_REQUESTS_MAX};
use golem_wire::pd::{
    decode_pd_raft, decode_pd_request, encode_pd_response, PdResponse, PD_RAFT_BATCH_MESSAGES_MAX,
};
use golem_wire::{
    ClusterId, Frame, FrameDecoder, FrameKind, GolemError, HelloOk, RequestId, ShardId, StoreId,
    PROTOCOL_VERSION,
};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// Responses queued for a client that does not read, at most; then the
/// connection is closed.
const OUTBOX_FRAMES_MAX: usize = 4096;
/// Largest request timeout a client may ask for, in ms.
const REQUEST_TIMEOUT_MS_MAX: u32 = 60_000;

/// What every connection shares.
pub struct ConnCtx {
    pub cfg: PdConfig,
    pub inbox: SyncSender<DriverMsg>,
    pub shared: Arc<Shared>,
}

struct Conn {
    ctx: Arc<ConnCtx>,
    handshaken: bool,
    /// Request ids in flight on this connection (unique, at most
    /// `IN_FLIGHT_REQUESTS_MAX`).
    in_flight: Arc<Mutex<HashSet<u32>>>,
    outbox: mpsc::Sender<Vec<u8>>,
}

/// Serves one connection until it closes or misbehaves.
pub async fn serve(stream: TcpStream, ctx: Arc<ConnCtx>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (outbox, mut out_rx) = mpsc::channel::<Vec<u8>>(OUTBOX_FRAMES_MAX);
    let frame_timeout = Duration::from_millis(ctx.cfg.frame_timeout_ms);
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            let mut buf = frame;
            // Coalesce whatever else is queued into one write.
            while let Ok(more) = out_rx.try_recv() {
                buf.extend_from_slice(&more);
                if buf.len() > 1024 * 1024 {
                    break;
                }
            }
            if timeout(frame_timeout, wr.write_all(&buf)).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut conn = Conn {
        ctx: ctx.clone(),
        handshaken: false,
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        outbox,
    };
    let idle = Duration::from_millis(ctx.cfg.idle_timeout_ms);
    let mut decoder = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let mut buf = vec![0u8; 64 * 1024];
    let mut frame_started: Option<Instant> = None;
    let result: Result<(), GolemError> = async {
        loop {
            // The handshake and any started frame must finish in time.
            let limit = match (conn.handshaken, frame_started) {
                (_, Some(t)) => frame_timeout.saturating_sub(t.elapsed()),
                (false, None) => frame_timeout,
                (true, None) => idle,
            };
            let n = match timeout(limit, rd.read(&mut buf)).await {
                Err(_) => return Err(GolemError::Timeout),
                Ok(Err(_)) | Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
            };
            let mut bytes = &buf[..n];
            while !bytes.is_empty() {
                let (used, frame) = decoder.push(bytes).map_err(GolemError::from)?;
                bytes = &bytes[used..];
                if let Some(f) = frame {
                    conn.on_frame(f)?;
                }
            }
            frame_started = match (decoder.is_mid_frame(), frame_started) {
                (false, _) => None,
                (true, Some(t)) => Some(t),
                (true, None) => Some(Instant::now()),
            };
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!("closing a PD connection: {e}");
        if let Ok(bye) = encode_goodbye(RequestId(0), &e) {
            let _ = conn.outbox.send(bye).await;
        }
    }
    drop(conn);
    let _ = timeout(frame_timeout, writer).await;
}

impl Conn {
    fn on_frame(&mut self, frame: Frame) -> Result<(), GolemError> {
        match frame.header.kind {
            FrameKind::Hello => self.on_hello(&frame),
            _ if !self.handshaken => Err(GolemError::HandshakeRequired),
            FrameKind::PdRequest => self.on_request(frame),
            FrameKind::PdRaft => self.on_raft(&frame),
            other => Err(GolemError::malformed(format!(
                "a PD client may not send {other:?} frames"
            ))),
        }
    }

    fn on_hello(&mut self, frame: &Frame) -> Result<(), GolemError> {
        if self.handshaken {
            return Err(GolemError::malformed("second Hello on one connection"));
        }
        let hello = decode_hello(&frame.payload)?;
        if hello.protocol_version != u32::from(PROTOCOL_VERSION) {
            return Err(GolemError::UnsupportedVersion {
                got: hello.protocol_version,
                supported: PROTOCOL_VERSION.into(),
            });
        }
        if hello.client_name.len() > CLIENT_NAME_BYTES_MAX {
            return Err(GolemError::invalid("client name too long"));
        }
        let cluster = self.ctx.shared.cluster.load(Ordering::Acquire);
        if hello.cluster_id.0 != 0 && cluster != 0 && hello.cluster_id.0 != cluster {
            return Err(GolemError::ClusterMismatch {
                server: cluster,
                client: hello.cluster_id.0,
            });
        }
        let ok = HelloOk {
            protocol_version: PROTOCOL_VERSION.into(),
            cluster_id: ClusterId(cluster),
            store: StoreId(0),
            shard: ShardId(0),
            shard_count: 0,
        };
        self.send(encode_hello_ok(frame.header.request_id, &ok)?)?;
        self.handshaken = true;
        Ok(())
    }

    fn send(&self, frame: Vec<u8>) -> Result<(), GolemError> {
        self.outbox.try_send(frame).map_err(|_| GolemError::Timeout) // the client does not read
    }

    fn on_request(&mut self, frame: Frame) -> Result<(), GolemError> {
        let id = frame.header.request_id;
        let req = decode_pd_request(&frame.payload)?;
        if self
            .in_flight
            .lock()
            .expect("never poisoned")
            .contains(&id.0)
        {
            return Err(GolemError::DuplicateRequestId { id });
        }
        if let Err(e) = req.body.validate() {
            return self.send(encode_pd_response(id, &PdResponse::Err(e))?);
        }
        if self.in_flight.lock().expect("never poisoned").len() >= IN_FLIGHT_REQUESTS_MAX {
            let e = GolemError::TooManyInFlight {
                max: IN_FLIGHT_REQUESTS_MAX as u32,
            };
            return self.send(encode_pd_response(id, &PdResponse::Err(e))?);
        }
        let timeout_ms = match req.timeout_ms {
            0 => self.ctx.cfg.request_timeout_ms,
            t => t.min(REQUEST_TIMEOUT_MS_MAX),
        };
        let wait = Duration::from_millis(timeout_ms.into());
        let (reply, rx) = oneshot::channel();
        let msg = DriverMsg::Client {
            body: Box::new(req.body),
            deadline_ms: super::driver::seams::system_now_ms() + u64::from(timeout_ms),
            reply,
        };
        match self.ctx.inbox.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let e = GolemError::ServerBusy { retry_after_ms: 10 };
                return self.send(encode_pd_response(id, &PdResponse::Err(e))?);
            }
            Err(TrySendError::Disconnected(_)) => {
                return self.send(encode_pd_response(
                    id,
                    &PdResponse::Err(GolemError::ShuttingDown),
                )?);
            }
        }
        self.in_flight.lock().expect("never poisoned").insert(id.0);
        let in_flight = self.in_flight.clone();
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            let resp = match timeout(wait + Duration::from_millis(100), rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => PdResponse::Err(GolemError::ShuttingDown),
                Err(_) => PdResponse::Err(GolemError::DeadlineExceeded),
            };
            in_flight.lock().expect("never poisoned").remove(&id.0);
            let frame = encode_pd_response(id, &resp).unwrap_or_else(|e| {
                encode_pd_response(id, &PdResponse::Err(e)).expect("an error always encodes")
            });
            let _ = outbox.try_send(frame);
        });
        Ok(())
    }

    fn on_raft(&mut self, frame: &Frame) -> Result<(), GolemError> {
        let batch = decode_pd_raft(&frame.payload)?;
        let cfg = &self.ctx.cfg;
        if batch.to != cfg.id {
            return Err(GolemError::invalid(format!(
                "raft batch for member {} reached member {}",
                batch.to, cfg.id
            )));
        }
        if batch.from == cfg.id || cfg.addr_of(batch.from).is_none() {
            return Err(GolemError::invalid(format!(
                "raft batch from unknown member {}",
                batch.from
            )));
        }
        if batch.messages.len() > PD_RAFT_BATCH_MESSAGES_MAX {
            return Err(GolemError::BatchTooLarge {
                len: batch.messages.len() as u32,
                max: PD_RAFT_BATCH_MESSAGES_MAX as u32,
            });
        }
        let mut msgs = Vec::with_capacity(batch.messages.len());
        for m in &batch.messages {
            if m.from != batch.from.0 || m.to != cfg.id.0 {
                return Err(GolemError::invalid(
                    "raft message ids disagree with the batch",
                ));
            }
            msgs.push(message_from_wire(m).map_err(|e| GolemError::malformed(e.to_string()))?);
        }
        // A full inbox drops the batch: Raft retransmits.
        let _ = self.ctx.inbox.try_send(DriverMsg::Raft(msgs));
        Ok(())
    }
}
