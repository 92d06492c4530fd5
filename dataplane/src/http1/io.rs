//! Socket helpers shared by the server and the client: reads into a `BytesMut` without
//! zeroing, a read into a stack buffer (so an idle connection holds no heap buffer), writes
//! of a whole buffer, and per-thread pools of write buffers and header maps reused across
//! requests.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much a read asks for at least.
pub const READ_SIZE: usize = 8 * 1024;

/// Write buffers kept per thread, and the largest one kept.
const POOLED: usize = 256;
const POOLED_CAPACITY: usize = 128 * 1024;

/// Header maps kept per thread, and the largest capacity kept (a map grows to its largest
/// head and keeps that size).
const POOLED_MAPS: usize = 256;
const POOLED_MAP_CAPACITY: usize = 128;

thread_local! {
    static WRITE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static HEADER_MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty header map with room for `capacity` fields, reused if one is free on this
/// thread. A map is two allocations (its index and its entries), taken and freed twice per
/// proxied HTTP/1 exchange otherwise: ~6% of a request's instructions (callgrind).
pub fn take_headers(capacity: usize) -> HeaderMap {
    match HEADER_MAPS.with_borrow_mut(Vec::pop) {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Gives a header map back once its head is written; the next head on this thread reuses its
/// allocations.
pub fn give_headers(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > POOLED_MAP_CAPACITY {
        return;
    }
    map.clear();
    HEADER_MAPS.with_borrow_mut(|pool| {
        if pool.len() < POOLED_MAPS {
            pool.push(map);
        }
    });
}

/// An empty write buffer, reused if one is free on this thread.
pub fn take_buffer() -> Vec<u8> {
    WRITE_BUFFERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(4096))
}

/// Gives a write buffer back for the next request.
pub fn give_buffer(mut b: Vec<u8>) {
    if b.capacity() > POOLED_CAPACITY {
        return;
    }
    b.clear();
    WRITE_BUFFERS.with_borrow_mut(|pool| {
        if pool.len() < POOLED {
            pool.push(b);
        }
    });
}

/// Reads once into `buf`'s spare room (made at least `want` bytes); `Ok(0)` at end of stream.
pub fn poll_read_buf<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < want.clamp(1, 1024) {
        buf.reserve(want.max(READ_SIZE));
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// Reads once into a stack buffer and returns what was read in a heap buffer of that size
/// (empty at end of stream): the read an idle connection waits on.
pub fn poll_read_fresh<S: AsyncRead + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
) -> Poll<io::Result<BytesMut>> {
    let mut stack = [MaybeUninit::<u8>::uninit(); READ_SIZE];
    let mut rb = ReadBuf::uninit(&mut stack);
    ready!(Pin::new(io).poll_read(cx, &mut rb))?;
    Poll::Ready(Ok(BytesMut::from(rb.filled())))
}

/// Writes `data[*at..]`, advancing `at`; ready once all is written.
pub fn poll_write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    data: &[u8],
    at: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *at < data.len() {
        let n = ready!(Pin::new(&mut *io).poll_write(cx, &data[*at..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *at += n;
    }
    Poll::Ready(Ok(()))
}

/// Writes all of `data` and flushes.
pub async fn write_all<S: AsyncWrite + Unpin>(io: &mut S, data: &[u8]) -> io::Result<()> {
    let mut at = 0;
    std::future::poll_fn(|cx| poll_write_all(io, data, &mut at, cx)).await?;
    std::future::poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await
}
