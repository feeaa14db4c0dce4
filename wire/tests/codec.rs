//! Round trips and hostile input for the frame decoder and the codec.

use golem_wire::codec::*;
use golem_wire::frame::{encode_frame, FrameHeader, FRAME_HEADER_BYTES};
use golem_wire::limits::*;
use golem_wire::*;
use proptest::prelude::*;

fn sample_requests() -> Vec<Request> {
    let bodies = vec![
        RequestBody::Get { key: b"a".to_vec() },
        RequestBody::Put {
            key: b"a".to_vec(),
            value: vec![7; 300],
        },
        RequestBody::Delete { key: b"a".to_vec() },
        RequestBody::Scan {
            start: b"a".to_vec(),
            end: vec![],
            limit: 5,
            reverse: true,
        },
        RequestBody::BatchGet {
            keys: vec![b"a".to_vec(), b"b".to_vec()],
        },
        RequestBody::BatchWrite {
            ops: vec![
                WriteOp::Put {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                },
                WriteOp::Delete { key: b"b".to_vec() },
            ],
        },
        RequestBody::CompareAndSwap {
            key: b"a".to_vec(),
            expected: None,
            new_value: Some(b"x".to_vec()),
        },
    ];
    bodies
        .into_iter()
        .map(|body| Request {
            region: RegionId(1),
            epoch: RegionEpoch {
                conf_ver: 2,
                version: 3,
            },
            timeout_ms: 500,
            body,
        })
        .collect()
}

fn decode_all(bytes: &[u8], chunk: usize) -> Vec<Frame> {
    let mut d = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let mut out = Vec::new();
    for mut piece in bytes.chunks(chunk.max(1)) {
        while !piece.is_empty() {
            let (used, frame) = d.push(piece).unwrap();
            piece = &piece[used..];
            out.extend(frame);
        }
    }
    assert!(!d.is_mid_frame());
    out
}

#[test]
fn header_is_16_bytes_and_round_trips() {
    let h = FrameHeader {
        kind: FrameKind::Response,
        flags: 0,
        payload_len: 1234,
        request_id: RequestId(0xDEADBEEF),
        payload_crc: 0x01020304,
    };
    let b = h.encode();
    assert_eq!(b.len(), FRAME_HEADER_BYTES);
    assert_eq!(FrameHeader::decode(&b, FRAME_PAYLOAD_BYTES_MAX).unwrap(), h);
}

#[test]
fn requests_round_trip_in_any_chunking() {
    let reqs = sample_requests();
    let mut stream = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        stream.extend(encode_request(RequestId(i as u32), r).unwrap());
    }
    for chunk in [1, 3, 16, 17, 100, stream.len()] {
        let frames = decode_all(&stream, chunk);
        assert_eq!(frames.len(), reqs.len());
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.header.kind, FrameKind::Request);
            assert_eq!(f.header.request_id, RequestId(i as u32));
            assert_eq!(
                f.payload.as_ptr() as usize % 16,
                0,
                "payload must be aligned"
            );
            assert_eq!(decode_request(&f.payload).unwrap(), reqs[i]);
        }
    }
}

#[test]
fn raft_notices_round_trip() {
    use golem_wire::raft::{
        decode_raft_batch, encode_raft_batch, RaftBatch, RaftEntryId, RegionMessage,
    };
    let message = |gc: bool, removed_by: Option<RaftEntryId>| RegionMessage {
        region: RegionId(9),
        epoch: RegionEpoch {
            conf_ver: 4,
            version: 2,
        },
        to_shard: ShardId(1),
        from_store: StoreId(3),
        from_shard: ShardId(0),
        from_peer: PeerId(31),
        to_peer: PeerId(12),
        message: Default::default(),
        gc,
        removed_by,
    };
    let batch = RaftBatch {
        from_store: StoreId(3),
        messages: vec![
            message(false, None),
            message(true, None),
            message(false, Some(RaftEntryId { index: 27, term: 7 })),
        ],
    };
    let frame = encode_raft_batch(RequestId(0), &batch).unwrap();
    let frames = decode_all(&frame, frame.len());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.kind, FrameKind::Raft);
    assert_eq!(decode_raft_batch(&frames[0].payload).unwrap(), batch);
}

#[test]
fn responses_and_errors_round_trip() {
    let resps = vec![
        Response::Ok(ResponseBody::Get {
            value: Some(b"v".to_vec()),
        }),
        Response::Ok(ResponseBody::Scan {
            pairs: vec![KvPair {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }],
            more: true,
        }),
        Response::Err(GolemError::NotLeader {
            region: RegionId(3),
            leader: Some(PeerLocation {
                peer: PeerId(2),
                store: StoreId(4),
                shard: ShardId(1),
                addr: "127.0.0.1:7401".into(),
            }),
        }),
        Response::Err(GolemError::ServerBusy { retry_after_ms: 5 }),
    ];
    for r in resps {
        let f = encode_response(RequestId(9), &r).unwrap();
        let frames = decode_all(&f, 5);
        assert_eq!(decode_response(&frames[0].payload).unwrap(), r);
    }
}

#[test]
fn header_errors_come_before_allocation() {
    let mut d = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let mut h = FrameHeader {
        kind: FrameKind::Request,
        flags: 0,
        payload_len: u32::MAX,
        request_id: RequestId(1),
        payload_crc: 0,
    }
    .encode();
    assert!(matches!(d.push(&h), Err(FrameError::TooLarge { .. })));
    h[4..8].copy_from_slice(&8u32.to_le_bytes());
    h[0] = 0;
    assert!(matches!(
        FrameDecoder::new(1 << 20).push(&h),
        Err(FrameError::BadMagic { got: 0 })
    ));
}

#[test]
fn checksum_mismatch_is_detected() {
    let mut f = encode_request(RequestId(1), &sample_requests()[1]).unwrap();
    let last = f.len() - 1;
    f[last] ^= 0x80;
    let mut d = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let err = d.push(&f).unwrap_err();
    assert!(matches!(err, FrameError::ChecksumMismatch { .. }));
    assert_eq!(
        GolemError::from(err).code(),
        GolemError::ChecksumMismatch.code()
    );
}

#[test]
fn error_codes_are_stable_and_unique() {
    let all = [
        GolemError::NotLeader {
            region: RegionId(1),
            leader: None,
        },
        GolemError::EpochNotMatch {
            current_regions: vec![],
        },
        GolemError::RegionNotFound {
            region: RegionId(1),
        },
        GolemError::KeyNotInRegion {
            key: vec![],
            region: RegionId(1),
            start: vec![],
            end: vec![],
        },
        GolemError::ServerBusy { retry_after_ms: 1 },
        GolemError::ShuttingDown,
        GolemError::EmptyKey,
        GolemError::KeyTooLarge { len: 1, max: 1 },
        GolemError::ValueTooLarge { len: 1, max: 1 },
        GolemError::FrameTooLarge { len: 1, max: 1 },
        GolemError::BatchTooLarge { len: 1, max: 1 },
        GolemError::invalid("x"),
        GolemError::malformed("x"),
        GolemError::UnsupportedVersion {
            got: 2,
            supported: 1,
        },
        GolemError::ChecksumMismatch,
        GolemError::TooManyInFlight { max: 1 },
        GolemError::DuplicateRequestId { id: RequestId(1) },
        GolemError::ClusterMismatch {
            server: 1,
            client: 2,
        },
        GolemError::HandshakeRequired,
        GolemError::DeadlineExceeded,
        GolemError::Internal { reason: "x".into() },
        GolemError::Timeout,
    ];
    let codes: Vec<u16> = all.iter().map(|e| e.code()).collect();
    assert_eq!(
        codes,
        [
            1, 2, 3, 4, 5, 6, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 200,
            201, 202
        ]
    );
    assert!(all[..6].iter().all(|e| e.is_retryable()));
    assert!(all[6..15].iter().all(|e| !e.is_retryable()));
    assert!(GolemError::malformed("é".repeat(2000)).to_string().len() <= ERROR_TEXT_BYTES_MAX + 32);
}

#[test]
fn validation_enforces_limits() {
    let long_key = vec![1u8; KEY_BYTES_MAX + 1];
    assert_eq!(
        RequestBody::Get { key: vec![] }.validate(),
        Err(GolemError::EmptyKey)
    );
    assert!(matches!(
        RequestBody::Get { key: long_key }.validate(),
        Err(GolemError::KeyTooLarge { .. })
    ));
    assert!(matches!(
        RequestBody::Put {
            key: b"k".to_vec(),
            value: vec![0; VALUE_BYTES_MAX + 1]
        }
        .validate(),
        Err(GolemError::ValueTooLarge { .. })
    ));
    assert!(RequestBody::Scan {
        start: b"b".to_vec(),
        end: b"a".to_vec(),
        limit: 1,
        reverse: false
    }
    .validate()
    .is_err());
    assert!(RequestBody::Scan {
        start: b"b".to_vec(),
        end: vec![],
        limit: 1,
        reverse: false
    }
    .validate()
    .is_ok());
    assert!(RequestBody::Scan {
        start: vec![],
        end: vec![],
        limit: 0,
        reverse: false
    }
    .validate()
    .is_err());
    assert!(matches!(
        RequestBody::BatchGet {
            keys: vec![b"k".to_vec(); BATCH_OPS_MAX + 1]
        }
        .validate(),
        Err(GolemError::BatchTooLarge { .. })
    ));
}

#[test]
fn oversized_messages_are_refused_by_the_encoder() {
    let r = Response::Ok(ResponseBody::BatchGet {
        values: vec![Some(vec![0u8; VALUE_BYTES_MAX]); 17],
    });
    assert!(matches!(
        encode_response(RequestId(1), &r),
        Err(GolemError::FrameTooLarge { .. })
    ));
}

proptest! {
    /// Arbitrary bytes never panic the decoder or the validator.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut d = FrameDecoder::new(4096);
        let mut input = &bytes[..];
        while !input.is_empty() {
            match d.push(input) {
                Ok((used, frame)) => {
                    input = &input[used..];
                    if let Some(f) = frame {
                        let _ = decode_request(&f.payload);
                        let _ = decode_response(&f.payload);
                    }
                }
                Err(_) => break,
            }
        }
    }

    /// Mutating a valid payload (with a fixed-up checksum) never panics and
    /// never decodes into something that fails to re-encode.
    #[test]
    fn mutated_payloads_never_panic(idx in 0usize..1000, byte in any::<u8>(), which in 0usize..7) {
        let req = &sample_requests()[which];
        let f = encode_request(RequestId(1), req).unwrap();
        let mut payload = f[FRAME_HEADER_BYTES..].to_vec();
        let i = idx % payload.len();
        payload[i] = byte;
        let frame = encode_frame(FrameKind::Request, RequestId(1), &payload);
        let mut d = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
        let (_, got) = d.push(&frame).unwrap();
        if let Ok(decoded) = decode_request(&got.unwrap().payload) {
            prop_assert!(encode_request(RequestId(1), &decoded).is_ok());
        }
    }
}
