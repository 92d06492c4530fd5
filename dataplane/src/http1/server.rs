//! The downstream HTTP/1.0 and 1.1 server: one task per connection, reading requests,
//! handing each to the connection manager's handler and writing its response, in order
//! (pipelined requests wait in the read buffer until the response before them is written).
//!
//! Memory: between requests the connection holds no buffer (it waits in a read into a stack
//! buffer); the in-flight part of an exchange (head, body pump, response writer and the
//! handler's future) lives in one box made per request, so the task itself stays small.

use std::borrow::Borrow;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::body::{self, Ready, Sender};
use super::codec::{self, Framing, HeadError, RequestHead};
use super::decode::{Decoded, Decoder};
use super::encode::{BodyWriter, Out, WriteError};
use super::io::{
    give_buffer, give_headers, poll_read_buf, poll_read_fresh, take_buffer, write_all,
};
use super::upgrade::{self, Pending};
use crate::tls::rewind::Rewind;
use crate::upstream::pool::{self, BoxError};

/// What the connection needs besides its socket.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time allowed for a request head once its first byte arrived (60 s, as before).
    pub header_timeout: Duration,
    /// Close a connection idle (no request in flight) this long.
    pub idle_timeout: Option<Duration>,
    /// After a drain starts, the connection is closed this long later at the latest.
    pub drain_deadline: Duration,
    /// `server` of the replies the codec makes itself (400, 431...).
    pub server_name: Option<HeaderValue>,
    /// Upgrades (`Connection: upgrade`) may be answered with 101 and spliced.
    pub upgrades: bool,
    /// Requests the codec ends itself (a refused or cut-off head) go to the handler too, as
    /// a request with only a [`Refusal`] in its extensions (for the access log: Envoy's
    /// connection manager has a stream for them and logs it); its response is dropped.
    pub tell_refusals: bool,
}

/// A request the codec ended itself: refused with a reply, or cut off by the client in the
/// middle of its head (no reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// `None` when the client cut the head off.
    pub status: Option<StatusCode>,
    /// Envoy's `%RESPONSE_CODE_DETAILS%` for it.
    pub details: &'static str,
    /// The reply's body length (`%BYTES_SENT%`).
    pub body_bytes: u64,
}

impl Refusal {
    /// A head the client cut off: Envoy's downstream disconnect.
    pub const CUT_OFF: Refusal = Refusal {
        status: None,
        details: "downstream_remote_disconnect",
        body_bytes: 0,
    };
}

/// In a request's extensions (when refusals are logged): set when its body turned out
/// malformed, so the codec answered 400 and dropped the handler. Its access log entry then
/// says that (Envoy's `DPE`, `http1.codec_error`), not a client that went away.
#[derive(Debug, Clone, Default)]
pub struct BodyRefusal(Arc<OnceLock<Refusal>>);

impl BodyRefusal {
    pub fn get(&self) -> Option<Refusal> {
        self.0.get().copied()
    }
}

/// What to do after an exchange.
enum Next {
    KeepAlive,
    Close,
    /// The response was a 101: the socket goes to the upgrade.
    Upgrade(Pending),
}

/// Serves requests on `io` until the peer closes, an error, the idle timeout, or a drain
/// (an idle connection closes at once; a busy one after its response, which says
/// `connection: close`). `buf` holds bytes already read from the connection.
///
/// `opts` is the options or a shared pointer to them (an `Arc` the listener's connections
/// share keeps ~90 bytes out of every connection).
// An async fn would keep its arguments twice: see the comment in the body.
#[allow(clippy::manual_async_fn)]
pub fn serve<S, O, H, F, B>(
    mut io: S,
    mut buf: BytesMut,
    opts: O,
    mut handler: H,
    mut drain: watch::Receiver<bool>,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    O: Borrow<Options>,
    H: FnMut(Request<pool::Body>) -> F + Send,
    F: Future<Output = Response<B>> + Send,
    B: Body<Data = Bytes> + Unpin + Send,
    B::Error: Into<BoxError>,
{
    // Not an async fn: one keeps its arguments twice, as arguments and as its body's locals
    // (rust-lang/rust#62958), 224 bytes of every connection's task; an async block uses
    // what it captured in place.
    async move {
        let opts = opts.borrow();
        loop {
            if buf.is_empty() {
                // Even empty, the buffer may hold the allocation its last head was split from.
                drop(std::mem::take(&mut buf));
                let idle = async {
                    match opts.idle_timeout {
                        Some(t) => tokio::time::sleep(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    read = poll_fn(|cx| poll_read_fresh(&mut io, cx)) => match read {
                        Ok(fresh) if !fresh.is_empty() => buf = fresh,
                        _ => return,
                    },
                    () = idle => {
                        tracing::debug!("idle timeout: closing the connection");
                        break;
                    }
                    // A dropped sender (no drain will ever come) is not a drain.
                    true = async { drain.wait_for(|d| *d).await.is_ok() } => break,
                }
            }
            let exchange =
                crate::boxed::in_place(|| exchange(&mut io, &mut buf, opts, &mut handler, &drain));
            let next = tokio::select! {
                next = exchange => next,
                // A receiver of its own, made here: the exchange reads `drain` meanwhile, and an idle
                // connection keeps no second one.
                true = async {
                    let mut deadline = drain.clone();
                    deadline.wait_for(|d| *d).await.is_ok()
                        && { tokio::time::sleep(opts.drain_deadline).await; true }
                } => {
                    tracing::debug!("drain deadline passed: connection closed");
                    return;
                }
            };
            match next {
                Next::KeepAlive => {}
                Next::Close => break,
                Next::Upgrade(pending) => {
                    let rest = std::mem::take(&mut buf).to_vec();
                    pending.fulfill(Box::new(Rewind::new(rest, io)));
                    return;
                }
            }
        }
        let _ = io.shutdown().await;
    }
}

/// Feeds the request body from the socket into the request's body as it is wanted.
struct Pump {
    sender: Option<Sender>,
    decoder: Decoder,
    /// The handler dropped the body before its end: the rest is never read.
    abandoned: bool,
    failed: bool,
}

/// Why the request body could not be read.
enum PumpError {
    /// Malformed framing (a bad chunk): 400 when no response was sent yet.
    Malformed,
    /// The client went away.
    Closed,
}

impl Pump {
    /// The whole request body was read.
    fn complete(&self) -> bool {
        self.decoder.is_done() && !self.abandoned && !self.failed
    }

    /// The request body was read whole, or the rest of it is already in `buf`: Envoy's codec
    /// parses all it has read at once, so for it such a request is complete when the
    /// response starts (a handler streaming the body back answers before our pump caught up).
    fn read_or_buffered(&self, buf: &BytesMut) -> bool {
        if self.abandoned || self.failed || self.sender.as_ref().is_some_and(Sender::is_dropped) {
            return false;
        }
        if self.decoder.is_done() {
            return true;
        }
        // Rare (a response before the request's end): decoding a copy costs nothing else.
        let mut decoder = self.decoder;
        let mut rest = buf.clone();
        loop {
            match decoder.decode(&mut rest) {
                Ok(Decoded::End) => return true,
                Ok(Decoded::Data(_)) => {}
                Ok(Decoded::NeedMore) | Err(_) => return false,
            }
        }
    }

    fn poll<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), PumpError>> {
        loop {
            let Some(tx) = &mut self.sender else {
                return Poll::Ready(Ok(()));
            };
            match tx.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ready::Dropped) => {
                    self.sender = None;
                    self.abandoned = !self.decoder.is_done();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ready::Free) => {}
            }
            match self.decoder.decode(buf) {
                Ok(Decoded::Data(data)) => tx.send(Ok(data)),
                Ok(Decoded::End) => self.sender = None,
                Ok(Decoded::NeedMore) => {
                    let want = self.decoder.remaining().map_or(0, |n| n as usize);
                    match poll_read_buf(io, buf, want, cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(n)) if n > 0 => {}
                        Poll::Ready(_) => {
                            tx.send(Err("downstream closed before the request body ended".into()));
                            self.sender = None;
                            self.failed = true;
                            return Poll::Ready(Err(PumpError::Closed));
                        }
                    }
                }
                Err(e) => {
                    tx.send(Err(Box::new(e)));
                    self.sender = None;
                    self.failed = true;
                    return Poll::Ready(Err(PumpError::Malformed));
                }
            }
        }
    }
}

/// One request and its response.
async fn exchange<S, H, F, B>(
    io: &mut S,
    buf: &mut BytesMut,
    opts: &Options,
    handler: &mut H,
    drain: &watch::Receiver<bool>,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: FnMut(Request<pool::Body>) -> F,
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let head = match read_head(io, buf, opts.header_timeout).await {
        Ok(Some(head)) => head,
        Ok(None) => return Next::Close,
        Err(HeadEnd::CutOff) => {
            // Envoy logs a request whose head the client cut off (a disconnect, no reply).
            // Boxed, here and below: a refusal is rare, and inline its handler future would
            // double the size of every exchange (rustc lays it out beside the request's).
            Box::pin(tell(handler, opts, Refusal::CUT_OFF)).await;
            return Next::Close;
        }
        Err(HeadEnd::Refused(e)) => {
            tracing::debug!(error = ?e, "malformed request head");
            let refusal = reply_error(io, e.status(), e.details(), opts).await;
            Box::pin(tell(handler, opts, refusal)).await;
            return Next::Close;
        }
    };
    let RequestHead {
        mut parts,
        framing,
        keep_alive,
        expect_continue,
    } = head;
    let head_request = parts.method == Method::HEAD;
    let version = parts.version;
    let (sender, body) = match framing {
        Framing::Empty | Framing::Close => (None, empty()),
        Framing::Length(n) => {
            let (tx, rx) = body::channel(Some(n));
            (Some(tx), rx.boxed())
        }
        Framing::Chunked => {
            let (tx, rx) = body::channel(None);
            (Some(tx), rx.boxed())
        }
    };
    // Envoy answers `Expect: 100-continue` itself, at once, and does not forward it.
    if expect_continue
        && sender.is_some()
        && write_all(io, b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return Next::Close;
    }
    let mut upgrade = None;
    if opts.upgrades && asks_upgrade(&parts.headers) {
        let (pending, on) = upgrade::pending();
        parts.extensions.insert(on);
        upgrade = Some(pending);
    }
    let body_refusal = (opts.tell_refusals && sender.is_some()).then(|| {
        let slot = BodyRefusal::default();
        parts.extensions.insert(slot.clone());
        slot
    });
    let mut pump = Pump {
        sender,
        decoder: Decoder::new(framing),
        abandoned: false,
        failed: false,
    };
    let mut respond = pin!(handler(Request::from_parts(parts, body)));
    let response = poll_fn(|cx| {
        if let Poll::Ready(r) = respond.as_mut().poll(cx) {
            return Poll::Ready(Ok(r));
        }
        if let Poll::Ready(Err(e)) = pump.poll(io, buf, cx) {
            return Poll::Ready(Err(e));
        }
        // With no body left to read, watch for the client going away: the request is then
        // dropped (its upstream exchange cancelled, logged as Envoy's DC), as hyper and Envoy
        // do. Bytes of a pipelined request wait in the buffer, up to a head's limit.
        if pump.sender.is_none() && buf.len() < codec::MAX_HEAD {
            match poll_read_fresh(io, cx) {
                Poll::Ready(Ok(more)) if !more.is_empty() => {
                    buf.extend_from_slice(&more);
                    cx.waker().wake_by_ref();
                }
                Poll::Ready(_) => return Poll::Ready(Err(PumpError::Closed)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
    .await;
    let response = match response {
        Ok(r) => r,
        Err(PumpError::Malformed) => {
            let refusal = reply_error(io, StatusCode::BAD_REQUEST, codec::CODEC_ERROR, opts).await;
            // Before the handler is dropped (its entry is logged then).
            if let Some(slot) = &body_refusal {
                let _ = slot.0.set(refusal);
            }
            return Next::Close;
        }
        Err(PumpError::Closed) => return Next::Close,
    };
    let (rparts, rbody) = response.into_parts();
    let status = rparts.status;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(pending) = upgrade else {
            return Next::Close;
        };
        let mut out = take_buffer();
        codec::write_status_line(&mut out, status);
        write_head_fields(&mut out, &rparts.headers, None, false);
        out.extend_from_slice(b"\r\n");
        let written = write_all(io, &out).await;
        give_buffer(out);
        return match written {
            Ok(()) => Next::Upgrade(pending),
            Err(_) => Next::Close,
        };
    }
    // A response before the whole request body was read (an upstream that answered first)
    // ends the connection, said in the head, as Envoy does: its HTTP/1 connection manager
    // closes when a response starts before the request is complete (the body keeps flowing
    // meanwhile, for an upstream that streams its answer as it reads).
    let close = !keep_alive
        || version != Version::HTTP_11
        || *drain.borrow()
        || !pump.read_or_buffered(buf)
        || !codec::keep_alive(&rparts.headers, Version::HTTP_11);
    let mut out = take_buffer();
    codec::write_status_line(&mut out, status);
    let framing = response_framing(&rparts.headers, status, &rbody);
    // A HEAD response announces the length a GET would have had, without the body.
    let has_length = rparts.headers.contains_key(header::CONTENT_LENGTH);
    // Not for a HEAD response with no body behind it: its GET's length is unknown.
    let unknown = head_request && rbody.is_end_stream();
    let framing_header = match framing {
        Out::Length(n) if !has_length && !unknown => Some(n),
        _ => None,
    };
    let framing = if head_request { Out::None } else { framing };
    write_head_fields(&mut out, &rparts.headers, framing_header, close);
    give_headers(rparts.headers);
    if framing == Out::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let close = close || framing == Out::Close;
    let mut writer = BodyWriter::new(rbody, framing, out);
    let written = poll_fn(|cx| {
        // The request body keeps flowing while the response is written (an upstream may
        // answer before it has read the whole request).
        let _ = pump.poll(io, buf, cx);
        writer.poll_write(io, cx)
    })
    .await;
    give_buffer(writer.into_buffer());
    match written {
        Ok(()) if !close && pump.complete() => Next::KeepAlive,
        Ok(()) => Next::Close,
        Err(WriteError::Io(e)) => {
            tracing::debug!(error = %e, "writing the response failed");
            Next::Close
        }
        Err(WriteError::Body(e)) => {
            tracing::debug!(error = %e, "response body failed: closing the connection");
            Next::Close
        }
    }
}

/// Why no request head came but for the header timeout.
enum HeadEnd {
    Refused(HeadError),
    /// The client closed (or reset) the connection in the middle of a head.
    CutOff,
}

/// Reads until a whole request head is buffered and parses it; `Ok(None)` when the
/// connection closed, failed or took longer than `timeout`.
async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<Option<RequestHead>, HeadEnd> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(head) = codec::parse_request(buf).map_err(HeadEnd::Refused)? {
            return Ok(Some(head));
        }
        let read = poll_fn(|cx| poll_read_buf(io, buf, 0, cx));
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(n)) if n > 0 => {}
            // Empty lines before a request are no start of one (RFC 9112 section 2.2).
            Ok(_) if buf.iter().all(|b| matches!(b, b'\r' | b'\n')) => return Ok(None),
            Ok(_) => return Err(HeadEnd::CutOff),
            Err(_) => {
                tracing::debug!("request head not complete within the header timeout: closing");
                return Ok(None);
            }
        }
    }
}

/// How the response body goes on the wire (for a GET): none where HTTP forbids one; its
/// `Content-Length` when it has one; the body's exact size when known; else chunked.
fn response_framing<B: Body>(headers: &HeaderMap, status: StatusCode, body: &B) -> Out {
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Out::None;
    }
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| codec::parse_length(v.as_bytes()))
    {
        return if n == 0 { Out::None } else { Out::Length(n) };
    }
    if body.is_end_stream() {
        return Out::Length(0);
    }
    match body.size_hint().exact() {
        Some(n) => Out::Length(n),
        None => Out::Chunked,
    }
}

/// The header fields of a response head: its own (but framing, which is ours), the
/// `content-length` we chose, `date` when missing (as hyper added it), `connection: close`.
fn write_head_fields(out: &mut Vec<u8>, headers: &HeaderMap, length: Option<u64>, close: bool) {
    codec::write_headers(out, headers, |name| {
        name == header::TRANSFER_ENCODING || (close && name == header::CONNECTION)
    });
    if let Some(n) = length {
        codec::write_number_header(out, b"content-length", n);
    }
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        super::date::write(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
}

/// Hands a request the codec ended itself to the handler (see [`Options::tell_refusals`]).
async fn tell<H, F, B>(handler: &mut H, opts: &Options, refusal: Refusal)
where
    H: FnMut(Request<pool::Body>) -> F,
    F: Future<Output = Response<B>>,
{
    if opts.tell_refusals {
        let mut req = Request::new(empty());
        req.extensions_mut().insert(refusal);
        drop(handler(req).await);
    }
}

/// Envoy's reply to a request its codec refused: the status, its reason as a text body,
/// and `connection: close` (the caller closes); what it was, for the access log.
async fn reply_error<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: StatusCode,
    details: &'static str,
    opts: &Options,
) -> Refusal {
    let reason = status.canonical_reason().unwrap_or("");
    let mut out = take_buffer();
    codec::write_status_line(&mut out, status);
    codec::write_number_header(&mut out, b"content-length", reason.len() as u64);
    out.extend_from_slice(b"content-type: text/plain\r\n");
    out.extend_from_slice(b"date: ");
    super::date::write(&mut out);
    out.extend_from_slice(b"\r\n");
    if let Some(server) = &opts.server_name {
        out.extend_from_slice(b"server: ");
        out.extend_from_slice(server.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(reason.as_bytes());
    let _ = write_all(io, &out).await;
    give_buffer(out);
    Refusal {
        status: Some(status),
        details,
        body_bytes: reason.len() as u64,
    }
}

/// `Connection: upgrade` with an `Upgrade` header.
fn asks_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

fn empty() -> pool::Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}
