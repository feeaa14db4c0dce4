//! Reading old Raft entries back from the WAL, for a leader whose follower
//! needs entries its cache no longer holds.
//!
//! Owns the I/O half of raft-rs's asynchronous entry fetch: the region's
//! storage asked (`RegionPeer::take_fetch_requests`), the shard's
//! `WalIndex` says which records hold the entries, a local task reads and
//! checks them (`wal::read_record`), and hands them to the peer
//! (`on_entries_fetched`), which makes raft-rs send them.
//!
//! Invariants: a fetch reads at most `FETCH_BYTES_MAX` of payload (raft-rs
//! sends at most `append_msg_bytes_max` per message anyway, and asks again
//! for the rest); the entries handed back run consecutively from the
//! requested index, each taken from the record the index names for it (the
//! one written last); any read or decode failure is reported to the peer
//! as a failed fetch (raft-rs asks again), never a panic; no region borrow
//! is held across a read.

use super::region_handle::RegionHandle;
use crate::runtime::{spawn_local, LocalNotify};
use crate::wal::read_record;
use golem_core::raft_log::FetchRequest;
use golem_core::region::records::decode_entries;
use golem_core::wal_index::{IndexedRun, WalIndex};
use golem_core::wal_record::RecordKind;
use raft::eraftpb::Entry;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Most payload bytes one fetch reads.
pub const FETCH_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Starts one task per request; each answers its region's peer and wakes
/// the raft loop.
pub fn spawn_fetches(
    region: &Rc<RegionHandle>,
    requests: Vec<FetchRequest>,
    index: &WalIndex,
    wal_dir: &Path,
    notify: &Rc<LocalNotify>,
) {
    let id = region.peer.borrow().meta().id;
    for req in requests {
        let runs = index.locate(id, req.low, req.high);
        let region = region.clone();
        let notify = notify.clone();
        let dir: PathBuf = wal_dir.to_path_buf();
        spawn_local(async move {
            let result = read_entries(&dir, &runs, req.low, req.high).await;
            region.peer.borrow_mut().on_entries_fetched(req, result);
            region.poke();
            notify.notify();
        })
        .detach();
    }
}

/// Entries `low..high` (or a prefix, up to `FETCH_BYTES_MAX` of payload)
/// from the records `runs` locate.
pub async fn read_entries(
    dir: &Path,
    runs: &[IndexedRun],
    low: u64,
    high: u64,
) -> Result<Vec<Entry>, String> {
    if runs.is_empty() {
        return Err(format!("entries from {low} are not in the WAL index"));
    }
    let mut out: Vec<Entry> = Vec::new();
    let mut bytes = 0u64;
    for run in runs {
        if bytes >= FETCH_BYTES_MAX {
            break;
        }
        let loc = run.location;
        let (kind, _, payload) = read_record(dir, loc.segment, loc.offset, loc.payload_bytes)
            .await
            .map_err(|e| e.to_string())?;
        if kind != RecordKind::Entries {
            return Err(format!(
                "segment {} offset {} holds a {kind:?} record, not entries",
                loc.segment, loc.offset
            ));
        }
        bytes += u64::from(loc.payload_bytes);
        let entries = decode_entries(&payload).map_err(|e| e.to_string())?;
        for e in entries {
            let next = low + out.len() as u64;
            if e.index == next && e.index < high && e.index >= run.first && e.index <= run.last {
                out.push(e);
            }
        }
    }
    if out.is_empty() {
        return Err(format!("no entry from {low} in the records read"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{Wal, WalOptions};
    use golem_core::region::records::encode_entries;
    use golem_core::wal_index::RecordLocation;
    use golem_wire::RegionId;

    fn entries(first: u64, n: u64, term: u64) -> Vec<Entry> {
        (first..first + n)
            .map(|index| Entry {
                index,
                term,
                data: vec![index as u8; 100].into(),
                ..Default::default()
            })
            .collect()
    }

    /// Writes runs through a real WAL (small segments, so they spread over
    /// several), indexes them as the raft loop does, and reads them back.
    #[test]
    fn entries_written_through_the_wal_read_back_by_location() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let region = RegionId(3);
        glommio::LocalExecutorBuilder::default()
            .io_memory(512 * 1024)
            .make()
            .unwrap()
            .run(async move {
                let opts = WalOptions {
                    segment_bytes: 16 * 1024,
                    ..WalOptions::default()
                };
                let (mut wal, _) = Wal::open(&dir, opts.clone()).await.unwrap();
                let mut index = WalIndex::new();
                let write = |wal: &mut Wal, ents: Vec<Entry>| {
                    let payload = encode_entries(&ents).remove(0);
                    let at = wal.append(RecordKind::Entries, region, &payload);
                    (ents[0].index, ents.last().unwrap().index, at, payload.len())
                };
                // 1..=10, 11..=20, then a new term overwrites from 15.
                for ents in [entries(1, 10, 1), entries(11, 10, 1), entries(15, 3, 2)] {
                    let (first, last, at, len) = write(&mut wal, ents);
                    wal.sync().await;
                    let (seq, base) = wal.last_batch().unwrap();
                    let location = RecordLocation {
                        segment: seq,
                        offset: base + at,
                        payload_bytes: len as u32,
                    };
                    index.insert(region, first, last, location);
                }
                // Filler so the runs span segments.
                for i in 0..20 {
                    wal.append(RecordKind::HardState, region, &[i; 200]);
                    wal.sync().await;
                }
                assert!(wal.active_segment() > 1);

                let got = read_entries(&dir, &index.locate(region, 5, 18), 5, 18)
                    .await
                    .unwrap();
                let mut want = entries(5, 10, 1);
                want.extend(entries(15, 3, 2));
                assert_eq!(got, want);

                // The same locations found by recovery.
                wal.close().await;
                let (_wal, recs) = Wal::open(&dir, opts).await.unwrap();
                let mut recovered = WalIndex::new();
                for r in recs.iter().filter(|r| r.kind == RecordKind::Entries) {
                    let (first, last) =
                        golem_core::region::records::entries_span(&r.payload).unwrap();
                    let location = RecordLocation {
                        segment: r.segment,
                        offset: r.offset,
                        payload_bytes: r.payload.len() as u32,
                    };
                    recovered.insert(r.region, first, last, location);
                }
                assert_eq!(recovered.locate(region, 1, 18), index.locate(region, 1, 18));

                // A wrong location is a typed failure, not a panic.
                let mut bad = index.locate(region, 1, 2);
                bad[0].location.offset += 8;
                assert!(read_entries(&dir, &bad, 1, 2).await.is_err());
                assert!(read_entries(&dir, &[], 1, 2).await.is_err());
            });
    }
}
