//! The simulated network between nodes: delay, drop, duplication (and so
//! reordering), and partitions.
//!
//! Owns the set of cut links and the per-message fault rates. It decides
//! how many copies of a message arrive and when; the simulator queues
//! them. Partitions are checked when a message is sent and again when it
//! arrives, so a link cut while a message is in flight loses it.
//!
//! Invariants: a message between two nodes on different sides of a cut is
//! never delivered; delays lie in `[delay_ms_min, delay_ms_max]`; with
//! zero drop and duplicate rates every message sent on an uncut link
//! arrives exactly once.

use rand::Rng;
use std::collections::BTreeSet;

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Network {
    /// Unordered node pairs `(a, b)`, `a < b`, that cannot talk.
    cut: BTreeSet<(usize, usize)>,
    pub drop_percent: u32,
    pub dup_percent: u32,
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Network {
    /// A network with no cut link and the given rates and delays.
    pub fn new(
        drop_percent: u32,
        dup_percent: u32,
        delay_ms_min: u64,
        delay_ms_max: u64,
    ) -> Network {
        Network {
            cut: BTreeSet::new(),
            drop_percent,
            dup_percent,
            delay_ms_min,
            delay_ms_max,
        }
    }

    /// Whether `a` and `b` cannot talk.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.cut.contains(&pair(a, b))
    }

    /// Cuts every link between nodes of different `groups` (replacing any
    /// earlier partition).
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.cut.clear();
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for &a in g {
                    for &b in h {
                        self.cut.insert(pair(a, b));
                    }
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether any link is cut.
    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }

    /// One delay draw.
    pub fn delay_ms(&self, rng: &mut impl Rng) -> u64 {
        rng.gen_range(self.delay_ms_min..=self.delay_ms_max)
    }

    /// The delays of the copies of one message from `from` to `to` that
    /// will arrive: none (dropped or cut), one, or two (duplicated).
    pub fn plan(&self, rng: &mut impl Rng, from: usize, to: usize) -> Vec<u64> {
        if self.is_cut(from, to) || rng.gen_range(0..100) < self.drop_percent {
            return Vec::new();
        }
        let mut out = vec![self.delay_ms(rng)];
        if rng.gen_range(0..100) < self.dup_percent {
            out.push(self.delay_ms(rng));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn partitions_cut_links_between_groups_only() {
        let mut n = Network::default();
        n.partition(&[vec![0, 1], vec![2, 3, 4]]);
        assert!(n.is_cut(0, 2) && n.is_cut(4, 1));
        assert!(!n.is_cut(0, 1) && !n.is_cut(2, 4));
        n.partition(&[vec![2], vec![0, 1, 3, 4]]);
        assert!(!n.is_cut(0, 2) || n.is_cut(2, 0));
        assert!(n.is_cut(2, 3) && !n.is_cut(0, 4));
        n.heal();
        assert!(!n.is_partitioned());
    }

    #[test]
    fn a_clean_network_delivers_exactly_once_within_the_delays() {
        let n = Network::new(0, 0, 2, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let p = n.plan(&mut rng, 0, 1);
            assert_eq!(p.len(), 1);
            assert!((2..=5).contains(&p[0]));
        }
        let lossy = Network::new(50, 50, 2, 5);
        let counts: Vec<usize> = (0..1000)
            .map(|_| lossy.plan(&mut rng, 0, 1).len())
            .collect();
        assert!(counts.contains(&0) && counts.contains(&1) && counts.contains(&2));
    }
}
