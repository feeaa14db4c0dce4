//! The redis backend: SET and GET over one multiplexed connection per
//! "connection" (requests from many workers are pipelined on it, like
//! GolemDB's in-flight requests).
//!
//! Owns the mapping onto redis commands. Redis has no ordered scan of plain
//! keys, so scans are `Unsupported` (workload E cannot run on redis).

use super::{ConnectSpec, OpError};
use redis::aio::MultiplexedConnection;

#[derive(Clone)]
pub struct RedisConn {
    conn: MultiplexedConnection,
}

fn peer(e: redis::RedisError) -> OpError {
    OpError::Peer {
        backend: "redis",
        reason: e.to_string(),
    }
}

impl RedisConn {
    pub async fn connect(spec: &ConnectSpec) -> Result<RedisConn, String> {
        let endpoint = spec.endpoints.first().ok_or("no redis endpoint")?;
        let url = if endpoint.starts_with("redis://") {
            endpoint.clone()
        } else {
            format!("redis://{endpoint}/")
        };
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let conn = tokio::time::timeout(
            spec.request_timeout,
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
        Ok(RedisConn { conn })
    }

    pub async fn read(&mut self, key: Vec<u8>) -> Result<bool, OpError> {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn)
            .await
            .map_err(peer)?;
        Ok(v.is_some())
    }

    pub async fn write(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), OpError> {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(peer)
    }
}
