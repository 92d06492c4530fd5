//! Writing a body after its head: small frames are gathered with the head into one buffer
//! (one write for a whole small response), large ones are written as they are; chunked
//! framing when the length is not known.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hyper::body::Body;
use tokio::io::AsyncWrite;

use super::codec::write_chunk_size;
use super::io::poll_write_all;
use crate::upstream::pool::BoxError;

/// A frame up to this size is copied into the write buffer; larger ones are written alone.
const COPY_LIMIT: usize = 16 * 1024;
/// Gathering stops once this much is buffered.
const GATHER_LIMIT: usize = 64 * 1024;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    /// No body is sent (HEAD, 204, 304, or empty).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 response of unknown length).
    Close,
}

/// Why writing stopped.
#[derive(Debug)]
pub enum WriteError {
    Io(io::Error),
    /// The body failed (an upstream reset, a route idle timeout) or did not match its
    /// `Content-Length`: the message is cut short and the connection must close.
    Body(BoxError),
}

/// Writes a head (already in `out`) and then the body.
pub struct BodyWriter<B> {
    body: Option<B>,
    framing: Out,
    out: Vec<u8>,
    at: usize,
    big: Option<Bytes>,
    written: u64,
    /// The body is looked at before the head is written, so that a small response whose
    /// body is already here goes out in one write (one syscall, one TLS record) instead of
    /// two. A body failure found then waits here until the head is out, as if it came later.
    first: Option<Result<(), BoxError>>,
}

impl<B> BodyWriter<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    pub fn new(body: B, framing: Out, out: Vec<u8>) -> Self {
        BodyWriter {
            body: (framing != Out::None).then_some(body),
            framing,
            out,
            at: 0,
            big: None,
            written: 0,
            first: None,
        }
    }

    /// The write buffer, for reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.out
    }

    /// Ready once the head and the whole body are written and flushed.
    pub fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), WriteError>> {
        if self.first.is_none() {
            // With the head in `out`, gathering never pends: it adds what the body has now.
            self.first = Some(match self.gather(cx) {
                Err(WriteError::Body(e)) => Err(e),
                _ => Ok(()),
            });
        }
        loop {
            ready!(poll_write_all(io, &self.out, &mut self.at, cx)).map_err(WriteError::Io)?;
            self.out.clear();
            self.at = 0;
            if matches!(self.first, Some(Err(_)))
                && let Some(Err(e)) = self.first.replace(Ok(()))
            {
                return Poll::Ready(Err(WriteError::Body(e)));
            }
            if let Some(big) = &mut self.big {
                while big.has_remaining() {
                    let n = ready!(Pin::new(&mut *io).poll_write(cx, big.chunk()))
                        .map_err(WriteError::Io)?;
                    if n == 0 {
                        return Poll::Ready(Err(WriteError::Io(io::ErrorKind::WriteZero.into())));
                    }
                    big.advance(n);
                }
                self.big = None;
                if self.framing == Out::Chunked {
                    // The CRLF ending a chunk written alone leads the next write.
                    self.out.extend_from_slice(b"\r\n");
                }
                continue;
            }
            if self.body.is_none() {
                return Pin::new(&mut *io).poll_flush(cx).map_err(WriteError::Io);
            }
            if self.gather(cx)?.is_pending() {
                // Nothing more for now: what is written must reach the peer (TLS keeps
                // records until flushed).
                if let Poll::Ready(Err(e)) = Pin::new(&mut *io).poll_flush(cx) {
                    return Poll::Ready(Err(WriteError::Io(e)));
                }
                return Poll::Pending;
            }
        }
    }

    /// Moves frames from the body into the write buffer; ready when there is something to
    /// write (or the body ended), pending when the body has nothing now.
    fn gather(&mut self, cx: &mut Context<'_>) -> Result<Poll<()>, WriteError> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(Poll::Ready(()));
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not sent on HTTP/1 (Envoy drops them too unless enabled).
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if data.is_empty() {
                        continue;
                    }
                    let data = self.limit(data)?;
                    if self.framing == Out::Chunked {
                        write_chunk_size(&mut self.out, data.len());
                    }
                    if data.len() <= COPY_LIMIT {
                        self.out.extend_from_slice(&data);
                        if self.framing == Out::Chunked {
                            self.out.extend_from_slice(b"\r\n");
                        }
                        if self.out.len() >= GATHER_LIMIT {
                            return Ok(Poll::Ready(()));
                        }
                    } else {
                        // Written alone, after what is buffered.
                        self.big = Some(data);
                        return Ok(Poll::Ready(()));
                    }
                }
                Poll::Ready(None) => {
                    self.body = None;
                    self.finish()?;
                    return Ok(Poll::Ready(()));
                }
                Poll::Ready(Some(Err(e))) => {
                    self.body = None;
                    return Err(WriteError::Body(e.into()));
                }
                Poll::Pending if self.out.is_empty() => return Ok(Poll::Pending),
                Poll::Pending => return Ok(Poll::Ready(())),
            }
        }
    }

    /// Counts `data` against a `Content-Length`; more than announced is an error.
    fn limit(&mut self, data: Bytes) -> Result<Bytes, WriteError> {
        self.written += data.len() as u64;
        match self.framing {
            Out::Length(n) if self.written > n => Err(WriteError::Body(
                "body longer than its content-length".into(),
            )),
            _ => Ok(data),
        }
    }

    fn finish(&mut self) -> Result<(), WriteError> {
        match self.framing {
            Out::Chunked => {
                self.out.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
            Out::Length(n) if self.written < n => Err(WriteError::Body(
                "body shorter than its content-length".into(),
            )),
            _ => Ok(()),
        }
    }
}
