//! `controlplane push`: set a node group's resources through the management API, the way a
//! deploy pipeline would, from the same YAML/JSON files the directory source reads.

use std::path::PathBuf;

use anyhow::{Context, bail};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use xds_mesh::management::v1::management_client::ManagementClient;
use xds_mesh::management::v1::{Selector, SetGroupRequest};

use crate::source::files::read_file;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The controlplane's xDS (gRPC) address, which also serves the management API.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub server: String,
    /// The node group to set (replaced whole).
    #[arg(long)]
    pub group: String,
    /// Nodes the group is for, by node id (glob); repeatable.
    #[arg(long = "node-id")]
    pub node_ids: Vec<String>,
    /// Nodes the group is for, by node cluster (glob); repeatable.
    #[arg(long = "node-cluster")]
    pub node_clusters: Vec<String>,
    /// Skip the checks (a test pushing a resource a proxy will NACK).
    #[arg(long)]
    pub skip_checks: bool,
    /// Talk TLS to a `serve --tls-cert` server, trusting these CAs (PEM).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// The client certificate (PEM) for a server with `--client-ca`.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of --server).
    #[arg(long, requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// Resource files (a `node_group:` key in them is ignored: the flags say which nodes).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for file in &args.files {
        match read_file(file) {
            // Secret files named relatively are read here, as `serve` does for its directory:
            // the server has no copy of them.
            Ok((_, found)) => {
                for r in found {
                    match crate::source::secret_files::inline(&r.any, &r.file) {
                        Ok(any) => resources.push(any),
                        Err(e) => errors.push(format!("{}: {}: {e}", r.file.display(), r.location)),
                    }
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    let channel = channel(&args)
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
    let mut client = ManagementClient::new(channel);
    let request = SetGroupRequest {
        group: args.group.clone(),
        selector: Some(Selector {
            node_ids: args.node_ids,
            node_clusters: args.node_clusters,
        }),
        resources,
        skip_checks: args.skip_checks,
    };
    let response = client
        .set_group(request)
        .await
        .map_err(|status| anyhow::anyhow!("refused: {}", status.message()))?
        .into_inner();
    for w in &response.warnings {
        eprintln!("warning: {w}");
    }
    println!("group \"{}\" set: version {}", args.group, response.version);
    Ok(())
}

/// The channel to the server: plaintext, TLS (`--tls-ca`) or mutual TLS (`--tls-cert`).
async fn channel(args: &PushArgs) -> anyhow::Result<Channel> {
    let Some(ca) = &args.tls_ca else {
        return Ok(Endpoint::from_shared(format!("http://{}", args.server))?
            .connect()
            .await?);
    };
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(name) = &args.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(Endpoint::from_shared(format!("https://{}", args.server))?
        .tls_config(tls)?
        .connect()
        .await?)
}
