//! The etcd v3 backend (cargo feature `etcd`): one gRPC channel per
//! "connection", requests multiplexed over it by HTTP/2.
//!
//! Owns the mapping onto etcd's KV API: read = Range of one key
//! (linearizable, etcd's default), write = Put, scan = Range from the start
//! key with a limit.

use super::{ConnectSpec, OpError};
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};

#[derive(Clone)]
pub struct EtcdConn {
    kv: KvClient,
}

fn peer(e: etcd_client::Error) -> OpError {
    OpError::Peer {
        backend: "etcd",
        reason: e.to_string(),
    }
}

impl EtcdConn {
    pub async fn connect(spec: &ConnectSpec) -> Result<EtcdConn, String> {
        let endpoints: Vec<String> = spec
            .endpoints
            .iter()
            .map(|e| {
                if e.starts_with("http://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(spec.request_timeout)
            .with_timeout(spec.request_timeout);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| e.to_string())?;
        Ok(EtcdConn {
            kv: client.kv_client(),
        })
    }

    pub async fn read(&mut self, key: Vec<u8>) -> Result<bool, OpError> {
        let r = self.kv.get(key, None).await.map_err(peer)?;
        Ok(!r.kvs().is_empty())
    }

    pub async fn write(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), OpError> {
        self.kv.put(key, value, None).await.map_err(peer)?;
        Ok(())
    }

    pub async fn scan(&mut self, start: Vec<u8>, count: u32) -> Result<usize, OpError> {
        let options = GetOptions::new()
            .with_from_key()
            .with_limit(i64::from(count));
        let r = self.kv.get(start, Some(options)).await.map_err(peer)?;
        Ok(r.kvs().len())
    }
}
