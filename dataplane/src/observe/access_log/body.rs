//! The hooks in the request path: a response body that logs its request when it ends, and a
//! request body that counts what the client sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::{AccessLogs, BodyCount, Entry};
use crate::http::Downstream;
use crate::http1::server::{BodyRefusal, Refusal};
use crate::upstream::pool::{Body as ProxyBody, BoxError};

/// Records the response's status and headers in the entry and logs it when the body ends.
pub fn wrap(
    response: Response<ProxyBody>,
    mut entry: Box<Entry>,
    logs: Arc<AccessLogs>,
) -> Response<ProxyBody> {
    entry.status = Some(response.status().as_u16());
    entry.capture_response(response.headers(), &logs.response_headers);
    response.map(|inner| {
        Logged {
            inner,
            entry: Some(entry),
            logs,
        }
        .boxed()
    })
}

/// A request head the HTTP/1 codec refused (no request reached the router): logged as Envoy
/// logs it, with the reply's status and details, flag DPE, and no request headers.
pub fn log_refusal(logs: &AccessLogs, downstream: &Downstream, r: Refusal) {
    let mut e = Entry::new(downstream.clone());
    // Envoy's codec says HTTP/1.1 whatever the refused head said.
    e.request.version = Some(http::Version::HTTP_11);
    e.refused(r);
    e.finish();
    logs.emit(&e);
}

/// The entry of a request still waiting for its response: if the request is dropped before
/// (the client went away), it is logged then, with flag DC and no response code, as Envoy
/// logs a downstream disconnect; or, when the codec refused its body, with that reply.
pub struct Pending {
    pub entry: Option<Box<Entry>>,
    logs: Arc<AccessLogs>,
    body_refusal: Option<BodyRefusal>,
}

impl Pending {
    pub fn new(entry: Entry, logs: Arc<AccessLogs>, body_refusal: Option<BodyRefusal>) -> Pending {
        Pending {
            entry: Some(Box::new(entry)),
            logs,
            body_refusal,
        }
    }

    /// The response arrived: the entry goes with its body (see [`wrap`]).
    pub fn respond(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        match self.entry.take() {
            Some(entry) => wrap(response, entry, self.logs.clone()),
            None => response,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            match self.body_refusal.as_ref().and_then(BodyRefusal::get) {
                Some(r) => e.refused(r),
                None => {
                    e.flags.insert("DC");
                    e.details = Some("downstream_remote_disconnect".into());
                }
            }
            e.finish();
            self.logs.emit(&e);
        }
    }
}

/// A response body that counts the bytes sent and writes the access log once: at its end, or
/// when dropped before it (the client went away: flag DC, as Envoy).
pub struct Logged {
    inner: ProxyBody,
    entry: Option<Box<Entry>>,
    logs: Arc<AccessLogs>,
}

impl Logged {
    fn finish(&mut self, complete: bool) {
        if let Some(mut e) = self.entry.take() {
            if !complete {
                e.flags.insert("DC");
            }
            e.finish();
            self.logs.emit(&e);
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(e)) = (frame.data_ref(), self.entry.as_mut()) {
                    e.bytes_sent += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            // An upstream that fails mid-body: the response is cut short but logged whole.
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(true),
            Poll::Pending => {}
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

impl Drop for Logged {
    fn drop(&mut self) {
        // A body already at its end (empty, or every byte taken) may be dropped unpolled.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

/// A request body that counts its bytes and notes when it ended.
pub struct Counted<B> {
    inner: B,
    count: Arc<BodyCount>,
    started: Instant,
}

impl<B> Counted<B> {
    pub fn new(inner: B, count: Arc<BodyCount>, started: Instant) -> Self {
        Counted {
            inner,
            count,
            started,
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if self.inner.is_end_stream() {
                    self.count.ended(self.started.elapsed());
                }
            }
            Poll::Ready(None) => self.count.ended(self.started.elapsed()),
            _ => {}
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
