//! One client call across its attempts: validation, deadline, retries.
//!
//! Owns the decision after each attempt: done (success or final error), or
//! retry after a wait. The front end does the I/O of each attempt and
//! reports how it ended ([`Attempt`]); time and randomness are passed in.
//!
//! Invariants:
//! - A request that fails validation is never sent.
//! - No attempt starts after the deadline: a retry whose wait would reach
//!   the deadline ends the call with `Timeout` instead.
//! - At most `attempts_max` attempts are made.
//! - A write that may have reached a server before its connection failed is
//!   retried only if it is idempotent (Put, Delete, BatchWrite); a
//!   compare-and-swap ends with the ambiguous error (`Outcome::Unknown`).
//!   Reads are always safe to retry.
//! - Once a write may have been applied, every later error of the call says
//!   `Outcome::Unknown` where it carries an outcome.
//! - A `ServerBusy { retry_after_ms }` is never retried sooner than asked.
//! - A server's `DeadlineExceeded` ends the call as a `Timeout` (outcome
//!   unknown for a write), carrying the server error as its last error.

use crate::core::pieces::{clamp, is_spanning};
use crate::error::{ClientError, Outcome, ProtocolError};
use crate::ops::{response_matches, response_name, FromResponse};
use crate::retry::{Backoff, RandomSource, RetryPolicy};
use crate::route::Route;
use golem_wire::{GolemError, Request, RequestBody, Response};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How one attempt ended.
#[derive(Debug)]
pub enum Attempt {
    /// The server answered.
    Response {
        addr: SocketAddr,
        response: Response,
    },
    /// The attempt failed before the request could reach a server
    /// (connecting, handshake, a closed connection).
    NotSent(ClientError),
    /// The connection failed after the request may have reached the server.
    Lost(ClientError),
}

/// What to do after an attempt.
#[derive(Debug)]
pub enum Step<O> {
    /// The call is over.
    Done(Result<O, ClientError>),
    /// Make another attempt after this wait.
    RetryAfter(Duration),
}

/// One client call.
#[derive(Debug)]
pub struct Call<O> {
    request: Request,
    /// A request that can span regions (`pieces::is_spanning`), whole: each
    /// attempt sends the part its route's region serves (`request.body`).
    whole: Option<RequestBody>,
    timeout: Duration,
    deadline: Instant,
    attempts: u32,
    attempts_max: u32,
    backoff: Backoff,
    maybe_applied: bool,
    last_error: Option<ClientError>,
    _out: PhantomData<fn() -> O>,
}

impl<O: FromResponse> Call<O> {
    /// Validates `body` and starts a call that must end by `now + timeout`.
    pub fn new(
        body: RequestBody,
        timeout: Duration,
        now: Instant,
        policy: &RetryPolicy,
    ) -> Result<Call<O>, ClientError> {
        body.validate().map_err(ClientError::InvalidRequest)?;
        let whole = is_spanning(&body).then(|| body.clone());
        Ok(Call {
            whole,
            request: Request {
                region: Default::default(),
                epoch: Default::default(),
                timeout_ms: 0,
                body,
            },
            timeout,
            deadline: now
                .checked_add(timeout)
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
            attempts: 0,
            attempts_max: policy.attempts_max.max(1),
            backoff: policy.backoff(),
            maybe_applied: false,
            last_error: None,
            _out: PhantomData,
        })
    }

    /// The request's operation (whole, before any clamping to a region).
    pub fn body(&self) -> &RequestBody {
        self.whole.as_ref().unwrap_or(&self.request.body)
    }

    /// The request the last attempt sent: for a scan or batch get, the
    /// part of the whole one that its route's region serves.
    pub fn sent_body(&self) -> &RequestBody {
        &self.request.body
    }

    /// When the call must be over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Attempts reported so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The time left before the deadline.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// The request to send for the next attempt along `route`, carrying the
    /// time left as its server-side timeout. A scan or batch get is cut to
    /// the route's region when the route knows its range.
    pub fn prepare(&mut self, route: &Route, now: Instant) -> &Request {
        if let Some(whole) = &self.whole {
            self.request.body = match &route.bounds {
                Some(bounds) => clamp(whole, bounds),
                None => whole.clone(),
            };
        }
        self.request.region = route.region;
        self.request.epoch = route.epoch;
        let left_ms = self.remaining(now).as_millis().max(1);
        self.request.timeout_ms = u32::try_from(left_ms).unwrap_or(u32::MAX);
        &self.request
    }

    /// The error to return when the deadline passes during an attempt (or
    /// during the wait before one); `sent` says whether that attempt's
    /// request may have reached a server.
    pub fn timeout_error(&self, sent: bool) -> ClientError {
        let applied = self.maybe_applied || (sent && self.request.body.is_write());
        self.timeout(self.attempts + 1, applied, self.last_error.clone())
    }

    fn timeout(
        &self,
        attempts: u32,
        applied: bool,
        last_error: Option<ClientError>,
    ) -> ClientError {
        ClientError::Timeout {
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            attempts,
            outcome: if applied {
                Outcome::Unknown
            } else {
                Outcome::NotApplied
            },
            last_error: last_error.map(Box::new),
        }
    }

    /// Decides what follows an attempt that ended at `now`.
    pub fn on_attempt(
        &mut self,
        attempt: Attempt,
        now: Instant,
        rng: &mut dyn RandomSource,
    ) -> Step<O> {
        self.attempts += 1;
        let error = match attempt {
            Attempt::Response {
                addr,
                response: Response::Ok(body),
            } => return Step::Done(self.convert(addr, body)),
            // The server gave up at the deadline: a timeout, whose outcome
            // is unknown for a write.
            Attempt::Response {
                response: Response::Err(GolemError::DeadlineExceeded),
                ..
            } => {
                let applied = self.maybe_applied || self.request.body.is_write();
                let last = ClientError::Server(GolemError::DeadlineExceeded);
                return Step::Done(Err(self.timeout(self.attempts, applied, Some(last))));
            }
            Attempt::Response {
                response: Response::Err(e),
                ..
            } => {
                if !e.is_retryable() {
                    return Step::Done(Err(self.finish(ClientError::Server(e))));
                }
                ClientError::Server(e)
            }
            Attempt::NotSent(e) => {
                if !e.is_transport() {
                    return Step::Done(Err(self.finish(e)));
                }
                e
            }
            Attempt::Lost(e) => {
                let body = &self.request.body;
                if body.is_write() {
                    // Sent and unanswered: it may have been applied. Not
                    // retried, even a put: a second copy could apply after
                    // later writes of others and undo them (a history no
                    // single application explains). The caller learns the
                    // outcome is unknown.
                    self.maybe_applied = true;
                    return Step::Done(Err(self.finish(e)));
                }
                let e = self.finish(e);
                if !e.is_transport() {
                    return Step::Done(Err(e));
                }
                e
            }
        };
        if self.attempts >= self.attempts_max {
            return Step::Done(Err(self.finish(error)));
        }
        let delay = self.delay_after(&error, rng);
        if now + delay >= self.deadline {
            let error = self.finish(error);
            return Step::Done(Err(self.timeout(
                self.attempts,
                self.maybe_applied,
                Some(error),
            )));
        }
        tracing::debug!(op = self.request.body.name(), attempt = self.attempts, ?delay, %error, "retrying");
        self.last_error = Some(error);
        Step::RetryAfter(delay)
    }

    /// The wait before retrying after `error`.
    fn delay_after(&mut self, error: &ClientError, rng: &mut dyn RandomSource) -> Duration {
        match error {
            // The error taught us where to go: go there at once.
            ClientError::Server(GolemError::NotLeader {
                leader: Some(_), ..
            }) => Duration::ZERO,
            ClientError::Server(GolemError::EpochNotMatch { current_regions })
                if !current_regions.is_empty() =>
            {
                Duration::ZERO
            }
            ClientError::Server(GolemError::ServerBusy { retry_after_ms }) => self
                .backoff
                .next_delay(rng)
                .max(Duration::from_millis((*retry_after_ms).into())),
            _ => self.backoff.next_delay(rng),
        }
    }

    /// Converts a successful response; a response of another operation is a
    /// protocol error, and leaves a write's outcome unknown.
    fn convert(&self, addr: SocketAddr, body: golem_wire::ResponseBody) -> Result<O, ClientError> {
        let body = if response_matches(&self.request.body, &body) {
            O::from_response(body)
        } else {
            Err(body)
        };
        body.map_err(|body| {
            let error = ProtocolError::ResponseMismatch {
                request: self.request.body.name(),
                got: response_name(&body),
            };
            let outcome = if self.request.body.is_write() {
                Outcome::Unknown
            } else {
                Outcome::NotApplied
            };
            ClientError::protocol(addr, error).with_outcome(outcome)
        })
    }

    /// Sets the final outcome of an error about to be returned.
    fn finish(&self, error: ClientError) -> ClientError {
        if self.maybe_applied {
            error.with_outcome(Outcome::Unknown)
        } else {
            error.with_outcome(Outcome::NotApplied)
        }
    }
}
