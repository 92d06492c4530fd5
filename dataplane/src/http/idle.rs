//! The connection manager's idle timeout (`common_http_protocol_options.idle_timeout`, Envoy's
//! default 1 h): a downstream connection with no request in flight for that long is closed.
//!
//! A request is in flight from its arrival until its response body has been sent (or
//! dropped), so a long streamed download is not idle. The response body carries a guard.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::upstream::pool::{Body as ProxyBody, BoxError};

/// Requests in flight on one connection and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    active: AtomicUsize,
    since: Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            active: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
        })
    }

    /// Marks a request as started; it ends when the returned guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.active.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let since = *self.since.lock().unwrap_or_else(|p| p.into_inner());
            let idle = self.active.load(Ordering::Acquire) == 0;
            if idle && since.elapsed() >= timeout {
                return;
            }
            // Busy: look again a timeout later; idle: when the timeout would pass.
            let wait = if idle {
                timeout.saturating_sub(since.elapsed())
            } else {
                timeout
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

/// One request in flight.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is finished or dropped.
pub struct Tracked {
    inner: ProxyBody,
    guard: Option<InFlight>,
}

impl Tracked {
    pub fn new(inner: ProxyBody, guard: Option<InFlight>) -> Self {
        Tracked { inner, guard }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that fails when no frame arrives for `timeout` (the route's
/// `idle_timeout` once the response has started: Envoy resets the stream, which the client
/// sees as a truncated body).
pub struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        IdleBody {
            inner,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                // An error, not an early end: the downstream must see the stream cut (a reset
                // for HTTP/2, a closed connection for HTTP/1), as with Envoy.
                Poll::Ready(()) => {
                    tracing::debug!("route idle timeout: resetting the response");
                    Poll::Ready(Some(Err("route idle timeout".into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
