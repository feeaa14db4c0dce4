//! The blocking client against the in-test fake server (which runs on its
//! own thread and runtime): operations, retries, deadlines, connection
//! failures, and use from many threads.

mod common;

use common::{Action, FakeServer};
use golem_client::{
    blocking, write, ClientConfig, ClientError, ClusterId, GolemError, Outcome, RequestBody,
};
use golem_wire::{RegionId, StoreId};
use std::time::{Duration, Instant};

#[test]
fn every_operation_round_trips() {
    let server = FakeServer::start_in_thread();
    let client = blocking::Client::connect(server.config()).unwrap();
    assert_eq!(client.get("a").unwrap(), None);
    client.put("a", "1").unwrap();
    client.put(b"b".as_slice(), vec![2u8]).unwrap();
    client.delete("a").unwrap();
    assert_eq!(
        client.batch_get(["a", "b"]).unwrap(),
        vec![None, Some(vec![2])]
    );
    client
        .batch_write([write::put("c", "3"), write::put("d", "4")])
        .unwrap();
    let page = client.scan("b", "", 2, false).unwrap();
    assert_eq!(page.pairs.len(), 2);
    assert!(page.more);
    let cas = client
        .compare_and_swap("c", Some(b"3"), Some(b"33"))
        .unwrap();
    assert!(cas.swapped);
    assert_eq!(server.value(b"c"), Some(b"33".to_vec()));
    let r = client
        .execute(
            RequestBody::Get { key: b"d".to_vec() },
            Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(
        r,
        golem_wire::ResponseBody::Get {
            value: Some(b"4".to_vec())
        }
    );
    assert_eq!(
        server.stats().connections,
        1,
        "the idle connection is reused"
    );
}

#[test]
fn not_leader_then_success() {
    let server = FakeServer::start_in_thread();
    server.script([Action::Fail(GolemError::NotLeader {
        region: RegionId(1),
        leader: Some(server.location(3)),
    })]);
    let client = blocking::Client::connect(server.config()).unwrap();
    client.put("k", "v").unwrap();
    assert_eq!(server.stats().requests, 2);
    assert_eq!(client.routes().locate(b"k").store, StoreId(3));
}

#[test]
fn server_busy_is_honoured() {
    let server = FakeServer::start_in_thread();
    server.script([Action::Fail(GolemError::ServerBusy {
        retry_after_ms: 100,
    })]);
    let client = blocking::Client::connect(server.config()).unwrap();
    let started = Instant::now();
    client.get("k").unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[test]
fn a_silent_server_hits_the_deadline() {
    let server = FakeServer::start_in_thread();
    server.script([Action::Silent]);
    let client = blocking::Client::connect(server.config()).unwrap();
    let started = Instant::now();
    let body = RequestBody::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    let err = client
        .execute(body, Duration::from_millis(200))
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_millis(600),
        "{elapsed:?}"
    );
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                outcome: Outcome::Unknown,
                ..
            }
        ),
        "{err:?}"
    );
    // The timed-out connection was dropped; a new one serves the next call.
    client.put("k", "v").unwrap();
    assert_eq!(server.stats().connections, 2);
}

#[test]
fn a_dropped_connection_is_reconnected_and_a_lost_write_is_not_retried() {
    let server = FakeServer::start_in_thread();
    server.script([Action::Drop]);
    let client = blocking::Client::connect(server.config()).unwrap();
    let err = client.put("k", "v").unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    client.put("k", "v").unwrap();
    assert_eq!(server.value(b"k"), Some(b"v".to_vec()));
    assert_eq!(server.stats().connections, 2);
    server.script([Action::Goodbye(GolemError::ShuttingDown)]);
    assert_eq!(client.get("k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn a_lost_compare_and_swap_is_ambiguous_and_not_retried() {
    let server = FakeServer::start_in_thread();
    server.script([Action::DropAfterApply]);
    let client = blocking::Client::connect(server.config()).unwrap();
    let err = client.compare_and_swap("k", None, Some(b"v")).unwrap_err();
    assert!(err.is_outcome_unknown(), "{err:?}");
    assert_eq!(server.stats().requests, 1);
    assert_eq!(client.get("k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn an_idle_connection_closed_by_the_server_is_not_used() {
    let server = FakeServer::start_in_thread();
    let client = blocking::Client::connect(server.config()).unwrap();
    client.put("k", "1").unwrap();
    // The server times the pooled connection out while it is idle.
    server.close_all();
    std::thread::sleep(Duration::from_millis(50));
    // A CAS must not be written to the dead connection (it would come back
    // ambiguous): the pool notices and connects afresh.
    let cas = client
        .compare_and_swap("k", Some(b"1"), Some(b"2"))
        .unwrap();
    assert!(cas.swapped);
    assert_eq!(server.stats().connections, 2);
}

#[test]
fn many_threads_share_one_client() {
    let server = FakeServer::start_in_thread();
    server.set(|s| s.delay_ms = 20);
    let client = blocking::Client::connect(server.config()).unwrap();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let client = client.clone();
            scope.spawn(move || {
                for i in 0..5 {
                    let key = format!("t{t}-{i}");
                    client.put(key.clone(), "v").unwrap();
                }
            });
        }
    });
    // 40 requests of 20 ms on 8 threads: about 100 ms, not 800 ms.
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.stats().requests, 40);
    assert!(server.stats().in_flight_peak > 1);
}

#[test]
fn connect_failures_are_typed() {
    let server = FakeServer::start_in_thread();
    let err = blocking::Client::connect(ClientConfig {
        cluster_id: ClusterId(7),
        ..server.config()
    })
    .unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err:?}");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let err = blocking::Client::connect(ClientConfig::new([dead])).unwrap_err();
    assert!(matches!(err, ClientError::Io { .. }), "{err:?}");
    let err = blocking::Client::connect(ClientConfig {
        endpoints: vec![server.addr],
        ..ClientConfig::default()
    })
    .and_then(|c| c.put("", "v"))
    .unwrap_err();
    assert!(matches!(
        err,
        ClientError::InvalidRequest(GolemError::EmptyKey)
    ));
}
