//! The client-facing server of one shard: its listener and connections.
//!
//! Owns accepting on `base_port + shard`. Invariant: open connections per
//! shard never exceed `connections_per_shard_max`; one more is accepted and
//! closed at once (so the kernel's backlog does not fill with it).

pub mod conn;
pub mod outbox;
pub mod split;

use crate::runtime::spawn_local;
use crate::shard::Shard;
use glommio::net::TcpListener;
use std::rc::Rc;

/// Accepts connections until the shard stops.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                tracing::warn!(error = %e, "accept failed");
                crate::runtime::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if shard.stopping.get() {
            return;
        }
        let Some(guard) = shard.connection_opened() else {
            tracing::warn!("connection limit reached; refusing a connection");
            drop(stream);
            continue;
        };
        let shard = shard.clone();
        spawn_local(async move {
            conn::serve(shard, stream).await;
            drop(guard);
        })
        .detach();
    }
}
