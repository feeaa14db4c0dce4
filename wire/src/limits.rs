//! Limits on everything that enters through the wire.
//!
//! Every limit is enforced where input enters (the frame decoder for sizes,
//! the server's request validation for keys, values and batches, the
//! connection for in-flight counts). Units are the last word of each name.
//! Changing a limit downwards is a protocol change: document it in
//! docs/wire.md.

/// Largest key accepted, in bytes. Keys are never empty.
pub const KEY_BYTES_MAX: usize = 8 * 1024;
/// Largest value accepted, in bytes.
pub const VALUE_BYTES_MAX: usize = 1024 * 1024;
/// Largest frame payload, in bytes (header excluded). A length above this is
/// rejected from the header alone, before any allocation.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest number of keys in one BatchGet or operations in one BatchWrite.
pub const BATCH_OPS_MAX: usize = 4096;
/// Largest total of key and value bytes in one BatchWrite.
pub const BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest number of pairs one Scan returns; larger limits are clamped.
pub const SCAN_PAIRS_MAX: u32 = 10_000;
/// Largest total of key and value bytes one Scan returns; the response says
/// `more` when it stopped early.
pub const SCAN_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Requests one connection may have in flight; one more gets `TooManyInFlight`.
pub const IN_FLIGHT_REQUESTS_MAX: usize = 1024;
/// Longest client name in the handshake, in bytes.
pub const CLIENT_NAME_BYTES_MAX: usize = 256;
/// Longest free-text reason in an error, in bytes (longer text is cut).
pub const ERROR_TEXT_BYTES_MAX: usize = 1024;

/// Most replica changes in one `ChangePeers` request, and most new peers in
/// one `Split` (a region has at most 16 replicas).
pub const PEER_CHANGES_MAX: usize = 16;
