//! What the two balance schedulers share: candidate stores and the
//! hysteresis rule.
//!
//! Owns `worth_moving`, the guard against ping-pong: a move of `w` score
//! units from a store scoring `src` to one scoring `dst` happens only if
//! `src - dst >= max(2w, tolerance)`. After the move the source still
//! scores at least the target, and the sum of squared scores drops by
//! `2w(src - dst - w) > 0`; so a sequence of moves always ends, and a
//! balanced cluster (spread below the threshold) gets no operator at all.

use super::cluster::{ClusterView, Health, StoreView};
use super::config::SchedConfig;

/// Stores that may give or take: `Up` only.
pub fn candidates(
    view: &ClusterView,
    score: impl Fn(&StoreView) -> i64,
) -> (Vec<&StoreView>, Vec<&StoreView>) {
    let mut up: Vec<&StoreView> = view
        .stores
        .values()
        .filter(|s| s.health == Health::Up)
        .collect();
    up.sort_by_key(|s| (score(s), s.id));
    let targets = up.clone();
    up.reverse();
    (up, targets)
}

/// The spread below which scores count as balanced: `balance_tolerance_pct`
/// of the mean score.
pub fn tolerance(view: &ClusterView, score: impl Fn(&StoreView) -> i64, cfg: &SchedConfig) -> i64 {
    let up: Vec<i64> = view
        .stores
        .values()
        .filter(|s| s.health == Health::Up)
        .map(score)
        .collect();
    if up.is_empty() {
        return 0;
    }
    let mean = up.iter().sum::<i64>() / up.len() as i64;
    mean * cfg.balance_tolerance_pct as i64 / 100
}

/// Whether moving `w` units from a store scoring `src` to one scoring `dst`
/// narrows the spread without inverting it (see the module doc).
pub fn worth_moving(src: i64, dst: i64, w: i64, tolerance: i64) -> bool {
    let spread = src - dst;
    spread >= 2 * w && spread > tolerance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_table() {
        // (src, dst, w, tolerance, move?)
        let table = [
            (5, 4, 1, 0, false), // spread 1: balanced
            (5, 3, 1, 0, true),  // spread 2: 4/4 after
            (5, 3, 2, 0, false), // would invert (3/5)
            (9, 5, 2, 0, true),
            (105, 100, 1, 5, false), // within tolerance
            (106, 100, 1, 5, true),
        ];
        for (i, (s, d, w, t, want)) in table.into_iter().enumerate() {
            assert_eq!(worth_moving(s, d, w, t), want, "row {i}");
        }
    }
}
