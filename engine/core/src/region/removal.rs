//! A removed replica's last word: "the entry that removed me is committed".
//!
//! Owns `removed_by` (the entry whose apply removed this replica, kept in
//! its tombstone by the shell) and `learn_removal_committed`, what a member
//! does with a removed replica's notice.
//!
//! Why it exists (golem-sim FINDINGS.md #9): a leader may commit the entry
//! that removes itself (it won an election while its log held the entry),
//! apply it and be dropped before the others learn the new commit index. If
//! those last messages are lost, the members still run the old
//! configuration, which counts the removed replica: with one other voter
//! down they can never win an election again. So the shell keeps the
//! removal's `(index, term)` in the tombstone, and answers a message to the
//! removed peer id with a notice naming it; the member advances its commit
//! index to it if its own log holds that entry, applies the removal, leaves
//! the old configuration and can elect.
//!
//! Why it is safe: the entry was committed (the removed replica applied
//! it), and committed is a fact of the region's one log: by Log Matching,
//! a log holding an entry with the same index and term holds the same
//! entries up to it, so every one of them is committed too (raft-rs's
//! `match_term` / `commit_to`, as a heartbeat's commit would do). A log
//! without that entry (or with another term at that index) learns nothing.
//!
//! Also here: a learner that has heard from no leader for
//! `LEARNER_SILENT_ELECTIONS_MAX` election timeouts asks the voters it
//! knows whether it is still a member (TiKV's `MsgCheckStalePeer`). A voter
//! that misses its removal campaigns, and members answer its vote requests
//! with a `gc` notice; a learner never campaigns, so without this a removed
//! learner that missed its removal stays for good, and its range blocks the
//! snapshot of any region that later gets a replica on its store (golem-sim
//! FINDINGS.md #11). The question is a `MsgHeartbeatResponse` of term 0:
//! a member that no longer lists the learner, at a newer `conf_ver`,
//! answers it with a `gc` notice (the shell's rule); one that still lists
//! it steps it harmlessly (a leader marks the learner active and sends it
//! what it lacks; others ignore it; term 0 moves no term).
//!
//! Invariants: the commit index only grows, never past the last index, and
//! only to an entry this log holds with the named term; a removed or
//! uninitialized replica ignores notices; a learner asks at most once per
//! `LEARNER_SILENT_ELECTIONS_MAX` election timeouts.

use super::peer::RegionPeer;
use golem_wire::PeerId;
use raft::eraftpb::{Message, MessageType};

/// Election timeouts a learner waits without hearing from a leader before
/// it asks the voters it knows whether it is still a member (and again
/// after as many more).
pub const LEARNER_SILENT_ELECTIONS_MAX: usize = 3;

impl RegionPeer {
    /// The entry `(index, term)` whose apply removed this replica; None
    /// while it is a member (or when the removal came from a member's `gc`
    /// notice, not from an entry this replica applied).
    pub fn removed_by(&self) -> Option<(u64, u64)> {
        self.removed_by
    }

    /// A removed replica's notice that the entry `(index, term)` (its
    /// removal) is committed. Advances the commit index to `index` if this
    /// log holds that entry with that term and has not committed it yet;
    /// the next `Ready` then applies up to it. Returns whether the commit
    /// index moved (false: already committed, or not this log's entry).
    pub fn learn_removal_committed(&mut self, index: u64, term: u64) -> bool {
        if self.removed || !self.initialized {
            return false;
        }
        let log = &mut self.raw.raft.raft_log;
        if index <= log.committed || index > log.last_index() || !log.match_term(index, term) {
            return false;
        }
        log.commit_to(index);
        tracing::info!(
            region = %self.meta.id,
            peer = %self.cfg.peer,
            index,
            term,
            "commit index learned from a removed replica's notice"
        );
        self.wake();
        true
    }

    /// Called by `tick`: a learner silent for `LEARNER_SILENT_ELECTIONS_MAX`
    /// election timeouts queues a stale-peer question to every voter it
    /// knows (sent with the next `Ready`). See the module documentation.
    pub(crate) fn check_stale_learner(&mut self) {
        let raft = &self.raw.raft;
        if !self.initialized || self.removed || raft.promotable() {
            return;
        }
        let period = self.cfg.election_ticks * LEARNER_SILENT_ELECTIONS_MAX;
        if period == 0
            || raft.election_elapsed == 0
            || !raft.election_elapsed.is_multiple_of(period)
        {
            return;
        }
        let me = self.cfg.peer;
        let voters: Vec<PeerId> = self
            .meta
            .peers
            .iter()
            .filter(|p| p.id != me && p.role != super::PeerRole::Learner)
            .map(|p| p.id)
            .collect();
        tracing::debug!(region = %self.meta.id, peer = %me, "learner silent for long: asking the voters whether it is still a member");
        for to in voters {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgHeartbeatResponse);
            m.from = me.get();
            m.to = to.get();
            self.extra_messages.push(m);
        }
    }
}
