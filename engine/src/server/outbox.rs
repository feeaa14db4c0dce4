//! A connection's queue of encoded frames waiting to be written.
//!
//! Owns response batching: request tasks append frames, one writer task
//! drains everything queued with one `write_all`, so pipelined responses
//! share syscalls. Invariant: queued bytes never exceed
//! `OUTBOX_BYTES_MAX`; past it the connection is marked broken and closed.

use crate::runtime::LocalNotify;
use futures_lite::io::{AsyncWrite, AsyncWriteExt};
use golem_wire::codec::encode_response;
use golem_wire::{GolemError, RequestId, Response, ResponseBody};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Most response bytes queued for one connection.
pub const OUTBOX_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The queue between request tasks and a connection's writer task.
#[derive(Debug, Default)]
pub struct Outbox {
    queued: RefCell<Vec<u8>>,
    notify: LocalNotify,
    closed: Cell<bool>,
    broken: Cell<bool>,
}

impl Outbox {
    pub fn new() -> Rc<Outbox> {
        Rc::new(Outbox::default())
    }

    /// Queues an encoded frame.
    pub fn push(&self, frame: &[u8]) {
        if self.broken.get() || self.closed.get() {
            return;
        }
        let mut q = self.queued.borrow_mut();
        if q.len() + frame.len() > OUTBOX_BYTES_MAX {
            tracing::warn!("client does not read its responses; closing its connection");
            self.broken.set(true);
            q.clear();
        } else {
            q.extend_from_slice(frame);
        }
        drop(q);
        self.notify.notify();
    }

    /// Encodes and queues a response; a response too large for one frame is
    /// replaced by the error saying so.
    pub fn push_response(&self, id: RequestId, result: Result<ResponseBody, GolemError>) {
        let resp = Response::from(result);
        let frame = encode_response(id, &resp)
            .or_else(|e| encode_response(id, &Response::Err(e)))
            .expect("an error response always fits in a frame");
        self.push(&frame);
    }

    /// No more frames will be queued: the writer flushes and stops.
    pub fn close(&self) {
        self.closed.set(true);
        self.notify.notify();
    }

    /// Whether writing failed or the queue overflowed.
    pub fn is_broken(&self) -> bool {
        self.broken.get()
    }

    /// The writer task: writes queued bytes until closed (then flushed) or broken.
    pub async fn drain_into<W: AsyncWrite + Unpin>(&self, w: &mut W) {
        let mut spare = Vec::new();
        loop {
            if self.broken.get() {
                return;
            }
            std::mem::swap(&mut *self.queued.borrow_mut(), &mut spare);
            if spare.is_empty() {
                if self.closed.get() {
                    return;
                }
                self.notify.wait().await;
                continue;
            }
            if w.write_all(&spare).await.is_err() {
                self.broken.set(true);
                return;
            }
            spare.clear();
        }
    }
}
