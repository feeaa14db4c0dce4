//! The timestamp oracle, on the PD leader.
//!
//! Owns `TsoOracle`, the leader-local allocator of timestamps
//! (`physical_ms << 18 | logical`). Durability is by windows: before serving
//! any timestamp with physical part `p`, the leader has committed through
//! Raft a window end `e > p` (the `TsoWindow` command), and it never serves
//! at or above the committed end. A new leader (or a restarted one) starts at
//! `max(now, committed_end + 1)`, so it is above every timestamp any earlier
//! leader could have served.
//!
//! Invariants: timestamps handed out by one oracle strictly increase;
//! `physical < window_end` for every timestamp served; no I/O and no clock
//! (the caller passes `now_ms`), so a simulator can drive it.

use golem_wire::pd::{Timestamp, TSO_LOGICAL_BITS};

const LOGICAL_MAX: u64 = 1 << TSO_LOGICAL_BITS;

/// Why the oracle cannot serve right now; the caller retries shortly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TsoError {
    /// This member is not a leader with a committed window yet.
    #[error("timestamp oracle not ready (no committed window)")]
    NotReady,
    /// Timestamps are requested faster than windows commit.
    #[error("timestamp window exhausted")]
    WindowExhausted,
}

/// The leader-local timestamp allocator.
#[derive(Clone, Debug)]
pub struct TsoOracle {
    /// Length of a window, in ms.
    window_ms: u64,
    /// Physical part of the last timestamp served (or of the start point).
    physical_ms: u64,
    /// Logical part of the last timestamp served (0: none in this ms yet).
    logical: u64,
    /// Committed window end: nothing at or above it is served.
    window_end_ms: u64,
    /// Largest window end proposed and not yet committed (avoids re-proposing).
    proposed_end_ms: u64,
    ready: bool,
}

impl TsoOracle {
    /// A stopped oracle (a follower's).
    pub fn new(window_ms: u64) -> TsoOracle {
        assert!(window_ms >= 2, "tso window must be at least 2 ms");
        TsoOracle {
            window_ms,
            physical_ms: 0,
            logical: 0,
            window_end_ms: 0,
            proposed_end_ms: 0,
            ready: false,
        }
    }

    /// Starts serving after becoming leader. `persisted_end_ms` is the
    /// committed window end in the applied state. Returns the window end to
    /// propose; nothing is served until it is committed.
    pub fn start(&mut self, persisted_end_ms: u64, now_ms: u64) -> u64 {
        self.physical_ms = now_ms.max(persisted_end_ms.saturating_add(1));
        self.logical = 0;
        self.window_end_ms = persisted_end_ms;
        self.ready = false;
        self.proposed_end_ms = self.physical_ms + self.window_ms;
        self.proposed_end_ms
    }

    /// Stops serving (lost leadership).
    pub fn stop(&mut self) {
        self.ready = false;
        self.proposed_end_ms = 0;
    }

    /// Whether the oracle serves.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// A window end was applied (any member calls it on apply).
    pub fn on_window_committed(&mut self, end_ms: u64) {
        self.window_end_ms = self.window_end_ms.max(end_ms);
        if self.proposed_end_ms != 0 && self.window_end_ms > self.physical_ms {
            self.ready = true;
        }
    }

    /// Serves `count` timestamps (1..=2^17); returns the last. The first is
    /// `last - count + 1`.
    pub fn next(&mut self, count: u32, now_ms: u64) -> Result<Timestamp, TsoError> {
        if !self.ready {
            return Err(TsoError::NotReady);
        }
        let count = u64::from(count);
        debug_assert!((1..LOGICAL_MAX / 2).contains(&count));
        let (mut physical, mut logical) = (self.physical_ms, self.logical);
        if now_ms > physical {
            physical = now_ms;
            logical = 0;
        }
        if logical + count >= LOGICAL_MAX {
            physical += 1;
            logical = 0;
        }
        if physical >= self.window_end_ms {
            return Err(TsoError::WindowExhausted);
        }
        logical += count;
        self.physical_ms = physical;
        self.logical = logical;
        Ok(Timestamp::compose(physical, logical))
    }

    /// The window end to propose now, if the committed window runs low
    /// (less than half a window ahead of the clock) and no extension is in
    /// flight.
    pub fn extension_due(&mut self, now_ms: u64) -> Option<u64> {
        if !self.ready {
            return None;
        }
        let base = now_ms.max(self.physical_ms);
        let ahead = self.window_end_ms.saturating_sub(base);
        if ahead >= self.window_ms / 2 || self.proposed_end_ms > self.window_end_ms {
            return None;
        }
        self.proposed_end_ms = base + self.window_ms;
        Some(self.proposed_end_ms)
    }

    /// Forgets a proposal that will not commit (so the next check re-proposes).
    pub fn extension_failed(&mut self) {
        self.proposed_end_ms = self.window_end_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_only_inside_a_committed_window() {
        let mut o = TsoOracle::new(100);
        assert_eq!(o.next(1, 1000), Err(TsoError::NotReady));
        let end = o.start(0, 1000);
        assert_eq!(end, 1100);
        assert_eq!(o.next(1, 1000), Err(TsoError::NotReady));
        o.on_window_committed(end);
        let a = o.next(1, 1000).unwrap();
        let b = o.next(5, 1000).unwrap();
        assert!(b.0 == a.0 + 5);
        // The clock jumps past the window: refuse rather than overrun it.
        assert_eq!(o.next(1, 5000), Err(TsoError::WindowExhausted));
        assert_eq!(o.extension_due(5000), Some(5100));
        assert_eq!(o.extension_due(5000), None, "in flight");
        o.on_window_committed(5100);
        let c = o.next(1, 5000).unwrap();
        assert!(c > b);
    }

    #[test]
    fn logical_overflow_moves_to_the_next_millisecond() {
        let mut o = TsoOracle::new(1000);
        let end = o.start(0, 10);
        o.on_window_committed(end);
        let mut last = Timestamp(0);
        for _ in 0..20 {
            let t = o.next(1 << 15, 10).unwrap();
            assert!(t > last);
            last = t;
        }
        assert!(last.physical_ms() > 10);
    }

    #[test]
    fn a_new_leader_starts_above_the_old_window() {
        let mut old = TsoOracle::new(3000);
        let end = old.start(0, 1000);
        old.on_window_committed(end);
        let last_old = old.next(1, 1500).unwrap();
        // The new leader's clock is behind (skew): it still starts above.
        let mut new = TsoOracle::new(3000);
        let end2 = new.start(end, 900);
        new.on_window_committed(end2);
        let first_new = new.next(1, 900).unwrap();
        assert!(first_new > last_old);
        assert!(first_new.physical_ms() > end);
    }

    #[test]
    fn random_clocks_never_go_back() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut o = TsoOracle::new(50);
        let mut now = 1_000u64;
        let end = o.start(0, now);
        o.on_window_committed(end);
        let mut last = Timestamp(0);
        for _ in 0..10_000 {
            // The clock may jump back and forth.
            now = (now as i64 + rng.gen_range(-20i64..30)).max(1) as u64;
            if let Some(e) = o.extension_due(now) {
                o.on_window_committed(e);
            }
            match o.next(rng.gen_range(1..1000), now) {
                Ok(t) => {
                    assert!(t > last);
                    last = t;
                }
                Err(TsoError::WindowExhausted) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
}
