use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use dataplane::bootstrap::{self, Ads, Bootstrap};
use dataplane::runtime::Runtime;
use dataplane::xds::client::XdsClient;
use dataplane::xds::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "dataplane",
    about = "Envoy-compatible proxy driven by an xDS server"
)]
struct Args {
    /// An Envoy bootstrap (YAML or JSON).
    #[arg(long, conflicts_with = "xds")]
    bootstrap: Option<PathBuf>,
    /// Without a bootstrap: the ADS server (SotW) to subscribe to.
    #[arg(long, requires = "node_id")]
    xds: Option<SocketAddr>,
    /// Use Delta xDS with --xds.
    #[arg(long)]
    delta: bool,
    #[arg(long)]
    node_id: Option<String>,
    #[arg(long, default_value = "")]
    node_cluster: String,
    /// The admin address (overrides the bootstrap's).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Worker threads; by default the CPUs this process may run on (so `taskset -c 1` gives one).
    #[arg(long)]
    concurrency: Option<usize>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let workers = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    // Every worker is a current-thread runtime; this one, on the main thread, is worker 0
    // (workers.rs says why).
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args, workers)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, workers: usize) -> anyhow::Result<()> {
    dataplane::workers::start(workers).context("starting the worker threads")?;
    let boot = match (&args.bootstrap, args.xds) {
        (Some(path), _) => bootstrap::load(path)?,
        (None, Some(server)) => Bootstrap {
            node: xds_types::pb::envoy::config::core::v3::Node {
                id: args.node_id.clone().unwrap_or_default(),
                cluster: args.node_cluster.clone(),
                ..Default::default()
            },
            admin: None,
            ads: Some(Ads {
                delta: args.delta,
                server,
                tls: None,
            }),
            statics: Default::default(),
            statics_raw: Vec::new(),
            initial_fetch_timeout: Some(dataplane::config::DEFAULT_INITIAL_FETCH_TIMEOUT),
        },
        (None, None) => anyhow::bail!("give --bootstrap FILE or --xds HOST:PORT --node-id ID"),
    };
    let runtime = Arc::new(Runtime::default());
    let admin_addr = args
        .admin
        .or(boot.admin)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9901)));
    let admin = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("binding admin {admin_addr}"))?;
    let admin_addr = admin.local_addr()?;
    tokio::spawn(dataplane::admin::serve(
        admin,
        runtime.clone(),
        boot.node.id.clone(),
    ));
    if boot.ads.is_some() {
        // Before the listener manager starts: its listeners wait for the xDS clusters.
        runtime.expect_clusters();
    }
    tokio::spawn(dataplane::listener::run(runtime.clone()));
    tokio::spawn(dataplane::upstream::dns::run(runtime.clone()));
    tokio::spawn(dataplane::upstream::outlier::run(runtime.clone()));
    tokio::spawn(dataplane::upstream::health::run(runtime.clone()));
    // The API descriptors (~17 MB decoded) are needed only while config is translated: drop
    // them once the initial config is applied, and after 10 s without a config change.
    let watched = runtime.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut released_at_ready = false;
        loop {
            tick.tick().await;
            let idle = if watched.is_ready() && !released_at_ready {
                released_at_ready = true;
                std::time::Duration::ZERO
            } else {
                std::time::Duration::from_secs(10)
            };
            if xds_types::descriptors::release_if_unused_for(idle) {
                dataplane::memory::return_free_memory();
                tracing::debug!("released the API descriptors until the next config change");
            }
        }
    });
    tokio::spawn(dataplane::tls::files::run(runtime.clone()));
    let store = Store {
        statics: boot.statics.clone(),
        statics_raw: boot.statics_raw.clone(),
        ..Default::default()
    };
    match boot.ads {
        Some(ads) => {
            runtime.publish(store.config());
            tokio::spawn(XdsClient::new(boot.node.clone(), ads, runtime.clone(), store).run());
            if let Some(timeout) = boot.initial_fetch_timeout {
                // Envoy's init manager gives up waiting after the initial fetch timeout and
                // goes live with what it has (possibly nothing): so does /ready.
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    // Nor do listeners wait for clusters any longer.
                    runtime.clusters_arrived();
                    if !runtime.is_ready() {
                        tracing::warn!(
                            ?timeout,
                            "initial xDS config not complete after initial_fetch_timeout: ready anyway"
                        );
                        runtime.set_ready();
                    }
                });
            }
        }
        None => {
            // A static proxy, as Envoy with only static_resources.
            runtime.publish(store.config());
            if let Ok(mut dump) = runtime.dump.lock() {
                *dump = store.dump();
            }
            runtime.set_ready();
        }
    }
    // Tests and scripts read the admin address from this line (the port may be 0).
    println!("dataplane admin={admin_addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(%admin_addr, node = %boot.node.id, "dataplane started");
    // Envoy reopens its access log files on SIGUSR1 (log rotation).
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            dataplane::observe::access_log::writer::reopen_files();
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
