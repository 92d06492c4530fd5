//! tcp_proxy: bytes both ways between the downstream and a host of the cluster, half-close
//! passed through (one side's FIN is forwarded as a shutdown of the other side's write), and
//! the connection closed after `idle_timeout` without traffic either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::config::listener::TcpProxy;
use crate::http::Downstream;
use crate::observe::access_log::Entry;
use crate::runtime::Runtime;
use crate::upstream::cluster::{ActiveRequest, HostState, UpstreamCluster};
use crate::upstream::outlier;

/// Serves one downstream connection (plaintext or TLS-terminated) to its end, then writes
/// its access log (if any).
pub async fn serve_connection<S>(
    downstream: S,
    conn: Downstream,
    proxy: TcpProxy,
    runtime: Arc<Runtime>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(logs) = proxy.access_log.clone() else {
        return proxy_connection(downstream, &proxy, runtime, &mut None).await;
    };
    let mut log = Some(Box::new(Entry::new(conn)));
    proxy_connection(downstream, &proxy, runtime, &mut log).await;
    if let Some(mut e) = log {
        e.finish();
        logs.emit(&e);
    }
}

async fn proxy_connection<S>(
    downstream: S,
    proxy: &TcpProxy,
    runtime: Arc<Runtime>,
    log: &mut Option<Box<Entry>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let snapshot = runtime.load();
    let note = |log: &mut Option<Box<Entry>>, flag: &str| {
        if let Some(e) = log {
            e.flags.insert(flag);
        }
    };
    if let Some(e) = log {
        e.upstream_cluster = Some(proxy.cluster.clone());
    }
    let Some(cluster) = snapshot.clusters.get(&proxy.cluster).cloned() else {
        tracing::debug!(cluster = %proxy.cluster, "tcp_proxy: no such cluster, closing");
        return note(log, "NC");
    };
    let Some(host) = cluster.pick(None, 0).cloned() else {
        tracing::debug!(cluster = %proxy.cluster, "tcp_proxy: no healthy upstream, closing");
        return note(log, "UH");
    };
    if let Some(e) = log {
        e.upstream_host = Some(host.addr);
        e.attempts = 1;
    }
    let _active = ActiveRequest::new(host.clone());
    let upstream = match tokio::time::timeout(
        cluster.config.connect_timeout,
        TcpStream::connect(host.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            connect_failed(&cluster, &host, false);
            if let Some(entry) = log
                && e.kind() == std::io::ErrorKind::ConnectionRefused
            {
                entry.transport_failure = Some("delayed_connect_error:_Connection_refused".into());
            }
            return note(log, "UF");
        }
        Err(_) => {
            connect_failed(&cluster, &host, true);
            return note(log, "UF");
        }
    };
    let _ = upstream.set_nodelay(true);
    if let Some(e) = log {
        e.upstream_local = upstream.local_addr().ok();
    }
    let upstream = match &cluster.config.tls {
        None => Upstream::Plain(upstream),
        Some(tls) => {
            let handshake = async {
                let config = crate::tls::client::config(tls, &snapshot.config.secrets)
                    .map_err(std::io::Error::other)?;
                let name = crate::tls::client::server_name(tls, None, host.addr.ip());
                crate::tls::client::connect(upstream, config, name, &tls.stats).await
            };
            match tokio::time::timeout(cluster.config.connect_timeout, handshake).await {
                Ok(Ok(s)) => Upstream::Tls(Box::new(s)),
                result => {
                    connect_failed(&cluster, &host, result.is_err());
                    return note(log, "UF");
                }
            }
        }
    };
    // Envoy's tcp_proxy counts a connection made as a success (LocalOriginConnectSuccessFinal).
    report(&cluster, &host, 200);
    drop(snapshot);
    let (dr, dw) = tokio::io::split(downstream);
    let counts = Counts::default();
    match upstream {
        Upstream::Plain(s) => {
            let (ur, uw) = s.into_split();
            copy(dr, dw, ur, uw, proxy.idle_timeout, &counts).await
        }
        Upstream::Tls(s) => {
            let (ur, uw) = tokio::io::split(*s);
            copy(dr, dw, ur, uw, proxy.idle_timeout, &counts).await
        }
    }
    if let Some(e) = log {
        e.bytes_received = counts.received.load(Ordering::Relaxed);
        e.bytes_sent = counts.sent.load(Ordering::Relaxed);
    }
}

/// Bytes from the downstream (received) and to it (sent), for the access log.
#[derive(Default)]
struct Counts {
    received: AtomicU64,
    sent: AtomicU64,
}

enum Upstream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Both directions until both ended, or the idle timeout.
async fn copy(
    dr: impl AsyncRead + Unpin,
    dw: impl AsyncWrite + Unpin,
    ur: impl AsyncRead + Unpin,
    uw: impl AsyncWrite + Unpin,
    idle_timeout: Option<Duration>,
    counts: &Counts,
) {
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let copy = async {
        let _ = tokio::join!(
            pipe(dr, uw, &last, start, &counts.received),
            pipe(ur, dw, &last, start, &counts.sent)
        );
    };
    match idle_timeout {
        None => copy.await,
        Some(idle) => {
            tokio::select! {
                _ = copy => {}
                _ = watchdog(idle, &last, start) => tracing::debug!("tcp_proxy: idle timeout"),
            }
        }
    }
}

/// Copies until EOF, then shuts the writer down (half-close).
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    last: &AtomicU64,
    start: Instant,
    counted: &AtomicU64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        counted.fetch_add(n as u64, Ordering::Relaxed);
        to.write_all(&buf[..n]).await?;
    }
}

async fn watchdog(idle: Duration, last: &AtomicU64, start: Instant) {
    loop {
        let since = start
            .elapsed()
            .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
        if since >= idle {
            return;
        }
        tokio::time::sleep(idle - since).await;
    }
}

/// A connection attempt's outcome for the cluster's outlier detection, if it has one.
fn report(cluster: &UpstreamCluster, host: &Arc<HostState>, status: u16) {
    if let Some(detector) = &cluster.outlier {
        detector.report(host, status);
    }
}

/// A connect (or its TLS handshake) failed, or `timed_out`: counted on the host and reported.
fn connect_failed(cluster: &UpstreamCluster, host: &Arc<HostState>, timed_out: bool) {
    host.failures.fetch_add(1, Ordering::Relaxed);
    report(cluster, host, outlier::status_of_failure(timed_out));
}
