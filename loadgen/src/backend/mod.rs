//! The systems a workload can run against, chosen by `--backend`: GolemDB
//! through its client SDK (always built), redis (cargo feature `redis`, on by
//! default) and etcd v3 (cargo feature `etcd`: its gRPC stubs need `protoc`).
//!
//! Owns one uniform operation set — read, write, scan — so that every
//! backend runs exactly the same workload. Invariants: `Backend::connect`
//! opens exactly `connections` client connections; each worker uses one of
//! them (`conn(i)`), so "connections × in flight" means the same thing for
//! every backend; an operation's error is returned, never panics.

#[cfg(feature = "etcd")]
mod etcd;
mod golem;
#[cfg(test)]
pub mod mem;
#[cfg(feature = "redis")]
mod redis;

use crate::error::LoadgenError;
use clap::ValueEnum;
use serde::Serialize;
use std::time::Duration;

/// Which system is under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// GolemDB through golem-client.
    Golem,
    /// etcd v3 (gRPC KV API; reads are linearizable, etcd's default).
    Etcd,
    /// redis (SET/GET; scans are not supported).
    Redis,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Golem => "golem",
            BackendKind::Etcd => "etcd",
            BackendKind::Redis => "redis",
        }
    }
}

/// An operation's failure (counted per operation kind; the first one's text
/// goes in the report).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("golem: {0}")]
    Golem(#[from] golem_client::ClientError),
    #[error("{backend}: {reason}")]
    #[cfg_attr(not(any(feature = "redis", feature = "etcd")), allow(dead_code))]
    Peer {
        backend: &'static str,
        reason: String,
    },
    #[error("{backend} does not support {op}")]
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Unsupported {
        backend: &'static str,
        op: &'static str,
    },
}

/// One client connection of any backend; cheap to clone (clones share the
/// connection and multiplex requests over it).
#[derive(Clone)]
pub enum Conn {
    Golem(golem::GolemConn),
    #[cfg(feature = "redis")]
    Redis(redis::RedisConn),
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd::EtcdConn>),
    /// An in-process ordered map, for the driver's tests.
    #[cfg(test)]
    Mem(mem::MemConn),
}

impl Conn {
    /// Reads `key`; true when it exists.
    pub async fn read(&mut self, key: Vec<u8>) -> Result<bool, OpError> {
        match self {
            Conn::Golem(c) => c.read(key).await,
            #[cfg(feature = "redis")]
            Conn::Redis(c) => c.read(key).await,
            #[cfg(feature = "etcd")]
            Conn::Etcd(c) => c.read(key).await,
            #[cfg(test)]
            Conn::Mem(c) => Ok(c.read(&key)),
        }
    }

    /// Sets `key` to `value` (insert and update alike: a KV put).
    pub async fn write(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), OpError> {
        match self {
            Conn::Golem(c) => c.write(key, value).await,
            #[cfg(feature = "redis")]
            Conn::Redis(c) => c.write(key, value).await,
            #[cfg(feature = "etcd")]
            Conn::Etcd(c) => c.write(key, value).await,
            #[cfg(test)]
            Conn::Mem(c) => {
                c.write(key, value);
                Ok(())
            }
        }
    }

    /// Reads up to `count` records from `start` on, in key order; returns
    /// how many it got.
    pub async fn scan(&mut self, start: Vec<u8>, count: u32) -> Result<usize, OpError> {
        match self {
            Conn::Golem(c) => c.scan(start, count).await,
            #[cfg(feature = "redis")]
            Conn::Redis(_) => Err(OpError::Unsupported {
                backend: "redis",
                op: "ordered scans",
            }),
            #[cfg(feature = "etcd")]
            Conn::Etcd(c) => c.scan(start, count).await,
            #[cfg(test)]
            Conn::Mem(c) => Ok(c.scan(&start, count)),
        }
    }
}

/// Where to connect and how.
#[derive(Clone, Debug)]
pub struct ConnectSpec {
    pub kind: BackendKind,
    /// Addresses: `ip:port` of a GolemDB node's first shard, of redis, or of
    /// etcd members (`ip:port` or `http://ip:port`).
    pub endpoints: Vec<String>,
    pub connections: usize,
    pub request_timeout: Duration,
}

/// Opens `spec.connections` connections.
pub async fn connect(spec: &ConnectSpec) -> Result<Vec<Conn>, LoadgenError> {
    let mut conns = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        conns.push(connect_one(spec).await?);
    }
    Ok(conns)
}

async fn connect_one(spec: &ConnectSpec) -> Result<Conn, LoadgenError> {
    let fail = |reason: String| LoadgenError::Connect {
        backend: spec.kind.name(),
        endpoint: spec.endpoints.join(","),
        reason,
    };
    match spec.kind {
        BackendKind::Golem => golem::GolemConn::connect(spec)
            .await
            .map(Conn::Golem)
            .map_err(fail),
        #[cfg(feature = "redis")]
        BackendKind::Redis => redis::RedisConn::connect(spec)
            .await
            .map(Conn::Redis)
            .map_err(fail),
        #[cfg(feature = "etcd")]
        BackendKind::Etcd => etcd::EtcdConn::connect(spec)
            .await
            .map(|c| Conn::Etcd(Box::new(c)))
            .map_err(fail),
        #[allow(unreachable_patterns)]
        other => Err(fail(format!(
            "this golem-loadgen was built without the `{}` feature \
             (cargo build -p golem-loadgen --features {})",
            other.name(),
            other.name()
        ))),
    }
}
