//! Table-driven tests of the state machine and a property test of the
//! routing table.

use super::*;
use golem_wire::pd::{Peer, PeerRole, Region, RegionStats, Store};
use golem_wire::{PeerId, RegionEpoch, ShardId};

fn store(id: u64, addr: &str) -> Store {
    Store {
        id: StoreId(id),
        addr: addr.into(),
        shard_count: 2,
    }
}

fn peer(id: u64, store: u64) -> Peer {
    Peer {
        id: PeerId(id),
        store: StoreId(store),
        shard: ShardId(0),
        role: PeerRole::Voter,
    }
}

fn region(id: u64, start: &[u8], end: &[u8], conf_ver: u64, version: u64) -> Region {
    Region {
        id: RegionId(id),
        start: start.to_vec(),
        end: end.to_vec(),
        epoch: RegionEpoch { conf_ver, version },
        peers: vec![peer(id * 10, 1)],
    }
}

fn hb(r: Region, term: u64) -> PdCommand {
    let leader = r.peers[0].id;
    PdCommand::RegionHeartbeat {
        heartbeat: (&RegionHeartbeat {
            region: r,
            leader,
            term,
            stats: RegionStats::default(),
        })
            .into(),
    }
}

fn bootstrapped() -> PdState {
    let mut s = PdState::new(StoreTimeouts::default());
    s.apply(&PdCommand::Bootstrap {
        cluster: ClusterId(42),
        store: store(1, "127.0.0.1:7000"),
        region: region(2, b"", b"", 1, 1),
    })
    .unwrap();
    s
}

/// One row: a command applied to a fresh bootstrapped state after `setup`,
/// and the expected error code (None: success).
struct Case {
    name: &'static str,
    setup: Vec<PdCommand>,
    cmd: PdCommand,
    want_code: Option<u16>,
}

#[test]
fn commands_table() {
    let cases = vec![
        Case {
            name: "bootstrap twice",
            setup: vec![],
            cmd: PdCommand::Bootstrap {
                cluster: ClusterId(7),
                store: store(1, "127.0.0.1:7000"),
                region: region(2, b"", b"", 1, 1),
            },
            want_code: Some(302),
        },
        Case {
            name: "put store, same address again is idempotent",
            setup: vec![PdCommand::PutStore {
                store: store(3, "127.0.0.1:7100"),
            }],
            cmd: PdCommand::PutStore {
                store: store(3, "127.0.0.1:7100"),
            },
            want_code: None,
        },
        Case {
            name: "duplicate store id with another address",
            setup: vec![],
            cmd: PdCommand::PutStore {
                store: store(1, "127.0.0.1:9999"),
            },
            want_code: Some(305),
        },
        Case {
            name: "another store id on a used address",
            setup: vec![],
            cmd: PdCommand::PutStore {
                store: store(5, "127.0.0.1:7000"),
            },
            want_code: Some(305),
        },
        Case {
            name: "tombstone cannot come back",
            setup: vec![PdCommand::SetStoreState {
                store: StoreId(1),
                state: StoreState::Tombstone,
            }],
            cmd: PdCommand::SetStoreState {
                store: StoreId(1),
                state: StoreState::Up,
            },
            want_code: Some(307),
        },
        Case {
            name: "state of an unknown store",
            setup: vec![],
            cmd: PdCommand::SetStoreState {
                store: StoreId(99),
                state: StoreState::Offline,
            },
            want_code: Some(303),
        },
        Case {
            name: "split is accepted",
            setup: vec![],
            cmd: hb(region(2, b"", b"m", 1, 2), 1),
            want_code: None,
        },
        Case {
            name: "stale version after a split",
            setup: vec![hb(region(2, b"", b"m", 1, 2), 1)],
            cmd: hb(region(2, b"", b"", 1, 1), 1),
            want_code: Some(306),
        },
        Case {
            name: "stale conf_ver",
            setup: vec![hb(region(2, b"", b"", 3, 1), 1)],
            cmd: hb(region(2, b"", b"", 2, 1), 1),
            want_code: Some(306),
        },
        Case {
            name: "same epoch, other range",
            setup: vec![],
            cmd: hb(region(2, b"a", b"", 1, 1), 1),
            want_code: Some(306),
        },
        Case {
            name: "new region overlapping a newer one",
            setup: vec![hb(region(2, b"", b"m", 1, 5), 1)],
            cmd: hb(region(9, b"k", b"z", 1, 3), 1),
            want_code: Some(306),
        },
    ];
    for c in cases {
        let mut s = bootstrapped();
        for cmd in &c.setup {
            s.apply(cmd)
                .unwrap_or_else(|e| panic!("{}: setup: {e}", c.name));
        }
        let before = s.clone();
        let pre = s.precheck(&c.cmd);
        let got = s.apply(&c.cmd);
        assert_eq!(
            got.as_ref().err().map(|e| e.code()),
            c.want_code,
            "{}: {got:?}",
            c.name
        );
        assert_eq!(pre.is_err(), c.want_code.is_some(), "{}: precheck", c.name);
        if c.want_code.is_some() {
            assert_eq!(s, before, "{}: a refused command changed the state", c.name);
        }
        s.routing().check_invariants().unwrap();
    }
}

#[test]
fn not_bootstrapped_is_typed() {
    let mut s = PdState::new(StoreTimeouts::default());
    assert_eq!(s.get_region(b"a").unwrap_err().code(), 301);
    assert_eq!(
        s.apply(&PdCommand::PutStore {
            store: store(1, "x:1")
        })
        .unwrap_err()
        .code(),
        301
    );
    // Ids may be allocated before bootstrap (the first node needs them).
    assert!(matches!(
        s.apply(&PdCommand::AllocIds { count: 3 }),
        Ok(Some(PdResponseBody::AllocIds { first: 1, count: 3 }))
    ));
}

#[test]
fn bootstrap_marks_its_ids_used() {
    let mut s = bootstrapped();
    // Region 2, peer 20, store 1 exist: fresh ids start above all of them.
    let Ok(Some(PdResponseBody::AllocIds { first, .. })) =
        s.apply(&PdCommand::AllocIds { count: 1 })
    else {
        panic!()
    };
    assert_eq!(first, 21);
}

#[test]
fn split_then_lookup() {
    let mut s = bootstrapped();
    s.apply(&hb(region(2, b"", b"m", 1, 2), 1)).unwrap();
    s.apply(&hb(region(3, b"m", b"", 1, 2), 1)).unwrap();
    assert_eq!(s.get_region(b"a").unwrap().unwrap().region.id, RegionId(2));
    assert_eq!(s.get_region(b"m").unwrap().unwrap().region.id, RegionId(3));
    assert_eq!(s.get_region(b"zz").unwrap().unwrap().region.id, RegionId(3));
    let all = s.scan_regions(b"", b"", 10).unwrap();
    assert_eq!(all.len(), 2);
    let from_b = s.scan_regions(b"b", b"c", 10).unwrap();
    assert_eq!(from_b.len(), 1);
    assert_eq!(s.scan_regions(b"", b"", 1).unwrap().len(), 1);
    // The byte cap cuts a scan but always returns at least one region.
    assert_eq!(s.routing().scan(b"", b"", 10, 1).len(), 1);
    assert_eq!(s.get_region_by_id(RegionId(9)).unwrap_err().code(), 304);
}

#[test]
fn split_reported_right_half_first() {
    // The new region's leader reports before the parent's: the parent's
    // old range is dropped, then its shrunk range at version 2 comes back,
    // and a late report of the old range is refused.
    let mut s = bootstrapped();
    s.apply(&hb(region(3, b"m", b"", 1, 2), 1)).unwrap();
    assert_eq!(s.get_region(b"z").unwrap().unwrap().region.id, RegionId(3));
    assert!(s.get_region(b"a").unwrap().is_none());
    assert_eq!(
        s.apply(&hb(region(2, b"", b"", 1, 1), 1))
            .unwrap_err()
            .code(),
        306
    );
    s.apply(&hb(region(2, b"", b"m", 1, 2), 1)).unwrap();
    assert_eq!(s.get_region(b"a").unwrap().unwrap().region.id, RegionId(2));
    assert_eq!(s.scan_regions(b"", b"", 10).unwrap().len(), 2);
    s.routing().check_invariants().unwrap();
}

#[test]
fn leader_from_older_term_does_not_win() {
    let mut s = bootstrapped();
    let mut r = region(2, b"", b"", 1, 1);
    r.peers.push(peer(21, 2));
    s.apply(&hb(r.clone(), 1)).unwrap();
    let mut newer = RegionHeartbeat {
        region: r.clone(),
        leader: PeerId(21),
        term: 5,
        stats: RegionStats::default(),
    };
    s.apply(&PdCommand::RegionHeartbeat {
        heartbeat: (&newer).into(),
    })
    .unwrap();
    newer.leader = PeerId(20);
    newer.term = 4;
    assert_eq!(
        s.region_heartbeat_local(&newer).unwrap(),
        HeartbeatEffect::StatsOnly
    );
    s.apply(&PdCommand::RegionHeartbeat {
        heartbeat: (&newer).into(),
    })
    .unwrap();
    let route = s.get_region_by_id(RegionId(2)).unwrap();
    assert_eq!(route.leader.unwrap().id, PeerId(21));
    assert_eq!(route.term, 5);
}

#[test]
fn store_states_follow_heartbeat_age() {
    let mut s = bootstrapped();
    let t = StoreTimeouts::default();
    assert_eq!(
        s.get_store(StoreId(1), 1000).unwrap().state,
        StoreState::Disconnected
    );
    s.store_heartbeat(StoreId(1), StoreStats::default(), 1000)
        .unwrap();
    assert_eq!(s.get_store(StoreId(1), 1000).unwrap().state, StoreState::Up);
    let later = 1000 + t.disconnected_after_ms;
    assert_eq!(
        s.get_store(StoreId(1), later).unwrap().state,
        StoreState::Disconnected
    );
    let much_later = 1000 + t.down_after_ms;
    assert_eq!(
        s.get_store(StoreId(1), much_later).unwrap().state,
        StoreState::Down
    );
    assert_eq!(
        s.store_heartbeat(StoreId(9), StoreStats::default(), 1)
            .unwrap_err()
            .code(),
        303
    );
}

#[test]
fn snapshot_round_trips_and_rejects_garbage() {
    let mut s = bootstrapped();
    s.apply(&hb(region(2, b"", b"m", 1, 2), 1)).unwrap();
    s.apply(&hb(region(3, b"m", b"", 1, 2), 1)).unwrap();
    s.apply(&PdCommand::AllocIds { count: 100 }).unwrap();
    s.apply(&PdCommand::TsoWindow { end_ms: 12345 }).unwrap();
    let bytes = s.encode_snapshot();
    let back = PdState::decode_snapshot(&bytes, StoreTimeouts::default()).unwrap();
    assert_eq!(back, s);
    assert_eq!(
        PdState::decode_snapshot(&[], StoreTimeouts::default()),
        Err(SnapshotError::Empty)
    );
    assert!(matches!(
        PdState::decode_snapshot(&[9, 1, 2], StoreTimeouts::default()),
        Err(SnapshotError::Version(9))
    ));
    for cut in 1..bytes.len() {
        assert!(PdState::decode_snapshot(&bytes[..cut], StoreTimeouts::default()).is_err());
    }
}

#[test]
fn command_codec_rejects_garbage() {
    let cmd = hb(region(2, b"a", b"b", 1, 1), 3);
    assert_eq!(PdCommand::decode(&cmd.encode()).unwrap(), cmd);
    assert_eq!(PdCommand::decode(&[]), Err(CommandError::Empty));
    assert_eq!(PdCommand::decode(&[0]), Err(CommandError::Version(0)));
    let bytes = cmd.encode();
    // Truncations never panic (a prefix may happen to be a valid archive).
    for cut in 1..bytes.len() {
        let _ = PdCommand::decode(&bytes[..cut]);
    }
}

#[test]
fn tso_window_never_goes_back() {
    let mut s = bootstrapped();
    s.apply(&PdCommand::TsoWindow { end_ms: 100 }).unwrap();
    s.apply(&PdCommand::TsoWindow { end_ms: 50 }).unwrap();
    assert_eq!(s.tso_window_end_ms(), 100);
}

mod routing_property {
    //! Random region histories (splits, merges, conf changes) reported in
    //! random order, with stale and duplicate reports: the table never
    //! overlaps, a region's epoch never goes back, and once every current
    //! region has been reported the table is exactly the truth.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Step {
        Split { pick: usize, key: u8 },
        Merge { pick: usize },
        ConfChange { pick: usize },
        Report { pick: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (any::<usize>(), 1u8..255).prop_map(|(pick, key)| Step::Split { pick, key }),
            any::<usize>().prop_map(|pick| Step::Merge { pick }),
            any::<usize>().prop_map(|pick| Step::ConfChange { pick }),
            any::<usize>().prop_map(|pick| Step::Report { pick }),
            any::<usize>().prop_map(|pick| Step::Report { pick }),
            any::<usize>().prop_map(|pick| Step::Report { pick }),
        ]
    }

    fn report(s: &mut PdState, r: &Region) -> Result<(), GolemError> {
        let cmd = hb(r.clone(), 1);
        s.apply(&cmd).map(|_| ())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn table_never_overlaps_and_newest_wins(steps in proptest::collection::vec(step(), 1..120)) {
            let mut s = bootstrapped();
            // The truth: current regions by start key; and every version ever seen.
            let mut truth: BTreeMap<Vec<u8>, Region> = BTreeMap::new();
            truth.insert(vec![], region(2, b"", b"", 1, 1));
            let mut history: Vec<Region> = vec![region(2, b"", b"", 1, 1)];
            let mut next_id = 100u64;
            let mut seen_epoch: BTreeMap<RegionId, RegionEpoch> = BTreeMap::new();
            for st in steps {
                let regions: Vec<Region> = truth.values().cloned().collect();
                match st {
                    Step::Split { pick, key } => {
                        let r = &regions[pick % regions.len()];
                        let k = vec![key];
                        if k <= r.start || (!r.end.is_empty() && k >= r.end) { continue; }
                        let v = r.epoch.version + 1;
                        let left = Region { end: k.clone(), epoch: RegionEpoch { version: v, ..r.epoch }, ..r.clone() };
                        let right = Region { id: RegionId(next_id), start: k.clone(), epoch: RegionEpoch { version: v, ..r.epoch }, peers: vec![peer(next_id * 10, 1)], ..r.clone() };
                        next_id += 1;
                        truth.insert(left.start.clone(), left.clone());
                        truth.insert(right.start.clone(), right.clone());
                        history.push(left);
                        history.push(right);
                    }
                    Step::Merge { pick } => {
                        if regions.len() < 2 { continue; }
                        let i = pick % (regions.len() - 1);
                        let (l, r) = (&regions[i], &regions[i + 1]);
                        let merged = Region {
                            end: r.end.clone(),
                            epoch: RegionEpoch {
                                version: l.epoch.version.max(r.epoch.version) + 1,
                                conf_ver: l.epoch.conf_ver.max(r.epoch.conf_ver),
                            },
                            ..l.clone()
                        };
                        truth.remove(&r.start);
                        truth.insert(merged.start.clone(), merged.clone());
                        history.push(merged);
                    }
                    Step::ConfChange { pick } => {
                        let r = &regions[pick % regions.len()];
                        let changed = Region { epoch: RegionEpoch { conf_ver: r.epoch.conf_ver + 1, ..r.epoch }, ..r.clone() };
                        truth.insert(changed.start.clone(), changed.clone());
                        history.push(changed);
                    }
                    Step::Report { pick } => {
                        let r = history[pick % history.len()].clone();
                        let _ = report(&mut s, &r);
                    }
                }
                s.routing().check_invariants().map_err(TestCaseError::fail)?;
                for route in s.routing().iter() {
                    let e = route.region.epoch;
                    if let Some(prev) = seen_epoch.insert(route.region.id, e) {
                        prop_assert!(prev.version <= e.version && prev.conf_ver <= e.conf_ver,
                            "epoch of {} went back: {:?} -> {:?}", route.region.id, prev, e);
                    }
                }
            }
            // Report every current region: the table must become the truth.
            for r in truth.values() {
                report(&mut s, r).map_err(|e| TestCaseError::fail(format!("current region refused: {e}")))?;
            }
            s.routing().check_invariants().map_err(TestCaseError::fail)?;
            let table: Vec<Region> = s.scan_regions(b"", b"", u32::MAX).unwrap().into_iter().map(|r| r.region).collect();
            let want: Vec<Region> = truth.values().cloned().collect();
            prop_assert_eq!(table, want);
        }
    }
}

/// Leaders come and go (with skewed clocks) and members restart from
/// snapshots: every id and every timestamp handed out is above all earlier
/// ones. Windows and ids only reach the state through applied commands, as
/// in the server.
#[test]
fn ids_and_timestamps_only_grow_across_leader_changes_and_restarts() {
    use rand::{Rng, SeedableRng};
    for seed in 0..20 {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let mut state = bootstrapped();
        let mut clock = 1_000_000u64;
        let mut oracle = TsoOracle::new(50);
        let mut last_ts = 0u64;
        let mut last_id = 0u64;
        let mut served = 0;
        let start = |o: &mut TsoOracle, s: &mut PdState, now: u64| {
            let end_ms = o.start(s.tso_window_end_ms(), now);
            s.apply(&PdCommand::TsoWindow { end_ms }).unwrap();
            o.on_window_committed(s.tso_window_end_ms());
        };
        start(&mut oracle, &mut state, clock);
        for _ in 0..5_000 {
            clock += rng.gen_range(0..5);
            match rng.gen_range(0..100) {
                0..=2 => {
                    // A new leader whose clock may be far behind.
                    let skew = rng.gen_range(0..10_000);
                    oracle = TsoOracle::new(50);
                    start(&mut oracle, &mut state, clock.saturating_sub(skew));
                }
                3..=4 => {
                    // Every member restarts from a snapshot of the applied state.
                    state = PdState::decode_snapshot(
                        &state.encode_snapshot(),
                        StoreTimeouts::default(),
                    )
                    .unwrap();
                    oracle = TsoOracle::new(50);
                    start(&mut oracle, &mut state, clock);
                }
                5..=40 => {
                    let count = rng.gen_range(1..100);
                    let Ok(Some(PdResponseBody::AllocIds { first, count })) =
                        state.apply(&PdCommand::AllocIds { count })
                    else {
                        panic!("alloc failed")
                    };
                    assert!(first > last_id, "seed {seed}: id {first} after {last_id}");
                    last_id = first + u64::from(count) - 1;
                }
                _ => {
                    if let Some(end_ms) = oracle.extension_due(clock) {
                        state.apply(&PdCommand::TsoWindow { end_ms }).unwrap();
                        oracle.on_window_committed(state.tso_window_end_ms());
                    }
                    if let Ok(t) = oracle.next(rng.gen_range(1..1000), clock) {
                        assert!(t.0 > last_ts, "seed {seed}: timestamp went back");
                        assert!(t.physical_ms() < state.tso_window_end_ms());
                        last_ts = t.0;
                        served += 1;
                    }
                }
            }
        }
        assert!(
            served > 1000,
            "seed {seed}: only {served} timestamps served"
        );
    }
}
