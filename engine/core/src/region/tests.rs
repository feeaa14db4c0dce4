//! Tests of `RegionPeer` driven like the shell drives it: a loop of
//! `collect_ready` → (sync) → `on_persisted` over a `VecSink`, with crashes
//! that lose everything appended after the last sync.

use super::*;
use crate::store::{KvStore, MemStore};
use crate::wal_record::{RecordKind, VecSink};
use golem_wire::{
    GolemError, PeerId, RegionEpoch, RegionId, RequestBody, ResponseBody, ShardId, StoreId, WriteOp,
};
use proptest::prelude::*;
use raft::eraftpb::{Message, MessageType};
use std::collections::{BTreeMap, HashMap};

const REGION: RegionId = RegionId(1);
const PEER: PeerId = PeerId(1);

type Answer = Result<ResponseBody, GolemError>;

/// A peer, its WAL, its store, and what the WAL has made durable.
struct Node {
    cfg: PeerConfig,
    wal: VecSink,
    /// The shard's store; a crash keeps what it flushed.
    store: MemStore,
    /// Records `[..durable]` survived the last sync.
    durable: usize,
    peer: RegionPeer,
    /// Every answer ever handed out, by token.
    answers: HashMap<ProposalToken, Answer>,
    next_token: ProposalToken,
}

fn cfg() -> PeerConfig {
    let mut cfg = PeerConfig::new(REGION, PEER);
    cfg.entry_cache_entries_max = 8;
    cfg
}

/// This test's peer, on store 1, shard 0.
fn me() -> PeerMeta {
    PeerMeta::new(PEER, StoreId(1), ShardId(0))
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

impl Node {
    fn bootstrap(cfg: PeerConfig, meta: RegionMeta) -> Node {
        let mut wal = VecSink::default();
        let peer = RegionPeer::bootstrap(cfg.clone(), meta, &mut wal).unwrap();
        let durable = wal.records.len();
        Node {
            cfg,
            wal,
            store: MemStore::new(),
            durable,
            peer,
            answers: HashMap::new(),
            next_token: 1,
        }
    }

    fn new() -> Node {
        Node::bootstrap(cfg(), RegionMeta::whole_key_space(REGION, vec![me()]))
    }

    /// Campaigns and drives until the peer leads and serves reads.
    fn lead(&mut self) {
        self.peer.campaign();
        self.drive();
        assert!(self.peer.is_leader());
        let key = self.peer.meta().start.clone();
        let key = if key.is_empty() { b("x") } else { key };
        assert!(self
            .peer
            .read(&RequestBody::Get { key }, &mut self.store)
            .is_ok());
    }

    /// One pass of the shell's loop; false if there was nothing to do.
    fn pass(&mut self) -> bool {
        let Some(p) = self.peer.collect_ready(&mut self.wal, &mut self.store) else {
            return false;
        };
        self.durable = self.wal.records.len();
        let out = self.peer.on_persisted(p, &mut self.store);
        assert!(out.messages.is_empty(), "a single voter sends nothing");
        for (token, answer) in out.finished {
            assert!(
                self.answers.insert(token, answer).is_none(),
                "token {token} answered twice"
            );
        }
        true
    }

    fn drive(&mut self) {
        let mut passes = 0;
        while self.pass() {
            passes += 1;
            assert!(passes < 1000, "the peer never goes idle");
        }
    }

    fn propose(&mut self, body: RequestBody) -> ProposalToken {
        let token = self.next_token;
        self.next_token += 1;
        self.peer.propose(body, token).unwrap();
        token
    }

    /// Proposes, drives, and returns the answer.
    fn write(&mut self, body: RequestBody) -> Answer {
        let token = self.propose(body);
        self.drive();
        self.answers.get(&token).cloned().expect("answered")
    }

    fn durable_records(&self) -> Vec<(RecordKind, Vec<u8>)> {
        self.records(self.durable)
    }

    fn records(&self, len: usize) -> Vec<(RecordKind, Vec<u8>)> {
        self.wal.records[..len]
            .iter()
            .map(|(kind, region, payload)| {
                assert_eq!(*region, REGION);
                (*kind, payload.clone())
            })
            .collect()
    }

    /// Crashes (losing every record after `keep` and what the store did
    /// not flush) and recovers.
    fn crash_keeping(&mut self, keep: usize) {
        assert!(keep >= self.durable);
        self.wal.records.truncate(keep);
        self.durable = keep;
        self.store.crash();
        self.peer = RegionPeer::recover(self.cfg.clone(), self.records(keep), &mut self.store)
            .unwrap_or_else(|e| {
                panic!(
                    "recovery failed: {e}\nrecords: {:?}",
                    self.records(keep)
                        .iter()
                        .map(|(k, p)| match k {
                            RecordKind::Entries => format!(
                                "E{:?}",
                                records::decode_entries(p)
                                    .unwrap()
                                    .iter()
                                    .map(|e| e.index)
                                    .collect::<Vec<_>>()
                            ),
                            RecordKind::LogStart =>
                                format!("S{:?}", records::decode_log_start(p).unwrap()),
                            k => format!("{k:?}"),
                        })
                        .collect::<Vec<_>>()
                )
            });
        // Recovery completes when the committed entries after the store's
        // persisted index are applied again.
        self.drive();
    }

    /// What the shell does to delete WAL segments: a checkpoint at the
    /// store's persisted applied index, synced; then every record before
    /// the first one holding an entry past that index goes (here any
    /// record prefix may go; real segments are coarser).
    fn checkpoint_and_truncate(&mut self) {
        let persisted = self.store.persisted_applied(REGION);
        let checkpoint_at = self.wal.records.len();
        assert_eq!(checkpoint_at, self.durable, "between passes");
        self.peer.write_checkpoint(persisted, &mut self.wal);
        self.durable = self.wal.records.len();
        let cut = self.wal.records[..checkpoint_at]
            .iter()
            .position(|(kind, _, payload)| {
                *kind == RecordKind::Entries
                    && records::decode_entries(payload)
                        .unwrap()
                        .iter()
                        .any(|e| e.index > persisted.get())
            })
            .unwrap_or(checkpoint_at);
        self.wal.records.drain(..cut);
        self.durable -= cut;
        assert_eq!(self.peer.log_start(), persisted.max(self.peer.log_start()));
    }

    fn restart(&mut self) {
        self.crash_keeping(self.durable);
    }

    fn state(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.store
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }
}

fn put(k: &str, v: &str) -> RequestBody {
    RequestBody::Put {
        key: b(k),
        value: b(v),
    }
}

fn get(k: &str) -> RequestBody {
    RequestBody::Get { key: b(k) }
}

fn value(v: &str) -> ResponseBody {
    ResponseBody::Get { value: Some(b(v)) }
}

#[test]
fn bootstrap_campaign_write_read() {
    let mut n = Node::new();
    assert!(!n.peer.is_leader());
    assert_eq!(n.peer.read(&get("a"), &mut n.store).unwrap_err().code(), 1);
    assert_eq!(n.peer.propose(put("a", "1"), 1).unwrap_err().code(), 1);

    n.peer.campaign();
    assert!(n.peer.is_leader(), "a single voter wins at once");
    // Not serving until the leader's empty entry applied.
    assert!(matches!(
        n.peer.read(&get("a"), &mut n.store),
        Err(GolemError::ServerBusy { .. })
    ));
    n.drive();
    assert_eq!(n.peer.applied_index().get(), RAFT_INIT_LOG_INDEX + 1);
    assert_eq!(n.peer.term().get(), RAFT_INIT_LOG_TERM + 1);
    assert_eq!(n.peer.leader_id(), Some(PEER));

    assert_eq!(n.write(put("a", "1")), Ok(ResponseBody::Put));
    assert_eq!(n.peer.read(&get("a"), &mut n.store), Ok(value("1")));
    assert_eq!(
        n.write(RequestBody::CompareAndSwap {
            key: b("a"),
            expected: Some(b("1")),
            new_value: Some(b("2")),
        }),
        Ok(ResponseBody::CompareAndSwap {
            swapped: true,
            previous: Some(b("1"))
        })
    );
    assert_eq!(
        n.write(RequestBody::BatchWrite {
            ops: vec![
                WriteOp::Put {
                    key: b("b"),
                    value: b("3")
                },
                WriteOp::Delete { key: b("a") },
            ]
        }),
        Ok(ResponseBody::BatchWrite)
    );
    assert_eq!(
        n.peer.read(
            &RequestBody::BatchGet {
                keys: vec![b("a"), b("b")]
            },
            &mut n.store
        ),
        Ok(ResponseBody::BatchGet {
            values: vec![None, Some(b("3"))]
        })
    );
    assert_eq!(
        n.write(RequestBody::Delete { key: b("b") }),
        Ok(ResponseBody::Delete)
    );
    assert!(n.store.is_empty());
    assert_eq!(n.peer.applied_index().get(), RAFT_INIT_LOG_INDEX + 5);
    assert_eq!(n.peer.pending_proposals(), 0);
}

#[test]
fn a_write_is_answered_after_one_sync() {
    let mut n = Node::new();
    n.lead();
    let t = n.propose(put("a", "1"));
    assert!(n.pass());
    assert_eq!(n.answers.get(&t), Some(&Ok(ResponseBody::Put)));
}

#[test]
fn many_writes_in_one_pass_and_during_syncs() {
    let mut n = Node::new();
    n.lead();
    let mut tokens = Vec::new();
    for i in 0..50 {
        tokens.push(n.propose(put(&format!("k{i:02}"), &i.to_string())));
    }
    // Proposals made between collect_ready and on_persisted (while the
    // shell awaits the sync) are legal.
    let p = n.peer.collect_ready(&mut n.wal, &mut n.store).unwrap();
    for i in 50..80 {
        tokens.push(n.propose(put(&format!("k{i:02}"), &i.to_string())));
    }
    n.peer.tick();
    n.durable = n.wal.records.len();
    let out = n.peer.on_persisted(p, &mut n.store);
    for (token, answer) in out.finished {
        assert!(n.answers.insert(token, answer).is_none());
    }
    n.drive();
    for t in &tokens {
        assert_eq!(n.answers.get(t), Some(&Ok(ResponseBody::Put)), "token {t}");
    }
    assert_eq!(n.answers.len(), tokens.len());
    assert_eq!(n.store.len(), 80);
    assert_eq!(n.peer.applied_index().get(), RAFT_INIT_LOG_INDEX + 81);
    // Applied entries beyond the cache limit are dropped from memory.
    assert!(n.peer.cached_entries() <= n.cfg.entry_cache_entries_max);
}

#[test]
fn restart_recovers_the_same_state_and_continues_the_log() {
    let mut n = Node::new();
    n.lead();
    for i in 0..30 {
        n.write(put(&format!("k{i}"), &format!("v{i}"))).unwrap();
    }
    n.write(RequestBody::Delete { key: b("k3") }).unwrap();
    let before = n.state();
    let last = n.peer.last_index().get();
    let term = n.peer.term().get();

    n.restart();
    assert_eq!(n.state(), before, "committed entries replayed on recovery");
    assert_eq!(n.peer.last_index().get(), last);
    assert!(!n.peer.is_leader());
    assert!(n.peer.cached_entries() <= n.cfg.entry_cache_entries_max);

    n.lead();
    assert_eq!(n.peer.term().get(), term + 1);
    // The new leader's empty entry, then the new write.
    assert_eq!(n.peer.last_index().get(), last + 1);
    n.write(put("new", "1")).unwrap();
    assert_eq!(n.peer.last_index().get(), last + 2);
    assert_eq!(n.peer.applied_index().get(), last + 2);
    assert_eq!(n.peer.read(&get("new"), &mut n.store), Ok(value("1")));
    assert_eq!(n.peer.read(&get("k29"), &mut n.store), Ok(value("v29")));

    // Twice, to replay a WAL with two terms and superseding runs.
    let before = n.state();
    n.restart();
    n.lead();
    assert_eq!(n.state(), before);
}

#[test]
fn an_unsynced_proposal_is_lost_by_a_crash() {
    let mut n = Node::new();
    n.lead();
    n.write(put("kept", "1")).unwrap();
    let t = n.propose(put("lost", "1"));
    let _pending = n.peer.collect_ready(&mut n.wal, &mut n.store).unwrap();
    assert!(n.wal.records.len() > n.durable, "the entry was appended");
    // Crash before the sync: the appended records are gone.
    n.restart();
    assert!(!n.answers.contains_key(&t));
    n.lead();
    assert_eq!(
        n.peer.read(&get("lost"), &mut n.store),
        Ok(ResponseBody::Get { value: None })
    );
    assert_eq!(n.peer.read(&get("kept"), &mut n.store), Ok(value("1")));
}

#[test]
fn a_torn_tail_keeps_a_prefix_and_recovery_is_consistent() {
    // Crash after every possible prefix of an unsynced pass.
    let mut base = Node::new();
    base.lead();
    base.write(put("a", "1")).unwrap();
    base.propose(put("a", "2"));
    base.propose(put("b", "2"));
    let _pending = base
        .peer
        .collect_ready(&mut base.wal, &mut base.store)
        .unwrap();
    let appended = base.wal.records.len();
    for keep in base.durable..=appended {
        let mut n = Node {
            cfg: base.cfg.clone(),
            wal: base.wal.clone(),
            store: base.store.clone(),
            durable: base.durable,
            peer: RegionPeer::recover(
                base.cfg.clone(),
                base.records(base.durable),
                &mut base.store.clone(),
            )
            .unwrap(),
            answers: HashMap::new(),
            next_token: 100,
        };
        n.crash_keeping(keep);
        n.lead();
        // Unacknowledged writes may survive, but only whole and in order.
        let a = n.peer.read(&get("a"), &mut n.store).unwrap();
        let b_ = n.peer.read(&get("b"), &mut n.store).unwrap();
        let absent = ResponseBody::Get { value: None };
        let ok = (b_ == absent && (a == value("1") || a == value("2")))
            || (a == value("2") && b_ == value("2"));
        assert!(ok, "keep {keep}: a={a:?} b={b_:?}");
    }
}

#[test]
fn a_deposed_leaders_proposal_waits_for_the_log_to_decide() {
    let mut n = Node::new();
    n.lead();
    n.write(put("a", "1")).unwrap();
    let t = n.propose(put("a", "2"));
    // A message from a (hypothetical) leader of a later term demotes us.
    let msg = Message {
        msg_type: MessageType::MsgHeartbeat,
        from: 2,
        to: PEER.get(),
        term: 9,
        ..Default::default()
    };
    n.peer.step(msg).unwrap();
    assert!(!n.peer.is_leader());
    let p = n.peer.collect_ready(&mut n.wal, &mut n.store).unwrap();
    n.durable = n.wal.records.len();
    let out = n.peer.on_persisted(p, &mut n.store);
    // The entry may still commit: no answer yet (NotLeader would invite a
    // retry of a write that may take effect).
    assert!(out.finished.is_empty());
    assert_eq!(n.peer.pending_proposals(), 1);
    assert!(!out.messages.is_empty(), "the heartbeat is answered");
    assert!(!n.peer.has_ready());
    assert_eq!(n.peer.read(&get("a"), &mut n.store).unwrap_err().code(), 1);

    // Leading again commits the old entry: its proposal gets its result.
    n.lead();
    assert!(n.peer.term().get() > 9);
    assert_eq!(n.peer.read(&get("a"), &mut n.store), Ok(value("2")));
    assert_eq!(n.answers.get(&t), Some(&Ok(ResponseBody::Put)));
}

#[test]
fn proposals_sharing_an_index_are_decided_when_it_applies() {
    let mut n = Node::new();
    n.lead();
    n.write(put("a", "1")).unwrap();
    let t = n.propose(put("a", "2"));
    // Pretend `t` was proposed in an older term at the next index (its
    // entry since cut from this log, maybe held by another replica). A new
    // proposal lands at that index: neither is decided until it applies.
    let index = n.peer.last_index().get();
    n.peer.proposals[0].index = index + 1;
    n.peer.proposals[0].term -= 1;
    let t2 = n.propose(put("b", "1"));
    assert_eq!(n.peer.proposals.len(), 2);
    assert!(n.peer.proposals.iter().all(|p| p.index == index + 1));
    n.drive();
    // The entry at index + 1 applied with the current term: t2's.
    assert_eq!(n.answers[&t].as_ref().unwrap_err().code(), 1);
    assert_eq!(n.answers[&t2], Ok(ResponseBody::Put));
}

#[test]
fn an_overwritten_proposal_answers_not_leader() {
    let mut n = Node::new();
    n.lead();
    let t = n.propose(put("a", "1"));
    // Pretend the proposal was made in an older term whose entry at this
    // index was overwritten.
    n.peer.proposals[0].term -= 1;
    n.drive();
    assert_eq!(n.answers[&t].as_ref().unwrap_err().code(), 1);
    assert_eq!(
        n.peer.read(&get("a"), &mut n.store),
        Ok(value("1")),
        "the entry still applies"
    );
}

#[test]
fn keys_outside_the_region_are_rejected() {
    let meta = RegionMeta {
        id: REGION,
        start: b("c"),
        end: b("m"),
        epoch: RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
        peers: vec![me()],
    };
    let mut n = Node::bootstrap(cfg(), meta);
    n.lead();
    assert_eq!(n.peer.propose(put("z", "1"), 1).unwrap_err().code(), 4);
    assert_eq!(
        n.peer
            .propose(
                RequestBody::BatchWrite {
                    ops: vec![
                        WriteOp::Delete { key: b("d") },
                        WriteOp::Delete { key: b("a") }
                    ]
                },
                2
            )
            .unwrap_err()
            .code(),
        4
    );
    assert_eq!(n.peer.read(&get("b"), &mut n.store).unwrap_err().code(), 4);
    let scan = |start: &str, end: &str| RequestBody::Scan {
        start: b(start),
        end: b(end),
        limit: 10,
        reverse: false,
    };
    assert_eq!(
        n.peer
            .read(&scan("c", ""), &mut n.store)
            .unwrap_err()
            .code(),
        4
    );
    assert!(n.peer.read(&scan("c", "m"), &mut n.store).is_ok());
    // Limits and kinds are checked too.
    assert_eq!(n.peer.propose(put("", "1"), 3).unwrap_err().code(), 100);
    assert_eq!(n.peer.propose(get("d"), 4).unwrap_err().code(), 105);
    assert_eq!(
        n.peer
            .read(&put("d", "1"), &mut n.store)
            .unwrap_err()
            .code(),
        105
    );
    assert_eq!(n.peer.pending_proposals(), 0);
}

#[test]
fn ticks_elect_a_single_voter_and_keep_it_leader() {
    let mut n = Node::new();
    let max = n.cfg.election_ticks + n.cfg.election_jitter_ticks;
    for _ in 0..max {
        n.peer.tick();
    }
    assert!(n.peer.is_leader(), "elected after at most {max} ticks");
    n.drive();
    for _ in 0..10 * max {
        n.peer.tick();
        n.drive();
    }
    assert!(
        n.peer.is_leader(),
        "check_quorum keeps a single voter leading"
    );
    assert_eq!(n.peer.term().get(), RAFT_INIT_LOG_TERM + 1);
}

#[test]
fn recovery_rejects_bad_records_with_typed_errors() {
    let mut n = Node::new();
    n.lead();
    n.write(put("a", "1")).unwrap();
    let records = n.durable_records();

    let no_meta: Vec<_> = records
        .iter()
        .filter(|r| r.0 != RecordKind::RegionMeta)
        .cloned()
        .collect();
    assert!(matches!(
        RegionPeer::recover(cfg(), no_meta, &mut MemStore::new()),
        Err(CoreError::MissingRegionMeta { .. })
    ));

    for kind in [
        RecordKind::RegionMeta,
        RecordKind::Entries,
        RecordKind::HardState,
    ] {
        let mut bad = records.clone();
        let i = bad.iter().position(|r| r.0 == kind).unwrap();
        let half = bad[i].1.len() / 2;
        bad[i].1.truncate(half);
        assert!(
            matches!(
                RegionPeer::recover(cfg(), bad, &mut MemStore::new()),
                Err(CoreError::BadRecord { kind: k, .. }) if k == kind
            ),
            "{kind:?}"
        );
    }

    let mut other = cfg();
    other.region = RegionId(2);
    assert!(matches!(
        RegionPeer::recover(other, records.clone(), &mut MemStore::new()),
        Err(CoreError::InvalidMeta { .. })
    ));

    // Drop the first entries run: a gap.
    let mut gap = records.clone();
    let i = gap.iter().position(|r| r.0 == RecordKind::Entries).unwrap();
    gap.remove(i);
    assert!(matches!(
        RegionPeer::recover(cfg(), gap, &mut MemStore::new()),
        Err(CoreError::LogGap { .. })
    ));

    // A committed entry that is not a command.
    let entry = raft::eraftpb::Entry {
        index: 1,
        term: 1,
        data: vec![0xEE].into(),
        ..Default::default()
    };
    let hs = raft::eraftpb::HardState {
        term: 1,
        vote: 1,
        commit: 1,
        ..Default::default()
    };
    let forged = vec![
        records[0].clone(),
        (
            RecordKind::Entries,
            records::encode_entries(std::slice::from_ref(&entry)).remove(0),
        ),
        (RecordKind::HardState, records::encode_hard_state(&hs)),
    ];
    assert!(matches!(
        RegionPeer::recover(cfg(), forged, &mut MemStore::new()),
        Err(CoreError::BadEntry { .. })
    ));

    // An entry newer than the hard state's term: its Ready's hard state
    // was lost with a torn tail, so it was never acknowledged: cut.
    let mut newer = entry.clone();
    newer.term = 5;
    let forged = vec![
        records[0].clone(),
        (
            RecordKind::Entries,
            records::encode_entries(&[newer]).remove(0),
        ),
        (RecordKind::HardState, records::encode_hard_state(&hs)),
    ];
    let p = RegionPeer::recover(cfg(), forged, &mut MemStore::new()).unwrap();
    assert_eq!(p.last_index().get(), 0);

    // Terms that decrease along the log are corruption.
    let mut e2 = entry;
    e2.index = 2;
    e2.term = 0;
    let mut e1 = e2.clone();
    e1.index = 1;
    e1.term = 1;
    let forged = vec![
        records[0].clone(),
        (
            RecordKind::Entries,
            records::encode_entries(&[e1, e2]).remove(0),
        ),
        (RecordKind::HardState, records::encode_hard_state(&hs)),
    ];
    assert!(matches!(
        RegionPeer::recover(cfg(), forged, &mut MemStore::new()),
        Err(CoreError::CorruptLog { .. })
    ));
}

#[test]
fn checkpoints_let_old_records_go_and_recovery_starts_at_the_store() {
    let mut n = Node::new();
    n.lead();
    for i in 0..20 {
        n.write(put(&format!("k{i:02}"), "1")).unwrap();
    }
    n.store.flush();
    let persisted = n.store.persisted_applied(REGION);
    assert!(persisted.get() > 20);
    n.checkpoint_and_truncate();
    assert_eq!(n.peer.log_start(), persisted);
    // Every entries record up to the store's index is gone.
    assert!(!n
        .wal
        .records
        .iter()
        .any(|(kind, _, _)| *kind == RecordKind::Entries));
    for i in 20..30 {
        n.write(put(&format!("k{i:02}"), "2")).unwrap();
    }
    let before = n.state();
    n.restart();
    assert_eq!(n.state(), before, "entries after the log start replayed");
    n.lead();
    assert_eq!(n.peer.read(&get("k25"), &mut n.store), Ok(value("2")));
    assert_eq!(n.peer.read(&get("k05"), &mut n.store), Ok(value("1")));
}

#[test]
fn a_store_behind_the_log_start_or_past_the_log_is_a_typed_error() {
    let mut n = Node::new();
    n.lead();
    for i in 0..5 {
        n.write(put(&format!("k{i}"), "1")).unwrap();
    }
    n.store.flush();
    n.checkpoint_and_truncate();
    let records = n.durable_records();
    // A store that lost its data: behind the WAL's log start.
    assert!(matches!(
        RegionPeer::recover(cfg(), records.clone(), &mut MemStore::new()),
        Err(CoreError::StoreMismatch { .. })
    ));
    // A store ahead of the log: the WAL lost synced entries.
    let mut ahead = MemStore::new();
    ahead
        .write(
            crate::store::WriteBatch::new(),
            REGION,
            golem_wire::LogIndex(1000),
        )
        .unwrap();
    ahead.flush();
    assert!(matches!(
        RegionPeer::recover(cfg(), records, &mut ahead),
        Err(CoreError::StoreMismatch { .. })
    ));
}

#[test]
fn a_store_failure_stops_the_region_without_a_panic() {
    let mut n = Node::new();
    n.lead();
    n.write(put("a", "1")).unwrap();
    n.store.fail("fsync failed");
    let t = n.propose(put("b", "1"));
    n.drive();
    assert!(!n.answers.contains_key(&t), "never acknowledged");
    assert_eq!(n.peer.failure(), Some("fsync failed"));
    assert_eq!(
        n.peer.read(&get("a"), &mut n.store).unwrap_err().code(),
        201
    );
    assert!(n.peer.propose(put("c", "1"), 99).is_err());
}

#[test]
fn bootstrap_rejects_bad_config_and_meta() {
    let mut wal = VecSink::default();
    let mut bad = cfg();
    bad.election_ticks = bad.heartbeat_ticks;
    assert!(matches!(
        RegionPeer::bootstrap(
            bad,
            RegionMeta::whole_key_space(REGION, vec![me()]),
            &mut wal
        ),
        Err(CoreError::InvalidConfig { .. })
    ));
    // This peer must be a member.
    assert!(matches!(
        RegionPeer::bootstrap(
            cfg(),
            RegionMeta::whole_key_space(
                REGION,
                vec![PeerMeta::new(PeerId(2), StoreId(2), ShardId(0))]
            ),
            &mut wal
        ),
        Err(CoreError::InvalidMeta { .. })
    ));
    assert!(wal.records.is_empty(), "nothing written on error");
    // A replica of a new region with three voters starts as a follower.
    let three = RegionMeta::whole_key_space(
        REGION,
        vec![
            me(),
            PeerMeta::new(PeerId(2), StoreId(2), ShardId(0)),
            PeerMeta::new(PeerId(3), StoreId(3), ShardId(1)),
        ],
    );
    let p = RegionPeer::bootstrap(cfg(), three, &mut wal).unwrap();
    assert!(!p.is_leader());
    assert_eq!(wal.records.len(), 3);
}

// --- Model test: random operations and restarts against a BTreeMap ---

#[derive(Clone, Debug)]
enum Op {
    Write(RequestBody),
    Read(RequestBody),
    /// Clean restart: everything synced survives.
    Restart,
    /// A write is collected but the node crashes before the sync.
    CrashBeforeSync(RequestBody),
    /// The store makes what it applied durable.
    Flush,
    /// A checkpoint, then the WAL records it makes useless are deleted.
    Checkpoint,
    /// A write while the store stalls: unanswered until the stall ends.
    StalledWrite(RequestBody),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(b'a'..b'e', 1..3)
}

fn val() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(b'0'..b'3', 0..3)
}

fn write_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        4 => (key(), val()).prop_map(|(key, value)| RequestBody::Put { key, value }),
        2 => key().prop_map(|key| RequestBody::Delete { key }),
        2 => proptest::collection::vec(
            prop_oneof![
                (key(), val()).prop_map(|(key, value)| WriteOp::Put { key, value }),
                key().prop_map(|key| WriteOp::Delete { key }),
            ],
            1..4
        )
        .prop_map(|ops| RequestBody::BatchWrite { ops }),
        2 => (key(), proptest::option::of(val()), proptest::option::of(val())).prop_map(
            |(key, expected, new_value)| RequestBody::CompareAndSwap { key, expected, new_value }
        ),
    ]
}

fn read_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        key().prop_map(|key| RequestBody::Get { key }),
        proptest::collection::vec(key(), 1..4).prop_map(|keys| RequestBody::BatchGet { keys }),
        (
            proptest::collection::vec(b'a'..b'e', 0..3),
            proptest::collection::vec(b'a'..b'f', 0..3),
            1u32..8,
            any::<bool>()
        )
            .prop_filter("start <= end", |(s, e, _, _)| e.is_empty() || s <= e)
            .prop_map(|(start, end, limit, reverse)| RequestBody::Scan {
                start,
                end,
                limit,
                reverse
            }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => write_body().prop_map(Op::Write),
        6 => read_body().prop_map(Op::Read),
        1 => Just(Op::Restart),
        1 => write_body().prop_map(Op::CrashBeforeSync),
        2 => Just(Op::Flush),
        2 => Just(Op::Checkpoint),
        1 => write_body().prop_map(Op::StalledWrite),
    ]
}

/// The model's answer to a write, applied to `model`.
fn model_write(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, body: RequestBody) -> ResponseBody {
    let cmd = crate::command::Command::from_request(body).expect("a write");
    crate::test_model::apply(model, cmd)
}

fn model_read(model: &BTreeMap<Vec<u8>, Vec<u8>>, body: &RequestBody) -> ResponseBody {
    match body {
        RequestBody::Get { key } => ResponseBody::Get {
            value: model.get(key).cloned(),
        },
        RequestBody::BatchGet { keys } => ResponseBody::BatchGet {
            values: keys.iter().map(|k| model.get(k).cloned()).collect(),
        },
        RequestBody::Scan {
            start,
            end,
            limit,
            reverse,
        } => {
            let (pairs, more) = crate::test_model::scan(model, start, end, *limit, *reverse);
            ResponseBody::Scan { pairs, more }
        }
        other => panic!("not a read: {other:?}"),
    }
}

proptest! {
    #[test]
    fn random_operations_and_restarts_match_a_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut n = Node::new();
        n.lead();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Write(body) => {
                    let got = n.write(body.clone());
                    prop_assert_eq!(got, Ok(model_write(&mut model, body)));
                }
                Op::Read(body) => {
                    prop_assert_eq!(n.peer.read(&body, &mut n.store), Ok(model_read(&model, &body)));
                }
                Op::Restart => {
                    let last = n.peer.last_index().get();
                    n.restart();
                    n.lead();
                    prop_assert_eq!(n.peer.last_index().get(), last + 1);
                }
                Op::CrashBeforeSync(body) => {
                    let t = n.propose(body);
                    let _lost = n.peer.collect_ready(&mut n.wal, &mut n.store).unwrap();
                    n.restart();
                    n.lead();
                    prop_assert!(!n.answers.contains_key(&t));
                }
                Op::Flush => n.store.flush(),
                Op::Checkpoint => n.checkpoint_and_truncate(),
                Op::StalledWrite(body) => {
                    n.store.set_stalled(true);
                    let t = n.propose(body.clone());
                    for _ in 0..3 {
                        n.pass();
                    }
                    prop_assert!(n.peer.is_stalled());
                    prop_assert!(!n.answers.contains_key(&t));
                    n.store.set_stalled(false);
                    n.drive();
                    prop_assert_eq!(n.answers.get(&t).cloned(), Some(Ok(model_write(&mut model, body))));
                }
            }
            let want: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
            prop_assert_eq!(n.state(), want);
            prop_assert_eq!(n.peer.pending_proposals(), 0);
            prop_assert!(n.peer.cached_entries() <= n.cfg.entry_cache_entries_max);
        }
    }
}
