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
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
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
        }
        .serve(admin, shutdown.clone()),
    );

    let cache_for_api = cache.clone();
    let ads = AdsServer::new(cache, proxies, shutdown.clone()).into_service();
    let mut stop = shutdown.clone();
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(ads)
        .add_service(
            ManagementApi::new(cache_for_api, args.strict)
                .with_shutdown(shutdown.clone())
                .into_service(),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(xds), async move {
            let _ = stop.wait_for(|s| *s).await;
        });
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
    tokio::pin!(server);
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
