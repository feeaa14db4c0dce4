//! Feeds arbitrary bytes, in arbitrary chunks, through the frame decoder
//! and every payload validator (client and PD messages). Built with `cfg(fuzzing)`, which skips the
//! checksum so the fuzzer reaches the rkyv validation.
//!
//! Run: `cd wire/fuzz && cargo +nightly fuzz run frame_decoder`
//! (or `cargo fuzz run frame_decoder` where cargo-fuzz is installed).

#![no_main]

use golem_wire::codec::*;
use golem_wire::FrameDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (split, rest) = match data.split_first() {
        Some((s, r)) => (*s as usize + 1, r),
        None => return,
    };
    let mut d = FrameDecoder::new(1 << 16);
    for mut piece in rest.chunks(split) {
        while !piece.is_empty() {
            match d.push(piece) {
                Ok((used, frame)) => {
                    piece = &piece[used..];
                    if let Some(f) = frame {
                        let _ = decode_hello(&f.payload);
                        let _ = decode_hello_ok(&f.payload);
                        let _ = decode_request(&f.payload);
                        let _ = decode_response(&f.payload);
                        let _ = decode_goodbye(&f.payload);
                        let _ = golem_wire::pd::decode_pd_request(&f.payload);
                        let _ = golem_wire::pd::decode_pd_response(&f.payload);
                        let _ = golem_wire::pd::decode_pd_raft(&f.payload);
                    }
                }
                Err(_) => return,
            }
        }
    }
});
