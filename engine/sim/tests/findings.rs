//! Minimal reproductions of golem-core findings (engine/sim/FINDINGS.md)
//! through golem-core's public API, without the simulator. Each asserts
//! the fixed behaviour (a regression test since the fix landed).

use golem_core::region::records::{encode_entries, encode_hard_state, encode_log_start};
use golem_core::region::{PeerConfig, PeerMeta, RegionMeta, RegionPeer};
use golem_core::store::{KvStore, MemStore, WriteBatch};
use golem_core::wal_record::RecordKind;
use golem_wire::{LogIndex, PeerId, RegionId, ShardId, StoreId};
use raft::eraftpb::{Entry, HardState};

const REGION: RegionId = RegionId(1);

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// FINDINGS.md #2. The WAL of a follower holds, in write order: entries
/// 1..=3 of term 1, then a run starting at 2 of term 2 (a new leader
/// overwrote 2..=3: entry 3 of term 1 is gone from the log), then a
/// checkpoint with the log start at 2 (term 2). Replay keeps the
/// superseded entry 3 of term 1, because the overwriting run lies wholly
/// at or below the log start and is skipped, so recovery fails with
/// `CorruptLog` (or, without the term check, would keep a stale entry).
#[test]
fn a_run_at_or_below_the_log_start_still_truncates_what_follows() {
    let peers = (1..=3)
        .map(|i| PeerMeta::new(PeerId(i), StoreId(i), ShardId(0)))
        .collect();
    let meta = RegionMeta::whole_key_space(REGION, peers);
    let hs = HardState {
        term: 2,
        vote: 2,
        commit: 2,
        ..Default::default()
    };
    let records = vec![
        (RecordKind::RegionMeta, meta.encode()),
        (
            RecordKind::Entries,
            encode_entries(&[entry(1, 1), entry(2, 1), entry(3, 1)]).remove(0),
        ),
        (
            RecordKind::Entries,
            encode_entries(&[entry(2, 2)]).remove(0),
        ),
        (RecordKind::HardState, encode_hard_state(&hs)),
        (RecordKind::LogStart, encode_log_start(2, 2)),
    ];
    let mut store = MemStore::new();
    for i in 1..=2 {
        store.write(WriteBatch::new(), REGION, LogIndex(i)).unwrap();
    }
    store.flush();
    let peer = RegionPeer::recover(PeerConfig::new(REGION, PeerId(1)), records, &mut store)
        .expect("the log is entries 1..=2 of terms 1, 2: valid");
    assert_eq!(
        peer.last_index(),
        LogIndex(2),
        "entry 3 of term 1 was overwritten"
    );
}
