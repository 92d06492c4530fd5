//! The Envoy bootstrap: node, admin address, static resources and the ADS server.
//!
//! Bootstraps written for Envoy load unchanged as long as every field they set is one we
//! honour; any other is refused by name ([`crate::config::only_fields`]), never ignored.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use xds_types::pb::envoy::config::bootstrap::v3::Bootstrap as XdsBootstrap;
use xds_types::pb::envoy::config::core::v3::Node;
use xds_types::pb::envoy::config::core::v3::api_config_source::ApiType;
use xds_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;

use crate::config::cluster::Discovery;
use crate::config::{Cluster, Config, FieldError, Listener, only_fields, socket_addr};

/// Where the xDS server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Ads {
    pub delta: bool,
    pub server: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub node: Node,
    pub admin: Option<SocketAddr>,
    pub ads: Option<Ads>,
    /// The static listeners and clusters.
    pub statics: Config,
    /// The static clusters and listeners as written, for /config_dump.
    pub statics_raw: Vec<xds_types::Any>,
    /// How long the proxy waits for its first LDS/CDS answers before it calls itself ready
    /// anyway (the longer `initial_fetch_timeout` of lds_config and cds_config, as Envoy's
    /// init manager; `None`: wait forever).
    pub initial_fetch_timeout: Option<std::time::Duration>,
}

pub fn load(path: &Path) -> anyhow::Result<Bootstrap> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let proto: XdsBootstrap = xds_types::format::from_yaml_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    translate(&proto).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn field(e: FieldError) -> anyhow::Error {
    if e.path.is_empty() {
        anyhow::anyhow!("{}", e.reason)
    } else {
        anyhow::anyhow!("{}: {}", e.path, e.reason)
    }
}

pub fn translate(b: &XdsBootstrap) -> anyhow::Result<Bootstrap> {
    crate::config::validate(b).map_err(field)?;
    // layered_runtime and stats settings only tune features we do not have yet; refusing them
    // would refuse most real bootstraps, so they are accepted and have no effect.
    only_fields(
        b,
        &[
            "node",
            "static_resources",
            "dynamic_resources",
            "admin",
            "layered_runtime",
            "stats_config",
            "overload_manager",
        ],
    )
    .map_err(field)?;
    let node = b.node.clone().unwrap_or_default();
    let admin = match &b.admin {
        Some(a) => {
            Some(socket_addr(a.address.as_ref()).map_err(|e| field(e.within("admin.address")))?)
        }
        None => None,
    };
    let mut statics = Config::default();
    if let Some(s) = &b.static_resources {
        only_fields(s, &["listeners", "clusters"])
            .map_err(|e| field(e.within("static_resources")))?;
        for c in &s.clusters {
            let cluster =
                Cluster::try_from(c).map_err(|e| anyhow::anyhow!("static_resources: {e}"))?;
            statics
                .clusters
                .insert(cluster.name.clone(), Arc::new(cluster));
        }
        for l in &s.listeners {
            let listener =
                Listener::try_from(l).map_err(|e| anyhow::anyhow!("static_resources: {e}"))?;
            crate::xds::store::check_inline_clusters(&listener, |c| {
                statics.clusters.contains_key(c)
            })
            .map_err(|e| anyhow::anyhow!("static_resources: {e}"))?;
            statics
                .listeners
                .insert(listener.name.clone(), Arc::new(listener));
        }
    }
    let mut timeouts = Vec::new();
    let ads = match &b.dynamic_resources {
        None => None,
        Some(d) => {
            only_fields(d, &["ads_config", "lds_config", "cds_config"])
                .map_err(|e| field(e.within("dynamic_resources")))?;
            for (name, source) in [("lds_config", &d.lds_config), ("cds_config", &d.cds_config)] {
                if let Some(s) = source {
                    let timeout = crate::config::ads_config_source(s)
                        .map_err(|e| field(e.within(&format!("dynamic_resources.{name}"))))?;
                    timeouts.push(timeout);
                }
            }
            let Some(a) = &d.ads_config else {
                bail!("dynamic_resources.ads_config: required (only ADS is supported)");
            };
            only_fields(
                a,
                &[
                    "api_type",
                    "transport_api_version",
                    "grpc_services",
                    "set_node_on_first_message_only",
                ],
            )
            .map_err(|e| field(e.within("dynamic_resources.ads_config")))?;
            let delta = match ApiType::try_from(a.api_type) {
                Ok(ApiType::Grpc | ApiType::AggregatedGrpc) => false,
                Ok(ApiType::DeltaGrpc | ApiType::AggregatedDeltaGrpc) => true,
                _ => bail!(
                    "dynamic_resources.ads_config.api_type: only GRPC and DELTA_GRPC are supported"
                ),
            };
            let Some(TargetSpecifier::EnvoyGrpc(g)) = a
                .grpc_services
                .first()
                .and_then(|g| g.target_specifier.as_ref())
            else {
                bail!(
                    "dynamic_resources.ads_config.grpc_services[0]: an envoy_grpc cluster is required"
                );
            };
            let cluster = statics.clusters.get(&g.cluster_name).with_context(|| {
                format!(
                    "dynamic_resources.ads_config: no static cluster \"{}\"",
                    g.cluster_name
                )
            })?;
            let Discovery::Static(la) = &cluster.discovery else {
                bail!(
                    "static cluster \"{}\": the xDS cluster must be STATIC",
                    g.cluster_name
                );
            };
            let server = la
                .priorities
                .iter()
                .flatten()
                .next()
                .map(|h| h.addr)
                .with_context(|| {
                    format!("static cluster \"{}\" has no endpoint", g.cluster_name)
                })?;
            Some(Ads { delta, server })
        }
    };
    let statics_raw = b
        .static_resources
        .iter()
        .flat_map(|s| {
            let clusters = s.clusters.iter().map(xds_types::Resource::to_any);
            clusters.chain(s.listeners.iter().map(xds_types::Resource::to_any))
        })
        .collect();
    Ok(Bootstrap {
        node,
        admin,
        ads,
        statics,
        statics_raw,
        // The longest wait of the two sources; forever if one waits forever.
        initial_fetch_timeout: if timeouts.is_empty() {
            Some(crate::config::DEFAULT_INITIAL_FETCH_TIMEOUT)
        } else {
            timeouts
                .into_iter()
                .try_fold(std::time::Duration::ZERO, |a, t| t.map(|t| a.max(t)))
        },
    })
}
