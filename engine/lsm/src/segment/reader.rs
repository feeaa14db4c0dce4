//! `Segment`: a finished segment file, validated and mapped read-only:
//! point lookups, data block decoding, and the file's deletion once obsolete.
//!
//! Invariants: the file length is checked before it is mapped and every
//! offset is checked against it before use, so no read goes past the end of
//! the mapping (SIGBUS). At open the footer, block index, range tombstones,
//! bloom filter and regions block are checksummed and validated (the index
//! tiles the data area exactly, its last keys strictly increase); a data
//! block is checksummed and validated each time it is read. Bad bytes give
//! `LsmError::Corrupt`, never wrong data and never a panic.

use super::format::{
    BlockHandle, Footer, BLOCK_BYTES_MAX, FOOTER_BYTES, KIND_TOMBSTONE, KIND_VALUE,
};
use super::iter::SegmentIter;
use super::meta::{decode_index, decode_ranges, decode_regions, IndexEntry};
use crate::bloom::Bloom;
use crate::codec::{check_crc_trailer, Cursor};
use crate::error::LsmError;
use crate::range::RangeTombstones;
use golem_wire::{LogIndex, RegionId};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Mutex;

/// One decoded entry of a data block: byte ranges in the mapping.
#[derive(Clone, Debug)]
pub(super) struct EntryPos {
    key: Range<usize>,
    /// `None` for a point tombstone.
    value: Option<Range<usize>>,
}

/// A read-only, validated segment file.
pub struct Segment {
    path: PathBuf,
    map: Mmap,
    index: Vec<IndexEntry>,
    bloom: Bloom,
    ranges: RangeTombstones,
    applied: BTreeMap<RegionId, LogIndex>,
    entry_count: u64,
    /// Bytes of all data blocks (the sum of the index's lengths): the
    /// denominator of `approximate_keys`.
    data_bytes: u64,
    /// Set once no manifest names this file any more: the last `Arc` drop
    /// then deletes it (through `deleter`, off the shard thread).
    obsolete: AtomicBool,
    /// Where `Drop` sends the path of an obsolete file for deletion.
    deleter: Mutex<Option<Sender<PathBuf>>>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("file_bytes", &self.map.len())
            .field("entry_count", &self.entry_count)
            .finish()
    }
}

impl Segment {
    /// Opens and validates `path` (see the module doc).
    pub fn open(path: &Path) -> Result<Segment, LsmError> {
        let file = File::open(path).map_err(|e| LsmError::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| LsmError::io("stat", path, e))?
            .len();
        let corrupt = |offset: u64, what: &str| LsmError::corrupt(path, offset, what);
        if len < FOOTER_BYTES as u64 {
            return Err(corrupt(
                0,
                &format!("file of {len} bytes is shorter than a footer"),
            ));
        }
        if usize::try_from(len).is_err() {
            return Err(corrupt(0, "file larger than the address space"));
        }
        // SAFETY: mapping a file is unsound only if the file changes while
        // mapped. Segment files are immutable once written (written under a
        // temp name, fsynced, renamed; never opened for writing again and
        // never truncated by this code); the LSM owns its directory (LOCK).
        // The length was read above and every access below is checked
        // against `map.len()`, so no read falls past the end of the file.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| LsmError::io("mmap", path, e))?;
        if map.len() as u64 != len {
            return Err(corrupt(0, "file length changed while opening"));
        }
        let footer_at = map.len() - FOOTER_BYTES;
        let footer = match Footer::decode(&map[footer_at..]) {
            Err(what) => return Err(corrupt(footer_at as u64, what)),
            Ok(Err(version)) => {
                return Err(LsmError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    version,
                })
            }
            Ok(Ok(f)) => f,
        };
        // The metadata blocks are contiguous, in this order, up to the footer.
        let order = [
            footer.range_tombstones,
            footer.index,
            footer.bloom,
            footer.regions,
        ];
        let mut expect_end = footer_at as u64;
        for h in order.iter().rev() {
            if h.end() != Some(expect_end) || h.len < 8 || h.len > BLOCK_BYTES_MAX.max(len) {
                return Err(corrupt(
                    footer_at as u64,
                    "metadata block handles do not tile the file",
                ));
            }
            expect_end = h.offset;
        }
        let data_end = footer.range_tombstones.offset;
        let meta = |h: BlockHandle, what: &str| -> Result<&[u8], LsmError> {
            let block = &map[h.offset as usize..(h.offset + h.len) as usize];
            check_crc_trailer(block).ok_or_else(|| corrupt(h.offset, &format!("{what} checksum")))
        };
        let ranges = decode_ranges(meta(footer.range_tombstones, "range tombstones")?)
            .ok_or_else(|| corrupt(footer.range_tombstones.offset, "range tombstones block"))?;
        let index = decode_index(meta(footer.index, "block index")?, data_end)
            .ok_or_else(|| corrupt(footer.index.offset, "block index"))?;
        let bloom = Bloom::decode(
            meta(footer.bloom, "bloom filter")?,
            footer.bloom.offset as usize,
        )
        .ok_or_else(|| corrupt(footer.bloom.offset, "bloom filter block"))?;
        let applied = decode_regions(meta(footer.regions, "regions")?)
            .ok_or_else(|| corrupt(footer.regions.offset, "regions block"))?;
        let data_bytes = index.iter().map(|ie| u64::from(ie.len)).sum();
        Ok(Segment {
            path: path.to_path_buf(),
            map,
            data_bytes,
            index,
            bloom,
            ranges,
            applied,
            entry_count: footer.entry_count,
            obsolete: AtomicBool::new(false),
            deleter: Mutex::new(None),
        })
    }

    /// The data blocks whose keys may fall in `[start, end)` (empty `end`:
    /// unbounded), as index positions: from the first block whose last key
    /// is `>= start` through the first whose last key is `>= end`.
    fn blocks_in(&self, start: &[u8], end: &[u8]) -> Range<usize> {
        let first = self
            .index
            .partition_point(|ie| ie.last_key.as_slice() < start);
        let last = if end.is_empty() {
            self.index.len()
        } else {
            (self
                .index
                .partition_point(|ie| ie.last_key.as_slice() < end)
                + 1)
            .min(self.index.len())
        };
        first..last.max(first)
    }

    /// Bytes of the data blocks whose keys may fall in `[start, end)`
    /// (see `blocks_in`).
    pub(crate) fn approximate_bytes(&self, start: &[u8], end: &[u8]) -> u64 {
        self.index[self.blocks_in(start, end)]
            .iter()
            .map(|ie| u64::from(ie.len))
            .sum()
    }

    /// Approximate point entries (tombstones included) with keys in
    /// `[start, end)`: the footer's entry count scaled by the share of the
    /// data bytes that `approximate_bytes` finds in the range (entries are
    /// assumed to be of even size within a segment). At most the count.
    pub(crate) fn approximate_keys(&self, start: &[u8], end: &[u8]) -> u64 {
        if self.data_bytes == 0 {
            return 0;
        }
        let bytes = self.approximate_bytes(start, end);
        let keys = u128::from(self.entry_count) * u128::from(bytes) / u128::from(self.data_bytes);
        (keys as u64).min(self.entry_count)
    }

    /// Appends at most `samples_max` (≥ 1) samples of the blocks in
    /// `[start, end)` to `out`: `(key, bytes)` where `key` is the last key
    /// of a run of consecutive blocks and `bytes` the run's length. Runs
    /// are of equal block counts, so the samples' bytes add up to
    /// `approximate_bytes(start, end)` and a sorted merge of several
    /// segments' samples approximates the range's byte distribution.
    pub(crate) fn sample_blocks<'a>(
        &'a self,
        start: &[u8],
        end: &[u8],
        samples_max: usize,
        out: &mut Vec<(&'a [u8], u64)>,
    ) {
        let blocks = &self.index[self.blocks_in(start, end)];
        let run = blocks.len().div_ceil(samples_max.max(1)).max(1);
        for chunk in blocks.chunks(run) {
            let bytes = chunk.iter().map(|ie| u64::from(ie.len)).sum();
            let last = chunk.last().expect("chunks are not empty");
            out.push((last.last_key.as_slice(), bytes));
        }
    }

    /// Data blocks in the file.
    pub(super) fn block_count(&self) -> usize {
        self.index.len()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File size in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// Point entries (tombstones included), as the footer says.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    /// Highest applied index of each region covered by this segment.
    pub fn applied(&self) -> &BTreeMap<RegionId, LogIndex> {
        &self.applied
    }

    pub(crate) fn ranges(&self) -> &RangeTombstones {
        &self.ranges
    }

    /// Marks the file for deletion when the last reference drops; deletion
    /// requests go to `deleter` (the background thread).
    pub(crate) fn mark_obsolete(&self, deleter: Sender<PathBuf>) {
        *self.deleter.lock().unwrap_or_else(|p| p.into_inner()) = Some(deleter);
        self.obsolete.store(true, Ordering::Release);
    }

    /// Decodes data block `i`, checking its checksum and every bound.
    pub(super) fn block(&self, i: usize, out: &mut Vec<EntryPos>) -> Result<(), LsmError> {
        out.clear();
        let ie = &self.index[i];
        let start = ie.offset as usize;
        let block = &self.map[start..start + ie.len as usize];
        let corrupt = |what: &str| LsmError::corrupt(&self.path, ie.offset, what);
        let body = check_crc_trailer(block).ok_or_else(|| corrupt("data block checksum"))?;
        let count_at = body
            .len()
            .checked_sub(4)
            .ok_or_else(|| corrupt("data block too short"))?;
        let count = u32::from_le_bytes(body[count_at..].try_into().expect("4 bytes")) as usize;
        let mut c = Cursor::new(&body[..count_at]);
        out.reserve(count.min(body.len()));
        // Keys strictly increase across blocks too: the first key must be
        // above the previous block's last key.
        let mut prev: Option<&[u8]> = i.checked_sub(1).map(|p| self.index[p].last_key.as_slice());
        while !c.is_done() {
            let kind = c.u8().ok_or_else(|| corrupt("entry kind"))?;
            let k_at = c.pos() + 4;
            let key = c.bytes().ok_or_else(|| corrupt("entry key"))?;
            let key_range = start + k_at..start + k_at + key.len();
            let value = match kind {
                KIND_VALUE => {
                    let v_at = c.pos() + 4;
                    let v = c.bytes().ok_or_else(|| corrupt("entry value"))?;
                    Some(start + v_at..start + v_at + v.len())
                }
                KIND_TOMBSTONE => None,
                _ => return Err(corrupt("entry kind")),
            };
            if key.is_empty() || prev.is_some_and(|p| p >= key) {
                return Err(corrupt("keys not strictly increasing"));
            }
            prev = Some(key);
            out.push(EntryPos {
                key: key_range,
                value,
            });
        }
        if out.len() != count || out.is_empty() {
            return Err(corrupt("entry count"));
        }
        if prev != Some(ie.last_key.as_slice()) {
            return Err(corrupt("last key differs from the block index"));
        }
        Ok(())
    }

    /// Point lookup in data block `i` without decoding the whole block:
    /// checks the checksum, then walks entries until one is `>= key`.
    /// Every bound is checked; the sorted order is checked on the way.
    fn find_in_block(&self, i: usize, key: &[u8]) -> Result<Option<Option<&[u8]>>, LsmError> {
        let ie = &self.index[i];
        let start = ie.offset as usize;
        let block = &self.map[start..start + ie.len as usize];
        let corrupt = |what: &str| LsmError::corrupt(&self.path, ie.offset, what);
        let body = check_crc_trailer(block).ok_or_else(|| corrupt("data block checksum"))?;
        let count_at = body
            .len()
            .checked_sub(4)
            .ok_or_else(|| corrupt("data block too short"))?;
        let mut c = Cursor::new(&body[..count_at]);
        // Keys strictly increase across blocks too: the first key must be
        // above the previous block's last key.
        let mut prev: Option<&[u8]> = i.checked_sub(1).map(|p| self.index[p].last_key.as_slice());
        while !c.is_done() {
            let kind = c.u8().ok_or_else(|| corrupt("entry kind"))?;
            let k = c.bytes().ok_or_else(|| corrupt("entry key"))?;
            let v = match kind {
                KIND_VALUE => Some(c.bytes().ok_or_else(|| corrupt("entry value"))?),
                KIND_TOMBSTONE => None,
                _ => return Err(corrupt("entry kind")),
            };
            if k.is_empty() || prev.is_some_and(|p| p >= k) {
                return Err(corrupt("keys not strictly increasing"));
            }
            prev = Some(k);
            match k.cmp(key) {
                std::cmp::Ordering::Less => continue,
                std::cmp::Ordering::Equal => return Ok(Some(v)),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    pub(super) fn entry(&self, e: &EntryPos) -> (&[u8], Option<&[u8]>) {
        (
            &self.map[e.key.clone()],
            e.value.clone().map(|v| &self.map[v]),
        )
    }

    /// This layer's state of `key`: `Some(Some(v))` a value, `Some(None)` a
    /// point or range tombstone, `None` not here.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Option<&[u8]>>, LsmError> {
        if self.bloom.may_contain(&self.map, key) {
            let i = self
                .index
                .partition_point(|ie| ie.last_key.as_slice() < key);
            if i < self.index.len() {
                if let Some(state) = self.find_in_block(i, key)? {
                    return Ok(Some(state));
                }
            }
        }
        Ok(self.ranges.covers(key).then_some(None))
    }

    /// A cursor over entries with keys in `[start, end)` (empty `end`:
    /// unbounded), ascending or (`reverse`) descending.
    pub(crate) fn iter<'a>(&'a self, start: &[u8], end: &[u8], reverse: bool) -> SegmentIter<'a> {
        let block = if reverse {
            if end.is_empty() {
                self.index.len()
            } else {
                // First block whose last key >= end may hold keys < end.
                (self
                    .index
                    .partition_point(|ie| ie.last_key.as_slice() < end)
                    + 1)
                .min(self.index.len())
            }
        } else {
            self.index
                .partition_point(|ie| ie.last_key.as_slice() < start)
        };
        SegmentIter {
            seg: self,
            start: start.to_vec(),
            end: end.to_vec(),
            reverse,
            next_block: block,
            entries: Vec::new(),
            pos: 0,
            failed: false,
            inside: false,
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if !self.obsolete.load(Ordering::Acquire) {
            return;
        }
        let sender = self
            .deleter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let sent = sender.is_some_and(|s| s.send(self.path.clone()).is_ok());
        if !sent {
            // The background thread is gone (shutdown): delete here. A file
            // left behind is harmless: open deletes files the manifest
            // does not name.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SegmentWriter;

    /// A data block whose first key is not above the previous block's last
    /// key is corrupt, even with valid checksums (as a buggy writer would
    /// leave it): otherwise scans return keys out of order and `get` misses
    /// keys a scan returns. Found by the `segment_open` fuzz target
    /// (engine/lsm/fuzz), which recomputes checksums after its edits.
    #[test]
    fn keys_must_increase_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seg");
        // 31-byte entries and 64-byte blocks: blocks of three entries.
        let mut w = SegmentWriter::create(&path, 64, 10).unwrap();
        for k in ["ba", "bb", "bc", "bd", "be", "bf"] {
            w.add(k.as_bytes(), Some(&[b'v'; 20])).unwrap();
        }
        w.finish().unwrap();
        let seg = Segment::open(&path).unwrap();
        assert_eq!(seg.block_count(), 2);
        assert_eq!(seg.index[0].last_key, b"bc");
        let (start, len) = (seg.index[1].offset as usize, seg.index[1].len as usize);
        drop(seg);

        // The second block's first key "bd" becomes "aa" (still below the
        // block's other keys), and the block's crc is recomputed.
        let mut f = std::fs::read(&path).unwrap();
        let key_at = start + 1 + 4; // kind u8, key_len u32
        assert_eq!(&f[key_at..key_at + 2], b"bd");
        f[key_at..key_at + 2].copy_from_slice(b"aa");
        let crc_at = start + len - 4;
        let crc = crc32c::crc32c(&f[start..crc_at]);
        f[crc_at..start + len].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &f).unwrap();

        // The metadata is intact, so it opens; reading the block fails.
        let seg = Segment::open(&path).unwrap();
        let mut out = Vec::new();
        assert!(matches!(seg.block(0, &mut out), Ok(())));
        assert!(matches!(
            seg.block(1, &mut out),
            Err(LsmError::Corrupt { .. })
        ));
        assert!(matches!(seg.get(b"be"), Err(LsmError::Corrupt { .. })));
        let scanned: Vec<_> = seg.iter(b"", b"", false).collect();
        assert!(
            scanned.iter().any(Result::is_err),
            "scan served the block: {:?}",
            scanned
                .iter()
                .flatten()
                .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        );
        let reversed: Vec<_> = seg.iter(b"", b"", true).collect();
        assert!(reversed.iter().any(Result::is_err));
    }
}
