//! Request distributions after YCSB's generators: uniform, zipfian (the
//! scrambled variant, as YCSB's `requestdistribution=zipfian` uses), and
//! latest (skewed towards the most recently inserted record).
//!
//! Owns the arithmetic only: no clock, no I/O, randomness passed in, so the
//! tests can check the shapes from a seed. Invariant: `KeyChooser::next(rng,
//! limit)` always returns a key number below `limit` (the records known to
//! exist), whatever the distribution.

use rand::Rng;

/// YCSB's zipfian constant (theta).
pub const ZIPFIAN_CONSTANT: f64 = 0.99;
/// Items of the scrambled zipfian's underlying generator (YCSB's value).
const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;
/// zeta(SCRAMBLED_ITEM_COUNT, 0.99), precomputed by YCSB.
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;
/// Draws before a rejection-sampled key falls back to a modulo.
const REJECTION_DRAWS_MAX: u32 = 64;

/// YCSB's 64-bit FNV-1a over the 8 bytes of `v`, made non-negative like
/// Java's `Math.abs`.
pub fn fnv64(mut v: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 1_099_511_628_211;
    let mut h = OFFSET_BASIS;
    for _ in 0..8 {
        h ^= v & 0xff;
        h = h.wrapping_mul(PRIME);
        v >>= 8;
    }
    (h as i64).unsigned_abs()
}

/// Which distribution picks the records of reads, updates and scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    Uniform,
    Zipfian,
    Latest,
}

impl std::str::FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Distribution::Uniform),
            "zipfian" => Ok(Distribution::Zipfian),
            "latest" => Ok(Distribution::Latest),
            other => Err(format!(
                "unknown distribution {other:?} (uniform, zipfian, latest)"
            )),
        }
    }
}

/// YCSB's ZipfianGenerator: popular items are the small ones (0 is the most
/// popular). The item count may grow between draws (zeta is extended
/// incrementally, as YCSB does).
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2theta: f64,
    zetan: f64,
    eta: f64,
}

fn zeta(from: u64, to: u64, theta: f64, initial: f64) -> f64 {
    (from..to).fold(initial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

impl Zipfian {
    /// Items `0..items` (at least one), with YCSB's constant.
    pub fn new(items: u64) -> Zipfian {
        let items = items.max(1);
        let zetan = zeta(0, items, ZIPFIAN_CONSTANT, 0.0);
        Zipfian::with_zetan(items, zetan)
    }

    fn with_zetan(items: u64, zetan: f64) -> Zipfian {
        let theta = ZIPFIAN_CONSTANT;
        let zeta2theta = zeta(0, 2, theta, 0.0);
        let mut z = Zipfian {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2theta,
            zetan,
            eta: 0.0,
        };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2theta / self.zetan)
    }

    /// One item of `0..items`.
    pub fn next(&mut self, rng: &mut impl Rng) -> u64 {
        self.next_of(rng, self.items)
    }

    /// One item of `0..items`, first growing (or resetting) zeta to `items`.
    pub fn next_of(&mut self, rng: &mut impl Rng, items: u64) -> u64 {
        let items = items.max(1);
        if items != self.items {
            self.zetan = if items > self.items {
                zeta(self.items, items, self.theta, self.zetan)
            } else {
                zeta(0, items, self.theta, 0.0)
            };
            self.items = items;
            self.eta = self.eta_for(items);
        }
        let u: f64 = rng.gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(items - 1);
        }
        let v = (items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(items - 1)
    }
}

/// YCSB's ScrambledZipfianGenerator: zipfian popularity, but the popular
/// items are spread over the key space by a hash instead of clustered.
#[derive(Clone, Debug)]
pub struct ScrambledZipfian {
    inner: Zipfian,
    items: u64,
}

impl ScrambledZipfian {
    /// Items `0..items` (at least one).
    pub fn new(items: u64) -> ScrambledZipfian {
        ScrambledZipfian {
            inner: Zipfian::with_zetan(SCRAMBLED_ITEM_COUNT, SCRAMBLED_ZETAN),
            items: items.max(1),
        }
    }

    /// One item of `0..items`.
    pub fn next(&mut self, rng: &mut impl Rng) -> u64 {
        fnv64(self.inner.next(rng)) % self.items
    }
}

/// Picks the key number of each read, update and scan.
#[derive(Clone, Debug)]
pub enum KeyChooser {
    Uniform,
    /// Over the records at load plus the inserts expected during the run;
    /// draws beyond the records known to exist are redrawn (as YCSB does).
    Zipfian(ScrambledZipfian),
    /// `newest - zipfian(count)`: the newest records are the most popular.
    Latest(Zipfian),
}

impl KeyChooser {
    /// A chooser for `records` initial records and `expected_inserts` more.
    pub fn new(dist: Distribution, records: u64, expected_inserts: u64) -> KeyChooser {
        match dist {
            Distribution::Uniform => KeyChooser::Uniform,
            Distribution::Zipfian => KeyChooser::Zipfian(ScrambledZipfian::new(
                records.saturating_add(expected_inserts),
            )),
            Distribution::Latest => KeyChooser::Latest(Zipfian::new(records)),
        }
    }

    /// A key number in `0..limit` (`limit` ≥ 1: the records that exist).
    pub fn next(&mut self, rng: &mut impl Rng, limit: u64) -> u64 {
        let limit = limit.max(1);
        match self {
            KeyChooser::Uniform => rng.gen_range(0..limit),
            KeyChooser::Zipfian(z) => {
                let mut k = z.next(rng);
                for _ in 0..REJECTION_DRAWS_MAX {
                    if k < limit {
                        return k;
                    }
                    k = z.next(rng);
                }
                k % limit
            }
            KeyChooser::Latest(z) => limit - 1 - z.next_of(rng, limit),
        }
    }
}

/// Picks scan lengths in `1..=max`.
#[derive(Clone, Debug)]
pub enum LengthChooser {
    Uniform(u32),
    Zipfian(u32, Zipfian),
}

impl LengthChooser {
    pub fn new(dist: Distribution, max: u32) -> LengthChooser {
        let max = max.max(1);
        match dist {
            Distribution::Zipfian => LengthChooser::Zipfian(max, Zipfian::new(u64::from(max))),
            _ => LengthChooser::Uniform(max),
        }
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> u32 {
        match self {
            LengthChooser::Uniform(max) => rng.gen_range(1..=*max),
            LengthChooser::Zipfian(max, z) => (z.next(rng) as u32 + 1).min(*max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, SeedableRng};

    const DRAWS: usize = 200_000;

    fn counts(chooser: &mut KeyChooser, limit: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut c = vec![0u64; limit as usize];
        for _ in 0..DRAWS {
            let k = chooser.next(&mut rng, limit);
            assert!(k < limit, "key {k} out of 0..{limit}");
            c[k as usize] += 1;
        }
        c
    }

    /// Share of draws that hit the `top` most drawn keys.
    fn top_share(mut c: Vec<u64>, top: usize) -> f64 {
        c.sort_unstable_by(|a, b| b.cmp(a));
        c[..top].iter().sum::<u64>() as f64 / DRAWS as f64
    }

    #[test]
    fn zipfian_is_skewed_towards_item_zero() {
        let mut z = Zipfian::new(1000);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut c = vec![0u64; 1000];
        for _ in 0..DRAWS {
            c[z.next(&mut rng) as usize] += 1;
        }
        // P(0) = 1/zeta(1000, 0.99) ≈ 0.13; P(1) ≈ P(0)/2^0.99.
        let p0 = c[0] as f64 / DRAWS as f64;
        assert!((0.11..0.16).contains(&p0), "p0 {p0}");
        let ratio = c[0] as f64 / c[1] as f64;
        assert!((1.7..2.3).contains(&ratio), "p0/p1 {ratio}");
        assert!(c[0] > c[10] && c[10] > c[500], "monotone-ish tail");
    }

    #[test]
    fn scrambled_zipfian_is_skewed_but_scattered() {
        let mut chooser = KeyChooser::new(Distribution::Zipfian, 1000, 0);
        let c = counts(&mut chooser, 1000);
        // As in YCSB, the popularity comes from a zipfian over 10^10 items
        // folded onto the keys by a hash: the 10 hottest keys (1%) take
        // about zeta(10)/zeta(10^10) ≈ 11% of the draws (hash collisions
        // add a little); with uniform draws they would take about 1.2%.
        let hot = top_share(c.clone(), 10);
        assert!(hot > 0.10, "top 1% share {hot}");
        // Scrambled: the hottest key is not simply key 0 (hash-spread).
        let hottest = (0..c.len()).max_by_key(|&i| c[i]).unwrap_or(0);
        assert_ne!(hottest, 0, "hot keys are scattered by the hash");
        let mut uniform = KeyChooser::new(Distribution::Uniform, 1000, 0);
        let u = top_share(counts(&mut uniform, 1000), 10);
        assert!(u < 0.02, "uniform top 1% share {u}");
    }

    #[test]
    fn latest_prefers_the_newest_records_and_follows_inserts() {
        let mut chooser = KeyChooser::new(Distribution::Latest, 1000, 0);
        let c = counts(&mut chooser, 1000);
        assert!(c[999] > c[998] && c[998] > c[900], "newest first");
        let newest_share = c[990..].iter().sum::<u64>() as f64 / DRAWS as f64;
        assert!(newest_share > 0.3, "10 newest share {newest_share}");
        // After inserts, the new newest record becomes the hottest.
        let c = counts(&mut chooser, 1500);
        let hottest = (0..c.len()).max_by_key(|&i| c[i]).unwrap_or(0);
        assert_eq!(hottest, 1499);
        assert_eq!(c[1499..].len(), 1);
    }

    #[test]
    fn zipfian_rejects_keys_not_yet_inserted() {
        let mut chooser = KeyChooser::new(Distribution::Zipfian, 100, 10_000);
        let c = counts(&mut chooser, 100);
        assert!(c.iter().all(|&n| n > 0), "every existing key is reachable");
    }

    #[test]
    fn scan_lengths_stay_in_range() {
        let mut rng = SmallRng::seed_from_u64(3);
        for dist in [Distribution::Uniform, Distribution::Zipfian] {
            let mut l = LengthChooser::new(dist, 100);
            for _ in 0..10_000 {
                let n = l.next(&mut rng);
                assert!((1..=100).contains(&n), "{dist:?} length {n}");
            }
        }
    }

    #[test]
    fn fnv64_is_fnv1a_over_the_eight_bytes() {
        // Offset basis multiplied by the prime eight times, then |x| as i64.
        assert_eq!(fnv64(0), 6_284_781_860_667_377_211);
        assert_ne!(fnv64(1), fnv64(2));
    }
}
