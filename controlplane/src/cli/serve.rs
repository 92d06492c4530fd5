//! `controlplane serve`: the ADS server, the directory watcher and the admin endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{error, info};

use crate::admin::Admin;
use crate::cache::SnapshotCache;
use crate::server::AdsServer;
use crate::source::api::ManagementApi;
use crate::source::{LoadOptions, SourceStatus, Versioner};
use crate::status::ProxyRegistry;
use crate::tls::{Acceptor, NodeIdMatch, TlsFiles, TlsState, TlsStatus};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Directory of Envoy-format YAML/JSON resource files.
    #[arg(long)]
    pub config: PathBuf,
    /// Address of the xDS (gRPC) server.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub listen: SocketAddr,
    /// Address of the admin (HTTP) endpoint.
    #[arg(long, default_value = "127.0.0.1:19000")]
    pub admin: SocketAddr,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// Serve xDS (and the management API, on the same port) over TLS with this certificate
    /// chain (PEM, leaf first). Reloaded when the file changes and on SIGHUP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM) (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Which part of the client certificate a proxy's node id must equal: san (a DNS or URI
    /// SAN, the default with --client-ca), dns-san, uri-san, cn, or any.
    #[arg(long, value_enum, requires = "client_ca")]
    pub node_id_match: Option<NodeIdMatch>,
    /// With --client-ca: only clients whose certificate has this CN, DNS SAN or URI SAN may use
    /// the management API (repeatable). Without it, every certificate of --client-ca may,
    /// the proxies' included.
    #[arg(long = "management-client", requires = "client_ca")]
    pub management_clients: Vec<String>,
    /// The HTTP/2 flow-control window each stream gets from the server (bytes; hyper's 1 MiB
    /// when not given). A client's DATA frame is at most this big, and h2 grows each
    /// connection's read buffer to the largest frame read and keeps it: 8000 keeps frames in
    /// the initial 8 KiB buffer, 8 KB less per connection (80 MB for 10,000 proxies), at the
    /// cost of a round trip per 8 KB a client sends. Envoy 1.40 puts its node (about 16 KB
    /// with its extension list) in every request unless `set_node_on_first_message_only`, so
    /// each of its requests would wait a round trip: leave it unset for proxies far away.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1024..=i32::MAX as i64))]
    pub stream_window: Option<u32>,
}

impl ServeArgs {
    /// The TLS files and the node id rule, if TLS is on. The rule defaults to `san` when
    /// client certificates are required: mTLS that lets any proxy of the fleet claim any other
    /// proxy's node id (and get its secrets) is rarely what one wants, so `any` is explicit.
    fn tls(&self) -> Option<(TlsFiles, NodeIdMatch)> {
        let files = TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.client_ca.clone(),
        };
        let rule = match (&files.client_ca, self.node_id_match) {
            (_, Some(rule)) => rule,
            (Some(_), None) => NodeIdMatch::San,
            (None, None) => NodeIdMatch::Any,
        };
        Some((files, rule))
    }
}

/// The xDS listener's TLS, if asked for: the acceptor, the node id rule and the status handle,
/// with the files' watcher started. Bad files stop the start (exit 1 naming the file): serving
/// plaintext instead, or nothing, would hide the mistake. A later bad reload keeps the
/// previous files instead.
fn start_tls(args: &ServeArgs) -> anyhow::Result<Option<(Acceptor, NodeIdMatch, TlsStatus)>> {
    let Some((files, rule)) = args.tls() else {
        return Ok(None);
    };
    let config = files.load().map_err(anyhow::Error::msg)?;
    let status = TlsStatus::default();
    status.update(|s| {
        *s = TlsState {
            cert: files.cert.display().to_string(),
            key: files.key.display().to_string(),
            client_ca: files.client_ca.as_ref().map(|p| p.display().to_string()),
            node_id_match: Some(rule),
            loaded_at: crate::status::now(),
            ..Default::default()
        }
    });
    info!(cert = %files.cert.display(), client_ca = ?files.client_ca, node_id_match = rule.as_str(), "xDS over TLS");
    let acceptor = Acceptor::new(config);
    tokio::spawn(crate::tls::reload::run(
        files,
        acceptor.clone(),
        status.clone(),
    ));
    Ok(Some((acceptor, rule, status)))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let tls = start_tls(&args)?;
    let cache = SnapshotCache::new();
    let proxies = ProxyRegistry::new();
    let source = SourceStatus::default();
    source.update(|s| s.directory = args.config.display().to_string());
    let options = LoadOptions {
        strict: args.strict,
    };
    let mut versioner = Versioner::default();
    // A first load that fails still starts the server (serving nothing) so that fixing the
    // files brings it up, as with any later bad load; the error is in the log and /status.
    if !crate::source::watch::reload(&args.config, options, &mut versioner, &cache, &source) {
        error!("the initial config was refused: serving nothing until it is fixed");
    }
    tokio::spawn(crate::memory::trim_after_bursts(
        std::time::Duration::from_secs(1),
    ));
    tokio::spawn(crate::memory::release_descriptors_when_idle(
        crate::memory::DESCRIPTORS_IDLE,
    ));
    if tracing::enabled!(target: "controlplane::server::fanout", tracing::Level::DEBUG) {
        tokio::spawn(crate::server::fanout::report(cache.subscribe()));
    }
    tokio::spawn(crate::source::watch::run(
        args.config.clone(),
        options,
        versioner,
        cache.clone(),
        source.clone(),
    ));

    let (shutdown_tx, shutdown) = watch::channel(false);
    let xds = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding xDS address {}", args.listen))?;
    let admin = TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("binding admin address {}", args.admin))?;
    let (xds_addr, admin_addr) = (xds.local_addr()?, admin.local_addr()?);
    tokio::spawn(
        Admin {
            cache: cache.clone(),
            proxies: proxies.clone(),
            source,
            tls: tls.as_ref().map(|(_, _, status)| status.clone()),
        }
        .serve(admin, shutdown.clone()),
    );

    let cache_for_api = cache.clone();
    let rule = tls.as_ref().map_or(NodeIdMatch::Any, |(_, rule, _)| *rule);
    let ads = AdsServer::new(cache, proxies, shutdown.clone())
        .with_node_id_match(rule)
        .into_service();
    let mut stop = shutdown.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .initial_stream_window_size(args.stream_window)
        .add_service(ads)
        .add_service({
            let api =
                ManagementApi::new(cache_for_api, args.strict).with_shutdown(shutdown.clone());
            let api = if args.management_clients.is_empty() {
                api
            } else {
                api.with_allowed_clients(args.management_clients.clone())
            };
            api.into_service()
        });
    let server: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> = match tls {
        Some((acceptor, _, _)) => {
            Box::pin(router.serve_with_incoming_shutdown(acceptor.incoming(xds), stopped))
        }
        None => Box::pin(router.serve_with_incoming_shutdown(TcpListenerStream::new(xds), stopped)),
    };
    // Tests and scripts read the bound addresses from this line (ports may be 0).
    println!("controlplane listening xds={xds_addr} admin={admin_addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    info!(%xds_addr, %admin_addr, "serving");

    let signals = async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        anyhow::Ok(())
    };
    let mut server = server;
    tokio::select! {
        result = &mut server => return result.context("xDS server"),
        result = signals => result?,
    }
    info!("shutting down: closing streams");
    let _ = shutdown_tx.send(true);
    // Streams end cleanly once they see shutdown; don't wait forever for a stuck peer.
    match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
        Ok(result) => result.context("xDS server")?,
        Err(_) => info!("some streams did not close within 5 s"),
    }
    Ok(())
}
