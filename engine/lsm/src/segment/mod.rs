//! Segment files: immutable, sorted, checksummed runs of entries.
//!
//! - `format`: the byte layout constants and the footer codec;
//! - `writer`: `SegmentWriter`, which streams sorted entries into a file;
//! - `reader`: `Segment`, a validated read-only mapping of a finished file;
//! - `iter`: `SegmentIter`, its forward/reverse range cursor;
//! - `meta`: decoders of the metadata blocks.
//!
//! The byte-level specification is in docs/storage.md, section "LSM".

pub(crate) mod format;
mod iter;
mod meta;
pub(crate) mod reader;
pub(crate) mod writer;

pub use reader::Segment;
pub use writer::{SegmentInfo, SegmentWriter};
