//! Byte layout of a segment file (format version 1), shared by the writer
//! and the reader so both check the same properties.
//!
//! ```text
//! [data block]* [range tombstones] [block index] [bloom] [regions] [footer: 96 bytes]
//! ```
//! Every block ends with the crc32c of its body. All integers little endian.

use crate::codec::{put_u32, put_u64, Cursor};

/// `"GOLEMSG1"` as a little-endian u64: the first 8 bytes of the footer.
pub(crate) const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"GOLEMSG1");
/// The only format version this code reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the fixed footer at the end of every segment.
pub(crate) const FOOTER_BYTES: usize = 96;
/// Entry kind: a key with a value.
pub(crate) const KIND_VALUE: u8 = 1;
/// Entry kind: a point tombstone (no value bytes follow).
pub(crate) const KIND_TOMBSTONE: u8 = 2;
/// A block larger than this is corrupt, whatever the options were.
pub(crate) const BLOCK_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Where a metadata block lives: `len` includes its 4-byte crc trailer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BlockHandle {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl BlockHandle {
    pub(crate) fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }
}

/// The fixed trailer of a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) range_tombstones: BlockHandle,
    pub(crate) index: BlockHandle,
    pub(crate) bloom: BlockHandle,
    pub(crate) regions: BlockHandle,
    pub(crate) entry_count: u64,
}

// offset size field
//      0    8 magic "GOLEMSG1"
//      8    4 format version (1)
//     12    4 reserved, zero
//     16   16 range tombstones handle (offset u64, len u64)
//     32   16 block index handle
//     48   16 bloom handle
//     64   16 regions handle
//     80    8 entry count (point entries, tombstones included)
//     88    4 reserved, zero
//     92    4 crc32c of bytes 0..92
const _: () = assert!(FOOTER_BYTES == 92 + 4);

impl Footer {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let from = out.len();
        put_u64(out, SEGMENT_MAGIC);
        put_u32(out, FORMAT_VERSION);
        put_u32(out, 0);
        for h in [self.range_tombstones, self.index, self.bloom, self.regions] {
            put_u64(out, h.offset);
            put_u64(out, h.len);
        }
        put_u64(out, self.entry_count);
        put_u32(out, 0);
        let crc = crc32c::crc32c(&out[from..]);
        put_u32(out, crc);
        debug_assert_eq!(out.len() - from, FOOTER_BYTES);
    }

    /// Decodes a footer. `Err` names the failed check; a version mismatch
    /// is reported separately as `Ok(Err(version))` so the caller can give
    /// `UnsupportedVersion`.
    pub(crate) fn decode(b: &[u8]) -> Result<Result<Footer, u32>, &'static str> {
        if b.len() != FOOTER_BYTES {
            return Err("footer length");
        }
        let want = u32::from_le_bytes(b[92..96].try_into().expect("4 bytes"));
        if crc32c::crc32c(&b[..92]) != want {
            return Err("footer checksum");
        }
        let mut c = Cursor::new(b);
        let magic = c.u64().ok_or("footer")?;
        if magic != SEGMENT_MAGIC {
            return Err("footer magic");
        }
        let version = c.u32().ok_or("footer")?;
        if version != FORMAT_VERSION {
            return Ok(Err(version));
        }
        if c.u32() != Some(0) {
            return Err("footer reserved bytes");
        }
        let mut h = [BlockHandle::default(); 4];
        for slot in &mut h {
            slot.offset = c.u64().ok_or("footer")?;
            slot.len = c.u64().ok_or("footer")?;
        }
        let entry_count = c.u64().ok_or("footer")?;
        if c.u32() != Some(0) {
            return Err("footer reserved bytes");
        }
        Ok(Ok(Footer {
            range_tombstones: h[0],
            index: h[1],
            bloom: h[2],
            regions: h[3],
            entry_count,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_roundtrip_and_checks() {
        let f = Footer {
            range_tombstones: BlockHandle { offset: 10, len: 8 },
            index: BlockHandle {
                offset: 18,
                len: 20,
            },
            bloom: BlockHandle {
                offset: 38,
                len: 30,
            },
            regions: BlockHandle { offset: 68, len: 8 },
            entry_count: 7,
        };
        let mut out = Vec::new();
        f.encode(&mut out);
        assert_eq!(Footer::decode(&out), Ok(Ok(f)));
        for i in 0..FOOTER_BYTES {
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            assert!(Footer::decode(&bad).is_err(), "flip at {i} accepted");
        }
    }
}
