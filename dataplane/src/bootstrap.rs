//! The Envoy bootstrap: node, admin address, static resources and the ADS server.
//!
//! Bootstraps written for Envoy load unchanged as long as every field they set is one we
//! honour; any other is refused by name ([`crate::config::only_fields`]), never ignored.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use xds_types::pb::envoy::config::bootstrap::v3::Bootstrap as XdsBootstrap;
use xds_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use xds_types::pb::envoy::config::core::v3::Node;
use xds_types::pb::envoy::config::core::v3::api_config_source::ApiType;
use xds_types::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;

use crate::config::cluster::Discovery;
use crate::config::xds_tls::{self, XdsTls};
use crate::config::{Cluster, Config, FieldError, Listener, only_fields, socket_addr};

/// Where the xDS server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Ads {
    pub delta: bool,
    pub server: SocketAddr,
    /// TLS to the server, from the xDS cluster's `transport_socket` (`None`: plaintext h2c).
    pub tls: Option<XdsTls>,
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
    let boot = translate(&proto).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    boot.check_xds_tls_files()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(boot)
}

impl Bootstrap {
    /// Reads the xDS channel's certificate files once, as Envoy does when it loads its
    /// bootstrap: a file that cannot be read or a key that does not match its certificate is
    /// refused now, naming the file, rather than found at every reconnection attempt.
    pub fn check_xds_tls_files(&self) -> anyhow::Result<()> {
        let Some(tls) = self.ads.as_ref().and_then(|a| a.tls.as_ref()) else {
            return Ok(());
        };
        if tls.trusted_ca.is_none() {
            tracing::warn!(
                "the xDS cluster's TLS context has no validation_context.trusted_ca: any server \
                 certificate is accepted (as Envoy does)"
            );
        }
        crate::xds::tls::client_config(tls)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("the xDS cluster's transport_socket: {e}"))
    }
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
    let xds_cluster = ads_cluster_name(b);
    let mut channel_tls = None;
    if let Some(s) = &b.static_resources {
        only_fields(s, &["listeners", "clusters", "secrets"])
            .map_err(|e| field(e.within("static_resources")))?;
        // Static secrets, named by `sds_secret_configs` without an `sds_config`.
        for secret in &s.secrets {
            let secret = crate::config::Secret::try_from(secret)
                .map_err(|e| anyhow::anyhow!("static_resources: {e}"))?;
            statics
                .secrets
                .insert(secret.name.clone(), Arc::new(secret));
        }
        for c in &s.clusters {
            let is_xds = Some(c.name.as_str()) == xds_cluster;
            let cluster = match (&c.transport_socket, is_xds) {
                (Some(ts), true) => {
                    channel_tls = xds_tls::translate(ts).map_err(|e| {
                        anyhow::anyhow!(
                            "static_resources: cluster \"{}\": {}",
                            c.name,
                            e.within("transport_socket").path_and_reason()
                        )
                    })?;
                    // The xDS client dials with `xds_tls`; the cluster itself is translated
                    // without the socket unless the cluster translator honours it, so that an
                    // upstream TLS context is never silently dropped for proxied traffic.
                    Cluster::try_from(c).or_else(|_| {
                        let plain = XdsCluster {
                            transport_socket: None,
                            ..c.clone()
                        };
                        Cluster::try_from(&plain)
                    })
                }
                _ => Cluster::try_from(c),
            };
            let cluster = cluster.map_err(|e| anyhow::anyhow!("static_resources: {e}"))?;
            let names = cluster.tls.iter().flat_map(|t| t.secret_names());
            crate::xds::store::check_static_secrets(
                "cluster",
                &cluster.name,
                names,
                &statics.secrets,
            )
            .map_err(|e| anyhow::anyhow!("static_resources: {e}"))?;
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
            crate::xds::store::check_static_secrets(
                "listener",
                &listener.name,
                crate::xds::store::listener_secrets(&listener),
                &statics.secrets,
            )
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
            Some(Ads {
                delta,
                server,
                tls: channel_tls.take(),
            })
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

/// The cluster `ads_config.grpc_services[0].envoy_grpc` names, if any.
fn ads_cluster_name(b: &XdsBootstrap) -> Option<&str> {
    let grpc = b
        .dynamic_resources
        .as_ref()?
        .ads_config
        .as_ref()?
        .grpc_services
        .first()?;
    match grpc.target_specifier.as_ref()? {
        TargetSpecifier::EnvoyGrpc(g) => Some(g.cluster_name.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BOOTSTRAP: &str = r#"
node: { id: edge-1 }
dynamic_resources:
  ads_config:
    api_type: GRPC
    grpc_services: [ { envoy_grpc: { cluster_name: xds } } ]
  cds_config: { ads: {} }
  lds_config: { ads: {} }
static_resources:
  clusters:
  - name: xds
    type: STATIC
    load_assignment:
      cluster_name: xds
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18000 } } } } ] } ]
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: xds.example
        common_tls_context:
          tls_certificates: [ { certificate_chain: { filename: /c.pem }, private_key: { filename: /k.pem } } ]
          validation_context: { trusted_ca: { filename: /ca.pem } }
"#;

    fn parse(yaml: &str) -> anyhow::Result<Bootstrap> {
        translate(&xds_types::format::from_yaml_str(yaml).unwrap())
    }

    #[test]
    fn the_xds_clusters_tls_socket_is_honoured() {
        let b = parse(BOOTSTRAP).unwrap();
        let ads = b.ads.unwrap();
        let tls = ads.tls.unwrap();
        assert_eq!(tls.sni.as_deref(), Some("xds.example"));
        assert!(tls.client_cert.is_some() && tls.trusted_ca.is_some());
        assert!(b.statics.clusters.contains_key("xds"));
        let plain = BOOTSTRAP.split("    transport_socket:").next().unwrap();
        assert!(parse(plain).unwrap().ads.unwrap().tls.is_none());
    }

    #[test]
    fn the_xds_tls_files_are_read_at_load_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["dp".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (c, k, ca) = (
            write("c.pem", &cert.pem()),
            write("k.pem", &key.serialize_pem()),
            write("ca.pem", &cert.pem()),
        );
        let wrong = write("wrong.pem", &other.serialize_pem());
        let yaml = |c: &str, k: &str| {
            BOOTSTRAP
                .replace("/c.pem", c)
                .replace("/k.pem", k)
                .replace("/ca.pem", &ca)
        };
        parse(&yaml(&c, &k)).unwrap().check_xds_tls_files().unwrap();
        let missing = dir.path().join("missing.pem").display().to_string();
        let e = parse(&yaml(&missing, &k))
            .unwrap()
            .check_xds_tls_files()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "the xDS cluster's transport_socket: {missing}: cannot read:"
            )),
            "{e}"
        );
        let e = parse(&yaml(&c, &wrong))
            .unwrap()
            .check_xds_tls_files()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "the xDS cluster's transport_socket: tls_certificates[0] ({c} with {wrong}): \
                 the private key does not match the certificate"
            )),
            "{e}"
        );
    }

    #[test]
    fn an_unsupported_tls_field_on_the_xds_cluster_is_refused_by_name() {
        let yaml = BOOTSTRAP.replace(
            "        sni: xds.example",
            "        sni: xds.example\n        allow_renegotiation: true",
        );
        let e = parse(&yaml).unwrap_err().to_string();
        assert_eq!(
            e,
            "static_resources: cluster \"xds\": transport_socket.typed_config.allow_renegotiation: \
             not supported by this dataplane (set: allow_renegotiation)"
        );
    }
}
