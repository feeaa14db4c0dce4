//! Process-level test harness: starts real `golem node` processes on
//! loopback and speaks the raw protocol to them.
//!
//! Invariants: every process a test starts is stopped by its pid when its
//! `NodeProcess` drops (SIGKILL, then reaped); every socket operation has a
//! timeout so a test cannot hang.

#![allow(dead_code)]

pub mod cluster;
pub mod regions;
use golem_wire::codec::{
    decode_goodbye, decode_hello_ok, decode_response, encode_hello, encode_request,
};
use golem_wire::limits::FRAME_PAYLOAD_BYTES_MAX;
use golem_wire::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Socket operations in tests give up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds `n` consecutive free loopback ports, below the kernel's ephemeral
/// range (32768 and up by default), so that no outgoing connection can
/// take one between this check and the node's bind.
pub fn free_ports(n: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 1_200) as u16 * 10;
    loop {
        let offset = NEXT.fetch_add(n + 1, Ordering::Relaxed);
        let start = base.wrapping_add(offset) % 12_000 + 20_000;
        let all_free =
            (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", start + i)).is_ok());
        if all_free {
            return start;
        }
    }
}

/// A running `golem node` child process.
pub struct NodeProcess {
    pub child: Child,
    pub base: SocketAddr,
    pub shards: u16,
    pub data_dir: PathBuf,
    extra: Vec<String>,
}

impl NodeProcess {
    /// Starts a node on fresh ports with its data in `data_dir`.
    pub fn start(data_dir: &Path, shards: u16, extra: &[&str]) -> NodeProcess {
        let port = free_ports(shards);
        let base: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        Self::start_at(data_dir, base, shards, extra)
    }

    /// Starts a node at a given base address.
    pub fn start_at(data_dir: &Path, base: SocketAddr, shards: u16, extra: &[&str]) -> NodeProcess {
        let mut node = Self::spawn_at(data_dir, base, shards, extra);
        node.wait_ready();
        node
    }

    /// Starts a node at a given base address without waiting for it to
    /// listen (a node joining a forming cluster listens only once the PD
    /// has bootstrapped it); see `wait_listening`.
    pub fn spawn_at(data_dir: &Path, base: SocketAddr, shards: u16, extra: &[&str]) -> NodeProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_golem"))
            .arg("node")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(base.to_string())
            .arg("--shards")
            .arg(shards.to_string())
            .arg("--pin")
            .arg("off")
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn golem node");
        NodeProcess {
            child,
            base,
            shards,
            data_dir: data_dir.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Waits (bounded) until every shard of a spawned node answers a handshake.
    pub fn wait_listening(&mut self) {
        self.wait_ready();
    }

    /// The address of shard `i`.
    pub fn shard_addr(&self, i: u16) -> SocketAddr {
        SocketAddr::new(self.base.ip(), self.base.port() + i)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for shard in 0..self.shards {
            let addr = self.shard_addr(shard);
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    panic!("golem node exited during start-up: {status}");
                }
                if handshake_ok(addr) {
                    break;
                }
                assert!(Instant::now() < deadline, "node did not listen on {addr}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < deadline, "node did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the node again on the same ports and data.
    pub fn restart(&mut self) {
        assert!(!self.is_running(), "restart needs the old process stopped");
        let extra: Vec<&str> = self.extra.iter().map(|s| s.as_str()).collect();
        let n = NodeProcess::start_at(&self.data_dir.clone(), self.base, self.shards, &extra);
        drop(std::mem::replace(self, n));
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether a golem node answers a handshake at `addr` (a bare TCP connect
/// could reach the lingering listener of a process just killed).
fn handshake_ok(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION as u32,
        cluster_id: ClusterId(0),
        client_name: "test-ready".into(),
    };
    if stream
        .write_all(&encode_hello(RequestId(0), &hello).unwrap())
        .is_err()
    {
        return false;
    }
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).is_ok() && header[2] == FrameKind::HelloOk as u8
}

/// What the server sent back.
#[derive(Debug)]
pub enum Reply {
    Response(RequestId, Response),
    Goodbye(GolemError),
    HelloOk(HelloOk),
    /// The server closed the connection without a frame.
    Closed,
}

/// A raw protocol connection for tests.
pub struct RawConn {
    pub stream: TcpStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
    pending: Vec<u8>,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            decoder: FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX),
            buf: vec![0; 64 * 1024],
            pending: Vec::new(),
        }
    }

    /// Connects and completes the handshake.
    pub fn handshake(addr: SocketAddr) -> RawConn {
        let mut c = RawConn::connect(addr);
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION as u32,
            cluster_id: ClusterId(0),
            client_name: "test".into(),
        };
        c.send(&encode_hello(RequestId(0), &hello).unwrap());
        match c.recv() {
            Reply::HelloOk(_) => c,
            other => panic!("handshake failed: {other:?}"),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        // The server may already have closed: a write error is not a test failure here.
        let _ = self.stream.write_all(bytes);
    }

    /// Reads the next frame (or the close).
    pub fn recv(&mut self) -> Reply {
        loop {
            if !self.pending.is_empty() {
                let (used, frame) = self
                    .decoder
                    .push(&self.pending)
                    .expect("server sent a bad frame");
                self.pending.drain(..used);
                if let Some(f) = frame {
                    return match f.header.kind {
                        FrameKind::Response => Reply::Response(
                            f.header.request_id,
                            decode_response(&f.payload).unwrap(),
                        ),
                        FrameKind::Goodbye => Reply::Goodbye(decode_goodbye(&f.payload).unwrap()),
                        FrameKind::HelloOk => Reply::HelloOk(decode_hello_ok(&f.payload).unwrap()),
                        k => panic!("unexpected frame kind {k:?} from server"),
                    };
                }
                continue;
            }
            match self.stream.read(&mut self.buf) {
                Ok(0) => return Reply::Closed,
                Ok(n) => self.pending.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Reply::Closed,
                Err(e) => panic!("read from server: {e}"),
            }
        }
    }

    /// Sends one request (region 1, current epoch) and waits for its response.
    pub fn call(&mut self, id: u32, body: RequestBody) -> Response {
        self.send(&request_frame(id, body));
        match self.recv() {
            Reply::Response(rid, resp) => {
                assert_eq!(rid, RequestId(id));
                resp
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Reads until the server closes; returns the goodbye error, if any.
    pub fn expect_close(&mut self) -> Option<GolemError> {
        let mut goodbye = None;
        loop {
            match self.recv() {
                Reply::Goodbye(e) => goodbye = Some(e),
                Reply::Closed => return goodbye,
                Reply::Response(..) | Reply::HelloOk(_) => {}
            }
        }
    }
}

/// The epoch of the first region of a fresh node.
pub const FIRST_EPOCH: RegionEpoch = RegionEpoch {
    conf_ver: 1,
    version: 1,
};

/// An encoded request frame for region 1 at its first epoch.
pub fn request_frame(id: u32, body: RequestBody) -> Vec<u8> {
    encode_request(
        RequestId(id),
        &Request {
            region: RegionId(1),
            epoch: FIRST_EPOCH,
            timeout_ms: 10_000,
            body,
        },
    )
    .unwrap()
}

pub fn put(key: &[u8], value: &[u8]) -> RequestBody {
    RequestBody::Put {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

pub fn get(key: &[u8]) -> RequestBody {
    RequestBody::Get { key: key.to_vec() }
}

/// Asserts that the node serves a fresh client: handshake, put, get.
pub fn assert_serves(addr: SocketAddr) {
    let mut c = RawConn::handshake(addr);
    let key = format!("still-alive-{}", Instant::now().elapsed().as_nanos());
    assert_eq!(
        c.call(1, put(key.as_bytes(), b"yes")),
        Response::Ok(ResponseBody::Put)
    );
    assert_eq!(
        c.call(2, get(key.as_bytes())),
        Response::Ok(ResponseBody::Get {
            value: Some(b"yes".to_vec())
        })
    );
}
