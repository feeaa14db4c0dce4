//! Many regions spread over the shards of one node: a stand-alone node
//! with two shards and `--initial-regions 64` (regions alternate between
//! the shards). A client that starts from the seed route reaches every
//! region (routed by key, across shards); requests sent to the wrong
//! shard's port are forwarded and answered correctly; everything survives
//! a kill -9 and a restart. The node is stopped by its pid.

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
}
