//! The in-flight table of one connection: request-id allocation and the cap.
//!
//! Owns the ids of the requests a connection has sent and not yet seen
//! answered, each with a caller token (a oneshot sender, a slot…).
//!
//! Invariants:
//! - Ids are u32, allocated in increasing order with wrap-around; an id still
//!   in flight is never handed out again, and id 0 is never used (it is the
//!   id of the connection-level frames: Hello, HelloOk, Goodbye).
//! - At most `in_flight_max` requests are in flight (≤
//!   `IN_FLIGHT_REQUESTS_MAX`, the server's limit). An abandoned request
//!   (its caller gave up) still counts until its response arrives, because
//!   the server still counts it; the late response is then dropped silently.
//! - Once closed, the table accepts nothing and has handed every token back.

use crate::error::ClientError;
use golem_wire::limits::IN_FLIGHT_REQUESTS_MAX;
use golem_wire::RequestId;
use std::collections::HashMap;

/// Why a request could not be registered.
#[derive(Clone, Debug)]
pub enum RegisterError {
    /// `in_flight_max` requests are already in flight; wait for one to
    /// complete.
    Full,
    /// The connection is closed; carries the reason it closed with.
    Closed(ClientError),
}

/// What the response to an id completes.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion<T> {
    /// The caller that is waiting for it.
    Waiting(T),
    /// The caller gave up; drop the response.
    Abandoned,
}

/// The in-flight requests of one connection.
#[derive(Debug)]
pub struct InFlight<T> {
    entries: HashMap<RequestId, Option<T>>,
    next_id: u32,
    in_flight_max: usize,
    closed: Option<ClientError>,
}

impl<T> InFlight<T> {
    /// A table allowing `in_flight_max` requests (clamped to
    /// `1..=IN_FLIGHT_REQUESTS_MAX`).
    pub fn new(in_flight_max: usize) -> InFlight<T> {
        InFlight {
            entries: HashMap::new(),
            next_id: 1,
            in_flight_max: in_flight_max.clamp(1, IN_FLIGHT_REQUESTS_MAX),
            closed: None,
        }
    }

    /// Starts the allocator at `next_id` (tests of wrap-around).
    pub fn with_next_id(mut self, next_id: u32) -> InFlight<T> {
        self.next_id = next_id;
        self
    }

    /// Requests in flight, abandoned ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when a new request would be refused as `Full`.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.in_flight_max
    }

    /// The cap.
    pub fn in_flight_max(&self) -> usize {
        self.in_flight_max
    }

    /// The reason the table was closed, if it was.
    pub fn closed_reason(&self) -> Option<&ClientError> {
        self.closed.as_ref()
    }

    /// Registers a request and allocates its id.
    pub fn register(&mut self, token: T) -> Result<RequestId, RegisterError> {
        if let Some(reason) = &self.closed {
            return Err(RegisterError::Closed(reason.clone()));
        }
        if self.is_full() {
            return Err(RegisterError::Full);
        }
        // Terminates: fewer than 2³² − 1 ids are in flight.
        loop {
            let id = RequestId(self.next_id);
            self.next_id = self.next_id.wrapping_add(1);
            if id.0 != 0 && !self.entries.contains_key(&id) {
                self.entries.insert(id, Some(token));
                return Ok(id);
            }
        }
    }

    /// Removes a request that was never sent (its encoding failed), handing
    /// its token back.
    pub fn unregister(&mut self, id: RequestId) -> Option<T> {
        self.entries.remove(&id).flatten()
    }

    /// The caller of `id` gave up: drops its token, keeps the id reserved
    /// until the response arrives.
    pub fn abandon(&mut self, id: RequestId) -> Option<T> {
        self.entries.get_mut(&id).and_then(Option::take)
    }

    /// Completes `id` on its response. `None` when `id` is not in flight,
    /// which is a protocol error of the server.
    pub fn complete(&mut self, id: RequestId) -> Option<Completion<T>> {
        self.entries.remove(&id).map(|slot| match slot {
            Some(token) => Completion::Waiting(token),
            None => Completion::Abandoned,
        })
    }

    /// Closes the table for good with `reason`, returning the tokens of every
    /// request still waiting. Later calls return nothing.
    pub fn close(&mut self, reason: ClientError) -> Vec<(RequestId, T)> {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
        let mut drained: Vec<(RequestId, T)> = self
            .entries
            .drain()
            .filter_map(|(id, slot)| slot.map(|t| (id, t)))
            .collect();
        drained.sort_by_key(|(id, _)| id.0);
        drained
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Disconnect;

    #[test]
    fn ids_increase_skip_zero_and_in_flight_ids_on_wrap() {
        let mut t = InFlight::new(16).with_next_id(u32::MAX - 1);
        let a = t.register("a").unwrap();
        let b = t.register("b").unwrap();
        let c = t.register("c").unwrap();
        assert_eq!((a.0, b.0, c.0), (u32::MAX - 1, u32::MAX, 1));
        // Wrap again while u32::MAX - 1 is still in flight.
        let mut t2 = InFlight::new(16).with_next_id(5);
        let five = t2.register(5).unwrap();
        assert_eq!(five, RequestId(5));
        t2.next_id = 5;
        assert_eq!(
            t2.register(6).unwrap(),
            RequestId(6),
            "in-flight id 5 skipped"
        );
    }

    #[test]
    fn the_cap_is_enforced_and_released_by_completion() {
        let mut t = InFlight::new(3);
        let ids: Vec<_> = (0..3).map(|i| t.register(i).unwrap()).collect();
        assert!(t.is_full());
        assert!(matches!(t.register(9), Err(RegisterError::Full)));
        assert_eq!(t.complete(ids[1]), Some(Completion::Waiting(1)));
        assert!(t.register(9).is_ok());
        assert_eq!(
            InFlight::<()>::new(usize::MAX).in_flight_max(),
            IN_FLIGHT_REQUESTS_MAX
        );
    }

    #[test]
    fn abandoned_ids_stay_reserved_until_answered() {
        let mut t = InFlight::new(2);
        let a = t.register('a').unwrap();
        assert_eq!(t.abandon(a), Some('a'));
        assert_eq!(t.len(), 1);
        assert_eq!(t.complete(a), Some(Completion::Abandoned));
        assert_eq!(t.complete(a), None, "a second answer is unknown");
        assert!(t.is_empty());
    }

    #[test]
    fn close_drains_waiting_tokens_and_refuses_more() {
        let mut t = InFlight::new(8);
        let a = t.register('a').unwrap();
        let b = t.register('b').unwrap();
        t.abandon(b);
        let addr = "127.0.0.1:9".parse().unwrap();
        let drained = t.close(ClientError::lost(addr, Disconnect::Eof));
        assert_eq!(drained, vec![(a, 'a')]);
        assert!(matches!(t.register('c'), Err(RegisterError::Closed(_))));
        assert!(t
            .close(ClientError::lost(addr, Disconnect::Shutdown))
            .is_empty());
        assert!(matches!(
            t.closed_reason(),
            Some(ClientError::ConnectionLost {
                reason: Disconnect::Eof,
                ..
            })
        ));
    }
}
