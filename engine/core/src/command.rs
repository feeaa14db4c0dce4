//! The Raft entry payload: a write command and its byte codec.
//!
//! Owns `Command` (what a normal Raft entry of a region carries), its
//! conversion from a client write (`RequestBody::{Put, Delete, BatchWrite,
//! CompareAndSwap}`; a `Split` is built by `region::split`) and its byte
//! format, plus the small little-endian
//! `ByteWriter`/`ByteReader` the other record codecs of this crate share.
//!
//! Format (version 1, all integers little-endian):
//!
//! ```text
//! command   = version:u8(=1) tag:u8 body
//! Put(1)    = key:bytes value:bytes
//! Delete(2) = key:bytes
//! Batch(3)  = count:u32 op*        op = 1 key:bytes value:bytes | 2 key:bytes
//! Cas(4)    = key:bytes expected:opt new_value:opt
//! Split(5)  = split_key:bytes new_region:u64 conf_ver:u64 version:u64
//!             count:u32 peer:u64*
//! Merge(6)  = subtag:u8 body       (region::merge::MergeCommand)
//! bytes     = len:u32 data[len]    opt = 0 | 1 bytes
//! ```
//!
//! Invariants: `decode(encode(c)) == c`; decoding never panics and never
//! allocates more than the input's length (every length is checked against
//! the bytes that remain before anything is allocated); trailing bytes are an
//! error. An encoded command is never empty, so an entry with empty data is
//! always a leader's no-op.

use golem_wire::limits::BATCH_OPS_MAX;
use golem_wire::{GolemError, PeerId, RegionEpoch, RegionId, RequestBody, WriteOp};

/// The version byte every encoded command starts with.
pub const COMMAND_FORMAT_VERSION: u8 = 1;

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_BATCH_WRITE: u8 = 3;
const TAG_COMPARE_AND_SWAP: u8 = 4;
pub(crate) const TAG_SPLIT: u8 = 5;
pub(crate) const TAG_MERGE: u8 = 6;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// A write, as replicated through a region's Raft log and applied to its
/// state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Applied atomically, in order (a later op on the same key wins).
    BatchWrite {
        ops: Vec<WriteOp>,
    },
    /// Sets `key` to `new_value` (None: deletes it) if its current value is
    /// `expected` (None: the key is absent).
    CompareAndSwap {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new_value: Option<Vec<u8>>,
    },
    /// Admin: splits the region at `split_key` into `[start, split_key)`
    /// (the region itself) and `[split_key, end)` (`new_region`, whose
    /// i-th peer `new_peers[i]` sits beside the region's i-th peer). Applied
    /// only if the region's epoch is still `epoch` (the one it was proposed
    /// at; TiKV's apply-time epoch check); writes no data. See
    /// `region::split`.
    Split {
        split_key: Vec<u8>,
        new_region: RegionId,
        new_peers: Vec<PeerId>,
        epoch: RegionEpoch,
    },
    /// Admin: a step of a region merge (`region::merge`); writes no data.
    Merge(crate::region::merge::MergeCommand),
}

/// Why bytes are not a valid command or record.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    #[error("unsupported {what} format version {got}")]
    UnsupportedVersion { what: &'static str, got: u8 },
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("{len} trailing bytes")]
    TrailingBytes { len: usize },
    #[error("{what} count {count} exceeds the limit of {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("invalid: {reason}")]
    Invalid { reason: String },
    #[error("protobuf: {reason}")]
    Protobuf { reason: String },
}

impl Command {
    /// The command of a write request; `InvalidArgument` for a read.
    /// Limits are not checked here (`RequestBody::validate` does that).
    pub fn from_request(body: RequestBody) -> Result<Command, GolemError> {
        Ok(match body {
            RequestBody::Put { key, value } => Command::Put { key, value },
            RequestBody::Delete { key } => Command::Delete { key },
            RequestBody::BatchWrite { ops } => Command::BatchWrite { ops },
            RequestBody::CompareAndSwap {
                key,
                expected,
                new_value,
            } => Command::CompareAndSwap {
                key,
                expected,
                new_value,
            },
            other => {
                return Err(GolemError::invalid(format!(
                    "{} is not a write",
                    other.name()
                )))
            }
        })
    }

    /// Every key this command writes, in command order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        let (single, batch): (Option<&[u8]>, &[WriteOp]) = match self {
            Command::Put { key, .. }
            | Command::Delete { key }
            | Command::CompareAndSwap { key, .. } => (Some(key), &[]),
            Command::BatchWrite { ops } => (None, ops),
            Command::Split { .. } | Command::Merge(_) => (None, &[]),
        };
        single.into_iter().chain(batch.iter().map(WriteOp::key))
    }

    /// The command's bytes (never empty).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = ByteWriter::with_capacity(self.encoded_len_hint());
        w.u8(COMMAND_FORMAT_VERSION);
        match self {
            Command::Put { key, value } => {
                w.u8(TAG_PUT);
                w.bytes(key);
                w.bytes(value);
            }
            Command::Delete { key } => {
                w.u8(TAG_DELETE);
                w.bytes(key);
            }
            Command::BatchWrite { ops } => {
                w.u8(TAG_BATCH_WRITE);
                w.len_u32(ops.len());
                for op in ops {
                    match op {
                        WriteOp::Put { key, value } => {
                            w.u8(OP_PUT);
                            w.bytes(key);
                            w.bytes(value);
                        }
                        WriteOp::Delete { key } => {
                            w.u8(OP_DELETE);
                            w.bytes(key);
                        }
                    }
                }
            }
            Command::CompareAndSwap {
                key,
                expected,
                new_value,
            } => {
                w.u8(TAG_COMPARE_AND_SWAP);
                w.bytes(key);
                w.opt_bytes(expected.as_deref());
                w.opt_bytes(new_value.as_deref());
            }
            Command::Split {
                split_key,
                new_region,
                new_peers,
                epoch,
            } => {
                w.u8(TAG_SPLIT);
                w.bytes(split_key);
                w.u64(new_region.get());
                w.u64(epoch.conf_ver);
                w.u64(epoch.version);
                w.len_u32(new_peers.len());
                for p in new_peers {
                    w.u64(p.get());
                }
            }
            Command::Merge(m) => {
                w.u8(TAG_MERGE);
                m.encode_into(&mut w);
            }
        }
        w.into_vec()
    }

    /// Parses bytes made by [`Command::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut r = ByteReader::new(bytes);
        r.version("command", COMMAND_FORMAT_VERSION)?;
        let cmd = match r.u8()? {
            TAG_PUT => Command::Put {
                key: r.bytes()?,
                value: r.bytes()?,
            },
            TAG_DELETE => Command::Delete { key: r.bytes()? },
            TAG_BATCH_WRITE => {
                // Each op takes at least 5 bytes (tag and a length).
                let count = r.count("batch op", 5, BATCH_OPS_MAX)?;
                let mut ops = Vec::with_capacity(count);
                for _ in 0..count {
                    ops.push(match r.u8()? {
                        OP_PUT => WriteOp::Put {
                            key: r.bytes()?,
                            value: r.bytes()?,
                        },
                        OP_DELETE => WriteOp::Delete { key: r.bytes()? },
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "batch op",
                                tag,
                            })
                        }
                    });
                }
                Command::BatchWrite { ops }
            }
            TAG_COMPARE_AND_SWAP => Command::CompareAndSwap {
                key: r.bytes()?,
                expected: r.opt_bytes()?,
                new_value: r.opt_bytes()?,
            },
            TAG_SPLIT => {
                let split_key = r.bytes()?;
                let new_region = RegionId(r.u64()?);
                let epoch = RegionEpoch {
                    conf_ver: r.u64()?,
                    version: r.u64()?,
                };
                let count = r.count("split peer", 8, crate::region::meta::REGION_PEERS_MAX)?;
                let new_peers = (0..count)
                    .map(|_| r.u64().map(PeerId))
                    .collect::<Result<Vec<_>, DecodeError>>()?;
                Command::Split {
                    split_key,
                    new_region,
                    new_peers,
                    epoch,
                }
            }
            TAG_MERGE => Command::Merge(crate::region::merge::MergeCommand::decode_from(&mut r)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "command",
                    tag,
                })
            }
        };
        r.finish()?;
        Ok(cmd)
    }

    fn encoded_len_hint(&self) -> usize {
        let ops: usize = match self {
            Command::Put { key, value } => key.len() + value.len(),
            Command::Delete { key } => key.len(),
            Command::BatchWrite { ops } => ops
                .iter()
                .map(|op| match op {
                    WriteOp::Put { key, value } => 9 + key.len() + value.len(),
                    WriteOp::Delete { key } => 5 + key.len(),
                })
                .sum(),
            Command::CompareAndSwap {
                key,
                expected,
                new_value,
            } => {
                key.len()
                    + expected.as_ref().map_or(0, Vec::len)
                    + new_value.as_ref().map_or(0, Vec::len)
            }
            Command::Split {
                split_key,
                new_peers,
                ..
            } => 28 + split_key.len() + 8 * new_peers.len(),
            Command::Merge(m) => m.encoded_len_hint(),
        };
        ops + 16
    }
}

/// Appends little-endian fields to a byte vector.
#[derive(Debug, Default)]
pub(crate) struct ByteWriter {
    buf: Vec<u8>,
}

impl ByteWriter {
    pub(crate) fn with_capacity(capacity: usize) -> ByteWriter {
        ByteWriter {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A length or count as u32. Every length in this crate's formats is
    /// bounded far below 4 GiB by the wire limits; a larger one is a bug.
    pub(crate) fn len_u32(&mut self, len: usize) {
        let len = u32::try_from(len).expect("length fits in u32");
        self.buf.extend_from_slice(&len.to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, data: &[u8]) {
        self.len_u32(data.len());
        self.buf.extend_from_slice(data);
    }

    pub(crate) fn opt_bytes(&mut self, data: Option<&[u8]>) {
        match data {
            None => self.u8(0),
            Some(d) => {
                self.u8(1);
                self.bytes(d);
            }
        }
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads little-endian fields from a byte slice; every read is
/// bounds-checked and returns `DecodeError::Truncated` past the end.
#[derive(Debug)]
pub(crate) struct ByteReader<'a> {
    rest: &'a [u8],
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> ByteReader<'a> {
        ByteReader { rest: bytes }
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.rest.len() {
            return Err(DecodeError::Truncated {
                needed: len,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// Checks the version byte of a format.
    pub(crate) fn version(&mut self, what: &'static str, expected: u8) -> Result<(), DecodeError> {
        match self.u8()? {
            v if v == expected => Ok(()),
            got => Err(DecodeError::UnsupportedVersion { what, got }),
        }
    }

    /// A u32 count of items that each take at least `item_bytes_min` bytes,
    /// checked against `max` and against the bytes that remain, so that a
    /// bad count never causes a large allocation.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        item_bytes_min: usize,
        max: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(DecodeError::TooMany { what, count, max });
        }
        let needed = count.saturating_mul(item_bytes_min);
        if needed > self.rest.len() {
            return Err(DecodeError::Truncated {
                needed,
                remaining: self.rest.len(),
            });
        }
        Ok(count)
    }

    /// A length-prefixed byte string, borrowed.
    pub(crate) fn slice(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.slice()?.to_vec())
    }

    pub(crate) fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes()?)),
            tag => Err(DecodeError::UnknownTag {
                what: "option",
                tag,
            }),
        }
    }

    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                len: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..16)
    }

    fn op_strategy() -> impl Strategy<Value = WriteOp> {
        prop_oneof![
            (bytes_strategy(), bytes_strategy())
                .prop_map(|(key, value)| WriteOp::Put { key, value }),
            bytes_strategy().prop_map(|key| WriteOp::Delete { key }),
        ]
    }

    fn command_strategy() -> impl Strategy<Value = Command> {
        prop_oneof![
            (bytes_strategy(), bytes_strategy())
                .prop_map(|(key, value)| Command::Put { key, value }),
            bytes_strategy().prop_map(|key| Command::Delete { key }),
            proptest::collection::vec(op_strategy(), 0..6)
                .prop_map(|ops| Command::BatchWrite { ops }),
            (
                bytes_strategy(),
                proptest::option::of(bytes_strategy()),
                proptest::option::of(bytes_strategy())
            )
                .prop_map(|(key, expected, new_value)| Command::CompareAndSwap {
                    key,
                    expected,
                    new_value
                }),
            (
                bytes_strategy(),
                any::<u64>(),
                proptest::collection::vec(any::<u64>(), 0..17),
                any::<(u64, u64)>()
            )
                .prop_map(|(split_key, region, peers, (conf_ver, version))| {
                    Command::Split {
                        split_key,
                        new_region: RegionId(region),
                        new_peers: peers.into_iter().map(PeerId).collect(),
                        epoch: RegionEpoch { conf_ver, version },
                    }
                }),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip(cmd in command_strategy()) {
            let bytes = cmd.encode();
            prop_assert!(!bytes.is_empty());
            prop_assert_eq!(Command::decode(&bytes), Ok(cmd));
        }

        #[test]
        fn every_prefix_is_an_error(cmd in command_strategy()) {
            let bytes = cmd.encode();
            for len in 0..bytes.len() {
                prop_assert!(Command::decode(&bytes[..len]).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Command::decode(&bytes);
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = Command::Delete { key: b"k".to_vec() }.encode();
        bytes.push(0);
        assert_eq!(
            Command::decode(&bytes),
            Err(DecodeError::TrailingBytes { len: 1 })
        );
    }

    #[test]
    fn bad_version_and_tags_are_typed_errors() {
        assert_eq!(
            Command::decode(&[9, TAG_PUT]),
            Err(DecodeError::UnsupportedVersion {
                what: "command",
                got: 9
            })
        );
        assert_eq!(
            Command::decode(&[COMMAND_FORMAT_VERSION, 77]),
            Err(DecodeError::UnknownTag {
                what: "command",
                tag: 77
            })
        );
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut bytes = vec![COMMAND_FORMAT_VERSION, TAG_BATCH_WRITE];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Command::decode(&bytes),
            Err(DecodeError::TooMany { .. })
        ));
        let mut bytes = vec![COMMAND_FORMAT_VERSION, TAG_BATCH_WRITE];
        bytes.extend_from_slice(&100u32.to_le_bytes());
        assert!(matches!(
            Command::decode(&bytes),
            Err(DecodeError::Truncated { .. })
        ));
        let mut bytes = vec![COMMAND_FORMAT_VERSION, TAG_DELETE];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Command::decode(&bytes),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn split_bytes_are_as_documented_and_bounded() {
        let cmd = Command::Split {
            split_key: b"m".to_vec(),
            new_region: RegionId(9),
            new_peers: vec![PeerId(10), PeerId(11)],
            epoch: RegionEpoch {
                conf_ver: 2,
                version: 3,
            },
        };
        let bytes = cmd.encode();
        let mut want = vec![COMMAND_FORMAT_VERSION, TAG_SPLIT, 1, 0, 0, 0, b'm'];
        for v in [9u64, 2, 3] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.extend_from_slice(&2u32.to_le_bytes());
        for v in [10u64, 11] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(bytes, want);
        assert_eq!(cmd.keys().count(), 0);
        // More peers than a region may have: refused before allocating.
        let mut many = want[..want.len() - 20].to_vec();
        many.extend_from_slice(&17u32.to_le_bytes());
        many.extend(std::iter::repeat_n(0u8, 17 * 8));
        assert!(matches!(
            Command::decode(&many),
            Err(DecodeError::TooMany { .. })
        ));
        // A split request is not a data write.
        let err = Command::from_request(RequestBody::Split {
            key: b"a".to_vec(),
            split_key: b"m".to_vec(),
            new_region: RegionId(9),
            new_peers: vec![PeerId(10)],
        })
        .unwrap_err();
        assert_eq!(err.code(), 105);
    }

    #[test]
    fn reads_are_not_commands() {
        let err = Command::from_request(RequestBody::Get { key: b"k".to_vec() }).unwrap_err();
        assert_eq!(err.code(), 105);
        let cmd = Command::from_request(RequestBody::BatchWrite {
            ops: vec![
                WriteOp::Put {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                },
                WriteOp::Delete { key: b"b".to_vec() },
            ],
        })
        .unwrap();
        assert_eq!(cmd.keys().collect::<Vec<_>>(), vec![&b"a"[..], &b"b"[..]]);
    }
}
