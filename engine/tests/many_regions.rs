//! Many regions spread over the shards of one node: a stand-alone node
//! with two shards and `--initial-regions 64` (regions alternate between
//! the shards). A client that starts from the seed route reaches every
//! region (routed by key, across shards); requests sent to the wrong
//! shard's port are forwarded and answered correctly; everything survives
//! a kill -9 and a restart. Scans and batch gets that span all the
//! regions come back whole and in order (one piece per region). The node
//! is stopped by its pid.

mod common;

use common::{get, put, NodeProcess, RawConn};
use golem_client::{Client, ClientConfig};
use golem_wire::{Response, ResponseBody};

fn key(i: u32) -> Vec<u8> {
    // Spread over the whole 4-byte key space the regions split.
    let mut k = (i.wrapping_mul(2_654_435_761)).to_be_bytes().to_vec();
    k.extend_from_slice(format!("-{i}").as_bytes());
    k
}

#[test]
fn sixty_four_regions_on_two_shards_route_forward_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path(), 2, &["--initial-regions", "64"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = 300u32;
    let check_all = |node: &NodeProcess| {
        rt.block_on(async {
            let mut cfg = ClientConfig::new(vec![node.shard_addr(0)]);
            cfg.request_timeout_ms = 20_000;
            cfg.attempt_timeout_ms = 0;
            let c = Client::connect(cfg).await.expect("connect");
            for i in 0..n {
                let v = c.get(key(i)).await.expect("get");
                assert_eq!(v, Some(format!("v{i}").into_bytes()), "key {i}");
            }
        })
    };
    rt.block_on(async {
        let mut cfg = ClientConfig::new(vec![node.shard_addr(0)]);
        cfg.request_timeout_ms = 20_000;
        cfg.attempt_timeout_ms = 0;
        let c = Client::connect(cfg).await.expect("connect");
        for i in 0..n {
            c.put(key(i), format!("v{i}")).await.expect("put");
        }
    });
    check_all(&node);
    let check_spanning = |node: &NodeProcess| {
        rt.block_on(async {
            let mut cfg = ClientConfig::new(vec![node.shard_addr(0)]);
            cfg.request_timeout_ms = 20_000;
            cfg.attempt_timeout_ms = 0;
            let c = Client::connect(cfg).await.expect("connect");
            let mut all: Vec<Vec<u8>> = (0..n).map(key).collect();
            all.sort();
            // Scans cross all 64 regions (both shards), from the seed
            // route: one piece per region, pairs in order, each once.
            let fwd = c
                .scan(Vec::new(), Vec::new(), n + 10, false)
                .await
                .expect("scan");
            let got: Vec<Vec<u8>> = fwd.pairs.iter().map(|p| p.key.clone()).collect();
            assert_eq!(got, all, "a forward scan over every region");
            assert!(!fwd.more);
            let rev = c
                .scan(Vec::new(), Vec::new(), n + 10, true)
                .await
                .expect("reverse scan");
            let mut got: Vec<Vec<u8>> = rev.pairs.iter().map(|p| p.key.clone()).collect();
            got.reverse();
            assert_eq!(got, all, "a reverse scan over every region");
            // A limit that stops mid-way, from the middle of the key space.
            let mid = all[(n / 2) as usize].clone();
            let page = c
                .scan(mid.clone(), Vec::new(), 40, false)
                .await
                .expect("scan page");
            assert!(page.more);
            let want: Vec<&Vec<u8>> = all.iter().filter(|k| **k >= mid).take(40).collect();
            let got: Vec<&Vec<u8>> = page.pairs.iter().map(|p| &p.key).collect();
            assert_eq!(got, want);
            let page = c
                .scan(Vec::new(), mid.clone(), 40, true)
                .await
                .expect("reverse page");
            let want: Vec<&Vec<u8>> = all.iter().filter(|k| **k < mid).rev().take(40).collect();
            let got: Vec<&Vec<u8>> = page.pairs.iter().map(|p| &p.key).collect();
            assert_eq!(got, want);
            // A batch get whose keys lie in many regions, answered in
            // request order, with a key that does not exist.
            let mut keys: Vec<Vec<u8>> = (0..n).step_by(7).map(key).collect();
            keys.push(b"absent".to_vec());
            let values = c.batch_get(keys.clone()).await.expect("batch get");
            assert_eq!(values.len(), keys.len());
            for (i, k) in keys.iter().enumerate() {
                let want = (i < keys.len() - 1).then(|| format!("v{}", i * 7).into_bytes());
                assert_eq!(values[i], want, "batch get of {k:?}");
            }
        })
    };
    check_spanning(&node);

    // Raw requests on the seed route to each shard's port: whichever shard
    // gets them answers with the region covering the key (forwarding to
    // the owning shard), and a request with that route, sent to either
    // port, is served.
    for shard in 0..2u16 {
        let mut conn = RawConn::handshake(node.shard_addr(shard));
        let seed = |body| golem_wire::Request {
            region: golem_wire::RegionId(0),
            epoch: golem_wire::RegionEpoch::default(),
            timeout_ms: 5_000,
            body,
        };
        for i in (0..n).step_by(37) {
            let resp = common::cluster::call(&mut conn, i + 1, &seed(get(&key(i))));
            let Response::Err(golem_wire::GolemError::EpochNotMatch { current_regions }) = resp
            else {
                panic!("seed route answered {resp:?}");
            };
            let info = &current_regions[0];
            assert!(info.contains(&key(i)), "{info:?} does not hold key {i}");
            let req = golem_wire::Request {
                region: info.id,
                epoch: info.epoch,
                timeout_ms: 5_000,
                body: get(&key(i)),
            };
            let resp = common::cluster::call(&mut conn, 10_000 + i, &req);
            assert_eq!(
                resp,
                Response::Ok(ResponseBody::Get {
                    value: Some(format!("v{i}").into_bytes())
                }),
                "key {i} through shard {shard}"
            );
        }
        // A write through the wrong shard is forwarded too.
        let resp = common::cluster::call(&mut conn, 50_000, &seed(put(b"\xff\xff-late", b"x")));
        assert!(
            matches!(
                resp,
                Response::Err(golem_wire::GolemError::EpochNotMatch { .. })
            ),
            "{resp:?}"
        );
    }

    node.kill9();
    node.restart();
    check_all(&node);
    check_spanning(&node);
}
