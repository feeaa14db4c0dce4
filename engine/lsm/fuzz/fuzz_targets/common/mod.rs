//! Shared by the segment targets: a throwaway LSM directory holding two
//! segments (a fixed, valid "base" segment as the older layer and the
//! fuzzed one as the newer layer, named by a hand-written MANIFEST), reads
//! through the public API (`Lsm::get`, `Lsm::scan`, `LsmSnapshot::chunks`),
//! and a model of what those reads must return.
//!
//! `Segment`'s own point lookup and iterator are crate-private, so reads go
//! through `Lsm`, which maps and validates every segment the manifest names
//! at `open` (the same `Segment::open`) and reads them on `get` and `scan`.
//! The base layer underneath makes the fuzzed segment's range tombstones and
//! point tombstones visible to reads (they hide older layers only).

#![allow(dead_code)] // Each target uses a part.

use golem_lsm::{LogIndex, Lsm, LsmError, LsmOptions, RegionId, ScanPage, SegmentWriter};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// File id (and name) of the base segment: the older layer, seq 1.
pub const BASE_ID: u64 = 1;
/// File id of the fuzzed segment: the newer layer, seq 2.
pub const FUZZ_ID: u64 = 2;
/// Size of a segment footer (docs/storage.md, "Footer").
pub const FOOTER_BYTES: usize = 96;
/// Letters of the keys the targets make up (short keys collide often).
const LETTERS: u8 = 8;

/// `<dir>/<file_id:020>.seg`, as the LSM names segment files.
pub fn segment_path(dir: &Path, file_id: u64) -> PathBuf {
    dir.join(format!("{file_id:020}.seg"))
}

/// A fresh directory for one run, in memory when /dev/shm exists (the
/// writer fsyncs). Removed when dropped.
pub fn run_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("golem-lsm-fuzz-")
        .tempdir_in(parent)
        .expect("temp dir")
}

/// Writes the MANIFEST naming the fuzzed segment (newest, seq 2) over the
/// base segment (seq 1), in the format of docs/storage.md, "Manifest"
/// (the encoder is private to the crate).
pub fn write_manifest(dir: &Path) {
    let mut body = Vec::new();
    body.extend_from_slice(&3u64.to_le_bytes()); // next_file_id
    body.extend_from_slice(&3u64.to_le_bytes()); // next_seq
    body.extend_from_slice(&2u32.to_le_bytes()); // segment count
    for (file_id, seq) in [(FUZZ_ID, 2u64), (BASE_ID, 1u64)] {
        body.extend_from_slice(&file_id.to_le_bytes());
        body.extend_from_slice(&seq.to_le_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"GOLEMMF1");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    std::fs::write(dir.join("MANIFEST"), out).expect("write manifest");
}

/// The base segment: every key of one or two letters, value `base:<key>`.
pub struct Base {
    pub bytes: Vec<u8>,
    pub pairs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub applied: BTreeMap<RegionId, LogIndex>,
}

/// Built once per process with `SegmentWriter`.
pub fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut pairs = BTreeMap::new();
        for a in 0..LETTERS {
            let k = vec![b'a' + a];
            pairs.insert(k.clone(), [b"base:", &k[..]].concat());
            for b in 0..LETTERS {
                let k = vec![b'a' + a, b'a' + b];
                pairs.insert(k.clone(), [b"base:", &k[..]].concat());
            }
        }
        let applied: BTreeMap<RegionId, LogIndex> =
            [(RegionId(1), LogIndex(7)), (RegionId(9), LogIndex(100))]
                .into_iter()
                .collect();
        let dir = run_dir();
        let path = segment_path(dir.path(), BASE_ID);
        let mut w = SegmentWriter::create(&path, 256, 10).expect("create base");
        for (k, v) in &pairs {
            w.add(k, Some(v)).expect("add base pair");
        }
        for (r, i) in &applied {
            w.set_applied(*r, *i);
        }
        w.finish().expect("finish base");
        let bytes = std::fs::read(&path).expect("read base");
        Base {
            bytes,
            pairs,
            applied,
        }
    })
}

/// Puts the base segment, `fuzzed` as the newer segment, and the manifest
/// into `dir`; returns the fuzzed segment's path.
pub fn install(dir: &Path, fuzzed: &[u8]) -> PathBuf {
    std::fs::write(segment_path(dir, BASE_ID), &base().bytes).expect("write base");
    let path = segment_path(dir, FUZZ_ID);
    std::fs::write(&path, fuzzed).expect("write fuzzed segment");
    write_manifest(dir);
    path
}

/// A key of 1..=`max_len` letters `a`.. (short keys so that the fuzzed
/// segment shadows base keys often).
pub fn letter_key(u: &mut Unstructured, min_len: usize, max_len: usize) -> Result<Vec<u8>> {
    let n = u.int_in_range(min_len..=max_len)?;
    (0..n)
        .map(|_| Ok(b'a' + u.arbitrary::<u8>()? % LETTERS))
        .collect()
}

/// A bounded scan (and chunked iteration) to run besides the full scans.
#[derive(Clone, Debug)]
pub struct Query {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
    pub reverse: bool,
    pub pairs_max: usize,
    pub bytes_max: usize,
}

impl Query {
    pub fn arbitrary(u: &mut Unstructured) -> Result<Query> {
        Ok(Query {
            start: letter_key(u, 0, 2)?,
            end: letter_key(u, 0, 2)?,
            reverse: u.arbitrary()?,
            pairs_max: u.int_in_range(0..=24)?,
            bytes_max: u.int_in_range(0..=600)?,
        })
    }
}

/// What reads of the two-layer LSM must return.
pub struct Model {
    /// Visible pairs (newest version, tombstones applied).
    pub visible: BTreeMap<Vec<u8>, Vec<u8>>,
    /// `persisted_applied_all`: the maximum per region over both segments.
    pub applied: BTreeMap<RegionId, LogIndex>,
}

/// `[start, end)` with an empty `end` unbounded (the LSM's convention).
pub fn in_range(start: &[u8], end: &[u8], key: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

impl Model {
    /// The model of the base segment under a segment holding `points`
    /// (`None`: a point tombstone), `ranges` and `applied`.
    pub fn new(
        points: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        ranges: &[(Vec<u8>, Vec<u8>)],
        applied: &BTreeMap<RegionId, LogIndex>,
    ) -> Model {
        let b = base();
        let mut visible: BTreeMap<Vec<u8>, Vec<u8>> = b
            .pairs
            .iter()
            .filter(|(k, _)| !ranges.iter().any(|(s, e)| in_range(s, e, k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in points {
            match v {
                Some(v) => visible.insert(k.clone(), v.clone()),
                None => visible.remove(k),
            };
        }
        let mut all_applied = b.applied.clone();
        for (r, i) in applied {
            let slot = all_applied.entry(*r).or_insert(*i);
            *slot = (*slot).max(*i);
        }
        Model {
            visible,
            applied: all_applied,
        }
    }

    /// What `Lsm::scan` must return for `q`.
    pub fn scan(&self, q: &Query) -> ScanPage {
        let mut page = ScanPage::default();
        if !q.end.is_empty() && q.start >= q.end {
            return page;
        }
        let inside = self
            .visible
            .iter()
            .filter(|(k, _)| in_range(&q.start, &q.end, k));
        let items: Vec<_> = if q.reverse {
            inside.rev().collect()
        } else {
            inside.collect()
        };
        let mut bytes = 0usize;
        for (k, v) in items {
            let pair_bytes = k.len() + v.len();
            if page.pairs.len() >= q.pairs_max
                || (!page.pairs.is_empty() && bytes + pair_bytes > q.bytes_max)
            {
                page.more = true;
                break;
            }
            bytes += pair_bytes;
            page.pairs.push((k.clone(), v.clone()));
        }
        page
    }

    /// Every visible pair in `[start, end)`, ascending.
    pub fn range(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.visible
            .iter()
            .filter(|(k, _)| in_range(start, end, k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Bad bytes must give a typed error naming the damage, nothing else.
pub fn assert_typed(e: &LsmError) {
    assert!(
        matches!(
            e,
            LsmError::Corrupt { .. } | LsmError::UnsupportedVersion { .. }
        ),
        "bad segment bytes gave an untyped error: {e:?}"
    );
}

/// Probe keys for `get`: every base key, plus `extra`, plus a few edge keys.
pub fn probes(extra: impl IntoIterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = base().pairs.keys().cloned().collect();
    keys.extend(extra);
    keys.extend([
        Vec::new(),
        b"a\0".to_vec(),
        b"i".to_vec(),
        b"zzz".to_vec(),
        vec![0xff; 4],
    ]);
    keys.sort();
    keys.dedup();
    keys
}

/// Chunks that `chunks` may return before we call it a loop.
const CHUNKS_MAX: usize = 10_000;

/// Opens the LSM in `dir` and reads it. With a model, every read must
/// succeed with the model's answer or fail with a typed error (`strict`:
/// every read must succeed); without one (a crafted file whose checksums
/// were recomputed), reads must not panic and errors must be typed.
/// Returns whether the LSM opened.
pub fn check_reads(
    dir: &Path,
    model: Option<&Model>,
    strict: bool,
    probes: &[Vec<u8>],
    q: &Query,
) -> bool {
    let mut lsm = match Lsm::open(dir, LsmOptions::default()) {
        Ok(lsm) => lsm,
        Err(e) => {
            assert!(!strict, "a valid segment did not open: {e}");
            assert_typed(&e);
            return false;
        }
    };
    // Fails the run on an error, or checks it is typed.
    let check_err = |what: &str, e: &LsmError| {
        assert!(!strict, "{what} failed on a valid segment: {e}");
        assert_typed(e);
    };
    assert_eq!(lsm.stats().segments, 2);
    if let Some(m) = model {
        // The regions blocks are checksummed at open: never different.
        assert_eq!(lsm.persisted_applied_all(), &m.applied, "applied indexes");
    }
    let _ = lsm.approximate_bytes(b"", b"");
    let _ = lsm.approximate_bytes(&q.start, &q.end);

    for k in probes {
        match lsm.get(k) {
            Ok(v) => {
                if let Some(m) = model {
                    assert_eq!(v.as_ref(), m.visible.get(k), "get {k:?}");
                }
            }
            Err(e) => check_err("get", &e),
        }
    }

    let full = |reverse| Query {
        start: Vec::new(),
        end: Vec::new(),
        reverse,
        pairs_max: usize::MAX,
        bytes_max: usize::MAX,
    };
    let mut full_pages = Vec::new();
    for q in [full(false), full(true), q.clone()] {
        match lsm.scan(&q.start, &q.end, q.reverse, q.pairs_max, q.bytes_max) {
            Ok(page) => {
                if let Some(m) = model {
                    assert_eq!(page, m.scan(&q), "scan {q:?}");
                }
                full_pages.push(Some(page));
            }
            Err(e) => {
                check_err("scan", &e);
                full_pages.push(None);
            }
        }
    }
    // Whatever the file, a scan that succeeds is in key order, each key
    // once, and the reverse scan is the forward scan reversed.
    if let [Some(fwd), Some(rev), _] = &full_pages[..] {
        assert!(
            fwd.pairs.windows(2).all(|w| w[0].0 < w[1].0),
            "forward scan not strictly increasing: {:?}",
            fwd.pairs.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
        let mut back = rev.pairs.clone();
        back.reverse();
        assert_eq!(fwd.pairs, back, "reverse scan differs from forward");
    }

    // Chunks of a few pairs at least: each chunk is a new merge from its
    // start key, and one pair per chunk would make most runs chunk scans.
    let snap = lsm.snapshot();
    let mut got = Vec::new();
    let mut failed = false;
    for (i, chunk) in snap
        .chunks(&q.start, &q.end, q.pairs_max + 8, q.bytes_max)
        .enumerate()
    {
        assert!(i < CHUNKS_MAX, "chunks does not end");
        match chunk {
            Ok(pairs) => {
                assert!(!pairs.is_empty(), "an empty chunk");
                got.extend(pairs);
            }
            Err(e) => {
                check_err("chunks", &e);
                failed = true;
                break;
            }
        }
    }
    if let (Some(m), false) = (model, failed) {
        assert_eq!(got, m.range(&q.start, &q.end), "chunks {q:?}");
    }
    true
}

/// Where the blocks of a segment (as its footer and index say) lie: data
/// blocks, the four metadata blocks and the footer, each a byte range that
/// ends with the crc32c of the bytes before it. Reads `file` leniently
/// (anything out of bounds is skipped), so it works on any bytes.
pub fn sealed_blocks(file: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let Some(footer) = file.len().checked_sub(FOOTER_BYTES) else {
        return out;
    };
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    let block = |offset: u64, len: u64| -> Option<Range<usize>> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        (len >= 4 && end <= footer).then_some(start..end)
    };
    let handles: Vec<Option<Range<usize>>> = (0..4)
        .map(|i| block(u64_at(footer + 16 + 16 * i), u64_at(footer + 24 + 16 * i)))
        .collect();
    // The block index: count u32, then per block offset u64, len u32,
    // last_key_len u32, last_key.
    if let Some(index) = &handles[1] {
        let body = &file[index.start..index.end - 4];
        let mut pos = 4usize;
        let count = body
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()));
        for _ in 0..count {
            let Some(e) = body.get(pos..pos + 16) else {
                break;
            };
            let offset = u64::from_le_bytes(e[..8].try_into().unwrap());
            let len = u32::from_le_bytes(e[8..12].try_into().unwrap());
            let key_len = u32::from_le_bytes(e[12..16].try_into().unwrap()) as usize;
            pos = match (pos + 16).checked_add(key_len) {
                Some(p) => p,
                None => break,
            };
            if let Some(b) = block(offset, u64::from(len)) {
                out.push(b);
            }
        }
    }
    out.extend(handles.into_iter().flatten());
    out.push(footer..file.len());
    out
}

/// Rewrites the crc32c trailer of `block` in `file`.
pub fn seal(file: &mut [u8], block: Range<usize>) {
    let crc_at = block.end - 4;
    let crc = crc32c::crc32c(&file[block.start..crc_at]);
    file[crc_at..block.end].copy_from_slice(&crc.to_le_bytes());
}
