//! Test harness: PD members as real processes on loopback.
//!
//! Every process started here is killed (SIGKILL, by pid) when its handle
//! drops; every wait is bounded.

#![allow(dead_code)]

use golem_pd::client::{PdClient, PdClientConfig};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Small ticks so that elections take ~100–200 ms.
pub const TICK_MS: u64 = 20;
pub const ELECTION_TICKS: u64 = 10;

pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// One PD member process.
pub struct Member {
    pub id: u64,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    peers: String,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Member {
    pub fn new(id: u64, addr: SocketAddr, dir: &Path, peers: &str, extra: &[&str]) -> Member {
        let mut m = Member {
            id,
            addr,
            dir: dir.to_path_buf(),
            peers: peers.to_string(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        m.start();
        m
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("member-{}.log", self.id)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_golem-pd"))
            .arg("--id")
            .arg(self.id.to_string())
            .arg("--data-dir")
            .arg(self.dir.join(format!("m{}", self.id)))
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--peers")
            .arg(&self.peers)
            .arg("--tick-ms")
            .arg(TICK_MS.to_string())
            .arg("--election-ticks")
            .arg(ELECTION_TICKS.to_string())
            .arg("--heartbeat-ticks")
            .arg("2")
            .args(&self.extra)
            .env("GOLEM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start golem-pd");
        self.child = Some(child);
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("member-{}.log", self.id)))
            .unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A group of members in one temporary directory.
pub struct Group {
    pub members: Vec<Member>,
    pub dir: tempfile::TempDir,
}

impl Group {
    pub fn start(n: u64, extra: &[&str]) -> Group {
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        let peers = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let members = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Member::new(i as u64 + 1, *a, dir.path(), &peers, extra))
            .collect();
        Group { members, dir }
    }

    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.addr).collect()
    }

    pub fn client(&self) -> PdClient {
        client(self.endpoints())
    }

    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("--- member {} ---\n{}", m.id, m.log()))
            .collect()
    }
}

pub fn client(endpoints: Vec<SocketAddr>) -> PdClient {
    PdClient::new(
        endpoints,
        PdClientConfig {
            request_timeout_ms: 10_000,
            attempt_timeout_ms: 500,
            backoff_min_ms: 5,
            backoff_max_ms: 100,
            client_name: "pd-test".into(),
        },
    )
}

/// Runs `f` until it returns Some or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
