//! Bad input over real sockets (../shared/reliability.md, "Framing",
//! "rkyv payloads", "Abusive clients", "Requests"): each case gets a typed
//! error and closes at most the offending connection; afterwards the node
//! still serves another client.

mod common;

use common::*;
use golem_wire::frame::{FrameHeader, FRAME_MAGIC, PROTOCOL_VERSION};
use golem_wire::limits::*;
use golem_wire::*;
use std::io::Write;
use std::time::Duration;

fn header(kind: u8, len: u32, id: u32, crc: u32) -> Vec<u8> {
    let mut h = FrameHeader {
        kind: FrameKind::Request,
        flags: 0,
        payload_len: len,
        request_id: RequestId(id),
        payload_crc: crc,
    }
    .encode()
    .to_vec();
    h[2] = kind;
    h
}

fn raw_frame(kind: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = header(kind, payload.len() as u32, id, crc32c::crc32c(payload));
    f.extend_from_slice(payload);
    f
}

fn request_payload(body: RequestBody) -> Vec<u8> {
    request_frame(1, body)[16..].to_vec()
}

/// Sends `bytes` on a handshaken connection and returns the goodbye code.
fn goodbye_code(node: &NodeProcess, bytes: &[u8]) -> Option<u16> {
    let mut c = RawConn::handshake(node.base);
    c.send(bytes);
    c.expect_close().map(|e| e.code())
}

#[test]
fn framing_errors_close_only_the_offending_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), 1, &["--frame-timeout-ms", "700"]);
    // A healthy connection that must survive every bad one.
    let mut healthy = RawConn::handshake(node.base);

    let valid = request_payload(get(b"k"));
    let malformed = GolemError::malformed("").code();

    // Zero-length payload: not a valid archive.
    assert_eq!(goodbye_code(&node, &raw_frame(3, 1, &[])), Some(malformed));
    // Length of 0xFFFFFFFF: rejected from the header, before any allocation.
    assert_eq!(
        goodbye_code(&node, &header(3, u32::MAX, 1, 0)),
        Some(GolemError::FrameTooLarge { len: 0, max: 0 }.code())
    );
    // Bad magic, version, kind, flags.
    let mut bad_magic = raw_frame(3, 1, &valid);
    bad_magic[0] = FRAME_MAGIC ^ 0xFF;
    assert_eq!(goodbye_code(&node, &bad_magic), Some(malformed));
    let mut bad_version = raw_frame(3, 1, &valid);
    bad_version[1] = PROTOCOL_VERSION + 1;
    assert_eq!(
        goodbye_code(&node, &bad_version),
        Some(
            GolemError::UnsupportedVersion {
                got: 0,
                supported: 0
            }
            .code()
        )
    );
    assert_eq!(
        goodbye_code(&node, &raw_frame(99, 1, &valid)),
        Some(malformed)
    );
    assert_eq!(
        goodbye_code(&node, &raw_frame(4, 1, &valid)),
        Some(malformed)
    );
    let mut bad_flags = raw_frame(3, 1, &valid);
    bad_flags[3] = 1;
    assert_eq!(goodbye_code(&node, &bad_flags), Some(malformed));
    // Checksum mismatch.
    let mut bad_crc = raw_frame(3, 1, &valid);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x01;
    assert_eq!(
        goodbye_code(&node, &bad_crc),
        Some(GolemError::ChecksumMismatch.code())
    );
    // Trailing bytes inside the payload: the archive no longer ends at the end.
    let mut trailing = valid.clone();
    trailing.extend_from_slice(&[0u8; 16]);
    assert_eq!(
        goodbye_code(&node, &raw_frame(3, 1, &trailing)),
        Some(malformed)
    );
    // Garbage after a valid frame: the valid one is answered, then goodbye.
    {
        let mut c = RawConn::handshake(node.base);
        let mut bytes = request_frame(7, put(b"g", b"1"));
        bytes.extend_from_slice(b"this is not a frame header");
        c.send(&bytes);
        match c.recv() {
            Reply::Response(id, Response::Ok(ResponseBody::Put)) => assert_eq!(id, RequestId(7)),
            other => panic!("valid frame before garbage not answered: {other:?}"),
        }
        assert_eq!(c.expect_close().map(|e| e.code()), Some(malformed));
    }
    // Truncated header, then EOF: silently closed.
    {
        let mut c = RawConn::connect(node.base);
        c.send(&header(3, 10, 1, 0)[..7]);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.expect_close(), None);
    }
    // Truncated body, then EOF.
    {
        let mut c = RawConn::handshake(node.base);
        let f = raw_frame(3, 1, &valid);
        c.send(&f[..f.len() - 3]);
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(c.expect_close(), None);
    }
    // A length larger than what is sent: the frame timeout closes it.
    {
        let mut c = RawConn::handshake(node.base);
        c.send(&header(3, 1000, 1, 0));
        c.send(&[0u8; 10]);
        assert_eq!(
            c.expect_close().map(|e| e.code()),
            Some(GolemError::Timeout.code())
        );
    }
    // A 1 byte/s sender cannot hold a connection open past the frame timeout.
    {
        let mut c = RawConn::handshake(node.base);
        let f = raw_frame(3, 1, &valid);
        let mut closed = false;
        for b in f.iter().take(6) {
            if c.stream.write_all(&[*b]).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = closed;
        assert_eq!(
            c.expect_close().map(|e| e.code()),
            Some(GolemError::Timeout.code())
        );
    }
    // A request before the handshake.
    {
        let mut c = RawConn::connect(node.base);
        c.send(&request_frame(1, get(b"k")));
        assert_eq!(
            c.expect_close().map(|e| e.code()),
            Some(GolemError::HandshakeRequired.code())
        );
    }
    // A connection that never says anything is closed by the handshake timeout.
    {
        let mut c = RawConn::connect(node.base);
        assert_eq!(
            c.expect_close().map(|e| e.code()),
            Some(GolemError::Timeout.code())
        );
    }

    assert_eq!(
        healthy.call(100, put(b"healthy", b"1")),
        Response::Ok(ResponseBody::Put)
    );
    assert_serves(node.base);
}

#[test]
fn malformed_payloads_get_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), 1, &[]);
    let malformed = GolemError::malformed("").code();

    // All-0xFF payload of a plausible size: out-of-bounds pointers, bad tags.
    assert_eq!(
        goodbye_code(&node, &raw_frame(3, 1, &[0xFF; 64])),
        Some(malformed)
    );
    // Invalid enum tag: find the byte that differs between two request kinds.
    let get_p = request_payload(get(b"kkkk"));
    let del_p = request_payload(RequestBody::Delete {
        key: b"kkkk".to_vec(),
    });
    assert_eq!(get_p.len(), del_p.len());
    let tag_at = (0..get_p.len()).find(|&i| get_p[i] != del_p[i]).unwrap();
    let mut bad_tag = get_p.clone();
    bad_tag[tag_at] = 0xEE;
    assert_eq!(
        goodbye_code(&node, &raw_frame(3, 1, &bad_tag)),
        Some(malformed)
    );
    // Huge vector length / out-of-bounds relative pointer: corrupt every
    // 4-byte word in turn; each must be answered or refused, never crash.
    let base = request_payload(put(b"key-key-key", b"value-value"));
    for i in (0..base.len()).step_by(4) {
        let mut p = base.clone();
        p[i..i + 4].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        let mut c = RawConn::handshake(node.base);
        c.send(&raw_frame(3, 1, &p));
        match c.recv() {
            Reply::Response(_, _) => {}
            Reply::Goodbye(e) => assert_eq!(e.code(), malformed, "word {i}: {e}"),
            Reply::Closed => panic!("word {i}: closed without a typed error"),
            Reply::HelloOk(_) => panic!("unexpected HelloOk"),
        }
    }
    // A malformed Hello.
    {
        let mut c = RawConn::connect(node.base);
        c.send(&raw_frame(1, 0, &[1, 2, 3]));
        assert_eq!(c.expect_close().map(|e| e.code()), Some(malformed));
    }
    assert_serves(node.base);
}

#[test]
fn abusive_clients_are_contained() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), 1, &["--connections-per-shard-max", "8"]);

    // Pipelining past the in-flight cap: every request gets exactly one
    // answer, and the ones past the cap get TooManyInFlight.
    {
        let mut c = RawConn::handshake(node.base);
        let n = 3000u32;
        let mut bytes = Vec::new();
        for i in 0..n {
            bytes.extend_from_slice(&request_frame(i, put(format!("p{i}").as_bytes(), b"v")));
        }
        c.send(&bytes);
        let mut seen = std::collections::HashSet::new();
        let mut refused = 0;
        for _ in 0..n {
            match c.recv() {
                Reply::Response(id, Response::Ok(ResponseBody::Put)) => assert!(seen.insert(id)),
                Reply::Response(id, Response::Err(GolemError::TooManyInFlight { max })) => {
                    assert_eq!(max as usize, IN_FLIGHT_REQUESTS_MAX);
                    assert!(seen.insert(id));
                    refused += 1;
                }
                other => panic!("unexpected reply {other:?}"),
            }
        }
        assert_eq!(seen.len(), n as usize);
        assert!(refused > 0, "no request was refused past the in-flight cap");
    }
    // A reused request id while the first is in flight closes the connection.
    {
        let mut c = RawConn::handshake(node.base);
        let mut bytes = request_frame(5, put(b"dup", b"1"));
        bytes.extend_from_slice(&request_frame(5, put(b"dup", b"2")));
        c.send(&bytes);
        assert_eq!(
            c.expect_close().map(|e| e.code()),
            Some(GolemError::DuplicateRequestId { id: RequestId(5) }.code())
        );
    }
    // A connection flood past the per-shard limit: extra connections are
    // closed at once; the node serves again once the flood ends.
    {
        let mut flood: Vec<_> = (0..8).map(|_| RawConn::handshake(node.base)).collect();
        let mut extra = RawConn::connect(node.base);
        assert_eq!(extra.expect_close(), None);
        flood.clear();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_serves(node.base);
}

#[test]
fn bad_requests_get_typed_errors_and_keep_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), 2, &[]);
    let mut c = RawConn::handshake(node.base);
    let code = |r: Response| match r {
        Response::Err(e) => e.code(),
        Response::Ok(b) => panic!("expected an error, got {b:?}"),
    };
    assert_eq!(code(c.call(1, get(b""))), GolemError::EmptyKey.code());
    let big_key = vec![b'k'; KEY_BYTES_MAX + 1];
    assert_eq!(
        code(c.call(2, put(&big_key, b"v"))),
        GolemError::KeyTooLarge { len: 0, max: 0 }.code()
    );
    let big_value = vec![b'v'; VALUE_BYTES_MAX + 1];
    assert_eq!(
        code(c.call(3, put(b"k", &big_value))),
        GolemError::ValueTooLarge { len: 0, max: 0 }.code()
    );
    let scan = |start: &[u8], end: &[u8], limit| RequestBody::Scan {
        start: start.to_vec(),
        end: end.to_vec(),
        limit,
        reverse: false,
    };
    let invalid = GolemError::invalid("").code();
    assert_eq!(code(c.call(4, scan(b"z", b"a", 10))), invalid);
    assert_eq!(code(c.call(5, scan(b"a", b"z", 0))), invalid);
    assert!(matches!(
        c.call(6, scan(b"", b"", u32::MAX)),
        Response::Ok(ResponseBody::Scan { .. })
    ));
    assert_eq!(
        c.call(
            7,
            RequestBody::CompareAndSwap {
                key: b"missing".to_vec(),
                expected: Some(b"x".to_vec()),
                new_value: Some(b"y".to_vec()),
            }
        ),
        Response::Ok(ResponseBody::CompareAndSwap {
            swapped: false,
            previous: None
        })
    );
    assert_eq!(
        code(c.call(8, RequestBody::BatchGet { keys: vec![] })),
        invalid
    );
    // Wrong region and stale epoch: typed routing errors with payloads.
    let send_routed = |c: &mut RawConn, id, region, epoch| {
        c.send(
            &codec::encode_request(
                RequestId(id),
                &Request {
                    region: RegionId(region),
                    epoch,
                    timeout_ms: 0,
                    body: get(b"k"),
                },
            )
            .unwrap(),
        );
        match c.recv() {
            Reply::Response(_, r) => r,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        send_routed(&mut c, 9, 42, FIRST_EPOCH),
        Response::Err(GolemError::RegionNotFound {
            region: RegionId(42)
        })
    );
    match send_routed(&mut c, 10, 1, RegionEpoch::default()) {
        Response::Err(GolemError::EpochNotMatch { current_regions }) => {
            assert_eq!(current_regions.len(), 1);
            let r = &current_regions[0];
            assert_eq!(r.id, RegionId(1));
            assert_eq!(r.epoch, FIRST_EPOCH);
            let leader = r.leader.as_ref().expect("leader hint");
            assert_eq!(leader.addr, node.shard_addr(0).to_string());
        }
        other => panic!("expected EpochNotMatch, got {other:?}"),
    }
    // The same connection still works.
    assert_eq!(c.call(11, put(b"k", b"v")), Response::Ok(ResponseBody::Put));
    // A request landing on the shard that does not own the region is forwarded.
    let mut other_shard = RawConn::handshake(node.shard_addr(1));
    assert_eq!(
        other_shard.call(1, get(b"k")),
        Response::Ok(ResponseBody::Get {
            value: Some(b"v".to_vec())
        })
    );
}
