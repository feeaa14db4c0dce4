//! Reads over a stack of layers (memtables and segments, newest first):
//! point lookups and the k-way merge behind scans and compaction.
//!
//! Shadowing rules, newest layer first: the first layer that has a point
//! entry for a key decides it (a value, or deleted for a point tombstone);
//! a layer whose range tombstone covers the key, and that has no point entry
//! for it, decides "deleted". A range tombstone never hides a point of its
//! own layer (see `range`). `LsmSnapshot` is an owned, `Arc`-counted stack:
//! files it references are not deleted while it lives.

use crate::error::LsmError;
use crate::memtable::Memtable;
use crate::range::RangeTombstones;
use crate::segment::Segment;
use std::sync::Arc;

/// What a layer is.
#[derive(Clone, Debug)]
pub(crate) enum LayerKind {
    /// A memtable (the active one, or frozen and waiting for flush).
    Mem(Arc<Memtable>),
    /// A mapped segment file.
    Seg(Arc<Segment>),
}

/// A layer with its order: a higher `seq` is newer.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub(crate) seq: u64,
    pub(crate) kind: LayerKind,
}

impl Layer {
    fn get(&self, key: &[u8]) -> Result<Option<Option<&[u8]>>, LsmError> {
        match &self.kind {
            LayerKind::Mem(m) => Ok(m.get(key)),
            LayerKind::Seg(s) => s.get(key),
        }
    }

    fn ranges(&self) -> &RangeTombstones {
        match &self.kind {
            LayerKind::Mem(m) => &m.ranges,
            LayerKind::Seg(s) => s.ranges(),
        }
    }

    fn iter<'a>(&'a self, start: &[u8], end: &[u8], reverse: bool) -> LayerIter<'a> {
        match &self.kind {
            LayerKind::Mem(m) => {
                let it = m.range(start, end).map(Ok);
                if reverse {
                    Box::new(it.rev())
                } else {
                    Box::new(it)
                }
            }
            LayerKind::Seg(s) => Box::new(s.iter(start, end, reverse)),
        }
    }
}

/// A key and its state in one layer: a value, or `None` for a tombstone.
type Entry<'a> = (&'a [u8], Option<&'a [u8]>);
type Item<'a> = Result<Entry<'a>, LsmError>;
/// Called by `merge` with each key's newest state; `false` stops it.
pub(crate) type Visit<'v> = dyn FnMut(&[u8], Option<&[u8]>) -> bool + 'v;
type LayerIter<'a> = Box<dyn Iterator<Item = Item<'a>> + 'a>;

/// The value of `key` in a stack of layers (newest first).
pub(crate) fn get<'a>(
    layers: impl Iterator<Item = &'a Layer>,
    key: &[u8],
) -> Result<Option<Vec<u8>>, LsmError> {
    for layer in layers {
        if let Some(state) = layer.get(key)? {
            return Ok(state.map(<[u8]>::to_vec));
        }
    }
    Ok(None)
}

/// What the merge emits for tombstones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tombstones {
    /// Scans: deleted keys are skipped.
    Hide,
    /// Compaction above the bottom: point tombstones are emitted as `None`
    /// (they must keep hiding older layers outside the merge).
    Keep,
}

/// Merges `layers` (newest first) over `[start, end)` in key order (or
/// reverse), calling `visit` with each key's newest visible state until it
/// returns `false`. Points covered by a newer layer's range tombstone are
/// dropped.
pub(crate) fn merge(
    layers: &[&Layer],
    start: &[u8],
    end: &[u8],
    reverse: bool,
    tombstones: Tombstones,
    visit: &mut Visit<'_>,
) -> Result<(), LsmError> {
    if !end.is_empty() && start >= end {
        return Ok(());
    }
    let mut iters: Vec<LayerIter<'_>> =
        layers.iter().map(|l| l.iter(start, end, reverse)).collect();
    let mut heads: Vec<Option<Entry<'_>>> = Vec::with_capacity(iters.len());
    for it in &mut iters {
        heads.push(it.next().transpose()?);
    }
    loop {
        // The next key in the direction of travel; ties go to the newest
        // layer (the lowest index).
        let mut best: Option<usize> = None;
        for (i, h) in heads.iter().enumerate() {
            if let Some((k, _)) = h {
                let better = match best {
                    None => true,
                    Some(b) => {
                        let bk = heads[b].expect("best has a head").0;
                        if reverse {
                            *k > bk
                        } else {
                            *k < bk
                        }
                    }
                };
                if better {
                    best = Some(i);
                }
            }
        }
        let Some(b) = best else { return Ok(()) };
        let (key, value) = heads[b].expect("best has a head");
        let covered = layers[..b].iter().any(|l| l.ranges().covers(key));
        let go_on = match (covered, value, tombstones) {
            (true, _, _) => true,
            (false, Some(v), _) => visit(key, Some(v)),
            (false, None, Tombstones::Keep) => visit(key, None),
            (false, None, Tombstones::Hide) => true,
        };
        if !go_on {
            return Ok(());
        }
        for i in b..heads.len() {
            if heads[i].is_some_and(|(k, _)| k == key) {
                heads[i] = iters[i].next().transpose()?;
            }
        }
    }
}

/// One page of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Pairs in scan order.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the range holds more pairs after the last one returned.
    pub more: bool,
}

/// A bounded scan: at most `pairs_max` pairs and `bytes_max` key+value
/// bytes (but at least one pair when one exists and `pairs_max > 0`).
pub(crate) fn scan(
    layers: &[&Layer],
    start: &[u8],
    end: &[u8],
    reverse: bool,
    pairs_max: usize,
    bytes_max: usize,
) -> Result<ScanPage, LsmError> {
    let mut page = ScanPage::default();
    let mut bytes = 0usize;
    merge(
        layers,
        start,
        end,
        reverse,
        Tombstones::Hide,
        &mut |k, v| {
            let v = v.expect("Hide never yields tombstones");
            let pair_bytes = k.len() + v.len();
            if page.pairs.len() >= pairs_max
                || (!page.pairs.is_empty() && bytes + pair_bytes > bytes_max)
            {
                page.more = true;
                return false;
            }
            bytes += pair_bytes;
            page.pairs.push((k.to_vec(), v.to_vec()));
            true
        },
    )?;
    Ok(page)
}

/// A consistent, immutable view of the LSM at one moment. Cheap to clone
/// (reference counts); its memtables and segment files stay alive and
/// readable while flush and compaction proceed.
#[derive(Clone, Debug)]
pub struct LsmSnapshot {
    /// Newest first.
    pub(crate) layers: Vec<Layer>,
}

impl LsmSnapshot {
    /// The value of `key` in this view.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LsmError> {
        get(self.layers.iter(), key)
    }

    /// Pairs with `start <= key < end` (empty `end`: unbounded), ascending
    /// or descending, bounded by `pairs_max` and `bytes_max`.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        pairs_max: usize,
        bytes_max: usize,
    ) -> Result<ScanPage, LsmError> {
        let refs: Vec<&Layer> = self.layers.iter().collect();
        scan(&refs, start, end, reverse, pairs_max, bytes_max)
    }

    /// Iterates `[start, end)` ascending in chunks of at most `pairs_max`
    /// pairs and `bytes_max` bytes (a Raft snapshot's stream): memory stays
    /// bounded by one chunk.
    pub fn chunks(
        &self,
        start: &[u8],
        end: &[u8],
        pairs_max: usize,
        bytes_max: usize,
    ) -> Chunks<'_> {
        Chunks {
            snap: self,
            next_start: Some(start.to_vec()),
            end: end.to_vec(),
            pairs_max: pairs_max.max(1),
            bytes_max,
        }
    }

    /// Number of layers (memtables and segments) in the view.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }
}

/// Iterator of `LsmSnapshot::chunks`.
pub struct Chunks<'a> {
    snap: &'a LsmSnapshot,
    next_start: Option<Vec<u8>>,
    end: Vec<u8>,
    pairs_max: usize,
    bytes_max: usize,
}

impl Iterator for Chunks<'_> {
    type Item = Result<Vec<(Vec<u8>, Vec<u8>)>, LsmError>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.next_start.take()?;
        match self
            .snap
            .scan(&start, &self.end, false, self.pairs_max, self.bytes_max)
        {
            Err(e) => Some(Err(e)),
            Ok(page) if page.pairs.is_empty() => None,
            Ok(page) => {
                if page.more {
                    let mut next = page.pairs.last().expect("non-empty").0.clone();
                    next.push(0); // The smallest key after the last one.
                    self.next_start = Some(next);
                }
                Some(Ok(page.pairs))
            }
        }
    }
}
