//! Three nodes and a PD on loopback, the first region replicated on all
//! three: kill -9 of the leader's node during writes, then SIGSTOP of the
//! next leader's node for 10 s. Writes resume on a new leader, no
//! acknowledged write is lost, and a restarted node catches up (it serves
//! in a quorum after the other original nodes are gone one by one). Every
//! process is real and stopped by its pid.

mod common;

use common::{free_ports, RawConn, Reply};
use golem_client::{Client, ClientConfig};
use golem_wire::codec::encode_request;
use golem_wire::RequestId;
use golem_wire::{RegionEpoch, RegionId, Request, RequestBody, Response};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Raft tick of every process, ms (elections after 10–20 ticks).
const TICK_MS: &str = "20";

struct Proc {
    child: Child,
    args: Vec<String>,
}

impl Proc {
    fn spawn(args: Vec<String>) -> Proc {
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

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    fn restart(&mut self) {
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

struct Cluster {
    _pd: Proc,
    nodes: Vec<Proc>,
    addrs: Vec<SocketAddr>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    fn start() -> Cluster {
        let pd_port = free_ports(1);
        let pd_addr = format!("127.0.0.1:{pd_port}");
        let pd_dir = tempfile::tempdir().unwrap();
        let pd = Proc::spawn(vec![
            "pd".into(),
            "--listen".into(),
            pd_addr.clone(),
            "--tick-ms".into(),
            TICK_MS.into(),
            "--initial-replicas".into(),
            "3".into(),
            "--data-dir".into(),
            pd_dir.path().display().to_string(),
        ]);
        let mut dirs = vec![pd_dir];
        let mut nodes = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_ports(1);
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            nodes.push(Proc::spawn(node_args(dir.path(), addr, &pd_addr)));
            addrs.push(addr);
            dirs.push(dir);
        }
        let cluster = Cluster {
            _pd: pd,
            nodes,
            addrs,
            _dirs: dirs,
        };
        for &a in &cluster.addrs {
            wait_listening(a, Duration::from_secs(60));
        }
        cluster
    }

    /// The node whose region-1 peer answers a read (the leader), if any.
    fn leader(&self, skip: &[usize]) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| !skip.contains(i))
            .find(|&i| answers_reads(self.addrs[i]))
    }

    fn wait_leader(&self, skip: &[usize], limit: Duration) -> usize {
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

fn node_args(dir: &Path, addr: SocketAddr, pd: &str) -> Vec<String> {
    [
        "node",
        "--data-dir",
        &dir.display().to_string(),
        "--listen",
        &addr.to_string(),
        "--shards",
        "1",
        "--pin",
        "off",
        "--tick-ms",
        TICK_MS,
        "--pd",
        pd,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn wait_listening(addr: SocketAddr, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `addr`'s replica of the first region serves a read (it leads).
fn answers_reads(addr: SocketAddr) -> bool {
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

fn call(conn: &mut RawConn, id: u32, req: &Request) -> Response {
    conn.send(&encode_request(RequestId(id), req).unwrap());
    match conn.recv() {
        Reply::Response(_, resp) => resp,
        other => Response::Err(golem_wire::GolemError::Internal {
            reason: format!("{other:?}"),
        }),
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("rep-{i:06}").into_bytes()
}

async fn client(addrs: &[SocketAddr]) -> Client {
    let mut cfg = ClientConfig::new(addrs.to_vec());
    cfg.request_timeout_ms = 30_000;
    // A paused (SIGSTOP) leader is given up on after a second.
    cfg.attempt_timeout_ms = 1_000;
    Client::connect(cfg).await.expect("connect")
}

/// Writes keys from `next` on with 8 writers until `stop` is set; records
/// the acknowledged ones and the longest gap between two acknowledgements.
struct Writers {
    acked: Arc<Mutex<HashSet<u32>>>,
    last_ack: Arc<Mutex<Instant>>,
    longest_gap: Arc<Mutex<Duration>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Writers {
    fn start(rt: &tokio::runtime::Runtime, addrs: Vec<SocketAddr>, base: u32) -> Writers {
        let w = Writers {
            acked: Arc::default(),
            last_ack: Arc::new(Mutex::new(Instant::now())),
            longest_gap: Arc::default(),
            stop: Arc::default(),
        };
        for t in 0..8u32 {
            let (acked, last, gap, stop) = (
                w.acked.clone(),
                w.last_ack.clone(),
                w.longest_gap.clone(),
                w.stop.clone(),
            );
            let addrs = addrs.clone();
            rt.spawn(async move {
                let c = client(&addrs).await;
                let mut i = base + t;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if c.put(key(i), i.to_le_bytes().to_vec()).await.is_ok() {
                        acked.lock().unwrap().insert(i);
                        let now = Instant::now();
                        let mut l = last.lock().unwrap();
                        let mut g = gap.lock().unwrap();
                        *g = (*g).max(now - *l);
                        *l = now;
                    }
                    i += 8;
                }
            });
        }
        w
    }

    fn wait_acks(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.acked.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} acks",
                self.acked.lock().unwrap().len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(&self) -> Vec<u32> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        self.acked.lock().unwrap().iter().copied().collect()
    }
}

async fn check_all(addrs: &[SocketAddr], acked: &[u32]) {
    let c = client(addrs).await;
    for chunk in acked.chunks(256) {
        let got = c
            .batch_get(chunk.iter().map(|&i| key(i)).collect::<Vec<_>>())
            .await
            .expect("batch_get");
        for (i, v) in chunk.iter().zip(got) {
            assert_eq!(
                v,
                Some(i.to_le_bytes().to_vec()),
                "acknowledged key {i} lost"
            );
        }
    }
}

#[test]
fn leader_failures_lose_no_acknowledged_write_and_writes_resume() {
    let mut c = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let first = c.wait_leader(&[], Duration::from_secs(30));

    // 1. kill -9 of the leader's node in the middle of writes.
    let w = Writers::start(&rt, c.addrs.clone(), 0);
    w.wait_acks(500, Duration::from_secs(30));
    c.nodes[first].kill9();
    let killed_at = Instant::now();
    let before = w.acked.lock().unwrap().len();
    w.wait_acks(before + 500, Duration::from_secs(30));
    let resumed = *w.last_ack.lock().unwrap() - killed_at;
    let acked_1 = w.stop();
    eprintln!(
        "kill -9 of the leader: writes resumed; longest gap between acks {:?}, first ack batch done {:?} after the kill",
        *w.longest_gap.lock().unwrap(),
        resumed
    );
    rt.block_on(check_all(&c.addrs, &acked_1));

    // The killed node restarts and catches up from the leader's log.
    c.nodes[first].restart();
    wait_listening(c.addrs[first], Duration::from_secs(30));

    // 2. SIGSTOP of the current leader's node for 10 s during writes.
    let second = c.wait_leader(&[first], Duration::from_secs(30));
    let w = Writers::start(&rt, c.addrs.clone(), 1_000_000);
    w.wait_acks(300, Duration::from_secs(30));
    c.nodes[second].signal(libc::SIGSTOP);
    let before = w.acked.lock().unwrap().len();
    w.wait_acks(before + 300, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(10));
    c.nodes[second].signal(libc::SIGCONT);
    let acked_2 = w.stop();
    eprintln!(
        "SIGSTOP of the leader for 10 s: longest gap between acks {:?}",
        *w.longest_gap.lock().unwrap()
    );
    let all: Vec<u32> = acked_1.iter().chain(&acked_2).copied().collect();
    rt.block_on(check_all(&c.addrs, &all));

    // 3. The restarted node serves in a quorum: stop the third original
    // node; the restarted one and the un-stopped one hold everything.
    let third = (0..3).find(|i| *i != first && *i != second).unwrap();
    c.nodes[third].kill9();
    let leader = c.wait_leader(&[third], Duration::from_secs(30));
    assert_ne!(leader, third);
    rt.block_on(check_all(&c.addrs, &all));
    rt.block_on(async {
        let cl = client(&c.addrs).await;
        cl.put(b"after".to_vec(), b"ok".to_vec())
            .await
            .expect("writes with two nodes");
    });
}
