//! Region splits in a simulated three-store cluster, driven the way the
//! shell drives them.
//!
//! Each store has one WAL (`VecSink`, synced at every pass), one store
//! (`MemStore`) shared by all its regions, and its region peers. The test
//! plays the shell: it routes raft messages by region and peer (a message
//! for a region a store does not host yet is dropped: raft retries), and
//! after `on_persisted` takes the regions splits created and bootstraps
//! this store's replica of each on the same WAL and store (the parent's
//! leader campaigns for the new region at once, as the shell does).
//!
//! Elections are deterministic (`election_jitter_ticks = 1`, a timeout of
//! `10 + id % 10` ticks), so every scenario replays exactly.

use super::*;
use crate::command::Command;
use crate::store::MemStore;
use crate::wal_record::{RecordKind, VecSink};
use golem_wire::{
    GolemError, PeerId, RegionEpoch, RegionId, RequestBody, ResponseBody, ShardId, StoreId,
};
use raft::eraftpb::Message;
use std::collections::BTreeMap;

const PARENT: RegionId = RegionId(7);
const CHILD: RegionId = RegionId(9);

type Answer = Result<ResponseBody, GolemError>;

fn cfg(region: RegionId, id: u64) -> PeerConfig {
    let mut cfg = PeerConfig::new(region, PeerId(id));
    cfg.election_ticks = 10 + (id % 10) as usize;
    cfg.election_jitter_ticks = 1;
    cfg.entry_cache_entries_max = 16;
    cfg.log_retain_entries_min = 8;
    cfg
}

/// Store `s` (1..=3) holds the parent's peer `s` and the child's `10 + s`.
fn parent_meta() -> RegionMeta {
    RegionMeta::whole_key_space(
        PARENT,
        (1..=3)
            .map(|s| PeerMeta::new(PeerId(s), StoreId(s), ShardId(0)))
            .collect(),
    )
}

fn split_at(key: &[u8]) -> RequestBody {
    RequestBody::Split {
        key: b"a".to_vec(),
        split_key: key.to_vec(),
        new_region: CHILD,
        new_peers: vec![PeerId(11), PeerId(12), PeerId(13)],
    }
}

fn put(key: &str, value: &str) -> RequestBody {
    RequestBody::Put {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
    }
}

struct Node {
    store: MemStore,
    wal: VecSink,
    peers: BTreeMap<RegionId, RegionPeer>,
}

impl Node {
    /// The WAL records of one region, in write order.
    fn records(&self, region: RegionId) -> Vec<(RecordKind, Vec<u8>)> {
        self.wal
            .records
            .iter()
            .filter(|(_, r, _)| *r == region)
            .map(|(k, _, p)| (*k, p.clone()))
            .collect()
    }
}

struct Cluster {
    nodes: BTreeMap<u64, Node>,
    answers: BTreeMap<ProposalToken, Answer>,
    next_token: ProposalToken,
}

impl Cluster {
    /// The parent region on stores 1..=3, peer 1 elected.
    fn new() -> Cluster {
        let nodes = (1..=3)
            .map(|s| {
                let mut wal = VecSink::default();
                let peer = RegionPeer::bootstrap(cfg(PARENT, s), parent_meta(), &mut wal).unwrap();
                let node = Node {
                    store: MemStore::new(),
                    wal,
                    peers: BTreeMap::from([(PARENT, peer)]),
                };
                (s, node)
            })
            .collect();
        let mut c = Cluster {
            nodes,
            answers: BTreeMap::new(),
            next_token: 1,
        };
        c.peer(1, PARENT).campaign();
        c.settle();
        assert!(c.peer(1, PARENT).is_leader());
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
            let mut created = Vec::new();
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
            }
            for (meta, parent_leads) in created {
                if node.peers.contains_key(&meta.id) {
                    continue;
                }
                let me = meta.peer_on(StoreId(s)).expect("a replica here").id;
                let mut peer =
                    RegionPeer::bootstrap(cfg(meta.id, me.get()), meta.clone(), &mut node.wal)
                        .unwrap();
                if parent_leads {
                    peer.campaign();
                }
                node.peers.insert(meta.id, peer);
                busy = true;
            }
        }
        for (meta, msg) in msgs {
            let to = meta.peer(PeerId(msg.to)).expect("a member").store.get();
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

    fn propose(
        &mut self,
        region: RegionId,
        body: RequestBody,
    ) -> Result<ProposalToken, GolemError> {
        let token = self.next_token;
        self.next_token += 1;
        let leader = self.leader(region);
        self.peer(leader, region)
            .propose(body, token)
            .map(|()| token)
    }

    fn request(&mut self, region: RegionId, body: RequestBody) -> Answer {
        let token = self.propose(region, body)?;
        self.settle();
        self.answers.get(&token).cloned().expect("answered")
    }

    fn get(&mut self, region: RegionId, key: &str) -> Answer {
        let leader = self.leader(region);
        let node = self.nodes.get_mut(&leader).unwrap();
        let body = RequestBody::Get {
            key: key.as_bytes().to_vec(),
        };
        node.peers[&region].read(&body, &mut node.store)
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

    /// Splits at `key` and checks the answer.
    fn split(&mut self, key: &[u8]) -> (RegionMeta, RegionMeta) {
        let Ok(ResponseBody::Split { regions }) = self.request(PARENT, split_at(key)) else {
            panic!("the split failed")
        };
        let (left, right) = (self.agreed(PARENT), self.agreed(CHILD));
        assert_eq!(regions, vec![left.to_info(), right.to_info()]);
        (left, right)
    }
}

fn version(v: u64) -> RegionEpoch {
    RegionEpoch {
        conf_ver: 1,
        version: v,
    }
}

#[test]
fn a_split_applies_on_every_replica_and_both_halves_serve() {
    let mut c = Cluster::new();
    for (k, v) in [("a", "1"), ("k", "2"), ("m", "3"), ("z", "4")] {
        assert_eq!(c.request(PARENT, put(k, v)), Ok(ResponseBody::Put));
    }
    let (left, right) = c.split(b"m");
    assert_eq!(
        (left.start.as_slice(), left.end.as_slice()),
        (&b""[..], &b"m"[..])
    );
    assert_eq!(
        (right.start.as_slice(), right.end.as_slice()),
        (&b"m"[..], &b""[..])
    );
    assert_eq!((left.epoch, right.epoch), (version(2), version(2)));
    let stores: Vec<u64> = right.peers.iter().map(|p| p.store.get()).collect();
    assert_eq!(stores, vec![1, 2, 3]);
    let ids: Vec<u64> = right.peers.iter().map(|p| p.id.get()).collect();
    assert_eq!(ids, vec![11, 12, 13]);
    // The parent's leader campaigned for the new region at once.
    assert_eq!(c.leader(CHILD), 1);
    // Each half serves its keys, and only its keys; the data did not move.
    let value = |v: &str| {
        Ok(ResponseBody::Get {
            value: Some(v.as_bytes().to_vec()),
        })
    };
    assert_eq!(c.get(PARENT, "k"), value("2"));
    assert_eq!(c.get(CHILD, "m"), value("3"));
    assert_eq!(c.get(CHILD, "z"), value("4"));
    assert_eq!(c.get(PARENT, "z").unwrap_err().code(), 4);
    assert_eq!(c.request(PARENT, put("z", "x")).unwrap_err().code(), 4);
    assert_eq!(c.request(CHILD, put("z", "5")), Ok(ResponseBody::Put));
    assert_eq!(c.request(PARENT, put("b", "6")), Ok(ResponseBody::Put));
    c.tick(3);
    assert_eq!(c.get(CHILD, "z"), value("5"));
    // Every store holds the same data (one store per node, both regions).
    let data: Vec<Vec<(Vec<u8>, Vec<u8>)>> = c
        .nodes
        .values()
        .map(|n| {
            n.store
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect()
        })
        .collect();
    assert!(data.iter().all(|d| d == &data[0]));
    // The next split of the left half makes version 3.
    assert!(!c.peer(1, PARENT).is_splitting());
}

#[test]
fn senseless_or_concurrent_splits_are_refused() {
    let mut c = Cluster::new();
    let code = |c: &mut Cluster, body| c.propose(PARENT, body).unwrap_err().code();
    // Not strictly inside the range (the whole key space starts at "").
    assert_eq!(code(&mut c, split_at(b"")), 100); // empty key: a limit error
    let mut wrong = split_at(b"m");
    if let RequestBody::Split { new_peers, .. } = &mut wrong {
        new_peers.pop();
    }
    assert_eq!(code(&mut c, wrong), 105);
    let mut dup = split_at(b"m");
    if let RequestBody::Split { new_peers, .. } = &mut dup {
        new_peers[1] = new_peers[0];
    }
    assert_eq!(code(&mut c, dup), 105);
    let mut same = split_at(b"m");
    if let RequestBody::Split { new_region, .. } = &mut same {
        *new_region = PARENT;
    }
    assert_eq!(code(&mut c, same), 105);
    // A follower does not propose.
    let err = c.peer(2, PARENT).propose(split_at(b"m"), 99).unwrap_err();
    assert_eq!(err.code(), 1);
    // One split at a time, and no membership change meanwhile.
    let first = c.propose(PARENT, split_at(b"m")).unwrap();
    assert!(c.peer(1, PARENT).is_splitting());
    assert_eq!(code(&mut c, split_at(b"q")), 5);
    let change = RequestBody::ChangePeers {
        key: b"a".to_vec(),
        changes: vec![golem_wire::PeerChange {
            kind: golem_wire::PeerChangeKind::AddLearner,
            peer: PeerId(4),
            store: StoreId(4),
            shard: ShardId(0),
        }],
    };
    assert_eq!(code(&mut c, change), 5);
    c.settle();
    assert!(matches!(c.answers[&first], Ok(ResponseBody::Split { .. })));
    // Now outside the left half: refused.
    assert_eq!(code(&mut c, split_at(b"q")), 105);
    assert_eq!(c.agreed(PARENT).epoch, version(2));
}

#[test]
fn a_split_whose_epoch_changed_before_it_applied_changes_nothing() {
    let mut c = Cluster::new();
    let before = c.agreed(PARENT);
    // As if proposed before an earlier split or membership change applied.
    let stale = Command::Split {
        split_key: b"m".to_vec(),
        new_region: CHILD,
        new_peers: vec![PeerId(11), PeerId(12), PeerId(13)],
        epoch: RegionEpoch {
            conf_ver: 1,
            version: 0,
        },
    };
    let token = 77;
    let leader = c.peer(1, PARENT);
    let (term, last) = (leader.raw.raft.term, leader.raw.raft.raft_log.last_index());
    leader.raw.propose(Vec::new(), stale.encode()).unwrap();
    leader.track_proposal(last, token, term);
    c.settle();
    match &c.answers[&token] {
        Err(GolemError::EpochNotMatch { current_regions }) => {
            assert_eq!(current_regions, &vec![before.to_info()]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.agreed(PARENT), before);
    assert!(c.nodes.values().all(|n| !n.peers.contains_key(&CHILD)));
    // The region still works, and a correct split still applies.
    assert_eq!(c.request(PARENT, put("z", "1")), Ok(ResponseBody::Put));
    c.split(b"m");
}

#[test]
fn recovery_keeps_both_regions_and_recreates_a_lost_new_region() {
    let mut c = Cluster::new();
    assert_eq!(c.request(PARENT, put("z", "1")), Ok(ResponseBody::Put));
    let (left, right) = c.split(b"m");
    assert_eq!(c.request(CHILD, put("z", "2")), Ok(ResponseBody::Put));
    c.tick(3);

    // A restart with every record: both regions come back as they were;
    // nothing is flushed, so the new region waits for its parent's replay.
    let node = c.nodes.get_mut(&2).unwrap();
    node.store.crash();
    let parent = RegionPeer::recover(cfg(PARENT, 2), node.records(PARENT), &mut node.store);
    let mut parent = parent.unwrap();
    assert_eq!(parent.meta(), &left);
    let split_index = parent.take_split_replay_gates();
    assert_eq!(split_index.len(), 1);
    assert_eq!(split_index[0].0, CHILD);
    let child = RegionPeer::recover(cfg(CHILD, 12), node.records(CHILD), &mut node.store).unwrap();
    assert_eq!(child.meta(), &right);

    // The parent's metadata records after the split are lost (the crash
    // came before they were written) but the store holds the split: the
    // split is applied again at recovery and the new region queued again.
    let node = c.nodes.get_mut(&3).unwrap();
    node.store.flush();
    let mut records = node.records(PARENT);
    let first_split_meta = records
        .iter()
        .position(|(k, p)| {
            *k == RecordKind::RegionMeta && RegionMeta::decode(p).unwrap().epoch.version == 2
        })
        .expect("the split's metadata record");
    records.retain(|(k, p)| {
        *k != RecordKind::RegionMeta || RegionMeta::decode(p).unwrap().epoch.version == 1
    });
    assert!(first_split_meta > 0);
    let mut parent = RegionPeer::recover(cfg(PARENT, 3), records, &mut node.store).unwrap();
    assert_eq!(parent.meta(), &left);
    assert_eq!(parent.take_split_regions(), vec![right.clone()]);
    assert!(parent.take_split_replay_gates().is_empty());
}

#[test]
fn a_restarted_replica_catches_up_in_both_regions() {
    let mut c = Cluster::new();
    c.split(b"m");
    for (region, k) in [(PARENT, "b"), (CHILD, "x")] {
        assert_eq!(c.request(region, put(k, "1")), Ok(ResponseBody::Put));
    }
    // Store 3 restarts from its WAL (its store lost everything unflushed).
    let node = c.nodes.get_mut(&3).unwrap();
    node.store.crash();
    let parent = RegionPeer::recover(cfg(PARENT, 3), node.records(PARENT), &mut node.store);
    let child = RegionPeer::recover(cfg(CHILD, 13), node.records(CHILD), &mut node.store);
    node.peers = BTreeMap::from([(PARENT, parent.unwrap()), (CHILD, child.unwrap())]);
    // The shell replays the parent before the gated child: here the parent
    // comes first in each pass (region ids in order).
    c.tick(30);
    for (region, k) in [(PARENT, "c"), (CHILD, "y")] {
        assert_eq!(c.request(region, put(k, "2")), Ok(ResponseBody::Put));
    }
    c.tick(3);
    let data = |n: &Node| -> Vec<(Vec<u8>, Vec<u8>)> {
        n.store
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    };
    assert_eq!(data(&c.nodes[&3]), data(&c.nodes[&1]));
    assert_eq!(c.agreed(PARENT).epoch, version(2));
    assert_eq!(c.agreed(CHILD).epoch, version(2));
}
