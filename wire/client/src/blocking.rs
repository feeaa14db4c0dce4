//! The blocking client: `std::net::TcpStream`, no hidden runtime.
//!
//! Owns a small pool of idle connections per endpoint address; each call
//! takes a connection, runs one request on it (socket read/write timeouts
//! enforce the deadline), and gives it back. Framing, ids, validation,
//! retries and routing are the sans-IO core's ([`Connection`], [`Call`],
//! [`RouteTable`]).
//!
//! Invariants:
//! - A pooled connection is idle: nothing in flight, no partial frame. A
//!   connection that timed out, failed, or was left mid-request is dropped,
//!   never pooled.
//! - At most `IDLE_CONNECTIONS_PER_ENDPOINT_MAX` idle connections are kept
//!   per address; threads never wait for each other's requests.
//! - Every call ends by its deadline (give or take the OS timer slack).

use crate::config::ClientConfig;
use crate::core::pieces::{BatchGetCursor, ScanCursor};
use crate::core::{Attempt, Call, Connection, Event, SendError, Step};
use crate::error::{ClientError, Disconnect};
use crate::ops::{body, CasResult, FromResponse, ScanResult};
use crate::retry::XorShift64;
use crate::route::{Route, RouteTable};
use golem_wire::{Request, RequestBody, Response, ResponseBody, WriteOp};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Idle connections kept per endpoint address.
pub const IDLE_CONNECTIONS_PER_ENDPOINT_MAX: usize = 8;
/// Read buffer size, in bytes.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Shortest socket timeout set, in milliseconds (0 would mean "none").
const SOCKET_TIMEOUT_MS_MIN: u64 = 1;

/// The blocking GolemDB client. Cheap to clone; share it across threads.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Client")
            .field("endpoints", &self.inner.config.endpoints)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ClientConfig,
    routes: Mutex<RouteTable>,
    idle: Mutex<HashMap<SocketAddr, Vec<BlockingConn>>>,
    rng: Mutex<XorShift64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One connection past its handshake.
struct BlockingConn {
    stream: TcpStream,
    conn: Connection<()>,
}

/// How a round trip ended short of a response.
enum TripError {
    /// The deadline passed; `sent` says whether the request may have left.
    Timeout { sent: bool },
    /// The attempt failed (boxed: an attempt is large).
    Failed(Box<Attempt>),
}

fn failed(attempt: Attempt) -> TripError {
    TripError::Failed(Box::new(attempt))
}

impl BlockingConn {
    fn connect(
        config: &ClientConfig,
        addr: SocketAddr,
        budget: Duration,
    ) -> Result<BlockingConn, ClientError> {
        let deadline = Instant::now() + budget;
        let io = |e| ClientError::io(addr, e);
        let stream = TcpStream::connect_timeout(&addr, budget).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut c = BlockingConn {
            stream,
            conn: Connection::new(addr, config.cluster_id, config.in_flight_max),
        };
        let hello = c.conn.hello(&config.client_name)?;
        c.stream
            .set_write_timeout(Some(socket_timeout(deadline)))
            .map_err(io)?;
        c.stream.write_all(&hello).map_err(io)?;
        let mut events = Vec::new();
        let mut buf = vec![0u8; 4096];
        while c.conn.hello_ok().is_none() {
            if Instant::now() >= deadline {
                return Err(io(ErrorKind::TimedOut.into()));
            }
            c.stream
                .set_read_timeout(Some(socket_timeout(deadline)))
                .map_err(io)?;
            let n = c.stream.read(&mut buf).map_err(io)?;
            if n == 0 {
                return Err(ClientError::lost(addr, Disconnect::Eof));
            }
            c.conn.receive(&buf[..n], &mut events)?;
        }
        Ok(c)
    }

    /// True when the server has not closed this idle connection nor sent
    /// anything on it (a `Goodbye`, say) since its last response.
    fn is_idle_and_open(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut probe = [0u8; 1];
        let open =
            matches!(self.stream.peek(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock);
        open && self.stream.set_nonblocking(false).is_ok()
    }

    /// Sends `request` and waits for its response until `deadline`.
    fn round_trip(&mut self, request: &Request, deadline: Instant) -> Result<Response, TripError> {
        let addr = self.conn.addr();
        let (id, frame) = match self.conn.send(request, ()) {
            Ok(sent) => sent,
            Err(SendError::Failed(e)) => return Err(failed(Attempt::NotSent(e))),
            Err(SendError::Full) => {
                let e = ClientError::lost(addr, Disconnect::Shutdown);
                return Err(failed(Attempt::NotSent(e)));
            }
        };
        let lost = |e: std::io::Error| failed(Attempt::Lost(ClientError::io(addr, e)));
        self.stream
            .set_write_timeout(Some(socket_timeout(deadline)))
            .map_err(lost)?;
        if let Err(e) = self.stream.write_all(&frame) {
            return Err(match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => TripError::Timeout { sent: true },
                _ => lost(e),
            });
        }
        let mut buf = vec![0u8; READ_BUFFER_BYTES];
        let mut events = Vec::new();
        loop {
            if Instant::now() >= deadline {
                return Err(TripError::Timeout { sent: true });
            }
            self.stream
                .set_read_timeout(Some(socket_timeout(deadline)))
                .map_err(lost)?;
            let n = match self.stream.read(&mut buf) {
                Ok(0) => {
                    let e = ClientError::lost(addr, Disconnect::Eof);
                    return Err(failed(Attempt::Lost(e)));
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(TripError::Timeout { sent: true });
                }
                Err(e) => return Err(lost(e)),
            };
            let received = self.conn.receive(&buf[..n], &mut events);
            for event in events.drain(..) {
                match event {
                    Event::Response {
                        id: got, response, ..
                    } if got == id => return Ok(response),
                    Event::Lost { error, .. } => return Err(failed(Attempt::Lost(error))),
                    _ => {}
                }
            }
            if let Err(e) = received {
                return Err(failed(Attempt::Lost(e)));
            }
        }
    }
}

/// The time left until `deadline`, at least `SOCKET_TIMEOUT_MS_MIN`.
fn socket_timeout(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(SOCKET_TIMEOUT_MS_MIN))
}

impl Client {
    /// Connects to the first endpoint of `config` that completes the
    /// handshake. Fails with the last endpoint's error if none does.
    pub fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        if config.endpoints.is_empty() {
            return Err(ClientError::InvalidConfig {
                reason:
                    "the blocking client needs endpoints (it does not route through the PD yet)"
                        .into(),
            });
        }
        let seed = config
            .jitter_seed
            .map_or_else(XorShift64::from_entropy, XorShift64::new);
        let client = Client {
            inner: Arc::new(Inner {
                routes: Mutex::new(RouteTable::seeded(config.endpoints.clone())),
                idle: Mutex::new(HashMap::new()),
                rng: Mutex::new(seed),
                config,
            }),
        };
        let mut last_error = None;
        for &addr in &client.inner.config.endpoints {
            match BlockingConn::connect(
                &client.inner.config,
                addr,
                client.inner.config.connect_timeout(),
            ) {
                Ok(conn) => {
                    lock(&client.inner.routes).set_seed(addr);
                    client.give_back(conn);
                    return Ok(client);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::InvalidConfig {
            reason: "no endpoints".into(),
        }))
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// A snapshot of the routing cache.
    pub fn routes(&self) -> RouteTable {
        lock(&self.inner.routes).clone()
    }

    /// The value of `key`, if it exists.
    pub fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>, ClientError> {
        self.run(body::get(key), self.inner.config.request_timeout())
    }

    /// Sets `key` to `value`.
    pub fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.run(body::put(key, value), self.inner.config.request_timeout())
    }

    /// Deletes `key` (absent keys are fine).
    pub fn delete(&self, key: impl Into<Vec<u8>>) -> Result<(), ClientError> {
        self.run(body::delete(key), self.inner.config.request_timeout())
    }

    /// Up to `limit` pairs with `start <= key < end` (empty `end`: to the end
    /// of the key space), descending when `reverse`.
    pub fn scan(
        &self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
        limit: u32,
        reverse: bool,
    ) -> Result<ScanResult, ClientError> {
        self.spanning_scan(
            body::scan(start, end, limit, reverse),
            self.inner.config.request_timeout(),
        )
    }

    /// The values of `keys`, in order.
    pub fn batch_get<K: Into<Vec<u8>>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<Vec<u8>>>, ClientError> {
        self.spanning_batch_get(body::batch_get(keys), self.inner.config.request_timeout())
    }

    /// Applies `ops` atomically (all keys must lie in one region).
    pub fn batch_write(&self, ops: impl IntoIterator<Item = WriteOp>) -> Result<(), ClientError> {
        self.run(body::batch_write(ops), self.inner.config.request_timeout())
    }

    /// Sets `key` to `new_value` (None: deletes it) if its current value is
    /// `expected` (None: absent). Never retried once it may have reached a
    /// server.
    pub fn compare_and_swap(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Option<&[u8]>,
        new_value: Option<&[u8]>,
    ) -> Result<CasResult, ClientError> {
        let body = body::cas(key, expected, new_value);
        self.run(body, self.inner.config.request_timeout())
    }

    /// Runs any request with an explicit deadline, with routing and retries.
    pub fn execute(
        &self,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ResponseBody, ClientError> {
        match body {
            RequestBody::Scan { .. } => {
                let r = self.spanning_scan(body, timeout)?;
                Ok(ResponseBody::Scan {
                    pairs: r.pairs,
                    more: r.more,
                })
            }
            RequestBody::BatchGet { .. } => {
                let values = self.spanning_batch_get(body, timeout)?;
                Ok(ResponseBody::BatchGet { values })
            }
            body => self.run(body, timeout),
        }
    }

    /// A scan, one piece per region it crosses (`core::pieces`), all
    /// within `timeout`.
    fn spanning_scan(
        &self,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ScanResult, ClientError> {
        body.validate().map_err(ClientError::InvalidRequest)?;
        let deadline = Instant::now() + timeout;
        let RequestBody::Scan {
            start,
            end,
            limit,
            reverse,
        } = body
        else {
            unreachable!("spanning_scan of a {} request", body.name());
        };
        let mut cursor = ScanCursor::new(start, end, limit, reverse);
        while let Some(piece) = cursor.next_piece() {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut call = Call::new(piece, left, Instant::now(), &self.inner.config.retry)?;
            let result = self.run_call(&mut call)?;
            cursor.on_piece(call.sent_body(), result);
        }
        Ok(cursor.finish())
    }

    /// A batch get, one piece per region its keys fall in, all within
    /// `timeout`.
    fn spanning_batch_get(
        &self,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<Vec<Option<Vec<u8>>>, ClientError> {
        body.validate().map_err(ClientError::InvalidRequest)?;
        let deadline = Instant::now() + timeout;
        let RequestBody::BatchGet { keys } = body else {
            unreachable!("spanning_batch_get of a {} request", body.name());
        };
        let mut cursor = BatchGetCursor::new(keys);
        while let Some(piece) = cursor.next_piece() {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut call = Call::new(piece, left, Instant::now(), &self.inner.config.retry)?;
            let values = self.run_call(&mut call)?;
            cursor.on_piece(call.sent_body(), values);
        }
        Ok(cursor.finish())
    }

    fn run<O: FromResponse>(&self, body: RequestBody, timeout: Duration) -> Result<O, ClientError> {
        let mut call = Call::<O>::new(body, timeout, Instant::now(), &self.inner.config.retry)?;
        self.run_call(&mut call)
    }

    /// Makes `call`'s attempts until it is done.
    fn run_call<O: FromResponse>(&self, call: &mut Call<O>) -> Result<O, ClientError> {
        loop {
            let attempt = match self.attempt(call) {
                Ok(attempt) => attempt,
                Err(sent) => return Err(call.timeout_error(sent)),
            };
            self.learn(&attempt);
            let step = call.on_attempt(attempt, Instant::now(), &mut *lock(&self.inner.rng));
            match step {
                Step::Done(result) => return result,
                Step::RetryAfter(delay) => std::thread::sleep(delay),
            }
        }
    }

    /// One attempt; `Err(sent)` when the deadline passed during it.
    fn attempt<O: FromResponse>(&self, call: &mut Call<O>) -> Result<Attempt, bool> {
        let route: Route = lock(&self.inner.routes).locate_request(call.body());
        let now = Instant::now();
        if now >= call.deadline() {
            return Err(false);
        }
        let mut conn = match self.take(route.addr, call.remaining(now)) {
            Ok(conn) => conn,
            Err(_) if Instant::now() >= call.deadline() => return Err(false),
            Err(e) => return Ok(Attempt::NotSent(e)),
        };
        let deadline = call.deadline();
        let request = call.prepare(&route, Instant::now());
        match conn.round_trip(request, deadline) {
            Ok(response) => {
                self.give_back(conn);
                Ok(Attempt::Response {
                    addr: route.addr,
                    response,
                })
            }
            Err(TripError::Timeout { sent }) => Err(sent),
            Err(TripError::Failed(attempt)) => Ok(*attempt),
        }
    }

    /// Updates the routing cache from an attempt's failure.
    fn learn(&self, attempt: &Attempt) {
        let mut routes = lock(&self.inner.routes);
        match attempt {
            Attempt::Response {
                response: Response::Err(e),
                ..
            } => routes.on_error(e),
            Attempt::NotSent(e) | Attempt::Lost(e) if e.is_transport() => {
                if let ClientError::Io { addr, .. } | ClientError::ConnectionLost { addr, .. } = e {
                    routes.on_unreachable(*addr);
                }
            }
            _ => {}
        }
    }

    /// An idle connection to `addr`, or a new one within `budget`.
    fn take(&self, addr: SocketAddr, budget: Duration) -> Result<BlockingConn, ClientError> {
        loop {
            let pooled = lock(&self.inner.idle).get_mut(&addr).and_then(Vec::pop);
            match pooled {
                Some(conn) if conn.is_idle_and_open() => return Ok(conn),
                Some(_) => continue, // closed by the server meanwhile: drop it
                None => break,
            }
        }
        let budget = budget
            .min(self.inner.config.connect_timeout())
            .max(Duration::from_millis(SOCKET_TIMEOUT_MS_MIN));
        BlockingConn::connect(&self.inner.config, addr, budget)
    }

    /// Returns an idle connection to the pool (or drops it if the pool is
    /// full).
    fn give_back(&self, conn: BlockingConn) {
        if conn.conn.is_closed() || conn.conn.in_flight() > 0 {
            return;
        }
        let addr = conn.conn.addr();
        let mut idle = lock(&self.inner.idle);
        let pool = idle.entry(addr).or_default();
        if pool.len() < IDLE_CONNECTIONS_PER_ENDPOINT_MAX {
            pool.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_is_send_sync_clone() {
        fn assert_traits<T: Send + Sync + Clone + 'static>() {}
        assert_traits::<Client>();
    }
}
