//! Three nodes and a PD on loopback, the first region replicated on all
//! three: kill -9 of the leader's node during writes, then SIGSTOP of the
//! next leader's node for 10 s. Writes resume on a new leader, no
//! acknowledged write is lost, and a restarted node catches up (it serves
//! in a quorum after the other original nodes are gone one by one). And a
//! concurrent history of gets, puts and compare-and-swaps, recorded while
//! the leader's node is killed and restarted, is checked linearizable with
//! the simulator's checker. Every process is real and stopped by its pid;
//! the tests run one at a time (each starts a cluster).

mod common;

use common::cluster::{wait_listening, Cluster};
use golem_client::{Client, ClientConfig};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// One cluster at a time: two would share two CPUs with their clients.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn leader_failures_lose_no_acknowledged_write_and_writes_resume() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let led = c.wait_leader(&[], Duration::from_secs(30));

    // 0. Leadership moves on request (admin TransferLeader).
    let to = (led + 1) % 3;
    let to_store = c.store_of(to);
    rt.block_on(async {
        let cl = client(&c.addrs).await;
        cl.execute(
            golem_wire::RequestBody::TransferLeader {
                key: b"any".to_vec(),
                to_store: golem_wire::StoreId(to_store),
            },
            Duration::from_secs(10),
        )
        .await
        .expect("transfer leader");
    });
    let first = c.wait_leader(&[], Duration::from_secs(10));
    assert_eq!(first, to, "the requested store leads");

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
    // Writes go on with two nodes. A write whose attempt times out (the
    // restarted node may still be catching up) has an unknown outcome and
    // is not re-sent by the client: try again, bounded.
    rt.block_on(async {
        let cl = client(&c.addrs).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cl.put(b"after".to_vec(), b"ok".to_vec()).await {
                Ok(()) => break,
                Err(e) if e.is_outcome_unknown() && Instant::now() < deadline => continue,
                Err(e) => panic!("writes with two nodes: {e}"),
            }
        }
        assert_eq!(
            cl.get(b"after".to_vec()).await.unwrap(),
            Some(b"ok".to_vec())
        );
    });
}

/// Keys of the linearizability history, and clients per key space.
const LIN_KEYS: u64 = 3;
const LIN_CLIENTS: usize = 6;
/// Operations each client makes (the checker's search grows with the
/// history; a few hundred per key keep it well inside its budget).
const LIN_OPS_PER_CLIENT: usize = 120;

#[test]
fn a_history_with_a_leader_killed_in_the_middle_is_linearizable() {
    use golem_sim::check::linearizability::{check, Input, Operation, Output, Verdict};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start();
    let first = c.wait_leader(&[], Duration::from_secs(30));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let history: Arc<Mutex<Vec<(u64, Operation)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for client_no in 0..LIN_CLIENTS {
        let (history, done, addrs) = (history.clone(), done.clone(), c.addrs.clone());
        rt.spawn(async move {
            let cl = client(&addrs).await;
            // Values are unique per (client, op): value id = client << 32 | n.
            for n in 0..LIN_OPS_PER_CLIENT as u64 {
                let value = ((client_no as u64) << 32) | (n + 1);
                let key_no = (value.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) % LIN_KEYS;
                let key = format!("lin-{key_no}").into_bytes();
                let enc = |v: u64| v.to_le_bytes().to_vec();
                let dec = |b: Option<Vec<u8>>| {
                    b.map(|b| u64::from_le_bytes(b.as_slice().try_into().expect("8-byte value")))
                };
                let call = t0.elapsed().as_micros() as u64;
                let (input, result) = match n % 3 {
                    0 => (Input::Get, cl.get(key).await.map(|v| Output::Get(dec(v)))),
                    1 => (
                        Input::Put(value),
                        cl.put(key, enc(value)).await.map(|()| Output::Put),
                    ),
                    _ => {
                        // Expect the value this client last saw or wrote
                        // (often stale: both outcomes get exercised).
                        let expected = (n > 1).then(|| value - 1);
                        let exp_bytes = expected.map(enc);
                        let r = cl
                            .compare_and_swap(key, exp_bytes.as_deref(), Some(&enc(value)))
                            .await
                            .map(|r| Output::Cas {
                                swapped: r.swapped,
                                previous: dec(r.previous),
                            });
                        (
                            Input::Cas {
                                expected,
                                new: Some(value),
                            },
                            r,
                        )
                    }
                };
                let ret = match result {
                    Ok(out) => Some((t0.elapsed().as_micros() as u64, out)),
                    // May or may not have taken effect.
                    Err(e) if e.is_outcome_unknown() => None,
                    // Certainly had no effect.
                    Err(_) => continue,
                };
                let op = Operation {
                    client: client_no,
                    input,
                    call,
                    ret,
                };
                history.lock().unwrap().push((key_no, op));
            }
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    // Kill the leader's node once the clients are under way, restart it
    // a little later.
    while history.lock().unwrap().len() < LIN_CLIENTS * LIN_OPS_PER_CLIENT / 4 {
        std::thread::sleep(Duration::from_millis(5));
    }
    c.nodes[first].kill9();
    std::thread::sleep(Duration::from_millis(500));
    c.nodes[first].restart();
    wait_listening(c.addrs[first], Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(std::sync::atomic::Ordering::Relaxed) < LIN_CLIENTS {
        assert!(Instant::now() < deadline, "clients did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let history = history.lock().unwrap().clone();
    let mut unknown = 0;
    for key_no in 0..LIN_KEYS {
        let ops: Vec<Operation> = history
            .iter()
            .filter(|(k, _)| *k == key_no)
            .map(|(_, op)| op.clone())
            .collect();
        unknown += ops.iter().filter(|o| o.ret.is_none()).count();
        let verdict = check(&ops, None, 20_000_000);
        if verdict != Verdict::Linearizable {
            for (i, o) in ops.iter().enumerate() {
                eprintln!(
                    "{i:4} c{} {:?} call {} ret {:?}",
                    o.client, o.input, o.call, o.ret
                );
            }
        }
        assert_eq!(
            verdict,
            Verdict::Linearizable,
            "key lin-{key_no}: {} operations",
            ops.len()
        );
    }
    eprintln!(
        "linearizable: {} operations on {LIN_KEYS} keys by {LIN_CLIENTS} clients, {unknown} with unknown outcome, leader's node killed and restarted",
        history.len()
    );
}
