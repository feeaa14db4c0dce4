//! golem-client: the thin GolemDB client SDK.
//!
//! One sans-IO core, two front ends:
//!
//! - [`core`]: request ids, framing, the handshake, matching responses to
//!   requests, the in-flight cap, validation, retries and deadlines. No
//!   sockets, no runtime, no clock, no global RNG.
//! - [`route`]: the routing cache (region, epoch, leader store and shard per
//!   key range), learning from the servers' routing errors.
//! - [`Client`]: the async client for tokio; many requests in flight per
//!   connection, one connection per endpoint address.
//! - [`blocking::Client`]: the same API over `std::net::TcpStream`.
//! - [`pd::PdClient`]: the Placement Driver's client; with
//!   [`ClientConfig::pd_endpoints`] the tokio client fills routing-cache
//!   misses from the PD (`GetRegion`, `GetStore`).
//!
//! Errors are [`ClientError`]s; those that can follow a request reaching a
//! server say whether a write may have been applied ([`Outcome`]).
//! Reads are retried after a lost connection (or an attempt timeout); a
//! write that may have reached a server is never sent again (a second copy
//! of even a put could land after other clients' writes and undo them): it
//! fails with [`Outcome::Unknown`] and the caller decides (read back, or
//! retry knowing the risk). Writes refused before they were applied
//! (`NotLeader`, `EpochNotMatch`, …) are retried.
//!
//! # Example
//!
//! ```no_run
//! use golem_client::{Client, ClientConfig, ClientError, write};
//!
//! # async fn example() -> Result<(), ClientError> {
//! let config = ClientConfig::new(["127.0.0.1:7450".parse().unwrap()]);
//! let client = Client::connect(config).await?;
//!
//! client.put("greeting", "hello").await?;
//! assert_eq!(client.get("greeting").await?, Some(b"hello".to_vec()));
//!
//! client.batch_write([write::put("a", "1"), write::delete("b")]).await?;
//! let page = client.scan("a", "", 100, false).await?;
//! println!("{} pairs, more: {}", page.pairs.len(), page.more);
//!
//! let cas = client.compare_and_swap("greeting", Some(b"hello"), Some(b"bye")).await;
//! match cas {
//!     Ok(r) => println!("swapped: {}", r.swapped),
//!     Err(e) if e.is_outcome_unknown() => println!("may or may not have swapped: {e}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The blocking client has the same methods without `.await`:
//!
//! ```no_run
//! use golem_client::{blocking, ClientConfig};
//!
//! let config = ClientConfig::new(["127.0.0.1:7450".parse().unwrap()]);
//! let client = blocking::Client::connect(config)?;
//! client.put("k", "v")?;
//! # Ok::<(), golem_client::ClientError>(())
//! ```

pub mod blocking;
pub mod config;
pub mod core;
pub mod error;
pub mod ops;
pub mod pd;
pub mod retry;
pub mod route;
mod tokio_client;
mod tokio_conn;

pub use config::ClientConfig;
pub use error::{ClientError, Disconnect, Outcome, ProtocolError};
pub use ops::{write, CasResult, ScanResult};
pub use retry::{RandomSource, RetryPolicy};
pub use route::{Route, RouteTable};
pub use tokio_client::Client;

pub use golem_wire::{ClusterId, GolemError, KvPair, RequestBody, ResponseBody, WriteOp};
