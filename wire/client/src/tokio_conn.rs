//! One pipelined tokio connection: a writer task, a reader task, and the
//! in-flight table they share with callers.
//!
//! Owns a TCP connection after its handshake. Callers register a request in
//! the shared [`InFlight`] table (which allocates its id), encode it, and
//! queue the frame for the writer task, which coalesces whatever is queued
//! into one `write_all`. The reader task decodes responses
//! ([`ResponseReader`]) and completes each caller's oneshot by id.
//!
//! Invariants:
//! - At most `in_flight_max` requests are in flight: a caller holds a
//!   semaphore permit from registration until its response arrives (the
//!   permit is returned by the reader, not by the caller, so a caller that
//!   gives up does not free a slot the server still counts).
//! - When the connection fails, for any reason, it fails exactly once:
//!   every waiting caller receives the error, the table refuses new
//!   requests, and both tasks stop.
//! - Dropping the `Conn` shuts the connection down.

use crate::core::{
    encode, hello_frame, Completion, InFlight, Incoming, RegisterError, ResponseReader,
};
use crate::error::{ClientError, Disconnect, ProtocolError};
use golem_wire::{ClusterId, HelloOk, Request, Response};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// Read buffer size, in bytes.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Largest coalesced write, in bytes (a single larger frame is written alone).
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// Where a response goes.
type Pending = oneshot::Sender<Result<Response, ClientError>>;

/// State shared by callers and the connection's tasks.
struct Shared {
    addr: SocketAddr,
    in_flight: Mutex<InFlight<Pending>>,
    permits: Semaphore,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight<Pending>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails the connection (once): every waiting caller gets `error`.
    fn fail(&self, error: ClientError) {
        let drained = self.in_flight().close(error.clone());
        self.permits.close();
        self.shutdown.send_replace(true);
        if !drained.is_empty() {
            tracing::debug!(addr = %self.addr, requests = drained.len(), %error, "connection failed");
        }
        for (_, pending) in drained {
            let _ = pending.send(Err(error.clone()));
        }
    }
}

/// A live, pipelined connection.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    frames: mpsc::UnboundedSender<Vec<u8>>,
    hello_ok: HelloOk,
}

impl Conn {
    /// Connects to `addr` and completes the handshake within `budget`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        cluster_id: ClusterId,
        client_name: &str,
        in_flight_max: usize,
        budget: Duration,
    ) -> Result<Conn, ClientError> {
        let hello = hello_frame(cluster_id, client_name)?;
        let mut reader = ResponseReader::new(addr, cluster_id);
        let handshake = async {
            let mut stream = TcpStream::connect(addr)
                .await
                .map_err(|e| ClientError::io(addr, e))?;
            stream
                .set_nodelay(true)
                .map_err(|e| ClientError::io(addr, e))?;
            stream
                .write_all(&hello)
                .await
                .map_err(|e| ClientError::io(addr, e))?;
            let mut buf = vec![0u8; 4096];
            let mut incoming = Vec::new();
            loop {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| ClientError::io(addr, e))?;
                if n == 0 {
                    return Err(ClientError::lost(addr, Disconnect::Eof));
                }
                reader.feed(&buf[..n], &mut incoming)?;
                match incoming.as_slice() {
                    [] => continue,
                    [Incoming::HelloOk(ok)] => return Ok((stream, ok.clone())),
                    // Nothing may follow the HelloOk before a request is sent.
                    _ => {
                        let kind = golem_wire::FrameKind::Response;
                        return Err(ClientError::protocol(
                            addr,
                            ProtocolError::UnexpectedFrame { kind },
                        ));
                    }
                }
            }
        };
        let (stream, hello_ok) = match tokio::time::timeout(budget, handshake).await {
            Ok(r) => r?,
            Err(_) => {
                let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                return Err(ClientError::io(addr, e));
            }
        };
        let in_flight = InFlight::new(in_flight_max);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            addr,
            permits: Semaphore::new(in_flight.in_flight_max()),
            in_flight: Mutex::new(in_flight),
            shutdown,
        });
        let (read_half, write_half) = stream.into_split();
        let (frames, frames_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(shared.clone(), write_half, frames_rx));
        tokio::spawn(read_loop(shared.clone(), read_half, reader));
        tracing::debug!(%addr, store = %hello_ok.store, shard = %hello_ok.shard, "connected");
        Ok(Conn {
            shared,
            frames,
            hello_ok,
        })
    }

    /// The handshake answer.
    pub(crate) fn hello_ok(&self) -> &HelloOk {
        &self.hello_ok
    }

    /// True once the connection has failed.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.in_flight().closed_reason().is_some()
    }

    /// Sends `request`, waiting for an in-flight slot. An error means the
    /// request was not sent; once this returns `Ok`, it may have been.
    pub(crate) async fn send(
        &self,
        request: &Request,
    ) -> Result<oneshot::Receiver<Result<Response, ClientError>>, ClientError> {
        let closed = || {
            self.shared
                .in_flight()
                .closed_reason()
                .cloned()
                .unwrap_or_else(|| ClientError::lost(self.shared.addr, Disconnect::Shutdown))
        };
        match self.shared.permits.acquire().await {
            // The reader returns the slot when the response arrives.
            Ok(permit) => permit.forget(),
            Err(_) => return Err(closed()),
        }
        let (tx, rx) = oneshot::channel();
        let registered = self.shared.in_flight().register(tx);
        let id = match registered {
            Ok(id) => id,
            Err(RegisterError::Closed(reason)) => return Err(reason),
            // Unreachable while permits match the table's cap; retryable.
            Err(RegisterError::Full) => {
                self.shared.permits.add_permits(1);
                let max = self.shared.in_flight().in_flight_max() as u32;
                return Err(ClientError::Server(
                    golem_wire::GolemError::TooManyInFlight { max },
                ));
            }
        };
        let frame = match encode(id, request) {
            Ok(frame) => frame,
            Err(e) => {
                self.shared.in_flight().unregister(id);
                self.shared.permits.add_permits(1);
                return Err(e);
            }
        };
        // If the writer is gone the connection has failed, and that failure
        // completes (or completed) `rx`.
        let _ = self.frames.send(frame);
        Ok(rx)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared
            .fail(ClientError::lost(self.shared.addr, Disconnect::Shutdown));
    }
}

async fn write_loop(
    shared: Arc<Shared>,
    mut stream: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut batch: Vec<u8> = Vec::new();
    loop {
        let first = tokio::select! {
            f = frames.recv() => match f {
                Some(f) => f,
                None => return,
            },
            _ = shutdown.wait_for(|down| *down) => return,
        };
        // Coalesce whatever else is queued into one write.
        batch.clear();
        let out: &[u8] = match frames.try_recv() {
            Ok(second) => {
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                while batch.len() < WRITE_BATCH_BYTES_MAX {
                    match frames.try_recv() {
                        Ok(f) => batch.extend_from_slice(&f),
                        Err(_) => break,
                    }
                }
                &batch
            }
            Err(_) => &first,
        };
        let written = tokio::select! {
            r = stream.write_all(out) => r,
            _ = shutdown.wait_for(|down| *down) => return,
        };
        if let Err(e) = written {
            shared.fail(ClientError::io(shared.addr, e));
            return;
        }
        if batch.capacity() > WRITE_BATCH_BYTES_MAX * 2 {
            batch = Vec::new(); // do not keep a huge buffer after a huge frame
        }
    }
}

async fn read_loop(shared: Arc<Shared>, mut stream: OwnedReadHalf, mut reader: ResponseReader) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut incoming = Vec::new();
    loop {
        let read = tokio::select! {
            r = stream.read(&mut buf) => r,
            _ = shutdown.wait_for(|down| *down) => return,
        };
        let n = match read {
            Ok(0) => return shared.fail(ClientError::lost(shared.addr, Disconnect::Eof)),
            Ok(n) => n,
            Err(e) => return shared.fail(ClientError::io(shared.addr, e)),
        };
        let fed = reader.feed(&buf[..n], &mut incoming);
        if let Err(error) = deliver(&shared, &mut incoming) {
            return shared.fail(error);
        }
        if let Err(error) = fed {
            return shared.fail(error);
        }
    }
}

/// Completes the callers of the responses in `incoming`.
fn deliver(shared: &Shared, incoming: &mut Vec<Incoming>) -> Result<(), ClientError> {
    if incoming.is_empty() {
        return Ok(());
    }
    let mut in_flight = shared.in_flight();
    for message in incoming.drain(..) {
        let (id, response) = match message {
            Incoming::Response(id, response) => (id, response),
            // The reader refuses a second HelloOk; be defensive anyway.
            Incoming::HelloOk(_) => {
                let kind = golem_wire::FrameKind::HelloOk;
                return Err(ClientError::protocol(
                    shared.addr,
                    ProtocolError::UnexpectedFrame { kind },
                ));
            }
        };
        match in_flight.complete(id) {
            Some(Completion::Waiting(pending)) => {
                shared.permits.add_permits(1);
                let _ = pending.send(Ok(response));
            }
            Some(Completion::Abandoned) => shared.permits.add_permits(1),
            None => {
                return Err(ClientError::protocol(
                    shared.addr,
                    ProtocolError::UnknownRequestId { id },
                ))
            }
        }
    }
    Ok(())
}
