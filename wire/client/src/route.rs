//! The routing cache: which region, epoch and leader core serve a key.
//!
//! Owns a map of known regions keyed by start key (`BTreeMap`), each with its
//! epoch and, when known, its leader's `(store, shard, addr)`. It learns from
//! [`RouteTable::update`] (the Placement Driver's answers, when the client
//! has PD endpoints: see [`RouteTable::knows_request`]) and from the
//! routing payloads of server errors ([`RouteTable::on_error`]).
//!
//! Invariants:
//! - Cached ranges never overlap: inserting a region first evicts every
//!   entry it overlaps.
//! - A region's entry is never replaced by information with an older epoch.
//! - [`RouteTable::locate`] always answers: a key with no cached region, or
//!   whose region has no known leader, is sent to the current seed endpoint
//!   (the node forwards it to the owning core). Until the Placement Driver
//!   feeds the table, the seed route is one region covering the whole key
//!   space: `RegionId(1)`, the default epoch, `StoreId(1)`, `ShardId(0)`.

use crate::core::pieces::{is_spanning, RegionBounds};
use golem_wire::{GolemError, RegionEpoch, RegionId, RegionInfo, RequestBody, ShardId, StoreId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Bound;

/// Where to send a request and the routing context it must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The region the request is routed to.
    pub region: RegionId,
    /// The region epoch the route was built with.
    pub epoch: RegionEpoch,
    /// The store of the region's leader.
    pub store: StoreId,
    /// The shard (core) of the region's leader on that store.
    pub shard: ShardId,
    /// The listener of that shard.
    pub addr: SocketAddr,
    /// The region's range when the cache knows it, for requests that can
    /// span regions (scans, batch gets: see `core::pieces`); None for
    /// other requests and for the seed route.
    pub bounds: Option<RegionBounds>,
}

/// A region's leader: enough to connect to its core.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Leader {
    store: StoreId,
    shard: ShardId,
    addr: SocketAddr,
}

/// One cached region.
#[derive(Clone, Debug)]
struct Entry {
    region: RegionId,
    /// Exclusive end; empty means the end of the key space.
    end: Vec<u8>,
    epoch: RegionEpoch,
    leader: Option<Leader>,
}

impl Entry {
    fn contains_end_of(&self, key: &[u8]) -> bool {
        self.end.is_empty() || key < self.end.as_slice()
    }
}

/// The region of the seed route.
pub const SEED_REGION: RegionId = RegionId(1);
/// The store of the seed route.
pub const SEED_STORE: StoreId = StoreId(1);
/// The shard of the seed route.
pub const SEED_SHARD: ShardId = ShardId(0);

/// The client's routing cache. Not thread-safe by itself; front ends wrap it.
#[derive(Clone, Debug)]
pub struct RouteTable {
    /// Cached regions by start key.
    regions: BTreeMap<Vec<u8>, Entry>,
    /// Seed endpoints, tried in turn when one is unreachable.
    endpoints: Vec<SocketAddr>,
    /// Index into `endpoints` of the current seed.
    seed_index: usize,
}

impl RouteTable {
    /// A table seeded with `endpoints` (the first is the current seed): one
    /// region covering the whole key space, led by the seed endpoint.
    ///
    /// # Panics
    /// If `endpoints` is empty (the client configuration rejects that).
    pub fn seeded(endpoints: Vec<SocketAddr>) -> RouteTable {
        assert!(!endpoints.is_empty(), "a route table needs a seed endpoint");
        let mut table = RouteTable {
            regions: BTreeMap::new(),
            endpoints,
            seed_index: 0,
        };
        table.reseed();
        table
    }

    /// Makes `addr` the current seed endpoint (adding it if unknown), for
    /// instance the endpoint the first handshake succeeded with.
    pub fn set_seed(&mut self, addr: SocketAddr) {
        match self.endpoints.iter().position(|a| *a == addr) {
            Some(i) => self.seed_index = i,
            None => {
                self.endpoints.push(addr);
                self.seed_index = self.endpoints.len() - 1;
            }
        }
        self.reseed();
    }

    /// The current seed endpoint.
    pub fn seed_addr(&self) -> SocketAddr {
        self.endpoints[self.seed_index]
    }

    /// Number of cached regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// True when no region is cached.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The route for `key`.
    pub fn locate(&self, key: &[u8]) -> Route {
        self.route_for(self.entry_at(key).map(|(_, e)| e))
    }

    /// The route for the keys just below `end` (empty: the end of the key
    /// space), which is where a reverse scan starts.
    pub fn locate_before(&self, end: &[u8]) -> Route {
        self.route_for(self.entry_before(end).map(|(_, e)| e))
    }

    /// The route for a request: its key, its first key (batches), its start
    /// (scans) or the keys below its end (reverse scans).
    pub fn locate_request(&self, body: &RequestBody) -> Route {
        let found = self.entry_for_request(body);
        let mut route = self.route_for(found.map(|(_, e)| e));
        if is_spanning(body) {
            route.bounds = found.map(|(start, e)| RegionBounds {
                start: start.clone(),
                end: e.end.clone(),
            });
        }
        route
    }

    /// Whether the cache holds a learnt route for `body` (a region with an
    /// epoch and a leader), so that a client with a PD need not ask it.
    pub fn knows_request(&self, body: &RequestBody) -> bool {
        self.entry_for_request(body)
            .is_some_and(|(_, e)| e.leader.is_some() && e.epoch != RegionEpoch::default())
    }

    /// The key whose region a request needs (what to ask the PD for).
    pub fn request_key(body: &RequestBody) -> &[u8] {
        match body {
            RequestBody::Get { key }
            | RequestBody::Put { key, .. }
            | RequestBody::Delete { key }
            | RequestBody::CompareAndSwap { key, .. }
            | RequestBody::TransferLeader { key, .. }
            | RequestBody::ChangePeers { key, .. }
            | RequestBody::Split { key, .. } => key,
            RequestBody::Scan { start, .. } => start,
            RequestBody::BatchGet { keys } => keys.first().map(Vec::as_slice).unwrap_or(&[]),
            RequestBody::BatchWrite { ops } => ops.first().map_or(&[], |o| o.key()),
        }
    }

    /// The cached region a request goes to, with its start key.
    fn entry_for_request(&self, body: &RequestBody) -> Option<(&Vec<u8>, &Entry)> {
        match body {
            RequestBody::Scan {
                end, reverse: true, ..
            } => self.entry_before(end),
            _ => self.entry_at(Self::request_key(body)),
        }
    }

    fn entry_at(&self, key: &[u8]) -> Option<(&Vec<u8>, &Entry)> {
        self.regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .filter(|(_, e)| e.contains_end_of(key))
    }

    fn entry_before(&self, end: &[u8]) -> Option<(&Vec<u8>, &Entry)> {
        if end.is_empty() {
            self.regions
                .last_key_value()
                .filter(|(_, e)| e.end.is_empty())
        } else {
            self.regions
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(end)))
                .next_back()
                .filter(|(_, e)| e.end.is_empty() || end <= e.end.as_slice())
        }
    }

    fn route_for(&self, entry: Option<&Entry>) -> Route {
        let (region, epoch) = entry.map_or((SEED_REGION, RegionEpoch::default()), |e| {
            (e.region, e.epoch)
        });
        match entry.and_then(|e| e.leader.as_ref()) {
            Some(l) => Route {
                region,
                epoch,
                store: l.store,
                shard: l.shard,
                addr: l.addr,
                bounds: None,
            },
            None => Route {
                region,
                epoch,
                store: SEED_STORE,
                shard: SEED_SHARD,
                addr: self.seed_addr(),
                bounds: None,
            },
        }
    }

    /// Caches `info`, evicting every cached region it overlaps. Ignored when
    /// the cache holds the same region with a newer epoch.
    pub fn update(&mut self, info: RegionInfo) {
        let existing = self.find(info.id);
        let mut old_leader = None;
        if let Some(start) = existing {
            let e = &self.regions[&start];
            if is_stale(info.epoch, e.epoch) {
                return;
            }
            old_leader = e.leader.clone();
        }
        let leader = match &info.leader {
            Some(loc) => match loc.addr.parse::<SocketAddr>() {
                Ok(addr) => Some(Leader {
                    store: loc.store,
                    shard: loc.shard,
                    addr,
                }),
                Err(_) => {
                    tracing::warn!(region = %info.id, addr = %loc.addr, "unparsable leader address");
                    None
                }
            },
            None => old_leader,
        };
        self.evict_overlapping(&info.start, &info.end);
        self.regions.insert(
            info.start,
            Entry {
                region: info.id,
                end: info.end,
                epoch: info.epoch,
                leader,
            },
        );
    }

    /// Learns from a server error's routing payload. Other errors are
    /// ignored.
    pub fn on_error(&mut self, error: &GolemError) {
        match error {
            GolemError::NotLeader { region, leader } => {
                let Some(start) = self.find(*region) else {
                    return;
                };
                let new_leader = leader.as_ref().and_then(|loc| {
                    let addr = loc.addr.parse::<SocketAddr>().ok()?;
                    Some(Leader {
                        store: loc.store,
                        shard: loc.shard,
                        addr,
                    })
                });
                if let Some(e) = self.regions.get_mut(&start) {
                    e.leader = new_leader;
                }
            }
            GolemError::EpochNotMatch { current_regions } => {
                for info in current_regions {
                    self.update(info.clone());
                }
            }
            GolemError::RegionNotFound { region } => {
                // The node asked does not host it (replicas move, and not
                // every node holds every region): forget the route and try
                // the next seed endpoint, or the same node would answer the
                // seed route the same way forever.
                self.invalidate(*region);
                self.seed_index = (self.seed_index + 1) % self.endpoints.len();
            }
            GolemError::KeyNotInRegion {
                region, start, end, ..
            } => {
                // The server told us the region's true range: keep the entry
                // (epoch, leader) over that range only.
                let Some(old_start) = self.find(*region) else {
                    return;
                };
                let Some(mut entry) = self.regions.remove(&old_start) else {
                    return;
                };
                entry.end = end.clone();
                self.evict_overlapping(start, end);
                self.regions.insert(start.clone(), entry);
            }
            _ => {}
        }
    }

    /// Forgets `region`; its keys go to the seed endpoint until it is learnt
    /// again.
    pub fn invalidate(&mut self, region: RegionId) {
        if let Some(start) = self.find(region) {
            self.regions.remove(&start);
        }
    }

    /// Forgets every leader at `addr` (it is unreachable) and, if it is the
    /// current seed, moves the seed to the next endpoint.
    pub fn on_unreachable(&mut self, addr: SocketAddr) {
        for e in self.regions.values_mut() {
            if e.leader.as_ref().is_some_and(|l| l.addr == addr) {
                e.leader = None;
            }
        }
        if self.seed_addr() == addr {
            self.seed_index = (self.seed_index + 1) % self.endpoints.len();
        }
    }

    /// Restores the seed route when nothing is cached.
    fn reseed(&mut self) {
        if self.regions.is_empty() {
            self.regions.insert(
                Vec::new(),
                Entry {
                    region: SEED_REGION,
                    end: Vec::new(),
                    epoch: RegionEpoch::default(),
                    leader: Some(Leader {
                        store: SEED_STORE,
                        shard: SEED_SHARD,
                        addr: self.seed_addr(),
                    }),
                },
            );
        } else if let Some(e) = self.regions.values_mut().find(|e| e.region == SEED_REGION) {
            if e.epoch == RegionEpoch::default() {
                e.leader = Some(Leader {
                    store: SEED_STORE,
                    shard: SEED_SHARD,
                    addr: self.endpoints[self.seed_index],
                });
            }
        }
    }

    /// The start key of `region`'s entry.
    fn find(&self, region: RegionId) -> Option<Vec<u8>> {
        self.regions
            .iter()
            .find(|(_, e)| e.region == region)
            .map(|(s, _)| s.clone())
    }

    fn evict_overlapping(&mut self, start: &[u8], end: &[u8]) {
        let overlapping: Vec<Vec<u8>> = self
            .regions
            .iter()
            .filter(|(s, e)| {
                let starts_before_end = end.is_empty() || s.as_slice() < end;
                let ends_after_start = e.end.is_empty() || start < e.end.as_slice();
                starts_before_end && ends_after_start
            })
            .map(|(s, _)| s.clone())
            .collect();
        for s in overlapping {
            self.regions.remove(&s);
        }
    }
}

/// True when `new` is older than `cached` in either dimension.
fn is_stale(new: RegionEpoch, cached: RegionEpoch) -> bool {
    new.version < cached.version || new.conf_ver < cached.conf_ver
}

#[cfg(test)]
mod tests {
    use super::*;
    use golem_wire::{PeerId, PeerLocation};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn loc(store: u64, shard: u16, port: u16) -> PeerLocation {
        PeerLocation {
            peer: PeerId(store * 10),
            store: StoreId(store),
            shard: ShardId(shard),
            addr: addr(port).to_string(),
        }
    }

    fn info(
        id: u64,
        start: &[u8],
        end: &[u8],
        version: u64,
        leader: Option<PeerLocation>,
    ) -> RegionInfo {
        RegionInfo {
            id: RegionId(id),
            start: start.to_vec(),
            end: end.to_vec(),
            epoch: RegionEpoch {
                conf_ver: 1,
                version,
            },
            leader,
        }
    }

    #[test]
    fn seed_route_covers_everything() {
        let t = RouteTable::seeded(vec![addr(1000)]);
        for key in [&b""[..], b"a", b"\xff\xff"] {
            let r = t.locate(key);
            assert_eq!(r.region, SEED_REGION);
            assert_eq!(r.epoch, RegionEpoch::default());
            assert_eq!(
                (r.store, r.shard, r.addr),
                (SEED_STORE, SEED_SHARD, addr(1000))
            );
        }
        assert_eq!(t.locate_before(b"").region, SEED_REGION);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn not_leader_moves_the_leader() {
        let mut t = RouteTable::seeded(vec![addr(1000)]);
        t.on_error(&GolemError::NotLeader {
            region: SEED_REGION,
            leader: Some(loc(2, 3, 2003)),
        });
        let r = t.locate(b"k");
        assert_eq!(
            (r.store, r.shard, r.addr),
            (StoreId(2), ShardId(3), addr(2003))
        );
        // No hint: back to the seed endpoint, same region.
        t.on_error(&GolemError::NotLeader {
            region: SEED_REGION,
            leader: None,
        });
        let r = t.locate(b"k");
        assert_eq!((r.region, r.addr), (SEED_REGION, addr(1000)));
    }

    #[test]
    fn epoch_not_match_replaces_the_split_region() {
        let mut t = RouteTable::seeded(vec![addr(1000)]);
        t.on_error(&GolemError::EpochNotMatch {
            current_regions: vec![
                info(1, b"", b"m", 2, Some(loc(1, 0, 1000))),
                info(7, b"m", b"", 2, Some(loc(2, 1, 2001))),
            ],
        });
        assert_eq!(t.len(), 2);
        let a = t.locate(b"a");
        assert_eq!(
            (a.region, a.epoch.version, a.addr),
            (RegionId(1), 2, addr(1000))
        );
        let z = t.locate(b"z");
        assert_eq!(
            (z.region, z.addr, z.shard),
            (RegionId(7), addr(2001), ShardId(1))
        );
        assert_eq!(t.locate(b"m").region, RegionId(7));
        assert_eq!(t.locate_before(b"m").region, RegionId(1));
        assert_eq!(t.locate_before(b"").region, RegionId(7));
        assert_eq!(t.locate_before(b"n").region, RegionId(7));
        // Stale information about region 7 is ignored.
        t.update(info(7, b"a", b"", 1, Some(loc(9, 9, 9999))));
        assert_eq!(t.locate(b"z").addr, addr(2001));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn region_not_found_and_invalidate_fall_back_to_the_seed() {
        let mut t = RouteTable::seeded(vec![addr(1000)]);
        t.update(info(7, b"m", b"", 2, Some(loc(2, 1, 2001))));
        // Region 7 evicted the overlapping seed region.
        assert_eq!(t.len(), 1);
        t.on_error(&GolemError::RegionNotFound {
            region: RegionId(7),
        });
        assert!(t.is_empty());
        let r = t.locate(b"z");
        assert_eq!((r.region, r.addr), (SEED_REGION, addr(1000)));
        t.update(info(7, b"m", b"", 2, Some(loc(2, 1, 2001))));
        t.invalidate(RegionId(7));
        assert!(t.is_empty());
    }

    #[test]
    fn key_not_in_region_narrows_the_range() {
        let mut t = RouteTable::seeded(vec![addr(1000)]);
        t.on_error(&GolemError::KeyNotInRegion {
            key: b"x".to_vec(),
            region: SEED_REGION,
            start: b"".to_vec(),
            end: b"m".to_vec(),
        });
        assert_eq!(t.locate(b"a").region, SEED_REGION);
        assert_eq!(t.locate(b"a").addr, addr(1000));
        // "x" is no longer in any cached region: seed fallback.
        let x = t.locate(b"x");
        assert_eq!((x.region, x.addr), (SEED_REGION, addr(1000)));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn unreachable_endpoints_rotate_the_seed() {
        let mut t = RouteTable::seeded(vec![addr(1000), addr(1001)]);
        t.on_unreachable(addr(1000));
        assert_eq!(t.seed_addr(), addr(1001));
        assert_eq!(t.locate(b"k").addr, addr(1001));
        t.on_unreachable(addr(1001));
        assert_eq!(t.locate(b"k").addr, addr(1000));
        t.set_seed(addr(1002));
        assert_eq!(t.locate(b"k").addr, addr(1002));
    }

    #[test]
    fn only_learnt_routes_are_known() {
        let mut t = RouteTable::seeded(vec![addr(1000)]);
        let get = |k: &[u8]| RequestBody::Get { key: k.to_vec() };
        assert!(!t.knows_request(&get(b"a")), "the seed route is a guess");
        t.update(info(7, b"", b"m", 1, None));
        assert!(!t.knows_request(&get(b"a")), "no leader yet");
        t.update(info(7, b"", b"m", 1, Some(loc(2, 1, 2001))));
        assert!(t.knows_request(&get(b"a")));
        assert!(!t.knows_request(&get(b"z")), "outside every cached region");
        assert_eq!(RouteTable::request_key(&get(b"q")), b"q");
        t.on_unreachable(addr(2001));
        assert!(
            !t.knows_request(&get(b"a")),
            "an unreachable leader is forgotten"
        );
    }

    #[test]
    fn batch_and_scan_requests_route_by_their_first_or_end_key() {
        let mut t = RouteTable::seeded(vec![addr(1000)]);
        t.update(info(1, b"", b"m", 2, Some(loc(1, 0, 1000))));
        t.update(info(7, b"m", b"", 2, Some(loc(2, 1, 2001))));
        let scan = |start: &[u8], end: &[u8], reverse| RequestBody::Scan {
            start: start.to_vec(),
            end: end.to_vec(),
            limit: 10,
            reverse,
        };
        assert_eq!(
            t.locate_request(&scan(b"a", b"z", false)).region,
            RegionId(1)
        );
        assert_eq!(
            t.locate_request(&scan(b"a", b"z", true)).region,
            RegionId(7)
        );
        assert_eq!(
            t.locate_request(&scan(b"a", b"m", true)).region,
            RegionId(1)
        );
        let bg = RequestBody::BatchGet {
            keys: vec![b"q".to_vec(), b"a".to_vec()],
        };
        assert_eq!(t.locate_request(&bg).region, RegionId(7));
    }
}
