//! The fault plan of one run: which faults happen and how often, drawn
//! from the seed (swarm testing: a run with fewer kinds of faults reaches
//! states a run with all of them rarely does).
//!
//! Owns the rates; the simulator schedules the faults. Invariants: every
//! value lies in the documented range whatever the seed; without swarm
//! every fault is on at the middle of its range; the plan is drawn from
//! the run's generator before anything else, so it depends on the seed
//! only.

use rand::Rng;

/// What can go wrong in a run, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// Per raft message: dropped (0..=10 %).
    pub drop_percent: u32,
    /// Per raft message: delivered twice (0..=10 %).
    pub dup_percent: u32,
    /// Largest message delay (5..=60 ms; the smallest is 1 ms). Spread
    /// delays reorder messages.
    pub delay_ms_max: u64,
    /// Largest WAL sync latency (1..=20 ms).
    pub sync_ms_max: u64,
    /// Relative weights of the discrete faults (0: never).
    pub crash_weight: u32,
    pub crash_many_weight: u32,
    pub isolate_weight: u32,
    pub split_weight: u32,
    pub skew_weight: u32,
    /// A crash keeps a random prefix of the unsynced WAL tail (otherwise
    /// exactly the synced records), in percent of crashes.
    pub torn_tail_percent: u32,
    /// Tick interval spread between nodes (0..=50 % around the nominal).
    pub clock_skew_percent: u32,
    /// Mean time between discrete faults (150..=1500 ms).
    pub fault_interval_ms_mean: u64,
    /// Mean time between a node's store flushes (20..=1000 ms).
    pub flush_interval_ms_mean: u64,
    /// Mean time between a node's WAL checkpoints (100..=2000 ms).
    pub checkpoint_interval_ms_mean: u64,
}

impl FaultPlan {
    /// Every fault on at its middle rate.
    pub fn middle() -> FaultPlan {
        FaultPlan {
            drop_percent: 5,
            dup_percent: 5,
            delay_ms_max: 30,
            sync_ms_max: 10,
            crash_weight: 3,
            crash_many_weight: 1,
            isolate_weight: 2,
            split_weight: 2,
            skew_weight: 1,
            torn_tail_percent: 50,
            clock_skew_percent: 25,
            fault_interval_ms_mean: 600,
            flush_interval_ms_mean: 300,
            checkpoint_interval_ms_mean: 800,
        }
    }

    /// A plan drawn from `rng`: each kind of fault on with probability
    /// 3/4, at a rate drawn from its range.
    pub fn draw(rng: &mut impl Rng) -> FaultPlan {
        let mut on = |w: u32| if rng.gen_bool(0.75) { w } else { 0 };
        let (crash, crash_many, isolate, split, skew) = (on(3), on(1), on(2), on(2), on(1));
        FaultPlan {
            drop_percent: if rng.gen_bool(0.7) {
                rng.gen_range(0..=10)
            } else {
                0
            },
            dup_percent: if rng.gen_bool(0.5) {
                rng.gen_range(0..=10)
            } else {
                0
            },
            delay_ms_max: rng.gen_range(5..=60),
            sync_ms_max: rng.gen_range(1..=20),
            crash_weight: crash,
            crash_many_weight: crash_many,
            isolate_weight: isolate,
            split_weight: split,
            skew_weight: skew,
            torn_tail_percent: rng.gen_range(0..=100),
            clock_skew_percent: rng.gen_range(0..=50),
            fault_interval_ms_mean: rng.gen_range(150..=1500),
            flush_interval_ms_mean: rng.gen_range(20..=1000),
            checkpoint_interval_ms_mean: rng.gen_range(100..=2000),
        }
    }

    /// Sum of the discrete faults' weights (0: no discrete fault).
    pub fn weight_total(&self) -> u32 {
        self.crash_weight
            + self.crash_many_weight
            + self.isolate_weight
            + self.split_weight
            + self.skew_weight
    }
}

/// A time around `mean` (uniform in `[mean/2, 3*mean/2]`, at least 1).
pub fn around(rng: &mut impl Rng, mean: u64) -> u64 {
    let half = (mean / 2).max(1);
    rng.gen_range(half..=mean + half)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn drawn_plans_stay_in_range_and_depend_on_the_seed_only() {
        for seed in 0..200 {
            let p = FaultPlan::draw(&mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(p, FaultPlan::draw(&mut ChaCha8Rng::seed_from_u64(seed)));
            assert!(p.drop_percent <= 10 && p.dup_percent <= 10);
            assert!((5..=60).contains(&p.delay_ms_max));
            assert!((1..=20).contains(&p.sync_ms_max));
            assert!(p.clock_skew_percent <= 50);
        }
        assert!(FaultPlan::middle().weight_total() > 0);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            assert!((50..=150).contains(&around(&mut rng, 100)));
        }
    }
}
