//! `golem ctl region add-peer|remove-peer`: membership changes driven from
//! the command line.
//!
//! Owns the steps of adding and removing one replica, as an operator would
//! run them (the PD's schedulers of #6 run the same steps): new peer ids
//! come from the PD; a replica is added as a learner, which catches up (by
//! snapshot), then promoted to voter — the leader refuses the promotion
//! (`ServerBusy`) until the learner has caught up, and the client retries
//! until the deadline; removing the leader's own replica first moves the
//! leadership to another voter. Each request is idempotent on the node
//! (a change already in effect is answered at once), so retries are safe.

use golem_client::{Client, ClientError};
use golem_pd::client::PdClient;
use golem_wire::pd::{PeerRole, RegionRoute};
use golem_wire::{
    GolemError, PeerChange, PeerChangeKind, PeerId, RegionId, RequestBody, ResponseBody, ShardId,
    StoreId,
};
use std::time::{Duration, Instant};

/// What a membership command did.
#[derive(Debug)]
pub struct Outcome {
    pub peer: PeerId,
    pub store: StoreId,
    pub shard: ShardId,
    pub conf_ver: u64,
}

/// A key inside the region (requests are routed by key).
fn key_of(route: &RegionRoute) -> Vec<u8> {
    if route.region.start.is_empty() {
        vec![0]
    } else {
        route.region.start.clone()
    }
}

fn change(kind: PeerChangeKind, peer: PeerId, store: StoreId, shard: ShardId) -> RequestBody {
    RequestBody::ChangePeers {
        key: Vec::new(),
        changes: vec![PeerChange {
            kind,
            peer,
            store,
            shard,
        }],
    }
}

async fn run_change(
    client: &Client,
    route: &RegionRoute,
    mut body: RequestBody,
    deadline: Instant,
) -> Result<u64, String> {
    if let RequestBody::ChangePeers { key, .. } = &mut body {
        *key = key_of(route);
    }
    // The client gives up on `ServerBusy` after its attempt budget; a
    // learner may need longer to catch up: keep asking until the deadline.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client
            .execute(body.clone(), left.max(Duration::from_millis(1)))
            .await
        {
            Ok(ResponseBody::ChangePeers { epoch }) => return Ok(epoch.conf_ver),
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(ClientError::Server(GolemError::ServerBusy { retry_after_ms }))
                if Instant::now() + Duration::from_millis(retry_after_ms.into()) < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(retry_after_ms.max(50).into())).await;
            }
            Err(e) => return Err(describe(e)),
        }
    }
}

fn describe(e: ClientError) -> String {
    match e {
        ClientError::Server(GolemError::ServerBusy { .. }) => {
            "the region stayed busy (another membership change, or the learner has not caught up) until the deadline".into()
        }
        e => e.to_string(),
    }
}

/// Adds a replica of `region` on `store` (on `shard`, default: region id
/// mod the store's shard count): as a learner, then (unless `learner`)
/// promoted to voter once it caught up.
pub async fn add_peer(
    pd: &PdClient,
    client: &Client,
    region: RegionId,
    store: StoreId,
    shard: Option<u16>,
    learner: bool,
    timeout: Duration,
) -> Result<Outcome, String> {
    let deadline = Instant::now() + timeout;
    let route = pd
        .get_region_by_id(region)
        .await
        .map_err(|e| e.to_string())?;
    let info = pd.get_store(store).await.map_err(|e| e.to_string())?;
    let (peer, shard) = match route.region.peers.iter().find(|p| p.store == store) {
        // Resuming an earlier, interrupted add.
        Some(p) => (p.id, p.shard),
        None => {
            let count = info.store.shard_count.max(1);
            let shard = match shard {
                Some(s) if s >= count => {
                    return Err(format!("store {store} has {count} shards; no shard {s}"))
                }
                Some(s) => s,
                None => (region.get() % count as u64) as u16,
            };
            let ids = pd.alloc_ids(1).await.map_err(|e| e.to_string())?;
            (PeerId(ids.start), ShardId(shard))
        }
    };
    let already_voter = route
        .region
        .peers
        .iter()
        .any(|p| p.id == peer && p.role == PeerRole::Voter);
    let mut conf_ver = route.region.epoch.conf_ver;
    if !already_voter {
        conf_ver = run_change(
            client,
            &route,
            change(PeerChangeKind::AddLearner, peer, store, shard),
            deadline,
        )
        .await?;
    }
    if !learner {
        conf_ver = run_change(
            client,
            &route,
            change(PeerChangeKind::AddVoter, peer, store, shard),
            deadline,
        )
        .await?;
    }
    Ok(Outcome {
        peer,
        store,
        shard,
        conf_ver,
    })
}

/// Removes the replica of `region` on `store`; moves the leadership away
/// from it first if it leads.
pub async fn remove_peer(
    pd: &PdClient,
    client: &Client,
    region: RegionId,
    store: StoreId,
    timeout: Duration,
) -> Result<Outcome, String> {
    let deadline = Instant::now() + timeout;
    let route = pd
        .get_region_by_id(region)
        .await
        .map_err(|e| e.to_string())?;
    let Some(target) = route
        .region
        .peers
        .iter()
        .find(|p| p.store == store)
        .copied()
    else {
        return Err(format!("region {region} has no replica on store {store}"));
    };
    if route.leader.is_some_and(|l| l.store == store) {
        move_leader_off(client, &route, store, deadline).await?;
    }
    let remove = || change(PeerChangeKind::Remove, target.id, store, target.shard);
    let conf_ver = match run_change(client, &route, remove(), deadline).await {
        // The PD's view of the leader was stale: move it, then retry.
        Err(e) if e.contains("move leadership") => {
            move_leader_off(client, &route, store, deadline).await?;
            run_change(client, &route, remove(), deadline).await?
        }
        r => r?,
    };
    Ok(Outcome {
        peer: target.id,
        store,
        shard: target.shard,
        conf_ver,
    })
}

/// Moves the region's leadership to a voter on another store than `store`.
async fn move_leader_off(
    client: &Client,
    route: &RegionRoute,
    store: StoreId,
    deadline: Instant,
) -> Result<(), String> {
    let Some(other) = route
        .region
        .peers
        .iter()
        .find(|p| p.store != store && p.role == PeerRole::Voter)
    else {
        return Err(format!(
            "the replica on store {store} is region {}'s only voter",
            route.region.id
        ));
    };
    let body = RequestBody::TransferLeader {
        key: key_of(route),
        to_store: other.store,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    client
        .execute(body, left.max(Duration::from_millis(1)))
        .await
        .map_err(describe)?;
    Ok(())
}
