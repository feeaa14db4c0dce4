//! Outbound Raft messages to one peer member.
//!
//! Owns one TCP connection to one peer: connect (with a timeout), `Hello`,
//! then `PdRaft` frames, each carrying every message queued at that moment
//! (at most `PD_RAFT_BATCH_MESSAGES_MAX`). On any error the connection is
//! dropped and re-established with backoff; messages queued meanwhile are
//! dropped (Raft retransmits). Invariant: never blocks the driver — it only
//! `try_send`s into this task's bounded queue.

use crate::config::PdConfig;
use golem_wire::codec::encode_hello;
use golem_wire::pd::{encode_pd_raft, PdRaftBatch, PD_RAFT_BATCH_MESSAGES_MAX};
use golem_wire::raft::RaftMessage;
use golem_wire::{ClusterId, FrameDecoder, FrameKind, Hello, PdMemberId, RequestId};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

const BACKOFF_MIN_MS: u64 = 20;
const BACKOFF_MAX_MS: u64 = 1000;
/// Bytes of Raft messages per frame, roughly at most (a batch is cut here).
const BATCH_BYTES_SOFT_MAX: usize = 4 * 1024 * 1024;

async fn connect(cfg: &PdConfig, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let t = Duration::from_millis(cfg.frame_timeout_ms);
    let mut s = timeout(t, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
    s.set_nodelay(true)?;
    let hello = Hello {
        protocol_version: golem_wire::PROTOCOL_VERSION.into(),
        cluster_id: ClusterId(0),
        client_name: format!("pd-member-{}", cfg.id),
    };
    let frame = encode_hello(RequestId(0), &hello).map_err(std::io::Error::other)?;
    timeout(t, s.write_all(&frame))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "hello"))??;
    // Wait for HelloOk so that a refused handshake is noticed here.
    let mut dec = FrameDecoder::new(64 * 1024);
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(t, s.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "hello ok"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (_, frame) = dec.push(&buf[..n]).map_err(std::io::Error::other)?;
        if let Some(f) = frame {
            if f.header.kind == FrameKind::HelloOk {
                return Ok(s);
            }
            return Err(std::io::Error::other("handshake refused"));
        }
    }
}

/// Sends everything queued for peer `to` until the queue closes.
pub async fn peer_sender(
    cfg: PdConfig,
    to: PdMemberId,
    addr: SocketAddr,
    mut rx: mpsc::Receiver<RaftMessage>,
) {
    let mut backoff = BACKOFF_MIN_MS;
    let write_timeout = Duration::from_millis(cfg.frame_timeout_ms);
    loop {
        let mut stream = match connect(&cfg, addr).await {
            Ok(s) => {
                backoff = BACKOFF_MIN_MS;
                tracing::debug!(peer = %to, %addr, "connected to PD peer");
                s
            }
            Err(e) => {
                tracing::debug!(peer = %to, %addr, "PD peer unreachable: {e}");
                // Drop what is queued: it is stale by the time we reconnect.
                while let Ok(_m) = rx.try_recv() {}
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX_MS);
                if rx.is_closed() {
                    return;
                }
                continue;
            }
        };
        loop {
            let Some(first) = rx.recv().await else { return };
            let mut bytes = first.entries.iter().map(|e| e.data.len()).sum::<usize>();
            let mut messages = vec![first];
            while messages.len() < PD_RAFT_BATCH_MESSAGES_MAX && bytes < BATCH_BYTES_SOFT_MAX {
                match rx.try_recv() {
                    Ok(m) => {
                        bytes += m.entries.iter().map(|e| e.data.len()).sum::<usize>();
                        messages.push(m);
                    }
                    Err(_) => break,
                }
            }
            let batch = PdRaftBatch {
                from: cfg.id,
                to,
                messages,
            };
            let frame = match encode_pd_raft(RequestId(0), &batch) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(peer = %to, "raft batch not sent: {e}");
                    continue;
                }
            };
            match timeout(write_timeout, stream.write_all(&frame)).await {
                Ok(Ok(())) => {}
                _ => {
                    tracing::debug!(peer = %to, "PD peer connection lost");
                    break;
                }
            }
        }
    }
}
