//! A lagging follower catches up from entries its leader no longer caches:
//! the leader's storage asks for them (`take_fetch_requests`), the test
//! plays the shell and reads them back from the leader's WAL records, and
//! raft-rs sends them (`on_entries_fetched`).

use super::records::decode_entries;
use super::*;
use crate::store::MemStore;
use crate::wal_record::{RecordKind, VecSink, WalSink};
use golem_wire::{PeerId, RegionId, RequestBody, ShardId, StoreId};
use raft::eraftpb::{Entry, Message};
use std::collections::{BTreeMap, HashSet};

const REGION: RegionId = RegionId(9);

struct Member {
    peer: RegionPeer,
    wal: VecSink,
    store: MemStore,
}

struct Cluster {
    members: BTreeMap<u64, Member>,
    /// Peers whose messages (both ways) are dropped.
    cut: HashSet<u64>,
    /// Fetches served, for the assertions.
    fetches: usize,
}

impl Cluster {
    fn new(ids: &[u64]) -> Cluster {
        let peers: Vec<PeerMeta> = ids
            .iter()
            .map(|&i| PeerMeta::new(PeerId(i), StoreId(i), ShardId(0)))
            .collect();
        let meta = RegionMeta::whole_key_space(REGION, peers);
        let members = ids
            .iter()
            .map(|&id| {
                let mut cfg = PeerConfig::new(REGION, PeerId(id));
                cfg.entry_cache_entries_max = 4;
                cfg.log_retain_entries_min = 5;
                let mut wal = VecSink::default();
                wal.append(RecordKind::RegionMeta, REGION, &meta.encode());
                let mut store = MemStore::new();
                let records: Vec<_> = wal
                    .records
                    .iter()
                    .map(|(k, _, p)| (*k, p.clone()))
                    .collect();
                let peer = RegionPeer::recover(cfg, records, &mut store).unwrap();
                (id, Member { peer, wal, store })
            })
            .collect();
        Cluster {
            members,
            cut: HashSet::new(),
            fetches: 0,
        }
    }

    /// Runs Ready passes, delivers messages and serves fetches until
    /// nothing is left to do.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut msgs: Vec<Message> = Vec::new();
            let mut busy = false;
            for m in self.members.values_mut() {
                if let Some(p) = m.peer.collect_ready(&mut m.wal, &mut m.store) {
                    busy = true;
                    let out = m.peer.on_persisted(p, &mut m.store);
                    msgs.extend(out.messages);
                }
                for req in m.peer.take_fetch_requests() {
                    busy = true;
                    self.fetches += 1;
                    let ents = read_back(&m.wal, req.low, req.high);
                    m.peer.on_entries_fetched(req, Ok(ents));
                }
            }
            for msg in msgs {
                busy = true;
                if self.cut.contains(&msg.from) || self.cut.contains(&msg.to) {
                    continue;
                }
                let to = self.members.get_mut(&msg.to).expect("known peer");
                to.peer.step(msg).unwrap();
            }
            if !busy {
                return;
            }
        }
        panic!("the cluster never settles");
    }

    fn leader(&mut self) -> &mut Member {
        self.members
            .values_mut()
            .find(|m| m.peer.is_leader())
            .expect("a leader")
    }

    fn state(&self, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.members[&id]
            .store
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }
}

/// Entries `[low, high)` as the WAL records hold them (the last record
/// written for an index wins), as the shell reads them back.
fn read_back(wal: &VecSink, low: u64, high: u64) -> Vec<Entry> {
    let mut log: BTreeMap<u64, Entry> = BTreeMap::new();
    for (kind, region, payload) in &wal.records {
        if *kind == RecordKind::Entries && *region == REGION {
            let run = decode_entries(payload).unwrap();
            let first = run[0].index;
            log.split_off(&first);
            log.extend(run.into_iter().map(|e| (e.index, e)));
        }
    }
    log.range(low..high).map(|(_, e)| e.clone()).collect()
}

#[test]
fn a_follower_behind_the_entry_cache_catches_up_through_a_fetch() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.members.get_mut(&1).unwrap().peer.campaign();
    c.settle();
    assert!(c.members[&1].peer.is_leader());

    // Peer 3 is cut off while 40 writes commit on 1 and 2.
    c.cut.insert(3);
    for i in 0..40u64 {
        let body = RequestBody::Put {
            key: format!("k{i:02}").into_bytes(),
            value: vec![i as u8],
        };
        c.leader().peer.propose(body, i + 1).unwrap();
        c.settle();
    }
    let leader_last = c.members[&1].peer.last_index().get();
    assert!(c.members[&1].peer.cached_entries() <= 4 + 1);
    assert_eq!(c.state(2).len(), 40);
    assert!(c.state(3).is_empty());

    // Healed: the leader needs entries only its WAL has.
    c.cut.clear();
    for _ in 0..3 {
        c.members.get_mut(&1).unwrap().peer.tick();
        c.members.get_mut(&1).unwrap().peer.tick();
        c.settle();
    }
    assert!(c.fetches > 0, "old entries were fetched from the WAL");
    assert_eq!(c.members[&3].peer.last_index().get(), leader_last);
    assert_eq!(c.state(3), c.state(1), "the follower applied everything");
}

#[test]
fn a_failed_or_bad_fetch_is_asked_again() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.members.get_mut(&1).unwrap().peer.campaign();
    c.settle();
    c.cut.insert(3);
    for i in 0..20u64 {
        let body = RequestBody::Put {
            key: format!("k{i:02}").into_bytes(),
            value: vec![1],
        };
        c.leader().peer.propose(body, i + 1).unwrap();
        c.settle();
    }
    c.cut.clear();
    // The leader probes peer 3; answer its fetches with failures first.
    let mut failed = 0;
    for _ in 0..20 {
        let m = c.members.get_mut(&1).unwrap();
        m.peer.tick();
        for req in m.peer.take_fetch_requests() {
            failed += 1;
            let wrong_start = read_back(&m.wal, req.low + 1, req.high);
            if failed % 2 == 0 {
                m.peer
                    .on_entries_fetched(req, Err("disk read failed".into()));
            } else {
                m.peer.on_entries_fetched(req, Ok(wrong_start));
            }
        }
        // Deliver messages but serve no fetch (settle would): one round.
        let mut msgs = Vec::new();
        for m in c.members.values_mut() {
            if let Some(p) = m.peer.collect_ready(&mut m.wal, &mut m.store) {
                msgs.extend(m.peer.on_persisted(p, &mut m.store).messages);
            }
        }
        for msg in msgs {
            c.members.get_mut(&msg.to).unwrap().peer.step(msg).unwrap();
        }
        if failed >= 2 {
            break;
        }
    }
    assert!(failed >= 2, "the leader asked again after a failed fetch");
    assert!(c.state(3).len() < 20);
    // Then the fetches succeed.
    for _ in 0..5 {
        c.members.get_mut(&1).unwrap().peer.tick();
        c.settle();
    }
    assert_eq!(c.state(3), c.state(1));
}

#[test]
fn read_index_confirms_a_leader_with_a_quorum_only() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.members.get_mut(&1).unwrap().peer.campaign();
    c.settle();
    let leader = c.members.get_mut(&1).unwrap();
    assert!(leader.peer.needs_read_index());
    leader.peer.request_read(7);
    leader.peer.request_read(8);
    c.settle();
    assert_eq!(
        c.members.get_mut(&1).unwrap().peer.take_ready_reads(),
        vec![7, 8]
    );

    // Cut off from both followers: no confirmation, however long it waits.
    c.cut.insert(1);
    c.members.get_mut(&1).unwrap().peer.request_read(9);
    for _ in 0..3 {
        c.settle();
    }
    assert!(c
        .members
        .get_mut(&1)
        .unwrap()
        .peer
        .take_ready_reads()
        .is_empty());

    // Healed: the next round confirms.
    c.cut.clear();
    c.members.get_mut(&1).unwrap().peer.request_read(10);
    c.settle();
    let ready = c.members.get_mut(&1).unwrap().peer.take_ready_reads();
    assert!(ready.contains(&10), "{ready:?}");
}

#[test]
fn a_leader_keeps_the_log_its_followers_have_not_replicated() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.members.get_mut(&1).unwrap().peer.campaign();
    c.settle();
    let put = |i: u64| RequestBody::Put {
        key: vec![b'k', i as u8],
        value: vec![1],
    };
    for i in 0..10u64 {
        c.leader().peer.propose(put(i), i + 1).unwrap();
        c.settle();
    }
    // All caught up: every voter keeps its last 5 applied entries.
    let applied = c.members[&1].peer.applied_index().get();
    assert_eq!(c.members[&1].peer.log_retention_floor(), Some(applied - 5));
    assert_eq!(c.members[&2].peer.log_retention_floor(), Some(applied - 5));

    // Peer 3 is cut off: the leader keeps what it lacks, and one entry
    // more (raft-rs may probe it at its matched index).
    c.cut.insert(3);
    for i in 10..30u64 {
        c.leader().peer.propose(put(i), i + 1).unwrap();
        c.settle();
    }
    let leader = &c.members[&1].peer;
    assert_eq!(leader.log_retention_floor(), Some(applied - 1));
    // A follower keeps only its own minimum.
    let follower_applied = c.members[&2].peer.applied_index().get();
    assert_eq!(
        c.members[&2].peer.log_retention_floor(),
        Some(follower_applied - 5)
    );
}

#[test]
fn leadership_moves_to_an_up_to_date_follower_on_request() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.members.get_mut(&1).unwrap().peer.campaign();
    c.settle();
    c.cut.insert(3);
    c.leader()
        .peer
        .propose(
            RequestBody::Put {
                key: b"k".to_vec(),
                value: vec![1],
            },
            1,
        )
        .unwrap();
    c.settle();
    c.cut.clear();
    assert_eq!(
        c.members.get_mut(&2).unwrap().peer.transfer_leadership(),
        None
    );
    let to = c.members.get_mut(&1).unwrap().peer.transfer_leadership();
    assert_eq!(to, Some(PeerId(2)), "peer 2 has the whole log, peer 3 not");
    c.settle();
    assert!(!c.members[&1].peer.is_leader());
    assert!(c.members[&2].peer.is_leader());
}
