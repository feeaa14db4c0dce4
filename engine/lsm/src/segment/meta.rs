//! Decoders of a segment's metadata blocks (range tombstones, block index,
//! regions), from untrusted bytes whose checksum already passed. Each
//! returns `None` on any malformation (lengths past the end, trailing
//! bytes, broken ordering); the caller turns it into `Corrupt` with the
//! block's offset. They never panic.

use super::format::BLOCK_BYTES_MAX;
use crate::codec::Cursor;
use crate::range::RangeTombstones;
use golem_wire::{LogIndex, RegionId};
use std::collections::BTreeMap;

/// One data block's place in the file and its last key.
#[derive(Debug)]
pub(super) struct IndexEntry {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) last_key: Vec<u8>,
}

pub(super) fn decode_ranges(body: &[u8]) -> Option<RangeTombstones> {
    let mut c = Cursor::new(body);
    let n = c.u32()?;
    let mut r = RangeTombstones::default();
    let mut prev_end: Option<&[u8]> = None;
    for _ in 0..n {
        let s = c.bytes()?;
        let e = c.bytes()?;
        if !e.is_empty() && s >= e {
            return None;
        }
        // Sorted and disjoint, as the writer stores them.
        if let Some(pe) = prev_end {
            if pe.is_empty() || s <= pe {
                return None;
            }
        }
        prev_end = Some(e);
        r.insert(s.to_vec(), e.to_vec());
    }
    c.is_done().then_some(r)
}

pub(super) fn decode_index(body: &[u8], data_end: u64) -> Option<Vec<IndexEntry>> {
    let mut c = Cursor::new(body);
    let n = c.u32()? as usize;
    let mut out: Vec<IndexEntry> = Vec::with_capacity(n.min(body.len() / 16));
    let mut expect_offset = 0u64;
    for _ in 0..n {
        let offset = c.u64()?;
        let len = c.u32()?;
        let last_key = c.bytes()?.to_vec();
        if offset != expect_offset || len < 4 + 4 + 1 + 4 + 1 || u64::from(len) > BLOCK_BYTES_MAX {
            return None;
        }
        if out.last().is_some_and(|p| p.last_key >= last_key) || last_key.is_empty() {
            return None;
        }
        expect_offset = offset.checked_add(u64::from(len))?;
        out.push(IndexEntry {
            offset,
            len,
            last_key,
        });
    }
    (c.is_done() && expect_offset == data_end).then_some(out)
}

pub(super) fn decode_regions(body: &[u8]) -> Option<BTreeMap<RegionId, LogIndex>> {
    let mut c = Cursor::new(body);
    let n = c.u32()?;
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = RegionId(c.u64()?);
        let i = LogIndex(c.u64()?);
        if out.insert(r, i).is_some() {
            return None;
        }
    }
    c.is_done().then_some(out)
}
