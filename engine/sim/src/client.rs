//! Simulated clients: the workload (Put/Get/Delete/CAS on a small key
//! set), routing to the node a client believes leads the key's region,
//! retries, and timeouts.
//!
//! Owns each client's state: its one operation in flight, its routing
//! guesses, the values it last saw (CAS expectations come from them, so
//! many CASes can succeed), and its value counter (every written value is
//! unique to one write, which makes histories easy to check).
//!
//! Retry rule (what keeps histories sound): a client retries an operation
//! only after a definite refusal (nothing was proposed: not leader, busy,
//! node down); once an attempt was proposed and then failed, or timed
//! out, the operation's outcome is unknown and the client moves on.

use crate::config::ReadMode;
use crate::history::{KvInput, KvOutput};
use golem_wire::{RegionId, RequestBody, ResponseBody};
use rand::Rng;
use std::collections::BTreeMap;

/// The expected value of the compare-and-swap that serves a `Log` read:
/// no client ever writes it, so the CAS never swaps.
pub const LOG_READ_SENTINEL: &[u8] = b"\xff\xfelog-read-sentinel";

/// An operation in flight.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// Unique per client.
    pub op: u64,
    pub key: usize,
    pub input: KvInput,
    /// Event counter at the first attempt.
    pub call: u64,
    pub deadline_ms: u64,
    /// The node of the current attempt.
    pub node: usize,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Client {
    pub id: usize,
    pub in_flight: Option<InFlight>,
    leader_guess: BTreeMap<RegionId, usize>,
    last_seen: BTreeMap<usize, Option<Vec<u8>>>,
    next_value: u64,
    next_op: u64,
}

impl Client {
    pub fn new(id: usize) -> Client {
        Client {
            id,
            ..Client::default()
        }
    }

    fn fresh_value(&mut self) -> Vec<u8> {
        self.next_value += 1;
        format!("c{}v{}", self.id, self.next_value).into_bytes()
    }

    /// A new operation id.
    pub fn next_op_id(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    /// Draws the next operation: a key index and what to do to it.
    pub fn draw(&mut self, rng: &mut impl Rng, keys: usize) -> (usize, KvInput) {
        let key = rng.gen_range(0..keys);
        let input = match rng.gen_range(0..100) {
            0..=34 => KvInput::Get,
            35..=64 => KvInput::Put(self.fresh_value()),
            65..=74 => KvInput::Delete,
            _ => {
                let seen = self.last_seen.get(&key).cloned().flatten();
                let expected = match rng.gen_range(0..4) {
                    0 => None,
                    _ => seen,
                };
                let new = if rng.gen_bool(0.1) {
                    None
                } else {
                    Some(self.fresh_value())
                };
                KvInput::Cas { expected, new }
            }
        };
        (key, input)
    }

    /// Where to send a request for `region` (a guess; any node if none).
    pub fn target(&self, rng: &mut impl Rng, region: RegionId, nodes: usize) -> usize {
        match self.leader_guess.get(&region) {
            Some(&n) => n,
            None => rng.gen_range(0..nodes),
        }
    }

    /// Learns who leads `region` (or forgets, moving to another node).
    pub fn learn(
        &mut self,
        rng: &mut impl Rng,
        region: RegionId,
        leader: Option<usize>,
        nodes: usize,
    ) {
        let next = match leader {
            Some(n) => n,
            None => {
                let cur = self.leader_guess.get(&region).copied().unwrap_or(0);
                (cur + rng.gen_range(1..nodes)) % nodes
            }
        };
        self.leader_guess.insert(region, next);
    }

    /// Notes what a completed operation showed about its key.
    pub fn saw(&mut self, key: usize, input: &KvInput, output: &KvOutput) {
        let now = match (input, output) {
            (_, KvOutput::Get(v)) => v.clone(),
            (KvInput::Put(v), KvOutput::Put) => Some(v.clone()),
            (_, KvOutput::Delete) => None,
            (KvInput::Cas { new, .. }, KvOutput::Cas { swapped, previous }) => {
                if *swapped {
                    new.clone()
                } else {
                    previous.clone()
                }
            }
            _ => return,
        };
        self.last_seen.insert(key, now);
    }
}

/// The request that carries `input` on `key`.
pub fn request(input: &KvInput, key: &[u8], reads: ReadMode) -> RequestBody {
    let key = key.to_vec();
    match input {
        KvInput::Get => match reads {
            ReadMode::ReadIndex | ReadMode::Lease | ReadMode::NoBarrier => RequestBody::Get { key },
            ReadMode::Log => RequestBody::CompareAndSwap {
                key,
                expected: Some(LOG_READ_SENTINEL.to_vec()),
                new_value: None,
            },
        },
        KvInput::Put(v) => RequestBody::Put {
            key,
            value: v.clone(),
        },
        KvInput::Delete => RequestBody::Delete { key },
        KvInput::Cas { expected, new } => RequestBody::CompareAndSwap {
            key,
            expected: expected.clone(),
            new_value: new.clone(),
        },
    }
}

/// The client's view of a successful answer to `input`; Err if the answer
/// does not fit the request (a finding).
pub fn output(input: &KvInput, body: ResponseBody) -> Result<KvOutput, String> {
    match (input, body) {
        (KvInput::Get, ResponseBody::Get { value }) => Ok(KvOutput::Get(value)),
        (KvInput::Get, ResponseBody::CompareAndSwap { swapped, previous }) => {
            if swapped {
                Err("a log read's sentinel CAS swapped".into())
            } else {
                Ok(KvOutput::Get(previous))
            }
        }
        (KvInput::Put(_), ResponseBody::Put) => Ok(KvOutput::Put),
        (KvInput::Delete, ResponseBody::Delete) => Ok(KvOutput::Delete),
        (KvInput::Cas { .. }, ResponseBody::CompareAndSwap { swapped, previous }) => {
            Ok(KvOutput::Cas { swapped, previous })
        }
        (input, body) => Err(format!("answer {body:?} does not fit {input:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn values_are_unique_and_cas_expects_what_was_seen() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut c = Client::new(3);
        let mut values = std::collections::BTreeSet::new();
        let mut kinds = [0usize; 4];
        for _ in 0..400 {
            let (key, input) = c.draw(&mut rng, 4);
            assert!(key < 4);
            match &input {
                KvInput::Get => kinds[0] += 1,
                KvInput::Put(v) => {
                    kinds[1] += 1;
                    assert!(values.insert(v.clone()));
                    c.saw(key, &input, &KvOutput::Put);
                }
                KvInput::Delete => kinds[2] += 1,
                KvInput::Cas { expected, new } => {
                    kinds[3] += 1;
                    if let Some(n) = new {
                        assert!(values.insert(n.clone()));
                    }
                    if let Some(e) = expected {
                        assert!(values.contains(e), "expects a value it wrote");
                    }
                }
            }
        }
        assert!(kinds.iter().all(|&k| k > 20), "{kinds:?}");
    }

    #[test]
    fn requests_and_answers_map_both_ways() {
        let get = request(&KvInput::Get, b"k", ReadMode::Log);
        assert!(matches!(get, RequestBody::CompareAndSwap { .. }));
        let answer = ResponseBody::CompareAndSwap {
            swapped: false,
            previous: Some(b"x".to_vec()),
        };
        assert_eq!(
            output(&KvInput::Get, answer),
            Ok(KvOutput::Get(Some(b"x".to_vec())))
        );
        assert!(output(&KvInput::Delete, ResponseBody::Put).is_err());
        assert!(matches!(
            request(&KvInput::Get, b"k", ReadMode::ReadIndex),
            RequestBody::Get { .. }
        ));
    }

    #[test]
    fn learning_without_a_hint_moves_to_another_node() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut c = Client::new(0);
        let r = RegionId(1);
        c.learn(&mut rng, r, Some(2), 3);
        assert_eq!(c.target(&mut rng, r, 3), 2);
        c.learn(&mut rng, r, None, 3);
        assert_ne!(c.target(&mut rng, r, 3), 2);
    }
}
