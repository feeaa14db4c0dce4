//! Bloom filter of a segment's keys (including tombstoned keys), so a point
//! read skips segments that cannot hold the key.
//!
//! Hashing is fixed by the format (a changed hash would make every existing
//! filter lie): h = crc32c(key) | crc32c_append(0x9E37_79B9, key) << 32,
//! probes use double hashing `h1 + i*h2` mod `bits`. Encoding:
//! `probes u32, bits u32, bitmap (ceil(bits/8) bytes)`.

use crate::codec::{put_u32, Cursor};

/// Probes per key cap, whatever bits per key asks for.
const PROBES_MAX: u32 = 30;

fn hash(key: &[u8]) -> (u32, u32) {
    let h1 = crc32c::crc32c(key);
    let h2 = crc32c::crc32c_append(0x9E37_79B9, key) | 1;
    (h1, h2)
}

/// Builds a filter from key hashes.
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
        let bits = (self.hashes.len() * bits_per_key).max(64) as u64;
        let bits = u32::try_from(bits).unwrap_or(u32::MAX - 7);
        // ln 2 * bits/key, rounded.
        let probes = ((bits_per_key as f64 * 0.69).round() as u32).clamp(1, PROBES_MAX);
        let mut map = vec![0u8; bits.div_ceil(8) as usize];
        for &(h1, h2) in &self.hashes {
            let mut h = h1;
            for _ in 0..probes {
                let bit = h % bits;
                map[(bit / 8) as usize] |= 1 << (bit % 8);
                h = h.wrapping_add(h2);
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
        if probes == 0 || probes > PROBES_MAX || bits == 0 {
            return None;
        }
        let map = c.take(bits.div_ceil(8) as usize)?;
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
        let map = &file[self.map_offset..self.map_offset + self.bits.div_ceil(8) as usize];
        let (mut h, h2) = hash(key);
        for _ in 0..self.probes {
            let bit = h % self.bits;
            if map[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
                return false;
            }
            h = h.wrapping_add(h2);
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
    }
}
