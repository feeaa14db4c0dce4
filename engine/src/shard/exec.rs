//! Executing one client request on this shard, or forwarding it to the
//! shard that owns its region.
//!
//! Invariants: every request is validated against the protocol limits
//! before it touches a region; a request for a region owned by another shard
//! is forwarded over that shard's inbox (correct, one cross-core hop slower
//! than shard-aware routing); a request whose epoch differs from the
//! region's gets `EpochNotMatch` with the current region. A request routed
//! with no knowledge (the default epoch: a client's seed route, which names
//! region 1) for a region this node does not host, whose key a hosted region
//! covers, also gets `EpochNotMatch` with the covering region, so the client
//! learns the true route in one round trip; with a real epoch an unknown
//! region is `RegionNotFound`. After a split, a request routed with the
//! parent's old epoch (or to the parent for a key it no longer holds) gets
//! `EpochNotMatch` naming both the region it named and the region of this
//! shard that now covers its key, so the client re-routes in one round
//! trip. `Split` is served like `ChangePeers`: proposed, answered once
//! applied.

use super::region_handle::RegionHandle;
use super::{Shard, ShardMsg};
use golem_wire::{
    GolemError, PeerLocation, RegionEpoch, RegionInfo, Request, RequestBody, Response, ResponseBody,
};
use std::rc::Rc;
use tokio::sync::oneshot;

/// Where a validated request goes.
enum Route {
    /// A region of this shard, at the request's epoch.
    Local(Rc<RegionHandle>),
    /// The shard (index) that owns the request's region.
    Forward(usize),
}

/// Executes `req` and returns its response; never fails the connection.
pub async fn execute(shard: &Rc<Shard>, req: Request) -> Response {
    let result = match route(shard, &req) {
        Err(e) => Err(e),
        Ok(Route::Forward(owner)) => forward(shard, owner, req).await,
        Ok(Route::Local(region)) if matches!(req.body, RequestBody::TransferLeader { .. }) => {
            let RequestBody::TransferLeader { key, to_store } = &req.body else {
                unreachable!("matched above")
            };
            match region.peer.borrow().meta().check_key(key) {
                Ok(()) => {}
                Err(e) => return Response::Err(e),
            }
            let r = region.transfer_leader(*to_store).await;
            r.map_err(|e| leader_hint(shard, &region, e))
        }
        Ok(Route::Local(region))
            if req.body.is_write()
                || matches!(
                    req.body,
                    RequestBody::ChangePeers { .. } | RequestBody::Split { .. }
                ) =>
        {
            let key = request_key(&req.body).to_vec();
            let r = region.write(req.body).await;
            r.map_err(|e| stale_range(shard, &region, &key, leader_hint(shard, &region, e)))
        }
        Ok(Route::Local(region)) => match region.read_barrier().await {
            Ok(()) => region.read(&req.body),
            Err(e) => Err(e),
        }
        .map_err(|e| {
            let e = leader_hint(shard, &region, e);
            stale_range(shard, &region, request_key(&req.body), e)
        }),
    };
    result.into()
}

/// Answers `req` at once, without a task, when that needs no waiting: a
/// read of a region this shard hosts, or a request that fails validation or
/// routing. `None`: the request must go through [`execute`] (a write, or a
/// request for another shard).
pub fn execute_now(shard: &Rc<Shard>, req: &Request) -> Option<Response> {
    match route(shard, req) {
        Err(e) => Some(Response::Err(e)),
        Ok(Route::Forward(_)) => None,
        Ok(Route::Local(_)) if req.body.is_write() => None,
        Ok(Route::Local(_))
            if matches!(
                req.body,
                RequestBody::TransferLeader { .. }
                    | RequestBody::ChangePeers { .. }
                    | RequestBody::Split { .. }
            ) =>
        {
            None
        }
        // Several voters, no lease: the read waits for a read-index round.
        Ok(Route::Local(region)) if region.needs_read_barrier() && !region.has_lease() => None,
        Ok(Route::Local(region)) => Some(
            region
                .read(&req.body)
                .map_err(|e| {
                    let e = leader_hint(shard, &region, e);
                    stale_range(shard, &region, request_key(&req.body), e)
                })
                .into(),
        ),
    }
}

/// Fills a `NotLeader` error's leader (left empty by the region logic,
/// which does not know addresses) from the region's members and the store
/// book, when this peer knows who leads.
fn leader_hint(shard: &Shard, region: &RegionHandle, err: GolemError) -> GolemError {
    match err {
        GolemError::NotLeader {
            region: id,
            leader: None,
        } => GolemError::NotLeader {
            region: id,
            leader: leader_location(shard, &region.peer.borrow()),
        },
        other => other,
    }
}

/// Where the leader this peer knows of serves: its peer id, store, shard
/// and client address. None when no leader is known or its store's address
/// is not (yet) in the book.
pub fn leader_location(
    shard: &Shard,
    peer: &golem_core::region::RegionPeer,
) -> Option<PeerLocation> {
    let leader = peer.meta().peer(peer.leader_id()?)?;
    let addr = if leader.store == shard.identity.store {
        shard.cfg.shard_advertise(leader.shard.get())
    } else {
        let base = *shard.stores.borrow().get(&leader.store)?;
        std::net::SocketAddr::new(base.ip(), base.port().checked_add(leader.shard.get())?)
    };
    Some(PeerLocation {
        peer: leader.id,
        store: leader.store,
        shard: leader.shard,
        addr: addr.to_string(),
    })
}

/// Validates `req` and finds where it is served. The epoch is compared
/// before any routing payload is built: the common case allocates nothing.
fn route(shard: &Rc<Shard>, req: &Request) -> Result<Route, GolemError> {
    if shard.stopping.get() {
        return Err(GolemError::ShuttingDown);
    }
    req.body.validate()?;
    // A seed route (the default epoch: the client knows nothing yet) is
    // routed by key, whatever region id it names: the shard whose region
    // covers the key answers with that region.
    if req.epoch == RegionEpoch::default() {
        return match seed_covering(shard, &req.body) {
            Some((_, owner)) if owner != shard.id => Ok(Route::Forward(owner.get() as usize)),
            _ => Err(covering_region(shard, req)),
        };
    }
    let owner = match shard.directory.owner(req.region) {
        Some(owner) => owner,
        None => return Err(GolemError::RegionNotFound { region: req.region }),
    };
    if owner != shard.id {
        return Ok(Route::Forward(owner.get() as usize));
    }
    let found = shard
        .regions
        .borrow()
        .get(&req.region)
        .filter(|r| r.peer.borrow().is_initialized())
        .cloned();
    let Some(region) = found else {
        return Err(covering_region(shard, req));
    };
    if req.epoch != region.peer.borrow().meta().epoch {
        return Err(epoch_not_match(shard, &region, request_key(&req.body)));
    }
    Ok(Route::Local(region))
}

/// `EpochNotMatch` naming `region` and, when another region of this shard
/// now covers `key` (the request's region was split), that one too.
fn epoch_not_match(shard: &Shard, region: &RegionHandle, key: &[u8]) -> GolemError {
    let mut current_regions = vec![region_info(shard, &region.peer.borrow())];
    if !current_regions[0].contains(key) {
        let regions = shard.regions.borrow();
        let covering = shard
            .directory
            .covering(key)
            .filter(|(_, owner)| *owner == shard.id)
            .and_then(|(id, _)| regions.get(&id))
            .filter(|r| {
                let p = r.peer.borrow();
                p.is_initialized() && p.meta().contains(key)
            });
        if let Some(r) = covering {
            current_regions.push(region_info(shard, &r.peer.borrow()));
        }
    }
    GolemError::EpochNotMatch { current_regions }
}

/// A `KeyNotInRegion` from a region of this shard whose key another region
/// of this shard covers (a client routed with the region's range from
/// before a split) becomes `EpochNotMatch` naming both; other errors pass.
fn stale_range(shard: &Shard, region: &RegionHandle, key: &[u8], err: GolemError) -> GolemError {
    match err {
        GolemError::KeyNotInRegion { .. } => match epoch_not_match(shard, region, key) {
            GolemError::EpochNotMatch { current_regions } if current_regions.len() == 2 => {
                GolemError::EpochNotMatch { current_regions }
            }
            _ => err,
        },
        other => other,
    }
}

/// The answer to a request for a region this shard does not host: for a
/// seed route (default epoch), `EpochNotMatch` with the hosted region
/// covering the request's key; else `RegionNotFound`.
fn covering_region(shard: &Shard, req: &Request) -> GolemError {
    if req.epoch != RegionEpoch::default() {
        return GolemError::RegionNotFound { region: req.region };
    }
    let regions = shard.regions.borrow();
    let covering = seed_covering(shard, &req.body)
        .filter(|(_, owner)| *owner == shard.id)
        .and_then(|(id, _)| regions.get(&id))
        .filter(|r| {
            let p = r.peer.borrow();
            p.is_initialized() && serves_seed_key(p.meta(), &req.body)
        });
    match covering {
        Some(r) => GolemError::EpochNotMatch {
            current_regions: vec![region_info(shard, &r.peer.borrow())],
        },
        None => GolemError::RegionNotFound { region: req.region },
    }
}

/// The region (and shard) of this node a seed-routed request goes to: the
/// one holding its key, or for a reverse scan the keys just below its end
/// (the client's route table looks a reverse scan up the same way).
fn seed_covering(
    shard: &Shard,
    body: &RequestBody,
) -> Option<(golem_wire::RegionId, golem_wire::ShardId)> {
    match body {
        RequestBody::Scan {
            end, reverse: true, ..
        } => shard.directory.covering_before(end),
        body => shard.directory.covering(request_key(body)),
    }
}

/// Whether `meta`'s range is where [`seed_covering`] sends `body`.
fn serves_seed_key(meta: &golem_core::region::RegionMeta, body: &RequestBody) -> bool {
    match body {
        RequestBody::Scan {
            end, reverse: true, ..
        } => {
            if end.is_empty() {
                meta.end.is_empty()
            } else {
                meta.start.as_slice() < end.as_slice()
                    && (meta.end.is_empty() || end.as_slice() <= meta.end.as_slice())
            }
        }
        body => meta.contains(request_key(body)),
    }
}

/// The key a request is routed by (a scan's or batch's first key).
fn request_key(body: &RequestBody) -> &[u8] {
    match body {
        RequestBody::Get { key }
        | RequestBody::Put { key, .. }
        | RequestBody::Delete { key }
        | RequestBody::CompareAndSwap { key, .. }
        | RequestBody::TransferLeader { key, .. }
        | RequestBody::ChangePeers { key, .. }
        | RequestBody::Split { key, .. } => key,
        RequestBody::Scan { start, .. } => start,
        RequestBody::BatchGet { keys } => keys.first().map_or(&[], Vec::as_slice),
        RequestBody::BatchWrite { ops } => ops.first().map_or(&[], |o| o.key()),
    }
}

/// The routing metadata of a region hosted here, naming its leader when
/// this peer knows it.
pub fn region_info(shard: &Shard, peer: &golem_core::region::RegionPeer) -> RegionInfo {
    let meta = peer.meta();
    let leader = leader_location(shard, peer);
    RegionInfo {
        id: meta.id,
        start: meta.start.clone(),
        end: meta.end.clone(),
        epoch: meta.epoch,
        leader,
    }
}

async fn forward(
    shard: &Rc<Shard>,
    owner: usize,
    req: Request,
) -> Result<ResponseBody, GolemError> {
    let (tx, rx) = oneshot::channel();
    let inbox = &shard.inboxes[owner];
    match inbox.try_send(ShardMsg::Forward { req, reply: tx }) {
        Ok(()) => {}
        Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
            return Err(GolemError::ServerBusy { retry_after_ms: 1 })
        }
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
            return Err(GolemError::ShuttingDown)
        }
    }
    match rx.await {
        Ok(resp) => resp.into(),
        Err(_) => Err(GolemError::ShuttingDown),
    }
}
