//! Feeds arbitrary bytes as a segment file: writes them to a temp
//! directory, opens them with `golem_lsm::Segment::open`, then opens an
//! `Lsm` whose manifest names them (over a valid base segment) and runs
//! point gets, full forward and reverse scans, a bounded scan and chunked
//! iteration. Asserts: no panic, every error is typed (`Corrupt` or
//! `UnsupportedVersion`), `Lsm::open` accepts the file exactly when
//! `Segment::open` does, and a full scan that succeeds is in strictly
//! increasing key order, the reverse scan its mirror.
//!
//! The first input byte selects options: bit 0 recomputes every checksum
//! the footer and block index point at (data blocks, metadata blocks, the
//! footer) before writing the file, so the fuzzer gets past the checksums
//! to the block decoders; bit 1 varies the bounded scan.
//!
//! Run: `cd engine/lsm/fuzz && cargo +nightly fuzz run segment_open`

#![no_main]

mod common;

use common::*;
use golem_lsm::Segment;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, bytes) = match data.split_first() {
        Some((f, r)) => (*f, r),
        None => (0, data),
    };
    let mut file = bytes.to_vec();
    if flags & 1 != 0 {
        for b in sealed_blocks(&file) {
            seal(&mut file, b);
        }
    }
    let q = if flags & 2 != 0 {
        // Taken from the end of the input, which is mostly the footer.
        let tail = &bytes[bytes.len().saturating_sub(16)..];
        Query::arbitrary(&mut Unstructured::new(tail)).expect("infallible")
    } else {
        Query {
            start: b"b".to_vec(),
            end: b"f".to_vec(),
            reverse: false,
            pairs_max: 7,
            bytes_max: 100,
        }
    };

    let dir = run_dir();
    let path = install(dir.path(), &file);
    let opened = match Segment::open(&path) {
        Ok(seg) => {
            assert_eq!(seg.file_bytes(), file.len() as u64);
            assert_eq!(seg.path(), path.as_path());
            let _ = seg.entry_count();
            let _ = seg.applied().len();
            true
        }
        Err(e) => {
            assert_typed(&e);
            false
        }
    };
    // Keys from the input too, so gets can hit keys a crafted file holds.
    let extra = bytes
        .chunks(5)
        .take(16)
        .map(|c| c[..c.len().min(3)].to_vec());
    let keys = probes(extra.filter(|k| !k.is_empty()));
    let lsm_opened = check_reads(dir.path(), None, false, &keys, &q);
    assert_eq!(
        lsm_opened, opened,
        "Segment::open and Lsm::open disagree on the same file"
    );
});
