//! The tokio client against the in-test fake server: operations,
//! pipelining, retries, deadlines and connection failures.

mod common;

use common::{Action, FakeServer};
use golem_client::{
    write, Client, ClientConfig, ClientError, ClusterId, Disconnect, GolemError, Outcome,
    RequestBody, ResponseBody, RetryPolicy,
};
use golem_wire::{RegionId, StoreId};
use std::future::Future;
use std::time::{Duration, Instant};

/// Every test is bounded in time, whatever goes wrong.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("test took more than 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_round_trips() {
    bounded(async {
        let server = FakeServer::start().await;
        let client = Client::connect(server.config()).await.unwrap();
        assert_eq!(
            client.hello_ok(server.addr).unwrap().cluster_id,
            ClusterId(42)
        );

        assert_eq!(client.get("a").await.unwrap(), None);
        client.put("a", "1").await.unwrap();
        client.put(b"b".as_slice(), vec![2u8]).await.unwrap();
        client.put(String::from("c"), "3").await.unwrap();
        assert_eq!(client.get("a").await.unwrap(), Some(b"1".to_vec()));
        client.delete("c").await.unwrap();
        assert_eq!(
            client.batch_get(["a", "b", "c"]).await.unwrap(),
            vec![Some(b"1".to_vec()), Some(vec![2]), None]
        );
        client
            .batch_write([
                write::put("d", "4"),
                write::put("e", "5"),
                write::delete("a"),
            ])
            .await
            .unwrap();
        let page = client.scan("", "", 2, false).await.unwrap();
        let keys: Vec<_> = page.pairs.iter().map(|p| p.key.clone()).collect();
        assert_eq!(keys, vec![b"b".to_vec(), b"d".to_vec()]);
        assert!(page.more);
        let page = client.scan("b", "e", 10, true).await.unwrap();
        let keys: Vec<_> = page.pairs.iter().map(|p| p.key.clone()).collect();
        assert_eq!(keys, vec![b"d".to_vec(), b"b".to_vec()]);
        assert!(!page.more);

        let cas = client
            .compare_and_swap("d", Some(b"4"), Some(b"44"))
            .await
            .unwrap();
        assert!(cas.swapped);
        assert_eq!(cas.previous, Some(b"4".to_vec()));
        let cas = client
            .compare_and_swap("d", Some(b"4"), None)
            .await
            .unwrap();
        assert!(!cas.swapped);
        let cas = client
            .compare_and_swap("new", None, Some(b"x"))
            .await
            .unwrap();
        assert!(cas.swapped && cas.previous.is_none());

        let body = RequestBody::Get { key: b"d".to_vec() };
        let r = client.execute(body, Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            r,
            ResponseBody::Get {
                value: Some(b"44".to_vec())
            }
        );

        // Every request carried the seed route.
        let stats = server.stats();
        assert!(stats
            .routed
            .iter()
            .all(|(r, e, _)| *r == RegionId(1) && *e == Default::default()));
        assert_eq!(stats.connections, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_share_one_pipelined_connection() {
    bounded(async {
        let server = FakeServer::start().await;
        server.set(|s| s.delay_ms = 100);
        let client = Client::connect(server.config()).await.unwrap();
        let started = Instant::now();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let key = format!("k{i:03}");
                    client.put(key.clone(), key.clone()).await.unwrap();
                    assert_eq!(
                        client.get(key.clone()).await.unwrap(),
                        Some(key.into_bytes())
                    );
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed();
        let stats = server.stats();
        assert_eq!(stats.connections, 1);
        assert_eq!(stats.requests, 400);
        assert!(
            stats.in_flight_peak > 100,
            "peak in flight {}",
            stats.in_flight_peak
        );
        // 400 requests of 100 ms each, two rounds: far below the 40 s serial time.
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_responses_reach_the_right_callers() {
    bounded(async {
        let server = FakeServer::start().await;
        server.set(|s| {
            s.slow_prefix = Some((b"slow".to_vec(), 200));
            s.data.insert(b"slow".to_vec(), b"S".to_vec());
            s.data.insert(b"fast".to_vec(), b"F".to_vec());
        });
        let client = Client::connect(server.config()).await.unwrap();
        let slow = tokio::spawn({
            let client = client.clone();
            async move {
                let v = client.get("slow").await.unwrap();
                (v, Instant::now())
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fast = client.get("fast").await.unwrap();
        let fast_done = Instant::now();
        let (slow_value, slow_done) = slow.await.unwrap();
        assert_eq!(fast, Some(b"F".to_vec()));
        assert_eq!(slow_value, Some(b"S".to_vec()));
        assert!(
            fast_done < slow_done,
            "the fast answer overtook the slow one"
        );
        assert_eq!(server.stats().connections, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_flight_cap_is_respected() {
    bounded(async {
        let server = FakeServer::start().await;
        server.set(|s| s.delay_ms = 30);
        let config = ClientConfig {
            in_flight_max: 4,
            ..server.config()
        };
        let client = Client::connect(config).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.put(format!("k{i}"), "v").await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let stats = server.stats();
        assert_eq!(stats.in_flight_peak, 4);
        assert_eq!(stats.requests, 20);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_leader_then_success_follows_the_hint() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script([Action::Fail(GolemError::NotLeader {
            region: RegionId(1),
            leader: Some(server.location(7)),
        })]);
        let client = Client::connect(server.config()).await.unwrap();
        let started = Instant::now();
        client.put("k", "v").await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(server.stats().requests, 2);
        assert_eq!(server.value(b"k"), Some(b"v".to_vec()));
        let route = client.routes().locate(b"k");
        assert_eq!(route.store, StoreId(7), "the route learnt the leader hint");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epoch_not_match_refreshes_the_route() {
    bounded(async {
        let server = FakeServer::start().await;
        let current = golem_wire::RegionInfo {
            id: RegionId(1),
            start: vec![],
            end: vec![],
            epoch: golem_wire::RegionEpoch {
                conf_ver: 3,
                version: 5,
            },
            leader: Some(server.location(1)),
        };
        server.script([Action::Fail(GolemError::EpochNotMatch {
            current_regions: vec![current],
        })]);
        let client = Client::connect(server.config()).await.unwrap();
        client.get("k").await.unwrap();
        let routed = server.stats().routed;
        assert_eq!(routed.len(), 2);
        assert_eq!(routed[0].1, Default::default());
        assert_eq!(
            (routed[1].1.conf_ver, routed[1].1.version),
            (3, 5),
            "retried with the new epoch"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_busy_is_honoured() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script([Action::Fail(GolemError::ServerBusy {
            retry_after_ms: 150,
        })]);
        let client = Client::connect(server.config()).await.unwrap();
        let started = Instant::now();
        client.get("k").await.unwrap();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1_000), "{elapsed:?}");
        assert_eq!(server.stats().requests, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_attempts_max_with_the_last_error() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script((0..10).map(|_| Action::Fail(GolemError::ShuttingDown)));
        let client = Client::connect(server.config()).await.unwrap();
        let err = client.get("k").await.unwrap_err();
        assert!(
            matches!(err, ClientError::Server(GolemError::ShuttingDown)),
            "{err}"
        );
        assert_eq!(err.code(), Some(6));
        assert_eq!(server.stats().requests, 5);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_errors_return_at_once() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script([Action::Fail(GolemError::invalid("nope"))]);
        let client = Client::connect(server.config()).await.unwrap();
        let err = client.put("k", "v").await.unwrap_err();
        assert_eq!(err.code(), Some(105));
        assert_eq!(server.stats().requests, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_hits_the_deadline() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script([Action::Silent, Action::Silent]);
        let client = Client::connect(server.config()).await.unwrap();
        let started = Instant::now();
        let body = RequestBody::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let err = client
            .execute(body, Duration::from_millis(200))
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(600),
            "{elapsed:?}"
        );
        assert!(
            matches!(
                err,
                ClientError::Timeout {
                    outcome: Outcome::Unknown,
                    attempts: 1,
                    ..
                }
            ),
            "a sent put that timed out may have been applied: {err:?}"
        );
        let body = RequestBody::Get { key: b"k".to_vec() };
        let err = client
            .execute(body, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Timeout {
                    outcome: Outcome::NotApplied,
                    ..
                }
            ),
            "{err:?}"
        );
        // The connection is still usable: late answers are simply dropped.
        client.put("k2", "v").await.unwrap();
        assert_eq!(server.stats().connections, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_retries_are_cut_by_the_deadline() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script((0..10).map(|_| {
            Action::Fail(GolemError::ServerBusy {
                retry_after_ms: 120,
            })
        }));
        let client = Client::connect(server.config()).await.unwrap();
        let started = Instant::now();
        let err = client
            .execute(
                RequestBody::Get { key: b"k".to_vec() },
                Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
        match err {
            ClientError::Timeout {
                last_error: Some(last),
                ..
            } => assert_eq!(last.code(), Some(5)),
            other => panic!("{other:?}"),
        }
        assert!(server.stats().requests <= 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_reconnected_and_a_lost_write_is_not_retried() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script([Action::Drop]);
        let client = Client::connect(server.config()).await.unwrap();
        // The put may have been applied: its outcome is unknown, and it is
        // not sent again (a second copy could undo later writes).
        let err = client.put("k", "v").await.unwrap_err();
        assert!(err.is_outcome_unknown(), "{err:?}");
        assert_eq!(server.stats().requests, 1);
        // The next call reconnects.
        client.put("k", "v").await.unwrap();
        assert_eq!(server.value(b"k"), Some(b"v".to_vec()));
        let stats = server.stats();
        assert_eq!((stats.connections, stats.requests), (2, 2));
        // A Goodbye mid-stream is survived the same way.
        server.script([Action::Goodbye(GolemError::ShuttingDown)]);
        assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(server.stats().connections, 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_compare_and_swap_is_ambiguous_and_not_retried() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script([Action::DropAfterApply]);
        let client = Client::connect(server.config()).await.unwrap();
        let err = client
            .compare_and_swap("k", None, Some(b"v"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                ClientError::ConnectionLost {
                    reason: Disconnect::Eof,
                    outcome: Outcome::Unknown,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_outcome_unknown());
        assert_eq!(server.stats().requests, 1, "not retried");
        assert_eq!(
            server.value(b"k"),
            Some(b"v".to_vec()),
            "it was in fact applied"
        );
        // The client recovers for the next request.
        assert_eq!(client.get("k").await.unwrap(), Some(b"v".to_vec()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_in_flight_request_of_a_dead_connection_is_failed_or_retried() {
    bounded(async {
        let server = FakeServer::start().await;
        // The first request kills the connection while others wait on it.
        server.set(|s| s.delay_ms = 50);
        server.script([Action::Drop]);
        let client = Client::connect(server.config()).await.unwrap();
        let cas = {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                client.compare_and_swap("c", None, Some(b"1")).await
            })
        };
        let gets: Vec<_> = (0..10)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    client.get(format!("g{i}")).await
                })
            })
            .collect();
        let first = client.put("first", "x").await;
        assert!(
            matches!(&first, Err(e) if e.is_outcome_unknown()),
            "the put that was on the dead connection is not retried: {first:?}"
        );
        for g in gets {
            assert_eq!(g.await.unwrap().unwrap(), None, "reads are retried");
        }
        let cas = cas.await.unwrap();
        assert!(
            matches!(&cas, Err(e) if e.is_outcome_unknown()),
            "the CAS was in flight on the dead connection: {cas:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn invalid_requests_are_never_sent() {
    bounded(async {
        let server = FakeServer::start().await;
        let client = Client::connect(server.config()).await.unwrap();
        let err = client.put("", "v").await.unwrap_err();
        assert!(matches!(
            err,
            ClientError::InvalidRequest(GolemError::EmptyKey)
        ));
        let err = client.scan("", "", 0, false).await.unwrap_err();
        assert_eq!(err.code(), Some(105));
        let too_big = vec![0u8; golem_wire::limits::VALUE_BYTES_MAX + 1];
        let err = client.put("k", too_big).await.unwrap_err();
        assert!(matches!(
            err,
            ClientError::InvalidRequest(GolemError::ValueTooLarge { .. })
        ));
        assert_eq!(server.stats().requests, 0);
    })
    .await;
}

#[tokio::test]
async fn connect_failures_are_typed() {
    bounded(async {
        let server = FakeServer::start().await;
        let wrong_cluster = ClientConfig {
            cluster_id: ClusterId(7),
            ..server.config()
        };
        let err = Client::connect(wrong_cluster).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Handshake {
                    error: GolemError::ClusterMismatch {
                        server: 42,
                        client: 7
                    },
                    ..
                }
            ),
            "{err:?}"
        );
        let any_cluster = ClientConfig {
            cluster_id: ClusterId(0),
            ..server.config()
        };
        Client::connect(any_cluster).await.unwrap();

        // A port nobody listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = listener.local_addr().unwrap();
        drop(listener);
        let err = Client::connect(ClientConfig::new([dead]))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Io { .. }), "{err:?}");
        // The first reachable endpoint wins.
        let config = ClientConfig {
            endpoints: vec![dead, server.addr],
            ..server.config()
        };
        let client = Client::connect(config).await.unwrap();
        assert_eq!(client.routes().seed_addr(), server.addr);
        client.put("k", "v").await.unwrap();

        let err = Client::connect(ClientConfig::default()).await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidConfig { .. }));
    })
    .await;
}

#[tokio::test]
async fn no_retries_policy_returns_the_first_failure() {
    bounded(async {
        let server = FakeServer::start().await;
        server.script([Action::Fail(GolemError::ServerBusy { retry_after_ms: 1 })]);
        let config = ClientConfig {
            retry: RetryPolicy::no_retries(),
            ..server.config()
        };
        let client = Client::connect(config).await.unwrap();
        let err = client.get("k").await.unwrap_err();
        assert!(matches!(
            err,
            ClientError::Server(GolemError::ServerBusy { .. })
        ));
    })
    .await;
}
