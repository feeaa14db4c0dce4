//! `golem ctl region merge <source> <target>`: a region merge asked of the
//! PD and waited for.
//!
//! Owns the command's steps: an admin `Merge { target }` operator for the
//! source (`OperatorAdd`; the PD checks adjacency and aligned replicas and
//! refuses otherwise), then the PD's route of the target is polled until
//! its range covers the source's start (the node's merge driver commits
//! the merge: docs/ARCHITECTURE.md "Region merges"). The PD learns the
//! grown target from its leader's heartbeat, so the answer lags the merge
//! by a heartbeat poll or two.

use golem_pd::client::PdClient;
use golem_wire::pd::{AdminOperator, PdRequestBody, PdResponseBody, RegionRoute};
use golem_wire::RegionId;
use std::time::{Duration, Instant};

/// How often the PD is asked whether the merge is done.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Merges `source` into `target`; returns the target's route once it
/// covers the source's range.
pub async fn merge(
    pd: &PdClient,
    source: RegionId,
    target: RegionId,
    timeout: Duration,
) -> Result<RegionRoute, String> {
    let deadline = Instant::now() + timeout;
    let src = pd
        .get_region_by_id(source)
        .await
        .map_err(|e| e.to_string())?;
    let body = PdRequestBody::OperatorAdd {
        region: source,
        op: AdminOperator::Merge { target },
    };
    match pd.call(body).await.map_err(|e| e.to_string())? {
        PdResponseBody::OperatorAdded { .. } => {}
        _ => return Err("unexpected answer to OperatorAdd".into()),
    }
    let start = src.region.start;
    loop {
        if let Ok(t) = pd.get_region_by_id(target).await {
            if t.region.contains(&start) {
                return Ok(t);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "region {source} was not merged into {target} within {timeout:?}"
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
