//! `controlplane push`: set a node group's resources through the management API, the way a
//! deploy pipeline would, from the same YAML/JSON files the directory source reads.

use std::path::PathBuf;

use anyhow::{Context, bail};
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
    /// Resource files (a `node_group:` key in them is ignored: the flags say which nodes).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for file in &args.files {
        match read_file(file) {
            Ok((_, found)) => resources.extend(found.into_iter().map(|r| r.any)),
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    let mut client = ManagementClient::connect(format!("http://{}", args.server))
        .await
        .with_context(|| format!("connecting to {}", args.server))?;
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
