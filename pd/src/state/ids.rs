//! The id allocator: store, region and peer ids for the whole cluster.
//!
//! Owns `IdAllocator`, a high-water mark replicated in the PD's Raft log.
//! Invariant: `next` only grows, and every id below it may have been handed
//! out, so an id is never handed out twice — across leader changes and
//! restarts, because the mark is part of the applied state (and of its
//! snapshots). Ids seen in reports (a bootstrap's region, a store
//! registration) raise the mark too, so they are never handed out again.
//! Id 0 is never handed out (raft-rs reserves it).

/// The replicated high-water mark of allocated ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdAllocator {
    /// The next id to hand out; every id below it is used.
    next: u64,
}

impl Default for IdAllocator {
    fn default() -> Self {
        IdAllocator { next: 1 }
    }
}

impl IdAllocator {
    /// Restores a mark from a snapshot (0 is read as 1: id 0 is reserved).
    pub fn from_next(next: u64) -> IdAllocator {
        IdAllocator { next: next.max(1) }
    }

    /// The next id that would be handed out.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Hands out `count` ids and returns the first. Panics if the id space
    /// is exhausted (2^64 ids: a broken invariant, not an input error).
    pub fn alloc(&mut self, count: u32) -> u64 {
        let first = self.next;
        self.next = first
            .checked_add(u64::from(count))
            .expect("the 64-bit id space is exhausted");
        first
    }

    /// Marks `id` as used (ids created outside `alloc`, e.g. by bootstrap).
    pub fn observe(&mut self, id: u64) {
        if id >= self.next {
            self.next = id.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_only_grow_and_skip_observed() {
        let mut a = IdAllocator::default();
        assert_eq!(a.alloc(3), 1);
        assert_eq!(a.alloc(1), 4);
        a.observe(2); // already used: no change
        assert_eq!(a.next(), 5);
        a.observe(10);
        assert_eq!(a.alloc(2), 11);
        assert_eq!(IdAllocator::from_next(0).alloc(1), 1);
    }
}
