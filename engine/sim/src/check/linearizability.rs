//! Per-key linearizability of client histories: a Wing–Gong search with
//! Lowe's memoization (as porcupine does) over a register model with
//! compare-and-swap.
//!
//! Owns the model (`step`) and the search (`check`). A history is the
//! operations of one key: each has a call time and either a return time
//! with its output, or no return at all (outcome unknown: it timed out, or
//! failed after it was proposed). An unknown operation may take effect at
//! any point after its call, or never; its output is not checked.
//! Operations that certainly had no effect (refused before proposing) are
//! left out by the caller.
//!
//! Invariants: times are totally ordered per history (ties between a call
//! and a return are read as concurrent, the permissive choice); the verdict
//! `Linearizable` is exact; the search visits each (set of linearized
//! operations, register value) pair at most once and gives up with
//! `Inconclusive` after `steps_max` steps rather than run unbounded.

use std::collections::HashSet;

/// A value, interned by the caller (equal bytes, equal id).
pub type Value = u64;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Get,
    Put(Value),
    Delete,
    /// Set to `new` (None: delete) if the value is `expected` (None: absent).
    Cas {
        expected: Option<Value>,
        new: Option<Value>,
    },
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Get(Option<Value>),
    Put,
    Delete,
    Cas {
        swapped: bool,
        previous: Option<Value>,
    },
}

/// One operation of one key's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// For reports only.
    pub client: usize,
    pub input: Input,
    pub call: u64,
    /// Return time and output; None: the outcome is unknown.
    pub ret: Option<(u64, Output)>,
}

/// The result of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists. `prefix` is the longest sequence of operations
    /// (indexes into the history) the search could linearize; `stuck` is
    /// an operation with a known return that no extension of it could place.
    Violation {
        prefix: Vec<usize>,
        stuck: usize,
    },
    /// The search hit its step budget.
    Inconclusive,
}

/// The register's next value if `input` (answered with `output`, if known)
/// can take effect on `state`; None if the output contradicts the state.
pub fn step(state: Option<Value>, input: &Input, output: Option<&Output>) -> Option<Option<Value>> {
    match input {
        Input::Get => match output {
            None => Some(state),
            Some(Output::Get(v)) if *v == state => Some(state),
            Some(_) => None,
        },
        Input::Put(v) => match output {
            None | Some(Output::Put) => Some(Some(*v)),
            Some(_) => None,
        },
        Input::Delete => match output {
            None | Some(Output::Delete) => Some(None),
            Some(_) => None,
        },
        Input::Cas { expected, new } => {
            let swapped = state == *expected;
            let next = if swapped { *new } else { state };
            match output {
                None => Some(next),
                Some(Output::Cas {
                    swapped: s,
                    previous,
                }) if *s == swapped && *previous == state => Some(next),
                Some(_) => None,
            }
        }
    }
}

const NIL: usize = usize::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    op: usize,
    is_call: bool,
    /// For a call: its return node, or NIL for an unknown outcome.
    ret: usize,
    prev: usize,
    next: usize,
}

/// A doubly linked list of call and return events in time order, from
/// which linearized operations are lifted and put back (dancing links).
struct Events {
    nodes: Vec<Node>,
    /// Sentinel head at index `nodes.len() - 1`.
    head: usize,
}

impl Events {
    fn new(ops: &[Operation]) -> Events {
        // (time, order on ties: calls first, op, is_call)
        let mut evs: Vec<(u64, u8, usize, bool)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            evs.push((op.call, 0, i, true));
            if let Some((ret, _)) = &op.ret {
                assert!(*ret >= op.call, "op {i} returns before its call");
                evs.push((*ret, 1, i, false));
            }
        }
        evs.sort();
        let mut nodes: Vec<Node> = evs
            .iter()
            .map(|&(_, _, op, is_call)| Node {
                op,
                is_call,
                ret: NIL,
                prev: NIL,
                next: NIL,
            })
            .collect();
        let mut ret_of = vec![NIL; ops.len()];
        for (i, n) in nodes.iter().enumerate() {
            if !n.is_call {
                ret_of[n.op] = i;
            }
        }
        for n in nodes.iter_mut() {
            if n.is_call {
                n.ret = ret_of[n.op];
            }
        }
        let head = nodes.len();
        nodes.push(Node {
            op: NIL,
            is_call: false,
            ret: NIL,
            prev: NIL,
            next: NIL,
        });
        let mut prev = head;
        for i in 0..head {
            nodes[prev].next = i;
            nodes[i].prev = prev;
            prev = i;
        }
        Events { nodes, head }
    }

    fn first(&self) -> usize {
        self.nodes[self.head].next
    }

    fn unlink(&mut self, i: usize) {
        let Node { prev, next, .. } = self.nodes[i];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, i: usize) {
        let Node { prev, next, .. } = self.nodes[i];
        self.nodes[prev].next = i;
        if next != NIL {
            self.nodes[next].prev = i;
        }
    }

    /// Removes a call and its return.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        let ret = self.nodes[call].ret;
        if ret != NIL {
            self.unlink(ret);
        }
    }

    /// Undoes `lift` (in reverse order).
    fn unlift(&mut self, call: usize) {
        let ret = self.nodes[call].ret;
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// Checks one key's history, starting from `initial`, within `steps_max`
/// search steps.
pub fn check(ops: &[Operation], initial: Option<Value>, steps_max: u64) -> Verdict {
    let mut events = Events::new(ops);
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state = initial;
    let mut remaining_returns = ops.iter().filter(|o| o.ret.is_some()).count();
    // (call node, state before it)
    let mut stack: Vec<(usize, Option<Value>)> = Vec::new();
    let mut seen: HashSet<(Vec<u64>, Option<Value>)> = HashSet::new();
    let mut best: (Vec<usize>, usize) = (Vec::new(), NIL);
    let mut e = events.first();
    let mut steps = 0u64;
    loop {
        if remaining_returns == 0 {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps > steps_max {
            return Verdict::Inconclusive;
        }
        if e != NIL && events.nodes[e].is_call {
            let op = events.nodes[e].op;
            let output = ops[op].ret.as_ref().map(|(_, o)| o);
            if let Some(next) = step(state, &ops[op].input, output) {
                let mut lin = linearized.clone();
                lin[op / 64] |= 1 << (op % 64);
                if seen.insert((lin.clone(), next)) {
                    stack.push((e, state));
                    state = next;
                    linearized = lin;
                    if ops[op].ret.is_some() {
                        remaining_returns -= 1;
                    }
                    events.lift(e);
                    e = events.first();
                    continue;
                }
            }
            e = events.nodes[e].next;
            continue;
        }
        // A return whose call is not linearized (or the end): backtrack.
        if stack.len() >= best.0.len() && e != NIL {
            best = (
                stack.iter().map(|(c, _)| events.nodes[*c].op).collect(),
                events.nodes[e].op,
            );
        }
        let Some((call, prev)) = stack.pop() else {
            return Verdict::Violation {
                prefix: best.0,
                stuck: best.1,
            };
        };
        let op = events.nodes[call].op;
        state = prev;
        linearized[op / 64] &= !(1 << (op % 64));
        if ops[op].ret.is_some() {
            remaining_returns += 1;
        }
        events.unlift(call);
        e = events.nodes[call].next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: u64 = 100_000;

    fn op(client: usize, input: Input, call: u64, ret: u64, out: Output) -> Operation {
        Operation {
            client,
            input,
            call,
            ret: Some((ret, out)),
        }
    }

    fn unknown(client: usize, input: Input, call: u64) -> Operation {
        Operation {
            client,
            input,
            call,
            ret: None,
        }
    }

    fn get(c: usize, call: u64, ret: u64, v: Option<Value>) -> Operation {
        op(c, Input::Get, call, ret, Output::Get(v))
    }

    fn put(c: usize, call: u64, ret: u64, v: Value) -> Operation {
        op(c, Input::Put(v), call, ret, Output::Put)
    }

    fn cas(
        c: usize,
        call: u64,
        ret: u64,
        expected: Option<Value>,
        new: Option<Value>,
        swapped: bool,
        previous: Option<Value>,
    ) -> Operation {
        op(
            c,
            Input::Cas { expected, new },
            call,
            ret,
            Output::Cas { swapped, previous },
        )
    }

    fn ok(ops: &[Operation]) -> bool {
        check(ops, None, STEPS) == Verdict::Linearizable
    }

    #[test]
    fn the_model_steps() {
        assert_eq!(
            step(Some(1), &Input::Get, Some(&Output::Get(Some(1)))),
            Some(Some(1))
        );
        assert_eq!(step(Some(1), &Input::Get, Some(&Output::Get(None))), None);
        assert_eq!(step(None, &Input::Put(2), None), Some(Some(2)));
        assert_eq!(
            step(Some(2), &Input::Delete, Some(&Output::Delete)),
            Some(None)
        );
        let swap = Input::Cas {
            expected: Some(1),
            new: Some(3),
        };
        assert_eq!(step(Some(1), &swap, None), Some(Some(3)));
        assert_eq!(step(Some(2), &swap, None), Some(Some(2)));
        let told = Output::Cas {
            swapped: true,
            previous: Some(1),
        };
        assert_eq!(step(Some(1), &swap, Some(&told)), Some(Some(3)));
        assert_eq!(step(Some(2), &swap, Some(&told)), None);
        assert_eq!(step(Some(1), &swap, Some(&Output::Put)), None);
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            get(0, 1, 2, None),
            put(0, 3, 4, 1),
            get(1, 5, 6, Some(1)),
            cas(1, 7, 8, Some(1), Some(2), true, Some(1)),
            op(0, Input::Delete, 9, 10, Output::Delete),
            get(0, 11, 12, None),
        ];
        assert!(ok(&h));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_not() {
        let h = [put(0, 1, 2, 1), put(0, 3, 4, 2), get(1, 5, 6, Some(1))];
        match check(&h, None, STEPS) {
            Verdict::Violation { stuck, .. } => assert_eq!(stuck, 2),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either() {
        let before = [put(0, 1, 2, 1), put(0, 3, 10, 2), get(1, 4, 5, Some(1))];
        let after = [put(0, 1, 2, 1), put(0, 3, 10, 2), get(1, 4, 5, Some(2))];
        assert!(ok(&before));
        assert!(ok(&after));
        // But not back again once a read saw the new value.
        let flip = [
            put(0, 1, 2, 1),
            put(0, 3, 10, 2),
            get(1, 4, 5, Some(2)),
            get(2, 6, 7, Some(1)),
        ];
        assert!(!ok(&flip));
    }

    #[test]
    fn an_acknowledged_write_that_vanishes_is_not() {
        let h = [put(0, 1, 2, 7), get(1, 3, 4, None)];
        assert!(!ok(&h));
    }

    #[test]
    fn an_unknown_write_may_apply_late_or_never() {
        // Seen by a read long after its call.
        let late = [
            unknown(0, Input::Put(1), 1),
            get(1, 2, 3, None),
            get(1, 4, 5, None),
            get(1, 50, 51, Some(1)),
        ];
        assert!(ok(&late));
        // Never seen.
        let never = [unknown(0, Input::Put(1), 1), get(1, 2, 3, None)];
        assert!(ok(&never));
        // Seen, then unseen with no other write: not linearizable.
        let flicker = [
            unknown(0, Input::Put(1), 1),
            get(1, 2, 3, Some(1)),
            get(1, 4, 5, None),
        ];
        assert!(!ok(&flicker));
        // It cannot apply before its call.
        let early = [get(1, 1, 2, Some(1)), unknown(0, Input::Put(1), 3)];
        assert!(!ok(&early));
    }

    #[test]
    fn an_unknown_write_is_a_legal_explanation_for_a_later_value() {
        // Put 1 (acked), unknown Put 2, then a read of 2 and a CAS 2→3.
        let h = [
            put(0, 1, 2, 1),
            unknown(1, Input::Put(2), 3),
            get(2, 10, 11, Some(2)),
            cas(2, 12, 13, Some(2), Some(3), true, Some(2)),
            get(0, 14, 15, Some(3)),
        ];
        assert!(ok(&h));
    }

    #[test]
    fn two_cas_cannot_both_swap_from_the_same_value() {
        let h = [
            put(0, 1, 2, 1),
            cas(1, 3, 10, Some(1), Some(2), true, Some(1)),
            cas(2, 4, 11, Some(1), Some(3), true, Some(1)),
        ];
        assert!(!ok(&h));
        // One swaps, the other sees the new value and fails.
        let h = [
            put(0, 1, 2, 1),
            cas(1, 3, 10, Some(1), Some(2), true, Some(1)),
            cas(2, 4, 11, Some(1), Some(3), false, Some(2)),
            get(0, 12, 13, Some(2)),
        ];
        assert!(ok(&h));
    }

    #[test]
    fn a_failed_cas_must_report_the_current_value() {
        let h = [
            put(0, 1, 2, 1),
            cas(1, 3, 4, Some(5), Some(2), false, Some(9)),
        ];
        assert!(!ok(&h));
        let h = [put(0, 1, 2, 1), cas(1, 3, 4, None, Some(2), false, Some(1))];
        assert!(ok(&h));
    }

    #[test]
    fn an_unknown_cas_applies_only_if_it_matches() {
        // The unknown CAS expected 1 but the value was already 2 for its
        // whole life: it cannot have produced 3.
        let h = [
            put(0, 1, 2, 2),
            unknown(
                1,
                Input::Cas {
                    expected: Some(1),
                    new: Some(3),
                },
                3,
            ),
            get(2, 10, 11, Some(3)),
        ];
        assert!(!ok(&h));
        let h = [
            put(0, 1, 2, 1),
            unknown(
                1,
                Input::Cas {
                    expected: Some(1),
                    new: Some(3),
                },
                3,
            ),
            get(2, 10, 11, Some(3)),
        ];
        assert!(ok(&h));
    }

    #[test]
    fn many_concurrent_writes_are_searched_within_budget() {
        // 12 concurrent puts, then a read of the one that must be last.
        let mut h: Vec<Operation> = (0..12)
            .map(|i| put(i, 1 + i as u64, 100, i as u64))
            .collect();
        h.push(get(0, 200, 201, Some(5)));
        assert!(ok(&h));
        h.push(get(0, 202, 203, Some(6)));
        assert!(!ok(&h));
    }

    #[test]
    fn the_budget_gives_inconclusive() {
        let mut h: Vec<Operation> = (0..12)
            .map(|i| put(i, 1 + i as u64, 100, i as u64))
            .collect();
        h.push(get(0, 200, 201, Some(99)));
        assert_eq!(check(&h, None, 10), Verdict::Inconclusive);
    }
}
