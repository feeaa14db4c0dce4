//! Acknowledged writes survive kill -9 and clean restarts of a real node.

mod common;

use common::*;
use golem_client::{Client, ClientConfig};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn client(node: &NodeProcess) -> Client {
    let mut cfg = ClientConfig::new(vec![node.base]);
    cfg.request_timeout_ms = 20_000;
    // One node: nothing to fail over to, so no per-attempt timeout (a slow
    // fsync must not turn an acknowledged-later write into an unknown one).
    cfg.attempt_timeout_ms = 0;
    Client::connect(cfg).await.expect("connect")
}

fn key(i: u32) -> Vec<u8> {
    format!("durable-{i:06}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat((i % 64) as usize)).into_bytes()
}

/// Reads every key back and checks its value.
async fn check_all(c: &Client, keys: impl Iterator<Item = u32>) {
    let keys: Vec<u32> = keys.collect();
    for chunk in keys.chunks(500) {
        let got = c
            .batch_get(chunk.iter().map(|&i| key(i)).collect::<Vec<_>>())
            .await
            .expect("batch_get");
        for (i, v) in chunk.iter().zip(got) {
            assert_eq!(v.as_deref(), Some(value(*i).as_slice()), "key {i} lost");
        }
    }
}

#[test]
fn ten_thousand_acknowledged_keys_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 2, &["--wal-segment-mib", "4"]);
    let rt = rt();
    rt.block_on(async {
        let c = client(&node).await;
        let mut set = tokio::task::JoinSet::new();
        for w in 0..64u32 {
            let c = c.clone();
            set.spawn(async move {
                let mut i = w;
                while i < 10_000 {
                    c.put(key(i), value(i)).await.expect("put acknowledged");
                    i += 64;
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    });
    node.kill9();
    node.restart();
    rt.block_on(async {
        let c = client(&node).await;
        check_all(&c, 0..10_000).await;
        // The node keeps accepting writes after recovery.
        c.put(b"after-restart".to_vec(), b"ok".to_vec())
            .await
            .unwrap();
        assert_eq!(
            c.get(b"after-restart".to_vec()).await.unwrap(),
            Some(b"ok".to_vec())
        );
    });
}

#[test]
fn acknowledged_writes_survive_kill_9_in_the_middle_of_writing() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 1, &[]);
    let rt = rt();
    let acked = Arc::new(Mutex::new(HashSet::new()));
    rt.block_on(async {
        let c = client(&node).await;
        let mut set = tokio::task::JoinSet::new();
        for w in 0..32u32 {
            let c = c.clone();
            let acked = acked.clone();
            set.spawn(async move {
                let mut i = w;
                loop {
                    if c.put(key(i), value(i)).await.is_err() {
                        return;
                    }
                    acked.lock().unwrap().insert(i);
                    i += 32;
                }
            });
        }
        // Kill while writes are in flight, once enough have been acknowledged.
        while acked.lock().unwrap().len() < 3_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        node.kill9();
        while set.join_next().await.is_some() {}
    });
    node.restart();
    let acked: Vec<u32> = acked.lock().unwrap().iter().copied().collect();
    assert!(acked.len() >= 3_000);
    rt.block_on(async {
        let c = client(&node).await;
        check_all(&c, acked.into_iter()).await;
    });
}

#[test]
fn sigterm_stops_cleanly_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 2, &[]);
    let rt = rt();
    rt.block_on(async {
        let c = client(&node).await;
        for i in 0..100 {
            c.put(key(i), value(i)).await.unwrap();
        }
    });
    assert!(node.terminate(), "node did not exit 0 after SIGTERM");
    node.restart();
    rt.block_on(async {
        let c = client(&node).await;
        check_all(&c, 0..100).await;
    });
}

#[test]
fn a_second_node_on_the_same_data_dir_or_ports_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path(), 1, &[]);
    // Same data directory, other ports.
    let other_port = free_ports(1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_golem"))
        .args(["node", "--pin", "off", "--shards", "1", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{other_port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    // Same ports, other data directory.
    let dir2 = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_golem"))
        .args(["node", "--pin", "off", "--shards", "1", "--data-dir"])
        .arg(dir2.path())
        .args(["--listen", &node.base.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    assert_serves(node.base);
}
