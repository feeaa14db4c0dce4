//! Bloom filter of a segment's keys (including tombstoned keys), so a point
//! read skips segments that cannot hold the key.
//!
//! Blocked (cache-local) filter, as in RocksDB's format 5: the bitmap is cut
//! into 512-bit (64-byte, one cache line) blocks; a key picks one block and
//! sets or tests all its probes inside it, so a lookup costs one cache miss
//! instead of one per probe.
//!
//! Hashing is fixed by the format (a changed hash would make every existing
//! filter lie): `h1 = crc32c(key)`, `h2 = crc32c_append(0x9E37_79B9, key)`;
//! block `b = (h1 * blocks) >> 32` (64-bit product); `delta = rotr(h1, 17) | 1`;
//! probe `i` is bit `b * 512 + ((h2 + i*delta) mod 2^32) mod 512`.
//! Encoding: `probes u32, bits u32 (a multiple of 512), bitmap (bits/8 bytes)`.

use crate::codec::{put_u32, Cursor};

/// Probes per key cap, whatever bits per key asks for.
const PROBES_MAX: u32 = 30;

/// Bits per block: one 64-byte cache line.
const BLOCK_BITS: u32 = 512;

fn hash(key: &[u8]) -> (u32, u32) {
    (crc32c::crc32c(key), crc32c::crc32c_append(0x9E37_79B9, key))
}

/// The first bit of the key's block, the first probe and the probe step.
fn locate(bits: u32, (h1, h2): (u32, u32)) -> (usize, u32, u32) {
    let blocks = u64::from(bits / BLOCK_BITS);
    let block = ((u64::from(h1) * blocks) >> 32) as usize;
    (block * BLOCK_BITS as usize, h2, h1.rotate_right(17) | 1)
}

/// Builds a filter from key hashes.
/// Holds 8 bytes per key until `finish` (the filter's size depends on the
/// key count).
pub(crate) struct BloomBuilder {
    hashes: Vec<(u32, u32)>,
}

impl BloomBuilder {
    pub(crate) fn new() -> Self {
        BloomBuilder { hashes: Vec::new() }
    }

    pub(crate) fn add(&mut self, key: &[u8]) {
        self.hashes.push(hash(key));
    }

    /// Encodes the filter (see the module doc).
    pub(crate) fn finish(&self, bits_per_key: usize, out: &mut Vec<u8>) {
        let wanted = (self.hashes.len() as u64 * bits_per_key as u64).max(u64::from(BLOCK_BITS));
        let blocks = wanted
            .div_ceil(u64::from(BLOCK_BITS))
            .min(u64::from(u32::MAX / BLOCK_BITS));
        let bits = blocks as u32 * BLOCK_BITS;
        // ln 2 * bits/key, rounded.
        let probes = ((bits_per_key as f64 * 0.69).round() as u32).clamp(1, PROBES_MAX);
        let mut map = vec![0u8; (bits / 8) as usize];
        for &hashes in &self.hashes {
            let (base, mut h, delta) = locate(bits, hashes);
            for _ in 0..probes {
                let bit = base + (h % BLOCK_BITS) as usize;
                map[bit / 8] |= 1 << (bit % 8);
                h = h.wrapping_add(delta);
            }
        }
        put_u32(out, probes);
        put_u32(out, bits);
        out.extend_from_slice(&map);
    }
}

/// A decoded filter borrowing its bitmap from the mapped file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bloom {
    probes: u32,
    bits: u32,
    /// Offset and length of the bitmap in the segment's mapping.
    map_offset: usize,
}

impl Bloom {
    /// Decodes the filter body at `body_offset` in the file; `None` if
    /// malformed (wrong lengths, zero probes).
    pub(crate) fn decode(body: &[u8], body_offset: usize) -> Option<Bloom> {
        let mut c = Cursor::new(body);
        let probes = c.u32()?;
        let bits = c.u32()?;
        if probes == 0 || probes > PROBES_MAX || bits == 0 || !bits.is_multiple_of(BLOCK_BITS) {
            return None;
        }
        let map = c.take((bits / 8) as usize)?;
        if !c.is_done() || map.is_empty() {
            return None;
        }
        Some(Bloom {
            probes,
            bits,
            map_offset: body_offset + 8,
        })
    }

    /// Whether `key` may be in the set (`file` is the whole mapping).
    pub(crate) fn may_contain(&self, file: &[u8], key: &[u8]) -> bool {
        let map = &file[self.map_offset..self.map_offset + (self.bits / 8) as usize];
        let (base, mut h, delta) = locate(self.bits, hash(key));
        for _ in 0..self.probes {
            let bit = base + (h % BLOCK_BITS) as usize;
            if map[bit / 8] & (1 << (bit % 8)) == 0 {
                return false;
            }
            h = h.wrapping_add(delta);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut b = BloomBuilder::new();
        for i in 0..1000u32 {
            b.add(&i.to_be_bytes());
        }
        let mut out = Vec::new();
        b.finish(10, &mut out);
        let bloom = Bloom::decode(&out, 0).unwrap();
        for i in 0..1000u32 {
            assert!(bloom.may_contain(&out, &i.to_be_bytes()));
        }
        let fp = (1000..11000u32)
            .filter(|i| bloom.may_contain(&out, &i.to_be_bytes()))
            .count();
        assert!(fp < 300, "false positives {fp} / 10000");
        // Lengths that are not whole blocks are refused.
        let mut bad = out.clone();
        bad[4..8].copy_from_slice(&100u32.to_le_bytes());
        assert!(Bloom::decode(&bad, 0).is_none());
    }
}
