//! Region merges in a simulated three-store cluster, driven the way the
//! shell drives them (`engine/src/shard/merge.rs`).
//!
//! Each store has one WAL (`VecSink`), one store (`MemStore`) shared by its
//! regions, and its region peers. The test plays the shell: it routes raft
//! messages (optionally dropping one region's messages to one store), tells
//! a target waiting on a `Commit` how far its local source has applied
//! (helping the source catch up first), and destroys a merged source (its
//! store flushed, then a `Tombstone` record; its data stays).
//!
//! The parent region (7, peers 1..=3) is split at "m" first: the source is
//! the right half (9, `["m", "")`, peers 11..=13), the target the left half
//! (7, `["", "m")`).

use super::merge::{MergeState, MergeWait};
use super::*;
use crate::store::MemStore;
use crate::wal_record::{RecordKind, VecSink, WalSink};
use golem_wire::{GolemError, PeerId, RegionId, RequestBody, ResponseBody, ShardId, StoreId};
use raft::eraftpb::Message;
use std::collections::BTreeMap;

const TARGET: RegionId = RegionId(7);
const SOURCE: RegionId = RegionId(9);

type Answer = Result<ResponseBody, GolemError>;

fn cfg(region: RegionId, id: u64) -> PeerConfig {
    let mut cfg = PeerConfig::new(region, PeerId(id));
    cfg.election_ticks = 10 + (id % 10) as usize;
    cfg.election_jitter_ticks = 1;
    cfg.entry_cache_entries_max = 16;
    cfg.log_retain_entries_min = 8;
    cfg
}

fn put(key: &str, value: &str) -> RequestBody {
    RequestBody::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

fn get(key: &str) -> RequestBody {
    RequestBody::Get {
        key: key.as_bytes().to_vec(),
    }
}

fn value(v: &str) -> Answer {
    Ok(ResponseBody::Get {
        value: Some(v.as_bytes().to_vec()),
    })
}

struct Node {
    store: MemStore,
    wal: VecSink,
    peers: BTreeMap<RegionId, RegionPeer>,
}

impl Node {
    fn records(&self, region: RegionId) -> Vec<(RecordKind, Vec<u8>)> {
        self.wal
            .records
            .iter()
            .filter(|(_, r, _)| *r == region)
            .map(|(k, _, p)| (*k, p.clone()))
            .collect()
    }

    /// The shell's side of a target's paused `Commit`.
    fn report_sources(&mut self) {
        let waits: Vec<(RegionId, MergeWait)> = self
            .peers
            .iter()
            .filter_map(|(&id, p)| p.merge_wait().map(|w| (id, w)))
            .collect();
        for (target, w) in waits {
            let applied = match self.peers.get_mut(&w.source) {
                Some(source) => {
                    source.catch_up_for_merge(w.prepare_index, w.prepare_term);
                    source.applied_index().get()
                }
                None => u64::MAX,
            };
            let t = self.peers.get_mut(&target).unwrap();
            t.on_merge_source_applied(w.source, applied);
        }
    }
}

struct Cluster {
    nodes: BTreeMap<u64, Node>,
    answers: BTreeMap<ProposalToken, Answer>,
    next_token: ProposalToken,
    /// Messages of this region to this store are dropped.
    cut: Option<(RegionId, u64)>,
    /// Stores that leave merged sources in place (a crash before the
    /// tombstone).
    keep_merged: Vec<u64>,
}

impl Cluster {
    /// The parent on stores 1..=3 split at "m", keys in both halves.
    fn new() -> Cluster {
        let meta = RegionMeta::whole_key_space(
            TARGET,
            (1..=3)
                .map(|s| PeerMeta::new(PeerId(s), StoreId(s), ShardId(0)))
                .collect(),
        );
        let nodes = (1..=3)
            .map(|s| {
                let mut wal = VecSink::default();
                let peer = RegionPeer::bootstrap(cfg(TARGET, s), meta.clone(), &mut wal).unwrap();
                let node = Node {
                    store: MemStore::new(),
                    wal,
                    peers: BTreeMap::from([(TARGET, peer)]),
                };
                (s, node)
            })
            .collect();
        let mut c = Cluster {
            nodes,
            answers: BTreeMap::new(),
            next_token: 1,
            cut: None,
            keep_merged: Vec::new(),
        };
        c.peer(1, TARGET).campaign();
        c.settle();
        let split = RequestBody::Split {
            key: b"a".to_vec(),
            split_key: b"m".to_vec(),
            new_region: SOURCE,
            new_peers: vec![PeerId(11), PeerId(12), PeerId(13)],
        };
        assert!(matches!(
            c.request(TARGET, split),
            Ok(ResponseBody::Split { .. })
        ));
        for (region, k, v) in [(TARGET, "b", "1"), (SOURCE, "p", "2"), (SOURCE, "x", "3")] {
            assert_eq!(c.request(region, put(k, v)), Ok(ResponseBody::Put));
        }
        c.tick(3);
        c
    }

    fn peer(&mut self, store: u64, region: RegionId) -> &mut RegionPeer {
        self.nodes
            .get_mut(&store)
            .and_then(|n| n.peers.get_mut(&region))
            .expect("a hosted region")
    }

    fn leader(&self, region: RegionId) -> u64 {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.peers.get(&region).is_some_and(RegionPeer::is_leader))
            .map(|(&s, _)| s)
            .collect();
        assert_eq!(leaders.len(), 1, "one leader of {region}: {leaders:?}");
        leaders[0]
    }

    fn round(&mut self) -> bool {
        let mut busy = false;
        let mut msgs: Vec<(RegionMeta, Message)> = Vec::new();
        for (&s, node) in self.nodes.iter_mut() {
            node.report_sources();
            let mut created = Vec::new();
            let mut merged = Vec::new();
            for (_, peer) in node.peers.iter_mut() {
                let Some(p) = peer.collect_ready(&mut node.wal, &mut node.store) else {
                    continue;
                };
                busy = true;
                let out = peer.on_persisted(p, &mut node.store);
                for (token, answer) in out.finished {
                    assert!(self.answers.insert(token, answer).is_none());
                }
                let meta = peer.meta().clone();
                msgs.extend(out.messages.into_iter().map(|m| (meta.clone(), m)));
                let leads = peer.is_leader();
                created.extend(peer.take_split_regions().into_iter().map(|m| (m, leads)));
                merged.extend(peer.take_merged_sources());
            }
            for (meta, leads) in created {
                if node.peers.contains_key(&meta.id) {
                    continue;
                }
                let me = meta.peer_on(StoreId(s)).expect("a replica here").id;
                let mut peer =
                    RegionPeer::bootstrap(cfg(meta.id, me.get()), meta.clone(), &mut node.wal)
                        .unwrap();
                if leads {
                    peer.campaign();
                }
                node.peers.insert(meta.id, peer);
                busy = true;
            }
            for source in merged {
                let Some(peer) = node.peers.get_mut(&source) else {
                    continue;
                };
                peer.mark_merged();
                if !self.keep_merged.contains(&s) {
                    // The shell: data durable first, then the tombstone.
                    node.store.flush();
                    node.wal.append(RecordKind::Tombstone, source, &[]);
                    node.peers.remove(&source);
                }
            }
        }
        for (meta, msg) in msgs {
            let to = meta.peer(PeerId(msg.to)).expect("a member").store.get();
            if self.cut == Some((meta.id, to)) {
                continue;
            }
            if let Some(peer) = self
                .nodes
                .get_mut(&to)
                .and_then(|n| n.peers.get_mut(&meta.id))
            {
                peer.step(msg).unwrap();
            }
        }
        busy
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            if !self.round() {
                return;
            }
        }
        panic!("the cluster never settles");
    }

    fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for node in self.nodes.values_mut() {
                for peer in node.peers.values_mut() {
                    peer.tick();
                }
            }
            self.settle();
        }
    }

    fn token(&mut self) -> ProposalToken {
        self.next_token += 1;
        self.next_token
    }

    fn request(&mut self, region: RegionId, body: RequestBody) -> Answer {
        let token = self.token();
        let leader = self.leader(region);
        self.peer(leader, region).propose(body, token)?;
        self.settle();
        self.answers.get(&token).cloned().expect("answered")
    }

    fn read(&mut self, store: u64, region: RegionId, key: &str) -> Answer {
        let node = self.nodes.get_mut(&store).unwrap();
        node.peers[&region].read(&get(key), &mut node.store)
    }

    /// Every store agrees on `region`'s metadata; returns it.
    fn agreed(&self, region: RegionId) -> RegionMeta {
        let metas: Vec<&RegionMeta> = self
            .nodes
            .values()
            .map(|n| n.peers.get(&region).expect("hosted everywhere").meta())
            .collect();
        for m in &metas {
            assert_eq!(*m, metas[0], "the stores disagree on {region}");
        }
        metas[0].clone()
    }

    /// The source leader prepares merging into the target (as seen on its
    /// store); returns the prepare's answer.
    fn prepare(&mut self) -> Answer {
        let leader = self.leader(SOURCE);
        let target = self.nodes[&leader].peers[&TARGET].meta().clone();
        let token = self.token();
        self.peer(leader, SOURCE)
            .propose_prepare_merge(&target, token)?;
        self.settle();
        self.answers.get(&token).cloned().expect("answered")
    }

    /// The target leader commits the prepared merge.
    fn commit(&mut self) -> Answer {
        let source_leader = self.leader(SOURCE);
        let source = self.nodes[&source_leader].peers[&SOURCE].meta().clone();
        let state = self.nodes[&source_leader].peers[&SOURCE]
            .merge_state()
            .expect("prepared");
        let leader = self.leader(TARGET);
        let token = self.token();
        self.peer(leader, TARGET)
            .propose_commit_merge(&source, state, token)?;
        self.settle();
        self.answers.get(&token).cloned().expect("answered")
    }

    /// Every store's data (one store per node, every region).
    fn data(&self, store: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.nodes[&store]
            .store
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }
}

#[test]
fn a_merge_hands_the_source_range_to_the_target_on_every_replica() {
    let mut c = Cluster::new();
    let (target, source) = (c.agreed(TARGET), c.agreed(SOURCE));
    assert_eq!((target.epoch.version, source.epoch.version), (2, 2));

    let Ok(ResponseBody::ChangePeers { epoch }) = c.prepare() else {
        panic!("the prepare failed")
    };
    // The source's version and conf_ver grow; every replica records the
    // merge and stops serving.
    assert_eq!((epoch.conf_ver, epoch.version), (2, 3));
    assert_eq!(c.agreed(SOURCE).epoch, epoch);
    for s in 1..=3 {
        let state = c.peer(s, SOURCE).merge_state().expect("merging");
        assert_eq!((state.target, state.target_epoch), (TARGET, target.epoch));
    }
    let leader = c.leader(SOURCE);
    assert_eq!(c.read(leader, SOURCE, "p").unwrap_err().code(), 5);
    assert_eq!(c.request(SOURCE, put("q", "9")).unwrap_err().code(), 5);
    // A second prepare, a split, a membership change: refused.
    assert_eq!(c.prepare().unwrap_err().code(), 5);

    let Ok(ResponseBody::ChangePeers { epoch }) = c.commit() else {
        panic!("the commit failed")
    };
    let merged = c.agreed(TARGET);
    assert_eq!(
        (merged.start.as_slice(), merged.end.as_slice()),
        (&b""[..], &b""[..])
    );
    assert_eq!(merged.epoch, epoch);
    assert_eq!((epoch.conf_ver, epoch.version), (1, 4)); // max(2, 3) + 1
    assert!(c.nodes.values().all(|n| !n.peers.contains_key(&SOURCE)));
    // The target serves the source's keys (the data never moved) and takes
    // writes there.
    let leader = c.leader(TARGET);
    assert_eq!(c.read(leader, TARGET, "x"), value("3"));
    assert_eq!(c.read(leader, TARGET, "b"), value("1"));
    assert_eq!(c.request(TARGET, put("x", "4")), Ok(ResponseBody::Put));
    c.tick(3);
    assert_eq!(c.read(leader, TARGET, "x"), value("4"));
    assert!(c.data(1) == c.data(2) && c.data(2) == c.data(3));
    // A retried commit (the source is gone) is refused.
    let token = c.token();
    let stale = MergeState {
        target: TARGET,
        target_epoch: target.epoch,
        prepare_index: 1,
        prepare_term: 1,
    };
    let err = c
        .peer(leader, TARGET)
        .propose_commit_merge(&source, stale, token)
        .unwrap_err();
    assert_eq!(err.code(), 2);
}

#[test]
fn merges_that_make_no_sense_are_refused_before_anything_is_proposed() {
    let mut c = Cluster::new();
    let leader = c.leader(SOURCE);
    let mut target = c.nodes[&leader].peers[&TARGET].meta().clone();
    let code = |c: &mut Cluster, t: &RegionMeta| {
        let token = c.token();
        c.peer(leader, SOURCE)
            .propose_prepare_merge(t, token)
            .unwrap_err()
            .code()
    };
    // Into itself, not adjacent, misaligned, with a learner.
    let itself = c.nodes[&leader].peers[&SOURCE].meta().clone();
    assert_eq!(code(&mut c, &itself), 105);
    let mut far = target.clone();
    far.end = b"c".to_vec();
    assert_eq!(code(&mut c, &far), 105);
    let mut moved = target.clone();
    moved.peers[0].shard = ShardId(1);
    assert_eq!(code(&mut c, &moved), 105);
    target.peers[2].role = PeerRole::Learner;
    assert_eq!(code(&mut c, &target), 105);
    // A follower does not propose.
    let follower = (1..=3).find(|&s| s != leader).unwrap();
    let t = c.nodes[&follower].peers[&TARGET].meta().clone();
    let token = c.token();
    let err = c
        .peer(follower, SOURCE)
        .propose_prepare_merge(&t, token)
        .unwrap_err();
    assert_eq!(err.code(), 1);
}

#[test]
fn a_commit_waits_for_a_lagging_source_replica_and_lets_it_catch_up() {
    let mut c = Cluster::new();
    let leader = c.leader(SOURCE);
    let lagging = (1..=3).rev().find(|&s| s != leader).unwrap();
    let target = c.nodes[&leader].peers[&TARGET].meta().clone();
    let token = c.token();
    let index = c
        .peer(leader, SOURCE)
        .propose_prepare_merge(&target, token)
        .unwrap();
    // Run until every source replica holds the prepare, then cut the
    // lagging one off before it learns that it committed.
    for _ in 0..100 {
        c.round();
        if c.peer(leader, SOURCE).all_matched(index) {
            break;
        }
    }
    assert!(c.peer(leader, SOURCE).all_matched(index));
    c.cut = Some((SOURCE, lagging));
    c.settle();
    assert!(c.peer(lagging, SOURCE).applied_index().get() < index);
    assert!(c.peer(lagging, SOURCE).merge_state().is_none());
    assert!(c.answers[&token].is_ok());

    assert!(c.commit().is_ok());
    // The lagging store's target waited, its source applied the prepare
    // from its own log, and the merge finished there too.
    assert!(!c.nodes[&lagging].peers.contains_key(&SOURCE));
    let merged = c.agreed(TARGET);
    assert!(merged.start.is_empty() && merged.end.is_empty());
    c.tick(3);
    assert!(c.data(1) == c.data(2) && c.data(2) == c.data(3));
}

#[test]
fn a_source_rolls_back_when_its_target_changed_and_serves_again() {
    let mut c = Cluster::new();
    assert!(c.prepare().is_ok());
    // The target splits: its epoch leaves the one the prepare recorded.
    let split = RequestBody::Split {
        key: b"a".to_vec(),
        split_key: b"f".to_vec(),
        new_region: RegionId(20),
        new_peers: vec![PeerId(21), PeerId(22), PeerId(23)],
    };
    assert!(c.request(TARGET, split).is_ok());
    assert_eq!(c.commit().unwrap_err().code(), 2); // EpochNotMatch
    let version = c.agreed(SOURCE).epoch.version;
    let leader = c.leader(SOURCE);
    let token = c.token();
    c.peer(leader, SOURCE)
        .propose_rollback_merge(token)
        .unwrap();
    c.settle();
    assert!(c.answers[&token].is_ok());
    let source = c.agreed(SOURCE);
    assert_eq!(source.epoch.version, version + 1);
    for s in 1..=3 {
        assert!(c.peer(s, SOURCE).merge_state().is_none());
    }
    assert_eq!(c.read(leader, SOURCE, "x"), value("3"));
    assert_eq!(c.request(SOURCE, put("x", "5")), Ok(ResponseBody::Put));
    // A rollback of nothing is refused.
    let token = c.token();
    assert_eq!(
        c.peer(leader, SOURCE)
            .propose_rollback_merge(token)
            .unwrap_err()
            .code(),
        105
    );
}

#[test]
fn a_commit_applied_after_the_target_changed_changes_nothing() {
    let mut c = Cluster::new();
    assert!(c.prepare().is_ok());
    // The commit is proposed, but a second one at the same epoch applies
    // after the first changed the target: refused at apply.
    let source_leader = c.leader(SOURCE);
    let source = c.nodes[&source_leader].peers[&SOURCE].meta().clone();
    let state = c.peer(source_leader, SOURCE).merge_state().unwrap();
    assert!(c.commit().is_ok());
    let merged = c.agreed(TARGET);
    let leader = c.leader(TARGET);
    let token = c.token();
    let err = c
        .peer(leader, TARGET)
        .propose_commit_merge(&source, state, token)
        .unwrap_err();
    assert_eq!(err.code(), 2);
    assert_eq!(c.agreed(TARGET), merged);
}

#[test]
fn a_prepared_merge_survives_a_restart_and_a_checkpoint() {
    let mut c = Cluster::new();
    assert!(c.prepare().is_ok());
    let want = c.peer(3, SOURCE).merge_state().unwrap();
    let meta = c.agreed(SOURCE);
    // A crash: the store loses what was not flushed; the WAL replays (the
    // prepare again if no metadata record after it was written).
    let node = c.nodes.get_mut(&3).unwrap();
    node.store.crash();
    let peer = RegionPeer::recover(cfg(SOURCE, 13), node.records(SOURCE), &mut node.store);
    node.peers.insert(SOURCE, peer.unwrap());
    c.tick(3);
    assert_eq!(c.peer(3, SOURCE).merge_state(), Some(want));
    assert_eq!(c.peer(3, SOURCE).meta(), &meta);
    // A checkpoint (the records older than it deleted) keeps it too.
    let node = c.nodes.get_mut(&3).unwrap();
    node.store.flush();
    let mut wal = VecSink::default();
    let persisted = node.store.applied(SOURCE);
    let peer = node.peers.get_mut(&SOURCE).unwrap();
    peer.write_checkpoint(persisted, &mut wal);
    let records: Vec<_> = wal.records.into_iter().map(|(k, _, p)| (k, p)).collect();
    let peer = RegionPeer::recover(cfg(SOURCE, 13), records, &mut node.store).unwrap();
    assert_eq!(peer.merge_state(), Some(want));
    assert_eq!(peer.meta(), &meta);
    // It still serves nothing.
    assert!(c.read(3, SOURCE, "x").is_err());
}

#[test]
fn a_crash_after_the_commit_before_the_tombstone_ends_with_one_owner_and_no_loss() {
    let mut c = Cluster::new();
    c.keep_merged = vec![3];
    assert!(c.prepare().is_ok());
    assert!(c.commit().is_ok());
    // Store 3 keeps its merged source (no tombstone yet); the target takes
    // a newer write into the former source range.
    assert!(c.nodes[&3].peers[&SOURCE].is_merged());
    assert_eq!(c.request(TARGET, put("x", "new")), Ok(ResponseBody::Put));
    c.tick(3);
    let merged = c.agreed(TARGET);
    let want = c.data(1);

    // kill -9 of store 3: the store loses everything not flushed, both
    // regions are rebuilt from the WAL.
    c.keep_merged.clear();
    let node = c.nodes.get_mut(&3).unwrap();
    node.store.crash();
    let source = RegionPeer::recover(cfg(SOURCE, 13), node.records(SOURCE), &mut node.store);
    let target = RegionPeer::recover(cfg(TARGET, 3), node.records(TARGET), &mut node.store);
    let (source, target) = (source.unwrap(), target.unwrap());
    node.peers = BTreeMap::from([(TARGET, target), (SOURCE, source)]);
    // The target's replayed commit waits for the source's replay, then the
    // source goes (tombstone) and the target's newer write wins.
    c.settle();
    c.tick(3);
    assert!(!c.nodes[&3].peers.contains_key(&SOURCE));
    assert_eq!(c.peer(3, TARGET).meta(), &merged);
    assert_eq!(c.data(3), want);
    let records = c.nodes[&3].records(SOURCE);
    assert!(RegionPeer::is_tombstoned(&records));
}
