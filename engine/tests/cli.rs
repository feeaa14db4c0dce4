//! The `golem` command line as a user runs it: a playground, then
//! `golem ctl` against it; Ctrl-C stops the playground and its nodes.

mod common;

use common::free_ports;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn golem() -> Command {
    Command::new(env!("CARGO_BIN_EXE_golem"))
}

fn ctl(addr: &str, args: &[&str]) -> (i32, String) {
    let out = golem()
        .args(["ctl", "--addr", addr])
        .args(args)
        .output()
        .expect("run golem ctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// Children of a process, from /proc.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; check its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// A child process (and whatever it started) killed by pid when dropped,
/// so a failing test leaves nothing running. A test that stops the child
/// itself first makes this a no-op.
struct Guard(std::process::Child);

impl std::ops::Deref for Guard {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let kids = children(self.0.id());
            let _ = self.0.kill();
            let _ = self.0.wait();
            for k in kids {
                // SAFETY: signalling a process this test started (through its child).
                unsafe { libc::kill(k as i32, libc::SIGKILL) };
            }
        }
    }
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Starts `golem playground` and reads its banner (up to "Ctrl-C"). The
/// returned stdout lines stay open: the playground prints as it stops.
fn start_playground(
    addr: &str,
    shards: &str,
    pd: &str,
    pd_addr: &str,
    nodes: &str,
) -> (Guard, Lines, String) {
    let mut pg = Guard(
        golem()
            .args([
                "playground",
                "--listen",
                addr,
                "--shards",
                shards,
                "--pd",
                pd,
            ])
            .args(["--pd-listen", pd_addr, "--nodes", nodes])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(pg.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner += &line;
        banner.push('\n');
        if line.contains("Ctrl-C") {
            break;
        }
        assert!(Instant::now() < deadline, "no banner: {banner}");
    }
    (pg, lines, banner)
}

/// Sends `sig` to `child` and waits (bounded) for it to exit.
fn signal_and_wait(child: &mut Guard, sig: i32, what: &str) -> std::process::ExitStatus {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn playground_then_ctl_put_get_and_ctrl_c_stops_everything() {
    let port = free_ports(2);
    let addr = format!("127.0.0.1:{port}");
    let pd_addr = format!("127.0.0.1:{}", free_ports(1));
    // The playground prints how to connect once the node listens.
    let (mut pg, _lines, banner) = start_playground(&addr, "2", "1", &pd_addr, "1");
    assert!(
        banner.contains(&addr),
        "banner does not name the address: {banner}"
    );
    assert!(
        banner.contains(" ctl --addr"),
        "banner does not say how to connect: {banner}"
    );
    assert!(
        banner.contains(&pd_addr),
        "banner does not name the PD: {banner}"
    );

    assert_eq!(ctl(&addr, &["put", "k", "v"]), (0, "OK\n".into()));
    assert_eq!(ctl(&addr, &["get", "k"]), (0, "v\n".into()));
    let (code, json) = ctl(&addr, &["get", "k", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["value"], "v");
    assert_eq!(ctl(&addr, &["get", "absent"]).0, 1);
    assert_eq!(
        ctl(&addr, &["cas", "k", "--expect", "nope", "--new", "w"]).0,
        1,
        "cas with a wrong expectation must not swap"
    );
    assert_eq!(
        ctl(&addr, &["cas", "k", "--expect", "v", "--new", "w"]).0,
        0
    );
    assert_eq!(ctl(&addr, &["put", "k2", "x"]).0, 0);
    assert_eq!(ctl(&addr, &["scan"]), (0, "k\tw\nk2\tx\n".into()));
    assert_eq!(
        ctl(&addr, &["scan", "--reverse", "--limit", "1"]),
        (0, "k2\tx\n".into())
    );
    assert_eq!(ctl(&addr, &["delete", "k"]).0, 0);
    assert_eq!(ctl(&addr, &["get", "k"]).0, 1);
    // The other shard's port serves too (forwarding or redirect).
    let shard1 = format!("127.0.0.1:{}", port + 1);
    assert_eq!(ctl(&shard1, &["get", "k2"]), (0, "x\n".into()));
    // Hex mode for binary keys and values.
    assert_eq!(ctl(&addr, &["--hex", "put", "00ff", "0a0b"]).0, 0);
    assert_eq!(ctl(&addr, &["--hex", "get", "00ff"]), (0, "0a0b\n".into()));

    // The node registered with the playground's PD.
    let (code, out) = ctl(&addr, &["--pd", &pd_addr, "store", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stores"][0]["addr"], addr.as_str());
    for field in ["read_bytes_per_sec", "written_bytes_per_sec"] {
        assert!(v["stores"][0][field].is_u64(), "{field}: {out}");
    }
    let (code, out) = ctl(&addr, &["--pd", &pd_addr, "member", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&pd_addr) && out.contains("leader"), "{out}");

    let kids = children(pg.id());
    assert_eq!(kids.len(), 2, "the playground runs one PD and one node");
    // Ctrl-C.
    let status = signal_and_wait(&mut pg, libc::SIGINT, "playground");
    assert!(status.success(), "playground exit status {status}");
    for k in kids {
        assert!(
            !alive(k),
            "node {k} still running after the playground stopped"
        );
    }
}

#[test]
fn ctl_without_a_cluster_fails_with_a_clear_error() {
    let port = free_ports(1);
    let out = golem()
        .args([
            "ctl",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--timeout-ms",
            "500",
            "get",
            "k",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[test]
fn node_rejects_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, "shardz = 2\n").unwrap();
    let out = golem()
        .args(["node", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shardz"));
    let out = golem()
        .args(["node", "--tick-ms", "0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tick-ms"));
}

#[test]
fn golem_pd_subcommand_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut pd = Guard(
        golem()
            .args([
                "pd",
                "--listen",
                &addr.to_string(),
                "--tick-ms",
                "20",
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = golem_pd::client::PdClient::new(vec![addr], Default::default());
    let ids = rt.block_on(client.alloc_ids(10));
    let (members, leader) = rt.block_on(client.get_members()).expect("get members");
    let status = signal_and_wait(&mut pd, libc::SIGTERM, "golem pd");
    assert_eq!(members.len(), 1);
    assert!(leader.is_some());
    let ids = ids.expect("alloc ids");
    assert_eq!(ids.end - ids.start, 10);
    assert!(status.success(), "golem pd exit status {status}");
}

#[test]
fn playground_with_three_pd_members_serves_and_stops_every_child() {
    let port = free_ports(1);
    let addr = format!("127.0.0.1:{port}");
    let pd_port = free_ports(3);
    let pd_addr = format!("127.0.0.1:{pd_port}");
    // Keep stdout open until the end: the playground prints as it stops.
    let (mut pg, _lines, banner) = start_playground(&addr, "1", "3", &pd_addr, "1");
    assert!(banner.contains("pd 3:"), "{banner}");
    assert_eq!(ctl(&addr, &["put", "k", "v"]), (0, "OK\n".into()));
    let (code, out) = ctl(&addr, &["--pd", &pd_addr, "member", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3));
    assert!(v["leader"].is_u64(), "{out}");
    let kids = children(pg.id());
    assert_eq!(kids.len(), 4, "three PD members and one node");
    let status = signal_and_wait(&mut pg, libc::SIGINT, "playground");
    assert!(status.success(), "playground exit status {status}");
    for k in kids {
        assert!(
            !alive(k),
            "child {k} still running after the playground stopped"
        );
    }
}

#[test]
fn playground_with_three_nodes_replicates_the_first_region_and_stops_every_child() {
    // Nodes at port, port + 10, port + 20 (two shards each).
    let port = free_ports(22);
    let addrs: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", port + 10 * i))
        .collect();
    let pd_addr = format!("127.0.0.1:{}", free_ports(1));
    let (mut pg, _lines, banner) = start_playground(&addrs[0], "2", "1", &pd_addr, "3");
    for (i, a) in addrs.iter().enumerate() {
        assert!(
            banner.contains(&format!("node {}: {a}", i + 1)),
            "banner does not name node {} at {a}: {banner}",
            i + 1
        );
    }
    assert!(banner.contains(&pd_addr), "{banner}");
    assert!(!banner.contains("no leader"), "{banner}");
    let kids = children(pg.id());
    assert_eq!(kids.len(), 4, "one PD and three nodes");

    // One region, a voter on each node's store.
    let (code, out) = ctl(&addrs[0], &["--pd", &pd_addr, "region", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let regions = v["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 1, "{out}");
    let mut peer_stores: Vec<u64> = regions[0]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["store"].as_u64().unwrap())
        .collect();
    peer_stores.sort();
    peer_stores.dedup();
    assert_eq!(peer_stores.len(), 3, "{out}");
    let (code, out) = ctl(&addrs[0], &["--pd", &pd_addr, "store", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut store_addrs: Vec<String> = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["addr"].as_str().unwrap().to_string())
        .collect();
    store_addrs.sort();
    assert_eq!(store_addrs, addrs);
    // Data through any node: the client follows the leader.
    assert_eq!(ctl(&addrs[0], &["put", "k", "v"]), (0, "OK\n".into()));
    assert_eq!(ctl(&addrs[2], &["get", "k"]), (0, "v\n".into()));

    let status = signal_and_wait(&mut pg, libc::SIGINT, "playground");
    assert!(status.success(), "playground exit status {status}");
    for k in kids {
        assert!(
            !alive(k),
            "child {k} still running after the playground stopped"
        );
    }
}
