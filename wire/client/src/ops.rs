//! Typed results of the client operations, shared by both front ends.
//!
//! Owns the conversion of a [`ResponseBody`] into what each method returns.
//! Invariant: a response is converted only after it was checked to match its
//! request's operation ([`response_matches`]); a mismatch is a protocol
//! error of the server, never a panic.

use golem_wire::{KvPair, RequestBody, ResponseBody};

/// The result of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// The pairs, in key order (descending for a reverse scan).
    pub pairs: Vec<KvPair>,
    /// True when the scan stopped at a limit and more pairs may follow:
    /// continue from just after the last key (before it, for a reverse scan).
    pub more: bool,
}

/// The result of a compare-and-swap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CasResult {
    /// Whether the new value was written.
    pub swapped: bool,
    /// The value before the operation (None: the key was absent).
    pub previous: Option<Vec<u8>>,
}

/// The operation name of a response, for errors and logs.
pub fn response_name(body: &ResponseBody) -> &'static str {
    match body {
        ResponseBody::Get { .. } => "get",
        ResponseBody::Put => "put",
        ResponseBody::Delete => "delete",
        ResponseBody::Scan { .. } => "scan",
        ResponseBody::BatchGet { .. } => "batch_get",
        ResponseBody::BatchWrite => "batch_write",
        ResponseBody::CompareAndSwap { .. } => "cas",
        ResponseBody::TransferLeader => "transfer_leader",
        ResponseBody::ChangePeers { .. } => "change_peers",
        ResponseBody::Split { .. } => "split",
    }
}

/// Whether `response` answers `request` (same operation; for a batch get,
/// one value per key).
pub fn response_matches(request: &RequestBody, response: &ResponseBody) -> bool {
    match (request, response) {
        (RequestBody::BatchGet { keys }, ResponseBody::BatchGet { values }) => {
            keys.len() == values.len()
        }
        _ => request.name() == response_name(response),
    }
}

/// A method's return type, made from a matching response.
pub trait FromResponse: Sized {
    /// Converts `body`; hands it back when it is of another operation.
    fn from_response(body: ResponseBody) -> Result<Self, ResponseBody>;
}

impl FromResponse for ResponseBody {
    fn from_response(body: ResponseBody) -> Result<Self, ResponseBody> {
        Ok(body)
    }
}

/// Get: the value, if the key exists.
impl FromResponse for Option<Vec<u8>> {
    fn from_response(body: ResponseBody) -> Result<Self, ResponseBody> {
        match body {
            ResponseBody::Get { value } => Ok(value),
            other => Err(other),
        }
    }
}

/// Put, Delete, BatchWrite: nothing.
impl FromResponse for () {
    fn from_response(body: ResponseBody) -> Result<Self, ResponseBody> {
        match body {
            ResponseBody::Put | ResponseBody::Delete | ResponseBody::BatchWrite => Ok(()),
            other => Err(other),
        }
    }
}

/// BatchGet: one value per key, in request order.
impl FromResponse for Vec<Option<Vec<u8>>> {
    fn from_response(body: ResponseBody) -> Result<Self, ResponseBody> {
        match body {
            ResponseBody::BatchGet { values } => Ok(values),
            other => Err(other),
        }
    }
}

impl FromResponse for ScanResult {
    fn from_response(body: ResponseBody) -> Result<Self, ResponseBody> {
        match body {
            ResponseBody::Scan { pairs, more } => Ok(ScanResult { pairs, more }),
            other => Err(other),
        }
    }
}

impl FromResponse for CasResult {
    fn from_response(body: ResponseBody) -> Result<Self, ResponseBody> {
        match body {
            ResponseBody::CompareAndSwap { swapped, previous } => {
                Ok(CasResult { swapped, previous })
            }
            other => Err(other),
        }
    }
}

/// Builders of request bodies from ergonomic arguments.
pub(crate) mod body {
    use golem_wire::{RequestBody, WriteOp};

    pub fn get(key: impl Into<Vec<u8>>) -> RequestBody {
        RequestBody::Get { key: key.into() }
    }

    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> RequestBody {
        RequestBody::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> RequestBody {
        RequestBody::Delete { key: key.into() }
    }

    pub fn scan(
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
        limit: u32,
        reverse: bool,
    ) -> RequestBody {
        RequestBody::Scan {
            start: start.into(),
            end: end.into(),
            limit,
            reverse,
        }
    }

    pub fn batch_get<K: Into<Vec<u8>>>(keys: impl IntoIterator<Item = K>) -> RequestBody {
        RequestBody::BatchGet {
            keys: keys.into_iter().map(Into::into).collect(),
        }
    }

    pub fn batch_write(ops: impl IntoIterator<Item = WriteOp>) -> RequestBody {
        RequestBody::BatchWrite {
            ops: ops.into_iter().collect(),
        }
    }

    pub fn cas(
        key: impl Into<Vec<u8>>,
        expected: Option<&[u8]>,
        new_value: Option<&[u8]>,
    ) -> RequestBody {
        RequestBody::CompareAndSwap {
            key: key.into(),
            expected: expected.map(<[u8]>::to_vec),
            new_value: new_value.map(<[u8]>::to_vec),
        }
    }
}

/// Convenience constructors of [`golem_wire::WriteOp`] for `batch_write`.
pub mod write {
    use golem_wire::WriteOp;

    /// A put of `key` to `value`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> WriteOp {
        WriteOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A delete of `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> WriteOp {
        WriteOp::Delete { key: key.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_and_conversion() {
        let get = body::get("k");
        let ok = ResponseBody::Get {
            value: Some(b"v".to_vec()),
        };
        assert!(response_matches(&get, &ok));
        assert!(!response_matches(&get, &ResponseBody::Put));
        assert_eq!(
            <Option<Vec<u8>>>::from_response(ok),
            Ok(Some(b"v".to_vec()))
        );
        assert!(<()>::from_response(ResponseBody::Get { value: None }).is_err());
        let bg = body::batch_get(["a", "b"]);
        assert!(!response_matches(
            &bg,
            &ResponseBody::BatchGet { values: vec![None] }
        ));
        assert!(response_matches(
            &bg,
            &ResponseBody::BatchGet {
                values: vec![None, None]
            }
        ));
        let cas = body::cas("k", None, Some(b"v"));
        assert!(response_matches(
            &cas,
            &ResponseBody::CompareAndSwap {
                swapped: true,
                previous: None
            }
        ));
    }
}
