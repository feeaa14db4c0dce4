//! The heartbeat cadence (`due`, `due_reports`), the stats a region
//! heartbeat carries, and the shards' busy time.

use super::*;
use golem_core::region::PeerMeta;
use golem_lsm::RangeEstimate;
use golem_wire::PeerId;

fn report(id: u64, leader: bool) -> RegionReport {
    RegionReport {
        meta: RegionMeta {
            id: RegionId(id),
            start: Vec::new(),
            end: Vec::new(),
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            peers: vec![PeerMeta::new(PeerId(id), StoreId(1), ShardId(0))],
        },
        peer: PeerId(id),
        is_leader: leader,
        term: 5,
        estimate: Some(Arc::new(RangeEstimate {
            bytes: 1000,
            keys: 10,
            middle_key: Some(b"m".to_vec()),
        })),
        load: RegionLoad::default(),
        sampled_keys: Vec::new(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_region_is_reported_by_urgency() {
    let t0 = Instant::now();
    let r = report(1, true);
    assert_eq!(due(None, &r, t0), Some(Due::Changed), "first sight");
    let prev = Reported::of(&r, t0, false);
    assert_eq!(due(Some(&prev), &r, t0 + ms(500)), None, "nothing changed");
    assert_eq!(
        due(Some(&prev), &r, t0 + ms(REGION_HEARTBEAT_MS)),
        Some(Due::Periodic)
    );
    // A new epoch or term: at once.
    let mut moved = r.clone();
    moved.meta.epoch.version += 1;
    assert_eq!(due(Some(&prev), &moved, t0), Some(Due::Changed));
    let mut newer = r.clone();
    newer.term += 1;
    assert_eq!(due(Some(&prev), &newer, t0), Some(Due::Changed));
    // Load or size changes: at the stats pace.
    let mut loaded = r.clone();
    loaded.load.written_keys = 3;
    assert_eq!(due(Some(&prev), &loaded, t0 + ms(500)), None);
    assert_eq!(
        due(Some(&prev), &loaded, t0 + ms(REGION_STATS_HEARTBEAT_MS)),
        Some(Due::Stats)
    );
    let mut grown = r.clone();
    grown.estimate = Some(Arc::new(RangeEstimate {
        bytes: 2000,
        keys: 20,
        middle_key: None,
    }));
    assert_eq!(
        due(Some(&prev), &grown, t0 + ms(REGION_STATS_HEARTBEAT_MS)),
        Some(Due::Stats)
    );
    // An operator in flight: at the operator pace.
    let with_op = Reported::of(&r, t0, true);
    assert_eq!(due(Some(&with_op), &r, t0 + ms(500)), None);
    assert_eq!(
        due(Some(&with_op), &r, t0 + ms(REGION_OPERATOR_HEARTBEAT_MS)),
        Some(Due::Operator)
    );
}

#[test]
fn a_region_with_a_peer_on_a_down_store_is_reported_at_the_operator_pace() {
    let t0 = Instant::now();
    let mut r = report(1, true);
    r.meta
        .peers
        .push(PeerMeta::new(PeerId(2), StoreId(9), ShardId(0)));
    let prev = Reported::of(&r, t0, false);
    let down: HashSet<StoreId> = [StoreId(9)].into();
    let other: HashSet<StoreId> = [StoreId(8)].into();
    let op = ms(REGION_OPERATOR_HEARTBEAT_MS);
    // (evacuating stores, since the last report, due)
    let table = [
        (&down, ms(500), None),
        (&down, op, Some(Due::Repair)),
        (&other, op, None),
        (&other, ms(REGION_HEARTBEAT_MS), Some(Due::Periodic)),
        (&down, ms(REGION_HEARTBEAT_MS), Some(Due::Repair)), // more urgent
    ];
    for (i, (stores, since, want)) in table.into_iter().enumerate() {
        assert_eq!(
            due_or_repair(Some(&prev), &r, t0 + since, stores),
            want,
            "row {i}"
        );
    }
    // A new epoch stays the most urgent.
    let mut moved = r.clone();
    moved.meta.epoch.conf_ver += 1;
    assert_eq!(
        due_or_repair(Some(&prev), &moved, t0 + op, &down),
        Some(Due::Changed)
    );
}

#[test]
fn many_regions_are_capped_per_poll_most_urgent_first() {
    let t0 = Instant::now();
    let regions: Vec<RegionReport> = (1..=1000).map(|i| report(i, i % 10 != 0)).collect();
    let shard = ShardReport {
        shard: ShardId(0),
        regions,
        cpu_ns: 0,
        at: t0,
    };
    let reports = vec![shard];
    let mut reported = HashMap::new();
    // All 900 leaders reported long ago, except region 7 (never) and
    // region 3 (reported recently, with load since).
    let later = t0 + ms(REGION_HEARTBEAT_MS * 2);
    for r in reports[0].regions.iter().filter(|r| r.is_leader) {
        reported.insert(r.meta.id, Reported::of(r, t0, false));
    }
    reported.remove(&RegionId(7));
    let mut recent = Reported::of(
        &reports[0].regions[2],
        later - ms(REGION_STATS_HEARTBEAT_MS),
        false,
    );
    recent.load.read_keys = 1000;
    reported.insert(RegionId(3), recent);
    let due_now = due_reports(&reports, &reported, later, &HashSet::new());
    assert_eq!(due_now.len(), REGION_HEARTBEATS_PER_POLL_MAX);
    assert_eq!(
        due_now[0].1.meta.id,
        RegionId(7),
        "the unreported one first"
    );
    assert_eq!(due_now[1].1.meta.id, RegionId(3), "then changed stats");
    assert!(
        due_now.iter().all(|(_, r)| r.is_leader),
        "followers are never reported"
    );
}

#[test]
fn a_heartbeat_carries_the_load_since_the_last_one() {
    let t0 = Instant::now();
    let mut r = report(1, true);
    r.load = RegionLoad {
        read_bytes: 100,
        read_keys: 10,
        written_bytes: 50,
        written_keys: 5,
    };
    // First report: size and split key, no load (no interval).
    let first = region_stats(&r, None, t0);
    assert_eq!(first.approximate_size_bytes, 1000);
    assert_eq!(first.approximate_keys, 10);
    assert_eq!(first.split_key.as_deref(), Some(&b"m"[..]));
    assert_eq!((first.read_bytes, first.interval_ms), (0, 0));
    let prev = Reported::of(&r, t0, false);
    r.load.read_bytes = 400;
    r.load.written_keys = 7;
    let next = region_stats(&r, Some(&prev), t0 + ms(2000));
    assert_eq!(next.read_bytes, 300);
    assert_eq!(next.read_keys, 0);
    assert_eq!(next.written_keys, 2);
    assert_eq!(next.interval_ms, 2000);
    // A re-created handle restarts its counters: all of it is new.
    r.load = RegionLoad {
        read_bytes: 7,
        ..RegionLoad::default()
    };
    assert_eq!(region_stats(&r, Some(&prev), t0 + ms(1)).read_bytes, 7);
}

#[test]
fn busy_time_is_cpu_over_wall_time() {
    let t0 = Instant::now();
    assert_eq!(busy_permille((0, t0), (250_000_000, t0 + ms(1000))), 250);
    assert_eq!(busy_permille((0, t0), (5_000_000_000, t0 + ms(1000))), 1000);
    assert_eq!(busy_permille((10, t0), (10, t0)), 0);
    assert_eq!(busy_permille((10, t0), (5, t0 + ms(10))), 0);
}
