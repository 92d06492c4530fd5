//! The listener manager: one accept loop per listener and worker (each on its own socket,
//! workers.rs), started, replaced and stopped as the config changes, each connection handed
//! to the filter chain that matches it.
//!
//! Listeners start once the initial clusters have warmed (Envoy's cluster manager
//! initialization), and a listener only once its route configuration and secrets are there
//! (Envoy's listener warming: it waits for its RDS and SDS), or after the initial fetch
//! timeout. A changed or removed
//! listener stops accepting; its open connections keep the chain they were accepted with and
//! finish on their own (a bounded drain deadline is still to come).
//!
//! `accept.rs` takes one connection from the socket to its network filter (TLS inspector,
//! filter chain, TLS termination); `chain.rs` is the filter chain match.

pub mod accept;
pub mod chain;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::Listener;
use crate::config::listener::{NetworkFilter, RouteSource};
use crate::runtime::{Runtime, Snapshot};

struct Running {
    listener: Arc<Listener>,
    stop: watch::Sender<bool>,
    /// Ends (`None`) once every worker has closed its socket.
    closed: mpsc::Receiver<()>,
}

/// Follows the runtime's config and keeps the accept loops in line with it.
pub async fn run(runtime: Arc<Runtime>) {
    let mut changes = runtime.subscribe();
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    loop {
        // A warming cluster past its initial_fetch_timeout becomes active without its
        // secrets; nothing else republishes at that instant, so the listener manager (which
        // wakes for these deadlines anyway) does.
        if runtime
            .load()
            .next_warming_deadline()
            .is_some_and(|d| d <= Instant::now())
        {
            runtime.refresh();
        }
        let snapshot = runtime.load();
        // Envoy starts its listeners once the cluster manager is initialized: the initial
        // clusters have arrived and warmed (upstream/warming.rs), so a listener never routes
        // to a cluster still waiting for its secrets at startup.
        let clusters_ready = runtime.clusters_initialized();
        let mut waiting = !clusters_ready;
        for (name, listener) in &snapshot.config.listeners {
            if !clusters_ready {
                break;
            }
            if running
                .get(name)
                .is_some_and(|r| Arc::ptr_eq(&r.listener, listener))
            {
                continue;
            }
            let seen = *first_seen.entry(name.clone()).or_insert_with(Instant::now);
            if !warm(listener, &snapshot)
                && warming_timeout(listener).is_none_or(|t| seen.elapsed() < t)
            {
                waiting = true;
                continue;
            }
            if let Some(mut old) = running.remove(name) {
                info!(listener = %name, "listener changed: replacing it");
                let _ = old.stop.send(true);
                // The old sockets must be closed before the new ones bind the same address
                // (with SO_REUSEPORT the bind would succeed, and the old sockets would take a
                // share of the new connections, reset as they close). Each worker closes its
                // own; one that does not within a second is not waited for.
                let _ = tokio::time::timeout(Duration::from_secs(1), old.closed.recv()).await;
            }
            match start(listener.clone(), runtime.clone()) {
                Ok((stop, closed)) => {
                    running.insert(
                        name.clone(),
                        Running {
                            listener: listener.clone(),
                            stop,
                            closed,
                        },
                    );
                }
                Err(e) => {
                    error!(listener = %name, address = %listener.address, error = %e, "cannot listen")
                }
            }
        }
        running.retain(|name, r| {
            let keep = snapshot.config.listeners.contains_key(name);
            if !keep {
                info!(listener = %name, "listener removed: stops accepting");
                let _ = r.stop.send(true);
            }
            keep
        });
        first_seen.retain(|name, _| snapshot.config.listeners.contains_key(name));
        let mut wait = if waiting {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(3600)
        };
        if let Some(deadline) = snapshot.next_warming_deadline() {
            wait = wait.min(deadline.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// How long a listener waits for its routes and secrets: the longest `initial_fetch_timeout`
/// of its RDS and SDS sources (`None`: one of them waits forever). Past it, the listener
/// starts anyway: a request to a missing route configuration gets 404 and a handshake
/// needing a missing secret is closed, as in Envoy.
fn warming_timeout(listener: &Listener) -> Option<Duration> {
    let mut longest = Duration::ZERO;
    for chain in listener.chains.iter().chain(&listener.default_chain) {
        if let NetworkFilter::Http(h) = &chain.filter
            && matches!(h.routes, RouteSource::Rds(_))
        {
            longest = longest.max(h.rds_fetch_timeout?);
        }
        if let Some(tls) = &chain.tls {
            longest = longest.max(tls.warming_timeout()?);
        }
    }
    Some(longest)
}

/// Whether every route configuration the listener's chains name through RDS, and every SDS
/// secret their TLS contexts name, is there (Envoy warms a listener until both arrive).
pub fn warm(listener: &Listener, snapshot: &Snapshot) -> bool {
    listener
        .chains
        .iter()
        .chain(&listener.default_chain)
        .all(|c| {
            let routes = match &c.filter {
                NetworkFilter::Http(h) => match &h.routes {
                    RouteSource::Rds(name) => snapshot.config.routes.contains_key(name),
                    RouteSource::Inline(_) => true,
                },
                NetworkFilter::Tcp(_) => true,
            };
            let secrets = c.tls.as_ref().is_none_or(|t| {
                t.secret_names()
                    .all(|(name, _)| snapshot.config.secrets.contains_key(name))
            });
            routes && secrets
        })
}

/// Binds the listener's address once per worker (or once for all of them without
/// `enable_reuse_port`) and starts an accept loop on each worker, which serves its
/// connections on that worker (workers.rs). Returns the stop switch and what ends once every
/// socket is closed.
fn start(
    listener: Arc<Listener>,
    runtime: Arc<Runtime>,
) -> std::io::Result<(watch::Sender<bool>, mpsc::Receiver<()>)> {
    let workers = crate::workers::handles();
    let per_worker = workers.len() > 1 && listener.reuse_port;
    let mut sockets = vec![bind(listener.address, per_worker)?];
    // Port 0 is resolved by the first bind: the other workers bind the port it got.
    let address = sockets[0].local_addr()?;
    while sockets.len() < workers.len() {
        // Without SO_REUSEPORT every worker accepts on the one socket, through a descriptor
        // of its own for its reactor: whichever worker accepts first takes the connection.
        let next = if per_worker {
            bind(address, true)?
        } else {
            sockets[0].try_clone()?
        };
        sockets.push(next);
    }
    info!(listener = %listener.name, address = %listener.address, workers = workers.len(), "listening");
    let (stop, stopped) = watch::channel(false);
    let (closed, all_closed) = mpsc::channel(1);
    for (socket, worker) in sockets.into_iter().zip(&workers) {
        let (listener, runtime, mut stopped, closed) = (
            listener.clone(),
            runtime.clone(),
            stopped.clone(),
            closed.clone(),
        );
        worker.spawn(async move {
            // Dropped after the socket (locals drop in reverse order): the manager's wait for
            // the last sender ends once every socket is closed.
            let _closed: mpsc::Sender<()> = closed;
            // Registered with this worker's reactor, so its connections are served here.
            let socket = match TcpListener::from_std(socket) {
                Ok(s) => s,
                Err(e) => {
                    error!(listener = %listener.name, error = %e, "cannot listen on this worker");
                    return;
                }
            };
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = socket.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => { warn!(error = %e, "accept failed"); continue }
                    },
                    _ = stopped.changed() => return,
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(accept::serve(
                    stream,
                    peer,
                    listener.clone(),
                    runtime.clone(),
                    stopped.clone(),
                ));
            }
        });
    }
    Ok((stop, all_closed))
}

/// Binds with SO_REUSEADDR (so a replaced listener can take its address straight back) and a
/// large backlog; with `per_worker`, SO_REUSEPORT too, so that each worker binds the address.
fn bind(addr: std::net::SocketAddr, per_worker: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if per_worker {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    // Taken off this runtime's reactor: the worker that accepts on it registers it with its own.
    socket.listen(4096)?.into_std()
}
