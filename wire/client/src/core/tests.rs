//! Tests of the sans-IO core over in-memory byte streams.

use super::*;
use crate::error::{ClientError, Disconnect, Outcome, ProtocolError};
use crate::ops::{CasResult, ScanResult};
use crate::retry::{RetryPolicy, XorShift64};
use crate::route::RouteTable;
use golem_wire::codec::{
    decode_hello, decode_request, encode_goodbye, encode_hello_ok, encode_response,
};
use golem_wire::frame::FrameKind;
use golem_wire::limits::FRAME_PAYLOAD_BYTES_MAX;
use golem_wire::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr() -> SocketAddr {
    "127.0.0.1:7000".parse().unwrap()
}

fn hello_ok(cluster: u64) -> Vec<u8> {
    encode_hello_ok(
        CONNECTION_REQUEST_ID,
        &HelloOk {
            protocol_version: PROTOCOL_VERSION.into(),
            cluster_id: ClusterId(cluster),
            store: StoreId(1),
            shard: ShardId(0),
            shard_count: 2,
        },
    )
    .unwrap()
}

fn get(key: &str) -> Request {
    Request {
        region: RegionId(1),
        epoch: RegionEpoch::default(),
        timeout_ms: 100,
        body: RequestBody::Get {
            key: key.as_bytes().to_vec(),
        },
    }
}

fn value_response(id: RequestId, v: &str) -> Vec<u8> {
    encode_response(
        id,
        &Response::Ok(ResponseBody::Get {
            value: Some(v.as_bytes().to_vec()),
        }),
    )
    .unwrap()
}

/// A connection past its handshake, fed one byte at a time.
fn ready(in_flight_max: usize) -> Connection<&'static str> {
    let mut c = Connection::new(addr(), ClusterId(9), in_flight_max);
    let mut out = Vec::new();
    for b in hello_ok(9) {
        c.receive(&[b], &mut out).unwrap();
    }
    assert!(matches!(out.as_slice(), [Event::Ready(ok)] if ok.shard_count == 2));
    c
}

fn response_of(ev: &Event<&'static str>) -> (RequestId, &'static str, Option<Vec<u8>>) {
    match ev {
        Event::Response {
            id,
            token,
            response: Response::Ok(ResponseBody::Get { value }),
        } => (*id, *token, value.clone()),
        other => panic!("not a get response: {other:?}"),
    }
}

#[test]
fn hello_frame_is_a_valid_hello_with_a_cut_name() {
    let c: Connection<()> = Connection::new(addr(), ClusterId(3), 8);
    let name = "é".repeat(200); // 400 bytes, cut at a char boundary
    let frame = c.hello(&name).unwrap();
    let mut d = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let (_, f) = d.push(&frame).unwrap();
    let f = f.unwrap();
    assert_eq!(f.header.kind, FrameKind::Hello);
    assert_eq!(f.header.request_id, CONNECTION_REQUEST_ID);
    let hello = decode_hello(&f.payload).unwrap();
    assert_eq!(hello.cluster_id, ClusterId(3));
    assert_eq!(hello.client_name.len(), 256);
}

#[test]
fn requests_wait_for_the_handshake() {
    let mut c: Connection<()> = Connection::new(addr(), ClusterId(0), 8);
    assert!(matches!(c.send(&get("k"), ()), Err(SendError::Failed(_))));
}

#[test]
fn out_of_order_responses_in_split_chunks_reach_their_callers() {
    let mut c = ready(16);
    let (a, frame_a) = c.send(&get("a"), "a").unwrap();
    let (b, _) = c.send(&get("b"), "b").unwrap();
    let (z, _) = c.send(&get("z"), "z").unwrap();
    assert_eq!(c.in_flight(), 3);
    // The frame on the wire is the request with its id.
    let mut d = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let (_, f) = d.push(&frame_a).unwrap();
    let f = f.unwrap();
    assert_eq!(
        (f.header.kind, f.header.request_id),
        (FrameKind::Request, a)
    );
    assert_eq!(decode_request(&f.payload).unwrap(), get("a"));

    let mut stream = value_response(z, "Z");
    stream.extend(value_response(a, "A"));
    stream.extend(value_response(b, "B"));
    let mut out = Vec::new();
    for chunk in stream.chunks(7) {
        c.receive(chunk, &mut out).unwrap();
    }
    let got: Vec<_> = out.iter().map(response_of).collect();
    assert_eq!(
        got,
        vec![
            (z, "z", Some(b"Z".to_vec())),
            (a, "a", Some(b"A".to_vec())),
            (b, "b", Some(b"B".to_vec())),
        ]
    );
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_partial_frame_completes_only_when_its_last_byte_arrives() {
    let mut c = ready(4);
    let (a, _) = c.send(&get("a"), "a").unwrap();
    let frame = value_response(a, "A");
    let mut out = Vec::new();
    c.receive(&frame[..frame.len() - 1], &mut out).unwrap();
    assert!(out.is_empty());
    c.receive(&frame[frame.len() - 1..], &mut out).unwrap();
    assert_eq!(response_of(&out[0]).1, "a");
}

#[test]
fn goodbye_fails_the_connection_and_every_waiting_request() {
    let mut c = ready(4);
    let (a, _) = c.send(&get("a"), "a").unwrap();
    let (b, _) = c.send(&get("b"), "b").unwrap();
    let mut stream = value_response(a, "A");
    stream.extend(encode_goodbye(CONNECTION_REQUEST_ID, &GolemError::ShuttingDown).unwrap());
    let mut out = Vec::new();
    let err = c.receive(&stream, &mut out).unwrap_err();
    assert!(matches!(
        &err,
        ClientError::ConnectionLost {
            reason: Disconnect::Goodbye(GolemError::ShuttingDown),
            ..
        }
    ));
    assert_eq!(out.len(), 2);
    assert_eq!(
        response_of(&out[0]).1,
        "a",
        "the response before the goodbye is delivered"
    );
    assert!(matches!(&out[1], Event::Lost { id, token: "b", .. } if *id == b));
    assert!(c.is_closed());
    assert!(matches!(c.send(&get("c"), "c"), Err(SendError::Failed(_))));
}

#[test]
fn a_response_to_an_unknown_id_is_a_protocol_error() {
    let mut c = ready(4);
    let (a, _) = c.send(&get("a"), "a").unwrap();
    let mut out = Vec::new();
    let err = c
        .receive(&value_response(RequestId(a.0 + 100), "?"), &mut out)
        .unwrap_err();
    assert!(matches!(
        err,
        ClientError::Protocol {
            error: ProtocolError::UnknownRequestId { .. },
            ..
        }
    ));
    assert!(matches!(&out[..], [Event::Lost { token: "a", .. }]));
}

#[test]
fn an_abandoned_request_keeps_its_slot_until_answered() {
    let mut c = ready(1);
    let (a, _) = c.send(&get("a"), "a").unwrap();
    assert!(matches!(c.send(&get("b"), "b"), Err(SendError::Full)));
    assert_eq!(c.abandon(a), Some("a"));
    assert!(matches!(c.send(&get("b"), "b"), Err(SendError::Full)));
    let mut out = Vec::new();
    c.receive(&value_response(a, "late"), &mut out).unwrap();
    assert!(out.is_empty(), "the late response is dropped");
    let (b, _) = c.send(&get("b"), "b").unwrap();
    assert_ne!(a, b);
}

#[test]
fn the_in_flight_cap_holds() {
    let mut c = ready(3);
    let ids: Vec<_> = ["1", "2", "3"]
        .iter()
        .map(|t| c.send(&get(t), t).unwrap().0)
        .collect();
    assert!(matches!(c.send(&get("4"), "4"), Err(SendError::Full)));
    let mut out = Vec::new();
    c.receive(&value_response(ids[1], "x"), &mut out).unwrap();
    assert!(c.send(&get("4"), "4").is_ok());
}

#[test]
fn bad_checksums_and_early_responses_are_protocol_errors() {
    let mut c = ready(2);
    c.send(&get("a"), "a").unwrap();
    let mut frame = value_response(RequestId(1), "A");
    let last = frame.len() - 1;
    frame[last] ^= 0xff;
    let mut out = Vec::new();
    let err = c.receive(&frame, &mut out).unwrap_err();
    assert!(matches!(
        err,
        ClientError::Protocol {
            error: ProtocolError::Frame(FrameError::ChecksumMismatch { .. }),
            ..
        }
    ));

    let mut fresh: Connection<()> = Connection::new(addr(), ClusterId(0), 2);
    let err = fresh
        .receive(&value_response(RequestId(1), "A"), &mut Vec::new())
        .unwrap_err();
    assert!(matches!(
        err,
        ClientError::Protocol {
            error: ProtocolError::UnexpectedFrame {
                kind: FrameKind::Response
            },
            ..
        }
    ));
}

#[test]
fn handshake_refusals_are_handshake_errors() {
    let mut c: Connection<()> = Connection::new(addr(), ClusterId(9), 2);
    let err = c.receive(&hello_ok(8), &mut Vec::new()).unwrap_err();
    assert!(matches!(
        err,
        ClientError::Handshake {
            error: GolemError::ClusterMismatch {
                server: 8,
                client: 9
            },
            ..
        }
    ));
    let mut c: Connection<()> = Connection::new(addr(), ClusterId(0), 2);
    c.receive(&hello_ok(8), &mut Vec::new()).unwrap();
    assert_eq!(
        c.hello_ok().unwrap().cluster_id,
        ClusterId(8),
        "0 accepts any cluster"
    );

    let mut c: Connection<()> = Connection::new(addr(), ClusterId(9), 2);
    let bye = GolemError::ClusterMismatch {
        server: 8,
        client: 9,
    };
    let err = c
        .receive(
            &encode_goodbye(CONNECTION_REQUEST_ID, &bye).unwrap(),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }));
}

// ---- Call: validation, retries, deadline ----

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts_max: 5,
        backoff_initial_ms: 10,
        backoff_max_ms: 40,
        jitter: false,
    }
}

fn server(e: GolemError) -> Attempt {
    Attempt::Response {
        addr: addr(),
        response: Response::Err(e),
    }
}

fn lost() -> Attempt {
    Attempt::Lost(ClientError::lost(addr(), Disconnect::Eof))
}

fn delay<O: std::fmt::Debug>(step: Step<O>) -> u64 {
    match step {
        Step::RetryAfter(d) => d.as_millis() as u64,
        Step::Done(r) => panic!("expected a retry, got {r:?}"),
    }
}

fn done<O>(step: Step<O>) -> Result<O, ClientError> {
    match step {
        Step::Done(r) => r,
        Step::RetryAfter(d) => panic!("expected the end, got a retry after {d:?}"),
    }
}

#[test]
fn invalid_requests_never_start() {
    let t0 = Instant::now();
    let err = Call::<()>::new(
        RequestBody::Put {
            key: vec![],
            value: vec![],
        },
        Duration::from_secs(1),
        t0,
        &policy(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        ClientError::InvalidRequest(GolemError::EmptyKey)
    ));
}

#[test]
fn the_backoff_schedule_follows_the_policy() {
    let t0 = Instant::now();
    let mut rng = XorShift64::new(1);
    let body = RequestBody::Get { key: b"k".to_vec() };
    let mut call =
        Call::<Option<Vec<u8>>>::new(body, Duration::from_secs(10), t0, &policy()).unwrap();
    // Deterministic halving: 5, 10, 20, 20 ms…
    assert_eq!(
        delay(call.on_attempt(server(GolemError::ShuttingDown), t0, &mut rng)),
        5
    );
    // …a leader hint retries at once (without consuming a backoff step)…
    let hint = GolemError::NotLeader {
        region: RegionId(1),
        leader: Some(PeerLocation {
            peer: PeerId(2),
            store: StoreId(2),
            shard: ShardId(0),
            addr: "127.0.0.1:7001".into(),
        }),
    };
    assert_eq!(delay(call.on_attempt(server(hint), t0, &mut rng)), 0);
    // …ServerBusy waits at least what the server asked…
    let busy = GolemError::ServerBusy {
        retry_after_ms: 300,
    };
    assert_eq!(delay(call.on_attempt(server(busy), t0, &mut rng)), 300);
    assert_eq!(delay(call.on_attempt(lost(), t0, &mut rng)), 20);
    // …and the fifth attempt is the last.
    let err = done(call.on_attempt(server(GolemError::ShuttingDown), t0, &mut rng)).unwrap_err();
    assert!(matches!(err, ClientError::Server(GolemError::ShuttingDown)));
    assert_eq!(call.attempts(), 5);
}

#[test]
fn jittered_schedules_differ_by_seed_but_stay_in_bounds() {
    let t0 = Instant::now();
    let policy = RetryPolicy {
        jitter: true,
        backoff_initial_ms: 100,
        backoff_max_ms: 1_000,
        ..policy()
    };
    let schedule = |seed| {
        let mut rng = XorShift64::new(seed);
        let body = RequestBody::Get { key: b"k".to_vec() };
        let mut call =
            Call::<Option<Vec<u8>>>::new(body, Duration::from_secs(10), t0, &policy).unwrap();
        (0..3)
            .map(|_| delay(call.on_attempt(server(GolemError::ShuttingDown), t0, &mut rng)))
            .collect::<Vec<_>>()
    };
    let (a, b) = (schedule(1), schedule(2));
    assert_ne!(a, b);
    for s in [a, b] {
        assert!(
            (50..=100).contains(&s[0]) && (100..=200).contains(&s[1]),
            "{s:?}"
        );
    }
}

#[test]
fn non_retryable_server_errors_end_the_call() {
    let t0 = Instant::now();
    let mut rng = XorShift64::new(1);
    let body = RequestBody::Get { key: b"k".to_vec() };
    let mut call =
        Call::<Option<Vec<u8>>>::new(body, Duration::from_secs(1), t0, &policy()).unwrap();
    let err = done(call.on_attempt(server(GolemError::invalid("no")), t0, &mut rng)).unwrap_err();
    assert_eq!(err.code(), Some(105));
}

#[test]
fn a_server_deadline_is_a_timeout_with_unknown_outcome_for_writes() {
    let t0 = Instant::now();
    let mut rng = XorShift64::new(1);
    let put = RequestBody::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    let mut call = Call::<()>::new(put, Duration::from_secs(1), t0, &policy()).unwrap();
    let err =
        done(call.on_attempt(server(GolemError::DeadlineExceeded), t0, &mut rng)).unwrap_err();
    match err {
        ClientError::Timeout {
            outcome: Outcome::Unknown,
            last_error: Some(last),
            ..
        } => assert_eq!(last.code(), Some(200)),
        other => panic!("{other:?}"),
    }
    let get = RequestBody::Get { key: b"k".to_vec() };
    let mut call =
        Call::<Option<Vec<u8>>>::new(get, Duration::from_secs(1), t0, &policy()).unwrap();
    let err =
        done(call.on_attempt(server(GolemError::DeadlineExceeded), t0, &mut rng)).unwrap_err();
    assert!(matches!(
        err,
        ClientError::Timeout {
            outcome: Outcome::NotApplied,
            ..
        }
    ));
}

#[test]
fn the_deadline_bounds_retries() {
    let t0 = Instant::now();
    let mut rng = XorShift64::new(1);
    let body = RequestBody::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    let mut call = Call::<()>::new(body, Duration::from_millis(100), t0, &policy()).unwrap();
    let route = RouteTable::seeded(vec![addr()]).locate(b"k");
    assert_eq!(
        call.prepare(&route, t0 + Duration::from_millis(30))
            .timeout_ms,
        70
    );
    // A wait that would reach the deadline ends the call now.
    let busy = GolemError::ServerBusy { retry_after_ms: 80 };
    let err =
        done(call.on_attempt(server(busy), t0 + Duration::from_millis(30), &mut rng)).unwrap_err();
    match err {
        ClientError::Timeout {
            timeout_ms: 100,
            attempts: 1,
            outcome: Outcome::NotApplied,
            last_error: Some(last),
        } => assert_eq!(last.code(), Some(5)),
        other => panic!("{other:?}"),
    }
    // A front end whose attempt was cut short after sending a write.
    assert!(call.timeout_error(true).is_outcome_unknown());
    assert!(!call.timeout_error(false).is_outcome_unknown());
}

#[test]
fn a_lost_cas_is_ambiguous_and_not_retried() {
    let t0 = Instant::now();
    let mut rng = XorShift64::new(1);
    let body = RequestBody::CompareAndSwap {
        key: b"k".to_vec(),
        expected: None,
        new_value: Some(b"v".to_vec()),
    };
    let mut call = Call::<CasResult>::new(body, Duration::from_secs(1), t0, &policy()).unwrap();
    // A routing error is a clean rejection: retried.
    assert_eq!(
        delay(call.on_attempt(
            server(GolemError::RegionNotFound {
                region: RegionId(1)
            }),
            t0,
            &mut rng
        )),
        5
    );
    // A connection that died while not yet sending: retried too.
    let refused = ClientError::io(addr(), std::io::ErrorKind::ConnectionRefused.into());
    assert_eq!(
        delay(call.on_attempt(Attempt::NotSent(refused), t0, &mut rng)),
        10
    );
    let err = done(call.on_attempt(lost(), t0, &mut rng)).unwrap_err();
    assert!(matches!(
        err,
        ClientError::ConnectionLost {
            outcome: Outcome::Unknown,
            ..
        }
    ));
}

#[test]
fn lost_writes_are_not_retried_and_lost_reads_are() {
    let t0 = Instant::now();
    let mut rng = XorShift64::new(1);
    // A put sent and unanswered may have been applied: retrying it could
    // apply a second copy after other clients' writes (found by the
    // process-level linearizability test). Its outcome is unknown.
    let put = RequestBody::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    let mut call = Call::<()>::new(put, Duration::from_secs(1), t0, &policy()).unwrap();
    let err = done(call.on_attempt(lost(), t0, &mut rng)).unwrap_err();
    assert!(err.is_outcome_unknown(), "a lost put may have been applied");
    let get = RequestBody::Get { key: b"k".to_vec() };
    let mut call =
        Call::<Option<Vec<u8>>>::new(get, Duration::from_secs(1), t0, &policy()).unwrap();
    assert_eq!(
        delay(call.on_attempt(lost(), t0, &mut rng)),
        5,
        "a read is retried"
    );

    let mut call = Call::<()>::new(
        RequestBody::Delete { key: b"k".to_vec() },
        Duration::from_secs(1),
        t0,
        &RetryPolicy::no_retries(),
    )
    .unwrap();
    let err = done(call.on_attempt(lost(), t0, &mut rng)).unwrap_err();
    assert!(
        err.is_outcome_unknown(),
        "a lost delete may have been applied"
    );

    let scan = RequestBody::Scan {
        start: vec![],
        end: vec![],
        limit: 5,
        reverse: false,
    };
    let mut call =
        Call::<ScanResult>::new(scan, Duration::from_secs(1), t0, &RetryPolicy::no_retries())
            .unwrap();
    let err = done(call.on_attempt(lost(), t0, &mut rng)).unwrap_err();
    assert_eq!(err.outcome(), Outcome::NotApplied, "a read has no effect");
}

#[test]
fn a_mismatched_response_is_a_protocol_error() {
    let t0 = Instant::now();
    let mut rng = XorShift64::new(1);
    let mut call = Call::<Option<Vec<u8>>>::new(
        RequestBody::Get { key: b"k".to_vec() },
        Duration::from_secs(1),
        t0,
        &policy(),
    )
    .unwrap();
    let wrong = Attempt::Response {
        addr: addr(),
        response: Response::Ok(ResponseBody::Put),
    };
    let err = done(call.on_attempt(wrong, t0, &mut rng)).unwrap_err();
    assert!(matches!(
        err,
        ClientError::Protocol {
            error: ProtocolError::ResponseMismatch {
                request: "get",
                got: "put"
            },
            ..
        }
    ));
}
