//! Table-driven tests of cluster formation: which joins bootstrap the
//! cluster, with which first region, and what every joiner is told.

use super::*;
use crate::state::{PdCommand, StoreTimeouts};

fn store(id: u64) -> Store {
    Store {
        id: StoreId(id),
        addr: format!("127.0.0.1:{}", 7000 + id * 10),
        shard_count: 2,
    }
}

/// One join as the leader runs it: answered from the state, or proposed
/// (cluster id 42) and applied. Also checks that precheck agrees.
fn join(s: &mut PdState, st: &Store, n: u8) -> Result<PdResponseBody, GolemError> {
    match s.join_step(st, n)? {
        JoinStep::Reply(answer) => Ok(answer),
        JoinStep::Propose => {
            let cmd = PdCommand::JoinCluster {
                store: st.clone(),
                cluster: ClusterId(42),
                initial_replicas: n,
            };
            s.precheck(&cmd)?;
            Ok(s.apply(&cmd)?.expect("JoinCluster answers"))
        }
    }
}

/// What one joiner should be told.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    /// No cluster yet; `stores` candidates known.
    Wait { stores: u32 },
    /// Cluster exists; the store holds a peer of the first region, whose
    /// voters are on these stores (in order).
    Hosts { peers_on: Vec<u64> },
    /// Cluster exists; the store hosts nothing.
    Registered,
    /// Refused with this error code.
    Refused(u16),
}

fn classify(r: Result<PdResponseBody, GolemError>, me: u64) -> Want {
    match r {
        Err(e) => Want::Refused(e.code()),
        Ok(PdResponseBody::JoinCluster {
            cluster: None,
            region,
            stores,
            ..
        }) => {
            assert!(region.is_none(), "a region before the cluster");
            Want::Wait { stores }
        }
        Ok(PdResponseBody::JoinCluster {
            cluster: Some(c),
            region,
            ..
        }) => {
            assert_eq!(c, ClusterId(42));
            match region {
                None => Want::Registered,
                Some(r) => {
                    assert!(r.peers.iter().any(|p| p.store.get() == me));
                    Want::Hosts {
                        peers_on: r.peers.iter().map(|p| p.store.get()).collect(),
                    }
                }
            }
        }
        Ok(other) => panic!("not a JoinCluster answer: {other:?}"),
    }
}

struct Case {
    name: &'static str,
    /// `--initial-replicas` of the leader.
    n: u8,
    /// Stores joining in this order (by id), and what each is told.
    joins: Vec<(Store, Want)>,
}

fn hosts(peers_on: &[u64]) -> Want {
    Want::Hosts {
        peers_on: peers_on.to_vec(),
    }
}

#[test]
fn joins_table() {
    let cases = vec![
        Case {
            name: "one replica: the first store bootstraps at once",
            n: 1,
            joins: vec![
                (store(1), hosts(&[1])),
                (store(2), Want::Registered),
                (store(1), hosts(&[1])),
            ],
        },
        Case {
            name: "three replicas: two stores wait, the third bootstraps",
            n: 3,
            joins: vec![
                (store(1), Want::Wait { stores: 1 }),
                (store(2), Want::Wait { stores: 2 }),
                (store(3), hosts(&[1, 2, 3])),
                // The earlier candidates ask again and learn their peer.
                (store(1), hosts(&[1, 2, 3])),
                (store(2), hosts(&[1, 2, 3])),
            ],
        },
        Case {
            name: "duplicates are one candidate",
            n: 3,
            joins: vec![
                (store(1), Want::Wait { stores: 1 }),
                (store(1), Want::Wait { stores: 1 }),
                (store(2), Want::Wait { stores: 2 }),
                (store(2), Want::Wait { stores: 2 }),
                (store(1), Want::Wait { stores: 2 }),
                (store(3), hosts(&[1, 2, 3])),
                (store(3), hosts(&[1, 2, 3])),
            ],
        },
        Case {
            name: "a fourth store after the bootstrap is registered",
            n: 3,
            joins: vec![
                (store(1), Want::Wait { stores: 1 }),
                (store(2), Want::Wait { stores: 2 }),
                (store(3), hosts(&[1, 2, 3])),
                (store(4), Want::Registered),
                (store(4), Want::Registered),
            ],
        },
        Case {
            name: "voters are the first candidates by store id",
            n: 2,
            joins: vec![
                (store(9), Want::Wait { stores: 1 }),
                (store(5), hosts(&[5, 9])),
                (store(7), Want::Registered),
                (store(9), hosts(&[5, 9])),
            ],
        },
        Case {
            name: "another id at a candidate's address is refused",
            n: 3,
            joins: vec![
                (store(1), Want::Wait { stores: 1 }),
                (
                    Store {
                        addr: store(1).addr,
                        ..store(2)
                    },
                    Want::Refused(305),
                ),
                (
                    Store {
                        addr: "127.0.0.1:1".into(),
                        ..store(1)
                    },
                    Want::Refused(305),
                ),
                (store(2), Want::Wait { stores: 2 }),
            ],
        },
        Case {
            name: "five replicas",
            n: 5,
            joins: (1..=4)
                .map(|i| (store(i), Want::Wait { stores: i as u32 }))
                .chain([(store(5), hosts(&[1, 2, 3, 4, 5]))])
                .collect(),
        },
    ];
    for c in cases {
        let mut s = PdState::new(StoreTimeouts::default());
        for (i, (st, want)) in c.joins.iter().enumerate() {
            let before = s.clone();
            let got = classify(join(&mut s, st, c.n), st.id.get());
            assert_eq!(&got, want, "{}: join #{i} of store {}", c.name, st.id);
            if matches!(want, Want::Refused(_)) {
                assert_eq!(s, before, "{}: a refused join changed the state", c.name);
            }
            s.routing().check_invariants().unwrap();
        }
    }
}

#[test]
fn the_first_region_takes_fresh_ids_when_it_applies() {
    let mut s = PdState::new(StoreTimeouts::default());
    // Store ids come from the allocator, as nodes get them.
    let a = s.apply(&PdCommand::AllocIds { count: 2 }).unwrap();
    assert!(matches!(a, Some(PdResponseBody::AllocIds { first: 1, .. })));
    join(&mut s, &store(1), 2).unwrap();
    // Ids handed out between the proposal and its apply are not reused.
    s.apply(&PdCommand::AllocIds { count: 5 }).unwrap(); // 3..=7
    let Ok(PdResponseBody::JoinCluster {
        region: Some(r), ..
    }) = join(&mut s, &store(2), 2)
    else {
        panic!("no region");
    };
    assert_eq!(r.id, RegionId(8));
    assert_eq!(
        r.peers.iter().map(|p| p.id.get()).collect::<Vec<_>>(),
        [9, 10]
    );
    assert!(r
        .peers
        .iter()
        .all(|p| p.shard == ShardId(0) && p.role == PeerRole::Voter));
    assert_eq!(
        r.epoch,
        RegionEpoch {
            conf_ver: 1,
            version: 1
        }
    );
    assert!(r.start.is_empty() && r.end.is_empty());
    assert_eq!(s.id_next(), 11);
    // Several voters: no leader until one reports; stores are registered.
    let route = s.get_region(b"k").unwrap().unwrap();
    assert_eq!(route.leader, None);
    assert_eq!(s.get_stores(false, 0).unwrap().len(), 2);
}

#[test]
fn one_replica_region_is_led_by_its_voter_at_once() {
    let mut s = PdState::new(StoreTimeouts::default());
    join(&mut s, &store(3), 1).unwrap();
    let route = s.get_region(b"").unwrap().unwrap();
    assert_eq!(route.leader.map(|p| p.store), Some(StoreId(3)));
    assert_eq!(route.region.peers.len(), 1);
}

#[test]
fn join_step_proposes_only_what_changes_something() {
    let mut s = PdState::new(StoreTimeouts::default());
    assert_eq!(s.join_step(&store(1), 3), Ok(JoinStep::Propose));
    join(&mut s, &store(1), 3).unwrap();
    join(&mut s, &store(2), 3).unwrap();
    // Known and nothing due: answered from the state.
    assert!(matches!(s.join_step(&store(1), 3), Ok(JoinStep::Reply(_))));
    // A new shard count is a change.
    let more_shards = Store {
        shard_count: 4,
        ..store(1)
    };
    assert_eq!(s.join_step(&more_shards, 3), Ok(JoinStep::Propose));
    // A leader configured with fewer replicas bootstraps on the next
    // poll of a known candidate.
    assert_eq!(s.join_step(&store(1), 2), Ok(JoinStep::Propose));
    let got = classify(join(&mut s, &store(1), 2), 1);
    assert_eq!(got, hosts(&[1, 2]));
    // Bad replica counts are refused before anything else.
    assert!(s.join_step(&store(1), 0).is_err());
    assert!(s.join_step(&store(1), INITIAL_REPLICAS_MAX + 1).is_err());
}

#[test]
fn refused_commands_change_nothing() {
    let mut s = PdState::new(StoreTimeouts::default());
    join(&mut s, &store(1), 3).unwrap();
    let before = s.clone();
    for cmd in [
        PdCommand::JoinCluster {
            store: store(2),
            cluster: ClusterId(0),
            initial_replicas: 3,
        },
        PdCommand::JoinCluster {
            store: store(2),
            cluster: ClusterId(1),
            initial_replicas: 0,
        },
    ] {
        assert!(s.precheck(&cmd).is_err());
        assert!(s.apply(&cmd).is_err());
        assert_eq!(s, before);
    }
}

#[test]
fn candidates_survive_a_snapshot() {
    let mut s = PdState::new(StoreTimeouts::default());
    join(&mut s, &store(1), 2).unwrap();
    let mut r = PdState::decode_snapshot(&s.encode_snapshot(), StoreTimeouts::default()).unwrap();
    assert_eq!(r, s);
    assert_eq!(classify(join(&mut r, &store(2), 2), 2), hosts(&[1, 2]));
}

#[test]
fn first_region_shape() {
    assert_eq!(first_region(&[], 1), None);
    let r = first_region(&[StoreId(4), StoreId(2)], 10).unwrap();
    r.validate().unwrap();
    assert_eq!(r.id, RegionId(10));
    assert_eq!(
        r.peers
            .iter()
            .map(|p| (p.id.get(), p.store.get()))
            .collect::<Vec<_>>(),
        [(11, 4), (12, 2)]
    );
}
