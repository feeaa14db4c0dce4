//! Three members in one thread through the seams: in-memory logs, a
//! message list for a network, a manual clock. Elections, writes, a leader
//! crash that loses nothing synced, and timestamps that only grow.

use super::seams::{Env, MemLog, VecOutbox};
use super::*;
use crate::consensus::convert::message_from_wire;
use std::cell::Cell;
use std::rc::Rc;

#[derive(Clone)]
struct ManualEnv {
    now: Rc<Cell<u64>>,
    seed: u64,
}

impl Env for ManualEnv {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn random_u64(&mut self) -> u64 {
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.seed
    }
}

type SimDriver = Driver<MemLog, VecOutbox, ManualEnv>;

struct Sim {
    members: Vec<Option<SimDriver>>,
    env: ManualEnv,
}

fn config(id: u64) -> PdConfig {
    let mut cfg = PdConfig::single("/nonexistent".into(), "127.0.0.1:1".parse().unwrap());
    cfg.id = PdMemberId(id);
    cfg.peers = (1..=3)
        .map(|i| (PdMemberId(i), format!("127.0.0.1:{i}").parse().unwrap()))
        .collect();
    cfg.snapshot_entries = 20;
    cfg.tso_window_ms = 50;
    cfg
}

impl Sim {
    fn new() -> Sim {
        let env = ManualEnv {
            now: Rc::new(Cell::new(1_000_000)),
            seed: 7,
        };
        let members = (1..=3)
            .map(|id| Some(Sim::start(id, Recovered::default(), &env)))
            .collect();
        Sim { members, env }
    }

    fn start(id: u64, rec: Recovered, env: &ManualEnv) -> SimDriver {
        let log = MemLog::from_recovered(rec.clone());
        Driver::recover(
            config(id),
            log,
            rec,
            VecOutbox::default(),
            env.clone(),
            Arc::new(Shared::default()),
        )
        .unwrap()
    }

    /// One tick of 10 ms for everyone, then deliver every message.
    fn step(&mut self) {
        self.env.now.set(self.env.now.get() + 10);
        for m in self.members.iter_mut().flatten() {
            m.tick();
            m.pass();
        }
        self.deliver();
    }

    fn deliver(&mut self) {
        for _ in 0..10 {
            let mut sent = Vec::new();
            for m in self.members.iter_mut().flatten() {
                sent.append(&mut m.outbox_mut().0);
            }
            if sent.is_empty() {
                return;
            }
            for (to, msg) in sent {
                if let Some(Some(m)) = self.members.get_mut(to as usize - 1) {
                    m.step_raft(vec![message_from_wire(&msg).unwrap()]);
                }
            }
            for m in self.members.iter_mut().flatten() {
                m.pass();
            }
        }
    }

    fn leader(&mut self) -> usize {
        for _ in 0..500 {
            if let Some(i) = self
                .members
                .iter()
                .position(|m| m.as_ref().is_some_and(|m| m.serves()))
            {
                return i;
            }
            self.step();
        }
        panic!("no leader after 500 ticks");
    }

    fn call(&mut self, body: PdRequestBody) -> PdResponse {
        let i = self.leader();
        let (tx, mut rx) = oneshot::channel();
        let deadline_ms = self.env.now_ms() + 10_000;
        let m = self.members[i].as_mut().unwrap();
        m.on_client(body, deadline_ms, tx);
        m.pass();
        for _ in 0..200 {
            if let Ok(r) = rx.try_recv() {
                return r;
            }
            self.deliver();
            self.step();
        }
        panic!("no answer");
    }

    fn alloc(&mut self) -> u64 {
        match self.call(PdRequestBody::AllocIds { count: 3 }) {
            PdResponse::Ok(PdResponseBody::AllocIds { first, .. }) => first,
            other => panic!("{other:?}"),
        }
    }

    fn tso(&mut self) -> u64 {
        loop {
            match self.call(PdRequestBody::Tso { count: 1 }) {
                PdResponse::Ok(PdResponseBody::Tso { last, .. }) => return last.0,
                PdResponse::Err(GolemError::ServerBusy { .. }) => self.step(),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn three_members_in_one_thread_survive_a_leader_crash() {
    let mut sim = Sim::new();
    let mut last_id = 0;
    let mut last_ts = 0;
    for round in 0..4 {
        for _ in 0..15 {
            let id = sim.alloc();
            assert!(id > last_id, "round {round}: id {id} after {last_id}");
            last_id = id + 2;
            let ts = sim.tso();
            assert!(ts > last_ts, "round {round}: timestamp went back");
            last_ts = ts;
        }
        // Crash the leader: it keeps only what it synced, then restarts.
        let i = sim.leader();
        let rec = sim.members[i].take().unwrap().log().recovered();
        for _ in 0..5 {
            sim.step();
        }
        sim.members[i] = Some(Sim::start(i as u64 + 1, rec, &sim.env));
    }
    // Every member converges on the same applied state.
    for _ in 0..100 {
        sim.step();
    }
    let ids: Vec<u64> = sim
        .members
        .iter()
        .flatten()
        .map(|m| m.state().id_next())
        .collect();
    assert!(ids.iter().all(|&n| n == ids[0] && n > last_id), "{ids:?}");
    // The logs were compacted along the way (snapshots of 20 entries).
    assert!(sim
        .members
        .iter()
        .flatten()
        .all(|m| m.log().recovered().snapshot.is_some()));
}
