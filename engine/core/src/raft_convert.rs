//! Conversion between raft-rs's `eraftpb` types and their rkyv mirrors.
//!
//! Used by the nodes' region transport and by the PD (its own Raft group's
//! log and transport). Owns the transport and disk boundary of raft-rs:
//! outbound values are copied field by field into `golem_wire::raft` types;
//! inbound ones (already validated by bytecheck) are copied back, with enum
//! values checked. Nothing here ever calls protobuf's decoder
//! (RUSTSEC-2024-0437).

// Field-by-field assignment mirrors the protobuf schema line by line, which
// makes a missed field easy to spot in review.
#![allow(clippy::field_reassign_with_default)]

use golem_wire::raft::{RaftConfState, RaftEntry, RaftHardState, RaftMessage, RaftSnapshot};
use raft::eraftpb::{
    ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};

/// A mirrored value that is not a valid raft-rs value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("unknown raft message type {0}")]
    MessageType(u8),
    #[error("unknown raft entry type {0}")]
    EntryType(u8),
}

pub fn entry_to_wire(e: &Entry) -> RaftEntry {
    RaftEntry {
        entry_type: e.get_entry_type() as u8,
        term: e.term,
        index: e.index,
        data: e.data.to_vec(),
        context: e.context.to_vec(),
    }
}

pub fn entry_from_wire(e: &RaftEntry) -> Result<Entry, ConvertError> {
    let entry_type = match e.entry_type {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        other => return Err(ConvertError::EntryType(other)),
    };
    let mut out = Entry::default();
    out.set_entry_type(entry_type);
    out.term = e.term;
    out.index = e.index;
    out.data = e.data.clone().into();
    out.context = e.context.clone().into();
    Ok(out)
}

pub fn hard_state_to_wire(h: &HardState) -> RaftHardState {
    RaftHardState {
        term: h.term,
        vote: h.vote,
        commit: h.commit,
    }
}

pub fn hard_state_from_wire(h: &RaftHardState) -> HardState {
    let mut out = HardState::default();
    out.term = h.term;
    out.vote = h.vote;
    out.commit = h.commit;
    out
}

pub fn conf_state_to_wire(c: &ConfState) -> RaftConfState {
    RaftConfState {
        voters: c.voters.clone(),
        learners: c.learners.clone(),
        voters_outgoing: c.voters_outgoing.clone(),
        learners_next: c.learners_next.clone(),
        auto_leave: c.auto_leave,
    }
}

pub fn conf_state_from_wire(c: &RaftConfState) -> ConfState {
    let mut out = ConfState::default();
    out.voters = c.voters.clone();
    out.learners = c.learners.clone();
    out.voters_outgoing = c.voters_outgoing.clone();
    out.learners_next = c.learners_next.clone();
    out.auto_leave = c.auto_leave;
    out
}

pub fn snapshot_to_wire(s: &Snapshot) -> RaftSnapshot {
    let m = s.get_metadata();
    RaftSnapshot {
        data: s.data.to_vec(),
        conf_state: conf_state_to_wire(m.get_conf_state()),
        index: m.index,
        term: m.term,
    }
}

pub fn snapshot_from_wire(s: &RaftSnapshot) -> Snapshot {
    let mut meta = SnapshotMetadata::default();
    meta.set_conf_state(conf_state_from_wire(&s.conf_state));
    meta.index = s.index;
    meta.term = s.term;
    let mut out = Snapshot::default();
    out.data = s.data.clone().into();
    out.set_metadata(meta);
    out
}

pub fn message_to_wire(m: &Message) -> RaftMessage {
    RaftMessage {
        msg_type: m.get_msg_type() as u8,
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m.entries.iter().map(entry_to_wire).collect(),
        commit: m.commit,
        commit_term: m.commit_term,
        snapshot: m.snapshot.as_ref().map(snapshot_to_wire),
        request_snapshot: m.request_snapshot,
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context.to_vec(),
        deprecated_priority: m.deprecated_priority,
        priority: m.priority,
    }
}

fn message_type(v: u8) -> Result<MessageType, ConvertError> {
    use MessageType::*;
    Ok(match v {
        0 => MsgHup,
        1 => MsgBeat,
        2 => MsgPropose,
        3 => MsgAppend,
        4 => MsgAppendResponse,
        5 => MsgRequestVote,
        6 => MsgRequestVoteResponse,
        7 => MsgSnapshot,
        8 => MsgHeartbeat,
        9 => MsgHeartbeatResponse,
        10 => MsgUnreachable,
        11 => MsgSnapStatus,
        12 => MsgCheckQuorum,
        13 => MsgTransferLeader,
        14 => MsgTimeoutNow,
        15 => MsgReadIndex,
        16 => MsgReadIndexResp,
        17 => MsgRequestPreVote,
        18 => MsgRequestPreVoteResponse,
        other => return Err(ConvertError::MessageType(other)),
    })
}

pub fn message_from_wire(m: &RaftMessage) -> Result<Message, ConvertError> {
    let mut out = Message::default();
    out.set_msg_type(message_type(m.msg_type)?);
    out.to = m.to;
    out.from = m.from;
    out.term = m.term;
    out.log_term = m.log_term;
    out.index = m.index;
    out.entries = m
        .entries
        .iter()
        .map(entry_from_wire)
        .collect::<Result<Vec<_>, _>>()?
        .into();
    out.commit = m.commit;
    out.commit_term = m.commit_term;
    if let Some(s) = &m.snapshot {
        out.set_snapshot(snapshot_from_wire(s));
    }
    out.request_snapshot = m.request_snapshot;
    out.reject = m.reject;
    out.reject_hint = m.reject_hint;
    out.context = m.context.clone().into();
    out.deprecated_priority = m.deprecated_priority;
    out.priority = m.priority;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_type_round_trips() {
        for t in 0..=18u8 {
            let mut m = Message::default();
            m.set_msg_type(message_type(t).unwrap());
            m.to = 2;
            m.from = 1;
            m.term = 7;
            m.priority = -3;
            let mut e = Entry::default();
            e.index = 5;
            e.term = 7;
            e.data = b"d".to_vec().into();
            e.set_entry_type(EntryType::EntryConfChangeV2);
            m.entries = vec![e].into();
            let mut s = Snapshot::default();
            s.data = b"snap".to_vec().into();
            s.mut_metadata().index = 3;
            s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
            m.set_snapshot(s);
            let w = message_to_wire(&m);
            assert_eq!(w.msg_type, t);
            assert_eq!(message_from_wire(&w).unwrap(), m);
        }
        let bad = RaftMessage {
            msg_type: 19,
            ..Default::default()
        };
        assert_eq!(message_from_wire(&bad), Err(ConvertError::MessageType(19)));
    }
}
