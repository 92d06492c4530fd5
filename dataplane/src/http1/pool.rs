//! Upstream HTTP/1.1 connections, pooled per worker (workers.rs: a connection lives on the
//! worker that made it, as in Envoy) and per (connect timeout, TLS origination, host
//! address): a LIFO stack of idle connections, no lock, channel or task per request. A
//! connection goes back when its response ended cleanly and both sides allow keep-alive; an
//! idle one is dropped after [`IDLE_TIMEOUT`], or when the peer closed it (checked before
//! reuse). The map is keyed by value with FxHash: the key is looked up twice per request
//! (checkout, release), and its parts come from config, not from peers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

use super::stream::Stream;
use crate::tls::client::Origination;

/// How long a connection may stay idle in the pool (hyper-util's legacy client's, which we
/// used before: 60 s; Envoy's default `idle_timeout` for upstream connections is 1 h).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections kept per key at most.
const MAX_IDLE: usize = 1024;

/// (connect timeout, TLS: the rustls config's address and the server name, host address).
pub type Key = (Duration, Option<(usize, ServerName<'static>)>, SocketAddr);

/// A connection and what was read on it but not used yet.
pub struct Conn {
    pub io: Stream,
    pub buf: BytesMut,
    /// Served at least one request before: a failure may be a race with the peer's close.
    pub reused: bool,
    /// Our address on the connection (for access logs).
    pub local: Option<SocketAddr>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

type IdleMap = HashMap<Key, Vec<Idle>, rustc_hash::FxBuildHasher>;

thread_local! {
    /// This worker's idle connections.
    static IDLE: RefCell<IdleMap> = RefCell::default();
}

/// Why a connection could not be made: the text is the cause, as the connect error of
/// hyper-util's connector said it ("timed out" picks Envoy's "connection timeout" body).
#[derive(Debug)]
pub struct ConnectError(pub String);

/// Where new connections for a key go and how they are made. Made per request, without
/// allocating for a plaintext cluster.
#[derive(Clone)]
pub struct Connector {
    pub key: Key,
    pub tls: Option<Origination>,
}

impl Connector {
    pub fn new(connect_timeout: Duration, tls: Option<Origination>, addr: SocketAddr) -> Self {
        // The config's address identifies it: the pool's key holds the origination's `Arc`
        // in each idle connection's TLS session, and the config map keeps it alive.
        let tls_key = tls
            .as_ref()
            .map(|o| (Arc::as_ptr(&o.config) as usize, o.name.clone()));
        Connector {
            key: (connect_timeout, tls_key, addr),
            tls,
        }
    }

    /// The most recently used idle connection the peer has not closed, if any.
    pub fn checkout(&self) -> Option<Conn> {
        loop {
            let idle = IDLE.with_borrow_mut(|map| {
                let stack = map.get_mut(&self.key)?;
                let idle = stack.pop()?;
                if idle.since.elapsed() >= IDLE_TIMEOUT {
                    // The newest is too old: so are all below it.
                    stack.clear();
                    return None;
                }
                Some(idle)
            })?;
            let mut conn = idle.conn;
            if !peer_closed(&mut conn.io) {
                return Some(conn);
            }
        }
    }

    /// Puts a connection whose exchange ended cleanly back for the next request.
    pub fn release(&self, mut conn: Conn) {
        if !conn.buf.is_empty() {
            // The peer sent more than its response: not a connection to trust.
            return;
        }
        conn.buf = BytesMut::new();
        conn.reused = true;
        let now = Instant::now();
        IDLE.with_borrow_mut(|map| {
            // The key is cloned only the first time (a TLS server name is an allocation).
            if !map.contains_key(&self.key) {
                map.insert(self.key.clone(), Vec::new());
            }
            let Some(stack) = map.get_mut(&self.key) else {
                return;
            };
            // Expired connections are at the bottom; drop them while we are here.
            let expired = stack
                .iter()
                .take_while(|i| now.duration_since(i.since) >= IDLE_TIMEOUT)
                .count();
            stack.drain(..expired);
            if stack.len() < MAX_IDLE {
                stack.push(Idle { conn, since: now });
            }
        });
    }

    /// A new connection: TCP, then TLS when the cluster has a transport socket, each within
    /// the connect timeout (Envoy counts a connection as made once its transport is).
    pub async fn connect(&self) -> Result<Conn, ConnectError> {
        let (timeout, _, addr) = self.key;
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(ConnectError(format!("tcp connect error: {e}"))),
            Err(_) => {
                return Err(ConnectError(
                    "tcp connect error: connection timed out".into(),
                ));
            }
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        let io = match &self.tls {
            None => Stream::Plain(tcp),
            Some(o) => {
                let handshake =
                    crate::tls::client::connect(tcp, o.config.clone(), o.name.clone(), &o.stats);
                match tokio::time::timeout(timeout, handshake).await {
                    Ok(Ok(s)) => Stream::Tls(Box::new(s)),
                    Ok(Err(e)) => return Err(ConnectError(format!("TLS handshake: {e}"))),
                    Err(_) => return Err(ConnectError("TLS handshake timed out".into())),
                }
            }
        };
        Ok(Conn {
            io,
            buf: BytesMut::new(),
            reused: false,
            local,
        })
    }
}

/// Whether the peer closed (or wrote to) an idle connection: a read that does not wait
/// must find nothing. An idle HTTP/1 connection has nothing to say; any byte or the end of
/// the stream means it cannot carry another request.
fn peer_closed(io: &mut Stream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [MaybeUninit::<u8>::uninit(); 1];
    let mut rb = ReadBuf::uninit(&mut byte);
    !matches!(Pin::new(io).poll_read(&mut cx, &mut rb), Poll::Pending)
}

/// Drops this worker's idle connections that outlived [`IDLE_TIMEOUT`] on every key (the
/// per-request paths only look at the keys they use).
pub fn sweep() {
    let now = Instant::now();
    IDLE.with_borrow_mut(|map| {
        map.retain(|_, stack| {
            stack.retain(|i| now.duration_since(i.since) < IDLE_TIMEOUT);
            !stack.is_empty()
        })
    });
}
