//! Range estimates from segment metadata: `approximate_keys`, and the
//! bytes, keys and middle key of `estimate_range`, against exact counts.

use golem_lsm::{LogIndex, Lsm, LsmOptions, RegionId, WriteBatch};

fn small() -> LsmOptions {
    LsmOptions {
        memtable_bytes_max: 4096,
        block_bytes: 256,
        segments_per_tier_max: 4,
        segments_max: 8,
        ..LsmOptions::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:05}").into_bytes()
}

/// Writes keys `keys` with values of `value_bytes`, one batch per 50 keys
/// (waiting for the background thread on a write stall), then flushes.
fn put_keys(lsm: &mut Lsm, keys: &[u32], value_bytes: usize, index: &mut u64) {
    for chunk in keys.chunks(50) {
        let batch = || {
            let mut b = WriteBatch::new();
            for &i in chunk {
                b.put(key(i), vec![b'v'; value_bytes]);
            }
            b
        };
        *index += 1;
        if let Err(golem_lsm::LsmError::WriteStall { .. }) =
            lsm.apply(batch(), (RegionId(1), LogIndex(*index)))
        {
            lsm.wait_idle().unwrap();
            lsm.apply(batch(), (RegionId(1), LogIndex(*index))).unwrap();
        }
    }
    lsm.flush().unwrap();
    lsm.wait_idle().unwrap();
}

fn fill(lsm: &mut Lsm, range: std::ops::Range<u32>, value_bytes: usize, index: &mut u64) {
    put_keys(lsm, &range.collect::<Vec<_>>(), value_bytes, index);
}

fn within(actual: u64, expected: u64, percent: u64) -> bool {
    actual * 100 >= expected * (100 - percent) && actual * 100 <= expected * (100 + percent)
}

#[test]
fn an_empty_store_estimates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    let e = lsm.estimate_range(b"", b"");
    assert_eq!((e.bytes, e.keys, e.middle_key), (0, 0, None));
    assert_eq!(lsm.approximate_keys(b"", b""), 0);
}

#[test]
fn key_counts_follow_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    let mut index = 0;
    fill(&mut lsm, 0..4000, 20, &mut index);
    let all = lsm.approximate_keys(b"", b"");
    assert_eq!(all, 4000, "one version of each key, all in segments");
    let quarter = lsm.approximate_keys(&key(1000), &key(2000));
    assert!(within(quarter, 1000, 10), "{quarter} for 1000 keys");
    let tail = lsm.approximate_keys(&key(3000), b"");
    assert!(within(tail, 1000, 10), "{tail} for 1000 keys");
    assert_eq!(lsm.approximate_keys(b"z", b""), 0);
    // estimate_range agrees with the separate calls.
    let e = lsm.estimate_range(&key(1000), &key(2000));
    assert_eq!(e.keys, quarter);
    assert_eq!(e.bytes, lsm.approximate_bytes(&key(1000), &key(2000)));
}

#[test]
fn the_middle_key_halves_the_range_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    let mut index = 0;
    // Even sizes: the middle key is near the middle key.
    fill(&mut lsm, 0..4000, 20, &mut index);
    let mid = lsm
        .estimate_range(b"", b"")
        .middle_key
        .expect("a middle key");
    assert!(mid > key(1800) && mid < key(2200), "{mid:?}");
    // Within a sub-range, strictly inside it.
    let mid = lsm
        .estimate_range(&key(1000), &key(1400))
        .middle_key
        .expect("a middle key");
    assert!(mid > key(1100) && mid < key(1300), "{mid:?}");
}

#[test]
fn the_middle_key_follows_bytes_not_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    let mut index = 0;
    // Keys 0..1000 carry 10× bigger values than keys 1000..4000: half the
    // bytes lie below key ~770.
    fill(&mut lsm, 0..1000, 200, &mut index);
    fill(&mut lsm, 1000..4000, 20, &mut index);
    let e = lsm.estimate_range(b"", b"");
    let mid = e.middle_key.expect("a middle key");
    assert!(mid > key(600) && mid < key(950), "{mid:?}");
    let keys_all = e.keys;
    assert!(within(keys_all, 4000, 10), "{keys_all}");
}

#[test]
fn the_middle_key_spans_overlapping_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LsmOptions {
        // No compaction: the estimate merges several segments' indexes.
        segments_per_tier_max: 64,
        segments_max: 64,
        ..small()
    };
    let mut lsm = Lsm::open(dir.path(), opts).unwrap();
    let mut index = 0;
    // Interleaved: evens, then odds, each in its own segments.
    let evens: Vec<u32> = (0..2000).map(|i| i * 2).collect();
    let odds: Vec<u32> = (0..2000).map(|i| i * 2 + 1).collect();
    for set in [&evens, &odds] {
        put_keys(&mut lsm, set, 20, &mut index);
    }
    assert!(lsm.stats().segments >= 2);
    let e = lsm.estimate_range(b"", b"");
    assert!(within(e.keys, 4000, 10), "{}", e.keys);
    let mid = e.middle_key.expect("a middle key");
    assert!(mid > key(1700) && mid < key(2300), "{mid:?}");
}

#[test]
fn a_range_within_one_block_has_no_middle_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    let mut index = 0;
    fill(&mut lsm, 0..4000, 20, &mut index);
    // Two adjacent keys: no block boundary lies strictly between them.
    let e = lsm.estimate_range(&key(2000), &key(2001));
    if let Some(m) = &e.middle_key {
        assert!(m.as_slice() > key(2000).as_slice() && m.as_slice() < key(2001).as_slice());
    }
    assert!(e.bytes > 0, "the block holding the keys is counted");
}

#[test]
fn the_generation_moves_with_the_segment_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::open(dir.path(), small()).unwrap();
    let g0 = lsm.segments_generation();
    assert_eq!(
        lsm.segments_generation(),
        g0,
        "stable while nothing changes"
    );
    let mut index = 0;
    fill(&mut lsm, 0..100, 20, &mut index);
    let g1 = lsm.segments_generation();
    assert_ne!(g1, g0, "a flush publishes a segment");
    let mut b = WriteBatch::new();
    b.put(key(5), "x");
    lsm.apply(b, (RegionId(1), LogIndex(index + 1))).unwrap();
    assert_eq!(
        lsm.segments_generation(),
        g1,
        "a memtable write is not a segment"
    );
}
