//! A small in-test GolemDB server: tokio, the real protocol (handshake,
//! pipelined requests answered out of order), a `BTreeMap` behind it, and a
//! script of injected faults consumed one per request.
#![allow(dead_code)] // each test binary uses a different subset

use golem_client::{ClientConfig, RetryPolicy};
use golem_wire::codec::{
    decode_hello, decode_request, encode_goodbye, encode_hello_ok, encode_response,
};
use golem_wire::frame::FrameKind;
use golem_wire::limits::FRAME_PAYLOAD_BYTES_MAX;
use golem_wire::*;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// What the server does with the next request.
#[derive(Clone, Debug)]
pub enum Action {
    /// Answer with this error; apply nothing.
    Fail(GolemError),
    /// Answer normally after this many milliseconds.
    Delay(u64),
    /// Never answer.
    Silent,
    /// Close the connection without applying or answering.
    Drop,
    /// Apply, then close the connection without answering.
    DropAfterApply,
    /// Send a `Goodbye` with this error and close.
    Goodbye(GolemError),
}

/// What the server saw.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub connections: u64,
    pub requests: u64,
    pub in_flight: usize,
    pub in_flight_peak: usize,
    /// (region, epoch, operation) of every request, in arrival order.
    pub routed: Vec<(RegionId, RegionEpoch, &'static str)>,
}

#[derive(Default)]
pub struct State {
    pub data: BTreeMap<Vec<u8>, Vec<u8>>,
    pub script: VecDeque<Action>,
    pub stats: Stats,
    /// The server's cluster; a client expecting another one is refused.
    pub cluster_id: u64,
    /// Requests on keys with this prefix are answered after this delay (ms).
    pub slow_prefix: Option<(Vec<u8>, u64)>,
    /// Every request is answered after this delay (ms).
    pub delay_ms: u64,
    /// The writers of every connection accepted so far.
    pub conns: Vec<mpsc::UnboundedSender<Out>>,
}

#[derive(Clone)]
pub struct FakeServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl FakeServer {
    /// Starts on the current tokio runtime.
    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = FakeServer {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                cluster_id: 42,
                ..State::default()
            })),
        };
        tokio::spawn(accept_loop(listener, server.state.clone()));
        server
    }

    /// Starts on its own thread and runtime (for the blocking client).
    pub fn start_in_thread() -> FakeServer {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = FakeServer::start().await;
                tx.send(server).unwrap();
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    }

    pub fn script(&self, actions: impl IntoIterator<Item = Action>) {
        self.state.lock().unwrap().script.extend(actions);
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap().stats.clone()
    }

    pub fn value(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.state.lock().unwrap().data.get(key).cloned()
    }

    /// Says goodbye (idle timeout) on every connection and closes it.
    pub fn close_all(&self) {
        for conn in self.state.lock().unwrap().conns.drain(..) {
            let bye = encode_goodbye(RequestId(0), &GolemError::Timeout).unwrap();
            let _ = conn.send(Out::Frame(bye));
            let _ = conn.send(Out::Close);
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap());
    }

    /// A leader hint pointing at this server.
    pub fn location(&self, store: u64) -> PeerLocation {
        PeerLocation {
            peer: PeerId(store),
            store: StoreId(store),
            shard: ShardId(0),
            addr: self.addr.to_string(),
        }
    }

    /// A client configuration for this server: deterministic backoff
    /// (5, 10, 20, 40 ms…), 5 attempts, 2 s deadline.
    pub fn config(&self) -> ClientConfig {
        ClientConfig {
            cluster_id: ClusterId(42),
            connect_timeout_ms: 1_000,
            request_timeout_ms: 2_000,
            retry: RetryPolicy {
                attempts_max: 5,
                backoff_initial_ms: 10,
                backoff_max_ms: 100,
                jitter: false,
            },
            client_name: "test".into(),
            ..ClientConfig::new([self.addr])
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        state.lock().unwrap().stats.connections += 1;
        tokio::spawn(serve(stream, state.clone()));
    }
}

pub enum Out {
    Frame(Vec<u8>),
    Close,
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    state.lock().unwrap().conns.push(tx.clone());
    let closed = Arc::new(Notify::new());
    let closed_w = closed.clone();
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Frame(f) => {
                    if wr.write_all(&f).await.is_err() {
                        break;
                    }
                }
                Out::Close => break,
            }
        }
        let _ = wr.shutdown().await;
        closed_w.notify_one();
    });
    let mut decoder = FrameDecoder::new(FRAME_PAYLOAD_BYTES_MAX);
    let mut buf = vec![0u8; 64 * 1024];
    let mut greeted = false;
    loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = closed.notified() => return,
        };
        let mut input = &buf[..n];
        while !input.is_empty() {
            let (used, frame) = decoder.push(input).expect("the client sends valid frames");
            input = &input[used..];
            let Some(frame) = frame else { continue };
            if !greeted {
                assert_eq!(frame.header.kind, FrameKind::Hello);
                let hello = decode_hello(&frame.payload).unwrap();
                let ours = state.lock().unwrap().cluster_id;
                if hello.cluster_id.0 != 0 && hello.cluster_id.0 != ours {
                    let why = GolemError::ClusterMismatch {
                        server: ours,
                        client: hello.cluster_id.0,
                    };
                    let _ = tx.send(Out::Frame(encode_goodbye(RequestId(0), &why).unwrap()));
                    let _ = tx.send(Out::Close);
                    return;
                }
                let ok = HelloOk {
                    protocol_version: PROTOCOL_VERSION.into(),
                    cluster_id: ClusterId(ours),
                    store: StoreId(1),
                    shard: ShardId(0),
                    shard_count: 1,
                };
                let _ = tx.send(Out::Frame(encode_hello_ok(RequestId(0), &ok).unwrap()));
                greeted = true;
                continue;
            }
            assert_eq!(frame.header.kind, FrameKind::Request);
            let request = decode_request(&frame.payload).unwrap();
            request
                .body
                .validate()
                .expect("the client validates requests");
            handle(frame.header.request_id, request, &state, &tx);
        }
    }
}

fn handle(
    id: RequestId,
    request: Request,
    state: &Arc<Mutex<State>>,
    tx: &mpsc::UnboundedSender<Out>,
) {
    let (action, delay_ms) = {
        let mut s = state.lock().unwrap();
        s.stats.requests += 1;
        s.stats.in_flight += 1;
        s.stats.in_flight_peak = s.stats.in_flight_peak.max(s.stats.in_flight);
        s.stats
            .routed
            .push((request.region, request.epoch, request.body.name()));
        let slow = match (&s.slow_prefix, first_key(&request.body)) {
            (Some((prefix, ms)), Some(key)) if key.starts_with(prefix) => *ms,
            _ => 0,
        };
        (s.script.pop_front(), s.delay_ms + slow)
    };
    let state = state.clone();
    let tx = tx.clone();
    tokio::spawn(async move {
        let extra = match &action {
            Some(Action::Delay(ms)) => *ms,
            _ => 0,
        };
        if delay_ms + extra > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms + extra)).await;
        }
        let done = |state: &Mutex<State>| state.lock().unwrap().stats.in_flight -= 1;
        match action {
            None | Some(Action::Delay(_)) => {
                let response = apply(&mut state.lock().unwrap().data, &request.body);
                done(&state);
                let _ = tx.send(Out::Frame(encode_response(id, &response).unwrap()));
            }
            Some(Action::Fail(e)) => {
                done(&state);
                let _ = tx.send(Out::Frame(encode_response(id, &Response::Err(e)).unwrap()));
            }
            Some(Action::Silent) => {}
            Some(Action::Drop) => {
                done(&state);
                let _ = tx.send(Out::Close);
            }
            Some(Action::DropAfterApply) => {
                apply(&mut state.lock().unwrap().data, &request.body);
                done(&state);
                let _ = tx.send(Out::Close);
            }
            Some(Action::Goodbye(e)) => {
                done(&state);
                let _ = tx.send(Out::Frame(encode_goodbye(RequestId(0), &e).unwrap()));
                let _ = tx.send(Out::Close);
            }
        }
    });
}

fn first_key(body: &RequestBody) -> Option<&[u8]> {
    match body {
        RequestBody::Get { key }
        | RequestBody::Put { key, .. }
        | RequestBody::Delete { key }
        | RequestBody::CompareAndSwap { key, .. }
        | RequestBody::TransferLeader { key, .. }
        | RequestBody::ChangePeers { key, .. }
        | RequestBody::Split { key, .. } => Some(key),
        RequestBody::Scan { start, .. } => Some(start),
        RequestBody::BatchGet { keys } => keys.first().map(Vec::as_slice),
        RequestBody::BatchWrite { ops } => ops.first().map(WriteOp::key),
    }
}

/// Executes a request against the map, like a single-region node would.
pub fn apply(data: &mut BTreeMap<Vec<u8>, Vec<u8>>, body: &RequestBody) -> Response {
    Response::Ok(match body {
        // A single-region fake node is always the leader.
        RequestBody::TransferLeader { .. } => ResponseBody::TransferLeader,
        RequestBody::ChangePeers { .. } | RequestBody::Split { .. } => {
            return Response::Err(golem_wire::GolemError::invalid(
                "a fake single-region node has no replicas to change",
            ))
        }
        RequestBody::Get { key } => ResponseBody::Get {
            value: data.get(key).cloned(),
        },
        RequestBody::Put { key, value } => {
            data.insert(key.clone(), value.clone());
            ResponseBody::Put
        }
        RequestBody::Delete { key } => {
            data.remove(key);
            ResponseBody::Delete
        }
        RequestBody::Scan {
            start,
            end,
            limit,
            reverse,
        } => {
            let upper = if end.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(end.clone())
            };
            let range = data.range((Bound::Included(start.clone()), upper));
            let all: Vec<KvPair> = if *reverse {
                range
                    .rev()
                    .map(|(k, v)| KvPair {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect()
            } else {
                range
                    .map(|(k, v)| KvPair {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect()
            };
            let more = all.len() > *limit as usize;
            ResponseBody::Scan {
                pairs: all.into_iter().take(*limit as usize).collect(),
                more,
            }
        }
        RequestBody::BatchGet { keys } => ResponseBody::BatchGet {
            values: keys.iter().map(|k| data.get(k).cloned()).collect(),
        },
        RequestBody::BatchWrite { ops } => {
            for op in ops {
                match op {
                    WriteOp::Put { key, value } => {
                        data.insert(key.clone(), value.clone());
                    }
                    WriteOp::Delete { key } => {
                        data.remove(key);
                    }
                }
            }
            ResponseBody::BatchWrite
        }
        RequestBody::CompareAndSwap {
            key,
            expected,
            new_value,
        } => {
            let previous = data.get(key).cloned();
            let swapped = previous == *expected;
            if swapped {
                match new_value {
                    Some(v) => data.insert(key.clone(), v.clone()),
                    None => data.remove(key),
                };
            }
            ResponseBody::CompareAndSwap { swapped, previous }
        }
    })
}
