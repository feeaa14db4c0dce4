//! The balance-leader scheduler: even leader counts across live stores.
//!
//! Owns the choice of one leader transfer: from the live store with the
//! most leaders (counting running operators as done) to one with the
//! fewest that holds a voter of one of the source's regions. Guards: the
//! hysteresis of `balance::worth_moving` (one leader: w = 1); only regions
//! with no operator and every peer on a live store; at most
//! `leader_schedule_limit` running balance-leader operators (the caller).

use super::balance::{candidates, tolerance, worth_moving};
use super::cluster::ClusterView;
use super::config::SchedConfig;
use super::controller::Controller;
use super::operator::{Influence, NewOp, OpSource};
use golem_wire::pd::{OperatorStep, PeerRole, RegionRoute};

/// Source and target stores tried per run, at most.
const PAIRS_TRIED_MAX: usize = 3;

/// One leader transfer that narrows the leader spread, if any.
pub fn schedule(
    routes: &[&RegionRoute],
    view: &ClusterView,
    ctl: &Controller,
    cfg: &SchedConfig,
) -> Option<NewOp> {
    let score = |s: &super::cluster::StoreView| s.leaders;
    let tol = tolerance(view, score, cfg);
    let (sources, targets) = candidates(view, score);
    for src in sources.iter().take(PAIRS_TRIED_MAX) {
        for dst in targets.iter().take(PAIRS_TRIED_MAX) {
            if !worth_moving(src.leaders, dst.leaders, 1, tol) {
                continue;
            }
            let found = routes.iter().find_map(|r| {
                let leader = r.leader?;
                if leader.store != src.id || ctl.get(r.region.id).is_some() {
                    return None;
                }
                if r.region
                    .peers
                    .iter()
                    .any(|p| view.health(p.store).evacuate())
                {
                    return None;
                }
                r.region
                    .peers
                    .iter()
                    .find(|p| p.store == dst.id && p.role == PeerRole::Voter)
                    .map(|to| (r, to.id))
            });
            if let Some((r, to)) = found {
                return Some(NewOp {
                    region: r.region.id,
                    epoch: r.region.epoch,
                    source: OpSource::BalanceLeader,
                    steps: vec![OperatorStep::TransferLeader { to }],
                    influence: vec![
                        Influence {
                            store: src.id,
                            regions: 0,
                            leaders: -1,
                        },
                        Influence {
                            store: dst.id,
                            regions: 0,
                            leaders: 1,
                        },
                    ],
                });
            }
        }
    }
    None
}
