//! Retry policy and backoff schedule.
//!
//! Owns the exponential backoff with "equal jitter": the `n`-th wait is drawn
//! from `[cap/2, cap]` where `cap = min(backoff_max_ms, backoff_initial_ms ·
//! 2ⁿ)`. Randomness is injected ([`RandomSource`]); there is no global RNG.
//! Without jitter the schedule is deterministic: every wait is exactly
//! `cap/2` (halving the cap).
//!
//! Invariants: a wait never exceeds `backoff_max_ms` (a server's
//! `retry_after_ms` may ask for more and is honoured by the caller); the cap
//! never overflows.

use std::time::Duration;

/// How a request is retried after a retryable failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included (0 is treated as 1).
    pub attempts_max: u32,
    /// Cap of the first backoff, in milliseconds.
    pub backoff_initial_ms: u64,
    /// Largest cap of any backoff, in milliseconds.
    pub backoff_max_ms: u64,
    /// Draw each wait at random in `[cap/2, cap]`; when false, wait exactly
    /// `cap/2` (deterministic).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // The deadline is what bounds a call; the attempt cap only stops a
        // runaway loop. It must outlast a leader failover (an election
        // timeout or two, while every attempt may fail fast against the
        // dead node or a follower naming it): 10 attempts did not
        // (hibernation test).
        RetryPolicy {
            attempts_max: 100,
            backoff_initial_ms: 10,
            backoff_max_ms: 1_000,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retries() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 1,
            ..RetryPolicy::default()
        }
    }

    /// A fresh backoff schedule for one request.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            cap_ms: self.backoff_initial_ms.min(self.backoff_max_ms),
            max_ms: self.backoff_max_ms,
            jitter: self.jitter,
        }
    }
}

/// A source of random numbers, injected so that the core stays deterministic
/// under test.
pub trait RandomSource {
    /// The next pseudo-random number.
    fn next_u64(&mut self) -> u64;
}

/// A small, fast, seedable PRNG (xorshift64*). Not cryptographic.
#[derive(Clone, Debug)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A generator from `seed` (0 is replaced by a fixed non-zero constant).
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64 {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// A generator seeded from the standard library's per-process random
    /// hash keys and the clock; for front ends, never for tests.
    pub fn from_entropy() -> XorShift64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        XorShift64::new(h.finish())
    }
}

impl RandomSource for XorShift64 {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The backoff schedule of one request.
#[derive(Clone, Debug)]
pub struct Backoff {
    cap_ms: u64,
    max_ms: u64,
    jitter: bool,
}

impl Backoff {
    /// The next wait; doubles the cap for the one after.
    pub fn next_delay(&mut self, rng: &mut dyn RandomSource) -> Duration {
        let cap = self.cap_ms;
        self.cap_ms = cap.saturating_mul(2).min(self.max_ms);
        let half = cap / 2;
        let spread = cap - half;
        let extra = if self.jitter && spread > 0 {
            rng.next_u64() % (spread + 1)
        } else {
            0
        };
        Duration::from_millis(half + extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_schedule_halves_a_doubling_cap() {
        let policy = RetryPolicy {
            attempts_max: 10,
            backoff_initial_ms: 10,
            backoff_max_ms: 70,
            jitter: false,
        };
        let mut b = policy.backoff();
        let mut rng = XorShift64::new(1);
        let got: Vec<u64> = (0..6)
            .map(|_| b.next_delay(&mut rng).as_millis() as u64)
            .collect();
        assert_eq!(got, vec![5, 10, 20, 35, 35, 35]);
    }

    #[test]
    fn jittered_waits_stay_within_half_cap_and_cap() {
        let policy = RetryPolicy {
            attempts_max: 10,
            backoff_initial_ms: 8,
            backoff_max_ms: 100,
            jitter: true,
        };
        for seed in 1..50 {
            let mut rng = XorShift64::new(seed);
            let mut b = policy.backoff();
            let mut cap = 8u64;
            for _ in 0..8 {
                let d = b.next_delay(&mut rng).as_millis() as u64;
                assert!(
                    d >= cap / 2 && d <= cap,
                    "seed {seed}: {d} not in [{}, {cap}]",
                    cap / 2
                );
                cap = (cap * 2).min(100);
            }
        }
    }

    #[test]
    fn huge_caps_do_not_overflow() {
        let policy = RetryPolicy {
            attempts_max: 100,
            backoff_initial_ms: u64::MAX / 2,
            backoff_max_ms: u64::MAX,
            jitter: true,
        };
        let mut b = policy.backoff();
        let mut rng = XorShift64::new(7);
        for _ in 0..5 {
            b.next_delay(&mut rng);
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = XorShift64::new(42);
        let mut b = XorShift64::new(42);
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(XorShift64::new(0).next_u64(), 0);
    }
}
