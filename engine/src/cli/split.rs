//! `golem ctl region split <id> <key>`: a region split driven from the
//! command line.
//!
//! Owns the steps of one split, as an operator runs them (the PD's split
//! scheduler of #6 runs the same): the region's route and peers come from
//! the PD, the new region id and one new peer id per replica from
//! `alloc_ids`; the `Split` goes to the region's leader, which answers once
//! it applied the split. `ServerBusy` (a membership change or another split
//! in flight) is retried until the deadline.
//!
//! A `Split` is not idempotent as an operation, but one with fixed ids
//! applies at most once: after it applies, its split key is the region's
//! end, so a second copy (the client re-sends a request whose connection
//! was lost) is refused with `InvalidArgument`. So when the answer is an
//! error after the request may have reached the leader, the outcome is
//! read from the PD (which learns the new region from its leader's
//! heartbeat) instead of being guessed or re-sent.

use golem_client::{Client, ClientError};
use golem_pd::client::{PdClient, PdClientError};
use golem_wire::pd::RegionRoute;
use golem_wire::{
    GolemError, PeerId, RegionEpoch, RegionId, RegionInfo, RequestBody, ResponseBody,
};
use std::time::{Duration, Instant};

/// How long the outcome of a split whose answer was lost is looked for in
/// the PD (its leader reports a new epoch within a heartbeat poll or two).
const OUTCOME_WAIT: Duration = Duration::from_secs(5);

/// A key inside the region (requests are routed by key).
fn key_of(route: &RegionRoute) -> Vec<u8> {
    if route.region.start.is_empty() {
        vec![0]
    } else {
        route.region.start.clone()
    }
}

/// Splits `region` at `split_key`; returns `[left, right]` as the leader
/// (or, for a lost answer, the PD) reports them.
pub async fn split(
    pd: &PdClient,
    client: &Client,
    region: RegionId,
    split_key: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<RegionInfo>, String> {
    let deadline = Instant::now() + timeout;
    let route = pd
        .get_region_by_id(region)
        .await
        .map_err(|e| e.to_string())?;
    let r = &route.region;
    if split_key <= r.start || (!r.end.is_empty() && split_key >= r.end) {
        return Err(format!(
            "the split key must lie strictly inside region {region} [{:?}, {:?})",
            String::from_utf8_lossy(&r.start),
            String::from_utf8_lossy(&r.end)
        ));
    }
    let count = 1 + r.peers.len() as u32;
    let ids = pd.alloc_ids(count).await.map_err(|e| e.to_string())?;
    let new_region = RegionId(ids.start);
    let new_peers: Vec<PeerId> = (ids.start + 1..ids.end).map(PeerId).collect();
    let body = RequestBody::Split {
        key: key_of(&route),
        split_key: split_key.clone(),
        new_region,
        new_peers,
    };
    let mut sent = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let result = client
            .execute(body.clone(), left.max(Duration::from_millis(1)))
            .await;
        match result {
            Ok(ResponseBody::Split { regions }) => return Ok(regions),
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(ClientError::Server(GolemError::ServerBusy { retry_after_ms }))
                if Instant::now() + Duration::from_millis(retry_after_ms.into()) < deadline =>
            {
                sent = true;
                tokio::time::sleep(Duration::from_millis(retry_after_ms.max(50).into())).await;
            }
            // Refused before it reached a leader: nothing happened.
            Err(e) if !sent && !e.is_outcome_unknown() && !may_have_applied(&e) => {
                return Err(e.to_string())
            }
            Err(e) => {
                return match applied_split(pd, new_region, &split_key).await {
                    Some(regions) => Ok(regions),
                    None if e.is_outcome_unknown() => Err(format!(
                        "{e}; the split may still apply (new region {new_region}): \
                         check `golem ctl region get {new_region}`"
                    )),
                    None => Err(e.to_string()),
                };
            }
        }
    }
}

/// Whether an error may follow a copy of the split that applied (a
/// re-sent copy is refused because the key is now the region's end).
fn may_have_applied(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Server(GolemError::InvalidArgument { .. } | GolemError::EpochNotMatch { .. })
            | ClientError::Timeout { .. }
    )
}

/// `[left, right]` from the PD if it knows `new_region` starting at
/// `split_key` (polled for up to `OUTCOME_WAIT`).
async fn applied_split(
    pd: &PdClient,
    new_region: RegionId,
    split_key: &[u8],
) -> Option<Vec<RegionInfo>> {
    let until = Instant::now() + OUTCOME_WAIT;
    loop {
        match pd.get_region_by_id(new_region).await {
            Ok(right) if right.region.start == split_key => {
                let left = pd.get_region(&before(split_key)).await.ok().flatten();
                let info = |r: &RegionRoute| RegionInfo {
                    id: r.region.id,
                    start: r.region.start.clone(),
                    end: r.region.end.clone(),
                    epoch: r.region.epoch,
                    leader: None,
                };
                let mut out: Vec<RegionInfo> = left.iter().map(info).collect();
                out.push(info(&right));
                return Some(out);
            }
            Ok(_) | Err(PdClientError::Server(GolemError::UnknownRegion { .. })) => {}
            Err(_) => {}
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A key just before `key` in the left half (its last byte decremented, or
/// dropped when 0): the PD's region for it is the left half.
fn before(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    match k.last_mut() {
        Some(b) if *b > 0 => {
            *b -= 1;
            k.push(0xff);
        }
        _ => {
            k.pop();
        }
    }
    k
}

/// `epoch` as `conf_ver/version`.
pub fn show_epoch(epoch: RegionEpoch) -> String {
    format!("{}/{}", epoch.conf_ver, epoch.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_before_lies_in_the_left_half() {
        for key in [&b"m"[..], b"m\0", b"\0", b"ab\x01"] {
            let b = before(key);
            assert!(b.as_slice() < key, "{key:?} -> {b:?}");
        }
        assert_eq!(before(b"m"), b"l\xff".to_vec());
        assert_eq!(before(b"m\0"), b"m".to_vec());
    }
}
