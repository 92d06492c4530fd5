//! Envoy-format resources and bootstraps for the tests, as a user writes them.

use std::path::Path;

/// An Envoy bootstrap with ADS at `host:port` (GRPC or DELTA_GRPC) and admin on port 0.
pub fn envoy_bootstrap(node_id: &str, host: &str, port: &str, api_type: &str) -> String {
    format!(
        r#"
node: {{ id: "{node_id}", cluster: e2e }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [ {{ envoy_grpc: {{ cluster_name: xds }} }} ]
  cds_config: {{ ads: {{}}, resource_api_version: V3 }}
  lds_config: {{ ads: {{}}, resource_api_version: V3 }}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment:
      cluster_name: xds
      endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: {host}, port_value: {port} }} }} }} }} ] }} ]
"#
    )
}

/// An HTTP listener on 127.0.0.1:`port` whose routes come from RDS `route_config`.
pub fn listener(name: &str, port: u16, route_config: &str) -> String {
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: {name}
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {name}
        rds: {{ route_config_name: {route_config}, config_source: {{ ads: {{}}, resource_api_version: V3 }} }}
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#
    )
}

/// A route configuration: `routes` are (path prefix, cluster); `header` is a response header
/// added to everything.
pub fn routes(name: &str, routes: &[(&str, &str)], header: Option<(&str, &str)>) -> String {
    let routes: String = routes
        .iter()
        .map(|(prefix, cluster)| {
            format!(
                "    - {{ match: {{ prefix: \"{prefix}\" }}, route: {{ cluster: {cluster} }} }}\n"
            )
        })
        .collect();
    let header = header
        .map(|(k, v)| {
            format!("    response_headers_to_add: [ {{ header: {{ key: {k}, value: {v} }} }} ]\n")
        })
        .unwrap_or_default();
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: {name}
  virtual_hosts:
  - name: all
    domains: ["*"]
    routes:
{routes}{header}"#
    )
}

/// An EDS cluster and its load assignment: one endpoint on 127.0.0.1:`port`.
pub fn cluster(name: &str, port: u32) -> String {
    eds_cluster(name, &[port])
}

/// An EDS cluster and its load assignment: one endpoint on 127.0.0.1 per port.
pub fn eds_cluster(name: &str, ports: &[u32]) -> String {
    let endpoints: String = ports
        .iter()
        .map(|p| format!("{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {p} }} }} }} }},"))
        .collect();
    format!(
        r#"
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: {name}
  type: EDS
  connect_timeout: 1s
  eds_cluster_config: {{ eds_config: {{ ads: {{}}, resource_api_version: V3 }} }}
- "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  cluster_name: {name}
  endpoints: [ {{ lb_endpoints: [ {endpoints} ] }} ]
"#
    )
}

/// A `resources:` file of the given pieces, optionally for a node group.
pub fn file(node_group: Option<&str>, pieces: &[String]) -> String {
    let mut out = String::new();
    if let Some(g) = node_group {
        out.push_str(g);
        out.push('\n');
    }
    out.push_str("resources:");
    for p in pieces {
        out.push_str(p);
    }
    out
}

/// A fresh `config` directory in `work`, for the controlplane to serve.
pub fn config_dir(work: &Path) -> std::path::PathBuf {
    let dir = work.join("config");
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// Writes a config file the way deploy tools do: aside, then renamed into place.
pub fn write(dir: &Path, name: &str, text: &str) {
    let aside = dir.join(format!(".{name}.tmp"));
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(aside, dir.join(name)).unwrap();
}

/// A static bootstrap, admin on port 0: one HTTP listener on 127.0.0.1:`port` whose connection
/// manager (`stat_prefix`) routes with `routes` (the route entries of one `*` virtual host, flow
/// YAML) through the router filter, and `clusters` (flow YAML each, as [`static_cluster`] makes).
pub fn static_http_bootstrap(
    node_id: &str,
    port: u16,
    stat_prefix: &str,
    routes: &str,
    clusters: &[String],
) -> String {
    format!(
        r#"node: {{ id: {node_id}, cluster: test }}
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }} }}
static_resources:
  listeners:
  - {{ name: http, address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}, filter_chains: [ {{ filters: [ {{ name: envoy.filters.network.http_connection_manager, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: {stat_prefix}, route_config: {{ virtual_hosts: [ {{ name: v, domains: ["*"], routes: [ {routes} ] }} ] }}, http_filters: [ {{ name: envoy.filters.http.router, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }} }} ] }} }} ] }} ] }}
  clusters: [ {} ]
"#,
        clusters.join(", ")
    )
}

/// A STATIC cluster of hosts on 127.0.0.1 at `ports`, with `fields` (flow YAML, each field
/// followed by a comma) before its load assignment.
pub fn static_cluster(name: &str, ports: &[u16], fields: &str) -> String {
    let hosts: Vec<String> = ports
        .iter()
        .map(|port| {
            format!(
                "{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}"
            )
        })
        .collect();
    format!(
        "{{ name: {name}, type: STATIC, connect_timeout: 1s, {fields} load_assignment: {{ cluster_name: {name}, endpoints: [ {{ lb_endpoints: [ {} ] }} ] }} }}",
        hosts.join(", ")
    )
}
