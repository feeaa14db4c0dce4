//! A real cluster on loopback for process-level tests: one PD
//! (`--initial-replicas 3`) and three `golem node`s, each a child process
//! stopped by its pid (SIGCONT first, in case a test paused it) when the
//! handle is dropped.

use super::{free_ports, RawConn, Reply};
use golem_wire::codec::encode_request;
use golem_wire::{RegionEpoch, RegionId, Request, RequestBody, RequestId, Response};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Raft tick of every process, ms (elections after 10–20 ticks).
pub const TICK_MS: &str = "20";

pub struct Proc {
    child: Child,
    args: Vec<String>,
}

impl Proc {
    pub fn spawn(args: Vec<String>) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_golem"))
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn golem");
        Proc { child, args }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    pub fn restart(&mut self) {
        self.kill9();
        *self = Proc::spawn(self.args.clone());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped child must be continued to die promptly.
        self.signal(libc::SIGCONT);
        self.kill9();
    }
}

pub struct Cluster {
    _pd: Proc,
    /// The PD's `ip:port`.
    pub pd_addr: String,
    pub nodes: Vec<Proc>,
    pub addrs: Vec<SocketAddr>,
    _dirs: Vec<tempfile::TempDir>,
    /// Flags every node of this cluster gets.
    extra: Vec<String>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// A cluster whose nodes all get `extra` flags too.
    pub fn start_with(extra: &[&str]) -> Cluster {
        // Tests drive membership and leadership themselves; the PD's
        // schedulers would race them.
        Cluster::start_scheduling(&["--no-scheduling"], extra)
    }

    /// A cluster whose PD gets `pd_extra` flags (without
    /// `--no-scheduling`, its schedulers run) and whose nodes get `extra`.
    pub fn start_scheduling(pd_extra: &[&str], extra: &[&str]) -> Cluster {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let pd_port = free_ports(1);
        let pd_addr = format!("127.0.0.1:{pd_port}");
        let pd_dir = tempfile::tempdir().unwrap();
        let mut pd_args: Vec<String> = vec![
            "pd".into(),
            "--listen".into(),
            pd_addr.clone(),
            "--tick-ms".into(),
            TICK_MS.into(),
            "--initial-replicas".into(),
            "3".into(),
            "--data-dir".into(),
            pd_dir.path().display().to_string(),
        ];
        pd_args.extend(pd_extra.iter().map(|s| s.to_string()));
        let pd = Proc::spawn(pd_args);
        let mut dirs = vec![pd_dir];
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_ports(1);
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let args = node_args(dir.path(), addr, &pd_addr, &extra);
            nodes.push(Proc::spawn(args));
            addrs.push(addr);
            dirs.push(dir);
        }
        let mut cluster = Cluster {
            _pd: pd,
            pd_addr,
            nodes,
            addrs,
            _dirs: dirs,
            extra,
        };
        for &a in &cluster.addrs {
            wait_listening(a, Duration::from_secs(60));
        }
        cluster.assert_running();
        cluster
    }

    /// Panics if a node exited (e.g. its port was taken: then another
    /// process answers on it and the test would run with a node short).
    pub fn assert_running(&mut self) {
        std::thread::sleep(Duration::from_millis(200));
        for (i, p) in self.nodes.iter_mut().enumerate() {
            if let Some(status) = p.child.try_wait().expect("wait") {
                panic!("node {i} exited during start-up: {status}");
            }
        }
    }

    /// The node whose region-1 peer answers a read (the leader), if any.
    pub fn leader(&self, skip: &[usize]) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| !skip.contains(i))
            .find(|&i| answers_reads(self.addrs[i]))
    }

    /// The store id of node `i` (from its data directory's identity).
    pub fn store_of(&self, i: usize) -> u64 {
        // dirs[0] is the PD's; node i's is dirs[i + 1].
        let text = std::fs::read_to_string(self._dirs[i + 1].path().join("IDENTITY"))
            .expect("node identity");
        text.lines()
            .find_map(|l| l.strip_prefix("store="))
            .and_then(|v| v.trim().parse().ok())
            .expect("store id in IDENTITY")
    }

    /// Starts one more node with an empty data directory (it joins the
    /// cluster through the PD and hosts nothing yet); returns its index.
    pub fn add_node(&mut self) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports(1);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let args = node_args(dir.path(), addr, &self.pd_addr, &self.extra);
        self.nodes.push(Proc::spawn(args));
        self.addrs.push(addr);
        self._dirs.push(dir);
        wait_listening(addr, Duration::from_secs(60));
        self.nodes.len() - 1
    }

    /// Runs `golem ctl --pd <pd> <args>`; its exit status and stdout.
    pub fn ctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_golem"))
            .arg("ctl")
            .arg("--pd")
            .arg(&self.pd_addr)
            .args(args)
            .output()
            .expect("run golem ctl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    pub fn wait_leader(&self, skip: &[usize], limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.leader(skip) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A node's flags; one shard unless `extra` names `--shards`.
fn node_args(dir: &Path, addr: SocketAddr, pd: &str, extra: &[String]) -> Vec<String> {
    let shards = if extra.iter().any(|a| a == "--shards") {
        vec![]
    } else {
        vec!["--shards", "1"]
    };
    [
        "node",
        "--data-dir",
        &dir.display().to_string(),
        "--listen",
        &addr.to_string(),
    ]
    .into_iter()
    .chain(shards)
    .chain(["--pin", "off", "--tick-ms", TICK_MS, "--pd", pd])
    .map(|s| s.to_string())
    .chain(extra.iter().cloned())
    .collect()
}

pub fn wait_listening(addr: SocketAddr, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `addr`'s replica of the first region serves a read (it leads).
pub fn answers_reads(addr: SocketAddr) -> bool {
    let Ok(stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    drop(stream);
    let mut conn = RawConn::handshake(addr);
    let req = Request {
        region: RegionId(0),
        epoch: RegionEpoch::default(),
        timeout_ms: 1_000,
        body: RequestBody::Get {
            key: b"probe".to_vec(),
        },
    };
    // A seed route: the node answers with the region covering the key.
    let resp = call(&mut conn, 1, &req);
    let Response::Err(golem_wire::GolemError::EpochNotMatch { current_regions }) = resp else {
        return false;
    };
    let info = &current_regions[0];
    let req = Request {
        region: info.id,
        epoch: info.epoch,
        timeout_ms: 1_000,
        body: RequestBody::Get {
            key: b"probe".to_vec(),
        },
    };
    matches!(call(&mut conn, 2, &req), Response::Ok(_))
}

pub fn call(conn: &mut RawConn, id: u32, req: &Request) -> Response {
    conn.send(&encode_request(RequestId(id), req).unwrap());
    match conn.recv() {
        Reply::Response(_, resp) => resp,
        other => Response::Err(golem_wire::GolemError::Internal {
            reason: format!("{other:?}"),
        }),
    }
}

/// A client seeded with `addrs`, giving each request `request_timeout_ms`
/// and each attempt 2 s (a dead node's attempt is abandoned, not waited on).
pub async fn client(addrs: &[SocketAddr], request_timeout_ms: u64) -> golem_client::Client {
    let mut cfg = golem_client::ClientConfig::new(addrs.to_vec());
    cfg.request_timeout_ms = request_timeout_ms;
    cfg.attempt_timeout_ms = 2_000;
    golem_client::Client::connect(cfg).await.expect("connect")
}
