//! The realistic snapshot the fleet is served: one listener with RDS, one route configuration
//! with a route per service, and per service an EDS cluster with its endpoints.

use std::path::Path;

use serde_json::{Value, json};

/// What to generate. `svc0_port` is the port of service 0's first endpoint: the value the
/// simulator changes and then looks for in what the clients receive.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub clusters: usize,
    pub endpoints: usize,
    pub routes: usize,
    pub svc0_port: u32,
}

pub const ROUTE_CONFIG: &str = "fleet-routes";

pub fn cluster_name(i: usize) -> String {
    format!("svc-{i}")
}

fn resources(shape: &Shape) -> Value {
    let mut out = Vec::with_capacity(2 + 2 * shape.clusters);
    out.push(json!({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "ingress",
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": 10000 } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ingress",
                "rds": { "route_config_name": ROUTE_CONFIG, "config_source": { "ads": {}, "resource_api_version": "V3" } },
                "http_filters": [{ "name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }]
            }
        }]}]
    }));
    let routes: Vec<Value> = (0..shape.routes)
        .map(|i| json!({ "match": { "prefix": format!("/svc-{i}/") }, "route": { "cluster": cluster_name(i % shape.clusters.max(1)) } }))
        .collect();
    out.push(json!({
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        "name": ROUTE_CONFIG,
        "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }]
    }));
    for c in 0..shape.clusters {
        out.push(json!({
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": cluster_name(c),
            "type": "EDS",
            "connect_timeout": "1s",
            "eds_cluster_config": { "eds_config": { "ads": {}, "resource_api_version": "V3" } }
        }));
        let endpoints: Vec<Value> = (0..shape.endpoints)
            .map(|e| {
                let port = if c == 0 && e == 0 { shape.svc0_port } else { 20000 + e as u32 };
                let ip = format!("10.{}.{}.{}", (c >> 8) & 0xff, c & 0xff, e & 0xff);
                json!({ "endpoint": { "address": { "socket_address": { "address": ip, "port_value": port } } } })
            })
            .collect();
        out.push(json!({
            "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": cluster_name(c),
            "endpoints": [{ "lb_endpoints": endpoints }]
        }));
    }
    json!({ "resources": out })
}

/// Writes the snapshot to `dir/fleet.json` atomically (write aside, then rename), as a
/// deploy tool would, so the controlplane never reads half a file.
pub fn write(dir: &Path, shape: &Shape) -> anyhow::Result<()> {
    install(dir, &render(shape)?)
}

/// The snapshot's file content.
pub fn render(shape: &Shape) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&resources(shape))?)
}

/// Puts rendered content in place (see [`write`]). The latency of a change is measured from
/// here: making the 1.2 MB of JSON is the simulator's work, not part of the change.
pub fn install(dir: &Path, content: &[u8]) -> anyhow::Result<()> {
    let aside = dir.join(".fleet.json.tmp");
    std::fs::write(&aside, content)?;
    std::fs::rename(aside, dir.join("fleet.json"))?;
    Ok(())
}
