//! Executing one client request on this shard, or forwarding it to the
//! shard that owns its region.
//!
//! Invariants: every request is validated against the protocol limits
//! before it touches a region; a request for a region owned by another shard
//! is forwarded over that shard's inbox (correct, one cross-core hop slower
//! than shard-aware routing); a request whose epoch differs from the
//! region's gets `EpochNotMatch` with the current region.

use super::{Shard, ShardMsg};
use golem_wire::{GolemError, PeerId, PeerLocation, RegionInfo, Request, Response, ResponseBody};
use std::rc::Rc;
use tokio::sync::oneshot;

/// Executes `req` and returns its response; never fails the connection.
pub async fn execute(shard: &Rc<Shard>, req: Request) -> Response {
    execute_inner(shard, req).await.into()
}

async fn execute_inner(shard: &Rc<Shard>, req: Request) -> Result<ResponseBody, GolemError> {
    if shard.stopping.get() {
        return Err(GolemError::ShuttingDown);
    }
    req.body.validate()?;
    let owner = shard
        .directory
        .owner(req.region)
        .ok_or(GolemError::RegionNotFound { region: req.region })?;
    if owner != shard.id {
        return forward(shard, owner.get() as usize, req).await;
    }
    let region = shard
        .regions
        .borrow()
        .get(&req.region)
        .cloned()
        .ok_or(GolemError::RegionNotFound { region: req.region })?;
    let info = region_info(shard, &region.peer.borrow());
    if req.epoch != info.epoch {
        return Err(GolemError::EpochNotMatch {
            current_regions: vec![info],
        });
    }
    if req.body.is_write() {
        region.write(req.body).await
    } else {
        region.read(&req.body)
    }
}

/// The routing metadata of a region hosted here, naming this node's shard
/// that owns it as the leader.
pub fn region_info(shard: &Shard, peer: &golem_core::region::RegionPeer) -> RegionInfo {
    let meta = peer.meta();
    let leader = peer.is_leader().then(|| PeerLocation {
        peer: meta.peers.first().copied().unwrap_or(PeerId(1)),
        store: shard.identity.store,
        shard: shard.id,
        addr: shard.cfg.shard_advertise(shard.id.get()).to_string(),
    });
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
