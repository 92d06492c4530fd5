//! One request on an upstream HTTP/1.1 connection from the pool: the head and body written,
//! the response head read; the response body reads the same connection as it is polled and
//! gives the connection back to the pool when it ended cleanly.
//!
//! A request that fails on a reused connection before any byte of a response arrived and
//! before its body was touched is sent once more on a new connection: the peer may have
//! closed the idle connection just as we took it (hyper-util's client does the same).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::io::AsyncWrite;

use super::codec::{self, Framing, ResponseHead};
use super::decode::{Decoded, Decoder};
use super::encode::{BodyWriter, Out, WriteError};
use super::io::{give_buffer, give_headers, poll_read_buf, take_buffer};
use super::pool::{Conn, Connector};
use super::upgrade::OnUpgrade;
use crate::tls::rewind::Rewind;
use crate::upstream::pool::{Body, BoxError};

/// Where the client records the local address of the connection a request went out on
/// (for the access log's `%UPSTREAM_LOCAL_ADDRESS%`): put in the request's extensions, read
/// after the request even if no response came.
#[derive(Clone, Default)]
pub struct LocalAddr(Arc<Mutex<Option<SocketAddr>>>);

impl LocalAddr {
    pub fn get(&self) -> Option<SocketAddr> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, addr: Option<SocketAddr>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum Error {
    /// No connection could be made (Envoy: "remote connection failure" / "connection
    /// timeout").
    Connect(String),
    /// The connection failed or closed before a whole response head (Envoy: "connection
    /// termination").
    Reset(String),
    /// The response was not HTTP/1 (Envoy: "protocol error", 502).
    Protocol(String),
}

/// Sends `req` to the connector's host and returns the response once its head arrived.
pub async fn request(connector: &Connector, req: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, body) = req.into_parts();
    let head_request = parts.method == Method::HEAD;
    let asks_upgrade = parts.headers.contains_key(header::UPGRADE);
    let framing = request_framing(&parts, &body);
    let local = parts.extensions.get::<LocalAddr>().cloned();
    let mut body = Some(body);
    let mut fresh_only = false;
    let result = loop {
        let conn = if fresh_only {
            None
        } else {
            connector.checkout()
        };
        let mut conn = match conn {
            Some(c) => c,
            None => connector.connect().await.map_err(|e| Error::Connect(e.0))?,
        };
        if let Some(local) = &local {
            local.set(conn.local);
        }
        let mut out = take_buffer();
        write_head(&mut out, &parts, framing);
        match exchange(&mut conn, out, &mut body, framing, head_request).await {
            Ok((head, rest)) => break Ok(respond(connector, conn, head, rest, asks_upgrade)),
            Err(Failed { error, retry }) => {
                if retry && conn.reused && !fresh_only && body.is_some() {
                    tracing::debug!(error = ?error, "reused upstream connection failed: once more on a new one");
                    fresh_only = true;
                    continue;
                }
                break Err(error);
            }
        }
    };
    give_headers(parts.headers);
    result
}

struct Failed {
    error: Error,
    /// Nothing of a response arrived and the body was not touched.
    retry: bool,
}

/// The request body still being written when the response head arrived.
type Unsent = Option<BodyWriter<Body>>;

/// Writes the request and reads the response head. The body is taken only once writing it
/// starts; until then a failure leaves it in `body` for another try.
///
/// The response is read while the body is written: an upstream may answer before it read
/// the whole body (a 413, an early 200), and may close its side at once. Its answer is the
/// response, as Envoy forwards it; what is left of the body goes with it (see
/// [`UpstreamBody`]).
async fn exchange(
    conn: &mut Conn,
    out: Vec<u8>,
    body: &mut Option<Body>,
    framing: Out,
    head_request: bool,
) -> Result<(ResponseHead, Unsent), Failed> {
    let reset = |e: std::io::Error, retry| Failed {
        error: Error::Reset(format!("connection error: {e}")),
        retry,
    };
    let mut writer = None;
    if framing == Out::None {
        let mut at = 0;
        let r = poll_fn(|cx| super::io::poll_write_all(&mut conn.io, &out, &mut at, cx)).await;
        let r = match r {
            Ok(()) => poll_fn(|cx| Pin::new(&mut conn.io).poll_flush(cx)).await,
            Err(e) => Err(e),
        };
        give_buffer(out);
        r.map_err(|e| reset(e, true))?;
    } else {
        let Some(b) = body.take() else {
            return Err(Failed {
                error: Error::Reset("request body already sent".into()),
                retry: false,
            });
        };
        writer = Some(BodyWriter::new(b, framing, out));
    }
    // A write that failed (the upstream closed its side): its answer may still be readable.
    let mut write_failed = None;
    let mut got_bytes = false;
    let head = poll_fn(|cx| {
        if let Some(w) = &mut writer {
            match w.poll_write(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => {
                    if let Some(w) = writer.take() {
                        give_buffer(w.into_buffer());
                    }
                }
                Poll::Ready(Err(WriteError::Io(e))) => {
                    writer = None;
                    write_failed = Some(e);
                }
                Poll::Ready(Err(WriteError::Body(e))) => {
                    return Poll::Ready(Err(Failed {
                        error: Error::Reset(format!("request body: {e}")),
                        retry: false,
                    }));
                }
                Poll::Pending => {}
            }
        }
        loop {
            if !conn.buf.is_empty() {
                got_bytes = true;
                match codec::parse_response(&mut conn.buf, head_request) {
                    // Interim responses (100 Continue...) are not forwarded; 101 is final.
                    Ok(Some(head))
                        if head.parts.status.is_informational()
                            && head.parts.status != StatusCode::SWITCHING_PROTOCOLS =>
                    {
                        continue;
                    }
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(e) => {
                        return Poll::Ready(Err(Failed {
                            error: Error::Protocol(format!("invalid HTTP/1 response head: {e:?}")),
                            retry: false,
                        }));
                    }
                }
            }
            let retry = !got_bytes && framing == Out::None;
            match poll_read_buf(&mut conn.io, &mut conn.buf, 0, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) if n > 0 => {}
                Poll::Ready(read) => {
                    return Poll::Ready(Err(match (write_failed.take(), read) {
                        (Some(e), _) | (None, Err(e)) => reset(e, retry),
                        (None, Ok(_)) => Failed {
                            error: Error::Reset("connection closed before a response".into()),
                            retry,
                        },
                    }));
                }
            }
        }
    })
    .await?;
    Ok((head, writer))
}

/// The response, its body reading the connection; the connection goes back to the pool at
/// once when there is no body.
fn respond(
    connector: &Connector,
    conn: Conn,
    head: ResponseHead,
    unsent: Unsent,
    asks_upgrade: bool,
) -> Response<Body> {
    let ResponseHead {
        mut parts,
        framing,
        keep_alive,
    } = head;
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        if asks_upgrade {
            let rest = conn.buf.to_vec();
            parts
                .extensions
                .insert(OnUpgrade::ready(Box::new(Rewind::new(rest, conn.io))));
        }
        return Response::from_parts(parts, empty());
    }
    if framing == Framing::Empty {
        // A request not sent whole leaves the connection in the middle of a message.
        if keep_alive && unsent.is_none() {
            connector.release(conn);
        }
        return Response::from_parts(parts, empty());
    }
    let body = UpstreamBody {
        conn: Some(conn),
        decoder: Decoder::new(framing),
        keep_alive,
        // No allocation for a plaintext cluster: the key is copied.
        connector: connector.clone(),
        unsent,
    };
    Response::from_parts(parts, body.boxed())
}

fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// How the request body is delimited: its `Content-Length`; none for an empty body; its
/// exact size when known; else chunked.
fn request_framing(parts: &http::request::Parts, body: &Body) -> Out {
    if let Some(n) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| codec::parse_length(v.as_bytes()))
    {
        return if n == 0 { Out::None } else { Out::Length(n) };
    }
    if body.is_end_stream() {
        return Out::None;
    }
    match body.size_hint().exact() {
        Some(0) => Out::None,
        Some(n) => Out::Length(n),
        None => Out::Chunked,
    }
}

/// `METHOD path HTTP/1.1`, `host` from the URI when the request has none (as hyper's client
/// did), the headers, and the framing header when the headers did not carry one.
fn write_head(out: &mut Vec<u8>, parts: &http::request::Parts, framing: Out) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let headers: &HeaderMap = &parts.headers;
    if !headers.contains_key(header::HOST)
        && let Some(a) = parts.uri.authority()
    {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(a.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    codec::write_headers(out, headers, |name| name == header::TRANSFER_ENCODING);
    match framing {
        Out::Length(n) if !headers.contains_key(header::CONTENT_LENGTH) => {
            codec::write_number_header(out, b"content-length", n)
        }
        Out::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Out::None
            if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)
                && !headers.contains_key(header::CONTENT_LENGTH) =>
        {
            out.extend_from_slice(b"content-length: 0\r\n")
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// A response body read from its connection as it is polled; the rest of a request body
/// the upstream answered early is written meanwhile (an upstream may stream its answer as it
/// reads), and dropped once the response ended: that request was cut short, as Envoy resets
/// the upstream stream of a finished response.
struct UpstreamBody {
    conn: Option<Conn>,
    decoder: Decoder,
    keep_alive: bool,
    connector: Connector,
    unsent: Unsent,
}

impl UpstreamBody {
    fn end(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && self.unsent.is_none()
        {
            self.connector.release(conn);
        }
        self.unsent = None;
    }

    /// Writes what there is of the request body; a failure stops it (the upstream stopped
    /// reading) and the connection is not reused.
    fn poll_unsent(&mut self, cx: &mut Context<'_>) {
        let (Some(w), Some(conn)) = (&mut self.unsent, &mut self.conn) else {
            return;
        };
        match w.poll_write(&mut conn.io, cx) {
            Poll::Pending => {}
            Poll::Ready(Ok(())) => {
                if let Some(w) = self.unsent.take() {
                    give_buffer(w.into_buffer());
                }
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = ?e, "request body after an early response: not sent whole");
                self.unsent = None;
                self.keep_alive = false;
            }
        }
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        this.poll_unsent(cx);
        loop {
            let Some(conn) = &mut this.conn else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        this.end();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
            let want = this
                .decoder
                .remaining()
                .map_or(0, |n| n.min(64 * 1024) as usize);
            match poll_read_buf(&mut conn.io, &mut conn.buf, want, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) if n > 0 => {}
                Poll::Ready(Ok(_)) => {
                    // The end of a close-delimited body; else the upstream cut it short.
                    this.conn = None;
                    return match this.decoder.eof() {
                        Ok(()) => Poll::Ready(None),
                        Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
                    };
                }
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
