//! tcp_proxy: bytes both ways between the downstream and a host of the cluster, half-close
//! passed through (one side's FIN is forwarded as a shutdown of the other side's write), and
//! the connection closed after `idle_timeout` without traffic either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::listener::TcpProxy;
use crate::runtime::Runtime;
use crate::upstream::cluster::ActiveRequest;

pub async fn serve_connection(downstream: TcpStream, proxy: TcpProxy, runtime: Arc<Runtime>) {
    let snapshot = runtime.load();
    let Some(cluster) = snapshot.clusters.get(&proxy.cluster).cloned() else {
        tracing::debug!(cluster = %proxy.cluster, "tcp_proxy: no such cluster, closing");
        return;
    };
    drop(snapshot);
    let Some(host) = cluster.pick(None, 0).cloned() else {
        tracing::debug!(cluster = %proxy.cluster, "tcp_proxy: no healthy upstream, closing");
        return;
    };
    let _active = ActiveRequest::new(host.clone());
    let upstream = match tokio::time::timeout(
        cluster.config.connect_timeout,
        TcpStream::connect(host.addr),
    )
    .await
    {
        Ok(Ok(s)) => s,
        _ => {
            host.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let (dr, dw) = downstream.into_split();
    let (ur, uw) = upstream.into_split();
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let copy = async {
        let _ = tokio::join!(pipe(dr, uw, &last, start), pipe(ur, dw, &last, start));
    };
    match proxy.idle_timeout {
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
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
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
