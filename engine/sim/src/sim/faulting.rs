//! Discrete faults of the fault phase: crashes (one node, or several at
//! once like a power cut), partitions (one node isolated, or a split into
//! two sides), and clock-rate changes.
//!
//! Owns the choice of fault (by the plan's weights) and its undoing
//! (restart, heal) after a random time. Half of single crashes pick a node
//! whose WAL sync is in flight or whose snapshot install is under way
//! when there is one; `nodes.rs` also aims crashes at snapshot installs
//! and removals (`CrashNode`). Invariants: only live
//! nodes crash;
//! a crash keeps the synced WAL records plus, in `torn_tail_percent` of
//! crashes, a random prefix of the unsynced ones (`TornTail::Records`) or
//! all of them (`TornTail::Batches`: the in-flight batch landed); a heal ends only the
//! partition it was queued for.

use super::{Phase, Sim};
use crate::config::TornTail;
use crate::event::Event;
use crate::faults::around;
use rand::seq::SliceRandom;
use rand::Rng;

/// How long a crashed node stays down.
const DOWN_MS_MIN: u64 = 50;
const DOWN_MS_MAX: u64 = 2_000;
/// How long a partition lasts.
const PARTITION_MS_MIN: u64 = 100;
const PARTITION_MS_MAX: u64 = 3_000;

impl Sim {
    pub(super) fn on_fault(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        let p = &self.plan;
        let weights = [
            p.crash_weight,
            p.crash_many_weight,
            p.isolate_weight,
            p.split_weight,
            p.skew_weight,
        ];
        let mut x = self.rng.gen_range(0..p.weight_total());
        let mut kind = 0;
        while x >= weights[kind] {
            x -= weights[kind];
            kind += 1;
        }
        match kind {
            0 => {
                // Half the time, a node in the middle of a WAL sync: the
                // window where durability bugs live.
                let syncing: Vec<usize> = self
                    .up_nodes()
                    .into_iter()
                    .filter(|&n| {
                        self.nodes[n].sync_in_flight.is_some() || self.nodes[n].is_installing()
                    })
                    .collect();
                let pool = if !syncing.is_empty() && self.rng.gen_bool(0.5) {
                    syncing
                } else {
                    self.up_nodes()
                };
                if let Some(&n) = pool.choose(&mut self.rng) {
                    self.crash(n);
                }
            }
            1 => {
                let mut up = self.up_nodes();
                if up.len() >= 2 {
                    up.shuffle(&mut self.rng);
                    let k = self.rng.gen_range(2..=up.len());
                    for &n in &up[..k] {
                        self.crash(n);
                    }
                }
            }
            2 | 3 => {
                let mut all: Vec<usize> = (0..self.nodes.len()).collect();
                all.shuffle(&mut self.rng);
                let k = if kind == 2 {
                    1
                } else {
                    self.rng.gen_range(1..=all.len() / 2)
                };
                let groups = [all[..k].to_vec(), all[k..].to_vec()];
                self.trace(|| format!("partition {groups:?}"));
                self.net.partition(&groups);
                self.partition_id += 1;
                self.stats.partitions += 1;
                let heal = self.rng.gen_range(PARTITION_MS_MIN..=PARTITION_MS_MAX);
                self.q.after(
                    heal,
                    Event::HealPartition {
                        id: self.partition_id,
                    },
                );
            }
            _ => {
                let n = self.rng.gen_range(0..self.nodes.len());
                self.nodes[n].tick_ms = self.skewed_tick_ms();
                self.trace(|| format!("node {n} ticks every {} ms", self.nodes[n].tick_ms));
            }
        }
        let next = around(&mut self.rng, self.plan.fault_interval_ms_mean);
        self.q.after(next, Event::Fault);
    }

    /// A crash aimed at a moment (mid snapshot install, around a
    /// removal's tombstone), in the fault phase only.
    pub(super) fn on_crash_node(&mut self, node: usize, inc: u64) {
        let n = &self.nodes[node];
        if self.phase == Phase::Faults && n.up && n.incarnation == inc {
            self.stats.targeted_crashes += 1;
            self.crash(node);
        }
    }

    fn up_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&n| self.nodes[n].up)
            .collect()
    }

    fn crash(&mut self, node: usize) {
        let n = &self.nodes[node];
        let unsynced = n.wal.len() - n.wal.durable();
        let tail = if self.rng.gen_range(0..100) < self.plan.torn_tail_percent {
            match self.cfg.torn_tail {
                TornTail::Records => self.rng.gen_range(0..=unsynced),
                TornTail::Batches => unsynced,
            }
        } else {
            0
        };
        self.trace(|| {
            format!("node {node} crashes, keeping {tail} of {unsynced} unsynced records")
        });
        self.nodes[node].crash(tail);
        self.stats.crashes += 1;
        let down = self.rng.gen_range(DOWN_MS_MIN..=DOWN_MS_MAX);
        self.q.after(down, Event::Restart { node });
    }
}
