//! Splits one socket into a read half and a write half for two tasks of
//! the same shard.
//!
//! Invariant: both halves live on one thread (`Rc`), and the `RefCell` is
//! borrowed only for the duration of one `poll_*` call, so the reader and the
//! writer task never hold it at the same time and no lock is needed.

use futures_lite::io::{AsyncRead, AsyncWrite};
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// The read half.
#[derive(Debug)]
pub struct ReadHalf<S>(Rc<RefCell<S>>);
/// The write half.
#[derive(Debug)]
pub struct WriteHalf<S>(Rc<RefCell<S>>);

/// Splits `stream` into halves that may be used by two local tasks.
pub fn split<S>(stream: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let rc = Rc::new(RefCell::new(stream));
    (ReadHalf(rc.clone()), WriteHalf(rc))
}

impl<S> WriteHalf<S> {
    /// Runs `f` on the underlying stream (for socket options, shutdown).
    pub fn with<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        f(&self.0.borrow())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadHalf<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteHalf<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(cx)
    }
}
