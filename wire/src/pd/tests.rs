//! Round trips, limits and hostile payloads for the PD messages.

use super::*;
use crate::frame::FrameDecoder;
use crate::raft::{RaftEntry, RaftSnapshot};

fn region(id: u64, start: &[u8], end: &[u8]) -> Region {
    Region {
        id: RegionId(id),
        start: start.to_vec(),
        end: end.to_vec(),
        epoch: RegionEpoch {
            conf_ver: 1,
            version: 1,
        },
        peers: vec![Peer {
            id: PeerId(id + 100),
            store: StoreId(1),
            shard: ShardId(0),
            role: PeerRole::Voter,
        }],
    }
}

fn decode_frame(bytes: &[u8]) -> crate::frame::Frame {
    let mut d = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let (used, frame) = d.push(bytes).unwrap();
    assert_eq!(used, bytes.len());
    frame.unwrap()
}

#[test]
fn request_round_trips() {
    let bodies = vec![
        PdRequestBody::Bootstrap {
            store: Store {
                id: StoreId(1),
                addr: "127.0.0.1:7000".into(),
                shard_count: 2,
            },
            region: region(2, b"", b""),
        },
        PdRequestBody::AllocIds { count: 10 },
        PdRequestBody::Tso { count: 1 },
        PdRequestBody::GetRegion { key: b"k".to_vec() },
        PdRequestBody::ScanRegions {
            start: b"a".to_vec(),
            end: vec![],
            limit: 5,
        },
        PdRequestBody::GetMembers,
        PdRequestBody::JoinCluster {
            store: Store {
                id: StoreId(3),
                addr: "127.0.0.1:7410".into(),
                shard_count: 4,
            },
        },
    ];
    for body in bodies {
        body.validate().unwrap();
        let req = PdRequest {
            timeout_ms: 100,
            body,
        };
        let frame = decode_frame(&encode_pd_request(RequestId(7), &req).unwrap());
        assert_eq!(frame.header.kind, FrameKind::PdRequest);
        assert_eq!(decode_pd_request(&frame.payload).unwrap(), req);
    }
}

#[test]
fn response_and_raft_batch_round_trip() {
    let resp = PdResponse::Err(GolemError::PdNotLeader {
        leader_id: Some(PdMemberId(2)),
        leader_addr: Some("127.0.0.1:2379".into()),
    });
    let frame = decode_frame(&encode_pd_response(RequestId(1), &resp).unwrap());
    assert_eq!(decode_pd_response(&frame.payload).unwrap(), resp);

    let batch = PdRaftBatch {
        from: PdMemberId(1),
        to: PdMemberId(2),
        messages: vec![RaftMessage {
            msg_type: 3,
            entries: vec![RaftEntry {
                entry_type: 0,
                term: 2,
                index: 9,
                data: b"x".to_vec(),
                context: vec![],
            }],
            snapshot: Some(RaftSnapshot {
                data: vec![1, 2, 3],
                index: 4,
                term: 1,
                ..Default::default()
            }),
            priority: -1,
            ..Default::default()
        }],
    };
    let frame = decode_frame(&encode_pd_raft(RequestId(0), &batch).unwrap());
    assert_eq!(frame.header.kind, FrameKind::PdRaft);
    assert_eq!(decode_pd_raft(&frame.payload).unwrap(), batch);
}

#[test]
fn join_cluster_answers_round_trip() {
    let answers = [
        PdResponseBody::JoinCluster {
            cluster: None,
            region: None,
            stores: 2,
            initial_replicas: 3,
        },
        PdResponseBody::JoinCluster {
            cluster: Some(ClusterId(9)),
            region: Some(region(1, b"", b"")),
            stores: 3,
            initial_replicas: 3,
        },
    ];
    for body in answers {
        let resp = PdResponse::Ok(body);
        let frame = decode_frame(&encode_pd_response(RequestId(4), &resp).unwrap());
        assert_eq!(decode_pd_response(&frame.payload).unwrap(), resp);
    }
}

/// The archived tag of an enum value: rkyv puts the root object last, and
/// an archived enum starts with its variant index.
fn root_tag<T>(bytes: &[u8]) -> u8 {
    bytes[bytes.len() - std::mem::size_of::<T>()]
}

#[test]
fn variant_indexes_are_stable() {
    // New variants are appended; an existing index never changes.
    let store = Store {
        id: StoreId(1),
        addr: "127.0.0.1:1".into(),
        shard_count: 1,
    };
    let cases: [(PdRequestBody, u8); 3] = [
        (
            PdRequestBody::Bootstrap {
                store: store.clone(),
                region: region(2, b"", b""),
            },
            0,
        ),
        (PdRequestBody::GetMembers, 12),
        (PdRequestBody::JoinCluster { store }, 13),
    ];
    for (body, tag) in cases {
        let bytes = rkyv::to_bytes::<rancor::Error>(&body).unwrap();
        assert_eq!(root_tag::<ArchivedPdRequestBody>(&bytes), tag, "{body:?}");
    }
    let join = PdResponseBody::JoinCluster {
        cluster: None,
        region: None,
        stores: 0,
        initial_replicas: 1,
    };
    let bytes = rkyv::to_bytes::<rancor::Error>(&join).unwrap();
    assert_eq!(root_tag::<ArchivedPdResponseBody>(&bytes), 12);
}

#[test]
fn pd_error_codes_are_stable() {
    let cases = [
        (
            GolemError::PdNotLeader {
                leader_id: None,
                leader_addr: None,
            },
            300,
        ),
        (GolemError::NotBootstrapped, 301),
        (
            GolemError::AlreadyBootstrapped {
                cluster: ClusterId(1),
            },
            302,
        ),
        (GolemError::UnknownStore { store: StoreId(1) }, 303),
        (
            GolemError::UnknownRegion {
                region: RegionId(1),
            },
            304,
        ),
        (
            GolemError::DuplicateStore {
                store: StoreId(1),
                existing: StoreId(1),
                existing_addr: String::new(),
            },
            305,
        ),
        (
            GolemError::StaleEpoch {
                region: RegionId(1),
                reported: RegionEpoch::default(),
                current: RegionEpoch::default(),
            },
            306,
        ),
        (GolemError::StoreTombstone { store: StoreId(1) }, 307),
    ];
    for (e, code) in cases {
        assert_eq!(e.code(), code, "{e}");
    }
}

#[test]
fn validation_rejects_bad_requests() {
    let bad = vec![
        PdRequestBody::AllocIds { count: 0 },
        PdRequestBody::AllocIds {
            count: PD_ALLOC_IDS_MAX + 1,
        },
        PdRequestBody::Tso {
            count: PD_TSO_COUNT_MAX + 1,
        },
        PdRequestBody::GetRegion {
            key: vec![0; KEY_BYTES_MAX + 1],
        },
        PdRequestBody::ScanRegions {
            start: b"b".to_vec(),
            end: b"a".to_vec(),
            limit: 1,
        },
        PdRequestBody::ScanRegions {
            start: vec![],
            end: vec![],
            limit: 0,
        },
        PdRequestBody::PutStore {
            store: Store {
                id: StoreId(0),
                addr: "x".into(),
                shard_count: 1,
            },
        },
        PdRequestBody::PutStore {
            store: Store {
                id: StoreId(1),
                addr: String::new(),
                shard_count: 1,
            },
        },
        PdRequestBody::PutStore {
            store: Store {
                id: StoreId(1),
                addr: "pd.example:2379".into(),
                shard_count: 1,
            },
        },
        PdRequestBody::RegionHeartbeat {
            heartbeat: RegionHeartbeat {
                region: region(1, b"b", b"a"),
                leader: PeerId(101),
                term: 1,
                stats: RegionStats::default(),
            },
        },
        PdRequestBody::RegionHeartbeat {
            heartbeat: RegionHeartbeat {
                region: region(1, b"a", b"b"),
                leader: PeerId(5),
                term: 1,
                stats: RegionStats::default(),
            },
        },
        PdRequestBody::Bootstrap {
            store: Store {
                id: StoreId(1),
                addr: "127.0.0.1:1".into(),
                shard_count: 1,
            },
            region: region(2, b"a", b""),
        },
        PdRequestBody::JoinCluster {
            store: Store {
                id: StoreId(1),
                addr: "127.0.0.1:1".into(),
                shard_count: 0,
            },
        },
    ];
    for body in bad {
        assert!(body.validate().is_err(), "{body:?}");
    }
}

#[test]
fn hostile_payloads_are_typed_errors() {
    let req = PdRequest {
        timeout_ms: 0,
        body: PdRequestBody::GetRegion { key: b"k".to_vec() },
    };
    let frame = decode_frame(&encode_pd_request(RequestId(1), &req).unwrap());
    let payload = frame.payload.as_slice();
    // Every truncation and every single-byte corruption either decodes to
    // some valid message or is a typed Malformed error; never a panic.
    for cut in 0..payload.len() {
        let mut buf = crate::frame::Payload::new();
        buf.extend_from_slice(&payload[..cut]);
        assert!(decode_pd_request(&buf).is_err());
    }
    for i in 0..payload.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut buf = crate::frame::Payload::new();
            buf.extend_from_slice(payload);
            buf[i] ^= flip;
            if let Err(e) = decode_pd_request(&buf) {
                assert_eq!(e.code(), 106);
            }
        }
    }
}

#[test]
fn timestamp_composition() {
    let ts = Timestamp::compose(1_700_000_000_000, 5);
    assert_eq!(ts.physical_ms(), 1_700_000_000_000);
    assert_eq!(ts.logical(), 5);
    assert!(Timestamp::compose(2, 0) > Timestamp::compose(1, (1 << TSO_LOGICAL_BITS) - 1));
}

#[test]
fn scheduling_requests_append_and_validate() {
    let cases: [(PdRequestBody, u8); 4] = [
        (PdRequestBody::OperatorList, 14),
        (
            PdRequestBody::OperatorAdd {
                region: RegionId(2),
                op: AdminOperator::Split { key: b"k".to_vec() },
            },
            15,
        ),
        (
            PdRequestBody::OperatorCancel {
                region: RegionId(2),
            },
            16,
        ),
        (PdRequestBody::DeleteStore { store: StoreId(3) }, 17),
    ];
    for (body, tag) in cases {
        body.validate().unwrap();
        let bytes = rkyv::to_bytes::<rancor::Error>(&body).unwrap();
        assert_eq!(root_tag::<ArchivedPdRequestBody>(&bytes), tag, "{body:?}");
        let frame = encode_pd_request(
            RequestId(1),
            &PdRequest {
                timeout_ms: 0,
                body: body.clone(),
            },
        )
        .unwrap();
        let decoded = decode_pd_request(&decode_frame(&frame).payload).unwrap();
        assert_eq!(decoded.body, body);
    }
    let bad = [
        PdRequestBody::OperatorAdd {
            region: RegionId(2),
            op: AdminOperator::Split { key: Vec::new() },
        },
        PdRequestBody::OperatorAdd {
            region: RegionId(0),
            op: AdminOperator::AddPeer { store: StoreId(1) },
        },
        PdRequestBody::OperatorAdd {
            region: RegionId(2),
            op: AdminOperator::TransferLeader { store: StoreId(0) },
        },
        PdRequestBody::OperatorCancel {
            region: RegionId(0),
        },
        PdRequestBody::DeleteStore { store: StoreId(0) },
        PdRequestBody::RegionHeartbeat {
            heartbeat: RegionHeartbeat {
                region: region(2, b"", b""),
                leader: PeerId(3),
                term: 1,
                stats: RegionStats {
                    split_key: Some(vec![0; KEY_BYTES_MAX + 1]),
                    ..RegionStats::default()
                },
            },
        },
    ];
    for body in bad {
        assert!(body.validate().is_err(), "{body:?}");
    }
    let answers: [(PdResponseBody, u8); 2] = [
        (PdResponseBody::Operators { operators: vec![] }, 13),
        (
            PdResponseBody::StoreDeleted {
                state: StoreState::Offline,
            },
            16,
        ),
    ];
    for (body, tag) in answers {
        let bytes = rkyv::to_bytes::<rancor::Error>(&body).unwrap();
        assert_eq!(root_tag::<ArchivedPdResponseBody>(&bytes), tag, "{body:?}");
    }
}

/// A store holds two peers of a region only on two of its shards (a
/// replica moving between them), never two on one shard or three.
#[test]
fn a_region_has_at_most_two_peers_on_a_store_each_on_its_own_shard() {
    let peer = |id: u64, store: u64, shard: u16| Peer {
        id: PeerId(id),
        store: StoreId(store),
        shard: ShardId(shard),
        role: PeerRole::Voter,
    };
    // (peers, valid)
    let table = vec![
        (vec![peer(1, 1, 0), peer(2, 2, 0), peer(3, 1, 1)], true),
        (vec![peer(1, 1, 0), peer(3, 1, 0)], false),
        (vec![peer(1, 1, 0), peer(2, 1, 1), peer(3, 1, 2)], false),
        (vec![peer(1, 1, 0), peer(1, 2, 0)], false),
    ];
    for (peers, valid) in table {
        let r = Region {
            peers: peers.clone(),
            ..region(1, b"", b"")
        };
        assert_eq!(r.validate().is_ok(), valid, "{peers:?}");
    }
}
