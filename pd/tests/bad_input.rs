//! Hostile bytes over a real socket: each gets a typed `Goodbye` (or a typed
//! error response) on its own connection, and the member keeps serving.

mod common;

use common::*;
use golem_wire::codec::{decode_goodbye, encode_hello};
use golem_wire::frame::{encode_frame, FrameHeader, FRAME_MAGIC};
use golem_wire::pd::{decode_pd_response, encode_pd_raft, encode_pd_request, PdRaftBatch};
use golem_wire::pd::{PdRequest, PdRequestBody, PdResponse};
use golem_wire::raft::RaftMessage;
use golem_wire::{
    ClusterId, FrameDecoder, FrameKind, GolemError, Hello, PdMemberId, RequestId, PROTOCOL_VERSION,
};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

struct Raw {
    s: TcpStream,
    dec: FrameDecoder,
}

enum Reply {
    Goodbye(GolemError),
    Response(PdResponse),
    HelloOk,
    Closed,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        Raw {
            s,
            dec: FrameDecoder::new(golem_wire::limits::FRAME_PAYLOAD_BYTES_MAX),
        }
    }

    fn hello(addr: SocketAddr) -> Raw {
        let mut r = Raw::connect(addr);
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION.into(),
            cluster_id: ClusterId(0),
            client_name: "hostile".into(),
        };
        r.send(&encode_hello(RequestId(0), &hello).unwrap());
        assert!(matches!(r.reply(), Reply::HelloOk));
        r
    }

    fn send(&mut self, b: &[u8]) {
        // The server may already have closed: that is fine.
        let _ = self.s.write_all(b);
    }

    fn reply(&mut self) -> Reply {
        let mut buf = [0u8; 4096];
        loop {
            let n = match self.s.read(&mut buf) {
                Ok(0) | Err(_) => return Reply::Closed,
                Ok(n) => n,
            };
            let (_, f) = self.dec.push(&buf[..n]).expect("server frames are valid");
            if let Some(f) = f {
                return match f.header.kind {
                    FrameKind::Goodbye => Reply::Goodbye(decode_goodbye(&f.payload).unwrap()),
                    FrameKind::PdResponse => {
                        Reply::Response(decode_pd_response(&f.payload).unwrap())
                    }
                    FrameKind::HelloOk => Reply::HelloOk,
                    k => panic!("unexpected {k:?}"),
                };
            }
        }
    }

    fn goodbye_code(&mut self) -> u16 {
        match self.reply() {
            Reply::Goodbye(e) => e.code(),
            Reply::Closed => panic!("closed without a Goodbye"),
            Reply::Response(r) => panic!("got a response {r:?}"),
            Reply::HelloOk => panic!("got HelloOk"),
        }
    }
}

fn header(kind: u8, len: u32, crc: u32) -> Vec<u8> {
    let mut h = FrameHeader {
        kind: FrameKind::PdRequest,
        flags: 0,
        payload_len: len,
        request_id: RequestId(1),
        payload_crc: crc,
    }
    .encode()
    .to_vec();
    h[2] = kind;
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_typed_errors_and_the_member_keeps_serving() {
    let g = Group::start(1, &[]);
    let addr = g.members[0].addr;
    let c = g.client();
    c.get_members().await.unwrap(); // up

    tokio::task::spawn_blocking(move || {
        // A length of 0xFFFFFFFF is refused before any allocation.
        let mut r = Raw::connect(addr);
        r.send(&header(FrameKind::Hello as u8, u32::MAX, 0));
        assert_eq!(r.goodbye_code(), 103);

        // Bad magic, unknown kind.
        let mut r = Raw::connect(addr);
        let mut h = header(FrameKind::Hello as u8, 0, 0);
        h[0] = FRAME_MAGIC ^ 0xFF;
        r.send(&h);
        assert_eq!(r.goodbye_code(), 106);
        let mut r = Raw::connect(addr);
        r.send(&header(99, 0, 0));
        assert_eq!(r.goodbye_code(), 106);

        // A request before the handshake.
        let req = PdRequest {
            timeout_ms: 0,
            body: PdRequestBody::GetMembers,
        };
        let mut r = Raw::connect(addr);
        r.send(&encode_pd_request(RequestId(1), &req).unwrap());
        assert_eq!(r.goodbye_code(), 112);

        // A checksum mismatch.
        let mut r = Raw::hello(addr);
        let mut f = encode_pd_request(RequestId(1), &req).unwrap();
        let last = f.len() - 1;
        f[last] ^= 0x55;
        r.send(&f);
        assert_eq!(r.goodbye_code(), 108);

        // Garbage payload with a valid checksum.
        let mut r = Raw::hello(addr);
        r.send(&encode_frame(
            FrameKind::PdRequest,
            RequestId(1),
            &[0xAB; 37],
        ));
        assert_eq!(r.goodbye_code(), 106);

        // A node-protocol request on the PD port.
        let mut r = Raw::hello(addr);
        r.send(&encode_frame(FrameKind::Request, RequestId(1), &[0; 16]));
        assert_eq!(r.goodbye_code(), 106);

        // Raft messages from a member that does not exist.
        let mut r = Raw::hello(addr);
        let batch = PdRaftBatch {
            from: PdMemberId(9),
            to: PdMemberId(1),
            messages: vec![RaftMessage::default()],
        };
        r.send(&encode_pd_raft(RequestId(0), &batch).unwrap());
        assert_eq!(r.goodbye_code(), 105);

        // A raft message type that does not exist, from a "known" id: the
        // single member knows no peer, so this is refused as unknown too.
        let mut r = Raw::hello(addr);
        let batch = PdRaftBatch {
            from: PdMemberId(1),
            to: PdMemberId(1),
            messages: vec![RaftMessage {
                msg_type: 200,
                ..Default::default()
            }],
        };
        r.send(&encode_pd_raft(RequestId(0), &batch).unwrap());
        assert_eq!(r.goodbye_code(), 105);

        // A request that breaks a limit: a typed error response, and the
        // connection stays usable.
        let mut r = Raw::hello(addr);
        let bad = PdRequest {
            timeout_ms: 0,
            body: PdRequestBody::AllocIds { count: 0 },
        };
        r.send(&encode_pd_request(RequestId(5), &bad).unwrap());
        match r.reply() {
            Reply::Response(PdResponse::Err(e)) => assert_eq!(e.code(), 105),
            _ => panic!("expected an error response"),
        }
        let scan = PdRequest {
            timeout_ms: 0,
            body: PdRequestBody::ScanRegions {
                start: b"b".to_vec(),
                end: b"a".to_vec(),
                limit: u32::MAX,
            },
        };
        r.send(&encode_pd_request(RequestId(6), &scan).unwrap());
        match r.reply() {
            Reply::Response(PdResponse::Err(e)) => assert_eq!(e.code(), 105),
            _ => panic!("expected an error response"),
        }
        r.send(&encode_pd_request(RequestId(7), &req).unwrap());
        assert!(matches!(r.reply(), Reply::Response(PdResponse::Ok(_))));

        // Truncated frame then EOF: nothing to answer, nothing breaks.
        let mut r = Raw::hello(addr);
        let f = encode_pd_request(RequestId(1), &req).unwrap();
        r.send(&f[..f.len() / 2]);
        drop(r);
    })
    .await
    .unwrap();

    // The member is still healthy and serves every client.
    c.alloc_ids(1).await.unwrap();
    assert!(!c.is_bootstrapped().await.unwrap());
    let mut m = g;
    assert!(m.members[0].is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_cluster_is_refused() {
    use golem_wire::pd::{Peer, PeerRole, Region, Store};
    use golem_wire::{PeerId, RegionEpoch, RegionId, ShardId, StoreId};
    let g = Group::start(1, &[]);
    let addr = g.members[0].addr;
    let c = g.client();
    let cluster = c
        .bootstrap(
            Store {
                id: StoreId(1),
                addr: "127.0.0.1:7000".into(),
                shard_count: 1,
            },
            Region {
                id: RegionId(2),
                start: vec![],
                end: vec![],
                epoch: RegionEpoch::default(),
                peers: vec![Peer {
                    id: PeerId(3),
                    store: StoreId(1),
                    shard: ShardId(0),
                    role: PeerRole::Voter,
                }],
            },
        )
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let mut r = Raw::connect(addr);
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION.into(),
            cluster_id: ClusterId(cluster.0 ^ 1),
            client_name: "lost".into(),
        };
        r.send(&encode_hello(RequestId(0), &hello).unwrap());
        assert_eq!(r.goodbye_code(), 111);
        // The right cluster id, and an unsupported protocol version.
        let mut r = Raw::connect(addr);
        let hello = Hello {
            protocol_version: 99,
            cluster_id: cluster,
            client_name: "future".into(),
        };
        r.send(&encode_hello(RequestId(0), &hello).unwrap());
        assert_eq!(r.goodbye_code(), 107);
        let mut r = Raw::connect(addr);
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION.into(),
            cluster_id: cluster,
            client_name: "ok".into(),
        };
        r.send(&encode_hello(RequestId(0), &hello).unwrap());
        assert!(matches!(r.reply(), Reply::HelloOk));
    })
    .await
    .unwrap();
    assert_eq!(c.cluster().await, cluster);
}
