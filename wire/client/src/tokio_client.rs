//! The async client for tokio.
//!
//! Owns the routing cache, one pipelined connection per endpoint address
//! (see `tokio_conn.rs`), and the retry loop that drives the sans-IO
//! [`Call`] through attempts.
//!
//! Invariants:
//! - `Client` is a cheap handle (`Clone + Send + Sync`): clones share the
//!   routing cache and the connections.
//! - No lock is held across an `.await`.
//! - At most one connection attempt per address runs at a time; after a
//!   failed one, requests to that address fail fast (as not sent, hence
//!   retried with backoff) for `backoff_initial_ms`, so a dead node is not
//!   hammered by every waiting request.
//! - Every call ends by its deadline.
//! - With PD endpoints, a request whose route the cache does not know (no
//!   learnt region with a leader) first asks the PD (`GetRegion`, then
//!   `GetStore` for the leader's address, cached); a PD that does not
//!   answer in time only costs that lookup: the request goes to the seed
//!   route, and servers' routing errors keep correcting the cache.

use crate::config::ClientConfig;
use crate::core::pieces::{BatchGetCursor, ScanCursor};
use crate::core::{Attempt, Call, Step};
use crate::error::{ClientError, Disconnect};
use crate::ops::{body, CasResult, FromResponse, ScanResult};
use crate::pd::{PdClient, PdClientConfig, PdClientError};
use crate::retry::XorShift64;
use crate::route::RouteTable;
use crate::tokio_conn::Conn;
use golem_wire::{HelloOk, PeerLocation, RegionInfo, RequestBody, ResponseBody, StoreId, WriteOp};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Most regions one PD lookup for a reverse scan asks for (one page of
/// `ScanRegions`).
const PD_LOOKUP_REGIONS_MAX: u32 = 1024;

/// The async GolemDB client. Cheap to clone; share it across tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.config.endpoints)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ClientConfig,
    routes: Mutex<RouteTable>,
    endpoints: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    rng: Mutex<XorShift64>,
    /// Routing from the Placement Driver, when configured.
    pd: Option<PdRouter>,
}

/// The PD as a source of routes.
struct PdRouter {
    client: PdClient,
    /// Shard 0's address of each store seen (a store's address never changes).
    stores: Mutex<HashMap<StoreId, SocketAddr>>,
}

impl PdRouter {
    fn new(config: &ClientConfig) -> Option<PdRouter> {
        if config.pd_endpoints.is_empty() {
            return None;
        }
        let client = PdClient::new(
            config.pd_endpoints.clone(),
            PdClientConfig {
                request_timeout_ms: config.connect_timeout_ms,
                client_name: config.client_name.clone(),
                ..PdClientConfig::default()
            },
        );
        Some(PdRouter {
            client,
            stores: Mutex::new(HashMap::new()),
        })
    }

    /// The region containing `key` as a routing entry, its leader's address
    /// resolved through the store's address.
    async fn region(&self, key: &[u8]) -> Result<Option<RegionInfo>, PdClientError> {
        let Some(route) = self.client.get_region(key).await? else {
            return Ok(None);
        };
        self.info(route).await.map(Some)
    }

    /// The regions overlapping `[start, end)`, in key order, up to the one
    /// holding the keys just below `end` (what a reverse scan starts from).
    async fn regions_overlapping(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> Result<Vec<RegionInfo>, PdClientError> {
        let mut infos = Vec::new();
        let mut from = start.to_vec();
        loop {
            let routes = self
                .client
                .scan_regions(&from, end, PD_LOOKUP_REGIONS_MAX)
                .await?;
            let full = routes.len() >= PD_LOOKUP_REGIONS_MAX as usize;
            let last_end = routes.last().map(|r| r.region.end.clone());
            for route in routes {
                infos.push(self.info(route).await?);
            }
            match last_end {
                Some(e) if full && !e.is_empty() && (end.is_empty() || e.as_slice() < end) => {
                    // Keep only the last page: the reverse scan needs its
                    // end first, later pieces look up the rest again.
                    infos.clear();
                    from = e;
                }
                _ => return Ok(infos),
            }
        }
    }

    /// A PD route as a routing entry, its leader's address resolved.
    async fn info(&self, route: golem_wire::pd::RegionRoute) -> Result<RegionInfo, PdClientError> {
        let leader = match route.leader {
            Some(peer) => {
                let base = self.store_addr(peer.store).await?;
                Some(PeerLocation {
                    peer: peer.id,
                    store: peer.store,
                    shard: peer.shard,
                    addr: SocketAddr::new(base.ip(), base.port().saturating_add(peer.shard.0))
                        .to_string(),
                })
            }
            None => None,
        };
        Ok(RegionInfo {
            id: route.region.id,
            start: route.region.start,
            end: route.region.end,
            epoch: route.region.epoch,
            leader,
        })
    }

    async fn store_addr(&self, store: StoreId) -> Result<SocketAddr, PdClientError> {
        if let Some(a) = lock(&self.stores).get(&store) {
            return Ok(*a);
        }
        let info = self.client.get_store(store).await?;
        let addr: SocketAddr = info.store.addr.parse().map_err(|_| {
            PdClientError::Unexpected(format!("store address {:?}", info.store.addr))
        })?;
        lock(&self.stores).insert(store, addr);
        Ok(addr)
    }

    /// A node to start from: the leader of the first region, else any store.
    async fn seed(&self) -> Result<SocketAddr, PdClientError> {
        if let Some(addr) = self
            .region(b"")
            .await?
            .and_then(|r| r.leader)
            .and_then(|l| l.addr.parse().ok())
        {
            return Ok(addr);
        }
        let stores = self.client.get_stores(false).await?;
        let store = stores
            .first()
            .ok_or_else(|| PdClientError::Unexpected("the PD knows no store".into()))?;
        store
            .store
            .addr
            .parse()
            .map_err(|_| PdClientError::Unexpected(format!("store address {:?}", store.store.addr)))
    }
}

/// The connection to one address.
#[derive(Default)]
struct Endpoint {
    /// The live connection, if any (fast path).
    conn: Mutex<Option<Arc<Conn>>>,
    /// Held while connecting; remembers the last failed attempt.
    connecting: tokio::sync::Mutex<Option<(Instant, ClientError)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// Connects to the first endpoint of `config` that completes the
    /// handshake. Fails with the last endpoint's error if none does.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let seed = config
            .jitter_seed
            .map_or_else(XorShift64::from_entropy, XorShift64::new);
        let pd = PdRouter::new(&config);
        let mut seeds = config.endpoints.clone();
        if seeds.is_empty() {
            let pd = pd.as_ref().expect("validated: endpoints or PD endpoints");
            let addr = pd.seed().await.map_err(|e| ClientError::NoNodeFromPd {
                reason: e.to_string(),
            })?;
            seeds.push(addr);
        }
        let client = Client {
            inner: Arc::new(Inner {
                routes: Mutex::new(RouteTable::seeded(seeds.clone())),
                endpoints: Mutex::new(HashMap::new()),
                rng: Mutex::new(seed),
                pd,
                config,
            }),
        };
        let mut last_error = None;
        for &addr in &seeds {
            let budget = client.inner.config.connect_timeout();
            match client.conn(addr, budget).await {
                Ok(_) => {
                    lock(&client.inner.routes).set_seed(addr);
                    return Ok(client);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "seed endpoint failed");
                    last_error = Some(e);
                }
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

    /// The handshake answer of the live connection to `addr`, if any.
    pub fn hello_ok(&self, addr: SocketAddr) -> Option<HelloOk> {
        let endpoint = lock(&self.inner.endpoints).get(&addr).cloned()?;
        let conn = lock(&endpoint.conn).clone()?;
        Some(conn.hello_ok().clone())
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>, ClientError> {
        self.run(body::get(key), self.inner.config.request_timeout())
            .await
    }

    /// Sets `key` to `value`.
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.run(body::put(key, value), self.inner.config.request_timeout())
            .await
    }

    /// Deletes `key` (absent keys are fine).
    pub async fn delete(&self, key: impl Into<Vec<u8>>) -> Result<(), ClientError> {
        self.run(body::delete(key), self.inner.config.request_timeout())
            .await
    }

    /// Up to `limit` pairs with `start <= key < end` (empty `end`: to the end
    /// of the key space), descending when `reverse`.
    pub async fn scan(
        &self,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
        limit: u32,
        reverse: bool,
    ) -> Result<ScanResult, ClientError> {
        let body = body::scan(start, end, limit, reverse);
        self.spanning_scan(body, self.inner.config.request_timeout())
            .await
    }

    /// The values of `keys`, in order.
    pub async fn batch_get<K: Into<Vec<u8>>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<Vec<u8>>>, ClientError> {
        self.spanning_batch_get(body::batch_get(keys), self.inner.config.request_timeout())
            .await
    }

    /// Applies `ops` atomically (all keys must lie in one region). See
    /// [`crate::write`] for constructors.
    pub async fn batch_write(
        &self,
        ops: impl IntoIterator<Item = WriteOp>,
    ) -> Result<(), ClientError> {
        self.run(body::batch_write(ops), self.inner.config.request_timeout())
            .await
    }

    /// Sets `key` to `new_value` (None: deletes it) if its current value is
    /// `expected` (None: absent). Never retried once it may have reached a
    /// server: a lost connection returns an error with
    /// [`Outcome::Unknown`](crate::Outcome::Unknown).
    pub async fn compare_and_swap(
        &self,
        key: impl Into<Vec<u8>>,
        expected: Option<&[u8]>,
        new_value: Option<&[u8]>,
    ) -> Result<CasResult, ClientError> {
        let body = body::cas(key, expected, new_value);
        self.run(body, self.inner.config.request_timeout()).await
    }

    /// Runs any request with an explicit deadline, with routing and retries
    /// (a scan or batch get across regions as one piece per region).
    pub async fn execute(
        &self,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<ResponseBody, ClientError> {
        match body {
            RequestBody::Scan { .. } => {
                let r = self.spanning_scan(body, timeout).await?;
                Ok(ResponseBody::Scan {
                    pairs: r.pairs,
                    more: r.more,
                })
            }
            RequestBody::BatchGet { .. } => {
                let values = self.spanning_batch_get(body, timeout).await?;
                Ok(ResponseBody::BatchGet { values })
            }
            body => self.run(body, timeout).await,
        }
    }

    /// A scan, one piece per region it crosses (`core::pieces`), all
    /// within `timeout`.
    async fn spanning_scan(
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
            let result = self.run_call(&mut call).await?;
            cursor.on_piece(call.sent_body(), result);
        }
        Ok(cursor.finish())
    }

    /// A batch get, one piece per region its keys fall in, all within
    /// `timeout`.
    async fn spanning_batch_get(
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
            let values = self.run_call(&mut call).await?;
            cursor.on_piece(call.sent_body(), values);
        }
        Ok(cursor.finish())
    }

    async fn run<O: FromResponse>(
        &self,
        body: RequestBody,
        timeout: Duration,
    ) -> Result<O, ClientError> {
        let mut call = Call::<O>::new(body, timeout, Instant::now(), &self.inner.config.retry)?;
        self.run_call(&mut call).await
    }

    /// Makes `call`'s attempts until it is done.
    async fn run_call<O: FromResponse>(&self, call: &mut Call<O>) -> Result<O, ClientError> {
        loop {
            let mut sent = false;
            let mut target = None;
            let deadline = tokio::time::Instant::from_std(call.deadline());
            let attempt_ms = self.inner.config.attempt_timeout_ms;
            let attempt_deadline = if attempt_ms == 0 {
                deadline
            } else {
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(attempt_ms))
            };
            let attempt = match tokio::time::timeout_at(
                attempt_deadline,
                self.attempt(call, &mut sent, &mut target),
            )
            .await
            {
                Ok(attempt) => attempt,
                Err(_) if attempt_deadline >= deadline => return Err(call.timeout_error(sent)),
                Err(_) => {
                    // The node did not answer in time: treat it like a
                    // lost connection to it (its route is forgotten).
                    let addr = target.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
                    let e = ClientError::io(
                        addr,
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {attempt_ms} ms"),
                        ),
                    );
                    if sent {
                        Attempt::Lost(e)
                    } else {
                        Attempt::NotSent(e)
                    }
                }
            };
            self.learn(&attempt);
            let step = call.on_attempt(attempt, Instant::now(), &mut *lock(&self.inner.rng));
            match step {
                Step::Done(result) => return result,
                Step::RetryAfter(delay) => tokio::time::sleep(delay).await,
            }
        }
    }

    /// One attempt; `sent` is set once the request may have left.
    async fn attempt<O: FromResponse>(
        &self,
        call: &mut Call<O>,
        sent: &mut bool,
        target: &mut Option<SocketAddr>,
    ) -> Attempt {
        if let Some(pd) = &self.inner.pd {
            if !lock(&self.inner.routes).knows_request(call.body()) {
                let found = match call.body() {
                    // A reverse scan starts from the region below its end.
                    RequestBody::Scan {
                        start,
                        end,
                        reverse: true,
                        ..
                    } => pd.regions_overlapping(start, end).await,
                    body => pd
                        .region(RouteTable::request_key(body))
                        .await
                        .map(|r| r.into_iter().collect()),
                };
                match found {
                    Ok(infos) => {
                        let mut routes = lock(&self.inner.routes);
                        for info in infos {
                            routes.update(info);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "PD lookup failed; using the cache"),
                }
            }
        }
        let route = lock(&self.inner.routes).locate_request(call.body());
        *target = Some(route.addr);
        let budget = call
            .remaining(Instant::now())
            .min(self.inner.config.connect_timeout());
        let conn = match self.conn(route.addr, budget).await {
            Ok(conn) => conn,
            Err(e) => return Attempt::NotSent(e),
        };
        let request = call.prepare(&route, Instant::now());
        let rx = match conn.send(request).await {
            Ok(rx) => rx,
            Err(e) => return Attempt::NotSent(e),
        };
        *sent = true;
        match rx.await {
            Ok(Ok(response)) => Attempt::Response {
                addr: route.addr,
                response,
            },
            Ok(Err(e)) => Attempt::Lost(e),
            Err(_) => Attempt::Lost(ClientError::lost(route.addr, Disconnect::Shutdown)),
        }
    }

    /// Updates the routing cache from an attempt's failure.
    fn learn(&self, attempt: &Attempt) {
        let mut routes = lock(&self.inner.routes);
        match attempt {
            Attempt::Response {
                response: golem_wire::Response::Err(e),
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

    /// The live connection to `addr`, connecting within `budget` if needed.
    async fn conn(&self, addr: SocketAddr, budget: Duration) -> Result<Arc<Conn>, ClientError> {
        let endpoint = lock(&self.inner.endpoints).entry(addr).or_default().clone();
        if let Some(conn) = live(&endpoint) {
            return Ok(conn);
        }
        let mut last_failure = endpoint.connecting.lock().await;
        // Someone else may have connected while we waited.
        if let Some(conn) = live(&endpoint) {
            return Ok(conn);
        }
        let config = &self.inner.config;
        if let Some((at, error)) = last_failure.as_ref() {
            if at.elapsed() < Duration::from_millis(config.retry.backoff_initial_ms) {
                return Err(error.clone());
            }
        }
        let connected = Conn::connect(
            addr,
            config.cluster_id,
            &config.client_name,
            config.in_flight_max,
            budget.max(Duration::from_millis(1)),
        )
        .await;
        match connected {
            Ok(conn) => {
                let conn = Arc::new(conn);
                *lock(&endpoint.conn) = Some(conn.clone());
                *last_failure = None;
                Ok(conn)
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connect failed");
                *last_failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }
}

/// The endpoint's connection if it is still usable.
fn live(endpoint: &Endpoint) -> Option<Arc<Conn>> {
    let mut slot = lock(&endpoint.conn);
    match slot.as_ref() {
        Some(conn) if !conn.is_closed() => Some(conn.clone()),
        Some(_) => {
            *slot = None;
            None
        }
        None => None,
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

    #[test]
    fn client_futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let client = Client {
            inner: Arc::new(Inner {
                config: ClientConfig::new(["127.0.0.1:1".parse().unwrap()]),
                routes: Mutex::new(RouteTable::seeded(vec!["127.0.0.1:1".parse().unwrap()])),
                endpoints: Mutex::new(HashMap::new()),
                rng: Mutex::new(XorShift64::new(1)),
                pd: None,
            }),
        };
        assert_send(&client.get("k"));
        assert_send(&client.compare_and_swap("k", None, Some(b"v")));
        assert_send(&client.execute(body::get("k"), Duration::from_secs(1)));
    }
}
