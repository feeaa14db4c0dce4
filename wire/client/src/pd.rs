//! `PdClient`: a tokio client of the Placement Driver, for the SDK's
//! routing, nodes, `golem ctl` and tests (re-exported as
//! `golem_pd::client`).
//!
//! Owns one connection at a time to one PD member. A request goes to the
//! member believed to be the leader; `PdNotLeader` with an address moves the
//! client there at once, and `PdNotLeader` without one, `ServerBusy`, a
//! timeout or a lost connection make it retry — on the next member, after a
//! backoff that doubles from `backoff_min_ms` to `backoff_max_ms` — until
//! the request's deadline. Depends only on `golem-wire` and tokio.
//!
//! Invariants: every socket operation has a timeout; a request is retried
//! only while its deadline has not passed; errors that retrying cannot fix
//! (the request itself is wrong) are returned at once. Every PD write is
//! safe to retry, with one caveat the caller must know: a retried
//! `AllocIds` or `Tso` whose first attempt took effect skips those ids or
//! timestamps (never reuses them), and a retried `Bootstrap` whose first
//! attempt took effect answers `AlreadyBootstrapped`. `JoinCluster` (the
//! node's start, `join`) is idempotent per store id.

use golem_wire::codec::{decode_goodbye, decode_hello_ok, encode_hello};
use golem_wire::pd::{
    decode_pd_response, encode_pd_request, PdMember, PdRequest, PdRequestBody, PdResponse,
    PdResponseBody, Region, RegionHeartbeat, RegionRoute, Store, StoreInfo, StoreStats, Timestamp,
};
use golem_wire::{
    ClusterId, FrameDecoder, FrameKind, GolemError, Hello, PdMemberId, RegionId, RequestId,
    StoreId, PROTOCOL_VERSION,
};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::timeout;

/// Client settings; every duration in ms.
#[derive(Clone, Debug)]
pub struct PdClientConfig {
    /// Total time one call may take, retries included.
    pub request_timeout_ms: u64,
    /// Time one attempt (connect, handshake, or one round trip) may take.
    pub attempt_timeout_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Name sent in the handshake.
    pub client_name: String,
}

impl Default for PdClientConfig {
    fn default() -> Self {
        PdClientConfig {
            request_timeout_ms: 10_000,
            attempt_timeout_ms: 1_000,
            backoff_min_ms: 10,
            backoff_max_ms: 500,
            client_name: "golem-pd-client".into(),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum PdClientError {
    /// The PD answered with an error that retrying cannot fix.
    #[error("PD error: {0}")]
    Server(GolemError),
    /// No member answered successfully before the deadline.
    #[error("PD unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// The PD answered with a response of another kind (a bug).
    #[error("unexpected PD response: {0}")]
    Unexpected(String),
}

struct Conn {
    stream: TcpStream,
    addr: SocketAddr,
    decoder: FrameDecoder,
    next_id: u32,
}

struct Inner {
    conn: Option<Conn>,
    /// Where to try next: the leader hint, else the next endpoint.
    leader: Option<SocketAddr>,
    next_endpoint: usize,
    /// Learnt from the first handshake; later handshakes must match.
    cluster: ClusterId,
}

/// A PD client (cheap to share behind an `Arc`; calls are serialized).
pub struct PdClient {
    endpoints: Vec<SocketAddr>,
    cfg: PdClientConfig,
    inner: Mutex<Inner>,
}

enum Attempt {
    Done(PdResponseBody),
    Fatal(GolemError),
    Retry {
        why: String,
        redirect: Option<SocketAddr>,
        backoff: bool,
    },
}

impl PdClient {
    /// A client of the PD group reachable at `endpoints` (any members).
    pub fn new(endpoints: Vec<SocketAddr>, cfg: PdClientConfig) -> PdClient {
        assert!(
            !endpoints.is_empty(),
            "a PD client needs at least one endpoint"
        );
        PdClient {
            endpoints,
            cfg,
            inner: Mutex::new(Inner {
                conn: None,
                leader: None,
                next_endpoint: 0,
                cluster: ClusterId(0),
            }),
        }
    }

    /// The cluster id learnt from the PD (0 before bootstrap or before the
    /// first call).
    pub async fn cluster(&self) -> ClusterId {
        self.inner.lock().await.cluster
    }

    /// Sends one request, following redirects and retrying until the deadline.
    pub async fn call(&self, body: PdRequestBody) -> Result<PdResponseBody, PdClientError> {
        body.validate().map_err(PdClientError::Server)?;
        let deadline = Instant::now() + Duration::from_millis(self.cfg.request_timeout_ms);
        let mut inner = self.inner.lock().await;
        let mut backoff = self.cfg.backoff_min_ms;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let result = self.attempt(&mut inner, &body, deadline).await;
            let (why, backoff_now) = match result {
                Attempt::Done(b) => {
                    match &b {
                        PdResponseBody::Bootstrap { cluster }
                        | PdResponseBody::JoinCluster {
                            cluster: Some(cluster),
                            ..
                        } => inner.cluster = *cluster,
                        _ => {}
                    }
                    return Ok(b);
                }
                Attempt::Fatal(e) => return Err(PdClientError::Server(e)),
                Attempt::Retry {
                    why,
                    redirect,
                    backoff,
                } => {
                    if let Some(addr) = redirect {
                        if inner.conn.as_ref().map(|c| c.addr) != Some(addr) {
                            inner.conn = None;
                        }
                        inner.leader = Some(addr);
                    }
                    (why, backoff)
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(PdClientError::Unavailable {
                    attempts,
                    last: why,
                });
            }
            if backoff_now {
                let pause = Duration::from_millis(backoff).min(deadline - now);
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(self.cfg.backoff_max_ms);
            }
        }
    }

    async fn attempt(&self, inner: &mut Inner, body: &PdRequestBody, deadline: Instant) -> Attempt {
        let left = deadline.saturating_duration_since(Instant::now());
        let t = Duration::from_millis(self.cfg.attempt_timeout_ms).min(left);
        if inner.conn.is_none() {
            let addr = match inner.leader.take() {
                Some(a) => a,
                None => {
                    let a = self.endpoints[inner.next_endpoint % self.endpoints.len()];
                    inner.next_endpoint += 1;
                    a
                }
            };
            match timeout(t, self.connect(addr, inner.cluster)).await {
                Ok(Ok((conn, cluster))) => {
                    if cluster.0 != 0 {
                        inner.cluster = cluster;
                    }
                    inner.conn = Some(conn);
                }
                Ok(Err(why)) => {
                    return Attempt::Retry {
                        why: format!("{addr}: {why}"),
                        redirect: None,
                        backoff: true,
                    }
                }
                Err(_) => {
                    return Attempt::Retry {
                        why: format!("{addr}: connect timed out"),
                        redirect: None,
                        backoff: true,
                    }
                }
            }
        }
        let conn = inner.conn.as_mut().expect("connected above");
        let addr = conn.addr;
        let req = PdRequest {
            timeout_ms: t.as_millis().clamp(1, u32::MAX as u128) as u32,
            body: body.clone(),
        };
        let r = timeout(t, conn.round_trip(&req)).await;
        let resp = match r {
            Ok(Ok(resp)) => resp,
            Ok(Err(why)) => {
                inner.conn = None;
                return Attempt::Retry {
                    why: format!("{addr}: {why}"),
                    redirect: None,
                    backoff: true,
                };
            }
            Err(_) => {
                inner.conn = None;
                return Attempt::Retry {
                    why: format!("{addr}: request timed out"),
                    redirect: None,
                    backoff: true,
                };
            }
        };
        match resp {
            PdResponse::Ok(b) => Attempt::Done(b),
            PdResponse::Err(GolemError::PdNotLeader {
                leader_addr,
                leader_id,
            }) => {
                let redirect = leader_addr.and_then(|a| a.parse().ok());
                if redirect.is_none() {
                    inner.conn = None; // try another member
                }
                Attempt::Retry {
                    why: format!("{addr}: not the leader (leader {leader_id:?})"),
                    backoff: redirect.is_none(),
                    redirect,
                }
            }
            PdResponse::Err(e @ (GolemError::ServerBusy { .. } | GolemError::DeadlineExceeded)) => {
                Attempt::Retry {
                    why: format!("{addr}: {e}"),
                    redirect: None,
                    backoff: true,
                }
            }
            PdResponse::Err(e @ GolemError::ShuttingDown) => {
                inner.conn = None;
                Attempt::Retry {
                    why: format!("{addr}: {e}"),
                    redirect: None,
                    backoff: true,
                }
            }
            PdResponse::Err(e) => Attempt::Fatal(e),
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        cluster: ClusterId,
    ) -> Result<(Conn, ClusterId), String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            addr,
            decoder: FrameDecoder::new(golem_wire::limits::FRAME_PAYLOAD_BYTES_MAX),
            next_id: 1,
        };
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION.into(),
            cluster_id: cluster,
            client_name: self.cfg.client_name.clone(),
        };
        let frame = encode_hello(RequestId(0), &hello).map_err(|e| e.to_string())?;
        conn.stream
            .write_all(&frame)
            .await
            .map_err(|e| e.to_string())?;
        let f = conn.read_frame().await?;
        match f.header.kind {
            FrameKind::HelloOk => {
                let ok = decode_hello_ok(&f.payload).map_err(|e| e.to_string())?;
                Ok((conn, ok.cluster_id))
            }
            FrameKind::Goodbye => Err(decode_goodbye(&f.payload)
                .map(|e| e.to_string())
                .unwrap_or_else(|e| e.to_string())),
            k => Err(format!("unexpected {k:?} frame in the handshake")),
        }
    }

    // --- typed helpers ----------------------------------------------------------

    /// `count` fresh ids.
    pub async fn alloc_ids(&self, count: u32) -> Result<Range<u64>, PdClientError> {
        match self.call(PdRequestBody::AllocIds { count }).await? {
            PdResponseBody::AllocIds { first, count } => Ok(first..first + u64::from(count)),
            other => Err(unexpected(other)),
        }
    }

    /// `count` fresh timestamps; returns the last (the first is `last - count + 1`).
    pub async fn tso(&self, count: u32) -> Result<Timestamp, PdClientError> {
        match self.call(PdRequestBody::Tso { count }).await? {
            PdResponseBody::Tso { last, .. } => Ok(last),
            other => Err(unexpected(other)),
        }
    }

    /// Creates the cluster with its first store and region.
    pub async fn bootstrap(
        &self,
        store: Store,
        region: Region,
    ) -> Result<ClusterId, PdClientError> {
        match self
            .call(PdRequestBody::Bootstrap { store, region })
            .await?
        {
            PdResponseBody::Bootstrap { cluster } => Ok(cluster),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the cluster exists.
    pub async fn is_bootstrapped(&self) -> Result<bool, PdClientError> {
        match self.call(PdRequestBody::IsBootstrapped).await? {
            PdResponseBody::IsBootstrapped { bootstrapped } => Ok(bootstrapped),
            other => Err(unexpected(other)),
        }
    }

    /// Registers a store (idempotent for the same address).
    pub async fn put_store(&self, store: Store) -> Result<(), PdClientError> {
        match self.call(PdRequestBody::PutStore { store }).await? {
            PdResponseBody::PutStore => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Reports a store's statistics.
    pub async fn store_heartbeat(
        &self,
        store: StoreId,
        stats: StoreStats,
    ) -> Result<(), PdClientError> {
        match self
            .call(PdRequestBody::StoreHeartbeat { store, stats })
            .await?
        {
            PdResponseBody::StoreHeartbeat => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Reports a region (from its leader); returns an operator to run, if any.
    pub async fn region_heartbeat(
        &self,
        heartbeat: RegionHeartbeat,
    ) -> Result<Option<golem_wire::pd::Operator>, PdClientError> {
        match self
            .call(PdRequestBody::RegionHeartbeat { heartbeat })
            .await?
        {
            PdResponseBody::RegionHeartbeat { operator } => Ok(operator),
            other => Err(unexpected(other)),
        }
    }

    /// The region containing `key`.
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<RegionRoute>, PdClientError> {
        match self
            .call(PdRequestBody::GetRegion { key: key.to_vec() })
            .await?
        {
            PdResponseBody::Region { route } => Ok(route),
            other => Err(unexpected(other)),
        }
    }

    /// A region by id.
    pub async fn get_region_by_id(&self, region: RegionId) -> Result<RegionRoute, PdClientError> {
        match self.call(PdRequestBody::GetRegionById { region }).await? {
            PdResponseBody::Region { route: Some(r) } => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Regions overlapping `[start, end)`.
    pub async fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
    ) -> Result<Vec<RegionRoute>, PdClientError> {
        let body = PdRequestBody::ScanRegions {
            start: start.to_vec(),
            end: end.to_vec(),
            limit,
        };
        match self.call(body).await? {
            PdResponseBody::Regions { routes } => Ok(routes),
            other => Err(unexpected(other)),
        }
    }

    /// A store.
    pub async fn get_store(&self, store: StoreId) -> Result<StoreInfo, PdClientError> {
        match self.call(PdRequestBody::GetStore { store }).await? {
            PdResponseBody::Store { store } => Ok(store),
            other => Err(unexpected(other)),
        }
    }

    /// Every store.
    pub async fn get_stores(
        &self,
        include_tombstones: bool,
    ) -> Result<Vec<StoreInfo>, PdClientError> {
        match self
            .call(PdRequestBody::GetStores { include_tombstones })
            .await?
        {
            PdResponseBody::Stores { stores } => Ok(stores),
            other => Err(unexpected(other)),
        }
    }

    /// The PD members and the leader the answering member knows.
    pub async fn get_members(&self) -> Result<(Vec<PdMember>, Option<PdMemberId>), PdClientError> {
        match self.call(PdRequestBody::GetMembers).await? {
            PdResponseBody::Members { members, leader } => Ok((members, leader)),
            other => Err(unexpected(other)),
        }
    }
}

/// What [`PdClient::join`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Joined {
    /// The store holds a peer of the cluster's first region, which the PD
    /// created when it bootstrapped the cluster (the whole key space, one
    /// voter on shard 0 of each of its first `--initial-replicas` stores):
    /// the node must create its replica of `region` locally. Every store
    /// with a peer in it gets this answer, on every call.
    Bootstrapped { cluster: ClusterId, region: Region },
    /// The cluster exists; the store is registered and hosts nothing yet.
    Registered { cluster: ClusterId },
}

/// Where one [`PdClient::join_once`] left the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinProgress {
    /// The cluster exists: the store's place in it.
    Joined(Joined),
    /// No cluster yet: the store is a bootstrap candidate; the PD
    /// bootstraps once `initial_replicas` stores are known (`stores` now).
    Waiting { stores: u32, initial_replicas: u32 },
}

/// First and largest pause between polls of [`PdClient::join`], in ms.
pub const JOIN_POLL_MIN_MS: u64 = 100;
pub const JOIN_POLL_MAX_MS: u64 = 1_000;

impl PdClient {
    /// One `JoinCluster` call: registers `store` (as a bootstrap candidate
    /// while the cluster does not exist) and says where it stands. Safe to
    /// repeat and to retry (idempotent per store id): a store registered by
    /// an attempt whose answer was lost, or by a PD leader that lost its
    /// leadership since, gets the same answer from the next one.
    pub async fn join_once(&self, store: Store) -> Result<JoinProgress, PdClientError> {
        let id = store.id;
        match self.call(PdRequestBody::JoinCluster { store }).await? {
            PdResponseBody::JoinCluster {
                cluster: Some(cluster),
                region,
                ..
            } => Ok(JoinProgress::Joined(
                match region.filter(|r| r.peers.iter().any(|p| p.store == id)) {
                    Some(region) => Joined::Bootstrapped { cluster, region },
                    None => Joined::Registered { cluster },
                },
            )),
            PdResponseBody::JoinCluster {
                cluster: None,
                stores,
                initial_replicas,
                ..
            } => Ok(JoinProgress::Waiting {
                stores,
                initial_replicas,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// A node's start: joins the cluster, waiting (polls from
    /// `JOIN_POLL_MIN_MS`, doubling to `JOIN_POLL_MAX_MS`) until the PD has
    /// bootstrapped it — with one store at once under `--initial-replicas
    /// 1`, else once enough stores have joined — however long that takes.
    /// `Joined::Bootstrapped` for every store that holds a peer of the
    /// first region, `Joined::Registered` for the others.
    pub async fn join(&self, store: Store) -> Result<Joined, PdClientError> {
        let mut pause = JOIN_POLL_MIN_MS;
        loop {
            match self.join_once(store.clone()).await? {
                JoinProgress::Joined(j) => return Ok(j),
                JoinProgress::Waiting { .. } => {
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    pause = (pause * 2).min(JOIN_POLL_MAX_MS);
                }
            }
        }
    }
}

fn unexpected(body: PdResponseBody) -> PdClientError {
    PdClientError::Unexpected(format!("{body:?}"))
}

impl Conn {
    async fn read_frame(&mut self) -> Result<golem_wire::Frame, String> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = self
                .stream
                .read(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            let mut bytes = &buf[..n];
            while !bytes.is_empty() {
                let (used, frame) = self.decoder.push(bytes).map_err(|e| e.to_string())?;
                bytes = &bytes[used..];
                if let Some(f) = frame {
                    if !bytes.is_empty() {
                        // One request at a time: nothing may follow a response.
                        return Err("unexpected bytes after a response".into());
                    }
                    return Ok(f);
                }
            }
        }
    }

    async fn round_trip(&mut self, req: &PdRequest) -> Result<PdResponse, String> {
        let id = RequestId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let frame = encode_pd_request(id, req).map_err(|e| e.to_string())?;
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| e.to_string())?;
        let f = self.read_frame().await?;
        match f.header.kind {
            FrameKind::PdResponse if f.header.request_id == id => {
                decode_pd_response(&f.payload).map_err(|e| e.to_string())
            }
            FrameKind::Goodbye => Err(decode_goodbye(&f.payload)
                .map(|e| format!("server closed the connection: {e}"))
                .unwrap_or_else(|e| e.to_string())),
            k => Err(format!(
                "unexpected {k:?} frame (request {})",
                f.header.request_id.0
            )),
        }
    }
}
