//! One accepted connection, from the socket to its network filter: the TLS inspector (when
//! configured) reads the ClientHello, the filter chain is chosen, TLS is terminated when the
//! chain has a TLS transport socket, and the HTTP connection manager or tcp_proxy serves it.
//!
//! `listener_filters_timeout` (Envoy's default 15 s) bounds the inspection and, unless the
//! chain sets `transport_socket_connect_timeout`, the TLS handshake too: a client that stalls
//! mid-handshake is closed instead of holding a connection forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::chain::{self, Hints};
use crate::config::Listener;
use crate::config::listener::{FilterChain, NetworkFilter};
use crate::http::Downstream;
use crate::runtime::Runtime;
use crate::tls::inspector::{self, Hello};
use crate::tls::rewind::Rewind;

/// The next downstream connection's `%CONNECTION_ID%`.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(0);

/// Serves one accepted connection to its end.
///
/// What comes before the network filter (inspection, chain choice, handshake) runs in its own
/// box: tokio allocates a task with room for the largest state of its future, and a
/// connection lives far longer in its filter than in those first steps.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    runtime: Arc<Runtime>,
    drain: watch::Receiver<bool>,
) {
    let prepared = Box::pin(prepare(stream, peer, &listener, &runtime)).await;
    match prepared {
        Some(Prepared::Plain(io, conn, chain)) => dispatch(io, conn, chain, runtime, drain).await,
        Some(Prepared::Tls(io, conn, chain)) => {
            Box::pin(dispatch(io, conn, chain, runtime, drain)).await
        }
        None => {}
    }
}

/// A connection ready for its network filter.
enum Prepared<'a> {
    Plain(Rewind<TcpStream>, Downstream, &'a FilterChain),
    Tls(
        Box<TlsStream<Rewind<TcpStream>>>,
        Downstream,
        &'a FilterChain,
    ),
}

/// Inspects the connection, picks its filter chain and terminates TLS; `None` when the
/// connection is closed instead.
async fn prepare<'a>(
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: &'a Listener,
    runtime: &Runtime,
) -> Option<Prepared<'a>> {
    let local = stream.local_addr().unwrap_or(peer);
    let id = NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed);
    let local_port = local.port();
    let deadline = listener.filters_timeout.map(|t| Instant::now() + t);
    let (hello, prefix) = if listener.tls_inspector {
        match within(deadline, inspector::inspect(&mut stream)).await {
            Some(Ok(inspected)) => inspected,
            Some(Err(e)) => {
                debug!(%peer, listener = %listener.name, error = %e, "tls_inspector: closing");
                return None;
            }
            None => {
                debug!(%peer, listener = %listener.name, "listener_filters_timeout: closing");
                return None;
            }
        }
    } else {
        (Hello::Plaintext, Vec::new())
    };
    let hints = match &hello {
        Hello::Tls { sni, alpn } => Hints {
            local_port,
            sni: sni.as_deref(),
            tls: true,
            alpn,
        },
        Hello::Plaintext => Hints {
            local_port,
            sni: None,
            tls: false,
            alpn: &[],
        },
    };
    let Some(chain) = chain::select(listener, &hints) else {
        debug!(%peer, listener = %listener.name, sni = ?hints.sni, "no filter chain matches: closing");
        return None;
    };
    let io = Rewind::new(prefix, stream);
    let Some(tls) = &chain.tls else {
        let conn = Downstream {
            id,
            peer,
            local,
            tls: None,
        };
        return Some(Prepared::Plain(io, conn, chain));
    };
    let config = match crate::tls::server::config(tls, &runtime.load().config.secrets) {
        Ok(c) => c,
        Err(e) => {
            debug!(%peer, listener = %listener.name, chain = %chain.name, error = %e, "no TLS config: closing");
            return None;
        }
    };
    let limit = chain
        .handshake_timeout
        .map(|t| Instant::now() + t)
        .or(deadline);
    match within(limit, crate::tls::server::accept(io, config, &tls.stats)).await {
        Some(Ok((tls, mut info))) => {
            // Envoy's requested server name is what a listener filter (tls_inspector) read,
            // not the handshake's: without the inspector %REQUESTED_SERVER_NAME% is empty.
            info.sni = hints.sni.map(str::to_string);
            let conn = Downstream {
                id,
                peer,
                local,
                tls: Some(Arc::new(info)),
            };
            Some(Prepared::Tls(Box::new(tls), conn, chain))
        }
        Some(Err(e)) => {
            debug!(%peer, listener = %listener.name, error = %e, "TLS handshake failed");
            None
        }
        None => {
            debug!(%peer, listener = %listener.name, "TLS handshake timed out: closing");
            None
        }
    }
}

/// Runs `f` until `deadline` (none: no limit); `None` when the deadline passed.
async fn within<T>(deadline: Option<Instant>, f: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), f).await.ok(),
        None => Some(f.await),
    }
}

async fn dispatch<S>(
    io: S,
    conn: Downstream,
    chain: &FilterChain,
    runtime: Arc<Runtime>,
    drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match &chain.filter {
        NetworkFilter::Http(hcm) => {
            crate::http::serve_connection(io, conn, hcm.clone(), runtime, drain).await
        }
        // Boxed: the tcp proxy's future is large and would otherwise size every HTTP
        // connection's task, idle keep-alive ones included.
        NetworkFilter::Tcp(proxy) => {
            Box::pin(crate::tcp::serve_connection(
                io,
                conn,
                proxy.clone(),
                runtime,
            ))
            .await
        }
    }
}
