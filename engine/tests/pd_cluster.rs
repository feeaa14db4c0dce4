//! A node started with `--pd`: it joins the PD's cluster (bootstrapping the
//! first region with PD-issued ids), reports to it, keeps its store id
//! across restarts, and keeps serving while the PD is down. Three nodes and
//! a PD with `--initial-replicas 3` form a cluster whose first region has a
//! peer on each. Every process is real, on loopback, and stopped by its pid.

mod common;

use common::{free_ports, NodeProcess};
use golem_pd::client::PdClient;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `golem pd` child, killed by pid when dropped.
struct PdProcess {
    child: Child,
    addr: SocketAddr,
}

impl PdProcess {
    fn start(dir: &Path, addr: SocketAddr) -> PdProcess {
        Self::start_with(dir, addr, &[])
    }

    fn start_with(dir: &Path, addr: SocketAddr, extra: &[&str]) -> PdProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_golem"))
            .args(["pd", "--listen", &addr.to_string(), "--tick-ms", "20"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn golem pd");
        PdProcess { child, addr }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PdProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `f` until it returns Some, for at most `limit`.
fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn golem_ctl(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_golem"))
        .arg("ctl")
        .args(args)
        .output()
        .expect("run golem ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn node_with_pd_registers_reports_restarts_and_survives_pd_outage() {
    let pd_dir = tempfile::tempdir().unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let pd_addr: SocketAddr = format!("127.0.0.1:{}", free_ports(1)).parse().unwrap();
    let mut pd = PdProcess::start(pd_dir.path(), pd_addr);
    let pd_arg = pd.addr.to_string();
    let mut node = NodeProcess::start(node_dir.path(), 2, &["--pd", &pd_arg, "--tick-ms", "20"]);
    let rt = rt();
    let pdc = PdClient::new(vec![pd_addr], Default::default());

    // The node bootstrapped the cluster: one store at its address, one
    // region led by it, with PD-issued ids.
    let stores = rt.block_on(pdc.get_stores(false)).expect("stores");
    assert_eq!(stores.len(), 1);
    assert_eq!(stores[0].store.addr, node.base.to_string());
    assert_eq!(stores[0].store.shard_count, 2);
    let store = stores[0].store.id;
    // A region heartbeat from the node's leader (a term above bootstrap's 0).
    let route = eventually(Duration::from_secs(15), "a region heartbeat", || {
        let routes = rt.block_on(pdc.scan_regions(b"", b"", 10)).ok()?;
        let r = routes.into_iter().next()?;
        (r.term > 0 && r.leader.is_some_and(|l| l.store == store)).then_some(r)
    });
    assert!(route.region.start.is_empty() && route.region.end.is_empty());
    let region = route.region.id;

    // `golem ctl region list --json` shows the same.
    let (code, out) = golem_ctl(&["--pd", &pd_arg, "--json", "region", "list"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["regions"][0]["id"], region.0);
    assert_eq!(v["regions"][0]["leader"]["store"], store.0);
    let (code, out) = golem_ctl(&["--pd", &pd_arg, "--json", "store", "list"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stores"][0]["id"], store.0);
    assert_eq!(v["stores"][0]["addr"], node.base.to_string());

    // Data through the node (the client's seed route is corrected by the
    // node's EpochNotMatch).
    let base = node.base.to_string();
    assert_eq!(golem_ctl(&["--addr", &base, "put", "a", "1"]).0, 0);
    assert_eq!(golem_ctl(&["--addr", &base, "get", "a"]), (0, "1\n".into()));

    // A client that knows only the PD finds the node and routes by the
    // PD's answer; so does `golem ctl --pd`.
    let via_pd = rt
        .block_on(golem_client::Client::connect(
            golem_client::ClientConfig::with_pd([pd_addr]),
        ))
        .expect("connect through the PD");
    rt.block_on(via_pd.put("p", "2"))
        .expect("put through the PD");
    assert_eq!(
        rt.block_on(via_pd.get("a")).expect("get"),
        Some(b"1".to_vec())
    );
    let r = via_pd.routes().locate(b"p");
    assert_eq!((r.region, r.store, r.addr), (region, store, node.base));
    assert_eq!(golem_ctl(&["--pd", &pd_arg, "get", "p"]), (0, "2\n".into()));

    // Restart: same store, same region, the data is there.
    assert!(node.terminate(), "node exits cleanly");
    node.restart();
    let stores = rt.block_on(pdc.get_stores(false)).expect("stores");
    assert_eq!(stores.len(), 1, "a restart registers no new store");
    assert_eq!(stores[0].store.id, store);
    assert_eq!(golem_ctl(&["--addr", &base, "get", "a"]), (0, "1\n".into()));

    // The PD down for a few seconds: the node keeps serving.
    pd.kill9();
    let client_rt = rt;
    let cfg = golem_client::ClientConfig::new([node.base]);
    let client = client_rt
        .block_on(golem_client::Client::connect(cfg))
        .expect("connect");
    let until = Instant::now() + Duration::from_secs(3);
    let mut n = 0u32;
    while Instant::now() < until {
        let key = format!("k{n}");
        client_rt
            .block_on(client.put(key.clone(), "v"))
            .expect("put while the PD is down");
        assert_eq!(
            client_rt.block_on(client.get(key.clone())).expect("get"),
            Some(b"v".to_vec())
        );
        // The PD-routed client keeps working on its cached routes.
        assert_eq!(
            client_rt
                .block_on(via_pd.get(key))
                .expect("get through cached PD routes"),
            Some(b"v".to_vec())
        );
        n += 1;
    }
    assert!(n > 10, "only {n} writes in 3 s");
    let pd = PdProcess::start(pd_dir.path(), pd_addr);
    // The PD comes back with its state; the node's heartbeats resume.
    let pdc = PdClient::new(vec![pd.addr], Default::default());
    eventually(Duration::from_secs(20), "a store heartbeat", || {
        let s = client_rt.block_on(pdc.get_store(store)).ok()?;
        (s.last_heartbeat_ms > 0).then_some(())
    });
    let r = client_rt
        .block_on(pdc.get_region_by_id(region))
        .expect("region after PD restart");
    assert_eq!(r.leader.map(|l| l.store), Some(store));
}

#[test]
fn node_refuses_a_data_dir_of_another_cluster() {
    let pd_dir = tempfile::tempdir().unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let pd_addr: SocketAddr = format!("127.0.0.1:{}", free_ports(1)).parse().unwrap();
    let _pd = PdProcess::start(pd_dir.path(), pd_addr);
    // A stand-alone node's directory.
    let mut n = NodeProcess::start(node_dir.path(), 1, &[]);
    assert!(n.terminate());
    let port = free_ports(1);
    let out = Command::new(env!("CARGO_BIN_EXE_golem"))
        .args([
            "node",
            "--pin",
            "off",
            "--shards",
            "1",
            "--pd",
            &pd_addr.to_string(),
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(node_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stand-alone"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `key=value` lines of a node's `IDENTITY` file.
fn identity(dir: &Path) -> std::collections::HashMap<String, u64> {
    let text = std::fs::read_to_string(dir.join("IDENTITY")).expect("IDENTITY");
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Base ports for `n` nodes of `shards` shards each.
fn node_addrs(n: usize, shards: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|_| format!("127.0.0.1:{}", free_ports(shards)).parse().unwrap())
        .collect()
}

#[test]
fn three_nodes_form_a_cluster_whose_first_region_has_a_peer_on_each() {
    let started = Instant::now();
    let pd_dir = tempfile::tempdir().unwrap();
    let pd_addr: SocketAddr = format!("127.0.0.1:{}", free_ports(1)).parse().unwrap();
    let _pd = PdProcess::start_with(pd_dir.path(), pd_addr, &["--initial-replicas", "3"]);
    let pd_arg = pd_addr.to_string();
    let extra = ["--pd", pd_arg.as_str(), "--tick-ms", "20"];
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs = node_addrs(4, 2);
    // The three start together; none serves before the third has joined.
    let mut nodes: Vec<NodeProcess> = (0..3)
        .map(|i| NodeProcess::spawn_at(dirs[i].path(), addrs[i], 2, &extra))
        .collect();
    for n in &mut nodes {
        n.wait_listening();
    }
    let rt = rt();
    let pdc = PdClient::new(vec![pd_addr], Default::default());
    let stores = rt.block_on(pdc.get_stores(false)).expect("stores");
    assert_eq!(stores.len(), 3);
    let routes = rt
        .block_on(pdc.scan_regions(b"", b"", 10))
        .expect("regions");
    assert_eq!(routes.len(), 1, "{routes:?}");
    let region = &routes[0].region;
    assert!(region.start.is_empty() && region.end.is_empty());
    assert_eq!((region.epoch.conf_ver, region.epoch.version), (1, 1));
    assert_eq!(region.peers.len(), 3);
    let peer_stores: std::collections::BTreeSet<_> = region.peers.iter().map(|p| p.store).collect();
    assert_eq!(peer_stores.len(), 3, "three distinct stores: {region:?}");
    for (i, n) in nodes.iter().enumerate() {
        // Each node's identity names its own peer of region 1.
        let id = identity(n.data_dir.as_path());
        let store = golem_wire::StoreId(id["store"]);
        let mine = region
            .peers
            .iter()
            .find(|p| p.store == store)
            .unwrap_or_else(|| panic!("node {i} (store {store}) holds no peer: {region:?}"));
        assert_eq!(id["region"], region.id.0, "node {i}");
        assert_eq!(id["peer"], mine.id.0, "node {i}");
        assert_eq!(mine.shard, golem_wire::ShardId(0));
        let info = stores
            .iter()
            .find(|s| s.store.id == store)
            .expect("registered");
        assert_eq!(info.store.addr, n.base.to_string());
        assert!(!n.data_dir.join("JOINING").exists(), "node {i}");
    }
    // A fourth node joins the formed cluster and hosts nothing.
    let mut fourth = NodeProcess::spawn_at(dirs[3].path(), addrs[3], 2, &extra);
    fourth.wait_listening();
    let id = identity(dirs[3].path());
    assert!(
        !id.contains_key("region") && !id.contains_key("peer"),
        "{id:?}"
    );
    assert_eq!(rt.block_on(pdc.get_stores(false)).unwrap().len(), 4);
    assert_eq!(
        rt.block_on(pdc.scan_regions(b"", b"", 10)).unwrap()[0]
            .region
            .peers
            .len(),
        3
    );
    // A member of the first region restarts: same store, same peer.
    let before = identity(dirs[1].path());
    nodes[1].kill9();
    nodes[1].restart();
    assert_eq!(identity(dirs[1].path()), before);
    assert_eq!(rt.block_on(pdc.get_stores(false)).unwrap().len(), 4);
    eprintln!("formed, joined and restarted in {:?}", started.elapsed());
}

#[test]
fn a_node_stopped_while_the_cluster_forms_comes_back_as_the_same_store() {
    let pd_dir = tempfile::tempdir().unwrap();
    let pd_addr: SocketAddr = format!("127.0.0.1:{}", free_ports(1)).parse().unwrap();
    let _pd = PdProcess::start_with(pd_dir.path(), pd_addr, &["--initial-replicas", "2"]);
    let pd_arg = pd_addr.to_string();
    let extra = ["--pd", pd_arg.as_str(), "--tick-ms", "20"];
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs = node_addrs(2, 1);
    let mut first = NodeProcess::spawn_at(dirs[0].path(), addrs[0], 1, &extra);
    // It waits for a second store; its store id is kept aside meanwhile.
    let joining = dirs[0].path().join("JOINING");
    eventually(Duration::from_secs(10), "the joining store id", || {
        joining.exists().then_some(())
    });
    let store = std::fs::read_to_string(&joining).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(first.is_running(), "a node waits for the cluster to form");
    assert!(!dirs[0].path().join("IDENTITY").exists());
    assert!(first.terminate(), "SIGTERM stops a waiting node cleanly");
    // Back as the same store (one candidate, not two), then the second
    // node completes the cluster.
    let mut first = NodeProcess::spawn_at(dirs[0].path(), addrs[0], 1, &extra);
    let mut second = NodeProcess::spawn_at(dirs[1].path(), addrs[1], 1, &extra);
    first.wait_listening();
    second.wait_listening();
    let id = identity(dirs[0].path());
    assert_eq!(format!("store={}\n", id["store"]), store);
    let rt = rt();
    let pdc = PdClient::new(vec![pd_addr], Default::default());
    assert_eq!(rt.block_on(pdc.get_stores(false)).unwrap().len(), 2);
    let route = rt.block_on(pdc.get_region(b"")).unwrap().unwrap();
    assert_eq!(route.region.peers.len(), 2);
    assert!(!joining.exists());
}
