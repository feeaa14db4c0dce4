//! `IdPool`: ids the leader allocated through the log ahead of need.
//!
//! Owns the leader's reserve of fresh ids for operators (new peers, new
//! regions). The scheduler never allocates synchronously: the driver
//! proposes `AllocIds` when the pool runs low (`want`) and hands the applied
//! range back (`refill`); a checker that cannot take all the ids it needs
//! (`take`) skips this round. Invariant: an id leaves the pool at most once;
//! the pool is leader-local and dropped on a leader change (its ids are
//! skipped, never reused: the allocator's mark is already above them).

use std::collections::VecDeque;
use std::ops::Range;

/// Below this many ids the pool asks for more.
pub const ID_POOL_LOW: u64 = 64;
/// Ids asked for at once.
pub const ID_POOL_BATCH: u32 = 256;
/// A request not answered within this is asked again, in ms.
const REFILL_RETRY_MS: u64 = 3000;

/// The leader's reserve of fresh ids.
#[derive(Debug, Default)]
pub struct IdPool {
    ranges: VecDeque<Range<u64>>,
    /// When the outstanding `AllocIds` was proposed (none: 0).
    asked_ms: u64,
}

impl IdPool {
    /// Ids left.
    pub fn available(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// The id `take(1)` would return next.
    pub fn peek(&self) -> Option<u64> {
        self.ranges.front().map(|r| r.start)
    }

    /// `n` ids, or none if fewer are left (all or nothing).
    pub fn take(&mut self, n: usize) -> Option<Vec<u64>> {
        if self.available() < n as u64 {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let r = self.ranges.front_mut().expect("available counted them");
            out.push(r.start);
            r.start += 1;
            if r.start == r.end {
                self.ranges.pop_front();
            }
        }
        Some(out)
    }

    /// How many ids to ask the log for now, if any.
    pub fn want(&mut self, now_ms: u64) -> Option<u32> {
        let asked = self.asked_ms != 0 && now_ms < self.asked_ms + REFILL_RETRY_MS;
        if self.available() >= ID_POOL_LOW || asked {
            return None;
        }
        self.asked_ms = now_ms.max(1);
        Some(ID_POOL_BATCH)
    }

    /// Ids `first .. first + count`, applied from the log.
    pub fn refill(&mut self, first: u64, count: u32) {
        self.ranges.push_back(first..first + u64::from(count));
        self.asked_ms = 0;
    }

    /// Drops every id (a leader change).
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.asked_ms = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_is_all_or_nothing_and_never_repeats() {
        let mut p = IdPool::default();
        assert_eq!(p.want(10), Some(ID_POOL_BATCH));
        assert_eq!(p.want(11), None, "one request at a time");
        p.refill(100, 2);
        p.refill(200, 2);
        assert_eq!(p.take(3), Some(vec![100, 101, 200]));
        assert_eq!(p.take(2), None);
        assert_eq!(p.take(1), Some(vec![201]));
        assert_eq!(p.want(12), Some(ID_POOL_BATCH));
        assert_eq!(
            p.want(13 + REFILL_RETRY_MS),
            Some(ID_POOL_BATCH),
            "lost request asked again"
        );
    }
}
