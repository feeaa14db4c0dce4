//! Client configuration, shared by both front ends.
//!
//! Invariant: a configuration that passes [`ClientConfig::validate`] has at
//! least one endpoint or PD endpoint, non-zero timeouts and a client name within
//! `CLIENT_NAME_BYTES_MAX`.

use crate::error::ClientError;
use crate::retry::RetryPolicy;
use golem_wire::limits::{CLIENT_NAME_BYTES_MAX, IN_FLIGHT_REQUESTS_MAX};
use golem_wire::ClusterId;
use std::net::SocketAddr;
use std::time::Duration;

/// How to reach a cluster and how hard to try.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Seed endpoints (IP addresses; no name resolution is done). The client
    /// connects to the first one that answers.
    pub endpoints: Vec<SocketAddr>,
    /// Placement Driver members (IP addresses). When set, the tokio client
    /// asks the PD for the region of every key its routing cache does not
    /// know, and `endpoints` may be empty (a seed node is found through the
    /// PD). The blocking client does not use the PD yet.
    pub pd_endpoints: Vec<SocketAddr>,
    /// The cluster expected; `ClusterId(0)` accepts any.
    pub cluster_id: ClusterId,
    /// Budget to connect and complete the handshake, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Deadline of a request (all attempts included) when none is given, in
    /// milliseconds.
    pub request_timeout_ms: u64,
    /// Longest wait for the answer to one attempt, in milliseconds (0: the
    /// request's whole deadline). A node that stopped answering (paused,
    /// partitioned) is then given up on and the request retried elsewhere:
    /// a read at once; a write fails like after a lost connection (its
    /// outcome is unknown: it is not sent again).
    pub attempt_timeout_ms: u64,
    /// Retries of retryable failures.
    pub retry: RetryPolicy,
    /// Name sent in the handshake, for the server's logs.
    pub client_name: String,
    /// Requests in flight per connection (clamped to
    /// `IN_FLIGHT_REQUESTS_MAX`, the server's limit); more wait.
    pub in_flight_max: usize,
    /// Seed of the backoff jitter; `None` draws one per client.
    pub jitter_seed: Option<u64>,
}

impl ClientConfig {
    /// A configuration that finds the cluster through the PD members at
    /// `pd_endpoints` only.
    pub fn with_pd(pd_endpoints: impl IntoIterator<Item = SocketAddr>) -> ClientConfig {
        ClientConfig {
            pd_endpoints: pd_endpoints.into_iter().collect(),
            ..ClientConfig::default()
        }
    }

    /// A configuration with defaults for everything but the endpoints.
    pub fn new(endpoints: impl IntoIterator<Item = SocketAddr>) -> ClientConfig {
        ClientConfig {
            endpoints: endpoints.into_iter().collect(),
            ..ClientConfig::default()
        }
    }

    /// The connect budget.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The default request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ClientError> {
        let invalid = |reason: &str| {
            Err(ClientError::InvalidConfig {
                reason: reason.to_string(),
            })
        };
        if self.endpoints.is_empty() && self.pd_endpoints.is_empty() {
            return invalid("no endpoints and no PD endpoints");
        }
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return invalid("timeouts must be positive");
        }
        if self.client_name.len() > CLIENT_NAME_BYTES_MAX {
            return invalid("client name too long");
        }
        if self.in_flight_max == 0 {
            return invalid("in_flight_max must be positive");
        }
        Ok(())
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: Vec::new(),
            pd_endpoints: Vec::new(),
            cluster_id: ClusterId(0),
            connect_timeout_ms: 3_000,
            request_timeout_ms: 10_000,
            attempt_timeout_ms: 2_000,
            retry: RetryPolicy::default(),
            client_name: concat!("golem-client/", env!("CARGO_PKG_VERSION")).to_string(),
            in_flight_max: IN_FLIGHT_REQUESTS_MAX,
            jitter_seed: None,
        }
    }
}
