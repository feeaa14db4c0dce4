//! Membership changes and Raft snapshots of a replicated region, driven the
//! way the shell drives them.
//!
//! The test plays the shell for a cluster of replicas, each on its own
//! store with its own WAL (`VecSink`, synced at every pass) and store
//! (`MemStore`): it routes raft messages by `to` and creates a replica with
//! `RegionPeer::uninitialized` when a message reaches a store that has
//! none; when a leader asks for a snapshot it prepares one and keeps a copy
//! of its store's range at that moment (the "stream"); when a follower's
//! `PendingReady` installs a snapshot it writes that copy into its store
//! (one batch: a range delete and the pairs, at the snapshot's index),
//! flushes it, and only then calls `on_persisted`. A removed replica gets a
//! `Tombstone` record, as the shell writes it. With `removal_notices`, a
//! message to a removed replica is answered as the shell answers it: the
//! sender learns that the entry that removed it is committed (`removal.rs`).
//!
//! Elections are deterministic (`election_jitter_ticks = 1`, a timeout of
//! `10 + id` ticks, peer 1 campaigns first), so every scenario replays
//! exactly.

use super::records::decode_entries;
use super::*;
use crate::store::{KvStore, MemStore, WriteBatch};
use crate::wal_record::{RecordKind, VecSink, WalSink};
use golem_wire::{
    GolemError, LogIndex, PeerChange, PeerChangeKind, PeerId, RegionEpoch, RegionId, RequestBody,
    ResponseBody, ShardId, StoreId,
};
use raft::eraftpb::{ConfState, Entry, Message, MessageType, Snapshot};
use std::collections::{BTreeMap, HashSet};

pub(super) const REGION: RegionId = RegionId(7);

type Answer = Result<ResponseBody, GolemError>;
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn cfg(id: u64) -> PeerConfig {
    let mut cfg = PeerConfig::new(REGION, PeerId(id));
    // Deterministic elections: the timeout is exactly `election_ticks`,
    // different for each peer (no split votes in lockstep).
    cfg.election_ticks = 10 + id as usize;
    cfg.election_jitter_ticks = 1;
    cfg.entry_cache_entries_max = 16;
    cfg.log_retain_entries_min = 8;
    cfg
}

/// Peer `id` lives on store `100 + id`, shard `id % 2`.
fn store_of(id: u64) -> StoreId {
    StoreId(100 + id)
}

fn shard_of(id: u64) -> ShardId {
    ShardId((id % 2) as u16)
}

fn placed(id: u64) -> PeerMeta {
    PeerMeta::new(PeerId(id), store_of(id), shard_of(id))
}

pub(super) fn change(kind: PeerChangeKind, id: u64) -> PeerChange {
    PeerChange {
        kind,
        peer: PeerId(id),
        store: store_of(id),
        shard: shard_of(id),
    }
}

pub(super) fn change_peers(changes: Vec<PeerChange>) -> RequestBody {
    RequestBody::ChangePeers {
        key: b"k".to_vec(),
        changes,
    }
}

fn put(i: u64) -> RequestBody {
    RequestBody::Put {
        key: format!("key{i:04}").into_bytes(),
        value: format!("value{i}").into_bytes(),
    }
}

/// raft's own configuration, with sorted id lists (for comparisons).
fn sorted(mut cs: ConfState) -> ConfState {
    cs.voters.sort_unstable();
    cs.learners.sort_unstable();
    cs.voters_outgoing.sort_unstable();
    cs.learners_next.sort_unstable();
    cs
}

fn raft_conf(peer: &RegionPeer) -> ConfState {
    sorted(peer.raw.raft.prs().conf().to_conf_state())
}

/// The configuration the metadata describes (what recovery and snapshots
/// rebuild raft from). `auto_leave` is compared only while joint.
fn meta_conf(meta: &RegionMeta) -> ConfState {
    sorted(meta.conf_state())
}

fn assert_conf_matches(peer: &RegionPeer) {
    let (mut raft, mut meta) = (raft_conf(peer), meta_conf(peer.meta()));
    if raft.voters_outgoing.is_empty() {
        raft.auto_leave = false;
        meta.auto_leave = false;
    }
    assert_eq!(
        raft,
        meta,
        "peer {}: raft's configuration and the metadata's differ",
        peer.config().peer
    );
}

fn roles(meta: &RegionMeta) -> Vec<(u64, PeerRole)> {
    let mut r: Vec<(u64, PeerRole)> = meta.peers.iter().map(|p| (p.id.get(), p.role)).collect();
    r.sort_unstable_by_key(|(id, _)| *id);
    r
}

/// One replica: its peer, WAL and store.
pub(super) struct Member {
    cfg: PeerConfig,
    pub(super) peer: RegionPeer,
    pub(super) wal: VecSink,
    pub(super) store: MemStore,
    /// Created by a message (not at bootstrap).
    created_by_message: bool,
    /// Every distinct metadata this replica had, in order.
    metas: Vec<RegionMeta>,
    /// The shell wrote its tombstone.
    tombstoned: bool,
}

impl Member {
    fn records(&self) -> Vec<(RecordKind, Vec<u8>)> {
        self.wal
            .records
            .iter()
            .map(|(kind, region, payload)| {
                assert_eq!(*region, REGION);
                (*kind, payload.clone())
            })
            .collect()
    }

    pub(super) fn state(&self) -> Pairs {
        self.store
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }
}

pub(super) struct Cluster {
    pub(super) members: BTreeMap<u64, Member>,
    /// Peers whose messages (both ways) are dropped.
    pub(super) cut: HashSet<u64>,
    /// The messages a replica hands out with its own removal are lost.
    pub(super) lose_removed_messages: bool,
    /// A message to a removed replica is answered with its removal entry
    /// (the shell's notice); otherwise it is dropped.
    pub(super) removal_notices: bool,
    answers: BTreeMap<ProposalToken, Answer>,
    next_token: ProposalToken,
    /// The leader's store range when it prepared a snapshot, by index:
    /// what the shell streams to the follower.
    snapshot_data: BTreeMap<u64, Pairs>,
    /// Snapshots prepared by leaders: (leader, index).
    prepared: Vec<(u64, u64)>,
    /// Snapshots installed by followers: (peer, index, term).
    installed: Vec<(u64, u64, u64)>,
}

impl Cluster {
    /// A new region whose voters are `ids`; peer `ids[0]` is elected.
    pub(super) fn new(ids: &[u64]) -> Cluster {
        let meta = RegionMeta::whole_key_space(REGION, ids.iter().map(|&i| placed(i)).collect());
        let members = ids
            .iter()
            .map(|&id| {
                let mut wal = VecSink::default();
                let peer = RegionPeer::bootstrap(cfg(id), meta.clone(), &mut wal).unwrap();
                let m = Member {
                    cfg: cfg(id),
                    metas: vec![peer.meta().clone()],
                    peer,
                    wal,
                    store: MemStore::new(),
                    created_by_message: false,
                    tombstoned: false,
                };
                (id, m)
            })
            .collect();
        let mut c = Cluster {
            members,
            cut: HashSet::new(),
            lose_removed_messages: false,
            removal_notices: false,
            answers: BTreeMap::new(),
            next_token: 1,
            snapshot_data: BTreeMap::new(),
            prepared: Vec::new(),
            installed: Vec::new(),
        };
        c.member(ids[0]).peer.campaign();
        c.settle();
        assert!(c.members[&ids[0]].peer.is_leader());
        c
    }

    pub(super) fn member(&mut self, id: u64) -> &mut Member {
        self.members.get_mut(&id).expect("a member")
    }

    fn leader_id(&self) -> u64 {
        let leaders: Vec<u64> = self
            .members
            .iter()
            .filter(|(_, m)| m.peer.is_leader() && !m.peer.is_removed())
            .map(|(&id, _)| id)
            .collect();
        assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
        leaders[0]
    }

    /// One pass over every replica, then delivery of the messages it made.
    /// False if there was nothing to do.
    pub(super) fn round(&mut self) -> bool {
        let mut busy = false;
        let mut msgs: Vec<Message> = Vec::new();
        for (&id, m) in self.members.iter_mut() {
            if let Some(p) = m.peer.collect_ready(&mut m.wal, &mut m.store) {
                busy = true;
                if let Some((index, term)) = p.snapshot() {
                    // Install the streamed data, durably, before on_persisted.
                    let pairs = self
                        .snapshot_data
                        .get(&index)
                        .unwrap_or_else(|| panic!("peer {id}: no snapshot data at {index}"));
                    let meta = m.peer.meta();
                    let mut batch = WriteBatch::new();
                    batch.delete_range(meta.start.clone(), meta.end.clone());
                    for (k, v) in pairs {
                        batch.put(k.clone(), v.clone());
                    }
                    m.store.write(batch, REGION, LogIndex(index)).unwrap();
                    m.store.flush();
                    assert_eq!(m.peer.applying_snapshot(), Some((index, term)));
                    self.installed.push((id, index, term));
                }
                let out = m.peer.on_persisted(p, &mut m.store);
                assert_eq!(m.peer.applying_snapshot(), None);
                for (token, answer) in out.finished {
                    assert!(
                        self.answers.insert(token, answer).is_none(),
                        "token {token} answered twice"
                    );
                }
                if !(self.lose_removed_messages && m.peer.is_removed()) {
                    msgs.extend(out.messages);
                }
            }
            for req in m.peer.take_fetch_requests() {
                busy = true;
                let ents = read_back(&m.wal, req.low, req.high);
                m.peer.on_entries_fetched(req, Ok(ents));
            }
            if m.peer.take_snapshot_request() {
                busy = true;
                if let Some((index, _term)) = m.peer.prepare_snapshot() {
                    // The view is taken in the same call: the store holds
                    // exactly the applied state at `index`.
                    assert_eq!(m.store.applied(REGION), LogIndex(index));
                    let meta = m.peer.meta().clone();
                    let (pairs, more) = m
                        .store
                        .scan(&meta.start, &meta.end, false, usize::MAX, usize::MAX)
                        .unwrap();
                    assert!(!more);
                    let pairs: Pairs = pairs.into_iter().map(|p| (p.key, p.value)).collect();
                    if let Some(old) = self.snapshot_data.insert(index, pairs.clone()) {
                        assert_eq!(old, pairs, "two snapshots at {index} differ");
                    }
                    self.prepared.push((id, index));
                }
            }
            if m.metas.last() != Some(m.peer.meta()) {
                m.metas.push(m.peer.meta().clone());
            }
            if m.peer.is_removed() && !m.tombstoned {
                let t = records::Tombstone {
                    peer: m.cfg.peer,
                    removed_by: m.peer.removed_by(),
                };
                m.wal.append(
                    RecordKind::Tombstone,
                    REGION,
                    &records::encode_tombstone(&t),
                );
                m.tombstoned = true;
            }
        }
        for msg in msgs {
            busy = true;
            self.deliver(msg);
        }
        busy
    }

    fn deliver(&mut self, msg: Message) {
        let (from, to) = (msg.from, msg.to);
        if self.cut.contains(&from) || self.cut.contains(&to) {
            return;
        }
        if let Some(removed) = self.members.get(&to).filter(|m| m.tombstoned) {
            // The shell answers for a removed replica (`transport::deliver`).
            let notice = removed.peer.removed_by().filter(|_| self.removal_notices);
            if let (Some((index, term)), Some(sender)) = (notice, self.members.get_mut(&from)) {
                sender.peer.learn_removal_committed(index, term);
            }
            return;
        }
        let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        let m = self.members.entry(to).or_insert_with(|| {
            let peer = RegionPeer::uninitialized(cfg(to)).unwrap();
            assert!(!peer.is_initialized());
            Member {
                cfg: cfg(to),
                metas: Vec::new(),
                peer,
                wal: VecSink::default(),
                store: MemStore::new(),
                created_by_message: true,
                tombstoned: false,
            }
        });
        let result = m.peer.step(msg);
        match &result {
            Ok(()) => {}
            // A removed peer's late messages (the shell drops them too).
            Err(CoreError::Raft {
                source: raft::Error::StepPeerNotFound,
                ..
            }) if m.peer.meta().peer(PeerId(from)).is_none() => {}
            Err(e) => panic!("peer {to} refused a message from {from}: {e}"),
        }
        if is_snapshot {
            // The data was streamed: tell the leader.
            if let Some(l) = self.members.get_mut(&from) {
                l.peer.report_snapshot(PeerId(to), result.is_ok());
            }
        }
    }

    pub(super) fn settle(&mut self) {
        for _ in 0..10_000 {
            if !self.round() {
                return;
            }
        }
        panic!("the cluster never settles");
    }

    /// `n` ticks of every replica, settling after each.
    pub(super) fn tick(&mut self, n: usize) {
        for _ in 0..n {
            for m in self.members.values_mut() {
                m.peer.tick();
            }
            self.settle();
        }
    }

    /// Proposes `body` at the leader (not settled).
    pub(super) fn propose(&mut self, body: RequestBody) -> Result<ProposalToken, GolemError> {
        let token = self.next_token;
        self.next_token += 1;
        let leader = self.leader_id();
        self.member(leader)
            .peer
            .propose(body, token)
            .map(|()| token)
    }

    /// Proposes, settles, and returns the answer.
    fn request(&mut self, body: RequestBody) -> Answer {
        let token = self.propose(body)?;
        self.settle();
        self.answers.get(&token).cloned().expect("answered")
    }

    pub(super) fn write(&mut self, i: u64) {
        assert_eq!(self.request(put(i)), Ok(ResponseBody::Put));
    }

    /// Applies a membership change and returns the new epoch.
    pub(super) fn change(&mut self, changes: Vec<PeerChange>) -> RegionEpoch {
        match self.request(change_peers(changes)) {
            Ok(ResponseBody::ChangePeers { epoch }) => epoch,
            other => panic!("membership change failed: {other:?}"),
        }
    }

    fn state(&self, id: u64) -> Pairs {
        self.members[&id].state()
    }

    /// Every live (not removed) replica has the same metadata, which
    /// matches its raft configuration; returns it.
    fn agreed_meta(&self) -> RegionMeta {
        let live: Vec<&Member> = self
            .members
            .values()
            .filter(|m| !m.peer.is_removed())
            .collect();
        let meta = live[0].peer.meta().clone();
        for m in &live {
            assert_eq!(
                m.peer.meta(),
                &meta,
                "peer {} disagrees on the metadata",
                m.cfg.peer
            );
            assert_conf_matches(&m.peer);
        }
        meta
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

fn busy() -> GolemError {
    GolemError::ServerBusy {
        retry_after_ms: membership::CHANGE_BUSY_RETRY_AFTER_MS,
    }
}

#[test]
fn a_learner_is_created_by_a_message_catches_up_by_snapshot_and_is_promoted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    for i in 0..20 {
        c.write(i);
    }
    let before = c.agreed_meta();
    assert_eq!(before.epoch.conf_ver, 1);

    // Add a learner on a fourth store.
    let epoch = c.change(vec![change(PeerChangeKind::AddLearner, 4)]);
    assert_eq!(epoch.conf_ver, before.epoch.conf_ver + 1);
    assert_eq!(epoch.version, before.epoch.version);
    c.tick(10);
    let m4 = &c.members[&4];
    assert!(m4.created_by_message, "peer 4 was created by a message");
    assert!(m4.peer.is_initialized());
    assert!(m4.metas.first().is_some_and(|m| m.peers.is_empty()));
    // It came up to date through a snapshot of the leader's applied state:
    // the log of a new region starts after the virtual entry, so no append
    // could have reached it.
    let (peer, index, term) = c.installed[0];
    assert_eq!(peer, 4);
    assert!(index > RAFT_INIT_LOG_INDEX);
    assert!(c.prepared.iter().any(|&(l, i)| l == 1 && i == index));
    assert!(term >= RAFT_INIT_LOG_TERM);
    assert_eq!(c.state(4), c.state(1));
    assert_eq!(c.state(4).len(), 20);
    assert_eq!(
        c.member(4).store.persisted_applied(REGION).get(),
        index,
        "the snapshot's data is durable at its index"
    );
    // Its first WAL records are the snapshot's metadata and log start.
    let kinds: Vec<RecordKind> = c.members[&4].records().iter().map(|r| r.0).collect();
    assert_eq!(&kinds[..2], &[RecordKind::RegionMeta, RecordKind::LogStart]);
    let meta = c.agreed_meta();
    assert_eq!(meta.epoch, epoch);
    assert_eq!(
        roles(&meta),
        vec![
            (1, PeerRole::Voter),
            (2, PeerRole::Voter),
            (3, PeerRole::Voter),
            (4, PeerRole::Learner)
        ]
    );
    assert_eq!(
        meta.peer(PeerId(4)),
        Some(&PeerMeta {
            role: PeerRole::Learner,
            ..placed(4)
        })
    );

    // Later writes reach the learner by appends.
    for i in 20..30 {
        c.write(i);
    }
    c.tick(2);
    assert_eq!(c.state(4), c.state(1));
    assert_eq!(c.installed.len(), 1, "one snapshot was enough");
    assert_eq!(
        c.members[&4].peer.applied_index(),
        c.members[&1].peer.applied_index()
    );

    // Cut off, the learner falls more than LEARNER_CATCH_UP_ENTRIES_MAX
    // entries behind: its promotion is refused (nothing is proposed).
    c.cut.insert(4);
    let lag = membership::LEARNER_CATCH_UP_ENTRIES_MAX + 5;
    for i in 0..lag {
        c.propose(put(1000 + i)).unwrap();
    }
    let last = c.members[&1].peer.last_index();
    assert_eq!(
        c.propose(change_peers(vec![change(PeerChangeKind::AddVoter, 4)])),
        Err(busy())
    );
    assert_eq!(c.members[&1].peer.last_index(), last, "nothing proposed");
    c.settle();
    assert_eq!(c.agreed_meta().epoch, epoch, "no change applied");

    // Healed, it catches up (from the WAL: the entry cache is small), and
    // the promotion goes through.
    c.cut.clear();
    c.tick(6);
    assert_eq!(c.state(4), c.state(1));
    assert_eq!(c.state(4).len(), 30 + lag as usize);
    let promoted = c.change(vec![change(PeerChangeKind::AddVoter, 4)]);
    assert_eq!(promoted.conf_ver, epoch.conf_ver + 1);
    c.tick(2);
    let meta = c.agreed_meta();
    assert_eq!(meta.epoch, promoted);
    assert!(meta.peers.iter().all(|p| p.role == PeerRole::Voter));
    assert_eq!(meta.voter_ids().len(), 4);

    // Every replica went through the same metadata versions.
    let history: Vec<u64> = c.members[&1]
        .metas
        .iter()
        .map(|m| m.epoch.conf_ver)
        .collect();
    assert_eq!(history, vec![1, 2, 3]);
    for id in [2, 3] {
        assert_eq!(c.members[&id].metas, c.members[&1].metas);
    }
    // 4 votes now: with 3 and 4 cut off, 1 and 2 are no quorum of four
    // (they were one of three); with 4 back, 1, 2 and 4 are.
    c.cut.extend([3, 4]);
    let token = c.propose(put(5000)).unwrap();
    c.settle();
    assert!(!c.answers.contains_key(&token), "committed without 4");
    c.cut.remove(&4);
    c.tick(2);
    assert_eq!(c.answers.get(&token), Some(&Ok(ResponseBody::Put)));
    assert_eq!(c.state(4), c.state(1));
}

#[test]
fn removing_a_voter_deletes_its_data_and_bad_or_concurrent_changes_are_refused() {
    let mut c = Cluster::new(&[1, 2, 3]);
    for i in 0..10 {
        c.write(i);
    }
    let conf_ver = c.agreed_meta().epoch.conf_ver;

    // The leader refuses to remove itself, and nonsense changes.
    #[track_caller]
    fn invalid(r: Result<ProposalToken, GolemError>) {
        assert!(
            matches!(r, Err(GolemError::InvalidArgument { .. })),
            "{r:?}"
        );
    }
    invalid(c.propose(change_peers(vec![change(PeerChangeKind::Remove, 1)])));
    invalid(c.propose(change_peers(vec![change(PeerChangeKind::AddLearner, 2)])));
    invalid(c.propose(change_peers(vec![
        change(PeerChangeKind::AddLearner, 5),
        change(PeerChangeKind::Remove, 5),
    ])));
    let same_store = PeerChange {
        store: store_of(2),
        shard: shard_of(2),
        ..change(PeerChangeKind::AddLearner, 5)
    };
    invalid(c.propose(change_peers(vec![same_store])));
    // A follower is not the one to ask.
    assert!(matches!(
        c.member(2)
            .peer
            .propose(change_peers(vec![change(PeerChangeKind::Remove, 3)]), 999),
        Err(GolemError::NotLeader { .. })
    ));
    // Changes already in effect (a retried request) are answered at once
    // with the current epoch, without a log entry.
    let last = c.members[&1].peer.last_index();
    for done in [
        change(PeerChangeKind::Remove, 9),
        change(PeerChangeKind::AddVoter, 2),
    ] {
        let epoch = c.agreed_meta().epoch;
        assert_eq!(
            c.request(change_peers(vec![done])),
            Ok(ResponseBody::ChangePeers { epoch })
        );
    }
    assert_eq!(c.members[&1].peer.last_index(), last);
    c.settle();
    assert_eq!(c.agreed_meta().epoch.conf_ver, conf_ver, "nothing applied");

    // Remove 3; a second change while it is pending is refused.
    let token = c
        .propose(change_peers(vec![change(PeerChangeKind::Remove, 3)]))
        .unwrap();
    assert_eq!(
        c.propose(change_peers(vec![change(PeerChangeKind::AddLearner, 5)])),
        Err(busy())
    );
    c.settle();
    let epoch = match c.answers.get(&token) {
        Some(Ok(ResponseBody::ChangePeers { epoch })) => *epoch,
        other => panic!("{other:?}"),
    };
    assert_eq!(epoch.conf_ver, conf_ver + 1);
    c.tick(2);

    // 3 applied its own removal: it is removed, its range is empty, and its
    // WAL ends with the tombstone the shell wrote.
    let m3 = &c.members[&3];
    assert!(m3.peer.is_removed());
    assert!(m3.store.is_empty(), "the removed replica's data is deleted");
    assert!(m3.peer.meta().peer(PeerId(3)).is_none());
    assert!(RegionPeer::is_tombstoned(&m3.records()));
    assert!(!RegionPeer::is_tombstoned(&c.members[&1].records()));

    let meta = c.agreed_meta();
    assert_eq!(meta.epoch, epoch);
    assert_eq!(
        roles(&meta),
        vec![(1, PeerRole::Voter), (2, PeerRole::Voter)]
    );
    assert_eq!(raft_conf(&c.members[&1].peer).voters, vec![1, 2]);

    // The two voters go on without 3, which stays empty and ignores them.
    for i in 10..15 {
        c.write(i);
    }
    c.tick(3);
    assert_eq!(c.state(2), c.state(1));
    assert_eq!(c.state(1).len(), 15);
    assert!(c.members[&3].store.is_empty());
    // Another change is accepted once the first one is applied.
    let epoch = c.change(vec![change(PeerChangeKind::AddLearner, 5)]);
    assert_eq!(epoch.conf_ver, conf_ver + 2);
}

/// golem-sim FINDINGS #12: recovery skips a tombstoned replica's log, so
/// what it applied must be durable in the store before it applies its own
/// removal (writes a split moved to another region live only in its log
/// until then). The replica asks for a flush and waits, like a store stall.
#[test]
fn a_replica_makes_what_it_applied_durable_before_it_applies_its_removal() {
    let mut c = Cluster::new(&[1, 2, 3]);
    for i in 0..10 {
        c.write(i);
    }
    c.tick(2);
    let applied = c.members[&3].peer.applied_index();
    assert!(
        c.member(3).store.persisted_applied(REGION) < applied,
        "the harness flushes nothing by itself: the writes are not durable yet"
    );
    c.change(vec![change(PeerChangeKind::Remove, 3)]);
    c.tick(2);
    let m3 = c.members.get_mut(&3).unwrap();
    assert!(m3.peer.is_removed());
    let (removed_at, _) = m3.peer.removed_by().expect("removed by an entry");
    assert!(
        m3.store.persisted_applied(REGION).0 >= removed_at - 1,
        "everything before the removal is durable"
    );
    // A crash now loses the removal's delete (not durable: the range comes
    // back, unreachable behind the tombstone) but none of the writes.
    m3.store.crash();
    assert_eq!(
        m3.state().len(),
        10,
        "the applied writes survived the crash"
    );
    // The members that stay flushed nothing for it.
    assert!(c.member(1).store.persisted_applied(REGION).0 < removed_at);
}

#[test]
fn an_add_and_a_remove_together_go_through_a_joint_configuration() {
    let mut c = Cluster::new(&[1, 2, 3]);
    for i in 0..10 {
        c.write(i);
    }
    // A new peer joins as a learner first (a brand-new voter is refused:
    // golem-sim FINDINGS.md #5) and catches up by snapshot.
    assert!(matches!(
        c.propose(change_peers(vec![change(PeerChangeKind::AddVoter, 4)])),
        Err(GolemError::InvalidArgument { .. })
    ));
    c.change(vec![change(PeerChangeKind::AddLearner, 4)]);
    c.tick(10);
    let conf_ver = c.agreed_meta().epoch.conf_ver;
    // A write right behind the change lands between the entry that enters
    // the joint configuration and the one that leaves it: 3 still applies
    // it as an outgoing voter.
    let token = c
        .propose(change_peers(vec![
            change(PeerChangeKind::AddVoter, 4),
            change(PeerChangeKind::Remove, 3),
        ]))
        .unwrap();
    let write = c.propose(put(50)).unwrap();
    c.settle();
    let epoch = match c.answers.get(&token) {
        Some(Ok(ResponseBody::ChangePeers { epoch })) => *epoch,
        other => panic!("{other:?}"),
    };
    assert_eq!(c.answers.get(&write), Some(&Ok(ResponseBody::Put)));
    // The joint configuration is entered: the answer comes with it.
    assert_eq!(epoch.conf_ver, conf_ver + 1);
    // While 3 was an outgoing voter it kept its data (it could still be
    // elected and serve): it held every write up to the one after the
    // change when it left.
    let at_leave = c.members[&3]
        .metas
        .iter()
        .find(|m| m.epoch.conf_ver == conf_ver + 1);
    assert!(at_leave
        .is_some_and(|m| m.peer(PeerId(3)).map(|p| p.role) == Some(PeerRole::DemotingVoter)));
    c.tick(10);

    // Every replica that saw it saw the joint state, and raft-rs left it on
    // its own (one more change).
    let joint = vec![
        (1, PeerRole::Voter),
        (2, PeerRole::Voter),
        (3, PeerRole::DemotingVoter),
        (4, PeerRole::IncomingVoter),
    ];
    for id in [1, 2] {
        let seen: Vec<Vec<(u64, PeerRole)>> = c.members[&id].metas.iter().map(roles).collect();
        assert!(seen.contains(&joint), "peer {id} saw {seen:?}");
    }
    let meta = c.agreed_meta();
    assert_eq!(meta.epoch.conf_ver, conf_ver + 2);
    assert_eq!(
        roles(&meta),
        vec![
            (1, PeerRole::Voter),
            (2, PeerRole::Voter),
            (4, PeerRole::Voter)
        ]
    );
    assert!(raft_conf(&c.members[&1].peer).voters_outgoing.is_empty());
    assert!(c.members[&4].created_by_message);
    assert_eq!(c.state(4), c.state(1));

    // 3 is out, with its data deleted.
    let m3 = &c.members[&3];
    assert!(m3.peer.is_removed());
    assert!(m3.store.is_empty(), "{:?}", m3.state());
    assert!(RegionPeer::is_tombstoned(&m3.records()));

    // The new configuration commits writes, and 4 votes in it: with 2 cut
    // off, 1 and 4 are a quorum of three.
    c.cut.insert(2);
    c.write(100);
    assert_eq!(c.state(4), c.state(1));
    assert_eq!(c.state(1).len(), 12);

    // 2 crashes with nothing flushed, having lost the metadata record of
    // the leave-joint entry (written by the pass after its apply): it is
    // rebuilt from metadata written while joint, applies the leave-joint
    // entry from its log, and ends where every other replica did (3
    // removed, not kept as a learner).
    let final_meta = c.agreed_meta();
    let m = c.member(2);
    let at = m
        .wal
        .records
        .iter()
        .position(|(kind, _, payload)| {
            *kind == RecordKind::RegionMeta
                && RegionMeta::decode(payload).unwrap().epoch.conf_ver == conf_ver + 2
        })
        .expect("the leave-joint metadata record");
    m.wal.records.truncate(at);
    m.store = MemStore::new();
    m.peer = RegionPeer::recover(m.cfg.clone(), m.records(), &mut m.store).unwrap();
    assert_eq!(roles(m.peer.meta()), joint);
    assert_conf_matches(&m.peer);
    let cs = raft_conf(&m.peer);
    assert_eq!(
        (cs.voters, cs.voters_outgoing),
        (vec![1, 2, 4], vec![1, 2, 3])
    );
    assert!(cs.learners.is_empty() && cs.learners_next.is_empty());
    c.cut.clear();
    c.tick(4);
    assert_eq!(c.agreed_meta(), final_meta);
    assert_eq!(c.state(2), c.state(1));
}

/// Rebuilds replica `id` from its WAL records (a crash of the process: the
/// store keeps what it flushed) and returns its metadata before and after.
fn restart(c: &mut Cluster, id: u64) -> (RegionMeta, RegionMeta) {
    let m = c.member(id);
    let before = m.peer.meta().clone();
    m.store.crash();
    let records = m.records();
    m.peer = RegionPeer::recover(m.cfg.clone(), records, &mut m.store)
        .unwrap_or_else(|e| panic!("peer {id} does not recover: {e}"));
    assert_conf_matches(&m.peer);
    let after = m.peer.meta().clone();
    (before, after)
}

#[test]
fn recovery_rebuilds_the_membership_from_the_wal() {
    let mut c = Cluster::new(&[1, 2, 3]);
    for i in 0..5 {
        c.write(i);
    }
    c.change(vec![change(PeerChangeKind::AddLearner, 4)]);
    c.tick(10);
    for i in 5..10 {
        c.write(i);
    }
    c.change(vec![change(PeerChangeKind::AddVoter, 4)]);
    c.change(vec![
        change(PeerChangeKind::AddLearner, 5),
        change(PeerChangeKind::Remove, 3),
    ]);
    c.tick(10);
    for i in 10..15 {
        c.write(i);
    }
    c.tick(2);
    let meta = c.agreed_meta();
    assert_eq!(meta.epoch.conf_ver, 1 + 4);
    assert_eq!(
        roles(&meta),
        vec![
            (1, PeerRole::Voter),
            (2, PeerRole::Voter),
            (4, PeerRole::Voter),
            (5, PeerRole::Learner)
        ]
    );

    // Nothing was flushed on 2: it replays every change from the log.
    assert_eq!(c.member(2).store.persisted_applied(REGION), LogIndex(0));
    let (before, after) = restart(&mut c, 2);
    // Raft starts from the latest metadata record; the log is applied
    // again from the start, changes included, without changing it twice.
    assert_eq!(after, before);
    c.settle();
    assert_eq!(c.members[&2].peer.meta(), &before);
    assert_eq!(c.state(2), c.state(1));

    // 4 and 5 came up by snapshot (flushed): their stores are behind their
    // WALs by what they applied since.
    for id in [4, 5] {
        assert!(c.members[&id].created_by_message);
        let (before, after) = restart(&mut c, id);
        assert_eq!(after, before, "peer {id}");
    }
    c.settle();

    // The leader restarts too, after a checkpoint: the store flushed, the
    // records before the checkpoint dropped but for entries past it.
    let m = c.member(1);
    m.store.flush();
    let persisted = m.store.persisted_applied(REGION);
    let checkpoint_at = m.wal.records.len();
    m.peer.write_checkpoint(persisted, &mut m.wal);
    let cut = m.wal.records[..checkpoint_at]
        .iter()
        .position(|(kind, _, payload)| {
            *kind == RecordKind::Entries
                && decode_entries(payload)
                    .unwrap()
                    .iter()
                    .any(|e| e.index > persisted.get())
        })
        .unwrap_or(checkpoint_at);
    m.wal.records.drain(..cut);
    let metas = m
        .records()
        .iter()
        .filter(|(k, _)| *k == RecordKind::RegionMeta)
        .count();
    assert_eq!(metas, 1, "only the checkpoint's metadata record is left");
    let (before, after) = restart(&mut c, 1);
    assert_eq!(after, before);
    assert_eq!(c.members[&1].peer.log_start(), persisted);

    // The cluster elects again and goes on with the same membership.
    c.tick(25);
    let leader = c.leader_id();
    assert!([1, 2, 4].contains(&leader));
    c.write(100);
    c.tick(2);
    let meta_after = c.agreed_meta();
    assert_eq!(meta_after, meta);
    for id in [2, 4, 5] {
        assert_eq!(c.state(id), c.state(1), "peer {id}");
    }
}

#[test]
fn recovery_reapplies_a_change_the_store_holds_but_no_meta_record_does() {
    // The metadata record of a change is written by the pass after the one
    // that applied it; a store flushed in between holds the change's index.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.write(0);
    let epoch = c.change(vec![change(PeerChangeKind::AddLearner, 4)]);
    c.tick(4);
    let m = c.member(2);
    m.store.flush();
    let at = m
        .wal
        .records
        .iter()
        .rposition(|(kind, _, payload)| {
            *kind == RecordKind::RegionMeta && RegionMeta::decode(payload).unwrap().epoch == epoch
        })
        .expect("the change's metadata record");
    let (_, as_of) = RegionMeta::decode_at(&m.wal.records[at].2).unwrap();
    assert!(m.store.persisted_applied(REGION).get() >= as_of);
    // The crash loses that record and everything after it.
    m.wal.records.truncate(at);
    let (before, after) = restart(&mut c, 2);
    assert_eq!(after, before, "the change is applied again from the log");
    assert_eq!(after.epoch, epoch);
}

#[test]
fn a_replica_whose_records_end_with_a_tombstone_is_not_recovered() {
    let meta = RegionMeta::whole_key_space(REGION, vec![placed(1)]).encode_at(RAFT_INIT_LOG_INDEX);
    let rec = |k: RecordKind| {
        (
            k,
            if k == RecordKind::RegionMeta {
                meta.clone()
            } else {
                Vec::new()
            },
        )
    };
    use RecordKind::{HardState, RegionMeta as Meta, Tombstone};
    assert!(!RegionPeer::is_tombstoned(&[]));
    assert!(!RegionPeer::is_tombstoned(&[rec(Meta)]));
    assert!(RegionPeer::is_tombstoned(&[rec(Meta), rec(Tombstone)]));
    assert!(RegionPeer::is_tombstoned(&[
        rec(Meta),
        rec(Tombstone),
        rec(HardState)
    ]));
    // Added again after its removal: the new replica's records count.
    assert!(!RegionPeer::is_tombstoned(&[
        rec(Meta),
        rec(Tombstone),
        rec(Meta)
    ]));

    // A replica added back after its removal recovers from its new records
    // only (the old ones precede the tombstone).
    let mut c = Cluster::new(&[1, 2, 3]);
    c.write(1);
    c.change(vec![change(PeerChangeKind::Remove, 3)]);
    c.tick(2);
    assert!(c.members[&3].tombstoned);
    assert!(RegionPeer::is_tombstoned(&c.members[&3].records()));
    // The shell drops the replica; a message of the region re-creates it
    // once it is a member again.
    let old = c.members.remove(&3).unwrap();
    c.change(vec![change(PeerChangeKind::AddLearner, 3)]);
    c.tick(10);
    let new = &c.members[&3];
    assert!(new.created_by_message && new.peer.is_initialized());
    assert_eq!(new.state(), c.state(1));
    let mut records = old.records();
    records.extend(new.records());
    assert!(!RegionPeer::is_tombstoned(&records));
    let mut store = new.store.clone();
    let peer = RegionPeer::recover(cfg(3), records, &mut store).unwrap();
    assert_eq!(peer.meta(), new.peer.meta());
    assert_eq!(
        peer.meta().peer(PeerId(3)).map(|p| p.role),
        Some(PeerRole::Learner)
    );
}

/// A snapshot message from peer 1 to `to` at `(index, term)` whose region
/// metadata bytes are `data`.
fn snapshot_msg(to: u64, index: u64, term: u64, data: Vec<u8>, cs: ConfState) -> Message {
    let mut snap = Snapshot {
        data: data.into(),
        ..Default::default()
    };
    let md = snap.mut_metadata();
    md.index = index;
    md.term = term;
    md.set_conf_state(cs);
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgSnapshot);
    msg.from = 1;
    msg.to = to;
    msg.term = term;
    msg.set_snapshot(snap);
    msg
}

#[test]
fn a_bad_snapshot_is_refused_and_changes_nothing() {
    let members = RegionMeta::whole_key_space(
        REGION,
        vec![
            placed(1),
            placed(2),
            PeerMeta {
                role: PeerRole::Learner,
                ..placed(4)
            },
        ],
    );
    let (index, term) = (20, 6);
    let good_cs = members.conf_state();
    let mut other_region = members.clone();
    other_region.id = RegionId(8);
    let without_4 = RegionMeta::whole_key_space(REGION, vec![placed(1), placed(2)]);
    let mut garbage = members.encode_at(index);
    garbage[0] = 0xEE;
    let mut wrong_cs = good_cs.clone();
    wrong_cs.learners.clear();
    wrong_cs.voters.push(4);
    let cases: Vec<(&str, Message)> = vec![
        (
            "garbage",
            snapshot_msg(4, index, term, vec![1, 2, 3], good_cs.clone()),
        ),
        (
            "bad version",
            snapshot_msg(4, index, term, garbage, good_cs.clone()),
        ),
        (
            "truncated",
            snapshot_msg(
                4,
                index,
                term,
                members.encode_at(index)[..20].to_vec(),
                good_cs.clone(),
            ),
        ),
        (
            "empty",
            snapshot_msg(4, index, term, Vec::new(), good_cs.clone()),
        ),
        (
            "other region",
            snapshot_msg(
                4,
                index,
                term,
                other_region.encode_at(index),
                good_cs.clone(),
            ),
        ),
        (
            "receiver left out",
            snapshot_msg(
                4,
                index,
                term,
                without_4.encode_at(index),
                without_4.conf_state(),
            ),
        ),
        (
            "as_of differs",
            snapshot_msg(
                4,
                index,
                term,
                members.encode_at(index - 1),
                good_cs.clone(),
            ),
        ),
        (
            "below the initial index",
            snapshot_msg(4, 3, 3, members.encode_at(3), good_cs.clone()),
        ),
        (
            "configuration differs",
            snapshot_msg(4, index, term, members.encode_at(index), wrong_cs),
        ),
    ];
    let mut peer = RegionPeer::uninitialized(cfg(4)).unwrap();
    let mut wal = VecSink::default();
    let mut store = MemStore::new();
    for (what, msg) in cases {
        match peer.step(msg) {
            Err(CoreError::BadSnapshot { region, .. }) => assert_eq!(region, REGION, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        assert!(!peer.is_initialized(), "{what}");
        assert!(!peer.has_ready(), "{what}");
        assert!(peer.collect_ready(&mut wal, &mut store).is_none(), "{what}");
        assert_eq!(
            peer.term().get(),
            0,
            "{what}: the message's term is not taken"
        );
        assert!(peer.meta().peers.is_empty(), "{what}");
    }
    assert!(wal.records.is_empty());

    // The same replica takes a good one.
    let msg = snapshot_msg(4, index, term, members.encode_at(index), good_cs);
    peer.step(msg).unwrap();
    let p = peer.collect_ready(&mut wal, &mut store).unwrap();
    assert_eq!(p.snapshot(), Some((index, term)));
    let mut batch = WriteBatch::new();
    batch.delete_range(Vec::new(), Vec::new());
    batch.put(b"a".to_vec(), b"1".to_vec());
    store.write(batch, REGION, LogIndex(index)).unwrap();
    store.flush();
    let out = peer.on_persisted(p, &mut store);
    assert!(peer.is_initialized());
    assert_eq!(peer.meta(), &members);
    assert_eq!(peer.applied_index(), LogIndex(index));
    assert!(out
        .messages
        .iter()
        .any(|m| m.get_msg_type() == MessageType::MsgAppendResponse
            && m.to == 1
            && m.index == index));
    // It recovers from what it wrote.
    let records: Vec<_> = wal
        .records
        .iter()
        .map(|(k, _, p)| (*k, p.clone()))
        .collect();
    let recovered = RegionPeer::recover(cfg(4), records, &mut store).unwrap();
    assert_eq!(recovered.meta(), &members);
    assert_eq!(recovered.applied_index(), LogIndex(index));

    // An initialized follower refuses one that is older than what it knows
    // or leaves it out, and its state stays as it was.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.write(1);
    c.change(vec![change(PeerChangeKind::AddLearner, 4)]);
    c.tick(4);
    let meta = c.agreed_meta();
    let applied = c.members[&2].peer.applied_index();
    let term = c.members[&2].peer.term().get();
    let mut stale = meta.clone();
    stale.epoch.conf_ver -= 1;
    let later = applied.get() + 5;
    let bad = vec![
        snapshot_msg(2, later, term, stale.encode_at(later), stale.conf_state()),
        snapshot_msg(
            2,
            later,
            term,
            without(&meta, 2).encode_at(later),
            without(&meta, 2).conf_state(),
        ),
        snapshot_msg(2, later, term, vec![9; 40], meta.conf_state()),
    ];
    for msg in bad {
        let m = c.member(2);
        let records = m.wal.records.len();
        assert!(matches!(
            m.peer.step(msg),
            Err(CoreError::BadSnapshot { .. })
        ));
        assert!(!m.peer.has_ready());
        assert_eq!(m.wal.records.len(), records);
        assert_eq!(m.peer.meta(), &meta);
        assert_eq!(m.peer.applied_index(), applied);
    }
    c.write(2);
    assert_eq!(c.state(2), c.state(1));
}

/// `meta` without peer `id`.
fn without(meta: &RegionMeta, id: u64) -> RegionMeta {
    let mut m = meta.clone();
    m.peers.retain(|p| p.id.get() != id);
    m
}

#[test]
fn an_uninitialized_replica_writes_nothing_and_votes_for_no_one() {
    let mut peer = RegionPeer::uninitialized(cfg(4)).unwrap();
    assert!(!peer.is_initialized());
    assert_eq!(peer.prepare_snapshot(), None);
    let mut vote = Message::default();
    vote.set_msg_type(MessageType::MsgRequestVote);
    vote.from = 1;
    vote.to = 4;
    vote.term = 9;
    vote.log_term = 9;
    vote.index = 100;
    peer.step(vote).unwrap();
    let mut wal = VecSink::default();
    let mut store = MemStore::new();
    if let Some(p) = peer.collect_ready(&mut wal, &mut store) {
        let out = peer.on_persisted(p, &mut store);
        assert!(
            out.messages
                .iter()
                .all(|m| m.get_msg_type() != MessageType::MsgRequestVoteResponse),
            "{:?}",
            out.messages
        );
    }
    for _ in 0..50 {
        peer.tick();
        if let Some(p) = peer.collect_ready(&mut wal, &mut store) {
            let out = peer.on_persisted(p, &mut store);
            assert!(out.messages.is_empty(), "it never campaigns");
        }
    }
    // A heartbeat gets an answer, but nothing is written.
    let mut hb = Message::default();
    hb.set_msg_type(MessageType::MsgHeartbeat);
    hb.from = 1;
    hb.to = 4;
    hb.term = 9;
    peer.step(hb).unwrap();
    let p = peer.collect_ready(&mut wal, &mut store).unwrap();
    let out = peer.on_persisted(p, &mut store);
    assert!(out
        .messages
        .iter()
        .any(|m| m.get_msg_type() == MessageType::MsgHeartbeatResponse && m.to == 1));
    assert!(wal.records.is_empty(), "{:?}", wal.records);
    assert!(!peer.is_initialized());
    let mut wal2 = VecSink::default();
    peer.write_checkpoint(LogIndex(0), &mut wal2);
    assert!(wal2.records.is_empty());
}

#[test]
fn a_prepared_snapshot_serves_only_followers_in_its_configuration() {
    use raft::Storage as _;
    let meta = RegionMeta::whole_key_space(REGION, vec![placed(1), placed(2)]);
    let mut snap = Snapshot {
        data: meta.encode_at(10).into(),
        ..Default::default()
    };
    snap.mut_metadata().index = 10;
    snap.mut_metadata().term = 6;
    snap.mut_metadata().set_conf_state(meta.conf_state());
    let mut storage = crate::raft_log::RegionStorage::new(
        raft::eraftpb::HardState::default(),
        meta.conf_state(),
        RAFT_INIT_LOG_INDEX,
        RAFT_INIT_LOG_TERM,
        Vec::new(),
    );
    storage.set_prepared_snapshot(snap.clone());
    assert_eq!(storage.snapshot(0, 2).unwrap(), snap);
    assert!(!storage.take_snapshot_request());
    // Peer 3 joined after it was prepared: a new one is asked for.
    assert!(storage.snapshot(0, 3).is_err());
    assert!(storage.take_snapshot_request());
    // So is one newer than the prepared one.
    assert!(storage.snapshot(11, 2).is_err());
    assert!(storage.take_snapshot_request());
}

/// A replica moving between two shards of its store (balance-shard): the
/// new peer joins as a learner on the same store, another shard (on the
/// same shard, or as a third peer of the store, it is refused); one joint
/// change promotes it and removes the old peer.
#[test]
fn a_replica_moves_to_another_shard_of_its_store_through_one_joint_change() {
    let mut c = Cluster::new(&[1, 2, 3]);
    for i in 0..10 {
        c.write(i);
    }
    let on_store_3 = |id: u64, shard: ShardId| PeerChange {
        kind: PeerChangeKind::AddLearner,
        peer: PeerId(id),
        store: store_of(3),
        shard,
    };
    let other_shard = ShardId(1 - shard_of(3).0);
    assert!(matches!(
        c.propose(change_peers(vec![on_store_3(4, shard_of(3))])),
        Err(GolemError::InvalidArgument { .. })
    ));
    c.change(vec![on_store_3(4, other_shard)]);
    c.tick(10);
    assert!(matches!(
        c.propose(change_peers(vec![on_store_3(5, ShardId(2))])),
        Err(GolemError::InvalidArgument { .. })
    ));
    let promote = PeerChange {
        kind: PeerChangeKind::AddVoter,
        ..on_store_3(4, other_shard)
    };
    c.change(vec![promote, change(PeerChangeKind::Remove, 3)]);
    c.tick(10);
    let meta = c.agreed_meta();
    assert_eq!(
        roles(&meta),
        vec![
            (1, PeerRole::Voter),
            (2, PeerRole::Voter),
            (4, PeerRole::Voter)
        ]
    );
    assert_eq!(
        meta.peer(PeerId(4)).map(|p| (p.store, p.shard)),
        Some((store_of(3), other_shard))
    );
    assert_eq!(c.state(4), c.state(1));
    assert!(c.members[&3].peer.is_removed());
    assert!(RegionPeer::is_tombstoned(&c.members[&3].records()));
}
