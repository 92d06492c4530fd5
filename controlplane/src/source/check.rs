//! The checks a group's resources pass before they are served.
//!
//! Errors (the snapshot is refused): a resource that does not decode, a duplicate name within
//! a type, an EDS cluster without its ClusterLoadAssignment, a listener naming a route
//! configuration that does not exist, a resource breaking the API's validation rules (the
//! protoc-gen-validate annotations Envoy enforces). Warnings (served anyway, errors with
//! `--strict`): a route or tcp_proxy naming a cluster that does not exist, which Envoy accepts
//! and answers with 503 (or closes the connection); a TLS context asking SDS for a secret the
//! group does not hold, which keeps its cluster or listener warming. A Secret whose PEM does
//! not parse or whose private key does not match its certificate is an error, as Envoy refuses
//! it.

pub(crate) mod secrets;

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use xds_types::Resource;
use xds_types::pb::envoy::config::cluster::v3::Cluster;
use xds_types::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use xds_types::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use xds_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use xds_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use xds_types::type_url;

use super::files::SourcedResource;
use super::memo::Memo;

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

/// What the checks found.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks one group's resources.
pub fn check(group: &str, resources: &[SourcedResource]) -> Findings {
    check_memo(group, resources, &mut Memo::default())
}

/// [`check`], validating only the resources `validated` does not hold from an earlier load
/// (validation depends on a resource's bytes alone; the other checks look across resources
/// or at files, and are cheap).
pub fn check_memo(
    group: &str,
    resources: &[SourcedResource],
    validated: &mut Memo<(String, Vec<u8>), ()>,
) -> Findings {
    let mut f = Findings::default();
    let at = |r: &SourcedResource, name: &str| {
        format!(
            "{}: {} {} \"{name}\"",
            r.file.display(),
            r.location,
            type_url::short_name(&r.any.type_url)
        )
    };
    // Names unique per type.
    let mut seen: BTreeMap<(&str, String), &SourcedResource> = BTreeMap::new();
    let mut names: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in resources {
        let name = match xds_types::resource::name_of(&r.any) {
            Ok(n) => n,
            Err(e) => {
                f.errors
                    .push(format!("{}: {}: {e}", r.file.display(), r.location));
                continue;
            }
        };
        let key = (r.any.type_url.clone(), r.any.value.clone());
        if let Err(e) = validated.get_or_try(key, || xds_types::validate::validate_any(&r.any)) {
            f.errors.push(format!("{}: {e}", at(r, &name)));
        }
        if let Some(first) = seen.get(&(r.any.type_url.as_str(), name.clone())) {
            f.errors.push(format!(
                "{}: duplicate name (first in {} {})",
                at(r, &name),
                first.file.display(),
                first.location
            ));
        }
        seen.insert((r.any.type_url.as_str(), name.clone()), r);
        names
            .entry(r.any.type_url.as_str())
            .or_default()
            .insert(name);
    }
    let empty = BTreeSet::new();
    let of = |url: &str| names.get(url).unwrap_or(&empty);
    for r in resources {
        if matches!(
            r.any.type_url.as_str(),
            type_url::CLUSTER | type_url::LISTENER
        ) {
            let name = xds_types::resource::name_of(&r.any).unwrap_or_default();
            for (path, secret) in secrets::secret_refs(&r.any) {
                if !of(type_url::SECRET).contains(&secret) {
                    f.warnings.push(format!(
                        "{}: {path}: secret \"{secret}\" does not exist (Envoy keeps it warming until it arrives)",
                        at(r, &name)
                    ));
                }
            }
        }
        match r.any.type_url.as_str() {
            type_url::SECRET => {
                let name = xds_types::resource::name_of(&r.any).unwrap_or_default();
                for e in secrets::check_secret(&r.any, &r.file) {
                    f.errors.push(format!("{}: {e}", at(r, &name)));
                }
            }
            type_url::CLUSTER => {
                if let Ok(c) = Cluster::from_any(&r.any) {
                    check_cluster(&c, of(type_url::ENDPOINT), group, &at(r, &c.name), &mut f);
                }
            }
            type_url::LISTENER => {
                if let Ok(l) = Listener::from_any(&r.any) {
                    check_listener(
                        &l,
                        of(type_url::ROUTE),
                        of(type_url::CLUSTER),
                        &at(r, &l.name),
                        &mut f,
                    );
                }
            }
            type_url::ROUTE => {
                if let Ok(rc) = RouteConfiguration::from_any(&r.any) {
                    check_routes(&rc, of(type_url::CLUSTER), &at(r, &rc.name), "", &mut f);
                }
            }
            _ => {}
        }
    }
    f
}

fn check_cluster(
    c: &Cluster,
    assignments: &BTreeSet<String>,
    group: &str,
    at: &str,
    f: &mut Findings,
) {
    let Some(wanted) = xds_types::resource::eds_service_name(c) else {
        return;
    };
    if !assignments.contains(wanted) {
        f.errors.push(format!(
            "{at}: type EDS, but group \"{group}\" has no ClusterLoadAssignment with cluster_name \"{wanted}\""
        ));
    }
}

fn check_listener(
    l: &Listener,
    routes: &BTreeSet<String>,
    clusters: &BTreeSet<String>,
    at: &str,
    f: &mut Findings,
) {
    let chains = l
        .filter_chains
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("filter_chains[{i}]"), c));
    let default = l
        .default_filter_chain
        .iter()
        .map(|c| ("default_filter_chain".to_string(), c));
    for (path, chain) in chains.chain(default) {
        for (j, filter) in chain.filters.iter().enumerate() {
            check_filter(
                filter,
                routes,
                clusters,
                &format!("{at}: {path}.filters[{j}].typed_config"),
                f,
            );
        }
    }
}

fn check_filter(
    filter: &Filter,
    routes: &BTreeSet<String>,
    clusters: &BTreeSet<String>,
    at: &str,
    f: &mut Findings,
) {
    let Some(filter::ConfigType::TypedConfig(any)) = &filter.config_type else {
        return;
    };
    match any.type_url.as_str() {
        HCM => match HttpConnectionManager::decode(any.value.as_slice()).map(|h| h.route_specifier)
        {
            Ok(Some(RouteSpecifier::Rds(rds))) if !routes.contains(&rds.route_config_name) => {
                f.errors.push(format!(
                    "{at}.rds.route_config_name: route configuration \"{}\" does not exist",
                    rds.route_config_name
                ))
            }
            Ok(Some(RouteSpecifier::RouteConfig(rc))) => {
                check_routes(&rc, clusters, at, ".route_config", f)
            }
            _ => {}
        },
        TCP_PROXY => {
            let names: Vec<String> =
                match TcpProxy::decode(any.value.as_slice()).map(|t| t.cluster_specifier) {
                    Ok(Some(tcp_proxy::ClusterSpecifier::Cluster(c))) => vec![c],
                    Ok(Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w))) => {
                        w.clusters.into_iter().map(|c| c.name).collect()
                    }
                    _ => vec![],
                };
            for name in names.into_iter().filter(|n| !clusters.contains(n)) {
                f.warnings.push(format!("{at}.cluster: cluster \"{name}\" does not exist (Envoy closes such connections)"));
            }
        }
        _ => {}
    }
}

fn check_routes(
    rc: &RouteConfiguration,
    clusters: &BTreeSet<String>,
    at: &str,
    prefix: &str,
    f: &mut Findings,
) {
    for (v, vhost) in rc.virtual_hosts.iter().enumerate() {
        for (r, rt) in vhost.routes.iter().enumerate() {
            let Some(route::Action::Route(action)) = &rt.action else {
                continue;
            };
            let path = format!("{at}: {prefix}virtual_hosts[{v}].routes[{r}].route");
            let names: Vec<(String, &str)> = match &action.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => {
                    vec![(format!("{path}.cluster"), c.as_str())]
                }
                Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
                    .clusters
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.name.is_empty())
                    .map(|(i, c)| {
                        (
                            format!("{path}.weighted_clusters.clusters[{i}].name"),
                            c.name.as_str(),
                        )
                    })
                    .collect(),
                _ => vec![],
            };
            for (field, name) in names.into_iter().filter(|(_, n)| !clusters.contains(*n)) {
                f.warnings.push(format!(
                    "{field}: cluster \"{name}\" does not exist (Envoy answers 503)"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
