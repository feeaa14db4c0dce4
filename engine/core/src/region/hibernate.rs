//! Hibernation of idle regions: no ticks, no heartbeats, until traffic.
//!
//! Owns the decision to stop and restart a region's clock. A leader whose
//! region has been quiet for `hibernate_after_ticks` (nothing to propose,
//! apply or read; every member has every entry) sends each member a last
//! heartbeat marked `HIBERNATE_CONTEXT` and stops ticking. A member that
//! receives it from its leader, in its term, with its own log complete and
//! committed, stops ticking too. Anything else wakes a region: a proposal,
//! a read, a membership or leadership request, any other Raft message, or
//! `wake()` from the shell (a client request reached a follower). A waking
//! leader broadcasts a heartbeat at once, which wakes its members.
//!
//! Why it is safe: hibernation only stops time. A hibernating leader does
//! not renew its lease (reads then need a ReadIndex round, which wakes the
//! region) and is never deposed by its own `check_quorum` while asleep; a
//! member that does not tick never starts an election, so a region whose
//! leader died while everyone slept stays leaderless until a request or a
//! message wakes a member, which then elects after an election timeout —
//! exactly TiKV's hibernate-regions trade-off (idle regions cost nothing;
//! the first request after a leader's death waits one election).
//!
//! Invariants: a hibernating peer's `tick` does nothing; the marker
//! heartbeat carries the leader's term and a commit index every member
//! already has, so raft-rs handles it as an ordinary heartbeat; an
//! uninitialized replica or a region in a joint configuration never
//! hibernates.

use super::peer::RegionPeer;
use raft::eraftpb::{Message, MessageType};
use raft::StateRole;

/// The context of the heartbeat a leader sends before it hibernates.
pub const HIBERNATE_CONTEXT: &[u8] = b"golem:hibernate";

impl RegionPeer {
    /// Whether the region's clock is stopped (see the module docs).
    pub fn is_hibernating(&self) -> bool {
        self.hibernating
    }

    /// Restarts the region's clock (traffic arrived). A leader tells its
    /// members at once with a heartbeat.
    pub fn wake(&mut self) {
        self.quiet_ticks = 0;
        if !self.hibernating {
            return;
        }
        self.hibernating = false;
        if self.is_leader() {
            self.raw.ping();
        }
    }

    /// Called by `tick` when the region is awake: counts quiet ticks and
    /// puts an idle leader to sleep.
    pub(crate) fn consider_hibernating(&mut self) {
        if self.cfg.hibernate_after_ticks == 0 || !self.leader_is_quiet() {
            self.quiet_ticks = 0;
            return;
        }
        self.quiet_ticks += 1;
        if self.quiet_ticks < self.cfg.hibernate_after_ticks {
            return;
        }
        let raft = &self.raw.raft;
        let (term, commit, me) = (raft.term, raft.raft_log.committed, self.cfg.peer.get());
        let others: Vec<u64> = raft
            .prs()
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != me)
            .collect();
        for to in others {
            let mut m = Message::default();
            m.set_msg_type(MessageType::MsgHeartbeat);
            m.to = to;
            m.from = me;
            m.term = term;
            m.commit = commit;
            m.context = HIBERNATE_CONTEXT.to_vec().into();
            self.extra_messages.push(m);
        }
        self.hibernating = true;
        tracing::debug!(region = %self.meta.id, term, commit, "leader hibernates");
    }

    /// A leader's region is quiet: nothing pending here, and every member
    /// has (matched) every entry, which is committed and applied.
    fn leader_is_quiet(&self) -> bool {
        let raft = &self.raw.raft;
        let log = &raft.raft_log;
        let last = log.last_index();
        raft.state == StateRole::Leader
            && self.initialized
            && self.applying_snapshot.is_none()
            && self.proposals.is_empty()
            && self.unapplied.is_empty()
            && self.read_states.is_empty()
            && self.finished.is_empty()
            && log.committed == last
            && log.applied == last
            && self.applied_term == raft.term
            && !raft.has_pending_conf()
            && raft.prs().conf().to_conf_state().voters_outgoing.is_empty()
            && raft.lead_transferee.is_none()
            && raft.prs().iter().all(|(_, pr)| pr.matched == last)
    }

    /// Called by `step` after raft-rs handled a leader's marker heartbeat:
    /// the member sleeps if it is up to date with that leader.
    pub(crate) fn follow_into_hibernation(&mut self, from: u64, term: u64) {
        let raft = &self.raw.raft;
        let log = &raft.raft_log;
        if self.cfg.hibernate_after_ticks > 0
            && self.initialized
            && raft.state != StateRole::Leader
            && raft.leader_id == from
            && raft.term == term
            && log.committed == log.last_index()
            && self.applying_snapshot.is_none()
        {
            self.hibernating = true;
            self.quiet_ticks = 0;
        }
    }
}

/// Whether `m` is a leader's hibernation marker.
pub(crate) fn is_marker(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgHeartbeat && m.context.as_ref() == HIBERNATE_CONTEXT
}
