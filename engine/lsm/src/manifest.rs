//! The manifest: which segment files are live, in which layer order, and
//! the counters that name new files. It is the single source of truth at
//! open: a `.seg` file it does not name is garbage from an interrupted
//! flush or compaction, and is deleted.
//!
//! Written atomically: `MANIFEST.tmp` is written and fsynced, renamed over
//! `MANIFEST`, then the directory is fsynced. Format (little endian):
//!
//! ```text
//! offset size field
//!      0    8 magic "GOLEMMF1"
//!      8    4 format version (1)
//!     12    4 crc32c of bytes 16..end
//!     16    8 next_file_id
//!     24    8 next_seq
//!     32    4 segment count n
//!     36 16*n (file_id u64, seq u64) per live segment, seq strictly decreasing
//! ```

use crate::codec::{put_u32, put_u64, Cursor};
use crate::error::LsmError;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const MANIFEST_MAGIC: u64 = u64::from_le_bytes(*b"GOLEMMF1");
const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name in the LSM directory.
pub(crate) const MANIFEST_NAME: &str = "MANIFEST";
const MANIFEST_TMP_NAME: &str = "MANIFEST.tmp";
/// More live segments than this in a manifest is corrupt.
const MANIFEST_SEGMENTS_MAX: u32 = 1 << 20;

/// One live segment: its file and its layer order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentRef {
    /// Names the file: `<file_id:020>.seg`.
    pub(crate) file_id: u64,
    /// Layer order: a higher seq is a newer layer and shadows lower ones.
    pub(crate) seq: u64,
}

/// The decoded manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) next_file_id: u64,
    pub(crate) next_seq: u64,
    /// Newest first.
    pub(crate) segments: Vec<SegmentRef>,
}

/// The path of segment `file_id` in `dir`.
pub(crate) fn segment_path(dir: &Path, file_id: u64) -> PathBuf {
    dir.join(format!("{file_id:020}.seg"))
}

impl Manifest {
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_u64(&mut body, self.next_file_id);
        put_u64(&mut body, self.next_seq);
        put_u32(
            &mut body,
            u32::try_from(self.segments.len()).expect("segment count"),
        );
        for s in &self.segments {
            put_u64(&mut body, s.file_id);
            put_u64(&mut body, s.seq);
        }
        let mut out = Vec::with_capacity(body.len() + 16);
        put_u64(&mut out, MANIFEST_MAGIC);
        put_u32(&mut out, MANIFEST_VERSION);
        put_u32(&mut out, crc32c::crc32c(&body));
        out.extend_from_slice(&body);
        out
    }

    fn decode(path: &Path, b: &[u8]) -> Result<Manifest, LsmError> {
        let corrupt = |offset: u64, what: &str| LsmError::corrupt(path, offset, what);
        let mut c = Cursor::new(b);
        if c.u64() != Some(MANIFEST_MAGIC) {
            return Err(corrupt(0, "manifest magic"));
        }
        match c.u32() {
            Some(MANIFEST_VERSION) => {}
            Some(version) => {
                return Err(LsmError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    version,
                })
            }
            None => return Err(corrupt(8, "manifest header")),
        }
        let crc = c.u32().ok_or_else(|| corrupt(12, "manifest header"))?;
        if crc32c::crc32c(&b[16..]) != crc {
            return Err(corrupt(12, "manifest checksum"));
        }
        let next_file_id = c.u64().ok_or_else(|| corrupt(16, "manifest"))?;
        let next_seq = c.u64().ok_or_else(|| corrupt(24, "manifest"))?;
        let n = c.u32().ok_or_else(|| corrupt(32, "manifest"))?;
        if n > MANIFEST_SEGMENTS_MAX {
            return Err(corrupt(32, "manifest segment count"));
        }
        let mut segments: Vec<SegmentRef> = Vec::with_capacity(n as usize);
        for i in 0..n {
            let at = 36 + 16 * u64::from(i);
            let file_id = c.u64().ok_or_else(|| corrupt(at, "manifest entry"))?;
            let seq = c.u64().ok_or_else(|| corrupt(at, "manifest entry"))?;
            if file_id >= next_file_id
                || seq >= next_seq
                || segments.last().is_some_and(|p| p.seq <= seq)
            {
                return Err(corrupt(at, "manifest entry out of order or out of range"));
            }
            if segments.iter().any(|p| p.file_id == file_id) {
                return Err(corrupt(at, "manifest names a file twice"));
            }
            segments.push(SegmentRef { file_id, seq });
        }
        if !c.is_done() {
            return Err(corrupt(c.pos() as u64, "trailing bytes in manifest"));
        }
        Ok(Manifest {
            next_file_id,
            next_seq,
            segments,
        })
    }

    /// Reads `dir/MANIFEST`. A missing manifest in a directory without
    /// segment files is a new LSM: an empty manifest is written (so that
    /// from then on a missing manifest is an error, never "delete every
    /// segment as unnamed"). A missing manifest beside segment files is
    /// `Corrupt`.
    pub(crate) fn load(dir: &Path) -> Result<Manifest, LsmError> {
        let path = dir.join(MANIFEST_NAME);
        match fs::read(&path) {
            Ok(b) => Manifest::decode(&path, &b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let entries = fs::read_dir(dir).map_err(|e| LsmError::io("read dir", dir, e))?;
                for entry in entries {
                    let entry = entry.map_err(|e| LsmError::io("read dir", dir, e))?;
                    if entry.path().extension().is_some_and(|x| x == "seg") {
                        return Err(LsmError::corrupt(
                            &path,
                            0,
                            "manifest missing while segment files exist",
                        ));
                    }
                }
                let empty = Manifest {
                    next_file_id: 1,
                    next_seq: 1,
                    segments: Vec::new(),
                };
                empty.store(dir, &mut |_| false)?;
                Ok(empty)
            }
            Err(e) => Err(LsmError::io("read", path, e)),
        }
    }

    /// Writes the manifest atomically (see the module doc). `crash` is the
    /// test hook: it is asked after each step whether to stop there.
    pub(crate) fn store(
        &self,
        dir: &Path,
        crash: &mut dyn FnMut(Step) -> bool,
    ) -> Result<bool, LsmError> {
        let tmp = dir.join(MANIFEST_TMP_NAME);
        let path = dir.join(MANIFEST_NAME);
        let mut f = File::create(&tmp).map_err(|e| LsmError::io("create", &tmp, e))?;
        f.write_all(&self.encode())
            .map_err(|e| LsmError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| LsmError::io("fsync", &tmp, e))?;
        drop(f);
        if crash(Step::TempWritten) {
            return Ok(false);
        }
        fs::rename(&tmp, &path).map_err(|e| LsmError::io("rename", &tmp, e))?;
        if crash(Step::Renamed) {
            return Ok(false);
        }
        sync_dir(dir)?;
        Ok(true)
    }
}

/// Steps of an atomic file write, for the crash test hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    TempWritten,
    Renamed,
}

/// fsyncs a directory so that a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LsmError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LsmError::io("fsync dir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_flip_is_caught() {
        let m = Manifest {
            next_file_id: 9,
            next_seq: 12,
            segments: vec![
                SegmentRef {
                    file_id: 8,
                    seq: 11,
                },
                SegmentRef { file_id: 3, seq: 4 },
            ],
        };
        let b = m.encode();
        let p = Path::new("M");
        assert_eq!(Manifest::decode(p, &b).unwrap(), m);
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut bad = b.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    Manifest::decode(p, &bad).is_err(),
                    "flip {i}:{bit} accepted"
                );
            }
        }
        assert!(Manifest::decode(p, &b[..b.len() - 1]).is_err());
    }
}
