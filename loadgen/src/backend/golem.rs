//! The GolemDB backend: the client SDK, one `Client` per connection.
//!
//! Owns nothing but the mapping of the uniform operations onto the SDK; the
//! SDK owns routing, retries and deadlines (`request_timeout`).

use super::{ConnectSpec, OpError};
use golem_client::{Client, ClientConfig};
use std::net::SocketAddr;

#[derive(Clone)]
pub struct GolemConn {
    client: Client,
}

impl GolemConn {
    pub async fn connect(spec: &ConnectSpec) -> Result<GolemConn, String> {
        let endpoints = spec
            .endpoints
            .iter()
            .map(|e| {
                e.parse::<SocketAddr>()
                    .map_err(|_| format!("{e:?} is not an ip:port address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut cfg = ClientConfig::new(endpoints);
        cfg.client_name = "golem-loadgen".into();
        cfg.request_timeout_ms = spec.request_timeout.as_millis().max(1) as u64;
        let client = Client::connect(cfg).await.map_err(|e| e.to_string())?;
        Ok(GolemConn { client })
    }

    pub async fn read(&self, key: Vec<u8>) -> Result<bool, OpError> {
        Ok(self.client.get(key).await?.is_some())
    }

    pub async fn write(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), OpError> {
        Ok(self.client.put(key, value).await?)
    }

    pub async fn scan(&self, start: Vec<u8>, count: u32) -> Result<usize, OpError> {
        let page = self.client.scan(start, Vec::new(), count, false).await?;
        Ok(page.pairs.len())
    }
}
