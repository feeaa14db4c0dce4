//! `SegmentIter`: a bounded forward or reverse cursor over a segment's
//! entries in a key range, loading (and checksumming) one data block at a
//! time, so memory stays at one decoded block per open cursor.

use super::reader::{EntryPos, Segment};
use crate::error::LsmError;

/// A forward or reverse cursor over a segment's entries in a key range.
/// Yields `Err` once on a corrupt block, then ends.
pub(crate) struct SegmentIter<'a> {
    pub(super) seg: &'a Segment,
    pub(super) start: Vec<u8>,
    pub(super) end: Vec<u8>,
    pub(super) reverse: bool,
    /// Forward: the next block to load. Reverse: one past it.
    pub(super) next_block: usize,
    pub(super) entries: Vec<EntryPos>,
    /// Forward: next entry index. Reverse: one past it.
    pub(super) pos: usize,
    pub(super) failed: bool,
    /// A key inside the range was returned: from now on only the far bound
    /// needs checking (forward: `end`; reverse: `start`).
    pub(super) inside: bool,
}

impl<'a> Iterator for SegmentIter<'a> {
    type Item = Result<(&'a [u8], Option<&'a [u8]>), LsmError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let more = if self.reverse {
                self.pos > 0
            } else {
                self.pos < self.entries.len()
            };
            if more {
                let e = if self.reverse {
                    self.pos -= 1;
                    &self.entries[self.pos]
                } else {
                    self.pos += 1;
                    &self.entries[self.pos - 1]
                };
                let (k, v) = self.seg.entry(e);
                if self.inside {
                    // Keys only move away from the bound already passed.
                    let beyond = if self.reverse {
                        k < self.start.as_slice()
                    } else {
                        !self.end.is_empty() && k >= self.end.as_slice()
                    };
                    if beyond {
                        self.failed = true;
                        return None;
                    }
                    return Some(Ok((k, v)));
                }
                if k < self.start.as_slice() {
                    if self.reverse {
                        self.failed = true; // Done: everything further is smaller.
                        return None;
                    }
                    continue;
                }
                if !self.end.is_empty() && k >= self.end.as_slice() {
                    if self.reverse {
                        continue;
                    }
                    self.failed = true;
                    return None;
                }
                self.inside = true;
                return Some(Ok((k, v)));
            }
            // Load the next block in the direction of travel.
            let i = if self.reverse {
                if self.next_block == 0 {
                    return None;
                }
                self.next_block -= 1;
                self.next_block
            } else {
                if self.next_block >= self.seg.block_count() {
                    return None;
                }
                self.next_block += 1;
                self.next_block - 1
            };
            match self.seg.block(i, &mut self.entries) {
                Ok(()) => {
                    self.pos = if self.reverse { self.entries.len() } else { 0 };
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
