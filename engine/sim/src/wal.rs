//! `SimWal`: one node's WAL as an in-memory record list with a durability
//! mark.
//!
//! Owns the records the node's region peers appended (`WalSink`), the mark
//! `durable` (records before it survive any crash), and per region the log
//! those records describe (index → entry, the record written last wins),
//! which the simulator reads for fetches of old entries and to identify
//! applied entries for the checkers.
//!
//! Fault model: a crash keeps `records[..durable]` and, when asked, a
//! prefix of the unsynced tail (a write that reached the disk partly, in
//! order) — never a record past a lost one. Deleting segments is modelled
//! as cutting a prefix of records after a synced checkpoint.
//!
//! Invariants: `durable <= records.len()`; `logs` always equals the replay
//! of `records` (rebuilt after every crash and cut); nothing here decides
//! what to write: the region peers do.

use crate::check::applied::EntryId;
use crate::hash::Fnv;
use golem_core::region::records::decode_entries;
use golem_core::wal_record::{RecordKind, WalSink};
use golem_wire::RegionId;
use raft::eraftpb::Entry;
use std::collections::BTreeMap;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SimWal {
    records: Vec<(RecordKind, RegionId, Vec<u8>)>,
    durable: usize,
    logs: BTreeMap<RegionId, BTreeMap<u64, Entry>>,
}

impl WalSink for SimWal {
    fn append(&mut self, kind: RecordKind, region: RegionId, payload: &[u8]) {
        if kind == RecordKind::Entries {
            self.index(region, payload);
        }
        self.records.push((kind, region, payload.to_vec()));
    }
}

/// The identity of an entry, for the applied-entries checker.
pub fn entry_id(e: &Entry) -> EntryId {
    let mut h = Fnv::default();
    h.write_u64(e.get_entry_type() as u64);
    h.write(&e.data);
    EntryId {
        term: e.term,
        hash: h.finish(),
    }
}

impl SimWal {
    fn index(&mut self, region: RegionId, payload: &[u8]) {
        // The peers encoded this payload a moment ago (or recovery accepted
        // it): it decodes.
        let run = decode_entries(payload).expect("an entries record written by a peer");
        let Some(first) = run.first().map(|e| e.index) else {
            return;
        };
        let log = self.logs.entry(region).or_default();
        log.split_off(&first);
        log.extend(run.into_iter().map(|e| (e.index, e)));
    }

    fn reindex(&mut self) {
        self.logs.clear();
        let records = std::mem::take(&mut self.records);
        for (kind, region, payload) in &records {
            if *kind == RecordKind::Entries {
                self.index(*region, payload);
            }
        }
        self.records = records;
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was ever kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records `[..durable()]` survive any crash.
    pub fn durable(&self) -> usize {
        self.durable
    }

    /// A sync covering `records[..upto]` returned.
    pub fn mark_durable(&mut self, upto: usize) {
        assert!(upto <= self.records.len(), "sync past the appended records");
        self.durable = self.durable.max(upto);
    }

    /// A crash: keeps the durable records and the first `tail` unsynced
    /// ones, loses the rest.
    pub fn crash(&mut self, tail: usize) {
        let keep = (self.durable + tail).min(self.records.len());
        self.records.truncate(keep);
        self.durable = keep;
        self.reindex();
    }

    /// The regions with records, in id order.
    pub fn regions(&self) -> Vec<RegionId> {
        let set: std::collections::BTreeSet<RegionId> =
            self.records.iter().map(|(_, r, _)| *r).collect();
        set.into_iter().collect()
    }

    /// The records of `region`, in write order, as recovery reads them.
    pub fn region_records(&self, region: RegionId) -> Vec<(RecordKind, Vec<u8>)> {
        self.records
            .iter()
            .filter(|(_, r, _)| *r == region)
            .map(|(k, _, p)| (*k, p.clone()))
            .collect()
    }

    /// A one-line-per-record summary of `region`'s records, for failure
    /// reports: `E[first..=last]t<terms>`, `H(term,vote,commit)`,
    /// `S(index,term)` (log start), `M` (metadata).
    pub fn describe_region(&self, region: RegionId) -> String {
        use golem_core::region::records::{decode_hard_state, decode_log_start};
        let mut out = String::new();
        for (i, (kind, r, payload)) in self.records.iter().enumerate() {
            if *r != region {
                continue;
            }
            let what = match kind {
                RecordKind::Entries => match decode_entries(payload) {
                    Ok(run) => {
                        let terms: std::collections::BTreeSet<u64> =
                            run.iter().map(|e| e.term).collect();
                        format!(
                            "E[{}..={}] terms {terms:?}",
                            run.first().map_or(0, |e| e.index),
                            run.last().map_or(0, |e| e.index)
                        )
                    }
                    Err(e) => format!("E(bad: {e})"),
                },
                RecordKind::HardState => match decode_hard_state(payload) {
                    Ok(hs) => format!(
                        "H(term {}, vote {}, commit {})",
                        hs.term, hs.vote, hs.commit
                    ),
                    Err(e) => format!("H(bad: {e})"),
                },
                RecordKind::LogStart => match decode_log_start(payload) {
                    Ok((i, t)) => format!("S(index {i}, term {t})"),
                    Err(e) => format!("S(bad: {e})"),
                },
                RecordKind::RegionMeta => "M".to_owned(),
                RecordKind::WalStart => "W".to_owned(),
                RecordKind::Tombstone => "T".to_owned(),
            };
            let synced = if i < self.durable { "" } else { " (unsynced)" };
            out.push_str(&format!("    #{i} {what}{synced}\n"));
        }
        out
    }

    /// The entry at `index` of `region`'s log as the records hold it.
    pub fn entry(&self, region: RegionId, index: u64) -> Option<&Entry> {
        self.logs.get(&region)?.get(&index)
    }

    /// Entries `[low, high)` of `region` as far as they run consecutively
    /// from `low` (empty if `low` is not held): what a fetch reads back.
    pub fn read_entries(&self, region: RegionId, low: u64, high: u64) -> Vec<Entry> {
        let Some(log) = self.logs.get(&region) else {
            return Vec::new();
        };
        let mut out: Vec<Entry> = Vec::new();
        for (i, e) in log.range(low..high) {
            if *i != low + out.len() as u64 {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    /// Deletes what segment deletion would: every record before the first
    /// one (among `records[..upto]`) holding an entry of some region past
    /// `persisted[region]`. Records at or after `upto` (the checkpoint just
    /// written) always stay. Everything must be durable. Returns the
    /// number of records deleted.
    pub fn cut_before_needed(&mut self, upto: usize, persisted: &BTreeMap<RegionId, u64>) -> usize {
        assert_eq!(self.durable, self.records.len(), "cut only after a sync");
        let needed = self.records[..upto]
            .iter()
            .position(|(kind, region, payload)| {
                *kind == RecordKind::Entries && {
                    let p = persisted.get(region).copied().unwrap_or(0);
                    decode_entries(payload)
                        .expect("an entries record written by a peer")
                        .last()
                        .is_some_and(|e| e.index > p)
                }
            })
            .unwrap_or(upto);
        self.records.drain(..needed);
        self.durable -= needed;
        self.reindex();
        needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use golem_core::region::records::encode_entries;

    const R: RegionId = RegionId(1);

    fn ents(first: u64, n: u64, term: u64) -> Vec<u8> {
        let es: Vec<Entry> = (first..first + n)
            .map(|index| Entry {
                index,
                term,
                data: vec![index as u8].into(),
                ..Default::default()
            })
            .collect();
        encode_entries(&es).remove(0)
    }

    #[test]
    fn the_last_written_run_wins_and_a_crash_keeps_a_prefix() {
        let mut w = SimWal::default();
        w.append(RecordKind::RegionMeta, R, b"m");
        w.append(RecordKind::Entries, R, &ents(1, 3, 1));
        w.mark_durable(2);
        w.append(RecordKind::Entries, R, &ents(2, 3, 2));
        assert_eq!(w.entry(R, 4).unwrap().term, 2);
        assert_eq!(w.entry(R, 2).unwrap().term, 2);
        assert_eq!(w.read_entries(R, 1, 10).len(), 4);
        w.crash(0);
        assert_eq!(w.len(), 2);
        assert_eq!(w.entry(R, 2).unwrap().term, 1);
        assert!(w.entry(R, 4).is_none());
        assert_eq!(w.region_records(R).len(), 2);
        assert!(w.read_entries(R, 5, 9).is_empty());
    }

    #[test]
    fn a_cut_keeps_every_record_with_an_entry_past_persisted() {
        let mut w = SimWal::default();
        let other = RegionId(2);
        w.append(RecordKind::RegionMeta, R, b"m");
        w.append(RecordKind::Entries, R, &ents(1, 3, 1));
        w.append(RecordKind::Entries, other, &ents(1, 2, 1));
        w.append(RecordKind::Entries, R, &ents(4, 2, 1));
        w.append(RecordKind::LogStart, R, b"checkpoint");
        w.mark_durable(5);
        let persisted = BTreeMap::from([(R, 5), (other, 1)]);
        // Region 2's entry 2 is not persisted: its record and all after stay.
        assert_eq!(w.cut_before_needed(4, &persisted), 2);
        assert_eq!(w.len(), 3);
        assert_eq!(w.durable(), 3);
        assert!(w.entry(R, 1).is_none());
        assert_eq!(w.entry(R, 5).unwrap().index, 5);
    }
}
