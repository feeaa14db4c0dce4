//! Recovery of the durable log: round trip, torn tails, corruption, compaction.

use super::*;

fn entry(index: u64, term: u64) -> RaftEntry {
    RaftEntry {
        entry_type: 0,
        term,
        index,
        data: vec![index as u8; 10],
        context: vec![],
    }
}

fn hs(term: u64, commit: u64) -> RaftHardState {
    RaftHardState {
        term,
        vote: 1,
        commit,
    }
}

#[test]
fn entries_and_hard_state_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, rec) = DurableLog::open(dir.path()).unwrap();
    assert!(rec.entries.is_empty() && rec.snapshot.is_none());
    log.append_entries(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
    log.append_hard_state(hs(1, 2));
    log.sync().unwrap();
    // A new leader overwrites index 3.
    log.append_entries(&[entry(3, 2), entry(4, 2)]);
    log.append_hard_state(hs(2, 4));
    log.sync().unwrap();
    drop(log);
    let (_log, rec) = DurableLog::open(dir.path()).unwrap();
    assert_eq!(
        rec.entries,
        vec![entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)]
    );
    assert_eq!(rec.hard_state, hs(2, 4));
    assert_eq!(rec.cut_bytes, 0);
}

#[test]
fn every_torn_tail_is_cut_and_the_prefix_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = DurableLog::open(dir.path()).unwrap();
    log.append_entries(&[entry(1, 1)]);
    log.sync().unwrap();
    let good = fs::metadata(dir.path().join("raft.log")).unwrap().len();
    log.append_entries(&[entry(2, 1)]);
    log.sync().unwrap();
    drop(log);
    let full = fs::read(dir.path().join("raft.log")).unwrap();
    for cut in good as usize..full.len() {
        fs::write(dir.path().join("raft.log"), &full[..cut]).unwrap();
        let (_l, rec) = DurableLog::open(dir.path()).unwrap();
        assert_eq!(rec.entries, vec![entry(1, 1)], "cut at {cut}");
        assert_eq!(rec.cut_bytes, cut as u64 - good);
        assert_eq!(
            fs::metadata(dir.path().join("raft.log")).unwrap().len(),
            good
        );
    }
    // A flipped byte in the last record is a torn write too.
    let mut flipped = full.clone();
    *flipped.last_mut().unwrap() ^= 0xFF;
    fs::write(dir.path().join("raft.log"), &flipped).unwrap();
    let (_l, rec) = DurableLog::open(dir.path()).unwrap();
    assert_eq!(rec.entries, vec![entry(1, 1)]);
}

#[test]
fn corruption_before_the_tail_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = DurableLog::open(dir.path()).unwrap();
    log.append_entries(&[entry(1, 1)]);
    log.sync().unwrap();
    log.append_entries(&[entry(2, 1)]);
    log.sync().unwrap();
    drop(log);
    let path = dir.path().join("raft.log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[LOG_MAGIC.len() + RECORD_HEADER_BYTES + 2] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        DurableLog::open(dir.path()),
        Err(LogError::Corrupt { .. })
    ));
    fs::write(&path, b"NOTALOG!xxxx").unwrap();
    assert!(matches!(
        DurableLog::open(dir.path()),
        Err(LogError::BadMagic { .. })
    ));
}

#[test]
fn snapshot_compacts_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = DurableLog::open(dir.path()).unwrap();
    let ents: Vec<_> = (1..=100).map(|i| entry(i, 1)).collect();
    log.append_entries(&ents);
    log.sync().unwrap();
    let before = log.bytes();
    let snap = RaftSnapshot {
        data: b"state".to_vec(),
        index: 90,
        term: 1,
        ..Default::default()
    };
    log.install_snapshot(&snap, hs(1, 95), &ents[90..]).unwrap();
    assert!(log.bytes() < before);
    log.append_entries(&[entry(101, 2)]);
    log.sync().unwrap();
    drop(log);
    let (_l, rec) = DurableLog::open(dir.path()).unwrap();
    assert_eq!(rec.snapshot.unwrap(), snap);
    assert_eq!(rec.entries.first().unwrap().index, 91);
    assert_eq!(rec.entries.last().unwrap(), &entry(101, 2));
    assert_eq!(rec.hard_state.commit, 95);
}

#[test]
fn crash_between_snapshot_and_log_rewrite_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = DurableLog::open(dir.path()).unwrap();
    let ents: Vec<_> = (1..=10).map(|i| entry(i, 1)).collect();
    log.append_entries(&ents);
    log.sync().unwrap();
    let old_log = fs::read(dir.path().join("raft.log")).unwrap();
    let snap = RaftSnapshot {
        data: b"s".to_vec(),
        index: 6,
        term: 1,
        ..Default::default()
    };
    log.install_snapshot(&snap, hs(1, 6), &ents[6..]).unwrap();
    drop(log);
    // Simulate the crash: the new snapshot with the old, uncompacted log.
    fs::write(dir.path().join("raft.log"), &old_log).unwrap();
    let (_l, rec) = DurableLog::open(dir.path()).unwrap();
    assert_eq!(rec.entries, ents[6..].to_vec());
    assert_eq!(rec.hard_state.commit, 6);
    // A corrupt snapshot is refused.
    let p = dir.path().join("snapshot");
    let mut b = fs::read(&p).unwrap();
    *b.last_mut().unwrap() ^= 1;
    fs::write(&p, b).unwrap();
    assert!(matches!(
        DurableLog::open(dir.path()),
        Err(LogError::CorruptSnapshot { .. })
    ));
}

mod model {
    //! The log against a model: random appends (with overwrites of a
    //! suffix, as a new leader does) and hard states, each synced; then the
    //! file is cut at a random byte. Recovery must give exactly the model's
    //! state after the last record that fits before the cut.

    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Append `n` entries starting `back` entries before the end.
        Append {
            back: u8,
            n: u8,
            term: u64,
        },
        Hard {
            commit: u64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 1u8..5, 1u64..4).prop_map(|(back, n, term)| Op::Append { back, n, term }),
            (0u64..50).prop_map(|commit| Op::Hard { commit }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn recovery_matches_the_model_at_any_cut(ops in proptest::collection::vec(op(), 1..30), cut in any::<u64>()) {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = DurableLog::open(dir.path()).unwrap();
            let path = dir.path().join("raft.log");
            // (file length, entries, hard state) after each synced record.
            let mut states = vec![(fs::metadata(&path).unwrap().len(), Vec::new(), RaftHardState::default())];
            let mut entries: Vec<RaftEntry> = Vec::new();
            let mut hs = RaftHardState::default();
            for op in ops {
                match op {
                    Op::Append { back, n, term } => {
                        let keep = entries.len().saturating_sub(back as usize);
                        entries.truncate(keep);
                        let new: Vec<_> = (0..n as u64).map(|i| entry(keep as u64 + 1 + i, term)).collect();
                        entries.extend(new.iter().cloned());
                        log.append_entries(&new);
                    }
                    Op::Hard { commit } => {
                        hs = RaftHardState { term: 1, vote: 1, commit };
                        log.append_hard_state(hs);
                    }
                }
                log.sync().unwrap();
                states.push((log.bytes(), entries.clone(), hs));
            }
            drop(log);
            let full = fs::read(&path).unwrap();
            prop_assert_eq!(full.len() as u64, states.last().unwrap().0);
            let cut = (cut % (full.len() as u64 + 1)).max(LOG_MAGIC.len() as u64);
            fs::write(&path, &full[..cut as usize]).unwrap();
            let (_l, rec) = DurableLog::open(dir.path()).unwrap();
            let want = states.iter().rev().find(|(len, _, _)| *len <= cut).unwrap();
            prop_assert_eq!(&rec.entries, &want.1);
            prop_assert_eq!(rec.hard_state, want.2);
            prop_assert_eq!(rec.cut_bytes, cut - want.0);
        }
    }
}
