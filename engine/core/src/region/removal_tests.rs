//! A leader that commits its own removal and is dropped before the others
//! learn the commit index (golem-sim FINDINGS.md #9), replayed exactly with
//! the `membership_tests` harness, and the way out: the removed replica's
//! notice (`removal.rs`). Also: a learner that hears from no leader asks
//! the voters whether it is still a member (#11).

use super::membership_tests::{change, change_peers, Cluster};
use super::removal::LEARNER_SILENT_ELECTIONS_MAX;
use super::RegionPeer;
use golem_wire::PeerChangeKind;
use raft::eraftpb::MessageType;

/// Voters {1, 2, 3, 4} with 3 down; 2 wins an election while its log holds
/// leader 1's `Remove 2`, commits it with 1 and 4, applies it and is
/// dropped, and its last messages (the new commit index) are lost. Returns
/// the cluster and the removal entry `(index, term)`.
fn stranded() -> (Cluster, u64, u64) {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.write(0);
    c.change(vec![change(PeerChangeKind::AddLearner, 4)]);
    c.tick(10);
    c.change(vec![change(PeerChangeKind::AddVoter, 4)]);
    c.tick(2);
    c.write(1);

    // Store 3 dies: every quorum of {1, 2, 3, 4} needs 1, 2 and 4.
    c.cut.insert(3);
    c.propose(change_peers(vec![change(PeerChangeKind::Remove, 2)]))
        .unwrap();
    // The entry reaches 2 and 4; only 2's acknowledgement reaches 1, so 1
    // does not commit it.
    c.round();
    c.cut.insert(4);
    c.round();
    c.cut.remove(&4);
    let removal_index = c.members[&1].peer.last_index().get();
    for id in [1, 2, 4] {
        let log = &c.members[&id].peer.raw.raft.raft_log;
        assert_eq!(log.last_index(), removal_index, "peer {id} holds the entry");
        assert!(
            log.committed < removal_index,
            "peer {id} has not committed it"
        );
    }
    // 2 takes over (its log is as complete as anyone's), commits the
    // entry with 1 and 4 and applies its own removal; the messages that
    // carried the new commit index are lost.
    // 2's store already holds what it applied durably, so it applies its
    // removal at once (else it would first wait for a flush, FINDINGS #12,
    // and its heartbeats meanwhile would carry the commit index).
    c.member(2).store.flush();
    c.member(1)
        .peer
        .transfer_leadership_to(golem_wire::PeerId(2));
    c.lose_removed_messages = true;
    c.settle();
    let m2 = &c.members[&2].peer;
    assert!(m2.is_removed(), "2 applied its own removal");
    let (index, term) = m2.removed_by().expect("removed by an entry");
    assert_eq!(index, removal_index);
    for id in [1, 4] {
        let p = &c.members[&id].peer;
        assert!(!p.is_removed());
        assert!(
            p.raw.raft.raft_log.committed < index,
            "peer {id} never learned the commit"
        );
        assert!(p.meta().peer(golem_wire::PeerId(2)).is_some());
    }
    (c, index, term)
}

fn leaders(c: &Cluster, ids: &[u64]) -> Vec<u64> {
    ids.iter()
        .copied()
        .filter(|id| c.members[id].peer.is_leader())
        .collect()
}

#[test]
fn a_region_stranded_by_a_lost_commit_recovers_through_the_removal_notice() {
    let (mut c, index, _) = stranded();
    // Without the notice: 1 and 4 still count {1, 2, 3, 4}, need 3 votes
    // and have 2. No leader, however long they try.
    c.tick(200);
    assert_eq!(leaders(&c, &[1, 4]), Vec::<u64>::new());
    assert!(c.members[&1].peer.raw.raft.raft_log.committed < index);

    // The removed replica's store answers their vote requests with the
    // entry that removed it: they commit it, apply it, and {1, 3, 4}
    // elects with 1 and 4.
    c.removal_notices = true;
    c.tick(60);
    for id in [1, 4] {
        let p = &c.members[&id].peer;
        assert!(
            p.applied_index() >= golem_wire::LogIndex(index),
            "peer {id}"
        );
        assert_eq!(p.meta().peer(golem_wire::PeerId(2)), None, "peer {id}");
        assert_eq!(p.meta().peers.len(), 3, "peer {id}");
    }
    assert_eq!(leaders(&c, &[1, 4]).len(), 1);
    c.write(2);
    assert_eq!(c.members[&1].state(), c.members[&4].state());
}

#[test]
fn a_removal_notice_commits_only_the_entry_this_log_holds() {
    let (mut c, index, term) = stranded();
    let committed = |c: &Cluster| c.members[&1].peer.raw.raft.raft_log.committed;
    let before = committed(&c);
    let p = &mut c.member(1).peer;
    // Another term at that index, or an index past the log: not this
    // log's entry.
    assert!(!p.learn_removal_committed(index, term + 1));
    assert!(!p.learn_removal_committed(index, term - 1));
    assert!(!p.learn_removal_committed(index + 1, term));
    assert_eq!(committed(&c), before);
    // The entry itself: committed, once.
    let p = &mut c.member(1).peer;
    assert!(p.learn_removal_committed(index, term));
    assert!(!p.learn_removal_committed(index, term));
    assert_eq!(committed(&c), index);
    // An earlier entry is already committed: nothing moves.
    assert!(!c.member(1).peer.learn_removal_committed(before, term));
    assert_eq!(committed(&c), index);
}

#[test]
fn a_removed_or_uninitialized_replica_ignores_notices() {
    let (mut c, index, term) = stranded();
    assert!(!c.member(2).peer.learn_removal_committed(index, term));
    let mut empty = RegionPeer::uninitialized(crate::region::PeerConfig::new(
        super::membership_tests::REGION,
        golem_wire::PeerId(9),
    ))
    .unwrap();
    assert!(!empty.learn_removal_committed(index, term));
}

/// Ticks only `id` `n` times, then runs its `Ready`: the stale-peer
/// questions it sent (term-0 `MsgHeartbeatResponse`s), by recipient.
fn questions_after_ticks(c: &mut Cluster, id: u64, n: usize) -> Vec<u64> {
    let m = c.member(id);
    for _ in 0..n {
        m.peer.tick();
    }
    let mut to = Vec::new();
    if let Some(p) = m.peer.collect_ready(&mut m.wal, &mut m.store) {
        let out = m.peer.on_persisted(p, &mut m.store);
        to.extend(
            out.messages
                .iter()
                .filter(|msg| {
                    msg.get_msg_type() == MessageType::MsgHeartbeatResponse && msg.term == 0
                })
                .map(|msg| msg.to),
        );
    }
    to.sort_unstable();
    to
}

#[test]
fn a_silent_learner_asks_the_voters_whether_it_is_still_a_member() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.write(0);
    c.change(vec![change(PeerChangeKind::AddLearner, 4)]);
    c.tick(10);
    assert!(c.members[&4].peer.is_initialized());
    // Cut off, the learner hears from no leader: after
    // LEARNER_SILENT_ELECTIONS_MAX election timeouts (not before) it asks
    // every voter once, and again after as many more.
    c.cut.insert(4);
    c.settle();
    let period = c.members[&4].peer.config().election_ticks * LEARNER_SILENT_ELECTIONS_MAX;
    let elapsed = c.members[&4].peer.raw.raft.election_elapsed;
    assert!(elapsed < period);
    let before = period - elapsed - 1;
    assert_eq!(questions_after_ticks(&mut c, 4, before), Vec::<u64>::new());
    assert_eq!(questions_after_ticks(&mut c, 4, 1), vec![1, 2, 3]);
    assert_eq!(
        questions_after_ticks(&mut c, 4, period - 1),
        Vec::<u64>::new()
    );
    assert_eq!(questions_after_ticks(&mut c, 4, 1), vec![1, 2, 3]);
    // A voter never asks (it campaigns, and members answer that).
    c.cut.insert(3);
    assert_eq!(
        questions_after_ticks(&mut c, 3, 3 * period),
        Vec::<u64>::new()
    );

    // The question is harmless to members that still list it: healed,
    // the leader steps it and the region goes on.
    c.cut.clear();
    let m = c.member(4);
    for _ in 0..period {
        m.peer.tick();
    }
    c.settle();
    c.tick(30);
    c.write(1);
    assert_eq!(c.members[&4].state(), c.members[&1].state());
}
