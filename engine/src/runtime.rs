//! The thin layer between the node and its async runtime (glommio).
//!
//! Owns every direct use of glommio's executor, timer and task APIs outside
//! the WAL and the socket code, so that swapping the runtime touches few
//! files. Invariant: functions here are only called on a shard thread
//! (glommio panics on I/O made outside its executor).

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

pub use glommio::spawn_local;
pub use glommio::timer::sleep;
pub use glommio::Task;

/// How a shard's executor thread is placed on CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// Bind shard `i` to CPU `i`.
    Pinned,
    /// Let the kernel schedule the threads (small machines, shared hosts).
    Unpinned,
}

/// Starts one executor thread for one shard and runs `main` on it.
pub fn spawn_shard<G, F>(
    shard: u16,
    pinning: Pinning,
    io_memory_bytes: usize,
    main: G,
) -> std::io::Result<glommio::ExecutorJoinHandle<()>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let placement = match pinning {
        Pinning::Pinned => glommio::Placement::Fixed(shard as usize),
        Pinning::Unpinned => glommio::Placement::Unbound,
    };
    glommio::LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{shard}"))
        .io_memory(io_memory_bytes)
        .spawn(main)
        .map_err(std::io::Error::other)
}

/// Races `fut` against a timer; `None` when the timer wins.
pub async fn timeout<T>(dur: Duration, fut: impl Future<Output = T>) -> Option<T> {
    let fut = async { Some(fut.await) };
    let timer = async {
        sleep(dur).await;
        None
    };
    futures_lite::future::or(fut, timer).await
}

/// A single-threaded, level-triggered wake-up signal: `notify` sets it,
/// `wait` returns once it is set and clears it. Cheaper than a channel for
/// "there is work" signals inside one shard.
#[derive(Default)]
pub struct LocalNotify {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for LocalNotify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNotify")
            .field("set", &self.set.get())
            .finish()
    }
}

impl LocalNotify {
    pub fn new() -> Rc<LocalNotify> {
        Rc::new(LocalNotify::default())
    }

    /// Sets the signal and wakes the waiter, if any.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Waits until the signal is set, then clears it.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}
