//! `SegmentWriter`: streams entries in strictly increasing key order into a
//! new segment file, cutting data blocks at `block_bytes`, and writes the
//! range tombstones, block index, bloom filter, per-region applied indexes
//! and footer at `finish`, then fsyncs the file.
//!
//! It writes exactly the path it is given; making the file appear
//! atomically (temp name, fsync, rename, fsync directory) is the caller's
//! job. The same writer builds segments for flush, compaction and (outside
//! the LSM) snapshots to `ingest`.

use super::format::{BlockHandle, Footer, KIND_TOMBSTONE, KIND_VALUE};
use crate::bloom::BloomBuilder;
use crate::codec::{put_bytes, put_u32, put_u64, seal_crc_trailer};
use crate::error::LsmError;
use crate::options::{KEY_BYTES_MAX, VALUE_BYTES_MAX};
use crate::range::RangeTombstones;
use golem_wire::{LogIndex, RegionId};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What a finished segment holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// File size.
    pub file_bytes: u64,
    /// Point entries (tombstones included).
    pub entry_count: u64,
    /// Data blocks.
    pub block_count: u64,
}

/// Builds one segment file.
pub struct SegmentWriter {
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes written so far (the offset of the next block).
    offset: u64,
    block_bytes: usize,
    bloom_bits_per_key: usize,
    block: Vec<u8>,
    block_entries: u32,
    /// Encoded block index body: (offset, len, last key) per block.
    index: Vec<u8>,
    index_count: u32,
    last_key: Option<Vec<u8>>,
    bloom: BloomBuilder,
    ranges: RangeTombstones,
    applied: BTreeMap<RegionId, LogIndex>,
    entry_count: u64,
}

impl SegmentWriter {
    /// Creates (truncating) `path`. `block_bytes` and `bloom_bits_per_key`
    /// as in `LsmOptions`.
    pub fn create(
        path: &Path,
        block_bytes: usize,
        bloom_bits_per_key: usize,
    ) -> Result<Self, LsmError> {
        let file = File::create(path).map_err(|e| LsmError::io("create", path, e))?;
        Ok(SegmentWriter {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(256 * 1024, file),
            offset: 0,
            block_bytes: block_bytes.max(64),
            bloom_bits_per_key: bloom_bits_per_key.clamp(1, 32),
            block: Vec::new(),
            block_entries: 0,
            index: Vec::new(),
            index_count: 0,
            last_key: None,
            bloom: BloomBuilder::new(),
            ranges: RangeTombstones::default(),
            applied: BTreeMap::new(),
            entry_count: 0,
        })
    }

    /// Adds a value (`Some`) or a point tombstone (`None`). Keys must be
    /// non-empty, within `KEY_BYTES_MAX`, and strictly increasing.
    pub fn add(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), LsmError> {
        if key.is_empty() || key.len() > KEY_BYTES_MAX {
            return Err(LsmError::InvalidArgument(format!(
                "segment key of {} bytes",
                key.len()
            )));
        }
        if value.is_some_and(|v| v.len() > VALUE_BYTES_MAX) {
            return Err(LsmError::InvalidArgument(
                "segment value over VALUE_BYTES_MAX".into(),
            ));
        }
        if self.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(LsmError::InvalidArgument(
                "segment keys must strictly increase".into(),
            ));
        }
        match value {
            Some(v) => {
                self.block.push(KIND_VALUE);
                put_bytes(&mut self.block, key);
                put_bytes(&mut self.block, v);
            }
            None => {
                self.block.push(KIND_TOMBSTONE);
                put_bytes(&mut self.block, key);
            }
        }
        self.block_entries += 1;
        self.entry_count += 1;
        self.bloom.add(key);
        self.last_key = Some(key.to_vec());
        if self.block.len() >= self.block_bytes {
            self.cut_block()?;
        }
        Ok(())
    }

    /// Records a range tombstone `[start, end)` (empty `end`: unbounded).
    /// It hides older layers only, never this segment's own entries.
    pub fn add_range_tombstone(&mut self, start: &[u8], end: &[u8]) -> Result<(), LsmError> {
        if start.len() > KEY_BYTES_MAX
            || end.len() > KEY_BYTES_MAX
            || (!end.is_empty() && start >= end)
        {
            return Err(LsmError::InvalidArgument("bad range tombstone".into()));
        }
        self.ranges.insert(start.to_vec(), end.to_vec());
        Ok(())
    }

    /// Records that this segment covers `region`'s writes up to `applied`
    /// (the highest value per region is kept).
    pub fn set_applied(&mut self, region: RegionId, applied: LogIndex) {
        let slot = self.applied.entry(region).or_insert(applied);
        if applied > *slot {
            *slot = applied;
        }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), LsmError> {
        self.out
            .write_all(bytes)
            .map_err(|e| LsmError::io("write", &self.path, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn cut_block(&mut self) -> Result<(), LsmError> {
        if self.block_entries == 0 {
            return Ok(());
        }
        let mut block = std::mem::take(&mut self.block);
        put_u32(&mut block, self.block_entries);
        seal_crc_trailer(&mut block, 0);
        let offset = self.offset;
        self.write(&block)?;
        put_u64(&mut self.index, offset);
        put_u32(
            &mut self.index,
            u32::try_from(block.len()).expect("block under 4 GiB"),
        );
        put_bytes(
            &mut self.index,
            self.last_key.as_deref().expect("block has an entry"),
        );
        self.index_count += 1;
        self.block_entries = 0;
        block.clear();
        self.block = block;
        Ok(())
    }

    fn write_meta(&mut self, body: Vec<u8>) -> Result<BlockHandle, LsmError> {
        let mut body = body;
        seal_crc_trailer(&mut body, 0);
        let h = BlockHandle {
            offset: self.offset,
            len: body.len() as u64,
        };
        self.write(&body)?;
        Ok(h)
    }

    /// Writes the metadata blocks and footer, and fsyncs the file.
    pub fn finish(mut self) -> Result<SegmentInfo, LsmError> {
        self.cut_block()?;
        let mut rt = Vec::new();
        put_u32(
            &mut rt,
            u32::try_from(self.ranges.len()).expect("range count"),
        );
        for (s, e) in self.ranges.iter() {
            put_bytes(&mut rt, s);
            put_bytes(&mut rt, e);
        }
        let range_tombstones = self.write_meta(rt)?;
        let mut index = Vec::new();
        put_u32(&mut index, self.index_count);
        index.extend_from_slice(&std::mem::take(&mut self.index));
        let index = self.write_meta(index)?;
        let mut bloom = Vec::new();
        self.bloom.finish(self.bloom_bits_per_key, &mut bloom);
        let bloom = self.write_meta(bloom)?;
        let mut regions = Vec::new();
        put_u32(
            &mut regions,
            u32::try_from(self.applied.len()).expect("region count"),
        );
        for (r, i) in &self.applied {
            put_u64(&mut regions, r.get());
            put_u64(&mut regions, i.get());
        }
        let regions = self.write_meta(regions)?;
        let mut footer = Vec::new();
        Footer {
            range_tombstones,
            index,
            bloom,
            regions,
            entry_count: self.entry_count,
        }
        .encode(&mut footer);
        self.write(&footer)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| LsmError::io("write", &self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| LsmError::io("fsync", &self.path, e))?;
        Ok(SegmentInfo {
            file_bytes: self.offset,
            entry_count: self.entry_count,
            block_count: u64::from(self.index_count),
        })
    }
}
