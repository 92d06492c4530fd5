//! The accepted xDS resources, by type and name, and their translations.
//!
//! A resource is translated once when it arrives; one that fails rejects itself (the previous
//! version of it, if any, stays) and its error goes into the NACK. From the accepted set a
//! whole [`Config`] is built and published.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::json;
use xds_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use xds_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_types::pb::envoy::config::listener::v3::Listener as XdsListener;
use xds_types::pb::envoy::config::route::v3::RouteConfiguration;
use xds_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret as XdsSecret;
use xds_types::{Any, Resource, type_url};

use crate::config::cluster::Discovery;
use crate::config::listener::{NetworkFilter, RouteSource};
use crate::config::tls::Origin;
use crate::config::{Cluster, Config, Listener, LoadAssignment, RouteTable, Secret};

/// One accepted resource.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub version: String,
    pub any: Any,
    pub translated: Translated,
}

#[derive(Debug, Clone)]
pub enum Translated {
    Listener(Arc<Listener>),
    Route(Arc<RouteTable>),
    Cluster(Arc<Cluster>),
    Endpoints(Arc<LoadAssignment>),
    Secret(Arc<Secret>),
}

#[derive(Debug, Default)]
pub struct Store {
    pub statics: Config,
    /// The bootstrap's static clusters and listeners as written (for /config_dump).
    pub statics_raw: Vec<Any>,
    /// Accepted resources by type URL, then name.
    pub types: BTreeMap<&'static str, BTreeMap<String, Accepted>>,
    /// Type URLs a response has been received for.
    pub seen: BTreeSet<&'static str>,
}

/// Envoy refuses a listener whose inline route configuration names a cluster it does not know
/// (HttpConnectionManager: `validate_clusters` defaults to true for a static route table; the
/// error reads `route: unknown cluster 'x'`). RDS route tables are not checked, as in Envoy.
pub fn check_inline_clusters(
    listener: &Listener,
    known: impl Fn(&str) -> bool,
) -> Result<(), String> {
    use crate::config::route::{Action, ClusterTarget};
    for chain in listener.chains.iter().chain(&listener.default_chain) {
        let NetworkFilter::Http(hcm) = &chain.filter else {
            continue;
        };
        let RouteSource::Inline(table) = &hcm.routes else {
            continue;
        };
        let routes = table.vhosts.iter().flat_map(|v| &v.routes);
        for target in routes.filter_map(|r| match &r.action {
            Action::Forward(f) => Some(&f.target),
            _ => None,
        }) {
            let unknown = match target {
                ClusterTarget::Name(n) => (!known(n)).then(|| format!("unknown cluster '{n}'")),
                ClusterTarget::Weighted(list) => list
                    .iter()
                    .find(|(n, _)| !known(n))
                    .map(|(n, _)| format!("unknown weighted cluster '{n}'")),
                ClusterTarget::Header(_) => None,
            };
            if let Some(unknown) = unknown {
                return Err(format!("listener \"{}\": route: {unknown}", listener.name));
            }
        }
    }
    Ok(())
}

/// Envoy refuses a TLS context naming a static secret (an `SdsSecretConfig` without
/// `sds_config`) that the bootstrap does not hold ("Unknown static secret").
pub fn check_static_secrets<'a>(
    kind: &str,
    name: &str,
    mut names: impl Iterator<Item = (&'a str, &'a Origin)>,
    statics: &crate::tls::Secrets,
) -> Result<(), String> {
    match names
        .find(|(secret, origin)| **origin == Origin::Static && !statics.contains_key(*secret))
    {
        Some((secret, _)) => Err(format!(
            "{kind} \"{name}\": unknown static secret \"{secret}\" (an sds_secret_config without sds_config names a secret of the bootstrap)"
        )),
        None => Ok(()),
    }
}

/// Every secret name a listener's TLS contexts use: (name, over ADS).
pub fn listener_secrets(l: &Listener) -> impl Iterator<Item = (&str, &Origin)> {
    l.chains
        .iter()
        .chain(&l.default_chain)
        .filter_map(|c| c.tls.as_ref())
        .flat_map(|t| t.secret_names())
}

/// The SDS names the clusters' TLS contexts ask for over ADS.
pub fn cluster_sds_names<'a>(
    clusters: impl Iterator<Item = &'a Arc<Cluster>>,
) -> impl Iterator<Item = String> {
    clusters.filter_map(|c| c.tls.as_ref()).flat_map(|t| {
        t.secret_names()
            .filter(|(_, origin)| **origin == Origin::Ads)
            .map(|(n, _)| n.to_string())
            .collect::<Vec<_>>()
    })
}

/// The static `&str` for a type URL we handle.
pub fn known(url: &str) -> Option<&'static str> {
    [
        type_url::LISTENER,
        type_url::ROUTE,
        type_url::CLUSTER,
        type_url::ENDPOINT,
        type_url::SECRET,
    ]
    .into_iter()
    .find(|u| *u == url)
}

impl Store {
    /// Translates and accepts one resource; `Err` is the line for the NACK.
    pub fn accept(
        &mut self,
        url: &'static str,
        any: &Any,
        version: &str,
    ) -> Result<String, String> {
        let name = xds_types::resource::name_of(any).map_err(|e| e.to_string())?;
        // Same bytes: keep the same translation (and so the same Arc, which keeps a listener
        // running instead of restarting it).
        if let Some(existing) = self.types.get_mut(url).and_then(|m| m.get_mut(&name))
            && existing.any.value == any.value
        {
            existing.version = version.to_string();
            return Ok(name);
        }
        let translated = match url {
            type_url::LISTENER => {
                let listener = XdsListener::from_any(any)
                    .map_err(|e| e.to_string())
                    .and_then(|l| Listener::try_from(&l).map_err(|e| e.to_string()))?;
                let statics = &self.statics.clusters;
                let dynamic = self.types.get(type_url::CLUSTER);
                check_inline_clusters(&listener, |c| {
                    statics.contains_key(c) || dynamic.is_some_and(|m| m.contains_key(c))
                })?;
                check_static_secrets(
                    "listener",
                    &listener.name,
                    listener_secrets(&listener),
                    &self.statics.secrets,
                )?;
                Translated::Listener(Arc::new(listener))
            }
            type_url::ROUTE => Translated::Route(Arc::new(
                RouteConfiguration::from_any(any)
                    .map_err(|e| e.to_string())
                    .and_then(|r| RouteTable::try_from(&r).map_err(|e| e.to_string()))?,
            )),
            type_url::CLUSTER => {
                let cluster = XdsCluster::from_any(any)
                    .map_err(|e| e.to_string())
                    .and_then(|c| Cluster::try_from(&c).map_err(|e| e.to_string()))?;
                let names = cluster.tls.iter().flat_map(|t| t.secret_names());
                check_static_secrets("cluster", &cluster.name, names, &self.statics.secrets)?;
                Translated::Cluster(Arc::new(cluster))
            }
            type_url::ENDPOINT => Translated::Endpoints(Arc::new(
                ClusterLoadAssignment::from_any(any)
                    .map_err(|e| e.to_string())
                    .and_then(|c| LoadAssignment::try_from(&c).map_err(|e| e.to_string()))?,
            )),
            // A secret that does not translate (a key that does not match its certificate)
            // is NACKed and the previous version keeps serving new handshakes.
            type_url::SECRET => Translated::Secret(Arc::new(
                XdsSecret::from_any(any)
                    .map_err(|e| e.to_string())
                    .and_then(|s| Secret::try_from(&s).map_err(|e| e.to_string()))?,
            )),
            other => return Err(format!("unsupported type {other}")),
        };
        self.types.entry(url).or_default().insert(
            name.clone(),
            Accepted {
                version: version.to_string(),
                any: any.clone(),
                translated,
            },
        );
        Ok(name)
    }

    pub fn remove(&mut self, url: &'static str, name: &str) {
        if let Some(map) = self.types.get_mut(url) {
            map.remove(name);
        }
    }

    /// Removes every resource of `url` not in `keep`.
    pub fn retain(&mut self, url: &'static str, keep: &BTreeSet<String>) {
        if let Some(map) = self.types.get_mut(url) {
            map.retain(|n, _| keep.contains(n));
        }
    }

    pub fn names(&self, url: &'static str) -> BTreeSet<String> {
        self.types
            .get(url)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The whole config: the static resources plus the accepted dynamic ones.
    pub fn config(&self) -> Config {
        let mut config = self.statics.clone();
        for accepted in self.types.values().flat_map(|m| m.iter()) {
            let (name, a) = accepted;
            match &a.translated {
                Translated::Listener(l) => {
                    config.listeners.insert(name.clone(), l.clone());
                }
                Translated::Route(r) => {
                    config.routes.insert(name.clone(), r.clone());
                }
                Translated::Cluster(c) => {
                    config.clusters.insert(name.clone(), c.clone());
                }
                Translated::Endpoints(e) => {
                    config.endpoints.insert(name.clone(), e.clone());
                }
                Translated::Secret(s) => {
                    config.secrets.insert(name.clone(), s.clone());
                }
            }
        }
        config
    }

    /// The EDS names the clusters need.
    pub fn eds_names(&self) -> BTreeSet<String> {
        self.config()
            .clusters
            .values()
            .filter_map(|c| match &c.discovery {
                Discovery::Eds(eds) => Some(eds.service.clone()),
                Discovery::Static(_) | Discovery::Dns(_) => None,
            })
            .collect()
    }

    /// The RDS names the listeners need.
    pub fn rds_names(&self) -> BTreeSet<String> {
        self.config()
            .listeners
            .values()
            .flat_map(|l| l.chains.iter().chain(&l.default_chain))
            .filter_map(|c| match &c.filter {
                NetworkFilter::Http(h) => match &h.routes {
                    RouteSource::Rds(name) => Some(name.clone()),
                    RouteSource::Inline(_) => None,
                },
                NetworkFilter::Tcp(_) => None,
            })
            .collect()
    }

    /// The SDS names the listeners' and clusters' TLS contexts ask for over ADS.
    pub fn sds_names(&self) -> BTreeSet<String> {
        let config = self.config();
        let listeners = config.listeners.values().flat_map(|l| {
            listener_secrets(l)
                .filter(|(_, origin)| **origin == Origin::Ads)
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
        });
        listeners
            .chain(cluster_sds_names(config.clusters.values()))
            .collect()
    }

    /// Envoy's /config_dump layout for the accepted resources.
    pub fn dump(&self) -> serde_json::Value {
        let entries = |url: &'static str, key: &str| -> Vec<serde_json::Value> {
            self.types
                .get(url)
                .into_iter()
                .flat_map(|m| m.iter())
                .map(|(name, a)| {
                    let body = xds_types::format::any_to_json_value(&a.any)
                        .unwrap_or(serde_json::Value::Null);
                    json!({ "name": name, "version_info": a.version, key: body })
                })
                .collect()
        };
        // Listeners nest their version in `active_state`, as Envoy's ListenersConfigDump does.
        let listeners: Vec<serde_json::Value> = self
            .types
            .get(type_url::LISTENER)
            .into_iter()
            .flat_map(|m| m.iter())
            .map(|(name, a)| {
                let body = xds_types::format::any_to_json_value(&a.any).unwrap_or(serde_json::Value::Null);
                json!({ "name": name, "active_state": { "version_info": a.version, "listener": body } })
            })
            .collect();
        let statics = |url: &str, key: &str| -> Vec<serde_json::Value> {
            self.statics_raw
                .iter()
                .filter(|a| a.type_url == url)
                .map(|a| json!({ key: xds_types::format::any_to_json_value(a).unwrap_or(serde_json::Value::Null) }))
                .collect()
        };
        json!({ "configs": [
            { "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "static_clusters": statics(type_url::CLUSTER, "cluster"), "dynamic_active_clusters": entries(type_url::CLUSTER, "cluster") },
            { "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump", "dynamic_endpoint_configs": entries(type_url::ENDPOINT, "endpoint_config") },
            { "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "static_listeners": statics(type_url::LISTENER, "listener"), "dynamic_listeners": listeners },
            { "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": entries(type_url::ROUTE, "route_config") },
            // Secrets are shown by name and version only: Envoy redacts their material too.
            { "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump", "dynamic_active_secrets": self.types.get(type_url::SECRET).into_iter().flat_map(|m| m.iter()).map(|(name, a)| json!({ "name": name, "version_info": a.version })).collect::<Vec<_>>() },
        ]})
    }
}
