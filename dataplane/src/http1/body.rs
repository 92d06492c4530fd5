//! A request body fed by the connection that read it: a one-frame slot between the
//! connection task (which reads the socket only when the slot is empty, so a slow upstream
//! slows the client down instead of filling memory) and whoever polls the body.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::upstream::pool::BoxError;

#[derive(Default)]
struct Slot {
    item: Option<Result<Bytes, BoxError>>,
    /// The sender is gone: after `item`, the body ends.
    ended: bool,
    /// The receiver is gone: nothing more is wanted.
    dropped: bool,
    rx: Option<Waker>,
    tx: Option<Waker>,
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// The connection's end.
pub struct Sender(Arc<Mutex<Slot>>);

/// The request's body.
pub struct RecvBody {
    slot: Arc<Mutex<Slot>>,
    /// Bytes still to come when the length is known.
    remaining: Option<u64>,
    done: bool,
}

/// A body of `length` bytes (`None`: chunked) and the sender that feeds it.
pub fn channel(length: Option<u64>) -> (Sender, RecvBody) {
    let slot = Arc::new(Mutex::new(Slot::default()));
    (
        Sender(slot.clone()),
        RecvBody {
            slot,
            remaining: length,
            done: false,
        },
    )
}

/// What [`Sender::poll_ready`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// The slot is free: send.
    Free,
    /// The body was dropped: its bytes are to be read and discarded.
    Dropped,
}

impl Sender {
    /// Ready when the previous frame was taken, or the body dropped.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Ready> {
        let mut s = lock(&self.0);
        if s.dropped {
            return Poll::Ready(Ready::Dropped);
        }
        if s.item.is_none() {
            return Poll::Ready(Ready::Free);
        }
        if !s.tx.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.tx = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The body was dropped by whoever had it.
    pub fn is_dropped(&self) -> bool {
        lock(&self.0).dropped
    }

    /// Puts a frame in the (free) slot.
    pub fn send(&mut self, item: Result<Bytes, BoxError>) {
        let mut s = lock(&self.0);
        s.item = Some(item);
        if let Some(w) = s.rx.take() {
            w.wake();
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut s = lock(&self.0);
        s.ended = true;
        if let Some(w) = s.rx.take() {
            w.wake();
        }
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        let mut s = lock(&self.slot);
        s.dropped = true;
        s.item = None;
        if let Some(w) = s.tx.take() {
            w.wake();
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = {
            let mut s = lock(&self.slot);
            match s.item.take() {
                Some(item) => {
                    if let Some(w) = s.tx.take() {
                        w.wake();
                    }
                    Poll::Ready(Some(item))
                }
                None if s.ended => Poll::Ready(None),
                None => {
                    if !s.rx.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        s.rx = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        };
        match polled {
            Poll::Ready(Some(Ok(data))) => {
                if let Some(r) = &mut self.remaining {
                    *r = r.saturating_sub(data.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // A body of known length ends with its last byte, not once the pump says so: an
        // upstream may answer right after it, and the request is whole by then (as for
        // Envoy's codec, which parsed it all).
        self.done || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
