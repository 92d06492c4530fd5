//! Envoy-format YAML for TLS listeners and clusters, as a user writes them (flow style, one
//! resource per call), shared by the in-process tests and the parity test with real Envoy.

#![allow(dead_code)]

use super::pki::{Leaf, yaml};

/// A `tls_certificates` entry with inline PEM.
pub fn cert(leaf: &Leaf) -> String {
    format!(
        "{{ certificate_chain: {{ inline_string: {} }}, private_key: {{ inline_string: {} }} }}",
        yaml(&leaf.cert),
        yaml(&leaf.key)
    )
}

/// A listener transport socket with a DownstreamTlsContext; `common` and `extra` are more
/// fields of the CommonTlsContext and of the DownstreamTlsContext.
pub fn downstream(certs: &[&Leaf], common: &str, extra: &str) -> String {
    let list: Vec<String> = certs.iter().map(|c| cert(c)).collect();
    format!(
        r#"{{ name: envoy.transport_sockets.tls, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext, common_tls_context: {{ tls_certificates: [ {} ] {common} }} {extra} }} }}"#,
        list.join(", ")
    )
}

/// An HTTP connection manager answering every request with `body`, or routing to `cluster`
/// when `body` is empty.
pub fn hcm(body: &str, cluster: &str) -> String {
    let action = if body.is_empty() {
        format!("route: {{ cluster: {cluster} }}")
    } else {
        format!("direct_response: {{ status: 200, body: {{ inline_string: {body} }} }}")
    };
    format!(
        r#"{{ name: envoy.filters.network.http_connection_manager, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: s, route_config: {{ virtual_hosts: [ {{ name: v, domains: ["*"], routes: [ {{ match: {{ prefix: "/" }}, {action} }} ] }} ] }}, http_filters: [ {{ name: envoy.filters.http.router, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }} }} ] }} }}"#
    )
}

/// A filter chain: its match (server names, transport protocol), TLS transport socket (or
/// none) and network filter.
pub fn chain(
    name: &str,
    server_names: &[&str],
    transport: &str,
    tls: Option<&str>,
    filter: &str,
) -> String {
    let names: Vec<String> = server_names.iter().map(|n| format!("\"{n}\"")).collect();
    let mut m = Vec::new();
    if !names.is_empty() {
        m.push(format!("server_names: [{}]", names.join(", ")));
    }
    if !transport.is_empty() {
        m.push(format!("transport_protocol: {transport}"));
    }
    let matcher = if m.is_empty() {
        String::new()
    } else {
        format!("filter_chain_match: {{ {} }}, ", m.join(", "))
    };
    let ts = tls
        .map(|t| format!("transport_socket: {t}, "))
        .unwrap_or_default();
    format!("{{ name: {name}, {matcher}{ts}filters: [ {filter} ] }}")
}

/// A listener with the TLS inspector and `chains`; `more` adds listener fields.
pub fn listener(name: &str, port: u16, chains: &[String], more: &str) -> String {
    format!(
        r#"{{ name: {name}, address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}, listener_filters: [ {{ name: envoy.filters.listener.tls_inspector, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }} }} ], filter_chains: [ {} ] {more} }}"#,
        chains.join(", ")
    )
}

/// A STATIC cluster of one endpoint; `more` adds cluster fields (a transport socket...).
pub fn cluster(name: &str, port: u16, more: &str) -> String {
    format!(
        r#"{{ name: {name}, type: STATIC, connect_timeout: 1s, load_assignment: {{ cluster_name: {name}, endpoints: [ {{ lb_endpoints: [ {{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }} ] }} ] }} {more} }}"#
    )
}

/// A static bootstrap with the listeners and clusters, and admin on port 0.
pub fn bootstrap(listeners: &[String], clusters: &[String]) -> String {
    format!(
        "node: {{ id: tls-test, cluster: test }}\nadmin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }} }}\nstatic_resources:\n  listeners: [ {} ]\n  clusters: [ {} ]\n",
        listeners.join(", "),
        clusters.join(", ")
    )
}

/// A flow-style resource as a controlplane config file holds it: with its `"@type"`
/// (`type_name` without the type.googleapis.com/ prefix).
pub fn typed(type_name: &str, flow: &str) -> String {
    let fields = flow.trim_start().strip_prefix('{').unwrap_or(flow);
    format!("{{ \"@type\": type.googleapis.com/{type_name},{fields}")
}

/// A cluster's `more`: TLS to its endpoints with SNI `sni`, the CA from the SDS secret
/// `secret` over ADS; `fetch` adds to its sds_config (`, initial_fetch_timeout: 1s`).
pub fn upstream_sds_ca(sni: &str, secret: &str, fetch: &str) -> String {
    format!(
        r#", transport_socket: {{ name: envoy.transport_sockets.tls, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext, sni: {sni}, common_tls_context: {{ validation_context_sds_secret_config: {{ name: {secret}, sds_config: {{ ads: {{}}, resource_api_version: V3 {fetch} }} }} }} }} }}"#
    )
}

/// An SDS Secret with a validation context trusting `pem`.
pub fn ca_secret(name: &str, pem: &str) -> String {
    format!(
        r#"{{ "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret, name: {name}, validation_context: {{ trusted_ca: {{ inline_string: {} }} }} }}"#,
        yaml(pem)
    )
}

/// The cluster warming story's resources (controlplane files): the cluster `secure` to
/// `backend` over TLS, its CA from the SDS secret `secret`, and a plaintext listener on `port`
/// routing to it.
pub fn warming_resources(port: u16, backend: u16, secret: &str, fetch: &str) -> [String; 2] {
    let c = cluster(
        "secure",
        backend,
        &upstream_sds_ca("backend.test", secret, fetch),
    );
    let l = listener(
        "front",
        port,
        &[chain("c", &[], "", None, &hcm("", "secure"))],
        "",
    );
    [
        typed("envoy.config.cluster.v3.Cluster", &c),
        typed("envoy.config.listener.v3.Listener", &l),
    ]
}
