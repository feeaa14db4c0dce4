//! Reads that span regions: a scan or a batch get cut into one request per
//! region, and the pieces' answers put back together.
//!
//! Owns the cutting rule ([`clamp`]: what of a request one region serves)
//! and the two cursors that walk a spanning read piece by piece
//! ([`ScanCursor`], [`BatchGetCursor`]). The front ends send each piece as
//! an ordinary call; the call clamps the piece to the region its route
//! names *at each attempt* (a retry after a split clamps to the new, smaller
//! region), and the cursor continues from what that attempt covered.
//!
//! Invariants:
//! - A piece never asks a region for keys outside it, so a server never
//!   answers `KeyNotInRegion` to a piece routed with a known range.
//! - A scan returns the pairs of `[start, end)` in key order (descending
//!   when reversed), each at most once, at most `limit` of them; `more` is
//!   true only when it stopped at a limit with keys possibly left.
//! - A batch get returns one value per requested key, in request order,
//!   each read from the region covering that key.
//! - Each piece covers at least one region or one key, so a spanning read
//!   ends after at most (regions + limit) pieces.

use crate::ops::ScanResult;
use golem_wire::{KvPair, RequestBody};

/// The key range `[start, end)` of the region a piece is routed to (empty
/// `end`: the end of the key space).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionBounds {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl RegionBounds {
    fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// Whether a request can be cut into per-region pieces.
pub fn is_spanning(body: &RequestBody) -> bool {
    matches!(
        body,
        RequestBody::Scan { .. } | RequestBody::BatchGet { .. }
    )
}

/// The part of `body` that the region `bounds` serves: a scan's range
/// intersected with the region, a batch get's keys inside it (in order).
/// Other requests are returned unchanged. The result of a scan routed by
/// its start (forward) or by the keys below its end (reverse) is never
/// empty; a batch get keeps at least its first key when that key routed it.
pub fn clamp(body: &RequestBody, bounds: &RegionBounds) -> RequestBody {
    match body {
        RequestBody::Scan {
            start,
            end,
            limit,
            reverse,
        } => {
            let start = start.max(&bounds.start).clone();
            let end = match (end.is_empty(), bounds.end.is_empty()) {
                (true, _) => bounds.end.clone(),
                (false, true) => end.clone(),
                (false, false) => end.min(&bounds.end).clone(),
            };
            RequestBody::Scan {
                start,
                end,
                limit: *limit,
                reverse: *reverse,
            }
        }
        RequestBody::BatchGet { keys } => RequestBody::BatchGet {
            keys: keys
                .iter()
                .filter(|k| bounds.contains(k))
                .cloned()
                .collect(),
        },
        other => other.clone(),
    }
}

/// Walks a scan across regions.
#[derive(Debug)]
pub struct ScanCursor {
    start: Vec<u8>,
    end: Vec<u8>,
    limit_left: u32,
    reverse: bool,
    pairs: Vec<KvPair>,
    /// Set when the scan is over: its `more`.
    done: Option<bool>,
}

impl ScanCursor {
    /// A scan of `[start, end)`, at most `limit` pairs.
    pub fn new(start: Vec<u8>, end: Vec<u8>, limit: u32, reverse: bool) -> ScanCursor {
        let done = (limit == 0).then_some(false);
        ScanCursor {
            start,
            end,
            limit_left: limit,
            reverse,
            pairs: Vec::new(),
            done,
        }
    }

    /// The next piece to send (the whole remaining scan: each attempt clamps
    /// it to its region), or None when the scan is over.
    pub fn next_piece(&self) -> Option<RequestBody> {
        if self.done.is_some() {
            return None;
        }
        Some(RequestBody::Scan {
            start: self.start.clone(),
            end: self.end.clone(),
            limit: self.limit_left,
            reverse: self.reverse,
        })
    }

    /// Takes the answer to the last piece. `served` is the scan request the
    /// successful attempt actually sent (clamped to its region, or the whole
    /// remaining range if it was sent unclamped and served by one region).
    pub fn on_piece(&mut self, served: &RequestBody, result: ScanResult) {
        let RequestBody::Scan {
            start: served_start,
            end: served_end,
            ..
        } = served
        else {
            panic!("a scan piece was answered for a {} request", served.name());
        };
        let got = u32::try_from(result.pairs.len()).unwrap_or(u32::MAX);
        assert!(
            got <= self.limit_left,
            "a server returned {got} pairs for a limit of {}",
            self.limit_left
        );
        self.limit_left -= got;
        let last = result.pairs.last().map(|p| p.key.clone());
        self.pairs.extend(result.pairs);
        if self.limit_left == 0 {
            // Stopped at the caller's limit: keys may be left (in this
            // region, or in the next ones).
            self.done = Some(result.more || !self.piece_reaches_end(served_start, served_end));
            return;
        }
        if result.more {
            // The server stopped early (a response size cap) inside the
            // region: continue right after (before) the last key.
            let last = last.expect("a server that stops early returns pairs");
            if self.reverse {
                self.end = last;
            } else {
                let mut after = last;
                after.push(0);
                self.start = after;
            }
            return;
        }
        if self.piece_reaches_end(served_start, served_end) {
            self.done = Some(false);
        } else if self.reverse {
            self.end = served_start.clone();
        } else {
            self.start = served_end.clone();
        }
    }

    /// Whether a piece that covered `[s, e)` covered the rest of the scan.
    fn piece_reaches_end(&self, s: &[u8], e: &[u8]) -> bool {
        if self.reverse {
            s <= self.start.as_slice()
        } else {
            e.is_empty() || (!self.end.is_empty() && self.end.as_slice() <= e)
        }
    }

    /// The scan's result, once `next_piece` returned None.
    ///
    /// # Panics
    /// If the scan is not over.
    pub fn finish(self) -> ScanResult {
        ScanResult {
            pairs: self.pairs,
            more: self.done.expect("finish after the last piece"),
        }
    }
}

/// Walks a batch get across regions.
#[derive(Debug)]
pub struct BatchGetCursor {
    keys: Vec<Vec<u8>>,
    values: Vec<Option<Option<Vec<u8>>>>,
}

impl BatchGetCursor {
    /// A batch get of `keys` (in order; repeats allowed).
    pub fn new(keys: Vec<Vec<u8>>) -> BatchGetCursor {
        let values = vec![None; keys.len()];
        BatchGetCursor { keys, values }
    }

    /// The keys not answered yet, in request order; None when all are.
    pub fn next_piece(&self) -> Option<RequestBody> {
        let keys: Vec<Vec<u8>> = self
            .keys
            .iter()
            .zip(&self.values)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        (!keys.is_empty()).then_some(RequestBody::BatchGet { keys })
    }

    /// Takes the answer to the last piece: `served` is the batch get the
    /// successful attempt sent; its keys are the first unanswered keys that
    /// lie in its region, in order, and `values` answer them one for one.
    ///
    /// # Panics
    /// If `values` does not answer `served` (the call checks that first),
    /// or `served` holds a key that is not unanswered.
    pub fn on_piece(&mut self, served: &RequestBody, values: Vec<Option<Vec<u8>>>) {
        let RequestBody::BatchGet { keys: served } = served else {
            panic!(
                "a batch get piece was answered for a {} request",
                served.name()
            );
        };
        assert_eq!(served.len(), values.len(), "one value per served key");
        let mut values = values.into_iter();
        let mut next = 0;
        for served_key in served {
            let slot = (next..self.keys.len())
                .find(|&i| self.values[i].is_none() && self.keys[i] == *served_key)
                .expect("a served key is an unanswered key of the batch");
            self.values[slot] = Some(values.next().expect("counted"));
            next = slot + 1;
        }
    }

    /// The values in request order, once `next_piece` returned None.
    ///
    /// # Panics
    /// If a key is unanswered.
    pub fn finish(self) -> Vec<Option<Vec<u8>>> {
        self.values
            .into_iter()
            .map(|v| v.expect("finish after the last piece"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn bounds(s: &str, e: &str) -> RegionBounds {
        RegionBounds {
            start: b(s),
            end: b(e),
        }
    }

    /// A model cluster: regions split at `splits`, data in `data`; serves a
    /// piece like a node would (KeyNotInRegion is impossible after clamping:
    /// asserted), with at most `page` pairs per answer.
    struct Model {
        splits: Vec<Vec<u8>>,
        data: BTreeMap<Vec<u8>, Vec<u8>>,
        page: u32,
    }

    impl Model {
        fn region_of(&self, key: &[u8], before: bool) -> RegionBounds {
            let mut start = Vec::new();
            for s in &self.splits {
                let inside = if before {
                    key.is_empty() || s.as_slice() < key
                } else {
                    s.as_slice() <= key
                };
                if !inside {
                    return RegionBounds {
                        start,
                        end: s.clone(),
                    };
                }
                start = s.clone();
            }
            RegionBounds {
                start,
                end: Vec::new(),
            }
        }

        fn serve(&self, piece: &RequestBody) -> (RequestBody, ScanResult) {
            let RequestBody::Scan {
                start,
                end,
                limit,
                reverse,
            } = piece
            else {
                unreachable!()
            };
            let region = if *reverse {
                self.region_of(end, true)
            } else {
                self.region_of(start, false)
            };
            let served = clamp(piece, &region);
            let RequestBody::Scan { start, end, .. } = &served else {
                unreachable!()
            };
            assert!(region.contains(start));
            let inside = |k: &Vec<u8>| k >= start && (end.is_empty() || k < end);
            let mut all: Vec<KvPair> = self
                .data
                .iter()
                .filter(|(k, _)| inside(k))
                .map(|(k, v)| KvPair {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            if *reverse {
                all.reverse();
            }
            let cap = (*limit).min(self.page) as usize;
            let more = all.len() > cap;
            all.truncate(cap);
            (served, ScanResult { pairs: all, more })
        }

        fn scan(&self, start: &str, end: &str, limit: u32, reverse: bool) -> (ScanResult, usize) {
            let mut c = ScanCursor::new(b(start), b(end), limit, reverse);
            let mut pieces = 0;
            while let Some(piece) = c.next_piece() {
                let (served, result) = self.serve(&piece);
                c.on_piece(&served, result);
                pieces += 1;
                assert!(pieces < 1000, "the scan makes progress");
            }
            (c.finish(), pieces)
        }

        fn expected(&self, start: &str, end: &str, limit: u32, reverse: bool) -> ScanResult {
            let (s, e) = (b(start), b(end));
            let mut all: Vec<KvPair> = self
                .data
                .iter()
                .filter(|(k, _)| **k >= s && (e.is_empty() || **k < e))
                .map(|(k, v)| KvPair {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            if reverse {
                all.reverse();
            }
            let more = all.len() > limit as usize;
            all.truncate(limit as usize);
            ScanResult { pairs: all, more }
        }
    }

    fn model(page: u32) -> Model {
        Model {
            splits: vec![b("c"), b("f"), b("m")],
            data: ["a", "b", "c", "d", "e", "f", "g", "m", "n", "z"]
                .iter()
                .map(|k| (b(k), b(&k.to_uppercase())))
                .collect(),
            page,
        }
    }

    #[test]
    fn clamp_cuts_a_scan_to_its_region() {
        let scan = |s: &str, e: &str| RequestBody::Scan {
            start: b(s),
            end: b(e),
            limit: 5,
            reverse: false,
        };
        assert_eq!(clamp(&scan("a", ""), &bounds("c", "f")), scan("c", "f"));
        assert_eq!(clamp(&scan("d", "e"), &bounds("c", "f")), scan("d", "e"));
        assert_eq!(clamp(&scan("d", ""), &bounds("c", "")), scan("d", ""));
        assert_eq!(clamp(&scan("d", "x"), &bounds("c", "")), scan("d", "x"));
        let keys = RequestBody::BatchGet {
            keys: vec![b("a"), b("d"), b("x"), b("c")],
        };
        assert_eq!(
            clamp(&keys, &bounds("c", "f")),
            RequestBody::BatchGet {
                keys: vec![b("d"), b("c")]
            }
        );
    }

    #[test]
    fn scans_across_regions_match_a_single_map() {
        for page in [1, 2, 100] {
            let m = model(page);
            for (s, e) in [
                ("", ""),
                ("a", "n"),
                ("b", "c"),
                ("c", "f"),
                ("e", "zz"),
                ("x", ""),
            ] {
                for limit in [1, 2, 3, 7, 10, 100] {
                    for reverse in [false, true] {
                        let (got, _) = m.scan(s, e, limit, reverse);
                        assert_eq!(
                            got,
                            m.expected(s, e, limit, reverse),
                            "[{s}, {e}) limit {limit} reverse {reverse} page {page}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_scan_takes_one_piece_per_region_it_crosses() {
        let m = model(100);
        assert_eq!(m.scan("", "", 100, false).1, 4);
        assert_eq!(m.scan("", "", 100, true).1, 4);
        assert_eq!(m.scan("d", "e", 100, false).1, 1);
        // Stops at the limit without visiting later regions.
        assert_eq!(m.scan("", "", 2, false).1, 1);
    }

    #[test]
    fn an_empty_range_ends_at_once() {
        let m = model(100);
        let (got, pieces) = m.scan("d", "d", 5, false);
        assert_eq!((got.pairs.len(), got.more, pieces), (0, false, 1));
    }

    #[test]
    fn batch_get_pieces_reassemble_in_request_order() {
        let m = model(100);
        let keys = vec![b("z"), b("a"), b("d"), b("a"), b("q"), b("n")];
        let mut c = BatchGetCursor::new(keys.clone());
        let mut pieces = 0;
        while let Some(piece) = c.next_piece() {
            let RequestBody::BatchGet { keys: left } = &piece else {
                unreachable!()
            };
            let region = m.region_of(&left[0], false);
            let served = clamp(&piece, &region);
            let RequestBody::BatchGet { keys: sent } = &served else {
                unreachable!()
            };
            let values = sent.iter().map(|k| m.data.get(k).cloned()).collect();
            c.on_piece(&served, values);
            pieces += 1;
        }
        let expected: Vec<_> = keys.iter().map(|k| m.data.get(k).cloned()).collect();
        assert_eq!(c.finish(), expected);
        assert_eq!(pieces, 3, "regions [m,∞), [..c), [c,f)");
    }
}
